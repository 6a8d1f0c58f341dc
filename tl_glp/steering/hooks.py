"""Steering as ordinary TransformerLens hooks: add a direction, optionally project back to the manifold.

- :func:`steering_hook` returns ``fn(activation, *, hook)``: usable with ``model.hooks(...)``,
  ``run_with_hooks`` or ``add_hook``.
- :func:`projection_hook` only projects (steering strength 0): how delta LM loss is measured.
- :func:`steer` is a context manager that attaches one at a hook and always removes exactly it;
  :func:`patch` does the same and returns a handle with ``.remove()``.

Positions (``positions=``, see :mod:`tl_glp.core.positions`): ``"all"``, ``"last"`` (the last
prompt token at prefill, then every new token during cached ``model.generate``; with left-padded
batches each row's real last token; a ``TransformerBridge`` whose ``generate`` re-runs the whole
sequence still steers the newest token), a ``slice`` or a boolean mask.

Padding (:mod:`tl_glp.core.padding`): padding positions are never steered, projected or counted,
and ``"last"`` is each row's last real token, wherever the padding is known: inside
``tl_glp.real_tokens(mask)``, in this package's right-padded runners (delta LM loss),
and, for hooks attached with :func:`patch` / :func:`steer`, from the model call's
``attention_mask=`` (TransformerLens's ``generate`` passes one for left-padded prompts) or from
the token ids when the tokenizer's pad id is distinct from BOS and EOS.

Projection: with ``prior=`` the edited positions are replaced by the prior's projection under
``projection=`` (a :class:`~tl_glp.ProjectionConfig`; default: the reference, t_start 0.5). A
seeded projection draws fresh noise at every call from one generator seeded when the hook is made,
so a hook made again with the same seed repeats the sequence. Any other way back to the manifold
is a ``projector=`` (:mod:`tl_glp.steering.projectors`).

Strength: ``alpha`` in activation units, or with ``relative=True`` a multiple ``r`` of the typical
activation norm (``alpha = r * act_norm``, the prior's :attr:`~tl_glp.GenerativePrior.act_norm`
unless ``act_norm=`` is given). ``alpha`` may be a tensor with one value per batch row.

Example:
    >>> import torch
    >>> from tl_glp import GenerativePrior, ProjectionConfig
    >>> prior = GenerativePrior.from_activations(torch.randn(512, 8), n_blocks=1)
    >>> fn = steering_hook(torch.eye(8)[0], 2.0)              # plain additive steering
    >>> out = fn(torch.zeros(1, 3, 8), hook=None)
    >>> out[0, :, 0].tolist()
    [2.0, 2.0, 2.0]
    >>> fn = steering_hook(torch.eye(8)[0], 0.5, prior=prior, projection=ProjectionConfig(seed=0),
    ...                    relative=True, positions="last")
    >>> fn(torch.zeros(2, 3, 8), hook=None).shape
    torch.Size([2, 3, 8])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from tl_glp.core import _compat, padding
from tl_glp.core._tokens import model_device
from tl_glp.core.positions import Positions, check_positions, hook_layer, position_mask
from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig
from tl_glp.steering.projectors import PriorProjector, Projector

HookFn = Callable[..., Tensor]


def steering_hook(
    direction: Float[Tensor, " d_model"],
    alpha: float | Float[Tensor, " batch"],
    *,
    prior: GenerativePrior | None = None,
    projection: ProjectionConfig | None = None,
    projector: Projector | None = None,
    positions: Positions = "all",
    relative: bool = False,
    act_norm: float | None = None,
) -> HookFn:
    """A hook ``fn(activation, *, hook)`` that adds ``alpha * direction`` at ``positions`` and,
    with a ``prior`` (or a ``projector``), replaces those positions by their projection
    (glp-method.md sections 5 and 7).

    ``projection`` configures the prior's projection (default :class:`~tl_glp.ProjectionConfig`,
    the reference). ``projector`` is any other way back to the manifold
    (:class:`~tl_glp.steering.projectors.Projector`); it receives the steered and the unsteered
    activations of the edited positions. ``fn.projector`` is the projector in use (None: plain
    steering) and ``fn.reset()`` re-seeds its noise.
    """
    if projector is not None and projection is not None:
        raise ValueError("Pass projection= (settings of the prior's projection) or projector=, not both.")
    if projector is None and prior is not None:
        projector = PriorProjector(prior, projection)
    if projection is not None and prior is None:
        raise ValueError("projection= configures the prior's projection: pass prior= too.")
    prior = prior if prior is not None else getattr(projector, "prior", None)
    direction = _check_direction(direction, prior)
    alpha_t = _strength(alpha, relative, act_norm, prior)
    check_positions(positions)

    def hook_fn(activation: Tensor, *, hook: Any = None) -> Tensor:
        if activation.shape[-1] != direction.shape[0]:
            raise ValueError(
                f"The activation at {getattr(hook, 'name', 'this hook')} has width {activation.shape[-1]} but the "
                f"steering direction has {direction.shape[0]}: it was made for another hook or model."
            )
        if activation.ndim != 3:
            raise ValueError(
                f"Steering expects activations [batch, pos, d_model], got {tuple(activation.shape)} at {getattr(hook, 'name', '?')}."
            )
        if prior is not None:
            _check_same_device(
                prior_device(prior), activation.device, f"the activations at {getattr(hook, 'name', 'this hook')}"
            )
        batch, seq, _ = activation.shape
        mask = _selected(positions, batch, seq, activation.device)
        if mask is None:
            return activation
        alphas = _row_alphas(alpha_t, batch, activation.device)
        if projector is None and bool((alphas == 0).all()):
            return activation  # exactly the unhooked computation
        delta = alphas[:, None, None] * direction.to(activation.device, activation.dtype)  # [batch, 1, d]
        if projector is None:
            return torch.where(mask[..., None], activation + delta, activation)
        original = activation[mask]  # [n_selected, d]
        edited = (activation + delta)[mask]
        layer = hook_layer(prior, hook) if prior is not None else None
        projected = projector.project(edited, original=original, layer=layer)
        out = activation.clone()
        out[mask] = projected.to(activation.dtype)
        return out

    def reset() -> None:
        if projector is not None and hasattr(projector, "reset"):
            projector.reset()

    hook_fn.direction = direction  # type: ignore[attr-defined]
    hook_fn.prior = prior  # type: ignore[attr-defined]
    hook_fn.projector = projector  # type: ignore[attr-defined]
    hook_fn.reset = reset  # type: ignore[attr-defined]
    return hook_fn


def projection_hook(
    prior: GenerativePrior | None = None,
    projection: ProjectionConfig | None = None,
    *,
    projector: Projector | None = None,
    positions: Positions = "all",
) -> HookFn:
    """A hook that replaces activations at ``positions`` by their projection (no steering)."""
    width_of = prior if prior is not None else getattr(projector, "prior", None)
    if width_of is None:
        raise ValueError("projection_hook needs prior= (or a projector with a .prior) to know the activation width.")
    return steering_hook(
        torch.zeros(width_of.cfg.d_input),
        0.0,
        prior=prior,
        projection=projection,
        projector=projector,
        positions=positions,
    )


class SteeringHandle:
    """What :func:`patch` returns: ``.remove()`` takes the hook off (idempotent)."""

    def __init__(self, token: Any, hook_name: str, fn: HookFn, follower: Any = None) -> None:
        self._token, self.hook_name, self.fn, self._follower = token, hook_name, fn, follower

    def remove(self) -> None:
        _compat.detach_hook(self._token)
        if self._follower is not None:
            self._follower.remove()

    def __enter__(self) -> SteeringHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def patch(
    model: Any,
    direction: Float[Tensor, " d_model"],
    alpha: float | Float[Tensor, " batch"],
    *,
    prior: GenerativePrior | None = None,
    hook_name: str | None = None,
    **kwargs: Any,
) -> SteeringHandle:
    """Attach a steering hook to ``model`` at ``hook_name`` (default: the prior's hook) until ``.remove()``.

    Plain additive steering when ``prior=None``. Other keyword arguments go to :func:`steering_hook`.
    Checked here, before anything runs: the hook exists, the direction's width is the hook's
    (``d_model`` for residual hooks, ``d_mlp`` for MLP neurons), and the prior sits on the model's
    device.
    """
    fn = steering_hook(direction, alpha, prior=prior, **kwargs)
    name = _resolve_hook_name(model, fn.prior, hook_name)  # type: ignore[attr-defined]
    _check_attachable(model, name, fn.direction, fn.prior)  # type: ignore[attr-defined]
    token = _compat.attach_hook(model, name, fn)
    return SteeringHandle(token, name, fn, padding.follow_padding(model))


@contextmanager
def steer(
    model: Any,
    direction: Float[Tensor, " d_model"],
    alpha: float | Float[Tensor, " batch"],
    *,
    prior: GenerativePrior | None = None,
    hook_name: str | None = None,
    **kwargs: Any,
) -> Iterator[SteeringHandle]:
    """Context manager twin of :func:`patch`: the hook comes off on exit, also after an exception.

    Example::

        with tl_glp.steer(model, direction, 1.0, prior=prior, relative=True, positions="last",
                          projection=tl_glp.ProjectionConfig(seed=0)):
            text = model.generate("I think that", max_new_tokens=20)
    """
    handle = patch(model, direction, alpha, prior=prior, hook_name=hook_name, **kwargs)
    try:
        yield handle
    finally:
        handle.remove()


# --------------------------------------------------------------------------- helpers
def _selected(positions: Positions, batch: int, seq: int, device: torch.device) -> Tensor | None:
    """The positions to edit in this call: ``positions`` less padding, with ``"last"`` each row's last
    real token when the padding is known (:mod:`tl_glp.core.padding`). None: nothing to edit."""
    mask = position_mask(positions, batch, seq, device)
    if isinstance(positions, str) and positions == "last":
        real = padding.real_token_mask(batch, seq, device)
        if real is None:
            return mask
        last = padding.last_real(real)
        return last if bool(last.any()) else None
    return padding.without_padding(mask, batch, seq, device)


def _resolve_hook_name(model: Any, prior: GenerativePrior | None, hook_name: str | None) -> str:
    if hook_name is None:
        if prior is None or prior.cfg.hook_name is None:
            raise ValueError("Pass hook_name=... (plain steering, or a prior without a single recorded hook).")
        hook_name = prior.cfg.hook_name
    _compat.check_hook_name(model, hook_name)
    if prior is not None:
        _warn_on_mismatch(model, prior, hook_name)
    return hook_name


def _warn_on_mismatch(model: Any, prior: GenerativePrior, hook_name: str) -> None:
    cfg = prior.cfg
    if (
        cfg.hook_names
        and hook_name not in cfg.hook_names
        and _canonical(hook_name) not in {_canonical(n) for n in cfg.hook_names}
    ):
        warnings.warn(
            f"The prior was trained on {cfg.hook_names} but is being applied at {hook_name!r}.",
            UserWarning,
            stacklevel=4,
        )
    model_name = _compat.model_name_of(model)
    if (
        cfg.model_name and model_name and not _compat.same_model(cfg.model_name, model_name)
    ):  # org prefix, folder, case ignored
        warnings.warn(
            f"The prior was trained on {cfg.model_name!r} activations but the model is {model_name!r}.",
            UserWarning,
            stacklevel=4,
        )
    processing = _compat.model_processing(model)
    if cfg.model_processing in ("processed", "unprocessed") and processing != cfg.model_processing:
        warnings.warn(
            f"The prior models {cfg.model_processing} residuals but this model's are {processing}: load the model the way the prior's activations were collected.",
            UserWarning,
            stacklevel=4,
        )


def prior_device(prior: GenerativePrior) -> torch.device:
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


def _check_attachable(model: Any, name: str, direction: Tensor, prior: GenerativePrior | None) -> None:
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


def _check_direction(direction: Tensor, prior: GenerativePrior | None) -> Tensor:
    if not isinstance(direction, Tensor) or direction.ndim != 1:
        raise ValueError(
            f"direction must be a 1-D tensor [d_model], got {getattr(direction, 'shape', type(direction))}."
        )
    if not bool(torch.isfinite(direction).all()):
        raise ValueError("direction contains NaN or inf values.")
    if prior is not None and direction.shape[0] != prior.cfg.d_input:
        raise ValueError(f"direction has width {direction.shape[0]} but the prior models d_input={prior.cfg.d_input}.")
    return direction.detach().float()


def _strength(alpha: float | Tensor, relative: bool, act_norm: float | None, prior: GenerativePrior | None) -> Tensor:
    alpha_t = torch.as_tensor(alpha, dtype=torch.float32).detach()
    if alpha_t.ndim > 1:
        raise ValueError(
            f"alpha must be a float or a 1-D tensor with one value per batch row, got shape {tuple(alpha_t.shape)}."
        )
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
