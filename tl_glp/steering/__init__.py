"""Steering with a generative prior: hooks, projectors, directions, sweeps and their scores."""

from tl_glp.steering.diagnose import (
    LinearProbe,
    ProjectionDiagnosis,
    diagnose_activations,
    diagnose_projections,
    fit_probes,
)
from tl_glp.steering.directions import diff_of_means, sae_direction, unit
from tl_glp.steering.hooks import SteeringHandle, patch, projection_hook, steer, steering_hook
from tl_glp.steering.pareto import MatchedGain, matched_concept_gain, matched_concept_gains, pareto_front
from tl_glp.steering.projectors import (
    BaseProjector,
    DirectionPreserving,
    GaussianShrinkage,
    Identity,
    LikelihoodGated,
    NormClamp,
    PCAProjector,
    PriorProjector,
    Projector,
    SAEProjector,
    ScorePull,
    meta_neuron_subspace,
)
from tl_glp.steering.scorers import DirectionScorer, Generations, LLMJudge, ProbeScorer, nll_fluency
from tl_glp.steering.sweep import (
    PAPER_STRENGTHS,
    cost_table,
    method_label,
    plot_pareto,
    position_label,
    steering_sweep,
)

__all__ = [
    "BaseProjector",
    "DirectionPreserving",
    "LikelihoodGated",
    "NormClamp",
    "ScorePull",
    "cost_table",
    "meta_neuron_subspace",
    "DirectionScorer",
    "GaussianShrinkage",
    "LinearProbe",
    "PCAProjector",
    "ProjectionDiagnosis",
    "SAEProjector",
    "diagnose_activations",
    "diagnose_projections",
    "fit_probes",
    "position_label",
    "Generations",
    "Identity",
    "LLMJudge",
    "MatchedGain",
    "PAPER_STRENGTHS",
    "PriorProjector",
    "ProbeScorer",
    "Projector",
    "SteeringHandle",
    "diff_of_means",
    "matched_concept_gain",
    "matched_concept_gains",
    "method_label",
    "nll_fluency",
    "pareto_front",
    "patch",
    "plot_pareto",
    "projection_hook",
    "sae_direction",
    "steer",
    "steering_hook",
    "steering_sweep",
    "unit",
]
