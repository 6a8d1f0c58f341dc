"""On-manifold scores inside a model run: a hook that records them, and adaptive projection.

- :func:`score_recorder`: a TransformerLens hook that leaves activations alone and records the
  prior's score (denoising score or log-density) of the activations passing a hook point, e.g.
  during ``model.generate``; attach it *after* a steering hook at the same point to score the
  steered activations.
- :class:`OffManifold`: a rule "project only positions whose score crosses a threshold",
  calibrated on natural activations to a false-positive rate.
- :class:`AdaptiveProjector`: a projector (:mod:`tl_glp.steering.projectors`) that projects only
  the rows a rule flags; pass it as ``projector=`` to the steering and projection hooks, with
  ``positions=rule.within``. ``projector.stats`` counts ``candidates`` and ``projected``. The hooks
  hand it only real tokens: padding (where known, :mod:`tl_glp.core.padding`) is never a candidate.

Example:
    >>> import torch
    >>> from tl_glp import GenerativePrior
    >>> natural = torch.randn(512, 8)
    >>> prior = GenerativePrior.from_activations(natural, n_blocks=1)
    >>> rule = OffManifold.calibrate(prior, natural, fpr=0.1)
    >>> round(float(rule.flags(prior, natural).float().mean()), 1)
    0.1
    >>> adaptive = AdaptiveProjector(prior, rule)
    >>> out = adaptive.project(natural[:50]); adaptive.stats["candidates"]
    50
    >>> rec = score_recorder(prior)
    >>> rec(torch.randn(2, 3, 8), hook=None) is None, rec.records[0].shape
    (True, torch.Size([2, 3]))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from tl_glp.core.padding import without_padding
from tl_glp.core.positions import Positions, check_positions, hook_layer, position_mask
from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig
from tl_glp.manifold.likelihood import denoising_score, log_prob

SCORES = ("denoising", "log_prob")
"""Scores the hooks know: ``"denoising"`` (flow-matching error) and ``"log_prob"`` (bits per dim)."""


def manifold_score(
    prior: GenerativePrior,
    acts: Float[Tensor, "n d_input"],
    score: str = "denoising",
    layer: int | None = None,
    **kwargs: Any,
) -> Float[Tensor, " n"]:
    """One off-manifold score per row, higher = less natural: the denoising score, or for
    ``"log_prob"`` bits per dimension (``-log p / (d ln 2)``). ``kwargs`` go to the scorer."""
    if score == "denoising":
        return denoising_score(prior, acts, layer=layer, **kwargs)
    if score == "log_prob":
        return log_prob(prior, acts, layer=layer, **kwargs).bits_per_dim
    raise ValueError(f"Unknown score {score!r}; choose from {SCORES}.")


@dataclass
class OffManifold:
    """Project only the positions whose score exceeds ``threshold`` (adaptive projection).

    ``within`` are the candidate positions (as the hooks' ``positions``: ``"all"``, ``"last"``,
    a slice or a mask); steering is added at all of them, and only the flagged ones are
    replaced by their projection. The hook then keeps counts in ``hook_fn.stats``
    (``candidates``, ``projected``). The score costs ``len(times) * n_noise`` network
    evaluations per candidate; a projection costs 10 more (reference) per flagged one.
    """

    threshold: float
    within: Positions = "all"
    score: str = "denoising"
    times: Sequence[float] = (0.5,)
    n_noise: int = 1
    seed: int = 0
    fpr: float | None = None
    """The false-positive rate the threshold was calibrated to (information only)."""

    def scores(
        self, prior: GenerativePrior, acts: Float[Tensor, "n d_input"], layer: int | None = None
    ) -> Float[Tensor, " n"]:
        kwargs = (
            {"times": tuple(self.times), "n_noise": self.n_noise, "seed": self.seed}
            if self.score == "denoising"
            else {"seed": self.seed}
        )
        return manifold_score(prior, acts, self.score, layer=layer, **kwargs)

    def flags(self, prior: GenerativePrior, acts: Float[Tensor, "n d_input"], layer: int | None = None) -> Tensor:
        """Boolean ``[n]``: which rows to project."""
        return self.scores(prior, acts, layer) > self.threshold

    @classmethod
    def calibrate(
        cls,
        prior: GenerativePrior,
        natural: Float[Tensor, "n d_input"],
        fpr: float = 0.05,
        *,
        within: Positions = "all",
        score: str = "denoising",
        times: Sequence[float] = (0.5,),
        n_noise: int = 1,
        seed: int = 0,
        layer: int | None = None,
    ) -> OffManifold:
        """The rule whose threshold flags a share ``fpr`` of ``natural`` activations (their
        ``1 - fpr`` score quantile). Calibrate on held-out rows, not the prior's training rows."""
        if not 0.0 < fpr < 1.0:
            raise ValueError(f"fpr must be in (0, 1), got {fpr}.")
        rule = cls(float("inf"), within, score, tuple(times), n_noise, seed, fpr)
        s = rule.scores(prior, natural.reshape(-1, natural.shape[-1]), layer)
        rule.threshold = float(torch.quantile(s.double(), 1.0 - fpr))
        return rule


