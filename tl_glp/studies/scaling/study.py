"""The scaling study: a ladder of priors over compute, the same evaluations on every checkpoint.

One run per depth is trained up to ``max_samples`` training samples with a constant learning rate
after a short warmup, and checkpointed at geometrically spaced sample counts (a decaying schedule
would make the intermediate checkpoints non-final models of their run). Compute is
``C = 6 * params * samples`` with ``params`` the denoiser's parameter count. Every checkpoint is
evaluated (:mod:`tl_glp.studies.scaling.evals`) and its figures cached as JSON; the references (SAEs,
plain steering, lower bounds, activations) are computed once. A killed study resumes: training
continues from the newest checkpoint and finished evaluations are read back, not recomputed.

Layout of the study folder::

    study.json                 settings, data and held-out rule fingerprint (a change is refused)
    data/activations.safetensors   training and held-out activations (collected once)
    saes/k{K}/                 SAE-Lens SAEs (``SAE.load_from_disk``)
    references.json            lower bounds, Gaussian, SAEs' delta LM loss, raw probes, clean loss
    steering_plain.csv         plain steering (does not depend on the prior)
    runs/depth{D}/checkpoints/step_{N}/   the ladder
    evals/depth{D}_samples{S}.json        per-checkpoint figures
    timing.json                wall time per phase; report.md, scaling.csv, *.png (tl_glp.studies.scaling.report)

Example (a tiny study on a random model; the testbed and ``tl-glp scaling`` run real ones)::

    study = run_scaling_study(model, "blocks.1.hook_resid_post", texts, probe_sets, task, "study_out",
                              settings=ScalingSettings.quick())
    study.fit.alpha, study.table[["depth", "samples", "val_loss"]]
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from tl_glp.activations.collect import collect_activations
from tl_glp.core import _io
from tl_glp.core.prior import GenerativePrior
from tl_glp.evaluation import lm_loss_with_hook
from tl_glp.probing import RawActivations, last_token_activations, load_dataset, probe_1d
from tl_glp.saes import sae_reconstruction_hook, train_sae
from tl_glp.steering import diff_of_means, steering_sweep
from tl_glp.studies.scaling import evals, report
from tl_glp.studies.scaling.settings import ScalingSettings
from tl_glp.studies.splits import held_out_rule, held_out_split, other_document_rows
from tl_glp.training.config import TrainConfig
from tl_glp.training.trainer import train


@dataclass
class SteeringTask:
    """What the study steers towards and how generations are judged.

    ``direction`` is used as given; otherwise it is the difference of means of ``positive`` and
    ``negative`` texts at the hook (positions ``direction_positions``). ``concept`` is a scorer
    ``(model, generations) -> list[float]`` (None: the unsteered activations projected on the
    direction); ``scorers`` add columns (e.g. a ``grammatical`` scorer); ``fluency`` names the
    column the gain is measured in (``"nll"``, always computed, lower is better; or a scorer's name).
    """

    prompts: list[str]
    direction: Tensor | None = None
    positive: list[str] = field(default_factory=list)
    negative: list[str] = field(default_factory=list)
    direction_positions: str = "all"
    concept: Callable[..., list[float]] | None = None
    scorers: list[Any] = field(default_factory=list)
    fluency: str = "nll"
    higher_is_better: bool | None = None
    """For ``fluency``; None: False for ``"nll"``, True otherwise."""
    name: str = "steering"

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("SteeringTask needs at least one prompt.")
        if self.direction is None and not (self.positive and self.negative):
            raise ValueError(
                "SteeringTask needs a direction, or positive and negative texts to take a difference of means from."
            )

    def fingerprint(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "prompts": _digest(self.prompts),
            "fluency": self.fluency,
            "direction": _digest([str(round(float(v), 5)) for v in self.direction])
            if self.direction is not None
            else None,
            "positive": _digest(self.positive),
            "negative": _digest(self.negative),
            "positions": self.direction_positions,
        }


@dataclass
class ScalingResult:
    """What :func:`run_scaling_study` returns (everything is also on disk in ``out_dir``)."""

    out_dir: Path
    table: Any
    """One row per checkpoint (``scaling.csv``)."""
    references: dict[str, Any]
    fit: Any
    """The :class:`~tl_glp.studies.scaling.fit.PowerLawFit` on the frontier, or None with fewer than 4 frontier points."""
    correlations: dict[str, Any]
    timing: dict[str, Any]


def _digest(items: Sequence[str]) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(item.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _legacy_held_out(saved: dict[str, Any]) -> dict[str, Any]:
    """The held-out rule of a folder written before study.json recorded it: every such folder was made by
    version 1 of :func:`held_out_split`'s rule (it had not changed since the scaling study was written)."""
    settings = saved.get("settings", {})
    rule = held_out_rule(settings.get("held_out_rows"), settings.get("seed"))
    return {**rule, "version": 1}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {old.get(k)} -> {new.get(k)}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    )


