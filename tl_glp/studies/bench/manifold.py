"""``tl-glp bench score`` and ``tl-glp bench project``: on-manifold scores and cheaper projections.

- :func:`bench_score`: activations per second for ``log_prob`` (exact, Hutchinson) and
  ``denoising_score`` at the testbed width (128) and at ``d_input`` 2048.
- :func:`bench_project`: the projection-option study on the testbed: network evaluations per
  projected activation, distance to the reference projection, delta LM loss (with a paired
  bootstrap CI against the reference), steering concept/fluency at matched strength, and
  adaptive (off-manifold-only) projection.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tl_glp.activations.collect import collect_activations
from tl_glp.core import _io
from tl_glp.core.flow import evaluations, projection_schedule
from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig
from tl_glp.evaluation import document_losses
from tl_glp.manifold.adaptive import AdaptiveProjector, OffManifold
from tl_glp.manifold.likelihood import denoising_score, log_prob
from tl_glp.steering import diff_of_means, steering_sweep
from tl_glp.steering.hooks import projection_hook
from tl_glp.studies.testbed import MIDDLE_HOOK, load
from tl_glp.studies.testbed.tasks import judgement_prefixes as _judgement_prefixes
from tl_glp.training.config import TrainConfig
from tl_glp.training.trainer import train

STUDY_METHODS = ("reference", "one_step", "euler:2", "euler:4", "heun:2")


def _print_rows(rows: dict[str, Any]) -> None:
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {shown}")


def _fitted_prior(d: int, steps: int, seed: int = 0) -> GenerativePrior:
    """A prior briefly trained on correlated Gaussian data of width ``d`` (a realistic, non-trivial field)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / d**0.5 + torch.eye(d)
    data = torch.randn(4096, d, generator=g) @ mix
    prior = GenerativePrior.from_activations(data, n_blocks=3)
    if steps == 0:  # untrained, with blocks that are not the identity (init zeroes down_proj)
        with torch.no_grad():
            for block in prior.blocks:
                block.down_proj.weight.normal_(0.0, 0.5 / block.down_proj.in_features**0.5, generator=g)
        return prior.eval()
    opt = torch.optim.AdamW(prior.parameters(), lr=1e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(data), (256,), generator=g)
        loss = prior.loss(data[idx], generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return prior.eval()


def bench_score(quick: bool = False, widths: Sequence[int] = (128, 2048)) -> dict[str, float]:
    """Activations/s of ``log_prob`` (exact, Hutchinson with 2 probes) and ``denoising_score``
    (3 times x 1 noise) on priors with 3 blocks (published widths: d_hidden 2d, d_mlp 4d; at
    2048 that is 0.3B parameters). Width 128 is briefly trained on Gaussian data; widths above
    512 are untrained with random (non-identity) blocks, and exact divergence is skipped there
    (``d`` backward passes per evaluation)."""
    out: dict[str, float] = {}
    print(
        f"bench score: CPU, {torch.get_num_threads()} threads, priors with 3 blocks (d_hidden 2d, d_mlp 4d), adaptive dopri5 rtol=atol=1e-4; "
        "log_prob throughput depends on the field (nfe), so these are for the priors described above",
        flush=True,
    )
    for d in widths:
        prior = _fitted_prior(d, 0 if d > 512 else (50 if quick else 200))
        x = torch.randn(64 if d <= 512 else 4, d)
        if d <= 512:
            start = time.perf_counter()
            res = log_prob(prior, x)
            out[f"d{d}_log_prob_exact_acts_per_s"] = len(x) / (time.perf_counter() - start)
            out[f"d{d}_log_prob_exact_nfe"] = float(res.nfe)
        start = time.perf_counter()
        res = log_prob(prior, x, method="hutchinson", n_probes=2)
        out[f"d{d}_log_prob_hutchinson2_acts_per_s"] = len(x) / (time.perf_counter() - start)
        out[f"d{d}_log_prob_hutchinson2_nfe"] = float(res.nfe)
        out[f"d{d}_log_prob_hutchinson2_median_stderr_nats"] = float(res.stderr.median())
        y = torch.randn(2048 if d <= 512 else 64, d)
        seconds = min(_timed(lambda prior=prior, y=y: denoising_score(prior, y)) for _ in range(3))
        out[f"d{d}_denoising_score_acts_per_s"] = len(y) / seconds
        _print_rows({k: v for k, v in out.items() if k.startswith(f"d{d}_")})
        print(flush=True)
    return out


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _per_doc_losses(model: Any, texts: Sequence[str], hook: str, hook_fn: Any, context: int = 64) -> torch.Tensor:
    """Mean next-token cross-entropy of each text (one row per text), optionally with a hook."""

    losses = document_losses(model, list(texts), hook, hook_fn, context_size=context)
    return (losses.sums / losses.counts.clamp_min(1)).float()


def _ci(values: torch.Tensor, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap CI (NaNs, e.g. a continuation without a scored word, dropped)."""
    values = values[~torch.isnan(values.double())]
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(values), (n_boot, len(values)), generator=g)
    means = values.double()[idx].mean(1)
    return float(values.double().mean()), float(means.quantile(0.025)), float(means.quantile(0.975))


def bench_project(
    quick: bool = False,
    methods: Sequence[str] = STUDY_METHODS,
    prior_steps: int | None = None,
    n_eval_docs: int | None = None,
    n_prompts: int | None = None,
    strengths: Sequence[float] = (0.5, 1.0),
    fpr: float = 0.1,
    seed: int = 0,
    prior: GenerativePrior | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """The projection-option study on the testbed (see the module docstring). Prints tables; returns them.

    ``prior``: a prior already trained on the testbed's middle hook (else one is trained here,
    ``prior_steps`` steps on 2000 documents). ``out``: a folder to also write ``projection.csv``,
    ``steering.csv`` and ``numbers.json`` (the sizes, threads and seconds) into, each atomically, for
    ``docs/gen_results.py``."""
    import pandas as pd

    prior_steps = prior_steps or (300 if quick else 1000)
    n_eval_docs = n_eval_docs or (40 if quick else 150)
    n_prompts = n_prompts or (6 if quick else 16)
    clock = time.perf_counter()
    tb = load(seed=seed, progress=False)
    model, hook = tb.model, MIDDLE_HOOK
    texts = tb.language.sample_texts(2000 + n_eval_docs + 200, seed=seed + 1)
    train_texts, eval_texts, calib_texts = texts[:2000], texts[2000 : 2000 + n_eval_docs], texts[2000 + n_eval_docs :]
    trained_here = prior is None
    if prior is None:
        acts = collect_activations(model, train_texts, hook, progress=False)
        torch.manual_seed(seed)
        prior = GenerativePrior.from_activations(acts, n_blocks=3)
        train(
            prior,
            acts,
            TrainConfig(batch_size=512, lr=2e-3, max_steps=prior_steps, eval_every=0, progress=False, seed=seed),
        )
    prior.eval()
    calib = collect_activations(model, calib_texts, hook, progress=False)
    calib = calib[0 : len(calib)].reshape(len(calib), -1)
    x = calib[:1000]

    # 1. distance to the reference projection (same noise), evaluations --------------------------
    ref = prior.project(x, generator=torch.Generator().manual_seed(seed))
    move = float((ref - x).norm(dim=-1).mean())
    rows = []
    base = _per_doc_losses(model, eval_texts, hook, None)
    losses = {}
    for m in methods:
        p = prior.project(x, generator=torch.Generator().manual_seed(seed), schedule=m)
        fn = projection_hook(prior, ProjectionConfig(seed=seed, schedule=m), positions=slice(1, None))
        losses[m] = _per_doc_losses(model, eval_texts, hook, fn) - base
        d, lo, hi = _ci(losses[m])
        rows.append(
            {
                "method": m,
                "evals": evaluations(*projection_schedule(0.5, 20, m)),
                "dist_to_ref_rel": float((p - ref).norm(dim=-1).mean()) / move,
                "delta_lm_loss": d,
                "ci_lo": lo,
                "ci_hi": hi,
            }
        )
    for row in rows:
        dd, lo, hi = _ci(losses[row["method"]] - losses["reference"])
        row.update({"paired_diff_vs_ref": dd, "paired_lo": lo, "paired_hi": hi})
    # adaptive: project only flagged positions (score: denoising at t=0.5, one evaluation)
    rule = OffManifold.calibrate(prior, calib[1000:], fpr=fpr, within=slice(1, None))
    projector = AdaptiveProjector(prior, rule, ProjectionConfig(seed=seed))
    fn = projection_hook(prior, projector=projector, positions=rule.within)
    adaptive = _per_doc_losses(model, eval_texts, hook, fn) - base
    share = projector.stats["projected"] / max(
        1, projector.stats["candidates"]
    )  # candidates: real tokens only (document_losses declares its right padding)
    d, lo, hi = _ci(adaptive)
    dd, plo, phi = _ci(adaptive - losses["reference"])
    rows.append(
        {
            "method": f"adaptive(fpr={fpr})",
            "evals": 1 + 10 * share,
            "dist_to_ref_rel": float("nan"),
            "delta_lm_loss": d,
            "ci_lo": lo,
            "ci_hi": hi,
            "paired_diff_vs_ref": dd,
            "paired_lo": plo,
            "paired_hi": phi,
        }
    )
    table = pd.DataFrame(rows)

    # 2. steering at matched strength ------------------------------------------------------------
    docs = list(tb.language.documents(600, seed=seed + 2))
    direction = diff_of_means(
        model, _judgement_prefixes(docs, "positive"), _judgement_prefixes(docs, "negative"), hook, positions="last"
    )
    prompts = [" ".join(doc.words[:3]) for doc in tb.language.documents(n_prompts, seed=seed + 3)]
    language = tb.language

    def sentiment(model_: Any, gens: Any) -> list[float]:
        return [language.sentiment_score(c) for c in gens.continuations]

    steer_rows = []
    rule_last = OffManifold.calibrate(prior, calib[1000:], fpr=fpr, within="last")
    options: list[tuple[str, Any]] = [(m, ProjectionConfig(schedule=m)) for m in methods] + [
        ("adaptive", AdaptiveProjector(prior, rule_last))
    ]
    frames = []
    for name, method in options:
        df = steering_sweep(
            model,
            direction,
            prompts,
            prior=prior,
            strengths=strengths,
            methods=(method,),
            hook_name=hook,
            max_new_tokens=10,
            concept=sentiment,
            include_baseline=False,
            seed=seed,
            progress=False,
            do_sample=False,
            manifold_score="denoising",
        )
        df["option"] = name
        frames.append(df)
    plain = steering_sweep(
        model,
        direction,
        prompts,
        prior=prior,
        strengths=strengths,
        methods=("plain",),
        hook_name=hook,
        max_new_tokens=10,
        concept=sentiment,
        include_baseline=True,
        seed=seed,
        progress=False,
        do_sample=False,
        manifold_score="denoising",
    )
    plain["option"] = plain["method"]
    frames.append(plain)
    sweep = pd.concat(frames, ignore_index=True)
    ref_rows = sweep[sweep.option == "reference"].set_index(["r", "prompt"])
    for (name, r), part in sweep.groupby(["option", "r"], sort=False):
        c, clo, chi = _ci(torch.tensor(part.concept.values))
        f, flo, fhi = _ci(torch.tensor(part.nll.values))
        row = {
            "option": name,
            "r": r,
            "concept": c,
            "concept_ci": f"[{clo:.3f}, {chi:.3f}]",
            "nll": f,
            "nll_ci": f"[{flo:.3f}, {fhi:.3f}]",
            "score_denoising": float(part.score_denoising.mean()),
        }
        if r in ref_rows.index.get_level_values(0) and name != "reference":
            paired = part.set_index(["r", "prompt"]).join(ref_rows[["nll", "concept"]], rsuffix="_ref").dropna()
            if len(paired):
                _, nlo, nhi = _ci(torch.tensor((paired.nll - paired.nll_ref).values))
                _, cplo, cphi = _ci(torch.tensor((paired.concept - paired.concept_ref).values))
                row["nll_minus_ref_ci"] = f"[{nlo:.3f}, {nhi:.3f}]"
                row["concept_minus_ref_ci"] = f"[{cplo:.3f}, {cphi:.3f}]"
        steer_rows.append(row)
    steering = pd.DataFrame(steer_rows)
    print(
        f"bench project: testbed, hook {hook}, prior {'trained ' + str(prior_steps) + ' steps on 2000 docs' if trained_here else 'given'}; "
        f"{len(x)} activations for distances; delta LM loss on {n_eval_docs} docs (95% bootstrap CI over docs, paired vs reference); "
        f"steering: {n_prompts} prompts x r in {list(strengths)}, 10 new tokens, greedy; CPU {torch.get_num_threads()} threads; {time.perf_counter() - clock:.0f} s"
    )
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print(steering.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in (("projection.csv", table), ("steering.csv", steering)):
            with _io.atomic_path(folder / name) as tmp:
                frame.to_csv(tmp, index=False)
        numbers = {
            "hook": hook,
            "prior": f"trained {prior_steps} steps on 2000 docs" if trained_here else "given",
            "activations": len(x),
            "eval_docs": n_eval_docs,
            "prompts": n_prompts,
            "strengths": list(strengths),
            "fpr": fpr,
            "seed": seed,
            "threads": torch.get_num_threads(),
            "seconds": time.perf_counter() - clock,
        }
        _io.write_json(folder / "numbers.json", numbers)
        print(f"wrote {folder / 'projection.csv'}, {folder / 'steering.csv'} and {folder / 'numbers.json'}")
    return {"projection": table, "steering": steering}
