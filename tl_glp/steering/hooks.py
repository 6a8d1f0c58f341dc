"""Steering as ordinary TransformerLens hooks: add a direction, optionally let the prior project.

- :func:`steering_hook` returns ``fn(activation, *, hook)``: usable with ``model.hooks(...)``,
  ``run_with_hooks`` or ``add_hook``.
- :func:`projection_hook` only projects (steering strength 0): how delta LM loss is measured.
- :func:`steer` is a context manager that attaches one at a hook and always removes exactly it;
  :func:`patch` does the same and returns a handle with ``.remove()``.

Positions (``positions=``):

- ``"all"``: every position of every forward call;
- ``"last"``: the last position of each forward call: the last prompt token at prefill, then
  every new token during cached ``model.generate`` (whose decode steps have length 1). With
  left-padded batches (what ``generate`` uses for a list of prompts) that is each row's real last token.
  A ``TransformerBridge`` whose ``generate`` re-runs the whole sequence each step calls the hook
  with the full length; ``"last"`` is still the newest token (earlier ones are then recomputed unsteered);
- a ``slice`` over the positions of each forward call (``slice(-3, None)``: the last three);
- a boolean mask ``[pos]`` or ``[batch, pos]``: applied to forward calls of that length only, so
  a prompt mask leaves the length-1 decode steps alone.

Strength: ``alpha`` in activation units, or with ``relative=True`` a multiple ``r`` of the typical
activation norm (``alpha = r * act_norm``, the prior's :attr:`~tl_glp.GenerativePrior.act_norm`
unless ``act_norm=`` is given). ``alpha`` may be a tensor with one value per batch row.

Example:
    >>> import torch
    >>> from tl_glp import GenerativePrior
    >>> from tl_glp.steering.hooks import steering_hook
    >>> prior = GenerativePrior.from_activations(torch.randn(512, 8), n_blocks=1)
    >>> fn = steering_hook(torch.eye(8)[0], 2.0)              # plain additive steering
    >>> out = fn(torch.zeros(1, 3, 8), hook=None)
    >>> out[0, :, 0].tolist()
    [2.0, 2.0, 2.0]
    >>> fn = prior.steering_hook(torch.eye(8)[0], 0.5, relative=True, positions="last", seed=0)
    >>> fn(torch.zeros(2, 3, 8), hook=None).shape
    torch.Size([2, 3, 8])
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Union

import torch
from torch import Tensor

from jaxtyping import Float

from tl_glp import _compat
from tl_glp._tokens import model_device

Positions = Union[str, slice, Tensor]
HookFn = Callable[..., Tensor]


def steering_hook(
    direction: Float[Tensor, "d_model"],
    alpha: float | Float[Tensor, "batch"],
    *,
    prior: Any = None,
    positions: Positions = "all",
    t_start: float = 0.5,
    num_steps: int = 20,
    seed: int | None = None,
    relative: bool = False,
    act_norm: float | None = None,
    solver: str = "euler",
    method: str = "reference",
    off_manifold: Any = None,
) -> HookFn:
    """A hook ``fn(activation, *, hook)`` that adds ``alpha * direction`` at ``positions`` and,
    with a ``prior``, replaces those positions by their on-manifold projection (glp-method.md
    sections 5 and 7: noise to ``t_start``, ``num_steps`` reference schedule).

    ``seed`` fixes the projection noise (the same for every call) so generations repeat;
    ``None`` draws fresh noise each call.

    ``method`` is the projection schedule (:meth:`~tl_glp.GenerativePrior.project`:
    ``"reference"``, ``"one_step"``, ``"euler:K"``, ``"heun:K"``). Adaptive projection:
    ``positions`` may be an :class:`~tl_glp.steering.adaptive.OffManifold` rule (or
    ``"off_manifold"`` with ``off_manifold=rule``): steering is added at the rule's candidate
    positions and only those whose score crosses its threshold are projected; ``fn.stats``
    counts ``candidates`` and ``projected``.
    """
    positions, rule = _adaptive_rule(positions, off_manifold, prior)
    direction = _check_direction(direction, prior)
    alpha_t = _strength(alpha, relative, act_norm, prior)
    _check_positions(positions)
    if not 0.0 <= t_start <= 1.0:
        raise ValueError(f"t_start must be in [0, 1], got {t_start}.")

    def hook_fn(activation: Tensor, *, hook: Any = None) -> Tensor:
        if activation.shape[-1] != direction.shape[0]:
            raise ValueError(
                f"The activation at {getattr(hook, 'name', 'this hook')} has width {activation.shape[-1]} but the "
                f"steering direction has {direction.shape[0]}: it was made for another hook or model."
            )
        if activation.ndim != 3:
            raise ValueError(f"Steering expects activations [batch, pos, d_model], got {tuple(activation.shape)} at {getattr(hook, 'name', '?')}.")
        if prior is not None:
            _check_same_device(prior_device(prior), activation.device, f"the activations at {getattr(hook, 'name', 'this hook')}")
        batch, seq, _ = activation.shape
        mask = _position_mask(positions, batch, seq, activation.device)
        if mask is None:
            return activation
        alphas = _row_alphas(alpha_t, batch, activation.device)
        if prior is None and bool((alphas == 0).all()):
            return activation  # exactly the unhooked computation
        delta = alphas[:, None, None] * direction.to(activation.device, activation.dtype)  # [batch, 1, d]
        if prior is None:
            return torch.where(mask[..., None], activation + delta, activation)
        edited = (activation + delta)[mask]  # [n_selected, d]
        layer = _prior_layer(prior, hook)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        if rule is None:
            projected = prior.project(edited, t_start=t_start, num_steps=num_steps, layer=layer, generator=generator, solver=solver, method=method)
        else:
            flags = rule.flags(prior, edited.float(), layer)
            hook_fn.stats["candidates"] += int(flags.numel())  # type: ignore[attr-defined]
            hook_fn.stats["projected"] += int(flags.sum())  # type: ignore[attr-defined]
            projected = edited.clone()
            if bool(flags.any()):
                projected[flags] = prior.project(edited[flags], t_start=t_start, num_steps=num_steps, layer=layer, generator=generator, solver=solver, method=method).to(edited.dtype)
        out = activation.clone()
        out[mask] = projected.to(activation.dtype)
        return out

    hook_fn.direction = direction  # type: ignore[attr-defined]
    hook_fn.prior = prior  # type: ignore[attr-defined]
    hook_fn.stats = {"candidates": 0, "projected": 0}  # type: ignore[attr-defined]
    return hook_fn


def projection_hook(prior: Any, *, positions: Positions = "all", t_start: float = 0.5, num_steps: int = 20, seed: int | None = None, solver: str = "euler", method: str = "reference", off_manifold: Any = None) -> HookFn:
    """A hook that replaces activations at ``positions`` by the prior's projection (no steering)."""
    return steering_hook(torch.zeros(prior.cfg.d_input), 0.0, prior=prior, positions=positions, t_start=t_start, num_steps=num_steps, seed=seed, solver=solver, method=method, off_manifold=off_manifold)


