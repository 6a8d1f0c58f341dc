"""Off-manifold detection, measured: can a score tell natural activations from edited ones?

:func:`detect_off_manifold` collects natural activations at a hook, builds off-manifold sets
(natural activations plus ``r * act_norm`` times a unit direction: diff-of-means or random, at
several ``r``; and activations of word-shuffled text), and reports the ROC-AUC of each score
(higher = flagged) for telling them from held-out natural activations:

- ``log_prob``: bits per dimension under the prior (:func:`tl_glp.manifold.likelihood.log_prob`);
- ``denoising``: :func:`tl_glp.manifold.likelihood.denoising_score`;
- ``mahalanobis``: squared Mahalanobis distance under a Gaussian fitted to other natural rows
  (:class:`GaussianBaseline`);
- ``sae_error``: squared reconstruction error of an SAE (when one is given).

Example:
    >>> import torch
    >>> g = GaussianBaseline.fit(torch.randn(1000, 4))
    >>> s = g.score(torch.tensor([[0.0, 0, 0, 0], [5.0, 0, 0, 0]]))
    >>> bool(s[1] > s[0])
    True
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from tl_glp.activations.collect import collect_activations
from tl_glp.core.prior import GenerativePrior
from tl_glp.manifold.likelihood import denoising_score, log_prob


@dataclass
class GaussianBaseline:
    """A full-covariance Gaussian fit; :meth:`score` is the squared Mahalanobis distance."""

    mean: Tensor
    precision: Tensor

    @classmethod
    def fit(cls, acts: Float[Tensor, "n d"], shrinkage: float = 1e-3) -> GaussianBaseline:
        """Fit mean and covariance (float64), with ``shrinkage * trace/d`` added to the diagonal."""
        x = acts.reshape(-1, acts.shape[-1]).double()
        cov = torch.cov(x.T)
        cov = cov + shrinkage * cov.diagonal().mean() * torch.eye(x.shape[1], dtype=x.dtype)
        return cls(x.mean(0), torch.linalg.inv(cov))

    def score(self, acts: Float[Tensor, "... d"]) -> Float[Tensor, ...]:
        diff = acts.double() - self.mean.to(acts.device)
        return ((diff @ self.precision.to(acts.device)) * diff).sum(-1).float()


def sae_error(sae: Any, acts: Float[Tensor, "... d"]) -> Float[Tensor, ...]:
    """Squared reconstruction error ``||x - decode(encode(x))||^2`` of an SAE-Lens SAE."""
    param = next(sae.parameters())
    with torch.no_grad():
        recon = sae.decode(sae.encode(acts.to(param.device, param.dtype))).to(acts.device, torch.float32)
    return ((acts.float() - recon) ** 2).sum(-1)


def shuffle_words(texts: Sequence[str], seed: int = 0) -> list[str]:
    """Each text with its whitespace-separated words in a random (seeded) order."""
    rng = random.Random(seed)
    out = []
    for text in texts:
        words = text.split()
        rng.shuffle(words)
        out.append(" ".join(words))
    return out


def detect_off_manifold(
    model: Any,
    prior: GenerativePrior,
    texts: Sequence[str],
    *,
    hook_name: str | None = None,
    directions: Mapping[str, Tensor] | None = None,
    strengths: Sequence[float] = (0.25, 0.5, 1.0),
    n_random: int = 1,
    shuffled: bool = True,
    sae: Any = None,
    scores: Sequence[str] = ("log_prob", "denoising", "mahalanobis", "sae_error"),
    max_rows: int = 400,
    log_prob_kwargs: Mapping[str, Any] | None = None,
    denoising_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
    progress: bool = True,
):
    """ROC-AUC of each score for natural vs off-manifold activations at ``hook_name``.

    ``texts`` are natural text: their activations (BOS excluded) are split in two, the first
    half fits the Gaussian baseline and the second gives up to ``max_rows`` held-out natural
    rows. Steered sets add ``r * act_norm * w`` (``act_norm`` the prior's, ``w`` unit-norm) to
    those held-out rows for each ``r`` in ``strengths`` and each direction: ``directions``
    (e.g. ``{"diff_of_means": w}``) plus ``n_random`` seeded random ones. ``shuffled`` adds the
    activations of the same held-out texts with their words shuffled. All scores are "higher =
    off-manifold" (``log_prob`` enters as bits per dimension), and an AUC of 0.5 is chance.

    Returns a pandas DataFrame with columns ``condition`` (``"steer:<direction>"`` or
    ``"shuffled"``), ``r`` (0 for shuffled), ``score``, ``auc``, ``n_natural``, ``n_off``.
    ``sae_error`` is skipped when no ``sae`` is given.
    """
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    hook_name = hook_name or prior.cfg.hook_name
    if hook_name is None:
        raise ValueError("Pass hook_name=... (the prior records no single hook).")
    unknown = set(scores) - {"log_prob", "denoising", "mahalanobis", "sae_error"}
    if unknown:
        raise ValueError(f"Unknown scores {sorted(unknown)}.")
    scores = [s for s in scores if s != "sae_error" or sae is not None]
    half = len(texts) // 2
    if half < 2:
        raise ValueError(
            "detect_off_manifold needs at least 4 texts (half fit the Gaussian baseline, half are held out)."
        )
    fit_texts, held_texts = list(texts[:half]), list(texts[half:])
    fit_acts = _rows(collect_activations(model, fit_texts, hook_name, progress=False))
    natural = _subsample(_rows(collect_activations(model, held_texts, hook_name, progress=False)), max_rows, seed)
    gaussian = GaussianBaseline.fit(fit_acts) if "mahalanobis" in scores else None

    score_fns: dict[str, Callable[[Tensor], Tensor]] = {
        "log_prob": lambda a: log_prob(prior, a, **dict(log_prob_kwargs or {})).bits_per_dim,
        "denoising": lambda a: denoising_score(prior, a, **dict(denoising_kwargs or {})),
        "mahalanobis": lambda a: gaussian.score(a),  # type: ignore[union-attr]
        "sae_error": lambda a: sae_error(sae, a),
    }
    g = torch.Generator().manual_seed(seed)
    dirs = {name: w.detach().float().cpu() for name, w in (directions or {}).items()}
    for i in range(n_random):
        dirs[f"random{i}" if n_random > 1 else "random"] = torch.randn(natural.shape[1], generator=g)
    sets: list[tuple[str, float, Tensor]] = []
    for name, w in dirs.items():
        w = w / w.norm()
        for r in strengths:
            sets.append((f"steer:{name}", float(r), natural + r * prior.act_norm * w))
    if shuffled:
        shuffled_acts = _rows(collect_activations(model, shuffle_words(held_texts, seed), hook_name, progress=False))
        sets.append(("shuffled", 0.0, _subsample(shuffled_acts, max_rows, seed)))

    natural_scores = {s: score_fns[s](natural).cpu() for s in scores}
    records = []
    for condition, r, off in tqdm(sets, disable=not progress, desc="off-manifold detection"):
        for s in scores:
            off_scores = score_fns[s](off).cpu()
            labels = [0] * len(natural_scores[s]) + [1] * len(off_scores)
            values = torch.cat([natural_scores[s], off_scores]).double().numpy()
            records.append(
                {
                    "condition": condition,
                    "r": r,
                    "score": s,
                    "auc": float(roc_auc_score(labels, values)),
                    "n_natural": len(natural_scores[s]),
                    "n_off": len(off_scores),
                }
            )
    return pd.DataFrame.from_records(records)


def _rows(source: Any) -> Tensor:
    return source[0 : len(source)].reshape(len(source), -1).float()


def _subsample(x: Tensor, n: int, seed: int) -> Tensor:
    if x.shape[0] <= n:
        return x
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx]
