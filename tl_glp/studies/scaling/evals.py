"""What a scaling study measures on every checkpoint, and the references measured once per study.

Per checkpoint (:func:`evaluate_checkpoint`): validation loss (fixed noise and times on held-out
activations), the bias-extrapolated Frechet distance FD-infinity of generated activations,
the classifier two-sample AUC, how far a projection moves activations, delta LM loss of the
projection, the mean 1-D probe AUC of the meta-neurons and the steering gain at matched concept
(:func:`tl_glp.steering.pareto.matched_concept_gain`). The references (the FD lower bound from real
rows of other documents, two random halves of the held-out rows, a moment-matched Gaussian, SAEs,
plain steering, raw-activation probes) are computed by the study once and passed in an
:class:`EvalContext`.

Example (FD-infinity removes most of the small-sample bias of the Frechet distance):
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> a, b = torch.randn(4000, 16, generator=g), torch.randn(4000, 16, generator=g)
    >>> fdi = frechet_distance_infinity(a, b)
    >>> abs(fdi.fd_inf) < fdi.fd_at_n[-1]   # the true distance is 0
    True
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from tl_glp.core.flow import draw_noise_and_times
from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig
from tl_glp.evaluation import lm_loss_with_hook
from tl_glp.probing import MetaNeurons, probe_1d
from tl_glp.steering import steering_sweep
from tl_glp.steering.hooks import projection_hook
from tl_glp.steering.pareto import matched_concept_gain
from tl_glp.training.metrics import (  # noqa: F401 (re-exported)
    FDInfinity,
    classifier_two_sample_auc,
    frechet_distance,
    frechet_distance_infinity,
    gaussian_like,
)


@torch.no_grad()
def validation_loss(
    prior: GenerativePrior, acts: Float[Tensor, "n d"], *, seed: int = 0, batch_size: int = 4096
) -> float:
    """Flow-matching loss on held-out ``acts`` with noise and times drawn once from ``seed`` (the
    training distribution of times), so that checkpoints are compared on exactly the same draws."""
    prior.eval()
    device = prior.mean.device
    eps, t = draw_noise_and_times(len(acts), prior.cfg.d_input, torch.Generator().manual_seed(seed), "cpu")
    total = 0.0
    for start in range(0, len(acts), batch_size):
        part = slice(start, start + batch_size)
        z0 = prior.normalize(acts[part].to(device))
        total += float(prior.flow_loss(z0, eps[part].to(device), t[part].to(device))) * len(z0)
    return total / len(acts)


@dataclass
class EvalContext:
    """Everything a checkpoint evaluation needs that does not depend on the checkpoint."""

    model: Any
    hook_name: str
    held_a: Tensor
    """Held-out activations, first random half (the reference side of FD and c2st)."""
    held_all: Tensor
    """All held-out activations (validation loss, projection distance)."""
    lm_texts: list[str]
    clean_lm_loss: float
    probe_sets: list[tuple[Any, Tensor]]
    """(ProbingDataset, last-token activations at the hook) per dataset."""
    steering: Any
    """The :class:`~tl_glp.studies.scaling.SteeringTask`."""
    direction: Tensor
    act_norm: float
    plain_steering: Any
    """The cached plain-steering rows of the sweep (they do not depend on the prior)."""
    settings: Any
    """The :class:`~tl_glp.studies.scaling.ScalingSettings`."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Accumulated wall time per evaluation (filled in by :func:`evaluate_checkpoint`)."""


def evaluate_checkpoint(prior: GenerativePrior, ctx: EvalContext, *, progress: bool = False) -> dict[str, Any]:
    """Every per-checkpoint figure of a scaling study, as a flat JSON-able dict (see module docstring)."""
    import pandas as pd

    s = ctx.settings
    prior.eval()
    out: dict[str, Any] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        ctx.seconds[name] = ctx.seconds.get(name, 0.0) + now - clock
        out[f"seconds_{name}"] = now - clock
        clock = now

    out["val_loss"] = validation_loss(prior, ctx.held_all, seed=s.seed)
    lap("val_loss")
    n = min(s.fd_samples, len(ctx.held_a))
    samples = prior.sample(
        n, num_steps=s.fd_num_steps, generator=torch.Generator(device=prior.mean.device).manual_seed(s.seed)
    ).cpu()
    fdi = frechet_distance_infinity(samples, ctx.held_a[:n], seed=s.seed)
    out.update(fd_prior=fdi.fd_inf, fd_prior_at_n=fdi.fd_at_n[-1], fd_n=n)
    lap("fd")
    m = min(s.c2st_samples, n)
    out["c2st_prior"] = classifier_two_sample_auc(ctx.held_a[:m], samples[:m], seed=s.seed, steps=s.c2st_steps)
    lap("c2st")
    rows = ctx.held_all[: s.projection_rows].to(prior.mean.device)
    moved = prior.project(rows, generator=torch.Generator(device=prior.mean.device).manual_seed(s.seed))
    out["projection_distance"] = float(((moved - rows).norm(dim=-1) / rows.norm(dim=-1).clamp_min(1e-9)).mean())
    patched = lm_loss_with_hook(
        ctx.model,
        ctx.lm_texts,
        ctx.hook_name,
        projection_hook(prior, ProjectionConfig(seed=s.seed), positions=slice(1, None)),
    )
    out["delta_lm_loss_prior"] = patched - ctx.clean_lm_loss
    lap("delta_lm_loss")
    meta = MetaNeurons(prior)
    aucs = []
    for ds, acts in ctx.probe_sets:
        feats = meta.features({ctx.hook_name: acts}, ctx.hook_name)
        tr, te = torch.from_numpy(ds.train_idx), torch.from_numpy(ds.test_idx)
        y = torch.from_numpy(ds.labels)
        aucs.append(probe_1d(feats[tr], y[tr], feats[te], y[te], top_k=s.probe_top_k).test_auc)
    out["probe_auc_meta"] = float(np.mean(aucs))
    out["probe_datasets"] = len(aucs)
    lap("probing")
    task = ctx.steering
    guided = steering_sweep(
        ctx.model,
        ctx.direction,
        task.prompts,
        prior=prior,
        strengths=s.strengths,
        methods=("prior",),
        include_baseline=False,
        act_norm=ctx.act_norm,
        hook_name=ctx.hook_name,
        max_new_tokens=s.new_tokens,
        concept=task.concept,
        scorers=list(task.scorers),
        seed=s.seed,
        progress=progress,
    )
    both = pd.concat([ctx.plain_steering, guided], ignore_index=True)
    gain = matched_concept_gain(
        both, fluency=task.fluency, higher_is_better=task.higher_is_better, n_boot=s.n_boot, seed=s.seed
    )
    out.update({f"steer_{k}": v for k, v in gain.to_dict().items() if k != "fluency"})
    out["steer_prior_concept_max"] = float(guided.groupby("r")["concept"].mean().max())
    lap("steering")
    return out
