"""Ways back to the manifold that keep the concept: each one attacks a cause the steering diagnosis measured
for the prior's projection (it keeps only part of the displacement along the direction, it moves the
activation far elsewhere and flips other concepts, its noised input lies outside the denoiser's range).

- :class:`DirectionPreserving`: project with any projector, then restore the steered activation's
  component along the unit direction ``w``: ``x' = P(x_s) + (<x_s, w> - <P(x_s), w>) w``. With
  ``keep_outside=U`` (``[k, d]`` orthonormal rows, e.g. :func:`meta_neuron_subspace`) the projection
  only acts inside span(U): outside it the unsteered activation's component is restored.
- :class:`ScorePull`: a few small steps along the prior's denoising direction at a small time,
  ``z <- z + eta (x0_hat(z_t, t) - z)``, with the total move capped at ``max_move * act_norm``.
- :class:`LikelihoodGated`: project only the rows whose on-manifold score lies outside the natural
  range, each by the least time of a grid that brings it back in range (strength-aware, per token).
- :class:`NormClamp`: rescale the steered activation's norm into the natural range (or to the
  unsteered activation's norm); alone, or before another projector (``then=``).

Example:
    >>> import torch
    >>> from tl_glp import GenerativePrior, ProjectionConfig
    >>> from tl_glp.steering.projectors import PriorProjector
    >>> natural = torch.randn(512, 8)
    >>> prior = GenerativePrior.from_activations(natural, n_blocks=1)
    >>> w = torch.eye(8)[0]
    >>> keep = DirectionPreserving(PriorProjector(prior, ProjectionConfig(seed=0)), w)
    >>> x = torch.randn(4, 8); steered = x + 3.0 * w
    >>> out = keep.project(steered, original=x)
    >>> torch.allclose(out @ w, steered @ w, atol=1e-5)      # the concept stays as steered
    True
    >>> pull = ScorePull(prior)                               # deterministic by default
    >>> moved = (pull.project(steered) - steered).norm(dim=-1)
    >>> bool((moved <= pull.max_move * prior.act_norm + 1e-4).all())
    True
    >>> clamp = NormClamp.fit(natural, quantiles=(0.05, 0.95))
    >>> bool((clamp.project(10 * x).norm(dim=-1) <= clamp.high + 1e-4).all())
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from tl_glp.core.flow import add_noise, clean_estimate
from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig
from tl_glp.manifold.adaptive import OffManifold
from tl_glp.steering.projectors.base import BaseProjector, noised_norm_ratio, unit_direction


class DirectionPreserving(BaseProjector):
    """Any projector, then the steered activation's component along ``direction`` put back.

    ``x' = P(x_s) + (<x_s, w> - <P(x_s), w>) w`` with ``w`` the unit direction: the concept stays as
    steered (the share kept along ``w`` is 1 by construction) and only the part orthogonal to ``w``
    is cleaned by ``inner`` (``P``).

    ``keep_outside``: ``[k, d]`` rows spanning a subspace ``U`` (orthonormalised here). Then the
    projection acts inside ``U`` only and the unsteered activation ``x0`` supplies the rest:
    ``y = x0 + Pi_U (P(x_s) - x0)``, ``x' = y + <x_s - y, w> w``. :func:`meta_neuron_subspace` gives
    the subspace the prior's most variable meta-neurons encode.

    The direction is a constructor argument: the steering map and the sweep know it when they
    build their projectors.
    """

    def __init__(
        self,
        inner: Any,
        direction: Float[Tensor, " d"],
        *,
        keep_outside: Float[Tensor, "k d"] | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(getattr(inner, "project", None)):
            raise ValueError(f"DirectionPreserving wraps a projector (with .project), got {type(inner).__name__}.")
        self.inner = inner
        self.direction = unit_direction(direction)
        self.keep_outside = None
        if keep_outside is not None:
            if keep_outside.ndim != 2 or keep_outside.shape[1] != self.direction.shape[0]:
                raise ValueError(
                    f"keep_outside must be [k, d] with d = {self.direction.shape[0]}, got {tuple(keep_outside.shape)}."
                )
            self.keep_outside = torch.linalg.qr(keep_outside.double().T)[0].T.float()  # orthonormal rows
        suffix = "keep w" if keep_outside is None else f"keep w, x0 outside k={keep_outside.shape[0]}"
        self.name = name or f"{getattr(inner, 'name', type(inner).__name__)} ({suffix})"

    @property
    def prior(self) -> GenerativePrior | None:
        return self.inner_prior(self.inner)

    def _project(self, edited: Tensor, original: Tensor | None, layer: int | None) -> Tensor:
        p = self.inner.project(edited, original=original, layer=layer).to(edited.dtype)
        w = self.on(self.direction, edited)
        if self.keep_outside is not None:
            o = self.need_original(original)
            u = self.on(self.keep_outside, edited)
            p = o + ((p - o) @ u.T) @ u
        return p + ((edited - p) @ w)[:, None] * w


@torch.no_grad()
def meta_neuron_subspace(
    prior: GenerativePrior,
    natural: Float[Tensor, "n d"],
    k: int = 16,
    *,
    t: float = 0.1,
    seed: int = 42,
    max_rows: int = 4096,
    layer: int | None = None,
) -> Float[Tensor, "k d"]:
    """The ``k``-dimensional subspace of activation space that the prior's ``k`` most variable
    meta-neurons encode: the meta-neurons (:meth:`~tl_glp.GenerativePrior.encode` at ``t``, ``seed``)
    of up to ``max_rows`` natural activations, the ``k`` with the largest variance, the least-squares
    linear map from them (centred) to the activations (centred, raw space), and the orthonormal basis
    of that map's row space (``[k, d]``, rows by decreasing singular value).

    Example:
        >>> import torch
        >>> from tl_glp import GenerativePrior
        >>> natural = torch.randn(300, 8)
        >>> u = meta_neuron_subspace(GenerativePrior.from_activations(natural, n_blocks=1), natural, k=3)
        >>> u.shape, torch.allclose(u @ u.T, torch.eye(3), atol=1e-5)
        (torch.Size([3, 8]), True)
    """
    x = natural.reshape(-1, natural.shape[-1])[:max_rows]
    if not 1 <= k <= min(x.shape[1], prior.n_features):
        raise ValueError(
            f"k must be between 1 and min(d, meta-neurons) = {min(x.shape[1], prior.n_features)}, got {k}."
        )
    feats = prior.encode(x.to(prior.mean.device), t=t, seed=seed, layer=layer).double().cpu()
    top = feats.var(0).topk(k).indices
    f = feats[:, top] - feats[:, top].mean(0)
    xc = x.double().cpu() - x.double().cpu().mean(0)
    decoder = torch.linalg.lstsq(f, xc).solution  # [k, d]: activation ~ meta-neurons @ decoder
    return torch.linalg.svd(decoder, full_matrices=False)[2].float()


class ScorePull(BaseProjector):
    """A few small steps along the prior's denoising direction, the total move capped.

    In the prior's normalised space (``z``, what the network sees), ``steps`` times:
    ``z_t = (1 - t) z + t eps``, ``x0_hat = z_t - t v(z_t, t)`` (the prior's clean estimate,
    :func:`tl_glp.core.flow.clean_estimate`), ``z <- z + eta (x0_hat - z)``. Since
    ``(1 - t) x0_hat - z_t`` is ``t^2`` times the score of the noised density, each step moves
    towards higher density, and it never goes far: back in raw space the total move
    ``x' - x_s`` is scaled down, where needed, to at most ``max_move * act_norm`` (raw space, as
    the diagnosis measures ``moved``).

    ``noise="none"`` (default, deterministic): ``eps = 0``, the noise-free input ``(1 - t) z``.
    ``noise="fresh"``: fresh ``eps ~ N(0, I)`` at every step from one generator seeded with ``seed``
    (the global RNG when ``seed`` is None).

    Defaults and why: ``t = 0.1`` (the reference's meta-neuron time: a denoiser input close to the
    activation itself, where the clean estimate is accurate), ``steps = 3`` (3 network evaluations
    per activation, under a third of the reference projection's 10), ``eta = 0.5`` and
    ``max_move = 0.25``: the reference projection moved steered activations 0.3-0.9 act_norm and
    flipped other concepts, while PCA and the Gaussian cap (which flip nothing beyond plain) moved
    them at most 0.2-0.35; a quarter of act_norm is half the smallest steering displacement mapped
    (r = 0.5), so the pull stays in the neighbourhood of the steered point.
    """

    def __init__(
        self,
        prior: GenerativePrior,
        *,
        t: float = 0.1,
        eta: float = 0.5,
        steps: int = 3,
        max_move: float = 0.25,
        noise: Literal["none", "fresh"] = "none",
        seed: int | None = None,
        name: str | None = None,
    ) -> None:
        if not 0 < t < 1:
            raise ValueError(f"t must be in (0, 1) (a small time, e.g. 0.1), got {t}.")
        if not 0 < eta <= 1:
            raise ValueError(f"eta must be in (0, 1] (the share of the way to the clean estimate per step), got {eta}.")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}.")
        if not max_move > 0:
            raise ValueError(f"max_move must be > 0 (a fraction of act_norm), got {max_move}.")
        if noise not in ("none", "fresh"):
            raise ValueError(f"noise must be 'none' (deterministic) or 'fresh', got {noise!r}.")
        self.prior, self.t, self.eta, self.steps, self.max_move, self.noise = prior, t, eta, steps, max_move, noise
        self.seed = seed
        self.name = name or f"score pull t={t:g}"
        self.reset()

    @property
    def evaluations(self) -> int:
        """Network evaluations per activation."""
        return self.steps

    def _eps(self, z: Tensor) -> Tensor:
        if self.noise == "none":
            return torch.zeros_like(z)
        gen_device = self.generator.device if self.generator is not None else z.device
        return torch.randn(z.shape, generator=self.generator, device=gen_device).to(z.device)

    @torch.no_grad()
    def _project(self, edited: Tensor, original: Tensor | None, layer: int | None) -> Tensor:
        prior = self.prior
        x = edited.to(prior.mean.device)
        z = prior.normalize(x, layer)
        for _ in range(self.steps):
            z_t = add_noise(z, self._eps(z), self.t)
            x0_hat = clean_estimate(lambda zz, tt: prior.forward(zz, tt, layer), z_t, self.t)
            z = z + self.eta * (x0_hat - z)
        move = prior.denormalize(z, layer) - x
        cap = self.max_move * prior.activation_norm(layer)
        scale = torch.clamp(cap / move.norm(dim=-1, keepdim=True).clamp_min(1e-12), max=1.0)
        return (x + move * scale).to(edited.device)

    def diagnostics(
        self, steered: Tensor, original: Tensor, *, seed: int = 0, layer: int | None = None
    ) -> dict[str, Tensor]:
        """``noised_norm_ratio`` of the first step's input (noise-free, or seeded with ``seed``) and
        ``evaluations`` (``steps``)."""
        eps = torch.zeros(steered.shape)
        if self.noise == "fresh":
            eps = torch.randn(steered.shape, generator=torch.Generator().manual_seed(seed))
        ratio = noised_norm_ratio(self.prior, steered, self.t, eps, layer)
        return {"noised_norm_ratio": ratio, "evaluations": torch.full((len(ratio),), float(self.steps))}


class LikelihoodGated(BaseProjector):
    """Project only the rows whose on-manifold score is outside the natural range, by the least time that
    brings them back.

    A row whose score under ``rule`` (:class:`~tl_glp.manifold.adaptive.OffManifold`: the denoising
    score or bits per dimension, with a threshold fitted on natural rows) is at most the threshold
    passes bit for bit. Any other row is projected by the prior (``config`` with ``t_start`` from
    ``times``, smallest first) until the projection's score is in range; if none is, the largest
    time's projection is kept. More strongly steered rows need a larger time: the gate is per token
    and strength-aware. ``last_times`` holds the time each row of the latest call got (0: untouched),
    ``last_evaluations`` the network evaluations it cost (scores and projections)
    and ``stats`` counts ``candidates``, ``projected`` and network ``evaluations``.
    """

    def __init__(
        self,
        prior: GenerativePrior,
        rule: OffManifold,
        *,
        times: Sequence[float] = (0.1, 0.2, 0.3, 0.5),
        config: ProjectionConfig | None = None,
        seed: int | None = None,
        name: str | None = None,
    ) -> None:
        if not times or any(not 0 < float(t) <= 1 for t in times) or list(times) != sorted(times):
            raise ValueError(f"times must be increasing values in (0, 1], got {list(times)}.")
        self.prior, self.rule, self.times = prior, rule, tuple(float(t) for t in times)
        self.config = config or ProjectionConfig()
        self.seed = seed
        self.name = name or "gated prior"
        self.stats = {"candidates": 0, "projected": 0, "evaluations": 0}
        self.last_times = self.last_evaluations = torch.empty(0)
        self.reset()

    @classmethod
    def fit(
        cls,
        prior: GenerativePrior,
        natural: Float[Tensor, "n d"],
        *,
        quantile: float = 0.99,
        score: str = "denoising",
        score_times: Sequence[float] = (0.1, 0.3, 0.5),
        times: Sequence[float] = (0.1, 0.2, 0.3, 0.5),
        config: ProjectionConfig | None = None,
        seed: int | None = None,
        name: str | None = None,
    ) -> LikelihoodGated:
        """The gate whose threshold is the ``quantile`` of ``natural`` rows' scores (held-out rows, not
        the prior's training rows, give an honest range)."""
        rule = OffManifold.calibrate(prior, natural, fpr=1.0 - quantile, score=score, times=score_times)
        return cls(prior, rule, times=times, config=config, seed=seed, name=name)

    def _score_evaluations(self) -> int:
        return len(self.rule.times) * self.rule.n_noise if self.rule.score == "denoising" else 0

    @torch.no_grad()
    def _project(self, edited: Tensor, original: Tensor | None, layer: int | None) -> Tensor:
        prior, rule = self.prior, self.rule
        x = edited.to(prior.mean.device)
        out, chosen = x.clone(), torch.zeros(len(x), dtype=torch.float64)
        todo = (rule.scores(prior, x, layer) > rule.threshold).nonzero().flatten().cpu()
        evals = torch.full((len(x),), float(self._score_evaluations()), dtype=torch.float64)
        self.stats["candidates"] += len(x)
        self.stats["projected"] += len(todo)
        for i, t in enumerate(self.times):
            if not len(todo):
                break
            cfg = self.config.replace(t_start=t)
            cand = prior.project(x[todo], cfg, layer=layer, generator=self.generator)
            evals[todo] += cfg.evaluations + self._score_evaluations()
            take = (rule.scores(prior, cand, layer) <= rule.threshold).cpu()
            if i == len(self.times) - 1:
                take[:] = True
            out[todo[take]] = cand[take]
            chosen[todo[take]] = t
            todo = todo[~take]
        self.stats["evaluations"] += int(evals.sum())
        self.last_times, self.last_evaluations = chosen, evals
        return out.to(edited.device)

    def diagnostics(
        self, steered: Tensor, original: Tensor, *, seed: int = 0, layer: int | None = None
    ) -> dict[str, Tensor]:
        """``gate_t`` (the time each row got, 0 = untouched), ``evaluations`` (network evaluations it
        cost) and ``noised_norm_ratio`` at that time (NaN for untouched rows); the noise is seeded with
        ``seed``."""
        probe = self.reseeded(seed)
        probe.stats = {k: 0 for k in self.stats}  # the probe's counts stay its own
        probe.project(steered, original=original, layer=layer)
        times = probe.last_times
        eps = torch.randn(steered.shape, generator=torch.Generator().manual_seed(seed))
        ratio = noised_norm_ratio(self.prior, steered, times, eps, layer)
        return {
            "gate_t": times,
            "evaluations": probe.last_evaluations,
            "noised_norm_ratio": torch.where(times > 0, ratio, float("nan")),
        }


class NormClamp(BaseProjector):
    """Rescale each steered activation so that its norm lies in the natural range, then (``then=``)
    hand it to another projector.

    ``space="raw"``: the norm ``||x||`` (the residual stream's own); ``space="standardized"``: the
    norm of ``(x - mean) / std`` with per-dimension ``mean`` and ``std`` of natural rows (the space
    the prior's denoiser sees; rescaling there is about the mean). ``target="range"``: clamp the
    norm into ``[low, high]`` (natural quantiles from :meth:`fit`), the range widened to include the
    unsteered activation's own norm when ``original`` is given (so an unsteered activation, e.g. a
    first position with an unusual norm, is never moved); ``target="original"``: the unsteered
    activation's norm exactly (needs ``original``). The direction of the (centred) activation is kept.
    """

    def __init__(
        self,
        low: float,
        high: float,
        *,
        mean: Float[Tensor, " d"] | None = None,
        std: Float[Tensor, " d"] | None = None,
        target: Literal["range", "original"] = "range",
        then: Any = None,
        name: str | None = None,
    ) -> None:
        if not 0 <= low <= high:
            raise ValueError(f"need 0 <= low <= high, got low={low}, high={high}.")
        if target not in ("range", "original"):
            raise ValueError(f"target must be 'range' or 'original', got {target!r}.")
        if (mean is None) != (std is None):
            raise ValueError("pass both mean and std (standardized space) or neither (raw space).")
        if then is not None and not callable(getattr(then, "project", None)):
            raise ValueError(f"then= must be a projector (with .project), got {type(then).__name__}.")
        self.low, self.high, self.target, self.inner = float(low), float(high), target, then
        self.mean = None if mean is None else mean.float()
        self.std = None if std is None else std.float().clamp_min(1e-8)
        space = "raw" if mean is None else "std"
        base = "norm = unsteered" if target == "original" else f"norm clamp ({space})"
        self.name = name or (base if then is None else f"{base} + {getattr(then, 'name', type(then).__name__)}")

    @classmethod
    def fit(
        cls,
        natural: Float[Tensor, "n d"],
        *,
        quantiles: tuple[float, float] = (0.01, 0.99),
        space: Literal["raw", "standardized"] = "raw",
        target: Literal["range", "original"] = "range",
        then: Any = None,
        name: str | None = None,
    ) -> NormClamp:
        """The range from the ``quantiles`` of natural rows' norms (in ``space``)."""
        lo_q, hi_q = quantiles
        if not 0 <= lo_q <= hi_q <= 1:
            raise ValueError(f"quantiles must satisfy 0 <= low <= high <= 1, got {quantiles}.")
        if space not in ("raw", "standardized"):
            raise ValueError(f"space must be 'raw' or 'standardized', got {space!r}.")
        x = natural.reshape(-1, natural.shape[-1]).double()
        mean = std = None
        if space == "standardized":
            mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
            x = (x - mean) / std
        norms = x.norm(dim=-1)
        low, high = (float(torch.quantile(norms, q)) for q in (lo_q, hi_q))
        return cls(low, high, mean=mean, std=std, target=target, then=then, name=name)

    @property
    def prior(self) -> GenerativePrior | None:
        return self.inner_prior(self.inner)

    def _space(self, x: Tensor) -> tuple[Tensor | float, Tensor | float]:
        if self.mean is None or self.std is None:
            return 0.0, 1.0
        return self.on(self.mean, x), self.on(self.std, x)

    def clamp(self, edited: Float[Tensor, "n d"], original: Float[Tensor, "n d"] | None) -> Float[Tensor, "n d"]:
        """The rescaled activations (before ``then``)."""
        centre, scale = self._space(edited)
        z = (edited - centre) / scale
        norm = z.norm(dim=-1)
        if self.target == "original":
            target = ((self.need_original(original) - centre) / scale).norm(dim=-1)
        else:
            low, high = torch.full_like(norm, self.low), torch.full_like(norm, self.high)
            if original is not None:
                own = ((original - centre) / scale).norm(dim=-1)
                low, high = torch.minimum(low, own), torch.maximum(high, own)
            target = torch.minimum(torch.maximum(norm, low), high)
        factor = torch.where(norm > 0, target / norm.clamp_min(1e-30), torch.ones_like(norm))
        return centre + scale * z * factor[:, None]

    def _project(self, edited: Tensor, original: Tensor | None, layer: int | None) -> Tensor:
        out = self.clamp(edited, original)
        return out if self.inner is None else self.inner.project(out, original=original, layer=layer)

    def diagnostics(
        self, steered: Tensor, original: Tensor, *, seed: int = 0, layer: int | None = None
    ) -> dict[str, Tensor]:
        """The inner projector's columns, measured on the rescaled input it receives."""
        if self.inner is None or not callable(getattr(self.inner, "diagnostics", None)):
            return {}
        d = steered.shape[-1]
        e, o = steered.reshape(-1, d).float(), original.reshape(-1, d).float()
        return self.inner.diagnostics(self.clamp(e, o), original, seed=seed, layer=layer)
