import numpy as np
import pytest
import torch
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from tl_glp.probing import probe_1d, probe_ksparse
from tl_glp.probing.probes import auc_columns, average_ranks, rank_by_mean_difference


def synthetic(n=500, f=80, seed=0, sparse=True):
    f = max(f, 70)
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    X = torch.randn(n, f, generator=g)
    X[:, 3] += 0.8 * y  # the planted feature
    X[:, 10:30] += 0.2 * torch.randn(1, 20, generator=g) * y[:, None]
    if sparse:
        X[:, 40:70] = torch.relu(X[:, 40:70] - 1.0)[:, :30] * (
            1 + y[:, None] * torch.rand(1, 30, generator=g)
        )  # many exact zeros: ties
    return X, y


def test_ranks_and_auc_match_scipy_and_sklearn_with_ties():
    X, y = synthetic(300)
    ranks = average_ranks(X.double())
    assert np.allclose(ranks[:, 45].numpy(), rankdata(X[:, 45].numpy()))
    aucs = auc_columns(X.double(), y)
    for j in (3, 45, 60):
        assert float(aucs[j]) == pytest.approx(roc_auc_score(y.numpy(), X[:, j].numpy()), abs=1e-12)


def test_planted_feature_is_found_and_shuffled_labels_give_chance():
    X, y = synthetic(1200, seed=1)
    r = probe_1d(X[:900], y[:900], X[900:], y[900:], top_k=50)
    assert r.feature == 3 and r.test_auc > 0.65 and r.val_auc > 0.65
    X[:, 5] = y + 0.01 * torch.randn(1200)  # a near-perfect single dimension
    r = probe_1d(X[:900], y[:900], X[900:], y[900:], top_k=50)
    assert r.feature == 5 and r.test_auc > 0.99
    shuffled = y[:900][torch.randperm(900, generator=torch.Generator().manual_seed(0))]
    control = probe_1d(X[:900], shuffled, X[900:], y[900:], top_k=50)
    assert abs(control.test_auc - 0.5) < 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torch_backend_agrees_with_the_sklearn_reference(seed):
    X, y = synthetic(400, f=60, seed=seed)
    a = probe_1d(X[:300], y[:300], X[300:], y[300:], top_k=20, backend="torch")
    b = probe_1d(X[:300], y[:300], X[300:], y[300:], top_k=20, backend="sklearn")
    assert a.candidates == b.candidates
    assert abs(a.val_auc - b.val_auc) <= 1e-6 and abs(a.test_auc - b.test_auc) <= 1e-6
    assert a.feature == b.feature and a.C == b.C


def test_ranking_uses_class_mean_difference():
    X = torch.zeros(6, 3)
    X[:3, 1] = 5.0
    X[:3, 2] = -1.0
    y = torch.tensor([1, 1, 1, 0, 0, 0])
    assert rank_by_mean_difference(X, y).tolist() == [1, 2, 0]


def test_ksparse_uses_more_features_for_more_accuracy():
    X, y = synthetic(600, seed=3, sparse=False)
    res = probe_ksparse(X[:450], y[:450], X[450:], y[450:], ks=(1, 4, 16), penalty="l2")
    assert [r.k for r in res] == [1, 4, 16] and len(res[-1].features) == 16
    assert res[-1].test_auc >= res[0].test_auc - 0.02


def test_bad_labels_and_shapes():
    X, y = synthetic(100)
    with pytest.raises(ValueError, match="both classes"):
        probe_1d(X[:80], torch.zeros(80, dtype=torch.long), X[80:], y[80:])
    with pytest.raises(ValueError, match="features"):
        probe_1d(X[:80], y[:80], X[80:, :5], y[80:])
    with pytest.raises(ValueError, match="backend"):
        probe_1d(X[:80], y[:80], X[80:], y[80:], backend="jax")
