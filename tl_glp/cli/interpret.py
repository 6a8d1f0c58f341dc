"""``tl-glp interpret``: look inside the prior on the testbed (dashboards, ground-truth monosemanticity)."""

from __future__ import annotations

from dataclasses import dataclass

from tl_glp.cli._run import Quiet, default_of

RUN_INTERPRET = "tl_glp.studies.interpret_run:run_interpret"


@dataclass
class InterpretArgs:
    """Meta-neurons of a prior, an SAE, raw and MLP neurons side by side. --quick starts from reduced sizes
    (--help --quick shows them); flags given beside it still win."""

    out: str = "interpret_out"
    """Output folder: dashboards per source, monosemanticity table and figure."""
    prior: str | None = None
    """A saved prior folder for the testbed's middle hook (None: train one, as the demo does)."""
    sae: str | None = None
    """An SAE-Lens SAE folder (None: train a TopK SAE with SAE-Lens on the same activations)."""
    docs: int = 1000
    """Documents for top activations."""
    gt_docs: int = 400
    """Held-out documents for the ground-truth score."""
    k: int = default_of(RUN_INTERPRET, "k")
    """Top contexts kept per feature and tail."""
    pages: int = default_of(RUN_INTERPRET, "pages")
    """Feature pages per source."""
    prior_steps: int = 1000
    """Training steps of the prior and the SAE when they are not given."""
    train_docs: int = 3000
    """Documents whose activations train the prior and the SAE when they are not given."""
    d_sae: int = 1024
    """Latents of the SAE trained when --sae is not given."""
    quick: bool = False
    """Reduced sizes (a smoke run)."""
    device: str | None = None
    """cpu or cuda (None: cuda if available)."""
    quiet: Quiet = False
    """Hide the progress bars."""

    @classmethod
    def quick_defaults(cls) -> InterpretArgs:
        return cls(docs=300, gt_docs=150, prior_steps=150, train_docs=300, d_sae=256)  # --quick in argv sets quick


def interpret(args: InterpretArgs) -> int:
    from tl_glp.activations.collect import collect_activations  # here, not at the top: --help needs only the defaults
    from tl_glp.core.prior import GenerativePrior
    from tl_glp.probing import MetaNeurons, MLPNeurons, RawActivations, SAEFeatures
    from tl_glp.saes import load_sae, train_sae
    from tl_glp.studies.interpret_run import run_interpret
    from tl_glp.studies.testbed import MIDDLE_HOOK, load
    from tl_glp.training.config import TrainConfig
    from tl_glp.training.trainer import train

    progress = not args.quiet
    testbed = load(progress=progress)
    model, hook = testbed.model, MIDDLE_HOOK
    acts = None
    if args.prior is None or args.sae is None:
        acts = collect_activations(
            model, testbed.language.sample_texts(args.train_docs, seed=1), hook, progress=progress
        )
    if args.prior:
        prior = GenerativePrior.from_pretrained(args.prior, device=args.device)
    else:
        prior = GenerativePrior.from_activations(acts, n_blocks=3)
        train(
            prior,
            acts,
            TrainConfig(
                batch_size=512, lr=2e-3, max_steps=args.prior_steps, eval_every=0, progress=progress, device=args.device
            ),
        )
    prior.eval()
    sae = (
        load_sae(args.sae, args.device)
        if args.sae
        else train_sae(acts, d_sae=args.d_sae, k=16, steps=args.prior_steps, device=args.device or "cpu")
    )
    sources = {"meta": MetaNeurons(prior), "sae": SAEFeatures(sae), "raw": RawActivations(), "mlp": MLPNeurons()}
    texts = testbed.language.sample_texts(args.docs, seed=20)
    held_out = list(testbed.language.documents(args.gt_docs, seed=21))
    out = run_interpret(
        model, sources, texts, hook, args.out, documents=held_out, k=args.k, pages=args.pages, progress=progress
    )
    print(out.markdown)
    print(f"wrote {out.out_dir / 'index.html'} ({out.numbers['interpret_seconds']:.0f} s)")
    return 0
