"""tl-glp: generative latent priors (flow-matching meta-models of LLM activations) for TransformerLens.

The public API lives here; see the README for a tour.
"""

from tl_glp.activations import ActivationSource, InMemoryActivations, as_source
from tl_glp.activations.collect import HFText, collect_activations
from tl_glp.activations.store import ActivationStore, StoreError
from tl_glp.config import PriorConfig
from tl_glp.prior import GenerativePrior
from tl_glp.probing import run_probing
from tl_glp.steering import diff_of_means, patch, plot_pareto, sae_direction, steer, steering_sweep
from tl_glp import interpret  # noqa: E402  (tl_glp.interpret.top_activations, dashboards, explanations)
from tl_glp.training import TrainConfig, TrainResult, classifier_two_sample_auc, frechet_distance, train
from tl_glp import scaling  # noqa: E402  (tl_glp.scaling.run_scaling_study, ScalingSettings, fit_power_law)
from tl_glp.scaling import run_scaling_study

__version__ = "0.1.0"

__all__ = [
    "ActivationSource",
    "ActivationStore",
    "GenerativePrior",
    "HFText",
    "InMemoryActivations",
    "PriorConfig",
    "StoreError",
    "TrainConfig",
    "TrainResult",
    "as_source",
    "classifier_two_sample_auc",
    "collect_activations",
    "frechet_distance",
    "train",
    "diff_of_means",
    "patch",
    "plot_pareto",
    "run_probing",
    "run_scaling_study",
    "sae_direction",
    "steer",
    "steering_sweep",
]
