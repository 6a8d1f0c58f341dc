"""Training a GenerativePrior: the loop, its schedule, checkpoints, metrics and DDP helpers.

Names are imported on first use, so that reading :class:`TrainConfig` (what ``tl-glp train
--help`` shows) does not load torch and the trainer.

    >>> from tl_glp.training import TrainConfig
    >>> TrainConfig(max_steps=10).max_steps
    10
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "config",
    "classifier_two_sample_auc": "metrics",
    "frechet_distance": "metrics",
    "TrainResult": "trainer",
    "train": "trainer",
}
"""Public name -> the module of this package that defines it."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