def _check_study(out: Path, fingerprint: dict[str, Any]) -> None:
    path = out / "study.json"
    fingerprint = json.loads(json.dumps(fingerprint))
    if not path.is_file():
        _io.write_json(path, fingerprint)
        return
    saved = _io.read_json(path)
    legacy = "held_out" not in saved and "held_out" in fingerprint
    if legacy:
        saved = {**saved, "held_out": _legacy_held_out(saved)}
    if saved == fingerprint:
        if legacy:
            _io.write_json(path, fingerprint)  # record the rule now that it is known to be the same
        return
    changed = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
    details = [
        f"{key}: {_differences(saved.get(key) or {}, fingerprint[key])}"
        for key in ("settings", "held_out")
        if key in changed and isinstance(fingerprint.get(key), dict)
    ]
    detail = f" ({'; '.join(details)})" if details else ""
    why = "Its results cannot be mixed with these"
    fix = "pass another output folder, or delete this one to start over."
    if "held_out" in changed:
        why += " (its checkpoints were evaluated on held-out rows chosen by another rule)"
        old = saved["held_out"]
        fix = (
            "pass another output folder to start a study under this held-out rule, or resume this one under the rule "
            f"that made it ({old.get('split')} version {old.get('version')} with held_out_rows={old.get('held_out_rows')}, "
            f"seed={old.get('seed')})."
        )
    raise ValueError(
        f"{out} holds a scaling study with other inputs: {', '.join(changed)} differ{detail}. {why}: {fix}"
    )


