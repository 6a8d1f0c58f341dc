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

from tl_glp.studies.scaling.evals import FDInfinity, evaluate_checkpoint, frechet_distance_infinity
from tl_glp.studies.scaling.fit import PowerLawFit, RankCorrelation, compute_frontier, fit_power_law, spearman_ci
from tl_glp.studies.scaling.study import ScalingResult, ScalingSettings, SteeringTask, run_scaling_study

__all__ = [
    "FDInfinity",
    "PowerLawFit",
    "RankCorrelation",
    "ScalingResult",
    "ScalingSettings",
    "SteeringTask",
    "compute_frontier",
    "evaluate_checkpoint",
    "fit_power_law",
    "frechet_distance_infinity",
    "run_scaling_study",
    "spearman_ci",
]
