"""ProbingResults.paired: per-dataset differences with a paired bootstrap CI."""

import numpy as np
import pandas as pd
import pytest

from tl_glp.probing.results import ProbingResults


def _table(diffs, base=0.7):
    rows = []
    for i, d in enumerate(diffs):
        rows += [{"dataset": f"d{i}", "source": "meta", "test_auc": base + d, "control": False},
                 {"dataset": f"d{i}", "source": "raw", "test_auc": base, "control": False},
                 {"dataset": f"d{i}", "source": "meta", "test_auc": 0.5, "control": True}]
    return pd.DataFrame(rows)


def test_paired_difference_ignores_controls_and_brackets_the_mean():
    rng = np.random.default_rng(0)
    diffs = rng.normal(0.03, 0.01, size=40)
    out = ProbingResults(_table(diffs)).paired("meta")
    row = out.iloc[0]
    assert row.other == "raw" and row.n_datasets == 40
    assert abs(row.mean_difference - diffs.mean()) < 1e-12
    assert 0 < row.ci_low < diffs.mean() < row.ci_high  # clearly ahead: the CI excludes 0
    mixed = ProbingResults(_table(rng.normal(0.0, 0.02, size=40))).paired("meta").iloc[0]
    assert mixed.ci_low < 0 < mixed.ci_high
    with pytest.raises(ValueError, match="No source 'sae'"):
        ProbingResults(_table(diffs)).paired("sae")
