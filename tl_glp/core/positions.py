"""Which positions of a ``[batch, pos, d]`` hook activation an intervention touches.

Shared by every hook that edits or reads activations (steering, projection, score recorders).

- ``"all"``: every position of every forward call;
- ``"last"``: the last position of each forward call (the last prompt token at prefill, then every
  new token during cached ``model.generate``, whose decode steps have length 1);
- a ``slice`` over the positions of each forward call (``slice(1, None)``: all but BOS);
- a boolean mask ``[pos]`` or ``[batch, pos]``: applied to forward calls of that length only.

Example:
    >>> position_mask("last", 2, 3, torch.device("cpu")).tolist()
    [[False, False, True], [False, False, True]]
    >>> position_mask(slice(5, None), 1, 3, torch.device("cpu")) is None   # nothing to edit in this call
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tl_glp.core import _compat
from tl_glp.core.prior import GenerativePrior

Positions = str | slice | Tensor


def check_positions(positions: Positions) -> None:
    """Raise a clear error for a value :func:`position_mask` cannot use."""
    if isinstance(positions, str) and positions not in ("all", "last"):
        raise ValueError(f"positions must be 'all', 'last', a slice or a boolean mask, got {positions!r}.")
    if isinstance(positions, Tensor) and (positions.dtype != torch.bool or positions.ndim not in (1, 2)):
        raise ValueError("a positions mask must be a boolean tensor [pos] or [batch, pos].")
    if not isinstance(positions, (str, slice, Tensor)):
        raise ValueError(
            f"positions must be 'all', 'last', a slice or a boolean mask, got a {type(positions).__name__}."
        )


def position_mask(positions: Positions, batch: int, seq: int, device: torch.device) -> Tensor | None:
    """Boolean ``[batch, seq]`` of the positions to touch in this forward call (None: none)."""
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


def hook_layer(prior: GenerativePrior, hook: Any) -> int | None:
    """The LLM layer a multi-layer prior must condition on at ``hook`` (None for a single-site prior)."""
    if not prior.cfg.is_multi_layer:
        return None
    layer = _compat.layer_of(getattr(hook, "name", "") or "")
    if layer is None:
        raise ValueError("A multi-layer prior needs to know the layer: attach it at a blocks.{L}.* hook.")
    return layer
