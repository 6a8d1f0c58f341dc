"""``tl-glp demo``: the whole pipeline end to end, with a report.

On the offline testbed (default) it runs in minutes on 2 CPU cores, in eight stages, each announced
as ``[k/8]`` with the seconds elapsed (every longer step inside shows a bar or a line):

1. model: the shipped testbed model (a tiny HookedTransformer on a synthetic language with known latents);
2. activations at its middle layer;
3. prior: a prior trained on them (loss curve), samples, Frechet distance and classifier two-sample tests
   against held-out activations and a moment-matched Gaussian, an SAE trained with SAE-Lens on the same
   activations, and delta LM loss of the prior's projection vs the SAE's reconstruction;
4. steering: plain vs prior-guided sentiment steering scored with ground truth;
5. steering head to head: every way back to the manifold (prior, SAE round trip, PCA, Gaussian cap) against
   plain steering, and what each projection changes (on the testbed with ground-truth concept, grammar and
   latent probes; on a real model with the concept along the direction and NLL fluency);
6. probing: 1-D probes on meta-neurons vs raw, MLP, PCA and SAE features;
7. ground-truth monosemanticity of single units (testbed only);
8. off-manifold detection: how well each score tells natural from steered or shuffled activations.

It writes ``report.md``, ``numbers.json``, CSVs and PNG figures to the output folder. The default sizes
(:class:`DemoSettings`) are a lighter version of the full-size run behind the README's tables
(``DemoSettings.full()``); ``DemoSettings.quick()`` is a smoke run of every step.

With ``--model`` (a Hugging Face id, or a local folder written by ``save_pretrained``), ``--hook``,
``--sae`` (``RELEASE:SAE_ID``, or a local folder for ``SAE.load_from_disk``) and ``--dataset`` the
same steps run on a real model (stage 7 left out: ``[k/7]``). With a local model folder, a local SAE
folder and CSV datasets (``prompt``, ``target``; their prompts then also serve as the text corpus) it
runs offline; for anything large it wants a GPU.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tl_glp.activations.collect import HFText, collect_activations
from tl_glp.activations.sources import InMemoryActivations
from tl_glp.core import _compat
from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig
from tl_glp.evaluation import compare_delta_lm_loss
from tl_glp.manifold.detection import detect_off_manifold
from tl_glp.probing import MetaNeurons, MLPNeurons, PCAFeatures, RawActivations, SAEFeatures, load_dataset, run_probing
from tl_glp.saes import load_sae, sae_reconstruction_hook, train_sae
from tl_glp.steering import diff_of_means, matched_concept_gain, plot_pareto, projection_hook, steering_sweep
from tl_glp.studies.interpret_run import ground_truth_section
from tl_glp.studies.reporting import markdown_table as _md_table
from tl_glp.studies.reporting import text_table as _text_table
from tl_glp.studies.splits import held_out_split, other_document_rows
from tl_glp.studies.steering_map import model_steering_map, testbed_steering_map
from tl_glp.studies.testbed import MIDDLE_HOOK, load
from tl_glp.studies.testbed.tasks import concept_scorer, grammatical_scorer, judgement_prefixes, steering_prompts
from tl_glp.training.config import TrainConfig
from tl_glp.training.metrics import classifier_two_sample_auc, frechet_distance_infinity, gaussian_like
from tl_glp.training.trainer import train

STAGES = (
    "model",
    "activations",
    "prior",
    "steering",
    "steering head to head",
    "probing",
    "ground-truth monosemanticity",
    "off-manifold detection",
)
"""The demo's stages in order, as its progress lines number them (``[k/N]``); on a real model (no ground truth)
the monosemanticity stage is left out and N is one less."""
TESTBED_ONLY_STAGES = ("ground-truth monosemanticity",)


class _Progress:
    """Prints ``[k/N] stage`` lines and indented step lines, each with the seconds elapsed since the start,
    so that no stretch of the demo passes silently; ``enabled=False`` prints nothing."""

    def __init__(self, stages: tuple[str, ...], enabled: bool) -> None:
        self.stages, self.enabled, self.start = stages, enabled, time.perf_counter()

    def stage(self, name: str, detail: str = "") -> None:
        k = self.stages.index(name) + 1
        self._print(f"[{k}/{len(self.stages)}] {name}{': ' + detail if detail else ''}")

    def step(self, text: str) -> None:
        self._print(f"      {text}")

    def _print(self, text: str) -> None:
        if self.enabled:
            print(f"{text}  ({time.perf_counter() - self.start:.0f} s)", flush=True)


DEMO_POSITIVE = [
    "it was a lovely day and we were happy .",
    "the kind people were great to us .",
    "what a bright and lovely song .",
]
DEMO_NEGATIVE = [
    "it was an awful day and we were sad .",
    "the cruel people were terrible to us .",
    "what a gloomy and awful song .",
]


@dataclass
class DemoSettings:
    """Sizes of each step. The defaults are a lighter version of ``full()`` (the run behind the README's tables):
    fewer prior and SAE steps, fewer samples, prompts and probe candidates; ``quick()`` is the smoke run the
    test suite uses."""

    n_docs: int = 3000
    """Testbed documents whose activations train the prior and the SAE (``full()``: 6000)."""
    prior_steps: int = 2000
    """Prior training steps (``full()``: 5000)."""
    prior_batch: int = 512
    """Training batch of the prior."""
    prior_lr: float = 2e-3
    """Peak learning rate of the prior (cosine decay after 1% warmup)."""
    prior_final_lr_frac: float = 0.01
    """The cosine schedule ends at this share of ``prior_lr`` (2e-5; the paper ends at 5e-6). Measured
    on the testbed (FD at 10,000 samples per side, 5000 steps): ending at 0.1x (2e-4) gave 75, at
    0.01x 42, at 0.001x 46; 8000 steps at 0.01x gave 44. Real rows of other documents score 25 there."""
    n_blocks: int = 3
    """Denoiser blocks of the prior."""
    eval_samples: int = 4000
    """Generated and held-out activations per side for the Frechet distance (FD-infinity) and c2st (``full()``: 10,000)."""
    sample_steps: int = 50
    """Sampler steps used to generate the activations that FD and c2st compare."""
    sae_steps: int = 400
    """Training steps of the reference TopK SAE (SAE-Lens; ``full()``: 1000)."""
    d_sae: int = 1024
    """Latents of that SAE."""
    sae_k: int = 16
    """Active latents per activation of that SAE (TopK k)."""
    lm_eval_docs: int = 200
    """Documents (not used for activations) on which delta LM loss is measured."""
    steer_prompts: int = 24
    """Prompts continued at every strength in the steering sweep (``full()``: 48)."""
    strengths: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0)
    """Steering strengths r (times the activation norm)."""
    new_tokens: int = 12
    """Tokens generated per steered continuation."""
    probe_top_k: int = 128
    """Candidate features per source kept for the 1-D probes (SAE-Probes' protocol and ``full()``: 512)."""
    c2st_steps: int = 300
    """Training steps of the classifier two-sample test."""
    manifold_rows: int = 200
    """Natural (and per condition, off-manifold) activations in the off-manifold detection section."""
    manifold_log_prob_probes: int = 2
    """Hutchinson probes for the log_prob score there (0: leave log_prob out; exact is too slow on CPU)."""
    gt_docs: int = 200
    """Held-out testbed documents whose every token the ground-truth monosemanticity section scores."""
    seed: int = 0
    """Seed of the data order, prior, SAE, noise and bootstraps (the testbed model stays the shipped one)."""
    # --- steering head to head (tl_glp.studies.steering_map; issue 20) ---
    map_prompts: int = 12
    """Prompts of the steering head-to-head (every projector x positions x strength); 0 leaves the section out."""
    map_strengths: tuple[float, ...] = (0.5, 1.0, 1.25, 1.5, 1.75, 2.0)
    """Its strengths r: finer between 1 and 2, where plain steering's grammar breaks on the testbed."""
    map_positions: str = "last"
    """Comma-separated positions it steers (each a front of its own)."""
    map_new_tokens: int = 12
    """Tokens generated per continuation in the head-to-head."""
    map_pca_k: int = 16
    """Principal components the PCA projector keeps."""
    map_diagnose: int = 60
    """Held-out document prefixes the projection diagnosis measures (last token)."""
    map_probe_prefixes: int = 800
    """Prefixes the ground-truth latent probes of the diagnosis train on."""

    @classmethod
    def from_overrides(cls, base: DemoSettings, overrides: list[str]) -> DemoSettings:
        """``base`` with ``FIELD=VALUE`` strings applied (what ``tl-glp demo --set`` passes), each
        value parsed as the field's type; unknown fields and bad values raise with the valid names.

        >>> DemoSettings.from_overrides(DemoSettings(), ["prior_steps=10", "strengths=0.5,1"]).strengths
        (0.5, 1.0)
        """
        from dataclasses import fields, replace

        types = {f.name: type(getattr(base, f.name)) for f in fields(cls)}
        changes: dict[str, Any] = {}
        for item in overrides:
            key, sep, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in types:
                raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(types)}.")
            try:
                changes[key] = (
                    tuple(float(v) for v in value.split(",") if v.strip()) if types[key] is tuple else types[key](value)
                )
            except ValueError as err:
                raise ValueError(f"--set {item!r}: {value!r} is not a valid {types[key].__name__} ({err}).") from err
        return replace(base, **changes)

    @classmethod
    def quick(cls) -> DemoSettings:
        """A smoke run of every step (what the test suite runs): about a minute once the testbed is loaded."""
        return cls(
            n_docs=500,
            prior_steps=60,
            prior_batch=256,
            eval_samples=400,
            sample_steps=10,
            sae_steps=60,
            d_sae=256,
            lm_eval_docs=30,
            steer_prompts=3,
            strengths=(0.25, 1.0),
            new_tokens=6,
            probe_top_k=64,
            manifold_rows=60,
            manifold_log_prob_probes=0,
            gt_docs=100,
            map_prompts=2,
            map_strengths=(1.0, 2.0),
            map_new_tokens=4,
            map_diagnose=16,
            map_probe_prefixes=300,
        )

    @classmethod
    def full(cls) -> DemoSettings:
        """The full-size run behind the README's seed-0 tables (5000 prior steps, 10,000 samples per side,
        1000 SAE steps): 25-35 minutes on 2 shared CPU cores. The default is a lighter version of it."""
        return cls(
            n_docs=6000,
            prior_steps=5000,
            eval_samples=10_000,
            sae_steps=1000,
            steer_prompts=48,
            probe_top_k=512,
            manifold_rows=300,
            gt_docs=400,
            map_prompts=24,
            map_positions="last,all",
            map_diagnose=200,
            map_probe_prefixes=1500,
        )


@dataclass
class DemoResult:
    out_dir: Path
    numbers: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)


