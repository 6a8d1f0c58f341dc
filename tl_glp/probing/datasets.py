"""Probing datasets: the 113 binary SAE-Probes datasets (from the installed ``sae-probes``
package, never copied here) or any DataFrame / CSV with ``prompt`` and ``target`` columns.

Splits follow SAE-Probes exactly: its own ``get_train_test_indices(y, num_train, num_test,
pos_ratio=0.5, seed=42)`` with ``num_train = min(1024, N - 100)`` and ``num_test = N - num_train - 1``
over at most the first 5000 rows; labels are made binary in sorted order (scikit-learn's
``LabelEncoder``).

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"prompt": [f"text {i}" for i in range(300)], "target": ["yes", "no"] * 150})
    >>> ds = load_dataset(df, name="mine")
    >>> len(ds.train_idx), len(ds.test_idx), ds.labels[:2].tolist()
    (200, 99, [1, 0])
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

MAX_ROWS = 5000
"""SAE-Probes reads at most this many rows of a dataset."""


@dataclass
class ProbingDataset:
    """Prompts, binary labels and the train/test split of one probing task."""

    name: str
    prompts: list[str]
    labels: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    classes: tuple[Any, Any] = (0, 1)

    def __len__(self) -> int:
        return len(self.prompts)


def sae_probes_datasets() -> list[str]:
    """Names of the SAE-Probes binary datasets (e.g. ``"5_hist_fig_ismale"``)."""
    return list(_sae_probes_names())


@lru_cache(maxsize=1)
def _sae_probes_names() -> tuple[str, ...]:
    try:
        from sae_probes.utils_data import get_numbered_binary_tags
    except ImportError as err:
        raise ImportError("The SAE-Probes datasets need the probes extra: pip install 'tl-glp[probes]'") from err
    return tuple(get_numbered_binary_tags())


def __getattr__(name: str) -> Any:  # SAE_PROBES_DATASETS is read lazily from the installed package
    if name == "SAE_PROBES_DATASETS":
        return sae_probes_datasets()
    raise AttributeError(name)


def load_dataset(
    source: Any, *, name: str | None = None, num_train: int | None = None, seed: int = 42
) -> ProbingDataset:
    """A :class:`ProbingDataset` from an SAE-Probes name, a DataFrame, or a CSV path.

    ``num_train`` defaults to ``min(1024, N - 100)``; the test set is the remaining ``N - num_train - 1``.
    """
    import pandas as pd

    if isinstance(source, ProbingDataset):
        return source
    if isinstance(source, pd.DataFrame):
        df, ds_name = source, name or "dataframe"
    elif isinstance(source, (str, Path)) and str(source).endswith((".csv", ".csv.zst", ".csv.gz")):
        df, ds_name = pd.read_csv(source), name or Path(source).name.split(".")[0]
    elif isinstance(source, str):
        df, ds_name = _read_sae_probes(source), source
    else:
        raise TypeError(
            f"Cannot load a probing dataset from a {type(source).__name__}: pass a name, a DataFrame or a CSV path."
        )
    missing = {"prompt", "target"} - set(df.columns)
    if missing:
        raise ValueError(f"Dataset {ds_name!r} lacks column(s) {sorted(missing)}; it needs 'prompt' and 'target'.")
    df = df.iloc[:MAX_ROWS]
    classes, labels = np.unique(df["target"].to_numpy(), return_inverse=True)
    if len(classes) != 2:
        raise ValueError(
            f"Dataset {ds_name!r} has {len(classes)} class(es) {list(classes)[:5]}; binary probing needs exactly two."
        )
    n = len(df)
    n_train = min(1024, n - 100) if num_train is None else num_train
    n_test = n - n_train - 1
    if n_train < 10 or n_test < 10:
        raise ValueError(f"Dataset {ds_name!r} has {n} rows: too few for a train/test split (needs > 120).")
    train_idx, test_idx = _split(labels, n_train, n_test, seed)
    return ProbingDataset(
        ds_name,
        df["prompt"].astype(str).tolist(),
        labels.astype(np.int64),
        np.asarray(train_idx),
        np.asarray(test_idx),
        (classes[0], classes[1]),
    )


def _split(labels: np.ndarray, n_train: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        from sae_probes.utils_data import get_train_test_indices
    except ImportError:
        get_train_test_indices = _balanced_split
    try:
        return get_train_test_indices(labels, n_train, n_test, pos_ratio=0.5, seed=seed)
    except ValueError as err:
        raise ValueError(
            f"Cannot draw a balanced (50/50) split of {n_train} train / {n_test} test rows from class counts "
            f"{np.bincount(labels).tolist()} ({err}). Balance the dataset or pass a smaller num_train."
        ) from err


def _balanced_split(
    y: np.ndarray, num_train: int, num_test: int, pos_ratio: float = 0.5, seed: int = 42
) -> tuple[np.ndarray, np.ndarray]:
    """Fallback with the same recipe as SAE-Probes' split, for installs without it."""
    rng = np.random.RandomState(seed)
    pos, neg = np.where(y == 1)[0], np.where(y == 0)[0]
    ptr = int(np.ceil(pos_ratio * num_train))
    pte = int(np.ceil(pos_ratio * num_test))
    tp, tn = rng.choice(pos, ptr, replace=False), rng.choice(neg, num_train - ptr, replace=False)
    rp, rn = np.setdiff1d(pos, tp), np.setdiff1d(neg, tn)
    sp, sn = rng.choice(rp, pte, replace=False), rng.choice(rn, num_test - pte, replace=False)
    return rng.permutation(np.concatenate([tp, tn])), rng.permutation(np.concatenate([sp, sn]))


def _read_sae_probes(name: str) -> Any:
    names = _sae_probes_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
        by_suffix = [n for n in names if n.split("_", 1)[-1] == name]
        hint = by_suffix or close
        raise KeyError(
            f"Unknown SAE-Probes dataset {name!r}."
            + (f" Did you mean {hint}?" if hint else " See tl_glp.probing.SAE_PROBES_DATASETS.")
        )
    from sae_probes.utils_data import read_numbered_dataset_df

    return read_numbered_dataset_df(name)
