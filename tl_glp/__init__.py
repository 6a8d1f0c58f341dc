"""tl-glp: generative latent priors (flow-matching meta-models of LLM activations) for TransformerLens.

The public API lives here; see the README for a tour.
"""

from tl_glp.activations import ActivationSource, InMemoryActivations, as_source
from tl_glp.config import PriorConfig
from tl_glp.prior import GenerativePrior

__version__ = "0.1.0"

__all__ = [
    "ActivationSource",
    "GenerativePrior",
    "InMemoryActivations",
    "PriorConfig",
    "as_source",
]
