"""The normaliser: per-dimension statistics of the training activations, and (de)normalisation.

A prior works in standardised space ``z = (x - mean) / sqrt(var)`` (glp-method.md section 2).
``mean`` and ``var`` are ``[d_input]``, or ``[n_llm_layers, d_input]`` for a multi-layer prior
(one row per LLM layer, picked per activation by ``rows``).

The statistics always stay float32, also when the prior is cast to bf16/fp16 (``prior.half()``,
``prior.to(torch.bfloat16)``): Llama residual variances overflow fp16, and bf16 would round the
mean of every activation. Device moves apply to them as usual.

Example:
    >>> import torch
    >>> norm = Normalizer(3)
    >>> norm.set_statistics(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 4.0, 4.0]))
    >>> norm.normalize(torch.tensor([[3.0, 2.0, 1.0]])).tolist()
    [[1.0, 0.0, -1.0]]
    >>> norm.half().mean.dtype   # casting the module keeps the statistics in float32
    torch.float32
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

MIN_VARIANCE = 1e-12
"""Variances are clamped to this before the square root (a constant dimension maps to 0)."""


class Normalizer(nn.Module):
    """Float32 ``mean``/``var`` buffers and the maps between raw and standardised space."""

    mean: Tensor
    var: Tensor

    def __init__(self, d_input: int, n_rows: int | None = None) -> None:
        super().__init__()
        shape = (d_input,) if n_rows is None else (n_rows, d_input)
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("var", torch.ones(shape))

    @property
    def per_row(self) -> bool:
        """True for a multi-layer normaliser (one row of statistics per LLM layer)."""
        return self.mean.ndim == 2

    def set_statistics(self, mean: Tensor, var: Tensor, row: int | None = None) -> None:
        """Copy statistics in (all of them, or one layer's row), as float32."""
        target_mean = self.mean if row is None else self.mean[row]
        target_var = self.var if row is None else self.var[row]
        if mean.shape != target_mean.shape or var.shape != target_var.shape:
            raise ValueError(
                f"Statistics of shape {tuple(mean.shape)} / {tuple(var.shape)} do not fit {tuple(target_mean.shape)}."
            )
        if bool((var < 0).any()) or not bool(torch.isfinite(mean).all() and torch.isfinite(var).all()):
            raise ValueError("Statistics must be finite and variances non-negative.")
        with torch.no_grad():
            target_mean.copy_(mean.to(torch.float32))
            target_var.copy_(var.to(torch.float32))

    def is_identity(self) -> bool:
        """True while the statistics are still the initial zeros and ones (never fitted)."""
        return bool(torch.all(self.mean == 0)) and bool(torch.all(self.var == 1))

    def statistics(
        self, rows: Tensor | None, lead: tuple[int, ...] | torch.Size, device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """``mean`` and ``std`` broadcastable against ``[*lead, d_input]`` (``rows``: flattened layer per row)."""
        mean, var = self.mean.to(device), self.var.to(device)
        if rows is not None:
            mean, var = mean[rows].reshape(*lead, -1), var[rows].reshape(*lead, -1)
        return mean, var.clamp_min(MIN_VARIANCE).sqrt()

    def normalize(self, x: Float[Tensor, "... d_input"], rows: Tensor | None = None) -> Float[Tensor, "... d_input"]:
        """``(x - mean) / std`` computed and returned in float32."""
        mean, std = self.statistics(rows, x.shape[:-1], x.device)
        return (x.to(torch.float32) - mean) / std

    def denormalize(self, z: Float[Tensor, "... d_input"], rows: Tensor | None = None) -> Float[Tensor, "... d_input"]:
        """``z * std + mean`` computed and returned in float32."""
        mean, std = self.statistics(rows, z.shape[:-1], z.device)
        return z.to(torch.float32) * std + mean

    def log_std_sum(self, rows: Tensor | None = None) -> Tensor:
        """``sum(log std)`` per row (a scalar for a single-site normaliser): minus the log-Jacobian of
        :meth:`normalize`, so ``log p_x(x) = log p_z(z) - log_std_sum``."""
        var = self.var if rows is None else self.var.to(rows.device)[rows]
        return 0.5 * var.double().clamp_min(MIN_VARIANCE).log().sum(-1)

    def activation_norm(self, row: int | None = None) -> float:
        """Typical activation norm ``sqrt(sum(mean**2 + var))`` (of one layer's row if multi-layer)."""
        mean = self.mean if row is None else self.mean[row]
        var = self.var if row is None else self.var[row]
        return float(torch.sqrt((mean.double() ** 2 + var.double()).sum()))

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Any:
        """Follow device moves but never dtype casts: the statistics stay float32."""
        for name, buf in self._buffers.items():
            if buf is None:
                continue
            moved = fn(torch.empty(0, dtype=buf.dtype, device=buf.device))
            self._buffers[name] = buf.to(device=moved.device)
        return self
