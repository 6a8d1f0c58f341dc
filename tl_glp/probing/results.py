"""Probing results: a per-dataset table, a summary with bootstrap CIs and win counts, CSV, plots.

Example:
    >>> import pandas as pd
    >>> table = pd.DataFrame({"dataset": ["a", "a", "b", "b"], "source": ["meta", "raw"] * 2,
    ...                       "feature": [1, 2, 3, 4], "val_auc": [0.9, 0.8, 0.7, 0.7], "test_auc": [0.9, 0.8, 0.75, 0.7],
    ...                       "control": [False] * 4})
    >>> res = ProbingResults(table)
    >>> res.summary(n_boot=200)[["source", "mean_test_auc"]].round(3).values.tolist()
    [['meta', 0.825], ['raw', 0.75]]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tl_glp._plot import pyplot, save_figure


def bootstrap_ci(values: np.ndarray, n_boot: int = 10_000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (resampling the values with replacement)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


@dataclass
class ProbingResults:
    """What :func:`tl_glp.run_probing` returns.

    ``table`` has one row per (dataset, source, control): ``dataset``, ``source``, ``feature``
    (best feature index, or k for k-sparse), ``val_auc``, ``test_auc``, ``control`` (True for the
    label-shuffled baseline) and, for k-sparse probing, ``k``.
    """

    table: Any

    def summary(self, n_boot: int = 10_000, seed: int = 0) -> Any:
        """Mean test AUC per source (and per control) with a 95% percentile bootstrap CI over datasets."""
        import pandas as pd

        rows = []
        for (source, control), part in self.table.groupby(["source", "control"], sort=False):
            lo, hi = bootstrap_ci(part["test_auc"].to_numpy(), n_boot=n_boot, seed=seed)
            rows.append({"source": source + (" (shuffled labels)" if control else ""), "mean_test_auc": part["test_auc"].mean(), "ci_low": lo, "ci_high": hi, "n_datasets": len(part)})
        return pd.DataFrame(rows)

    def wins(self) -> Any:
        """Head-to-head win counts: entry (A, B) = datasets where A's test AUC beats B's."""
        import pandas as pd

        real = self.table[~self.table["control"]]
        pivot = real.pivot_table(index="dataset", columns="source", values="test_auc")
        sources = list(pivot.columns)
        counts = pd.DataFrame(0, index=sources, columns=sources)
        for a in sources:
            for b in sources:
                if a != b:
                    counts.loc[a, b] = int((pivot[a] > pivot[b]).sum())
        return counts

    def to_csv(self, path: str | Path) -> Path:
        """Write the per-dataset table."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(path, index=False)
        return path

    def plot(self, path: str | Path, a: str | None = None, b: str | None = None) -> Path:
        """Bar chart of mean test AUC with 95% CIs (controls hatched) and a per-dataset scatter
        of source ``a`` vs ``b`` (default: the first two sources)."""
        plt = pyplot()

        summary = self.summary(n_boot=2000)
        real = self.table[~self.table["control"]]
        sources = list(dict.fromkeys(real["source"]))
        a = a or sources[0]
        b = b or (sources[1] if len(sources) > 1 else sources[0])
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.4, 1]})
        x = np.arange(len(summary))
        err = np.vstack([summary["mean_test_auc"] - summary["ci_low"], summary["ci_high"] - summary["mean_test_auc"]])
        bars = ax1.bar(x, summary["mean_test_auc"], yerr=err, capsize=4, color=["#bbbbbb" if "shuffled" in s else "tab:blue" for s in summary["source"]])
        for bar, label in zip(bars, summary["source"]):
            if "shuffled" in label:
                bar.set_hatch("//")
        ax1.set_xticks(x, summary["source"], rotation=30, ha="right", fontsize=8)
        ax1.axhline(0.5, color="k", lw=0.8, ls=":")
        ax1.set_ylim(0.4, 1.0)
        ax1.set_ylabel("mean test AUC (95% bootstrap CI)")
        ax1.set_title("1-D probing by feature source")
        pivot = real.pivot_table(index="dataset", columns="source", values="test_auc")
        ax2.scatter(pivot[b], pivot[a], s=14)
        ax2.plot([0.4, 1], [0.4, 1], "k:", lw=0.8)
        ax2.set_xlabel(f"{b} test AUC")
        ax2.set_ylabel(f"{a} test AUC")
        ax2.set_title(f"per dataset: {a} above the diagonal wins")
        return save_figure(fig, path)
