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
