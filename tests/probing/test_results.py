"""ProbingResults.paired: per-dataset differences with a paired bootstrap CI."""

import numpy as np
import pandas as pd
import pytest

from tl_glp.probing.results import ProbingResults


def _table(diffs, base=0.7):
    rows = []
    for i, d in enumerate(diffs):
        rows += [
            {"dataset": f"d{i}", "source": "meta", "test_auc": base + d, "control": False},
            {"dataset": f"d{i}", "source": "raw", "test_auc": base, "control": False},
            {"dataset": f"d{i}", "source": "meta", "test_auc": 0.5, "control": True},
        ]
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


def test_t_interval_matches_the_textbook_formula_and_covers_at_small_n():
    from scipy import stats

    from tl_glp.probing.results import bootstrap_ci, t_interval

    x = np.array([0.015, -0.011, 0.0, 0.256, 0.051, 0.051])
    lo, hi = t_interval(x)
    ref = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert np.allclose([lo, hi], ref)
    assert np.isnan(t_interval(np.array([0.3]))).all()
    # six datasets: the t-interval holds the true mean at its nominal rate, the percentile bootstrap less often
    rng = np.random.default_rng(0)
    draws = rng.normal(0.05, 0.1, size=(600, 6))
    t_cover = np.mean([(lambda c: c[0] <= 0.05 <= c[1])(t_interval(d)) for d in draws])
    b_cover = np.mean(
        [(lambda c: c[0] <= 0.05 <= c[1])(bootstrap_ci(d, n_boot=400, seed=i)) for i, d in enumerate(draws)]
    )
    assert 0.92 <= t_cover <= 0.98 and b_cover < t_cover - 0.03, (t_cover, b_cover)


def test_paired_uses_the_t_interval():
    from tl_glp.probing.results import t_interval

    diffs = np.array([0.0, 0.01, 0.2, 0.05, -0.02, 0.03])
    row = ProbingResults(_table(diffs)).paired("meta").iloc[0]
    assert np.allclose([row.ci_low, row.ci_high], t_interval(diffs))
