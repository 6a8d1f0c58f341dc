"""tl-glp: generative latent priors (flow-matching meta-models of LLM activations) for TransformerLens.

The public API lives here; see the README for a tour. Names are imported on first use, so
``import tl_glp`` (and ``tl-glp --help``) stays fast. The package is layered (README, "Architecture"):
``tl_glp.core`` <- data (``tl_glp.activations``, ``tl_glp.models``, ``tl_glp.corpora``) <- uses of a prior (``training``, ``steering``,
``probing``, ``interpret``, ``manifold``, ``evaluation``, ``saes``) <- ``tl_glp.studies`` and the CLI.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.4.0"

_EXPORTS = {
    "ActivationSource": "tl_glp.activations.sources",
    "InMemoryActivations": "tl_glp.activations.sources",
    "as_source": "tl_glp.activations.sources",
    "HFText": "tl_glp.activations.collect",
    "collect_activations": "tl_glp.activations.collect",
    "ActivationStore": "tl_glp.activations.store",
    "StreamingActivations": "tl_glp.activations.streaming",
    "StoreError": "tl_glp.activations.store",
    "sae_probes_corpus": "tl_glp.corpora",
    "split_documents": "tl_glp.corpora",
    "PriorConfig": "tl_glp.core.config",
    "GenerativePrior": "tl_glp.core.prior",
    "ProjectionConfig": "tl_glp.core.projection",
    "real_tokens": "tl_glp.core.padding",
    "run_probing": "tl_glp.probing.runner",
    "diff_of_means": "tl_glp.steering.directions",
    "sae_direction": "tl_glp.steering.directions",
    "choose_direction": "tl_glp.steering.choose",
    "patch": "tl_glp.steering.hooks",
    "steer": "tl_glp.steering.hooks",
    "steering_hook": "tl_glp.steering.hooks",
    "projection_hook": "tl_glp.steering.hooks",
    "plot_pareto": "tl_glp.steering.sweep",
    "steering_sweep": "tl_glp.steering.sweep",
    "diagnose_projections": "tl_glp.steering.diagnose",
    "TrainConfig": "tl_glp.training.config",
    "TrainResult": "tl_glp.training.trainer",
    "train": "tl_glp.training.trainer",
    "classifier_two_sample_auc": "tl_glp.training.metrics",
    "frechet_distance": "tl_glp.training.metrics",
    "log_prob": "tl_glp.manifold.likelihood",
    "denoising_score": "tl_glp.manifold.likelihood",
    "run_scaling_study": "tl_glp.studies.scaling.study",
    "load_model": "tl_glp.models.load",
}
_SUBPACKAGES = (
    "activations",
    "core",
    "corpora",
    "evaluation",
    "interpret",
    "manifold",
    "models",
    "probing",
    "saes",
    "steering",
    "studies",
    "training",
)

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"tl_glp.{name}")
    raise AttributeError(f"module 'tl_glp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_SUBPACKAGES])