def _adaptive_rule(positions: Any, off_manifold: Any, prior: Any) -> tuple[Any, Any]:
    """``(candidate positions, OffManifold rule or None)`` for ``positions`` / ``off_manifold``."""
    from tl_glp.steering.adaptive import OffManifold

    if isinstance(positions, str) and positions == "off_manifold":
        if not isinstance(off_manifold, OffManifold):
            raise ValueError("positions='off_manifold' needs off_manifold=OffManifold.calibrate(prior, natural_acts, fpr=...).")
        positions = off_manifold
    if isinstance(positions, OffManifold):
        if prior is None:
            raise ValueError("Adaptive (off-manifold) positions need a prior to score and project with.")
        return positions.within, positions
    return positions, None


class SteeringHandle:
    """What :func:`patch` returns: ``.remove()`` takes the hook off (idempotent)."""

    def __init__(self, token: Any, hook_name: str, fn: HookFn) -> None:
        self._token, self.hook_name, self.fn = token, hook_name, fn

    def remove(self) -> None:
        _compat.detach_hook(self._token)

    def __enter__(self) -> SteeringHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def patch(model: Any, direction: Float[Tensor, "d_model"], alpha: float | Float[Tensor, "batch"], *, prior: Any = None, hook_name: str | None = None, **kwargs: Any) -> SteeringHandle:
    """Attach a steering hook to ``model`` at ``hook_name`` (default: the prior's hook) until ``.remove()``.

    Plain additive steering when ``prior=None``. Other keyword arguments go to :func:`steering_hook`.
    Checked here, before anything runs: the hook exists, the direction's width is the hook's
    (``d_model`` for residual hooks, ``d_mlp`` for MLP neurons), and the prior sits on the model's
    device.
    """
    name = _resolve_hook_name(model, prior, hook_name)
    fn = steering_hook(direction, alpha, prior=prior, **kwargs)
    _check_attachable(model, name, fn.direction, prior)  # type: ignore[attr-defined]
    return SteeringHandle(_compat.attach_hook(model, name, fn), name, fn)


