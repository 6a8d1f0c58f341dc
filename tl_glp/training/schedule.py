"""The learning-rate schedule of the published runs: linear warmup, then cosine decay.

``factor(step)`` multiplies the base learning rate: it rises linearly from ``start`` to 1 over
the first ``warmup_frac`` of the steps, then follows a half cosine from 1 down to ``final``.

Example:
    >>> f = [lr_factor(s, 100, warmup_frac=0.1, start=0.01, final=0.1) for s in (0, 10, 55, 100)]
    >>> [round(x, 3) for x in f]
    [0.01, 1.0, 0.55, 0.1]
"""

from __future__ import annotations

import math


def lr_factor(
    step: int, total_steps: int, *, warmup_frac: float = 0.01, start: float = 0.01, final: float = 0.1
) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total_steps``."""
    warmup = max(1, round(warmup_frac * total_steps)) if warmup_frac > 0 else 0
    if step < warmup:
        return start + (1 - start) * step / warmup
    span = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))