class AdaptiveProjector:
    """Project only the rows ``rule`` flags (adaptive projection), with the prior's projection ``config``.

    A projector for the steering hooks (``projector=AdaptiveProjector(prior, rule)``, with
    ``positions=rule.within``): steering is added at every candidate position and only flagged
    ones are replaced by their projection. ``stats`` counts ``candidates`` and ``projected``.
    A seeded ``config`` draws fresh noise at every call from one generator seeded once.
    """

    def __init__(self, prior: GenerativePrior, rule: OffManifold, config: ProjectionConfig | None = None) -> None:
        self.prior, self.rule, self.config = prior, rule, config or ProjectionConfig()
        self.name = f"adaptive {self.config.label}"
        self.stats = {"candidates": 0, "projected": 0}
        self.generator: torch.Generator | None = None
        self.reset()

    def reset(self) -> AdaptiveProjector:
        """Re-seed the noise generator (the counts in ``stats`` are kept)."""
        self.generator = torch.Generator().manual_seed(self.config.seed) if self.config.seed is not None else None
        return self

    def project(self, edited: Tensor, *, original: Tensor | None = None, layer: int | None = None) -> Tensor:
        flags = self.rule.flags(self.prior, edited.float(), layer)
        self.stats["candidates"] += int(flags.numel())
        self.stats["projected"] += int(flags.sum())
        out = edited.clone()
        if bool(flags.any()):
            out[flags] = self.prior.project(edited[flags], self.config, layer=layer, generator=self.generator).to(
                edited.dtype
            )
        return out


def score_recorder(
    prior: GenerativePrior,
    *,
    score: str = "denoising",
    positions: Any = "all",
    **score_kwargs: Any,
) -> Any:
    """A hook ``fn(activation, *, hook)`` that records the prior's score of the activations at
    ``positions`` (as the steering hooks' ``positions``) and returns ``None`` (no change).

    ``fn.records`` holds one ``[batch, pos]`` float tensor per forward call (NaN where not
    recorded, padding included: :mod:`tl_glp.core.padding`); ``fn.row_means()`` gives each batch row's mean over all calls (e.g. the mean score
    of the steered positions of a generation) and ``fn.reset()`` clears them.

    Example::

        rec = score_recorder(prior, positions="last")
        with tl_glp.steer(model, w, 1.0, prior=prior, relative=True, positions="last"):
            model.add_hook(prior.cfg.hook_name, rec)   # after the steering hook: sees steered values
            model.generate(...)
        rec.row_means()
    """
    if score not in SCORES:
        raise ValueError(f"Unknown score {score!r}; choose from {SCORES}.")
    check_positions(positions)
    records: list[Tensor] = []

    def hook_fn(activation: Tensor, *, hook: Any = None) -> None:
        if activation.ndim != 3:
            raise ValueError(
                f"score_recorder expects activations [batch, pos, d_model], got {tuple(activation.shape)}."
            )
        batch, seq, _ = activation.shape
        out = torch.full((batch, seq), float("nan"))
        mask = without_padding(position_mask(positions, batch, seq, activation.device), batch, seq, activation.device)
        if mask is not None and bool(mask.any()):
            values = manifold_score(
                prior, activation[mask].detach().float(), score, layer=hook_layer(prior, hook), **score_kwargs
            )
            out[mask.cpu()] = values.float().cpu()
        records.append(out)
        return None

    def row_means() -> Tensor:
        if not records:
            return torch.empty(0)
        batch = records[0].shape[0]
        rows = torch.cat([r for r in records if r.shape[0] == batch], dim=1)
        return torch.nanmean(rows, dim=1)

    hook_fn.records = records  # type: ignore[attr-defined]
    hook_fn.row_means = row_means  # type: ignore[attr-defined]
    hook_fn.reset = records.clear  # type: ignore[attr-defined]
    return hook_fn
