"""The established ways back to the manifold: the prior's projection, plain steering, the SAE round
trips, the PCA subspace and the Gaussian cap (an overview of all projectors: :mod:`tl_glp.steering.projectors`).

Example:
    >>> import torch
    >>> from tl_glp import GenerativePrior, ProjectionConfig
    >>> prior = GenerativePrior.from_activations(torch.randn(256, 8), n_blocks=1)
    >>> proj = PriorProjector(prior, ProjectionConfig(seed=0))
    >>> x = torch.randn(3, 8)
    >>> first, second = proj.project(x), proj.project(x)
    >>> bool((first != second).any())                 # fresh noise at every call
    True
    >>> _ = proj.reset(); torch.equal(proj.project(x), first)   # the same sequence again
    True
    >>> proj.name, torch.equal(Identity().project(x), x)
    ('prior reference t=0.5', True)
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from tl_glp.core.flow import projection_schedule
from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig
from tl_glp.manifold.detection import GaussianBaseline
from tl_glp.steering.projectors.base import BaseProjector, noised_norm_ratio


class PriorProjector(BaseProjector):
    """The prior's on-manifold projection (glp-method.md section 5) with one :class:`ProjectionConfig`.

    ``config.seed`` seeds one generator, once; every call draws fresh noise from it. ``None``
    draws from the global RNG.
    """

    def __init__(self, prior: GenerativePrior, config: ProjectionConfig | None = None, name: str | None = None) -> None:
        self.prior = prior
        self.config = config or ProjectionConfig()
        self.name = name or f"prior {self.config.label}"
        self.reset()

    @property
    def seed(self) -> int | None:  # type: ignore[override]
        return self.config.seed

    def _set_seed(self, seed: int) -> None:
        self.config = self.config.replace(seed=seed)

    @property
    def evaluations(self) -> int:
        """Network evaluations per projected activation."""
        return self.config.evaluations

    def _project(self, edited: Tensor, original: Tensor | None, layer: int | None) -> Tensor:
        return self.prior.project(edited, self.config, layer=layer, generator=self.generator)

    def noise_time(self) -> float:
        """The time the input is noised to (the grid time of ``t_start``; 0 for no projection)."""
        cfg = self.config
        return float(projection_schedule(float(cfg.t_start), cfg.num_steps, cfg.schedule)[0][0]) if cfg.t_start else 0.0

    def diagnostics(
        self, steered: Tensor, original: Tensor, *, seed: int = 0, layer: int | None = None
    ) -> dict[str, Tensor]:
        """``noised_norm_ratio`` of the noised input (noise seeded with ``seed``, :func:`noised_norm_ratio`)
        and ``evaluations`` (network evaluations per activation)."""
        if self.config.t_start <= 0:
            return {}
        eps = torch.randn(steered.shape, generator=torch.Generator().manual_seed(seed))
        ratio = noised_norm_ratio(self.prior, steered, self.noise_time(), eps, layer)
        return {"noised_norm_ratio": ratio, "evaluations": torch.full((len(ratio),), float(self.evaluations))}

    def __repr__(self) -> str:
        return f"PriorProjector({self.config})"


class Identity(BaseProjector):
    """No projection: plain additive steering, as a projector."""

    name = "plain"

    def _project(self, edited: Tensor, original: Tensor | None, layer: int | None) -> Tensor:
        return edited


class SAEProjector(BaseProjector):
    """An SAE-Lens SAE's round trip as a way back to the manifold.

    ``keep_error=False``: ``decode(encode(edited))`` (the SAE's reconstruction of the steered
    activation; SAE-Lens's ``sae(edited)``). ``keep_error=True``: ``decode(encode(edited)) +
    (original - decode(encode(original)))``: the unsteered activation's reconstruction error is added
    back, so an unsteered activation (``edited == original``) passes through unchanged and only the
    edit goes through the SAE. Works with any object with SAE-Lens's ``encode``/``decode``.

    Example:
        >>> import torch
        >>> from sae_lens import StandardSAE, StandardSAEConfig
        >>> sae = StandardSAE(StandardSAEConfig(d_in=8, d_sae=16))
        >>> x = torch.randn(3, 8)
        >>> torch.allclose(SAEProjector(sae, keep_error=True).project(x, original=x), x, atol=1e-5)
        True
        >>> SAEProjector(sae).name, SAEProjector(sae, keep_error=True).name
        ('sae', 'sae+error')
    """

    def __init__(self, sae: Any, *, keep_error: bool = False, name: str | None = None) -> None:
        if not (callable(getattr(sae, "encode", None)) and callable(getattr(sae, "decode", None))):
            raise ValueError(
                f"SAEProjector needs an SAE with encode() and decode() (an SAE-Lens SAE), got {type(sae).__name__}."
            )
        self.sae, self.keep_error = sae, keep_error
        self.name = name or ("sae+error" if keep_error else "sae")

    @torch.no_grad()
    def reconstruct(self, x: Float[Tensor, "n d"]) -> Float[Tensor, "n d"]:
        """``decode(encode(x))`` on the SAE's device and dtype, returned in ``x``'s."""
        param = next(self.sae.parameters(), None)
        inp = x if param is None else x.to(param.device, param.dtype)
        return self.sae.decode(self.sae.encode(inp)).to(x.device, x.dtype)

    def _project(self, edited: Tensor, original: Tensor | None, layer: int | None) -> Tensor:
        recon = self.reconstruct(edited)
        if not self.keep_error:
            return recon
        original = self.need_original(original)
        return recon + (original - self.reconstruct(original))

    def __repr__(self) -> str:
        return f"SAEProjector(keep_error={self.keep_error})"


class PCAProjector(BaseProjector):
    """Keep the steered activation in the top-``k`` principal subspace of natural activations and the
    unsteered activation in its complement: ``mean + P (edited - mean) + (I - P) (original - mean)``
    with ``P = U U^T`` the projector onto the top-``k`` principal directions ``U``.

    Without ``original`` the complement is set to the mean's (a plain rank-``k`` PCA reconstruction).
    Fit it with :meth:`fit` on natural activations (``[n, d]``, e.g. ``collect_activations(...)``).

    Example:
        >>> import torch
        >>> x = torch.cat([torch.randn(500, 3) * 3, torch.zeros(500, 3)], 1)  # lives in the first 3 dims
        >>> pca = PCAProjector.fit(x, k=3)
        >>> pca.components.shape, pca.name
        (torch.Size([3, 6]), 'pca k=3')
        >>> edit = torch.zeros(1, 6); edit[0, 5] = 4.0          # off the principal subspace: undone
        >>> o = x[:1]
        >>> torch.allclose(pca.project(o + edit, original=o), o, atol=1e-4)
        True
    """

    def __init__(self, mean: Float[Tensor, " d"], components: Float[Tensor, "k d"], name: str | None = None) -> None:
        if components.ndim != 2 or components.shape[1] != mean.shape[0]:
            raise ValueError(f"components must be [k, d] with d = {mean.shape[0]}, got {tuple(components.shape)}.")
        self.mean, self.components = mean.float(), components.float()
        self.name = name or f"pca k={components.shape[0]}"

    @classmethod
    def fit(cls, acts: Float[Tensor, "n d"], k: int, name: str | None = None) -> PCAProjector:
        """Principal directions of ``acts`` (rows = natural activations), top ``k`` by variance."""
        x = acts.reshape(-1, acts.shape[-1]).double()
        if not 1 <= k <= x.shape[1]:
            raise ValueError(f"k must be between 1 and the width {x.shape[1]}, got {k}.")
        if x.shape[0] < 2:
            raise ValueError("PCAProjector.fit needs at least two natural activations.")
        mean = x.mean(0)
        _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)  # rows of vh: principal directions, by variance
        return cls(mean.float(), vh[:k].float(), name)

    def _project(self, edited: Tensor, original: Tensor | None, layer: int | None) -> Tensor:
        u, mu = self.on(self.components, edited), self.on(self.mean, edited)
        inside = ((edited - mu) @ u.T) @ u  # the steered activation's principal part
        rest = 0.0 if original is None else (original - mu) - ((original - mu) @ u.T) @ u
        return mu + inside + rest

    def __repr__(self) -> str:
        return f"PCAProjector(k={self.components.shape[0]})"


class GaussianShrinkage(BaseProjector):
    """In-distribution steering: cap the Mahalanobis distance ``sqrt((x - mean)^T precision (x - mean))``
    under a Gaussian fitted to natural activations at ``radius``.

    ``toward="original"`` (default): the result is ``original + s * (edited - original)`` with the
    largest ``s`` in [0, 1] whose distance is at most ``max(radius, distance(original))``: as much of
    the steering as the cap allows, and an unsteered activation is never moved. ``toward="mean"``:
    ``mean + (edited - mean) * min(1, radius / distance(edited))`` (radial shrinkage; needs no
    ``original``). Activations already within the cap pass unchanged.

    :meth:`fit` takes the radius as a quantile of the natural activations' own distances (default
    0.99), so about 1% of natural activations would be touched.

    Example:
        >>> import torch
        >>> g = GaussianShrinkage.fit(torch.randn(2000, 4), quantile=0.99)
        >>> o = torch.zeros(1, 4); e = o + torch.tensor([[20.0, 0, 0, 0]])
        >>> out = g.project(e, original=o)
        >>> bool(abs(g.distance(out) - g.radius) < 1e-3), bool(out[0, 0] > 0)
        (True, True)
    """

    def __init__(
        self,
        mean: Float[Tensor, " d"],
        precision: Float[Tensor, "d d"],
        radius: float,
        toward: Literal["original", "mean"] = "original",
        name: str | None = None,
    ) -> None:
        if toward not in ("original", "mean"):
            raise ValueError(f"toward must be 'original' or 'mean', got {toward!r}.")
        if not radius > 0 or not math.isfinite(radius):
            raise ValueError(f"radius must be a positive finite Mahalanobis distance, got {radius}.")
        self.mean, self.precision, self.radius, self.toward = mean.double(), precision.double(), float(radius), toward
        self.name = name or ("gaussian cap" if toward == "original" else "gaussian cap (to mean)")

    @classmethod
    def fit(
        cls,
        acts: Float[Tensor, "n d"],
        *,
        quantile: float = 0.99,
        radius: float | None = None,
        shrinkage: float = 1e-3,
        toward: Literal["original", "mean"] = "original",
        name: str | None = None,
    ) -> GaussianShrinkage:
        """Fit mean and covariance (:class:`tl_glp.manifold.detection.GaussianBaseline`, with
        ``shrinkage * trace/d`` on the diagonal); the cap is ``radius`` or the ``quantile`` of the
        natural activations' Mahalanobis distances."""
        x = acts.reshape(-1, acts.shape[-1])
        base = GaussianBaseline.fit(x, shrinkage=shrinkage)
        if radius is None:
            if not 0 < quantile <= 1:
                raise ValueError(f"quantile must be in (0, 1], got {quantile}.")
            radius = float(torch.quantile(base.score(x).double().sqrt(), quantile))
        return cls(base.mean, base.precision, radius, toward, name)

    def distance(self, x: Float[Tensor, "... d"]) -> Float[Tensor, ...]:
        """Mahalanobis distance (not squared) of each row."""
        diff = x.double() - self.mean.to(x.device)
        return ((diff @ self.precision.to(x.device)) * diff).sum(-1).clamp_min(0).sqrt()

    compute_dtype = torch.float64

    def _project(self, edited: Tensor, original: Tensor | None, layer: int | None) -> Tensor:
        prec, mu, e = self.on(self.precision, edited), self.on(self.mean, edited), edited
        if self.toward == "mean":
            scale = torch.clamp(self.radius / self.distance(e).clamp_min(1e-12), max=1.0)
            return mu + (e - mu) * scale[..., None]
        o = self.need_original(original)
        delta, rel = e - o, o - mu
        a = ((delta @ prec) * delta).sum(-1)  # distance^2(o + s delta) = a s^2 + 2 b s + c
        b = ((delta @ prec) * rel).sum(-1)
        c = ((rel @ prec) * rel).sum(-1)
        cap = torch.maximum(torch.full_like(c, self.radius**2), c)
        disc = (b**2 - a * (c - cap)).clamp_min(0)
        s = torch.where(a > 0, (-b + disc.sqrt()) / a.clamp_min(1e-300), torch.ones_like(a))
        s = s.clamp(0.0, 1.0)
        return o + s[..., None] * delta

    def __repr__(self) -> str:
        return f"GaussianShrinkage(radius={self.radius:.3g}, toward={self.toward!r})"
