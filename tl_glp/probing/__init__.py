"""Probing: meta-neurons against SAE features, raw neurons and controls on the same datasets."""

from typing import Any

from tl_glp.probing.adapters import MetaNeuronSAE
from tl_glp.probing.datasets import ProbingDataset, load_dataset, sae_probes_datasets
from tl_glp.probing.extract import last_token_activations
from tl_glp.probing.probes import C_GRID, SAE_PROBES_CS, KSparseResult, ProbeResult, probe_1d, probe_ksparse
from tl_glp.probing.results import ProbingResults, bootstrap_ci
from tl_glp.probing.runner import run_probing
from tl_glp.probing.sources import (
    FeatureSource,
    MetaNeurons,
    MLPNeurons,
    PCAFeatures,
    RandomProjection,
    RawActivations,
    SAEFeatures,
)

__all__ = [
    "C_GRID",
    "FeatureSource",
    "KSparseResult",
    "MLPNeurons",
    "MetaNeuronSAE",
    "MetaNeurons",
    "PCAFeatures",
    "ProbeResult",
    "ProbingDataset",
    "ProbingResults",
    "RandomProjection",
    "RawActivations",
    "SAEFeatures",
    "SAE_PROBES_CS",
    "SAE_PROBES_DATASETS",
    "bootstrap_ci",
    "last_token_activations",
    "load_dataset",
    "probe_1d",
    "probe_ksparse",
    "run_probing",
    "sae_probes_datasets",
]


def __getattr__(name: str) -> Any:  # the dataset list is read lazily from the installed sae-probes
    if name == "SAE_PROBES_DATASETS":
        return sae_probes_datasets()
    raise AttributeError(f"module 'tl_glp.probing' has no attribute {name!r}")
