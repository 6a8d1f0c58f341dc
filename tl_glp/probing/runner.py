"""``run_probing``: every feature source on every dataset, same activations, same splits.

Example (offline, on the testbed; see ``examples/sae_head_to_head.py``)::

    results = tl_glp.run_probing(model, prior, ["meta", "raw", "mlp", SAEFeatures(sae)], ["5_hist_fig_ismale"])
    print(results.summary())
    results.plot("probing.png")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from tl_glp.core.prior import GenerativePrior
from tl_glp.probing.datasets import ProbingDataset, load_dataset, sae_probes_datasets
from tl_glp.probing.extract import last_token_activations
from tl_glp.probing.probes import SPARSE_KS, probe_1d, probe_ksparse
from tl_glp.probing.results import ProbingResults
from tl_glp.probing.sources import FeatureSource, MetaNeurons, MLPNeurons, PCAFeatures, RandomProjection, RawActivations

SOURCE_NAMES = ("meta", "raw", "mlp", "pca", "random")


def make_source(spec: Any, prior: GenerativePrior | None = None) -> FeatureSource:
    """A :class:`FeatureSource` from itself or a name in :data:`SOURCE_NAMES`."""
    if isinstance(spec, FeatureSource):
        return spec
    if spec == "meta":
        if prior is None:
            raise ValueError("The 'meta' source needs a prior.")
        return MetaNeurons(prior)
    factories = {
        "raw": RawActivations,
        "mlp": MLPNeurons,
        "pca": lambda: PCAFeatures(64),
        "random": lambda: RandomProjection(512),
    }
    if spec not in factories:
        raise ValueError(
            f"Unknown feature source {spec!r}; use one of {SOURCE_NAMES} or a FeatureSource (e.g. SAEFeatures(sae))."
        )
    return factories[spec]()


def run_probing(
    model: Any,
    prior: GenerativePrior | None = None,
    sources: Sequence[Any] = ("meta", "raw", "mlp"),
    datasets: Sequence[Any] | str = "all",
    *,
    hook_name: str | None = None,
    method: str = "1d",
    backend: str = "torch",
    top_k: int = 512,
    ks: Sequence[int] = SPARSE_KS,
    controls: bool = True,
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
    padding_side: str = "right",
    context_size: int | None = None,
    seed: int = 42,
    progress: bool = True,
) -> ProbingResults:
    """Probe each source on each dataset and collect the results.

    Args:
        model: the TransformerLens model whose activations are probed.
        prior: the :class:`~tl_glp.GenerativePrior` (for the ``"meta"`` source and the default hook).
        sources: :class:`FeatureSource` objects or names (``"meta"``, ``"raw"``, ``"mlp"``, ``"pca"``, ``"random"``).
        datasets: SAE-Probes names, DataFrames/CSV paths with ``prompt``/``target``, or ``"all"`` (the 113).
        hook_name: the probed hook (default: the prior's).
        method: ``"1d"`` (best single feature) or ``"ksparse"`` (SAE-Probes' k-sparse protocol: its
            single held-out split and L1 path, see :func:`~tl_glp.probing.probe_ksparse`).
        backend: ``"torch"`` (batched, fast) or ``"sklearn"`` (reference) for 1-D probing.
        controls: also probe every source on labels shuffled across the dataset (a permutation
            null: the test AUC a feature reaches by chance).
        cache_dir: cache last-token activations on disk, so another source does not re-run the model.
        context_size: the most tokens kept per prompt (default: the model's context, at most 1024, as
            SAE-Probes); longer prompts keep BOS and their last tokens
            (:func:`~tl_glp.probing.last_token_activations`).
    """
    import pandas as pd

    if method not in ("1d", "ksparse"):
        raise ValueError(f"method must be '1d' or 'ksparse', got {method!r}.")
    hook = hook_name or (prior.cfg.hook_name if prior is not None else None)
    if hook is None:
        raise ValueError("Pass hook_name=... (or a prior that records its hook).")
    feature_sources = [make_source(s, prior) for s in sources]
    names = sae_probes_datasets() if datasets == "all" else list(datasets)  # type: ignore[arg-type]
    rows = []
    bar = tqdm(total=len(names) * len(feature_sources), disable=not progress, desc="probing", unit="probe")
    for spec in names:
        ds = load_dataset(spec)
        needed = sorted({h for s in feature_sources for h in s.hooks(hook)})
        acts = last_token_activations(
            model,
            ds.prompts,
            needed,
            batch_size=batch_size,
            padding_side=padding_side,
            context_size=context_size,
            cache_dir=cache_dir,
            cache_key=ds.name,
        )
        for source in feature_sources:
            bar.set_postfix(dataset=ds.name[:24], source=source.name, refresh=False)
            rows.extend(_probe_source(source, acts, hook, ds, method, backend, top_k, ks, controls, seed))
            bar.update(1)
    bar.close()
    return ProbingResults(pd.DataFrame.from_records(rows))


def _probe_source(
    source: FeatureSource,
    acts: dict,
    hook: str,
    ds: ProbingDataset,
    method: str,
    backend: str,
    top_k: int,
    ks: Sequence[int],
    controls: bool,
    seed: int,
) -> list[dict]:
    tr, te = torch.from_numpy(ds.train_idx), torch.from_numpy(ds.test_idx)
    source.fit({h: a[tr] for h, a in acts.items()}, hook)
    feats = source.features(acts, hook)
    X_train, X_test = feats[tr], feats[te]
    y = torch.from_numpy(ds.labels)
    labelings = [(False, y[tr], y[te])]
    if controls:  # a permutation null: labels shuffled across the whole dataset, then split as usual
        shuffled = y[torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))]
        labelings.append((True, shuffled[tr], shuffled[te]))
    out = []
    for control, y_train, y_test in labelings:
        base = {"dataset": ds.name, "source": source.name, "control": control, "n_features": X_train.shape[1]}
        if method == "1d":
            r = probe_1d(X_train, y_train, X_test, y_test, top_k=top_k, backend=backend)
            out.append({**base, "feature": r.feature, "val_auc": r.val_auc, "test_auc": r.test_auc, "C": r.C})
        else:
            for r in probe_ksparse(X_train, y_train, X_test, y_test, ks=ks, seed=seed):
                out.append(
                    {
                        **base,
                        "k": r.k,
                        "feature": r.features[0],
                        "val_auc": r.val_auc,
                        "test_auc": r.test_auc,
                        "test_acc": r.test_acc,
                        "C": r.C,
                    }
                )
    return out