@contextmanager
def steer(model: Any, direction: Float[Tensor, "d_model"], alpha: float | Float[Tensor, "batch"], *, prior: Any = None, hook_name: str | None = None, **kwargs: Any) -> Iterator[SteeringHandle]:
    """Context manager twin of :func:`patch`: the hook comes off on exit, also after an exception.

    Example::

        with tl_glp.steer(model, direction, 1.0, prior=prior, relative=True, positions="last", seed=0):
            text = model.generate("I think that", max_new_tokens=20)
    """
    handle = patch(model, direction, alpha, prior=prior, hook_name=hook_name, **kwargs)
    try:
        yield handle
    finally:
        handle.remove()


# --------------------------------------------------------------------------- helpers
def _resolve_hook_name(model: Any, prior: Any, hook_name: str | None) -> str:
    if hook_name is None:
        if prior is None or prior.cfg.hook_name is None:
            raise ValueError("Pass hook_name=... (plain steering, or a prior without a single recorded hook).")
        hook_name = prior.cfg.hook_name
    _compat.check_hook_name(model, hook_name)
    if prior is not None:
        _warn_on_mismatch(model, prior, hook_name)
    return hook_name


def _warn_on_mismatch(model: Any, prior: Any, hook_name: str) -> None:
    cfg = prior.cfg
    if cfg.hook_names and hook_name not in cfg.hook_names and _canonical(hook_name) not in {_canonical(n) for n in cfg.hook_names}:
        warnings.warn(f"The prior was trained on {cfg.hook_names} but is being applied at {hook_name!r}.", UserWarning, stacklevel=4)
    model_name = _compat.model_name_of(model)
    if cfg.model_name and model_name and not _compat.same_model(cfg.model_name, model_name):  # org prefix, folder, case ignored
        warnings.warn(f"The prior was trained on {cfg.model_name!r} activations but the model is {model_name!r}.", UserWarning, stacklevel=4)
    processing = _compat.model_processing(model)
    if cfg.model_processing in ("processed", "unprocessed") and processing != cfg.model_processing:
        warnings.warn(f"The prior models {cfg.model_processing} residuals but this model's are {processing}: load the model the way the prior's activations were collected.", UserWarning, stacklevel=4)


def prior_device(prior: Any) -> torch.device:
    """The device a prior's weights and statistics live on."""
    return prior.mean.device


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def _check_same_device(prior_dev: torch.device, other: torch.device, what: str) -> None:
    if not _same_device(prior_dev, other):
        raise ValueError(
            f"The prior is on {prior_dev} but {what} are on {other}. Move the prior to the model's device "
            f"(prior.to({str(other)!r}), or GenerativePrior.from_pretrained(..., device={str(other)!r}))."
        )


