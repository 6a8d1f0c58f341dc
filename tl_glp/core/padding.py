"""Which positions of the current forward call are real tokens and which are padding.

A TransformerLens hook sees only the activation ``[batch, pos, d]``: not the tokens, not the
attention mask. Padding positions of a batch look like any others, so a hook that edits or scores
"all" positions would also edit, project and count the pads. This module tells the hooks which
positions are padding, from one of three sources (innermost wins):

- :func:`real_tokens`: a declaration around forward calls, ``with real_tokens(mask): model(tokens)``
  (``mask [batch, pos]``, 1 or True on real tokens: an attention mask). The runners of this
  package that right-pad batches (``tl_glp.evaluation.document_losses`` and what uses it) declare
  their masks this way.
- :func:`follow_padding` (installed by :func:`tl_glp.steer` and :func:`tl_glp.patch`): a hook on
  the model itself that reads each forward call's ``attention_mask=`` keyword (TransformerLens's
  ``generate`` passes one for left-padded batches of prompts) or, for a call on token ids without
  one, finds the padding the way TransformerLens's ``get_attention_mask`` does (trailing pad ids
  when the tokenizer pads on the right, leading ones on the left), but only where the pad id is
  not also the BOS or EOS id (GPT-2's is both: a pad there cannot be told from a real token).
- nothing: every position is a real token.

:func:`real_token_mask` is what the hooks call. During cached generation a decode step's
activation has one position while the declared mask covers the whole sequence: the newest columns
apply. Tokens beyond a declared mask (generated after it) are real.

Example:
    >>> import torch
    >>> mask = torch.tensor([[1, 1, 1], [1, 0, 0]])        # row 1 is right-padded
    >>> real_token_mask(2, 3, torch.device("cpu")) is None   # nothing declared: all real
    True
    >>> with real_tokens(mask):
    ...     real_token_mask(2, 3, torch.device("cpu")).tolist()
    [[True, True, True], [True, False, False]]
    >>> with real_tokens(mask):                              # a cached decode step: the newest column
    ...     real_token_mask(2, 1, torch.device("cpu")).tolist()
    [[True], [False]]
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

_DECLARED: ContextVar[tuple[Tensor | None, ...]] = ContextVar("tl_glp_real_tokens", default=())


def _push(mask: Tensor | None) -> None:
    _DECLARED.set((*_DECLARED.get(), mask))


def _pop() -> None:
    stack = _DECLARED.get()
    if stack:
        _DECLARED.set(stack[:-1])


def _current() -> Tensor | None:
    stack = _DECLARED.get()
    return stack[-1] if stack else None


def _as_mask(mask: Any) -> Tensor:
    mask = torch.as_tensor(mask)
    if mask.ndim == 1:
        mask = mask[None]
    if mask.ndim != 2:
        raise ValueError(f"A real-token mask must be [batch, pos] (1 = real token), got shape {tuple(mask.shape)}.")
    return mask.detach().bool()


@contextmanager
def real_tokens(mask: Int[Tensor, "batch pos"] | Bool[Tensor, "batch pos"] | None) -> Iterator[None]:
    """Declare, for the forward calls inside, which positions are real tokens (``mask``: 1 or True;
    an attention mask). This package's hooks then never edit, project, score or count the others.
    ``None`` declares every position real."""
    _push(None if mask is None else _as_mask(mask))
    try:
        yield
    finally:
        _pop()


def real_token_mask(batch: int, seq: int, device: torch.device) -> Bool[Tensor, "batch seq"] | None:
    """The real tokens of a forward call of shape ``[batch, seq]`` (None: all of them, or unknown)."""
    mask = _current()
    if mask is None or mask.shape[0] not in (1, batch):
        return None  # declared for calls of another batch size: unknown here
    mask = mask.expand(batch, mask.shape[1])  # one row: the same positions in every row
    if mask.shape[1] >= seq:
        mask = mask[:, mask.shape[1] - seq :]  # a cached decode step: the newest columns
    else:
        mask = torch.cat([mask, mask.new_ones(batch, seq - mask.shape[1])], dim=1)  # generated after it: real
    return mask.to(device)


def padding_from_tokens(tokens: Int[Tensor, "batch pos"], tokenizer: Any) -> Bool[Tensor, "batch pos"] | None:
    """The real tokens of a padded batch of token ids, by the tokenizer's pad id and padding side
    (TransformerLens's rule: trailing pads on the right, leading pads on the left). None when the
    pad id is unknown or is also the BOS or EOS id, so that a pad cannot be told from a real token."""
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None or pad in (getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        return None
    is_real = tokens != pad
    if getattr(tokenizer, "padding_side", "right") == "left":
        return is_real.cumsum(dim=1) > 0
    return is_real.flip(1).cumsum(dim=1).flip(1) > 0


def without_padding(mask: Tensor | None, batch: int, seq: int, device: torch.device) -> Tensor | None:
    """``mask`` (a ``[batch, seq]`` selection of positions) less the padding of this forward call;
    None when nothing is left."""
    real = real_token_mask(batch, seq, device)
    if mask is None or real is None:
        return mask
    mask = mask & real
    return mask if bool(mask.any()) else None


def last_real(real: Bool[Tensor, "batch seq"]) -> Bool[Tensor, "batch seq"]:
    """Each row's last real position (rows without one select nothing)."""
    seq = real.shape[1]
    last = seq - 1 - real.flip(1).int().argmax(dim=1)
    out = torch.zeros_like(real)
    out[torch.arange(real.shape[0], device=real.device), last] = True
    return out & real


def _mask_of(value: Any) -> Tensor | None:
    """An attention mask ``[batch, pos]`` (1 = real); None for anything else (e.g. a 4-D additive mask)."""
    return value.detach().bool() if isinstance(value, Tensor) and value.ndim == 2 else None


def _before_model(module: Any, args: tuple, kwargs: dict) -> None:
    mask = _mask_of(kwargs.get("attention_mask"))
    if mask is None:
        tokens = args[0] if args else kwargs.get("input", kwargs.get("tokens"))
        if isinstance(tokens, Tensor) and tokens.ndim == 2 and not tokens.is_floating_point():
            mask = padding_from_tokens(tokens, getattr(module, "tokenizer", None))
    _push(_current() if mask is None else mask)  # no news: keep what is declared around the call


def _before_block(module: Any, args: tuple, kwargs: dict) -> None:
    mask = _mask_of(kwargs.get("attention_mask"))  # the mask TransformerLens itself applies, also in generate
    _push(_current() if mask is None else mask)


def _after(module: Any, args: tuple, output: Any) -> None:
    _pop()


class _Follower:
    """One per model: hooks on the model and on each of its blocks that declare each call's padding.

    The model-level hook sees ``model(tokens, attention_mask=...)`` and ``run_with_hooks``; the
    block-level ones see the mask TransformerLens passes every block, also from ``generate``,
    which calls ``forward`` directly (no model-level hooks run then). Holds no reference to the model.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.users = 0
        self.handles = [
            model.register_forward_pre_hook(_before_model, with_kwargs=True),
            model.register_forward_hook(_after, always_call=True),
        ]
        for block in getattr(model, "blocks", None) or []:
            if isinstance(block, torch.nn.Module):
                self.handles.append(block.register_forward_pre_hook(_before_block, with_kwargs=True))
                self.handles.append(block.register_forward_hook(_after, always_call=True))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


_FOLLOWERS: weakref.WeakKeyDictionary[Any, _Follower] = weakref.WeakKeyDictionary()


class PaddingHandle:
    """What :func:`follow_padding` returns: ``.remove()`` (idempotent) stops following when no one else does."""

    def __init__(self, model: Any) -> None:
        self._model: Any = weakref.ref(model) if model is not None else None

    def remove(self) -> None:
        model = self._model() if self._model is not None else None
        self._model = None
        follower = _FOLLOWERS.get(model) if model is not None else None
        if follower is None:
            return
        follower.users -= 1
        if follower.users == 0:
            follower.remove()
            del _FOLLOWERS[model]

    def __enter__(self) -> PaddingHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def follow_padding(model: Any) -> PaddingHandle:
    """Make this package's hooks skip the padding of ``model``'s forward calls (see the module
    docstring) until ``.remove()``; a context manager too. A model without PyTorch forward hooks
    (not an ``nn.Module``) is left alone."""
    if not isinstance(model, torch.nn.Module):
        return PaddingHandle(None)
    follower = _FOLLOWERS.get(model)
    if follower is None:
        follower = _FOLLOWERS[model] = _Follower(model)
    follower.users += 1
    return PaddingHandle(model)
