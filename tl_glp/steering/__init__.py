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
    GaussianShrinkage,
    Identity,
    PCAProjector,
    PriorProjector,
    Projector,
    SAEProjector,
)
from tl_glp.steering.scorers import (
    DirectionScorer,
    DistinctN,
    FlooredNLL,
    ForeignNLL,
    Generations,
    LLMJudge,
    ProbeScorer,
    RepeatedNgramShare,
    VaderScorer,
    distinct_n,
    nll_fluency,
    repeated_ngram_share,
)
from tl_glp.steering.sweep import PAPER_STRENGTHS, method_label, plot_pareto, position_label, steering_sweep

__all__ = [
    "DirectionScorer",
    "DistinctN",
    "FlooredNLL",
    "ForeignNLL",
    "RepeatedNgramShare",
    "VaderScorer",
    "distinct_n",
    "repeated_ngram_share",
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