def run_demo(
    out_dir: str | Path = "demo_out",
    *,
    quick: bool = False,
    full: bool = False,
    model_name: str = "testbed",
    hook: str | None = None,
    sae: str | None = None,
    datasets: list[str] | None = None,
    device: str | None = None,
    progress: bool = True,
    settings: DemoSettings | None = None,
    bridge: bool = False,
) -> DemoResult:
    """Run every step and write ``report.md`` + figures into ``out_dir``; returns the numbers.

    ``settings`` (sizes and steps) wins over ``quick`` (:meth:`DemoSettings.quick`) and ``full``
    (:meth:`DemoSettings.full`, the README's full-size run); ``bridge`` loads a real ``model_name``
    through ``TransformerBridge`` (see :func:`tl_glp.core._compat.load_model`)."""

    if quick and full:
        raise ValueError("run_demo: pass quick=True or full=True, not both.")
    cfg = settings or (DemoSettings.quick() if quick else DemoSettings.full() if full else DemoSettings())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = DemoResult(out)
    clock = time.perf_counter()
    torch.manual_seed(cfg.seed)
    stages = STAGES if model_name == "testbed" else tuple(s for s in STAGES if s not in TESTBED_ONLY_STAGES)
    if cfg.map_prompts <= 0:
        stages = tuple(s for s in stages if s != "steering head to head")
    say = _Progress(stages, progress)

    # 1. the model ------------------------------------------------------------------------------
    say.stage("model", "the shipped testbed" if model_name == "testbed" else model_name)
    testbed = None
    if model_name == "testbed":
        testbed = load(progress=progress)  # the shipped testbed model; the demo's seed varies everything after it
        model, hook = testbed.model, hook or MIDDLE_HOOK
        result.numbers["testbed_lm_loss"] = testbed.metrics["lm_loss"]
        result.numbers["testbed_entropy_floor"] = testbed.metrics["entropy_floor"]
        texts = testbed.language.sample_texts(cfg.n_docs + cfg.lm_eval_docs, seed=cfg.seed + 1)
    else:
        model = _compat.load_model(model_name, device=device, bridge=bridge)
        if hook is None:
            hook = f"blocks.{model.cfg.n_layers // 2}.hook_resid_post"
        corpus, probe_args = _split_dataset_args(datasets)
        texts = _corpus_texts(corpus, probe_args, cfg.n_docs + cfg.lm_eval_docs)
    train_texts, eval_texts = texts[: cfg.n_docs], texts[cfg.n_docs :]

    # 2. activations ----------------------------------------------------------------------------
    say.stage("activations", f"{cfg.n_docs} documents at {hook}")
    acts = collect_activations(model, train_texts, hook, progress=progress)
    data = acts[0 : len(acts)]
    n_held = max(200, min(len(data) // 5, 2 * cfg.eval_samples))
    train_rows, held_a, held_b = held_out_split(
        data, n_held, cfg.seed
    )  # the last quarter of the documents, never trained on
    result.numbers["activation_rows"] = len(acts)

    # 3. the prior --------------------------------------------------------------------------------
    say.stage("prior", f"{cfg.n_blocks} blocks, {cfg.prior_steps} steps of {cfg.prior_batch} rows")

    train_src = InMemoryActivations(train_rows[:, None], [hook], acts.model_name, acts.model_processing)
    prior = GenerativePrior.from_activations(train_src, n_blocks=cfg.n_blocks)
    run = train(
        prior,
        train_src,
        TrainConfig(
            batch_size=cfg.prior_batch,
            lr=cfg.prior_lr,
            final_lr_frac=cfg.prior_final_lr_frac,
            max_steps=cfg.prior_steps,
            eval_every=max(1, cfg.prior_steps // 4),
            checkpoint_every=cfg.prior_steps,
            fd_samples=min(1000, cfg.eval_samples),
            progress=progress,
            seed=cfg.seed,
            device=device,
        ),
        out_dir=out / "prior",
        resume=False,
    )  # a demo always trains afresh (its data may have changed)
    result.figures.append("prior/loss.png")
    n = min(cfg.eval_samples, len(held_a), len(held_b))
    gen = torch.Generator().manual_seed(cfg.seed)
    say.step(f"sampling {n} activations from the prior ({cfg.sample_steps} Euler steps)")
    samples = prior.sample(n, num_steps=cfg.sample_steps, generator=gen).cpu()
    gaussian = gaussian_like(train_rows, n, seed=cfg.seed)
    other_docs = other_document_rows(train_rows, n, cfg.seed + 1)  # the FD lower bound (tl_glp.studies.splits)
    references = (
        ("prior", samples),
        ("lower_bound", other_docs),
        ("held_out_halves", held_b[:n]),
        ("gaussian", gaussian),
    )
    fd = {}
    for i, (name, other) in enumerate(references):
        say.step(f"Frechet distance {i + 1}/{len(references)} ({name}, {n} rows per side)")
        fd[name] = frechet_distance_infinity(other, held_a[:n], seed=cfg.seed)
    result.numbers.update({"prior_final_train_loss": run.final_loss, "eval_samples": n})
    for name, value in fd.items():
        result.numbers[f"fd_{name}"] = value.fd_inf
        result.numbers[f"fd_{name}_at_n"] = value.fd_at_n[-1]
    for i, (name, other) in enumerate((("prior", samples), ("gaussian", gaussian), ("held_out", held_b[:n]))):
        say.step(f"classifier two-sample test {i + 1}/3 ({name}: {cfg.c2st_steps} steps)")
        result.numbers[f"c2st_auc_{name}"] = classifier_two_sample_auc(
            held_a[:n], other, seed=cfg.seed, steps=cfg.c2st_steps
        )
    if sae:
        say.step(f"loading the SAE {sae}")
        sae_model = load_sae(sae, device)
    else:
        say.step(f"training an SAE-Lens TopK SAE ({cfg.d_sae} latents, k={cfg.sae_k}, {cfg.sae_steps} steps)")
        sae_model = train_sae(
            train_src,
            d_sae=cfg.d_sae,
            k=cfg.sae_k,
            steps=cfg.sae_steps,
            seed=cfg.seed,
            device=device or "cpu",
            progress=progress,
        )
    with torch.no_grad():
        recon = sae_model.decode(sae_model.encode(held_a[:n].to(next(sae_model.parameters()).device))).cpu()
    result.numbers["sae_fraction_variance_unexplained"] = float(
        ((recon - held_a[:n]) ** 2).sum() / ((held_a[:n] - held_a[:n].mean(0)) ** 2).sum()
    )
    say.step(f"delta LM loss on {len(eval_texts)} documents: clean, prior projection, SAE reconstruction")
    lm = compare_delta_lm_loss(
        model,
        eval_texts,
        hook,
        {
            "prior": projection_hook(prior, ProjectionConfig(seed=cfg.seed), positions=slice(1, None)),
            "sae": sae_reconstruction_hook(sae_model),
        },
        seed=cfg.seed,
        progress=progress,
    )
    result.numbers["lm_loss_clean"] = lm.clean.mean()
    for name in ("prior", "sae"):
        d, lo, hi = lm.delta(name)
        result.numbers.update({f"delta_lm_loss_{name}": d, f"delta_lm_loss_{name}_ci": [lo, hi]})
    d, lo, hi = lm.difference("prior", "sae")
    result.numbers.update(
        {
            "delta_lm_loss_prior_minus_sae": d,
            "delta_lm_loss_prior_minus_sae_ci": [lo, hi],
            "lm_eval_docs": len(eval_texts),
            "lm_eval_tokens": int(lm.clean.counts.sum()),
        }
    )

    # 4. steering ---------------------------------------------------------------------------------
    say.stage(
        "steering",
        f"{cfg.steer_prompts} prompts x {len(cfg.strengths)} strengths x plain/prior, {cfg.new_tokens} new tokens",
    )
    if testbed is not None:
        docs = list(testbed.language.documents(600, seed=cfg.seed + 2))
        positive, negative = judgement_prefixes(docs, "positive"), judgement_prefixes(docs, "negative")
        prompts = steering_prompts(testbed.language, cfg.steer_prompts, seed=cfg.seed + 3)
        scorers: list[Any] = [grammatical_scorer(testbed.language)]
        concept: Any = concept_scorer(testbed.language)
    else:
        positive, negative = DEMO_POSITIVE, DEMO_NEGATIVE
        prompts = ["I think that", "The movie was", "Yesterday we", "My friend said"][: cfg.steer_prompts]
        scorers, concept = [], None
    # the sentiment direction where it matters: at the last token before a judged adjective
    direction = diff_of_means(model, positive, negative, hook, positions="last" if testbed is not None else "all")
    df = steering_sweep(
        model,
        direction,
        prompts,
        prior=prior,
        strengths=cfg.strengths,
        hook_name=hook,
        max_new_tokens=cfg.new_tokens,
        concept=concept,
        scorers=scorers,
        seed=cfg.seed,
        progress=progress,
    )
    df.to_csv(out / "steering.csv", index=False)
    plot_pareto(df, out / "steering_pareto.png", title="Sentiment steering: concept vs fluency")
    result.figures.append("steering_pareto.png")
    result.tables["steering"] = steering_table(df)
    if concept is not None:
        for fluency in ("grammatical", "nll"):
            if fluency in df.columns:
                gain = matched_concept_gain(df, fluency=fluency, seed=cfg.seed)
                result.numbers[f"steering_gain_{fluency}"] = gain.to_dict()
    mid = sorted(cfg.strengths)[len(cfg.strengths) // 2]
    chosen = df[df.r.isin([0.0, mid])].sort_values(["prompt", "method"], kind="stable")
    examples = chosen[chosen.prompt.isin(list(dict.fromkeys(df.prompt))[:4])]  # none / plain / prior side by side
    result.tables["steering_examples"] = examples[["prompt", "method", "r", "continuation"]]

    # 4b. steering head to head (tl_glp.studies.steering_map) -- begin --------------------------------------------
    if cfg.map_prompts > 0:
        say.stage(
            "steering head to head", f"{cfg.map_prompts} prompts x {len(cfg.map_strengths)} strengths x every projector"
        )
        map_args: dict[str, Any] = dict(
            hook_name=hook,
            out_dir=out,
            n_prompts=cfg.map_prompts,
            strengths=cfg.map_strengths,
            positions=[p.strip() for p in cfg.map_positions.split(",") if p.strip()],
            max_new_tokens=cfg.map_new_tokens,
            pca_k=cfg.map_pca_k,
            n_diagnose=cfg.map_diagnose,
            seed=cfg.seed,
            progress=progress,
        )
        if testbed is not None:  # ground truth: concept, grammar, probes of every latent
            steering_map = testbed_steering_map(
                testbed, prior, train_rows, sae_model, direction, n_probe_prefixes=cfg.map_probe_prefixes, **map_args
            )
        else:  # the same sweep and diagnosis on prefixes of held-out text, concept along the direction, NLL fluency
            steering_map = model_steering_map(model, prior, train_rows, sae_model, direction, eval_texts, **map_args)
        result.numbers.update(steering_map.numbers)
        result.tables["steering_map_md"] = steering_map.markdown
        result.figures += steering_map.figures
    # 4b. steering head to head -- end ----------------------------------------------------------------------------

    # 5. probing ----------------------------------------------------------------------------------
    say.stage("probing")
    sources = [MetaNeurons(prior), RawActivations(), MLPNeurons(), PCAFeatures(64), SAEFeatures(sae_model)]
    if testbed is not None:
        probe_sets: Any = [load_dataset(frame, name=name) for name, frame in testbed.datasets.items()]
    else:
        probe_sets = _split_dataset_args(datasets)[1]
    probing = run_probing(model, prior, sources, probe_sets, hook_name=hook, top_k=cfg.probe_top_k, progress=progress)
    probing.to_csv(out / "probing.csv")
    probing.plot(out / "probing.png", a="meta", b="raw")
    result.figures.append("probing.png")
    result.tables["probing_summary"] = probing.summary()
    result.tables["probing"] = (
        probing.table[~probing.table.control]
        .pivot_table(index="dataset", columns="source", values="test_auc")
        .reset_index()
    )
    result.tables["probing_wins"] = probing.wins()
    result.tables["probing_paired"] = probing.paired("meta", seed=cfg.seed)

    if testbed is not None:  # 6. ground-truth monosemanticity of single units (tl_glp.interpret)
        say.stage("ground-truth monosemanticity", f"{cfg.gt_docs} documents, 4 sources")
        gt_sources = {
            "meta": MetaNeurons(prior),
            "sae": SAEFeatures(sae_model),
            "raw": RawActivations(),
            "mlp": MLPNeurons(),
        }
        gt_docs = list(testbed.language.documents(cfg.gt_docs, seed=cfg.seed + 4))
        gt_numbers, result.tables["interpret_md"] = ground_truth_section(
            model, gt_sources, gt_docs, hook, out, progress=progress
        )
        result.numbers.update(gt_numbers)
        result.figures.append("monosemanticity.png")

    # 7. off-manifold detection (tl_glp.manifold.detection) ------------------------------------------------------
    say.stage("off-manifold detection", f"{cfg.manifold_rows} natural rows per condition")
    result.tables["manifold"] = _off_manifold_section(
        model, prior, eval_texts, hook, direction, sae_model, cfg, progress
    )
    result.tables["manifold"].to_csv(out / "off_manifold.csv", index=False)

    result.numbers["seconds"] = time.perf_counter() - clock
    result.numbers["versions"] = library_versions()
    result.tables["conclusions"] = conclusions(result)
    _write_report(result, cfg, model_name, hook)
    if progress:
        print(summary_text(result))
    return result


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose numerics the demo's figures depend on (recorded in ``numbers.json`` and the
    report, so that a figure that moves between two machines can be traced to a version).

    >>> sorted(library_versions())[:2]
    ['numpy', 'sae-lens']
    """
    import importlib.metadata as md

    out = {}
    for name in ("numpy", "sae-lens", "scikit-learn", "torch", "transformer-lens"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _is_csv(name: str) -> bool:
    return str(name).endswith((".csv", ".csv.gz", ".csv.zst"))


def _split_dataset_args(datasets: list[str] | None) -> tuple[str | None, Any]:
    """For a real model, ``--dataset`` values are a text corpus (a Hugging Face id with a "/"),
    SAE-Probes dataset names (or "all") and local CSV files with ``prompt`` and ``target`` columns
    (probing datasets). Returns (corpus, probing datasets): the corpus defaults to
    ``NeelNanda/pile-10k``, or to ``None`` when CSV files are given (then their prompts are the
    corpus, so the demo runs offline); the probing datasets default to "all"."""
    names = datasets or []
    csvs = [d for d in names if _is_csv(d)]
    corpora = [d for d in names if "/" in d and not _is_csv(d)]
    probes = [d for d in names if "/" not in d and not _is_csv(d)]
    corpus = corpora[0] if corpora else (None if csvs else "NeelNanda/pile-10k")
    if csvs and not probes:
        return corpus, csvs
    return corpus, ("all" if not probes or "all" in probes else probes + csvs)


def _corpus_texts(corpus: str | None, probe_args: Any, n: int) -> list[str]:
    """``n`` documents: streamed from the Hugging Face dataset ``corpus`` (needs the Hub), or,
    with ``corpus=None``, the prompts of the CSV probing datasets repeated as often as needed."""
    if corpus is not None:
        stream = iter(HFText(corpus))
        return [next(stream) for _ in range(n)]
    import pandas as pd

    prompts: list[str] = []
    for path in [p for p in probe_args if _is_csv(p)]:
        frame = pd.read_csv(path)
        if "prompt" not in frame.columns:
            raise ValueError(
                f"{path} has no 'prompt' column (found {list(frame.columns)}); a probing CSV needs 'prompt' and 'target'."
            )
        prompts += [str(t) for t in frame["prompt"].dropna()]
    if not prompts:
        raise ValueError(
            "No texts for the activations: pass a Hugging Face text dataset id or a CSV with prompts as --dataset."
        )
    return [prompts[i % len(prompts)] for i in range(n)]


def steering_table(df: Any) -> Any:
    """Per method and strength: how many generations, how many of them have a concept score (a
    continuation without a sentiment word has none), and the means of the scores (concept over
    the scored ones only; NaN, printed "n/a", only where none was scored)."""
    metrics = [c for c in ("concept", "grammatical", "nll") if c in df.columns]
    groups = df.groupby(["method", "r"], sort=True)
    table = groups.size().rename("n_generations").to_frame()
    if "concept" in df.columns:
        table["n_concept_scored"] = groups["concept"].count()
    table = table.join(groups[metrics].mean())
    return table.reset_index()


PRACTICAL_MARGINS = {"delta_lm_loss": 0.01, "grammatical": 0.05, "nll": 0.1, "probe_auc": 0.01}
"""The smallest difference each headline comparison treats as real, fixed before any run: delta LM
loss 0.01 nats per token (0.6% of the testbed's clean loss; the paper's GLP-vs-SAE gap is 0.15),
fluency 0.05 in share of grammatical continuations or 0.1 nats of NLL, probe AUC 0.01 (the
region of practical equivalence Benavoli et al. 2017 use for classifier comparisons)."""


def read_verdict(lo: float, hi: float, margin: float, above: str, below: str) -> str:
    """The verdict a 95% CI ``[lo, hi]`` of a difference supports, with a region of practical
    equivalence ``(-margin, margin)``: a CI inside it says the two are equivalent (whatever side
    of 0 it lies on, so that a difference too small to matter does not flip with the seed); a CI
    above or below 0 otherwise says which is ahead; anything else holds no clear difference.

    >>> read_verdict(0.002, 0.006, 0.01, "A ahead", "B ahead")
    'equivalent (the CI lies within +-0.01)'
    >>> read_verdict(0.02, 0.2, 0.01, "A ahead", "B ahead")
    'A ahead'
    >>> read_verdict(-0.004, 0.17, 0.01, "A ahead", "B ahead")
    'no clear difference (the CI holds 0)'
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "not measurable"
    if -margin < lo and hi < margin:
        return f"equivalent (the CI lies within +-{margin:g})"
    return above if lo > 0 else below if hi < 0 else "no clear difference (the CI holds 0)"


def conclusions(result: DemoResult) -> Any:
    """The comparisons the demo headlines, each with its estimate, 95% CI, what it rests on and a
    verdict read off the CI and the :data:`PRACTICAL_MARGINS` (see :func:`read_verdict`)."""
    import pandas as pd

    n = result.numbers
    rows = []
    d, (lo, hi) = n["delta_lm_loss_prior_minus_sae"], n["delta_lm_loss_prior_minus_sae_ci"]
    rows.append(
        {
            "comparison": "delta LM loss: prior projection - SAE reconstruction",
            "estimate": d,
            "ci_low": lo,
            "ci_high": hi,
            "rests_on": f"{n['lm_eval_docs']} documents, {n['lm_eval_tokens']} tokens",
            "verdict": read_verdict(
                lo,
                hi,
                PRACTICAL_MARGINS["delta_lm_loss"],
                "the prior costs more LM loss than the SAE",
                "the prior costs less LM loss than the SAE",
            ),
        }
    )
    for fluency, unit in (("grammatical", "share grammatical"), ("nll", "NLL, sign flipped")):
        gain = n.get(f"steering_gain_{fluency}")
        if gain is None:
            continue
        verdict = (
            gain["reason"]
            if not math.isfinite(gain["gain"])
            else read_verdict(
                gain["ci_low"],
                gain["ci_high"],
                PRACTICAL_MARGINS[fluency],
                "prior-guided steering is more fluent at matched concept",
                "prior-guided steering is less fluent at matched concept",
            )
        )
        rows.append(
            {
                "comparison": f"steering: fluency gain of prior-guided over plain at matched concept ({unit})",
                "estimate": gain["gain"],
                "ci_low": gain["ci_low"],
                "ci_high": gain["ci_high"],
                "rests_on": f"{gain['n_prompts']} prompts; {gain['n_plain']} plain and {gain['n_prior']} prior-guided scored generations "
                f"({gain['n_nan_concept']} without a sentiment word left out); concept range {gain['concept_low']:.2f}..{gain['concept_high']:.2f}",
                "verdict": verdict,
            }
        )
    for row in result.tables["probing_paired"].itertuples():
        rows.append(
            {
                "comparison": f"1-D probing: meta-neurons - {row.other} (test AUC)",
                "estimate": row.mean_difference,
                "ci_low": row.ci_low,
                "ci_high": row.ci_high,
                "rests_on": f"{row.n_datasets} datasets",
                "verdict": read_verdict(
                    row.ci_low,
                    row.ci_high,
                    PRACTICAL_MARGINS["probe_auc"],
                    f"meta-neurons ahead of {row.other}",
                    f"meta-neurons behind {row.other}",
                ),
            }
        )
    return pd.DataFrame(rows)


def summary_text(result: DemoResult) -> str:
    """The printed summary: the headline numbers and tables."""
    n = result.numbers
    lines = ["", "=== tl-glp demo summary ==="]
    if "testbed_lm_loss" in n:
        lines.append(
            f"testbed LM loss {n['testbed_lm_loss']:.3f} nats/token vs entropy floor (lower bound) {n['testbed_entropy_floor']:.3f}"
        )
    lines += [
        f"Frechet distance (FD-infinity, {n['eval_samples']} samples per side): prior {n['fd_prior']:.3f} | lower bound (real rows, other documents) {n['fd_lower_bound']:.3f} | "
        f"held-out halves {n['fd_held_out_halves']:.3f} | moment-matched Gaussian {n['fd_gaussian']:.3f}",
        f"classifier two-sample AUC vs held-out (0.5 = indistinguishable): prior {n['c2st_auc_prior']:.3f} | Gaussian {n['c2st_auc_gaussian']:.3f} | held-out {n['c2st_auc_held_out']:.3f}",
        f"delta LM loss (clean {n['lm_loss_clean']:.3f}): prior projection {n['delta_lm_loss_prior']:+.4f} [{n['delta_lm_loss_prior_ci'][0]:+.4f}, {n['delta_lm_loss_prior_ci'][1]:+.4f}] | "
        f"SAE reconstruction {n['delta_lm_loss_sae']:+.4f} [{n['delta_lm_loss_sae_ci'][0]:+.4f}, {n['delta_lm_loss_sae_ci'][1]:+.4f}] (SAE FVU {n['sae_fraction_variance_unexplained']:.3f})",
        "",
        "steering (per method and strength r; concept averaged over the generations that have a sentiment word):",
        _text_table(result.tables["steering"]),
        "",
        "probing (mean test AUC, 95% bootstrap CI over datasets):",
        _text_table(result.tables["probing_summary"]),
        "",
        "conclusions (95% CIs; 'equivalent' where the CI lies within the practical margin, a direction only where it excludes 0):",
        _text_table(result.tables["conclusions"]),
        "",
        f"report: {result.out_dir / 'report.md'}  ({n['seconds']:.0f} s)",
    ]
    return "\n".join(lines)


def _off_manifold_section(
    model: Any,
    prior: GenerativePrior,
    texts: list[str],
    hook: str,
    direction: Any,
    sae: Any,
    cfg: DemoSettings,
    progress: bool,
) -> Any:
    """ROC-AUC of each on-manifold score for natural vs steered (sentiment and random directions)
    vs shuffled-word activations, as a wide table: one row per condition, one column per score."""

    scores = ["denoising", "mahalanobis", "sae_error"] + (["log_prob"] if cfg.manifold_log_prob_probes > 0 else [])
    log_prob_kwargs = {"method": "hutchinson", "n_probes": cfg.manifold_log_prob_probes, "rtol": 1e-3, "atol": 1e-3}
    df = detect_off_manifold(
        model,
        prior,
        texts,
        hook_name=hook,
        directions={"sentiment": direction},
        strengths=(0.05, 0.1, 0.25),
        sae=sae,
        scores=scores,
        max_rows=cfg.manifold_rows,
        log_prob_kwargs=log_prob_kwargs,
        seed=cfg.seed,
        progress=progress,
    )
    wide = df.pivot_table(index=["condition", "r"], columns="score", values="auc").reset_index()
    counts = df.groupby(["condition", "r"])[["n_natural", "n_off"]].first().reset_index()
    return wide.merge(counts, on=["condition", "r"])


def _write_report(result: DemoResult, cfg: DemoSettings, model_name: str, hook: str) -> None:
    n = result.numbers
    parts = [
        "# tl-glp demo report",
        "",
        f"Model: `{model_name}`, hook `{hook}`; {n['activation_rows']} activation rows; settings: `{json.dumps(asdict(cfg))}`; took {n['seconds']:.0f} s; "
        f"versions: `{json.dumps(n.get('versions', {}))}`.",
        "",
    ]
    if "testbed_lm_loss" in n:
        parts += [
            "## 1. Testbed model",
            "",
            f"Held-out LM loss **{n['testbed_lm_loss']:.3f}** nats/token; the generator's entropy given the latent variables is "
            f"{n['testbed_entropy_floor']:.3f} (a lower bound: a model must also infer topic, sentiment and tense from the words).",
            "",
        ]
    ci = lambda key: f"[{n[key][0]:+.4f}, {n[key][1]:+.4f}]"  # noqa: E731
    parts += [
        "## Conclusions",
        "",
        "Each headline comparison with its 95% CI and what it rests on; the verdict is read off the CI "
        '("equivalent" where it lies within the smallest difference that matters, fixed before any run: '
        + ", ".join(f"{k} {v:g}" for k, v in PRACTICAL_MARGINS.items())
        + '; "no clear difference" where it holds 0 otherwise), and is reported as measured, whichever way it falls.',
        "",
        _md_table(result.tables["conclusions"]),
        "",
        "## 2-3. The prior",
        "",
        "![loss](prior/loss.png)",
        "",
        f"Frechet distance as FD-infinity (FD at a quarter, half and all of {n['eval_samples']} samples per side, extrapolated to infinitely many); "
        "every distance is to the same held-out rows (documents the prior never saw). The lower bound takes real rows from the "
        "training documents: a prior that had learned the data exactly would score about this. Two random halves of the held-out rows "
        "can share documents (the rows of a document share its topic and sentiment), which pulls their distance down.",
        "",
        "| measure | prior | lower bound (other documents) | held-out halves (can share documents) | moment-matched Gaussian |",
        "|---|---|---|---|---|",
        f"| Frechet distance to held-out activations (FD-infinity) | {n['fd_prior']:.3f} | {n['fd_lower_bound']:.3f} | {n['fd_held_out_halves']:.3f} | {n['fd_gaussian']:.3f} |",
        f"| Frechet distance at N = {n['eval_samples']} | {n['fd_prior_at_n']:.3f} | {n['fd_lower_bound_at_n']:.3f} | {n['fd_held_out_halves_at_n']:.3f} | {n['fd_gaussian_at_n']:.3f} |",
        f"| classifier two-sample AUC (0.5 = indistinguishable) | {n['c2st_auc_prior']:.3f} | | {n['c2st_auc_held_out']:.3f} | {n['c2st_auc_gaussian']:.3f} |",
        "",
        f"Delta LM loss when every non-BOS activation at `{hook}` is replaced (clean loss {n['lm_loss_clean']:.3f}; "
        f"{n['lm_eval_docs']} documents, {n['lm_eval_tokens']} tokens; 95% bootstrap CI over documents):",
        "",
        "| replacement | delta LM loss | 95% CI |",
        "|---|---|---|",
        f"| prior projection (t=0.5, 20 steps) | {n['delta_lm_loss_prior']:+.4f} | {ci('delta_lm_loss_prior_ci')} |",
        f"| SAE reconstruction (SAE-Lens TopK, FVU {n['sae_fraction_variance_unexplained']:.3f}) | {n['delta_lm_loss_sae']:+.4f} | {ci('delta_lm_loss_sae_ci')} |",
        f"| prior - SAE (paired over documents) | {n['delta_lm_loss_prior_minus_sae']:+.4f} | {ci('delta_lm_loss_prior_minus_sae_ci')} |",
        "",
        "## 4. Steering",
        "",
        "Positive-sentiment direction (difference of means at the token before a judged adjective), plain vs prior-guided steering at the last position of each forward pass. "
        "`concept`: ground-truth sentiment score of the continuation (+1 all positive, -1 all negative), averaged over the `n_concept_scored` generations that hold a sentiment word "
        "(n/a where none does); `grammatical`: share of continuations the grammar accepts; `nll`: the unsteered model's NLL of the continuation (lower = more fluent). "
        "The conclusions above compare the two Pareto fronts at matched concept, with a bootstrap CI over prompts.",
        "",
        "![pareto](steering_pareto.png)",
        "",
        _md_table(result.tables["steering"]),
        "",
        "Examples:",
        "",
        _md_table(result.tables["steering_examples"]),
        "",
        "## 5. Probing",
        "",
        "Best single feature per source (1-D probe, 5-fold CV over C, test AUC); `(shuffled labels)` rows are the permutation null.",
        "",
        "![probing](probing.png)",
        "",
        _md_table(result.tables["probing_summary"]),
        "",
        "Meta-neurons minus each other source, per dataset, with a paired bootstrap CI over datasets:",
        "",
        _md_table(result.tables["probing_paired"]),
        "",
        "Per dataset (test AUC):",
        "",
        _md_table(result.tables["probing"]),
        "",
        "Wins (row beats column, datasets):",
        "",
        _md_table(result.tables["probing_wins"].reset_index()),
        "",
    ]
    if "steering_map_md" in result.tables:  # 4b. steering head to head
        parts += [result.tables["steering_map_md"], ""]
    if "interpret_md" in result.tables:
        parts.append(result.tables["interpret_md"])
    if "manifold" in result.tables:
        parts += [
            "",
            "## 7. How on-manifold? Off-manifold detection",
            "",
            "ROC-AUC (0.5 = chance) for telling held-out natural activations from the same activations steered by `r * act_norm` "
            "along the sentiment direction or a random one, and from activations of the same texts with their words shuffled. "
            "Scores (higher = further off): `denoising` (the prior's flow-matching error at t = 0.1, 0.3, 0.5), `mahalanobis` "
            "(a Gaussian fitted to other natural activations), `sae_error` (the SAE's reconstruction error), and `log_prob` "
            "(bits per dimension under the prior, Hutchinson divergence) when enabled. `n_natural`/`n_off`: activations each AUC rests on.",
            "",
            _md_table(result.tables["manifold"]),
            "",
        ]
    (result.out_dir / "report.md").write_text("\n".join(parts))
    (result.out_dir / "numbers.json").write_text(json.dumps(result.numbers, indent=2))
