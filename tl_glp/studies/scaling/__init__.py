"""The scaling study (``tl-glp scaling``): how a prior's loss falls with compute, and how steering,
fidelity and meta-neuron probing follow the loss.

- :func:`run_scaling_study` trains a ladder of priors (several depths, geometric checkpoints),
  evaluates every checkpoint, fits ``L(C) = E + A * C^-alpha`` on the compute-efficient frontier
  and writes ``report.md``, ``scaling.csv`` and figures; it resumes where a killed run stopped.
- :class:`ScalingSettings` (sizes; ``ScalingSettings.quick()``), :class:`SteeringTask` (prompts,
  direction, scorers).
- :func:`fit_power_law`, :func:`compute_frontier`, :func:`spearman_ci`,
  :func:`frechet_distance_infinity`: the statistics, usable on their own.
"""

import importlib
from typing import Any

_EXPORTS = {
    "FDInfinity": "evals",
    "evaluate_checkpoint": "evals",
    "frechet_distance_infinity": "evals",
    "PowerLawFit": "fit",
    "RankCorrelation": "fit",
    "compute_frontier": "fit",
    "fit_power_law": "fit",
    "spearman_ci": "fit",
    "ScalingSettings": "settings",
    "ScalingResult": "study",
    "SteeringTask": "study",
    "run_scaling_study": "study",
}
"""Public name -> the module of this package that defines it. Loaded on first use, so that
``tl-glp scaling --help`` (which needs only :mod:`.settings`) does not import the whole study."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