def _check_attachable(model: Any, name: str, direction: Tensor, prior: Any) -> None:
    width = _compat.hook_width(model, name)
    if width is not None and width != direction.shape[0]:
        raise ValueError(
            f"The steering direction has width {direction.shape[0]} but {name!r} of this "
            f"{type(model).__name__} carries width {width}: the direction was made for another hook or "
            f"model. Build it at this hook, e.g. tl_glp.diff_of_means(model, pos, neg, {name!r})."
        )
    if prior is not None:
        _check_same_device(prior_device(prior), model_device(model), "the model's weights")


def _canonical(name: str) -> str:
    return name.replace(".hook_out", ".hook_resid_post").replace(".hook_in", ".hook_resid_pre")


def _check_direction(direction: Tensor, prior: Any) -> Tensor:
    if not isinstance(direction, Tensor) or direction.ndim != 1:
        raise ValueError(f"direction must be a 1-D tensor [d_model], got {getattr(direction, 'shape', type(direction))}.")
    if not bool(torch.isfinite(direction).all()):
        raise ValueError("direction contains NaN or inf values.")
    if prior is not None and direction.shape[0] != prior.cfg.d_input:
        raise ValueError(f"direction has width {direction.shape[0]} but the prior models d_input={prior.cfg.d_input}.")
    return direction.detach().float()


def _strength(alpha: float | Tensor, relative: bool, act_norm: float | None, prior: Any) -> Tensor:
    alpha_t = torch.as_tensor(alpha, dtype=torch.float32).detach()
    if alpha_t.ndim > 1:
        raise ValueError(f"alpha must be a float or a 1-D tensor with one value per batch row, got shape {tuple(alpha_t.shape)}.")
    if not bool(torch.isfinite(alpha_t).all()):
        raise ValueError("alpha contains NaN or inf values.")
    if relative:
        if act_norm is None:
            if prior is None:
                raise ValueError("relative=True needs the typical activation norm: pass act_norm=... or a prior.")
            act_norm = prior.act_norm
        alpha_t = alpha_t * act_norm
    return alpha_t


def _row_alphas(alpha: Tensor, batch: int, device: torch.device) -> Tensor:
    if alpha.ndim == 0:
        return alpha.expand(batch).to(device)
    if alpha.shape[0] != batch:
        raise ValueError(f"alpha has {alpha.shape[0]} values but the batch has {batch} rows.")
    return alpha.to(device)


def _check_positions(positions: Positions) -> None:
    if isinstance(positions, str) and positions not in ("all", "last"):
        raise ValueError(f"positions must be 'all', 'last', a slice or a boolean mask, got {positions!r}.")
    if isinstance(positions, Tensor) and (positions.dtype != torch.bool or positions.ndim not in (1, 2)):
        raise ValueError("a positions mask must be a boolean tensor [pos] or [batch, pos].")


def _position_mask(positions: Positions, batch: int, seq: int, device: torch.device) -> Tensor | None:
    """Boolean [batch, seq] of the positions to edit in this forward call (None: none)."""
    if isinstance(positions, str):
        mask = torch.zeros(batch, seq, dtype=torch.bool, device=device)
        if positions == "all":
            mask[:] = True
        else:
            mask[:, -1] = True
        return mask
    if isinstance(positions, slice):
        mask = torch.zeros(batch, seq, dtype=torch.bool, device=device)
        mask[:, positions] = True
        return mask if bool(mask.any()) else None
    if positions.shape[-1] != seq:
        return None  # a mask for calls of another length (e.g. the prompt pass), not this one
    return positions.to(device).expand(batch, seq)


def _prior_layer(prior: Any, hook: Any) -> int | None:
    if not prior.cfg.is_multi_layer:
        return None
    layer = _compat.layer_of(getattr(hook, "name", "") or "")
    if layer is None:
        raise ValueError("A multi-layer prior needs to know the layer: attach it at a blocks.{L}.* hook.")
    return layer
