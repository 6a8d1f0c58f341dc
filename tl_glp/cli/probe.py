"""``tl-glp probe``: 1-D (or k-sparse) probing of meta-neurons against other feature sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from tl_glp.cli._run import Flat, ModelArgs, Quiet, default_of, load_model

RUN_PROBING = "tl_glp.probing.runner:run_probing"


@dataclass
class ProbeArgs:
    """Writes probing.csv, summary.csv and probing.png into --out and prints the summary."""

    model: Annotated[ModelArgs, Flat] = field(default_factory=ModelArgs)
    prior: str | None = None
    """Prior folder / published folder / hub id (needed for the 'meta' source)."""
    hook: str | None = None
    """Hook to probe (None: the prior's)."""
    source: tuple[Literal["meta", "raw", "mlp", "pca", "random", "sae"], ...] = default_of(RUN_PROBING, "sources")
    """Feature source; repeat for several."""
    sae: str | None = None
    """SAE for the 'sae' source: a local SAE-Lens folder or RELEASE:SAE_ID (e.g. gpt2-small-res-jb:blocks.8.hook_resid_pre)."""
    dataset: tuple[str, ...] = ()
    """SAE-Probes dataset name or CSV with prompt,target; repeat; 'all' for the 113 (none given: the testbed's
    concept datasets for --model testbed, else all)."""
    method: Literal["1d", "ksparse"] = default_of(RUN_PROBING, "method")
    """1-D probing or SAE-Probes' k-sparse protocol."""
    backend: Literal["torch", "sklearn"] = default_of(RUN_PROBING, "backend")
    """1-D probe backend (torch: batched)."""
    top_k: int = default_of(RUN_PROBING, "top_k")
    """Candidate features per dataset."""
    no_controls: bool = False
    """Skip the shuffled-label controls."""
    out: str = "probe_out"
    """Folder for probing.csv, summary.csv and probing.png."""
    cache_dir: str | None = None
    """Cache last-token activations here."""
    quiet: Quiet = False
    """Hide the progress bars."""


def probe(args: ProbeArgs) -> int:
    from tl_glp.core._tokens import model_device  # here, not at the top: --help needs only the defaults
    from tl_glp.core.prior import GenerativePrior
    from tl_glp.probing import SAEFeatures, run_probing
    from tl_glp.saes import load_sae

    model = load_model(args.model, progress=not args.quiet)
    device = args.model.device or str(model_device(model))
    prior = GenerativePrior.from_pretrained(args.prior, device=device) if args.prior else None
    sources: list[Any] = [SAEFeatures(load_sae(args.sae, device)) if name == "sae" else name for name in args.source]
    datasets: Any = list(args.dataset) or (["all"] if args.model.model != "testbed" else None)
    if datasets is None:
        from tl_glp.studies.testbed import load

        datasets = list(load(progress=False).datasets.values())
    elif datasets == ["all"]:
        datasets = "all"
    results = run_probing(
        model,
        prior,
        sources,
        datasets,
        hook_name=args.hook,
        method=args.method,
        backend=args.backend,
        top_k=args.top_k,
        controls=not args.no_controls,
        cache_dir=args.cache_dir,
        progress=not args.quiet,
    )
    out = Path(args.out)
    results.to_csv(out / "probing.csv")
    summary = results.summary()
    summary.to_csv(out / "summary.csv", index=False)
    results.plot(out / "probing.png")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nwrote {out / 'probing.csv'}, {out / 'summary.csv'}, {out / 'probing.png'}")
    return 0
