"""Right-padded tokenisation and the model's device: the one copy every model-running module uses.

Right padding needs no attention mask with a causal model: no real token ever attends to a pad
that comes after it, so row ``i``'s real tokens are ``tokens[i, :lengths[i]]`` and the activations
there equal those of the unpadded prompt.

Example:
    >>> import torch
    >>> tokens, lengths = pad_right([torch.tensor([5, 6, 7]), torch.tensor([8])])
    >>> tokens.tolist(), lengths.tolist()
    ([[5, 6, 7], [8, 0, 0]], [3, 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

MAX_PROMPT_TOKENS = 1024
"""SAE-Probes keeps prompts up to 1024 tokens; we cut no shorter unless the model's context is."""


def model_device(model: Any) -> torch.device:
    """Where ``model``'s weights live (its first parameter), else ``cfg.device``, else the CPU."""
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    device = getattr(getattr(model, "cfg", None), "device", None)
    return torch.device(device) if device else torch.device("cpu")


def context_limit(model: Any, cap: int = MAX_PROMPT_TOKENS) -> int:
    """The longest prompt the model accepts (its ``cfg.n_ctx``), at most ``cap`` tokens."""
    n_ctx = getattr(getattr(model, "cfg", None), "n_ctx", None)
    return min(int(n_ctx), cap) if n_ctx else cap


def pad_right(rows: Sequence[Tensor], pad_id: int = 0) -> tuple[Int[Tensor, "batch seq"], Int[Tensor, " batch"]]:
    """Stack 1-D token rows into ``[batch, max_len]`` padded with ``pad_id`` on the right, and their lengths."""
    if not rows:
        raise ValueError("pad_right needs at least one row of tokens.")
    lengths = torch.tensor([len(r) for r in rows])
    tokens = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r.cpu()
    return tokens, lengths


def right_padded_tokens(
    model: Any, texts: Sequence[str], context_size: int | None = None
) -> tuple[Int[Tensor, "batch seq"], Int[Tensor, " batch"]]:
    """Tokenise ``texts`` one by one (with the model's BOS rule), keep the first ``context_size``
    tokens of each (never more than the model's context; default: :func:`context_limit`), and
    right-pad them (CPU tensors)."""
    limit = context_limit(model, cap=MAX_PROMPT_TOKENS if context_size is None else context_size)
    rows = [model.to_tokens(t, truncate=False)[0, :limit].cpu() for t in texts]
    return pad_right(rows)
