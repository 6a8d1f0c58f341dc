"""Projectors: the ways back to the manifold a steering hook can take, behind one protocol.

A projector is any object with ``project(edited, *, original=None, layer=None) -> Tensor``:
``edited`` are the steered activations ``[n, d]`` of the positions a hook edits, ``original`` the
same positions before steering (some projectors restore part of them), ``layer`` the LLM layer of
the hook (multi-layer priors only). The steering hooks and :func:`~tl_glp.steering_sweep` take
any projector; ``name`` labels it in tables and plots.

- :class:`PriorProjector`: the prior's SDEdit projection with one :class:`~tl_glp.ProjectionConfig`.
  Seeded, it draws fresh noise at every call from one generator seeded once (as the reference
  draws fresh noise per call); :meth:`PriorProjector.reset` (or a new projector with the same
  seed) repeats the sequence.
- :class:`Identity`: plain steering, as a projector.

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
    >>> proj.name, Identity().project(x) is x
    ('prior reference t=0.5', True)
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor

from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig


@runtime_checkable
class Projector(Protocol):
    """Anything that maps steered activations back towards the manifold."""

    name: str

    def project(
        self,
        edited: Float[Tensor, "n d"],
        *,
        original: Float[Tensor, "n d"] | None = None,
        layer: int | None = None,
    ) -> Float[Tensor, "n d"]: ...


class PriorProjector:
    """The prior's on-manifold projection (glp-method.md section 5) with one :class:`ProjectionConfig`.

    ``config.seed`` seeds one generator, once; every call draws fresh noise from it. ``None``
    draws from the global RNG.
    """

    def __init__(self, prior: GenerativePrior, config: ProjectionConfig | None = None, name: str | None = None) -> None:
        self.prior = prior
        self.config = config or ProjectionConfig()
        self.name = name or f"prior {self.config.label}"
        self.generator: torch.Generator | None = None
        self.reset()

    def reset(self) -> PriorProjector:
        """Re-seed the noise generator: the next calls repeat the noise of the first ones."""
        seed = self.config.seed
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return self

    def project(
        self,
        edited: Float[Tensor, "n d"],
        *,
        original: Float[Tensor, "n d"] | None = None,
        layer: int | None = None,
    ) -> Float[Tensor, "n d"]:
        return self.prior.project(edited, self.config, layer=layer, generator=self.generator)

    def __repr__(self) -> str:
        return f"PriorProjector({self.config})"


class Identity:
    """No projection: plain additive steering, as a projector."""

    name = "plain"

    def project(
        self,
        edited: Float[Tensor, "n d"],
        *,
        original: Float[Tensor, "n d"] | None = None,
        layer: int | None = None,
    ) -> Float[Tensor, "n d"]:
        return edited

    def reset(self) -> Identity:
        return self
