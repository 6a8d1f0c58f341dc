"""The projector protocol and the plumbing every projector shares.

:class:`Projector` is the protocol the steering hooks, :func:`~tl_glp.steering_sweep` and the
diagnosis accept: any object with a ``name`` and ``project(edited, *, original=None, layer=None)``.

:class:`BaseProjector` is the one place for what every projector of this package does the same
way, so that a projector writes only its own arithmetic in ``_project(edited, original, layer)``:

- shapes: ``edited`` is ``[..., d]`` (rows are flattened to ``[n, d]`` for ``_project`` and put
  back), ``original`` must have the same shape;
- device and dtype: ``_project`` receives both in ``compute_dtype`` (float32, or float64 where a
  projector asks for it) on ``edited``'s device, and the result returns in ``edited``'s dtype;
  :meth:`BaseProjector.on` moves a fitted buffer to the device of the data;
- the unsteered activations: :meth:`BaseProjector.need_original` raises one clear error when a
  projector needs them and they were not passed;
- noise: a seeded projector keeps one ``generator`` seeded once; :meth:`~BaseProjector.reset`
  re-seeds it (and its inner projector's), :meth:`~BaseProjector.reseeded` returns a copy on
  another seed (what the sweep does for each (strength, batch) unit, so that every projector of a
  unit shares the unit's noise seed);
- the diagnosis: :meth:`~BaseProjector.diagnostics` returns extra per-row columns (e.g. the norm
  ratio of the prior's noised input, :func:`noised_norm_ratio`).

Example:
    >>> import torch
    >>> class Halve(BaseProjector):
    ...     name = "halve"
    ...     def _project(self, edited, original, layer):
    ...         return self.need_original(original) + 0.5 * (edited - original)
    >>> x = torch.zeros(2, 3, 4, dtype=torch.float64)
    >>> out = Halve().project(x + 2, original=x)
    >>> out.shape, out.dtype, float(out.max())
    (torch.Size([2, 3, 4]), torch.float64, 1.0)
    >>> Halve().project(x)
    Traceback (most recent call last):
    ...
    ValueError: The projector 'halve' restores part of the unsteered activations: call project(edited, original=...) (the steering hooks and steering_sweep pass it).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor

from tl_glp.core.prior import GenerativePrior


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


class BaseProjector:
    """Shared plumbing (module docstring); subclasses implement :meth:`_project`.

    Class attributes a subclass may set: ``name`` (its label), ``compute_dtype`` (the dtype
    ``_project`` computes in, default float32) and ``seed`` (``None``: no noise of its own, or
    noise from the global RNG). Wrappers around another projector keep it in ``self.inner``;
    :meth:`reset`, :meth:`reseeded` and :meth:`diagnostics` reach it.
    """

    name: str = "projector"
    compute_dtype: torch.dtype = torch.float32
    seed: int | None = None
    inner: Any = None
    generator: torch.Generator | None = None

    def project(
        self,
        edited: Float[Tensor, "... d"],
        *,
        original: Float[Tensor, "... d"] | None = None,
        layer: int | None = None,
    ) -> Float[Tensor, "... d"]:
        """The projection of ``edited`` (steered activations), given ``original`` (the same
        positions before steering) and ``layer`` (multi-layer priors only)."""
        if not isinstance(edited, Tensor) or edited.ndim < 1:
            raise ValueError(f"{self.name!r}: edited must be a tensor [..., d], got {type(edited).__name__}.")
        if original is not None and tuple(original.shape) != tuple(edited.shape):
            raise ValueError(
                f"{self.name!r}: original has shape {tuple(original.shape)} but edited has {tuple(edited.shape)}; "
                "pass the same positions before and after steering."
            )
        d = edited.shape[-1]
        e = edited.reshape(-1, d).to(self.compute_dtype)
        o = None if original is None else original.reshape(-1, d).to(edited.device, self.compute_dtype)
        out = self._project(e, o, layer)
        return out.reshape(edited.shape).to(edited.device, edited.dtype)

    def _project(
        self, edited: Float[Tensor, "n d"], original: Float[Tensor, "n d"] | None, layer: int | None
    ) -> Float[Tensor, "n d"]:
        raise NotImplementedError(f"{type(self).__name__} must implement _project(edited, original, layer).")

    # ------------------------------------------------------------------ shared helpers
    def need_original(self, original: Tensor | None) -> Tensor:
        """``original`` itself, or the error that says how to pass it."""
        if original is None:
            raise ValueError(
                f"The projector {self.name!r} restores part of the unsteered activations: call "
                "project(edited, original=...) (the steering hooks and steering_sweep pass it)."
            )
        return original

    def on(self, buffer: Tensor, like: Tensor) -> Tensor:
        """A fitted ``buffer`` on ``like``'s device, in ``compute_dtype``."""
        return buffer.to(like.device, self.compute_dtype)

    # ------------------------------------------------------------------ noise
    def reset(self) -> BaseProjector:
        """Re-seed the noise generator (and the inner projector's): the next calls repeat the noise of the first."""
        self.generator = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        if self.inner is not None and hasattr(self.inner, "reset"):
            self.inner.reset()
        return self

    def reseeded(self, seed: int) -> BaseProjector:
        """A copy whose noise is seeded with ``seed`` (this projector is left as it was)."""
        new = copy.copy(self)
        new._set_seed(seed)
        if new.inner is not None and callable(getattr(new.inner, "reseeded", None)):
            new.inner = new.inner.reseeded(seed)
        return new.reset()

    def _set_seed(self, seed: int) -> None:
        self.seed = seed

    @staticmethod
    def inner_prior(inner: Any) -> Any:
        """The prior an inner projector runs (None if it runs none): what a wrapper exposes as ``prior``,
        so the hooks find the layer of a multi-layer prior and check its device."""
        return getattr(inner, "prior", None)

    # ------------------------------------------------------------------ diagnosis
    def diagnostics(
        self, steered: Float[Tensor, "n d"], original: Float[Tensor, "n d"], *, seed: int = 0, layer: int | None = None
    ) -> dict[str, Tensor]:
        """Extra per-row columns for :func:`~tl_glp.steering.diagnose.diagnose_activations` (default:
        the inner projector's, if any)."""
        if self.inner is not None and callable(getattr(self.inner, "diagnostics", None)):
            return self.inner.diagnostics(steered, original, seed=seed, layer=layer)
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def noised_norm_ratio(
    prior: GenerativePrior,
    x: Float[Tensor, "n d"],
    t: float | Float[Tensor, " n"],
    eps: Float[Tensor, "n d"],
    layer: int | None = None,
) -> Float[Tensor, " n"]:
    """``||z_t|| / sqrt(((1 - t)^2 + t^2) d)`` with ``z_t = (1 - t) z + t eps`` and ``z`` the
    normalised ``x``: the norm of the input the denoiser sees, over the norm a natural activation
    noised to the same time has in expectation (normalised activations have ``E||z||^2 = d``).
    1 = in the range the denoiser was trained on. ``t`` may differ per row; ``eps = 0`` gives the
    noise-free input ``(1 - t) z``.

    Example:
        >>> import torch
        >>> from tl_glp import GenerativePrior
        >>> _ = torch.manual_seed(0)
        >>> prior = GenerativePrior.from_activations(torch.randn(4096, 256), n_blocks=1)
        >>> x = torch.randn(3, 256)                              # natural-looking rows
        >>> ratio = noised_norm_ratio(prior, 2 * x, 0.0, torch.zeros(3, 256))   # twice their norm, t = 0
        >>> bool(((ratio > 1.7) & (ratio < 2.3)).all())
        True
    """
    z = prior.normalize(x.to(prior.mean.device).float(), layer)
    tt = torch.as_tensor(t, dtype=torch.float32).to(z.device).reshape(-1, 1).expand(z.shape[0], 1)
    zt = (1 - tt) * z + tt * eps.to(z.device)
    expected = torch.sqrt(((1 - tt) ** 2 + tt**2) * z.shape[-1]).reshape(-1)
    return (zt.norm(dim=-1) / expected).cpu()


def unit_direction(direction: Tensor, d: int | None = None) -> Tensor:
    """``direction`` as a float32 unit vector, after checking it is a finite, non-zero 1-D tensor (of width ``d``)."""
    if not isinstance(direction, Tensor) or direction.ndim != 1:
        raise ValueError(f"direction must be a 1-D tensor [d], got {getattr(direction, 'shape', type(direction))}.")
    if d is not None and direction.shape[0] != d:
        raise ValueError(f"direction has width {direction.shape[0]} but the activations have {d}.")
    w = direction.detach().float()
    norm = float(w.norm())
    if not math.isfinite(norm) or norm == 0:
        raise ValueError("direction must be finite and non-zero.")
    return w / norm
