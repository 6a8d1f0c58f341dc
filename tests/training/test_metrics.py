import numpy as np
import pytest
import torch
from scipy import linalg

from tl_glp import classifier_two_sample_auc, frechet_distance
from tl_glp.training.metrics import roc_auc
from tl_glp.training.schedule import lr_factor


def scipy_fd(a, b):
    """Independent oracle: the textbook formula with scipy's matrix square root."""
    a, b = a.double().numpy(), b.double().numpy()
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_distance_matches_scipy_and_is_zero_on_itself():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3000, 8, generator=g) @ torch.randn(8, 8, generator=g)
    b = torch.randn(3000, 8, generator=g) * 2 + 0.5
    assert frechet_distance(a, b) == pytest.approx(scipy_fd(a, b), rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-8)
    # gaussians with known parameters: FD = |mu|^2 + d (sigma1 - sigma2)^2
    x, y = torch.randn(200_000, 3, generator=g), torch.randn(200_000, 3, generator=g) * 2 + 1
    assert frechet_distance(x, y) == pytest.approx(3 * 1 + 3 * 1, rel=0.02)


def test_frechet_distance_is_stable_on_rank_deficient_covariances():
    a = torch.randn(500, 2).repeat(1, 4)  # rank 2 in 8 dims
    assert np.isfinite(frechet_distance(a, a + 0.01)) and frechet_distance(a, a) < 1e-8


def test_roc_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.normal(size=500) + y, 1)  # many ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_two_sample_test_separates_a_mixture_from_its_gaussian():
    from conftest import mixture

    data, _ = mixture(4000, d=8, seed=1)
    gaussian = torch.distributions.MultivariateNormal(data.mean(0), torch.cov(data.T)).sample((2000,))
    other_half = mixture(4000, d=8, seed=2)[0]
    assert classifier_two_sample_auc(data[:2000], gaussian) > 0.9
    assert classifier_two_sample_auc(data[:2000], other_half[:2000]) < 0.6


def test_schedule_warms_up_then_decays_to_the_final_factor():
    f = [lr_factor(s, 1000, warmup_frac=0.01, start=0.01, final=0.1) for s in range(1001)]
    assert f[0] == pytest.approx(0.01) and max(f) == pytest.approx(1.0) and f[1000] == pytest.approx(0.1)
    assert all(a <= b for a, b in zip(f[:10], f[1:11])) and all(a >= b for a, b in zip(f[10:-1], f[11:]))


# --------------------------------------------------------------------------- FD-infinity's bootstrap CI
def _gaussian_pair(n, seed, d=6, shift=0.3):
    """N(0, I) against N(shift, diag(s^2)): true FD = d shift^2 + sum (1 - s)^2."""
    g = torch.Generator().manual_seed(seed)
    s = torch.linspace(0.5, 1.5, d)
    a = torch.randn(n, d, generator=g)
    b = shift + s * torch.randn(n, d, generator=g)
    return a, b, float(d * shift**2 + ((1 - s) ** 2).sum())


def test_fd_infinity_ci_is_the_estimate_with_an_interval_that_narrows_with_rows_and_repeats_by_seed():
    from tl_glp.training.metrics import frechet_distance_infinity, frechet_distance_infinity_ci

    a, b, _ = _gaussian_pair(1600, seed=0)
    r = frechet_distance_infinity_ci(a, b, n_boot=12, seed=3)
    assert r.fd_inf == frechet_distance_infinity(a, b, seed=3).fd_inf  # the same estimate the demo reported before
    assert r.ci_low < r.fd_inf < r.ci_high and len(r.replicates) == 12
    t_11 = 2.200985  # Student's t, 97.5% quantile, 11 degrees of freedom
    assert r.ci_high - r.ci_low == pytest.approx(2 * t_11 * np.std(r.replicates, ddof=1), rel=1e-5)
    assert frechet_distance_infinity_ci(a, b, n_boot=12, seed=3) == r  # deterministic by seed
    assert frechet_distance_infinity_ci(a, b, n_boot=12, seed=4).replicates != r.replicates
    small = frechet_distance_infinity_ci(a[:200], b[:200], n_boot=12, seed=3)
    assert r.ci_high - r.ci_low < 0.6 * (small.ci_high - small.ci_low)  # 8x the rows: about 1/sqrt(8) the width
    narrow = frechet_distance_infinity_ci(a, b, n_boot=12, seed=3, level=0.5)
    assert r.ci_low < narrow.ci_low < r.fd_inf < narrow.ci_high < r.ci_high
    with pytest.raises(ValueError, match="at least 2 resamples"):
        frechet_distance_infinity_ci(a, b, n_boot=1)


def test_fd_infinity_ci_has_the_width_of_the_sampling_spread():
    """Over independent datasets with a known FD, the bootstrap standard error matches the spread
    of the estimate and the 95% intervals cover the true distance (a percentile interval of the
    replicates would not: they sit about fd_at_n - fd_inf above the estimate)."""
    from tl_glp.training.metrics import frechet_distance_infinity_ci

    estimates, ses, covered, shifted = [], [], 0, 0
    for seed in range(12):
        a, b, true_fd = _gaussian_pair(500, seed=100 + seed)
        r = frechet_distance_infinity_ci(a, b, n_boot=15, seed=seed)
        estimates.append(r.fd_inf)
        ses.append(r.std_error)
        covered += r.ci_low <= true_fd <= r.ci_high
        shifted += np.mean(r.replicates) > r.fd_inf
    spread = np.std(estimates, ddof=1)
    assert 0.6 * spread < np.mean(ses) < 1.6 * spread
    assert covered >= 10
    assert shifted >= 9  # the replicates' bias toward the plug-in FD, which the interval is built to ignore