class _Timer:
    """Wall time per phase, added to what earlier (interrupted) invocations recorded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.previous = _io.read_json(path).get("seconds", {}) if path.is_file() else {}
        self.now: dict[str, float] = {}

    def add(self, phase: str, seconds: float) -> None:
        self.now[phase] = self.now.get(phase, 0.0) + seconds

    def summary(self) -> dict[str, Any]:
        total = {k: self.previous.get(k, 0.0) + self.now.get(k, 0.0) for k in set(self.previous) | set(self.now)}
        wall = sum(total.values())
        steps = total.get("train_steps", 0.0)
        return {
            "seconds": total,
            "wall_seconds": wall,
            "this_invocation": self.now,
            "share_outside_training_steps": (1 - steps / wall) if wall > 0 else 0.0,
        }

    def save(self) -> dict[str, Any]:
        summary = self.summary()
        _io.write_json(self.path, summary)
        return summary


def run_scaling_study(
    model: Any,
    hook_name: str,
    texts: Sequence[str],
    probing_datasets: Sequence[Any],
    steering: SteeringTask,
    out_dir: str | Path = "scaling_out",
    *,
    settings: ScalingSettings | None = None,
    device: str | None = None,
    model_name: str | None = None,
    progress: bool = True,
) -> ScalingResult:
    """Train the ladder, evaluate every checkpoint, fit ``L(C)`` and write the report (see module docstring).

    Args:
        model: a TransformerLens model (``HookedTransformer`` or ``TransformerBridge``).
        hook_name: the hook whose activations the priors model.
        texts: documents; the last ``settings.lm_eval_docs`` measure delta LM loss, the first
            ``settings.n_docs`` of the rest give the activations (the last documents held out).
        probing_datasets: what :func:`tl_glp.probing.load_dataset` accepts (names, DataFrames, CSVs).
        steering: the :class:`SteeringTask`.
        device: where priors train and run (default: CUDA when available).
    """
    import pandas as pd

    cfg = settings or ScalingSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = list(texts)
    if len(texts) <= cfg.lm_eval_docs:
        raise ValueError(
            f"{len(texts)} texts: need more than lm_eval_docs={cfg.lm_eval_docs} (those measure delta LM loss; the rest give activations)."
        )
    lm_texts, act_texts = texts[-cfg.lm_eval_docs :], texts[: -cfg.lm_eval_docs][: cfg.n_docs]
    name = model_name or getattr(getattr(model, "cfg", None), "model_name", None) or type(model).__name__
    _check_study(
        out,
        {
            "settings": cfg.to_dict(),
            "model": name,
            "hook": hook_name,
            "texts": _digest(act_texts),
            "lm_texts": _digest(lm_texts),
            "probing": [_dataset_key(d) for d in probing_datasets],
            "steering": steering.fingerprint(),
            "held_out": held_out_rule(cfg.held_out_rows, cfg.seed, held_out_split),
        },
    )
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    timer = _Timer(out / "timing.json")
    say = print if progress else (lambda *a, **k: None)

    tick = time.perf_counter()
    train_rows, held_a, held_all = _activations(model, hook_name, act_texts, cfg, out, progress)
    timer.add("collect_activations", time.perf_counter() - tick)

    tick = time.perf_counter()
    say("[scaling] references (SAEs, lower bounds, plain steering, probing activations)")
    refs, ctx = _references(
        model, hook_name, train_rows, held_a, held_all, lm_texts, probing_datasets, steering, cfg, out, dev, progress
    )
    timer.add("references", time.perf_counter() - tick)
    timer.save()

    rows = []
    for depth in cfg.depths:
        run_dir = out / "runs" / f"depth{depth}"
        steps = cfg.checkpoint_steps()
        pending = [s for s in steps if not (out / "evals" / f"depth{depth}_samples{s * cfg.batch_size}.json").is_file()]
        if pending and not _all_checkpoints(run_dir, steps):
            say(f"[scaling] training depth {depth} to {cfg.max_samples} samples (checkpoints at steps {steps})")
            result = _train_depth(depth, train_rows, hook_name, name, cfg, run_dir, dev, progress)
            timer.add("train_steps", result.seconds.get("steps", 0.0))
            timer.add(
                "train_checkpoint_io",
                result.seconds.get("checkpoint", 0.0)
                + result.seconds.get("setup", 0.0)
                + result.seconds.get("eval", 0.0),
            )
            timer.save()
        for step in tqdm(steps, desc=f"evaluate depth {depth}", disable=not progress):
            samples = step * cfg.batch_size
            path = out / "evals" / f"depth{depth}_samples{samples}.json"
            if path.is_file():
                record = _io.read_json(path)
            else:
                tick = time.perf_counter()

                prior = GenerativePrior.from_pretrained(run_dir, checkpoint=f"step_{step:08d}", device=dev)
                params = sum(p.numel() for p in prior.parameters())
                timer.add("checkpoint_load", time.perf_counter() - tick)
                tick = time.perf_counter()
                figures = evals.evaluate_checkpoint(prior, ctx, progress=False)
                timer.add("eval", time.perf_counter() - tick)
                record = {
                    "depth": depth,
                    "step": step,
                    "samples": samples,
                    "params": params,
                    "compute": 6.0 * params * samples,
                    **figures,
                }
                _io.write_json(path, record)
                timer.save()
            rows.append(record)

    tick = time.perf_counter()
    table = pd.DataFrame.from_records(rows)
    timing = timer.summary()
    fit, correlations = report.write_report(
        out, table, refs, cfg, timing, model_name=name, hook_name=hook_name, steering=steering
    )
    timer.add("report", time.perf_counter() - tick)
    timing = timer.save()
    say(report.timing_text(timing))
    return ScalingResult(out, table, refs, fit, correlations, timing)


def _dataset_key(spec: Any) -> str:
    if isinstance(spec, (str, Path)):
        return str(spec)
    named = getattr(spec, "name", None)
    return str(named) if named is not None else f"{type(spec).__name__}:{len(spec)}"


def _activations(
    model: Any, hook: str, texts: list[str], cfg: ScalingSettings, out: Path, progress: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """(training rows, held-out half A, all held-out rows); collected once and cached as safetensors."""

    path = out / "data" / "activations.safetensors"
    if path.is_file():
        acts = _io.read_tensors(path)["acts"]
    else:
        src = collect_activations(model, texts, hook, progress=progress)
        acts = src[0 : len(src)].float().contiguous()
        _io.write_tensors(path, {"acts": acts})
    n_held = min(cfg.held_out_rows, len(acts) // 4)
    if len(acts) - max(n_held, len(acts) // 4) < cfg.batch_size or n_held < 16:
        raise ValueError(
            f"Only {len(acts)} activation rows: too few for a held-out set of {cfg.held_out_rows} and batches of {cfg.batch_size}. Pass more texts or lower the sizes."
        )
    split = held_out_split(acts, n_held, cfg.seed)  # the last quarter of the documents, never trained on
    return split.train, split.held_a, split.held_all


def _references(
    model: Any,
    hook: str,
    train_rows: Tensor,
    held_a: Tensor,
    held_all: Tensor,
    lm_texts: list[str],
    probing_datasets: Sequence[Any],
    task: SteeringTask,
    cfg: ScalingSettings,
    out: Path,
    dev: torch.device,
    progress: bool,
) -> tuple[dict[str, Any], Any]:
    """The once-per-study figures (``references.json``) and the evaluation context."""
    import numpy as np
    import pandas as pd

    ref_path = out / "references.json"
    refs: dict[str, Any] = _io.read_json(ref_path) if ref_path.is_file() else {}

    def keep(key: str, compute: Callable[[], Any]) -> Any:
        if key not in refs:
            refs[key] = compute()
            _io.write_json(ref_path, refs)
        return refs[key]

    held_b = held_all[len(held_a) :]
    n = min(cfg.fd_samples, len(held_a), len(held_b))
    m = min(cfg.c2st_samples, n)
    gaussian = evals.gaussian_like(train_rows, n, seed=cfg.seed + 1)
    # the lower bound: real rows of other documents (the held-out halves can share documents, which pulls their distance down)
    other_docs = other_document_rows(train_rows, n, cfg.seed + 2)
    for key, other in (("fd_lower_bound", other_docs), ("fd_held_out_halves", held_b[:n]), ("fd_gaussian", gaussian)):
        if key not in refs or f"{key}_at_n" not in refs:
            fdi = evals.frechet_distance_infinity(other, held_a[:n], seed=cfg.seed)
            keep(key, lambda fdi=fdi: fdi.fd_inf)
            keep(f"{key}_at_n", lambda fdi=fdi: fdi.fd_at_n[-1])
    keep(
        "c2st_held_out",
        lambda: evals.classifier_two_sample_auc(held_a[:m], held_b[:m], seed=cfg.seed, steps=cfg.c2st_steps),
    )
    keep(
        "c2st_gaussian",
        lambda: evals.classifier_two_sample_auc(held_a[:m], gaussian[:m], seed=cfg.seed, steps=cfg.c2st_steps),
    )
    keep("val_loss_gaussian_note", lambda: "the flow-matching loss has no Gaussian reference; see FD and c2st")
    keep("train_rows", lambda: len(train_rows))
    keep("held_out_rows", lambda: len(held_all))
    clean = keep("lm_loss_clean", lambda: lm_loss_with_hook(model, lm_texts))

    for frac in cfg.sae_k_fractions:
        k = max(1, round(frac * cfg.d_sae))
        keep(
            f"sae_k{k}",
            lambda k=k: _sae_reference(model, hook, train_rows, held_all, lm_texts, clean, k, cfg, out, dev, progress),
        )

    probe_sets = []
    cache = out / "data" / "probing"
    for spec in probing_datasets:
        ds = load_dataset(spec)
        acts = last_token_activations(model, ds.prompts, [hook], cache_dir=cache, cache_key=ds.name)[hook]
        probe_sets.append((ds, acts))

    def raw_auc() -> float:
        aucs = []
        for ds, acts in probe_sets:
            feats = RawActivations().features({hook: acts}, hook)
            tr, te, y = torch.from_numpy(ds.train_idx), torch.from_numpy(ds.test_idx), torch.from_numpy(ds.labels)
            aucs.append(probe_1d(feats[tr], y[tr], feats[te], y[te], top_k=cfg.probe_top_k).test_auc)
        return float(np.mean(aucs))

    keep("probe_auc_raw", raw_auc)
    act_norm = GenerativePrior.from_activations(train_rows, n_blocks=1).act_norm
    direction = (
        task.direction
        if task.direction is not None
        else diff_of_means(model, task.positive, task.negative, hook, positions=task.direction_positions)
    )
    plain_path = out / "steering_plain.csv"
    if plain_path.is_file():
        plain = pd.read_csv(plain_path)
        plain["continuation"] = plain["continuation"].fillna("")
    else:
        plain = steering_sweep(
            model,
            direction,
            task.prompts,
            strengths=cfg.strengths,
            methods=("plain",),
            include_baseline=False,
            act_norm=act_norm,
            hook_name=hook,
            max_new_tokens=cfg.new_tokens,
            concept=task.concept,
            scorers=list(task.scorers),
            seed=cfg.seed,
            progress=progress,
        )
        with _io.atomic_path(plain_path) as tmp:
            plain.to_csv(tmp, index=False)
    keep("steer_plain_concept_max", lambda: float(plain.groupby("r")["concept"].mean().max()))
    keep("act_norm", lambda: act_norm)
    ctx = evals.EvalContext(
        model, hook, held_a, held_all, lm_texts, clean, probe_sets, task, direction, act_norm, plain, cfg
    )
    return refs, ctx


def _sae_reference(
    model: Any,
    hook: str,
    train_rows: Tensor,
    held: Tensor,
    lm_texts: list[str],
    clean: float,
    k: int,
    cfg: ScalingSettings,
    out: Path,
    dev: torch.device,
    progress: bool,
) -> dict[str, float]:
    """Train (or load) the TopK SAE with ``k`` active latents; its FVU on held-out rows and delta LM loss."""

    folder = out / "saes" / f"k{k}"
    if (folder / "cfg.json").is_file():
        from sae_lens import SAE

        sae = SAE.load_from_disk(str(folder), device=str(dev))
    else:
        sae = train_sae(
            train_rows, d_sae=cfg.d_sae, k=k, steps=cfg.sae_steps, seed=cfg.seed, device=str(dev), hook_name=hook
        )
        tmp = folder.with_name(f".tmp-{folder.name}")
        sae.save_inference_model(str(tmp))
        tmp.replace(folder)
    with torch.no_grad():
        x = held.to(dev)
        recon = sae.decode(sae.encode(x))
        fvu = float(((recon - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    patched = lm_loss_with_hook(model, lm_texts, hook, sae_reconstruction_hook(sae))
    return {"k": k, "d_sae": cfg.d_sae, "fvu": fvu, "delta_lm_loss": patched - clean}


def _all_checkpoints(run_dir: Path, steps: list[int]) -> bool:
    return all((run_dir / "checkpoints" / f"step_{s:08d}" / "train_state.json").is_file() for s in steps)


def _train_depth(
    depth: int,
    train_rows: Tensor,
    hook: str,
    model_name: str,
    cfg: ScalingSettings,
    run_dir: Path,
    dev: torch.device,
    progress: bool,
) -> Any:

    steps = cfg.checkpoint_steps()
    total = steps[-1]
    torch.manual_seed(cfg.seed + depth)  # the initial weights
    prior = GenerativePrior.from_activations(train_rows, n_blocks=depth, hook_names=[hook], model_name=model_name)
    tcfg = TrainConfig(
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        max_steps=total,
        warmup_frac=min(1.0, cfg.warmup_steps / total),
        final_lr_frac=1.0,
        checkpoint_every=total,
        keep_checkpoints=1,
        checkpoint_steps=tuple(steps),
        eval_every=0,
        val_fraction=0.0,
        log_every=max(1, total // 50),
        seed=cfg.seed,
        device=str(dev),
        progress=progress,
        plot=False,
    )
    return train(prior, train_rows, tcfg, out_dir=run_dir, resume=True)
