import numpy as np
import pytest
import torch
from scipy import linalg

from tl_glp import classifier_two_sample_auc, frechet_distance
from tl_glp.training.metrics import (
    RowNormalizer,
    fd_noise_floor,
    normalized_frechet_distance,
    plot_norm_distribution,
    roc_auc,
)
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


def heavy_tailed(n, d, g, scale):
    """Gaussian rows, plus 1% of rows drawn the same way and scaled x100 (a few huge rows, as LLMs have)."""
    bulk = torch.randn(n, d, generator=g) * scale
    return bulk, torch.cat([bulk, 100 * torch.randn(n // 100, d, generator=g) * scale])


def test_normalised_fd_is_the_fd_of_standardised_rows_by_hand():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(3000, 5, generator=g) * torch.tensor([1.0, 2.0, 5.0, 50.0, 500.0]) + 7
    fake = torch.randn(2000, 5, generator=g) * 30
    mean, std = real.double().mean(0), real.double().std(0)
    by_hand = scipy_fd((real - mean) / std, (fake - mean) / std)
    assert normalized_frechet_distance(fake, real, RowNormalizer.fit(real)) == pytest.approx(by_hand, rel=1e-6)
    # robust statistics: per-dimension median and 1.4826 * MAD, computed here with numpy
    x = real.double().numpy()
    med = np.median(x, axis=0)
    mad = 1.4826 * np.median(np.abs(x - med), axis=0)
    robust = RowNormalizer.fit(real, robust=True)
    assert np.allclose(robust.mean.numpy(), med) and np.allclose(robust.std.numpy(), mad)
    # the cap: rows longer than clip x the median standardised norm are shrunk onto that radius, others kept
    capped = RowNormalizer.fit(real, robust=True, clip=1.5)
    z = (x - med) / mad
    radius = 1.5 * np.median(np.linalg.norm(z, axis=1))
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    assert capped.max_norm == pytest.approx(radius)
    assert np.allclose(capped(real).numpy(), z * np.minimum(1.0, radius / norms))
    assert capped.share_capped(real) == pytest.approx(float((norms > radius).mean()))


def test_the_noise_floor_of_one_gaussian_is_about_zero_and_far_below_a_real_difference():
    g = torch.Generator().manual_seed(2)
    held = torch.randn(40_000, 8, generator=g) * torch.linspace(0.1, 100, 8)
    norm = RowNormalizer.fit(held)
    floor = fd_noise_floor(held, norm, seed=0)
    assert 0 <= floor < 0.01  # sampling noise only: ~ d (d + 1) / (2 N) with N = 20,000 per side
    shifted = held[:20_000] + 0.5 * torch.linspace(0.1, 100, 8)  # half a standard deviation in every dimension
    assert normalized_frechet_distance(shifted, held[20_000:], norm) == pytest.approx(8 * 0.25, rel=0.05)
    assert fd_noise_floor(held, seed=0) > 50 * floor  # raw: the largest dimension sets the scale


def test_a_few_huge_rows_no_longer_dominate_the_normalised_fd():
    """1% of rows scaled x100 added to both sets: the raw FD between two samples of one distribution
    jumps by orders of magnitude and swamps a real difference; on standardised rows it changes far less
    (in absolute terms); with robust statistics and the norm cap it stays at the floor and still sees
    the real difference."""
    g = torch.Generator().manual_seed(3)
    scale = torch.linspace(0.5, 3.0, 16)
    a, a_tail = heavy_tailed(4000, 16, g, scale)
    b, b_tail = heavy_tailed(4000, 16, g, scale)
    shift = 0.2 * scale  # a real difference: FD 16 * 0.04 = 0.64 in standardised units
    raw = (frechet_distance(a, b), frechet_distance(a_tail, b_tail))
    plain = RowNormalizer.fit(a), RowNormalizer.fit(a_tail)
    normed = (normalized_frechet_distance(a, b, plain[0]), normalized_frechet_distance(a_tail, b_tail, plain[1]))
    robust = RowNormalizer.fit(a, robust=True, clip=3.0), RowNormalizer.fit(a_tail, robust=True, clip=3.0)
    rob = (normalized_frechet_distance(a, b, robust[0]), normalized_frechet_distance(a_tail, b_tail, robust[1]))
    assert raw[1] - raw[0] > 100 * (normed[1] - normed[0]) > 0
    # ... but only by the scale (the tail inflates every std ~10x): the floor still exceeds the real difference
    assert normed[1] > 16 * 0.04
    assert raw[1] > 100 * frechet_distance(a + shift, b)  # raw: the tail's noise swamps the real difference
    assert rob[1] < 0.1 and abs(rob[1] - rob[0]) < 0.05  # robust: the tail leaves the floor where it was
    seen = normalized_frechet_distance(a_tail + shift, b_tail, robust[1])
    assert seen == pytest.approx(16 * 0.04, rel=0.25) and seen > 5 * rob[1]
    assert robust[1].share_capped(a_tail) == pytest.approx(0.01 / 1.01, abs=0.002)  # the 1% tail, nothing else


def test_row_normalizer_from_a_prior_uses_its_statistics():
    from tl_glp import GenerativePrior

    g = torch.Generator().manual_seed(4)
    x = torch.randn(500, 6, generator=g) * torch.arange(1, 7) + 3
    prior = GenerativePrior.from_activations(x, n_blocks=1)
    norm = RowNormalizer.of_prior(prior)
    assert torch.allclose(norm(x).float(), prior.normalize(x), atol=1e-4)
    with pytest.raises(ValueError, match="positive"):
        RowNormalizer.fit(x, clip=0)


def test_norm_distribution_figure_is_written(tmp_path):
    g = torch.Generator().manual_seed(5)
    real = torch.randn(400, 8, generator=g)
    path = plot_norm_distribution(
        {"real": real, "prior": 2 * real, "Gaussian": torch.randn(300, 8, generator=g)}, tmp_path / "norms.png"
    )
    assert path == tmp_path / "norms.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically
    with pytest.raises(ValueError, match="every row is zero"):
        plot_norm_distribution({"zeros": torch.zeros(3, 2)}, tmp_path / "z.png")


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
