"""What a projection changes: steered activations before and after each way back to the manifold.

:func:`diagnose_projections` takes prompts, a steering direction and projectors
(:mod:`tl_glp.steering.projectors`); it reads the hook's activation at each prompt's last token,
steers it by ``r * act_norm`` along the direction for each strength ``r``, projects it with each
projector, and measures per activation:

- ``moved``: ``||projected - steered||`` over ``act_norm`` (how far the projection moved it);
- ``kept``: the share of the steering displacement kept along the direction,
  ``(projected - unsteered) . w / alpha`` (1 = all of it, 0 = undone);
- ``off_direction``: the displacement orthogonal to the direction, ``||...|| / alpha``;
- per linear probe ``name`` (trained on natural activations, e.g. with :func:`fit_probes`):
  ``flip_<name>``, 1 when the probe's decision differs from its decision on the unsteered
  activation, and ``shift_<name>``, the change of its logit;
- the projector's own columns (its ``diagnostics(steered, original, seed=...)``, see
  :class:`~tl_glp.steering.projectors.BaseProjector`): ``noised_norm_ratio`` for the projectors that
  run the prior's denoiser (the norm of the noised, normalised input it sees, over the norm a natural
  activation noised to the same time has in expectation, ``sqrt(((1 - t)^2 + t^2) d)``;
  :func:`~tl_glp.steering.projectors.noised_norm_ratio`), ``gate_t`` for the likelihood gate (the
  time each activation was projected by, 0 = left alone), ``evaluations`` (the prior's network
  evaluations per activation, where the projector runs it);
- ``denoising_steered`` / ``denoising_projected``: the prior's
  :func:`~tl_glp.manifold.likelihood.denoising_score` before and after (needs ``prior``);
- ``kl``: the next-token shift, ``KL(p_unsteered || p)`` of the model's next-token distribution at
  the last token with the hook's activation there replaced by the projected one (nats).

The projector named ``"plain"`` (:class:`~tl_glp.steering.projectors.Identity`) gives the steered
activation itself: the "before" every projector is compared with. :meth:`ProjectionDiagnosis.flips`
reads off which concept each projector flips beyond what plain steering flips.

Example:
    >>> import torch
    >>> from tl_glp.steering.projectors import Identity, PCAProjector
    >>> natural = torch.randn(400, 6)
    >>> acts = natural[:20]
    >>> w = torch.eye(6)[0]
    >>> probes = fit_probes(natural, {"sign": natural[:, 1] > 0})
    >>> d = diagnose_activations(acts, w, [Identity(), PCAProjector.fit(natural, 2)], strengths=[1.0], act_norm=2.0, probes=probes)
    >>> t = d.summary().set_index("projector")
    >>> round(float(t.loc["plain", "kept"]), 4), float(t.loc["plain", "moved"])
    (1.0, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from tl_glp.core import _compat
from tl_glp.core._plot import pyplot, save_figure
from tl_glp.core.prior import GenerativePrior
from tl_glp.manifold.likelihood import denoising_score
from tl_glp.steering.projectors import Projector


@dataclass
class LinearProbe:
    """A linear read-out ``logit = x . weight + bias`` (decision: logit > 0), in raw activation space."""

    weight: Float[Tensor, " d"]
    bias: float

    def logit(self, x: Float[Tensor, "n d"]) -> Float[Tensor, " n"]:
        return x.float() @ self.weight.to(x.device) + self.bias


def fit_probes(
    acts: Float[Tensor, "n d"], labels: Mapping[str, Any], *, C: float = 1.0, max_iter: int = 1000
) -> dict[str, LinearProbe]:
    """One L2 logistic-regression probe per label set (``{name: 0/1 or bool per row of acts}``),
    fitted with scikit-learn on standardised activations and folded back into raw space.

    Example:
        >>> import torch
        >>> x = torch.randn(300, 4); y = x[:, 0] > 0
        >>> p = fit_probes(x, {"first": y})["first"]
        >>> float(((p.logit(x) > 0) == y).float().mean()) > 0.95
        True
    """
    from sklearn.linear_model import LogisticRegression

    x = acts.reshape(-1, acts.shape[-1]).double().cpu()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    z = ((x - mean) / std).numpy()
    probes = {}
    for name, y in labels.items():
        y_t = torch.as_tensor(y).reshape(-1).cpu()
        if y_t.shape[0] != x.shape[0]:
            raise ValueError(f"labels {name!r} has {y_t.shape[0]} values for {x.shape[0]} activations.")
        if y_t.unique().numel() != 2:
            raise ValueError(f"labels {name!r} must hold two classes (0/1 or bool), got {y_t.unique().tolist()}.")
        clf = LogisticRegression(C=C, max_iter=max_iter).fit(z, (y_t == y_t.max()).numpy())
        w = torch.as_tensor(clf.coef_[0], dtype=torch.float64) / std
        probes[name] = LinearProbe(w.float(), float(clf.intercept_[0] - (w * mean).sum()))
    return probes


@dataclass
class ProjectionDiagnosis:
    """Per-activation measurements (``rows``: one row per activation, strength and projector)."""

    rows: Any
    probe_names: list[str]

    def summary(self) -> Any:
        """Means per projector and strength ``r`` (flip columns: share of activations flipped)."""
        cols = [
            c for c in self.rows.columns if c not in ("projector", "r", "row") and self.rows[c].dtype.kind in "fiub"
        ]
        return self.rows.groupby(["projector", "r"], sort=False)[cols].mean().reset_index()

    def flips(self, reference: str = "plain") -> Any:
        """Per projector (other than ``reference``) and ``r``: each probe's flip rate minus the
        reference's at the same ``r``, and the probe it flips most beyond the reference
        (``most_flipped``, ``excess``)."""
        import pandas as pd

        table = self.summary().set_index(["projector", "r"])
        flips = [f"flip_{n}" for n in self.probe_names]
        if not flips:
            raise ValueError("flips needs probes: pass probes= to the diagnosis.")
        if reference not in table.index.get_level_values(0):
            raise ValueError(
                f"no projector named {reference!r} in the diagnosis (have {sorted(set(table.index.get_level_values(0)))})."
            )
        out = []
        for (proj, r), row in table.iterrows():
            if proj == reference:
                continue
            excess = {n: float(row[f"flip_{n}"] - table.loc[(reference, r), f"flip_{n}"]) for n in self.probe_names}
            top = max(excess, key=lambda n: excess[n])
            out.append(
                {
                    "projector": proj,
                    "r": r,
                    **{f"excess_flip_{n}": v for n, v in excess.items()},
                    "most_flipped": top,
                    "excess": excess[top],
                }
            )
        return pd.DataFrame(out)

    def to_csv(self, path: str | Path) -> Path:
        """Every per-activation row as CSV."""
        path = Path(path)
        self.rows.to_csv(path, index=False)
        return path

    def plot(self, path: str | Path) -> Path:
        """Four panels against ``r``, one line per projector: share kept along the direction, distance
        moved, next-token KL, and the largest probe flip rate (dashed: when probes were given)."""
        plt = pyplot()
        table = self.summary()
        fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
        flips = [f"flip_{n}" for n in self.probe_names]
        panels = [
            ("kept", "share of the steering kept along w"),
            ("moved", "distance moved / act_norm"),
            ("kl", "next-token KL to unsteered (nats)"),
            (None, "largest probe flip rate"),
        ]
        for ax, (col, title) in zip(axes, panels):
            for proj, part in table.groupby("projector", sort=False):
                if col is None:
                    if not flips:
                        continue
                    y = part[flips].max(axis=1)
                else:
                    if col not in part or part[col].isna().all():
                        continue
                    y = part[col]
                ax.plot(part["r"], y, "o-", label=proj, ms=4)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("r (x act_norm)")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        return save_figure(fig, path)


def diagnose_activations(
    acts: Float[Tensor, "n d"],
    direction: Float[Tensor, " d"],
    projectors: Sequence[Projector],
    *,
    strengths: Sequence[float],
    act_norm: float | None = None,
    prior: GenerativePrior | None = None,
    probes: Mapping[str, LinearProbe] | None = None,
    next_token: Any = None,
    score_times: Sequence[float] = (0.1, 0.3, 0.5),
    seed: int = 0,
    progress: bool = False,
) -> ProjectionDiagnosis:
    """The diagnosis (module docstring) for given unsteered activations ``acts``.

    ``direction`` is normalised to unit length; ``alpha = r * act_norm`` (``act_norm`` from the prior
    unless given). ``next_token``: a function ``f(replaced_acts) -> logits [n, vocab]`` that runs
    the model with these activations at the hook (as :func:`diagnose_projections` builds); without
    it no ``kl`` column. Projectors with ``reset`` are reset before each strength, so a seeded
    prior projector draws the same noise at every strength.
    """
    import pandas as pd

    if act_norm is None:
        if prior is None:
            raise ValueError("diagnose needs act_norm=... or a prior (its act_norm) to scale the strengths.")
        act_norm = prior.act_norm
    names = [getattr(p, "name", type(p).__name__) for p in projectors]
    if len(set(names)) != len(names):
        raise ValueError(f"projectors need distinct names, got {names}.")
    probes = dict(probes or {})
    x = acts.reshape(-1, acts.shape[-1]).float()
    w = direction.detach().float().to(x.device)
    w = w / w.norm()
    base_logits = {n: p.logit(x) for n, p in probes.items()}
    clean = torch.log_softmax(next_token(x).float(), -1) if next_token is not None else None
    records = []
    bar = tqdm(total=len(strengths) * len(projectors), disable=not progress, desc="diagnose projections")
    for r in strengths:
        alpha = float(r) * float(act_norm)
        steered = x + alpha * w
        steered_score = denoising_score(prior, steered, times=score_times, seed=seed) if prior is not None else None
        for name, proj in zip(names, projectors):
            if hasattr(proj, "reset"):
                proj.reset()
            out = proj.project(steered, original=x).float()
            moved = out - x
            along = moved @ w
            cols: dict[str, Any] = {
                "moved": ((out - steered).norm(dim=-1) / act_norm).tolist(),
                "kept": (along / alpha).tolist() if alpha != 0 else [math.nan] * len(x),
                "off_direction": ((moved - along[:, None] * w).norm(dim=-1) / alpha).tolist()
                if alpha != 0
                else [math.nan] * len(x),
            }
            for n, p in probes.items():
                after = p.logit(out)
                cols[f"flip_{n}"] = ((after > 0) != (base_logits[n] > 0)).float().tolist()
                cols[f"shift_{n}"] = (after - base_logits[n]).tolist()
            extra = proj.diagnostics(steered, x, seed=seed) if callable(getattr(proj, "diagnostics", None)) else {}
            cols["noised_norm_ratio"] = [math.nan] * len(x)
            cols.update({k: torch.as_tensor(v).double().tolist() for k, v in extra.items()})
            if prior is not None:
                cols["denoising_steered"] = steered_score.tolist()  # type: ignore[union-attr]
                cols["denoising_projected"] = denoising_score(prior, out, times=score_times, seed=seed).tolist()
            if clean is not None:
                logp = torch.log_softmax(next_token(out).float(), -1)
                cols["kl"] = (clean.exp() * (clean - logp)).sum(-1).tolist()
            for i in range(len(x)):
                records.append({"projector": name, "r": float(r), "row": i, **{k: v[i] for k, v in cols.items()}})
            bar.update(1)
    bar.close()
    return ProjectionDiagnosis(pd.DataFrame.from_records(records), list(probes))


def diagnose_projections(
    model: Any,
    prompts: Sequence[str],
    direction: Float[Tensor, " d_model"],
    projectors: Sequence[Projector],
    *,
    hook_name: str,
    strengths: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
    act_norm: float | None = None,
    prior: GenerativePrior | None = None,
    probes: Mapping[str, LinearProbe] | None = None,
    score_times: Sequence[float] = (0.1, 0.3, 0.5),
    seed: int = 0,
    progress: bool = True,
) -> ProjectionDiagnosis:
    """The diagnosis (module docstring) at the last token of each prompt, with the next-token KL.

    The hook's activations are read at each prompt's last token (prompts are run in groups of equal
    token length, so no padding enters); ``kl`` replaces that activation by the projected one and
    compares the model's next-token distribution there with the unsteered one. At a residual-stream
    hook of a ``HookedTransformer`` the model resumes from the hook with ``start_at_layer``, so the
    blocks before it run once, not once per projector and strength.
    """
    _compat.check_hook_name(model, hook_name)
    tokens = [model.to_tokens(p)[0] for p in prompts]
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(tokens):
        groups.setdefault(len(t), []).append(i)
    order = [i for ids in groups.values() for i in ids]
    batches = [torch.stack([tokens[i] for i in ids]) for ids in groups.values()]
    resume = _compat.resume_layer(model, hook_name)  # rerun only the blocks after the hook, from its activations
    acts, streams = [], []
    with torch.no_grad():
        for batch in batches:
            _, cache = model.run_with_cache(batch, names_filter=[hook_name])
            acts.append(cache[hook_name][:, -1].detach().float().clone())
            streams.append(cache[hook_name].detach().clone() if resume is not None else None)
    x = torch.cat(acts)

    def next_token(replaced: Tensor) -> Tensor:
        out, start = [], 0
        with torch.no_grad():
            for batch, stream in zip(batches, streams):
                part = replaced[start : start + len(batch)]
                start += len(batch)

                def put(act: Tensor, hook: Any = None, part: Tensor = part) -> Tensor:
                    act = act.clone()
                    act[:, -1] = part.to(act.device, act.dtype)
                    return act

                if stream is not None:
                    out.append(model(put(stream), start_at_layer=resume)[:, -1].float().cpu())
                    continue
                with model.hooks(fwd_hooks=[(hook_name, put)]):
                    out.append(model(batch)[:, -1].float().cpu())
        return torch.cat(out)

    result = diagnose_activations(
        x,
        direction,
        projectors,
        strengths=strengths,
        act_norm=act_norm,
        prior=prior,
        probes=probes,
        next_token=next_token,
        score_times=score_times,
        seed=seed,
        progress=progress,
    )
    result.rows["prompt"] = [prompts[order[i]] for i in result.rows["row"]]
    return result
