"""Running mean and variance over a stream of activation batches (float64, numerically stable).

Batches are merged with Chan et al.'s parallel update, so the result does not depend on how the
stream was cut into batches (up to float64 rounding) and never loses precision on long streams.

Example:
    >>> import torch
    >>> x = torch.randn(1000, 4, dtype=torch.float64)
    >>> stats = RunningStats(4)
    >>> for chunk in x.split(37):
    ...     stats.update(chunk)
    >>> torch.allclose(stats.mean, x.mean(0)) and torch.allclose(stats.var, x.var(0, unbiased=False))
    True
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor


class RunningStats:
    """Count, mean and (population) variance per dimension, accumulated in float64."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.count = 0
        self._mean = torch.zeros(dim, dtype=torch.float64)
        self._m2 = torch.zeros(dim, dtype=torch.float64)

    def update(self, batch: Float[Tensor, "n dim"]) -> None:
        """Merge a batch of rows (any float dtype, any device) into the statistics."""
        batch = batch.detach().reshape(-1, self.dim).to("cpu", torch.float64)
        n = batch.shape[0]
        if n == 0:
            return
        b_mean = batch.mean(0)
        b_m2 = ((batch - b_mean) ** 2).sum(0)
        total = self.count + n
        delta = b_mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + b_m2 + delta**2 * (self.count * n / total)
        self.count = total

    def merge(self, other: RunningStats) -> None:
        """Merge another accumulator (e.g. from another process) into this one."""
        if other.count == 0:
            return
        total = self.count + other.count
        delta = other._mean - self._mean
        self._mean = self._mean + delta * (other.count / total)
        self._m2 = self._m2 + other._m2 + delta**2 * (self.count * other.count / total)
        self.count = total

    @property
    def mean(self) -> Float[Tensor, " dim"]:
        return self._mean.clone()

    @property
    def var(self) -> Float[Tensor, " dim"]:
        """Population variance (divides by the count), as the published statistics."""
        if self.count == 0:
            return torch.ones(self.dim, dtype=torch.float64)
        return self._m2 / self.count

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self._mean.tolist(), "m2": self._m2.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RunningStats:
        stats = cls(len(state["mean"]))
        stats.count = int(state["count"])
        stats._mean = torch.tensor(state["mean"], dtype=torch.float64)
        stats._m2 = torch.tensor(state["m2"], dtype=torch.float64)
        return stats
