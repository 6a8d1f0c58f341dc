"""The 1-D protocol is the reference pipeline; the L1 penalty is L1; long prompts are truncated
like SAE-Probes does; k-sparse results are never averaged over k."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from tl_glp.probing import ProbingResults, last_token_activations, load_dataset, probe_1d, probe_ksparse, probes

HOOK = "blocks.1.hook_resid_post"
DATASETS = ("95_toxic_is", "41_truthqa_tf", "117_us_state_FL", "130_temp_cat_Frequency")  # the smallest
TOP_K = 6


@pytest.fixture(scope="module")
def sae_probes_features(tiny_model):
    """(train X, train y, test X, test y) per dataset: the tiny model's residual and MLP neurons."""
    out = {}
    for name in DATASETS:
        ds = load_dataset(name)
        acts = last_token_activations(tiny_model, ds.prompts, [HOOK, "blocks.1.mlp.hook_post"], batch_size=64)
        X = torch.cat([acts[HOOK], acts["blocks.1.mlp.hook_post"]], dim=1).double()
        y = torch.from_numpy(ds.labels)
        tr, te = torch.from_numpy(ds.train_idx), torch.from_numpy(ds.test_idx)
        out[name] = (X[tr], y[tr], X[te], y[te])
    return out


def reference_1d(X_train, y_train, X_test, y_test, top_k):
    """glp-method.md section 9, written out with scikit-learn alone (independent of tl_glp)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    Xtr, ytr, Xte, yte = (np.asarray(a) for a in (X_train, y_train, X_test, y_test))
    diff = np.abs(Xtr[ytr == 1].mean(0) - Xtr[ytr == 0].mean(0))
    candidates = np.argsort(-diff, kind="stable")[:top_k]
    best = None
    for j in candidates:
        scaler = StandardScaler().fit(Xtr[:, [j]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # penalty= is deprecated from scikit-learn 1.8
            clf = LogisticRegressionCV(
                Cs=[1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], cv=5, scoring="roc_auc", penalty="l2", max_iter=1000
            )
            clf.fit(scaler.transform(Xtr[:, [j]]), ytr)
        scores = np.asarray(clf.scores_[1] if isinstance(clf.scores_, dict) else clf.scores_).reshape(5, 6)
        c = list(clf.Cs_).index(float(np.ravel(clf.C_)[0]))
        val = scores.mean(0)[c]
        test = roc_auc_score(yte, clf.predict_proba(scaler.transform(Xte[:, [j]]))[:, 1])
        if best is None or val > best[1]:
            best = (int(j), val, test, float(clf.Cs_[c]))
    return best


@pytest.fixture(scope="module")
def sklearn_backend(sae_probes_features):
    return {name: probe_1d(*data, top_k=TOP_K, backend="sklearn") for name, data in sae_probes_features.items()}


def test_sklearn_backend_is_the_reference_pipeline(sae_probes_features, sklearn_backend):
    for name, (Xtr, ytr, Xte, yte) in sae_probes_features.items():
        feature, val, test, C = reference_1d(Xtr, ytr, Xte, yte, top_k=TOP_K)
        r = sklearn_backend[name]
        assert r.feature == feature, name
        assert r.val_auc == pytest.approx(val, abs=1e-9) and r.test_auc == pytest.approx(test, abs=1e-9), name
        assert r.C == C, name


def test_torch_backend_tracks_the_reference_on_sae_probes_datasets(sae_probes_features, sklearn_backend):
    """(Was test_run_probing.py::test_real_sae_probes_datasets_backend_parity: same bounds, one more dataset.)"""
    diffs = []
    for name, (Xtr, ytr, Xte, yte) in sae_probes_features.items():
        a = probe_1d(Xtr, ytr, Xte, yte, top_k=TOP_K, backend="torch")
        b = sklearn_backend[name]
        assert a.candidates == b.candidates, name
        assert abs(a.val_auc - b.val_auc) <= 0.01, name
        diffs.append(abs(a.test_auc - b.test_auc))
    assert max(diffs) <= 0.01 and float(np.mean(diffs)) <= 0.003


def test_folds_are_unshuffled_stratified_and_scaled_once():
    from sklearn.model_selection import StratifiedKFold

    y = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 0] * 3)
    ours = probes.cv_folds(y)
    theirs = list(StratifiedKFold(5).split(np.zeros(len(y)), y))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(ours, theirs))
    # a feature whose fold-local scaling would differ: only the global scaling gives sklearn's
    # answer, and the torch backend must match it
    g = torch.Generator().manual_seed(3)
    yt = torch.randint(0, 2, (200,), generator=g)
    X = torch.randn(200, 6, generator=g) + 0.4 * yt[:, None] * torch.arange(6)
    X[:100] *= 5  # the first folds see a different scale
    a = probe_1d(X[:150], yt[:150], X[150:], yt[150:], top_k=6, backend="torch")
    b = probe_1d(X[:150], yt[:150], X[150:], yt[150:], top_k=6, backend="sklearn")
    assert (a.feature, a.C) == (b.feature, b.C) and abs(a.val_auc - b.val_auc) < 1e-9


def test_torch_backend_breaks_C_ties_like_logistic_regression_cv():
    """Every C gives the same fold AUCs here (a 1-D AUC depends on the sign of w only): both
    backends take the first C of the grid, as LogisticRegressionCV's argmax does."""
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (300,), generator=g)
    X = torch.randn(300, 4, generator=g) + y[:, None] * torch.tensor([1.0, 0.5, 0.2, 0.0])
    for backend in ("torch", "sklearn"):
        assert probe_1d(X[:200], y[:200], X[200:], y[200:], top_k=4, backend=backend).C == probes.C_GRID[0]


def planted_pair(n=600, seed=0):
    """Label = sign(x0 + x1): each feature alone is a weak probe, the two together a perfect one."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 30, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()
    return X[:450], y[:450], X[450:], y[450:]


def test_ksparse_two_planted_features_beat_one():
    res = probe_ksparse(*planted_pair(), ks=(1, 2), penalty="l1")
    assert sorted(res[1].features) == [0, 1]
    assert res[1].test_auc > 0.97 and res[1].test_auc > res[0].test_auc + 0.1


def sae_probes_reference(Xtr, ytr, Xte, yte, ks, penalty="l1", seed=42):
    """SAE-Probes' own code path for k-sparse probes (``run_sae_eval`` without the model or the
    files): their ranking, then their ``find_best_reg`` on the top k, per k."""
    from sae_probes.run_sae_evals import get_sorted_indices, mean_act_normalization
    from sae_probes.utils_training import find_best_reg

    order = get_sorted_indices(Xtr, ytr, mean_act_normalization)
    out = []
    for k in ks:
        top = order[:k]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # their penalty="l1" spelling is deprecated from scikit-learn 1.8
            metrics = find_best_reg(Xtr[:, top], ytr, Xte[:, top], yte, penalty=penalty, seed=seed).metrics
        out.append((top.tolist(), metrics))
    return out


def assert_same_as_sae_probes(ours, theirs):
    assert len(ours) == len(theirs)
    for r, (features, m) in zip(ours, theirs):
        assert r.features == features, r.k
        assert r.val_auc == pytest.approx(m.val_auc, abs=1e-9), r.k
        assert r.test_auc == pytest.approx(m.test_auc, abs=1e-9), r.k
        assert r.test_acc == pytest.approx(m.test_acc, abs=1e-9), r.k
        assert r.test_f1 == pytest.approx(m.test_f1, abs=1e-9), r.k


def test_ksparse_is_sae_probes_protocol_on_a_sae_probes_dataset(sae_probes_features):
    """Same float32 features, same split: our k-sparse probes pick the features, the C (on their
    single held-out split, over their L1 path) and reach the metrics that SAE-Probes' own functions do."""
    Xtr, ytr, Xte, yte = (t.float() if t.is_floating_point() else t for t in sae_probes_features["95_toxic_is"])
    assert len(ytr) >= 128  # the single held-out split, not the small-data folds
    ks = (1, 2, 8, 32)
    ours = probe_ksparse(Xtr, ytr, Xte, yte, ks=ks, penalty="l1")
    assert_same_as_sae_probes(ours, sae_probes_reference(Xtr, ytr, Xte, yte, ks))
    assert all(r.C in probes.SAE_PROBES_CS for r in ours)


@pytest.mark.parametrize("n_train", [100, 8, 3])
@pytest.mark.parametrize("penalty", ["l1", "l2"])
def test_ksparse_small_training_sets_follow_sae_probes(n_train, penalty):
    """Below 128 training rows SAE-Probes validates on 6 shuffled stratified folds, below 13 on
    every held-out pair, and with 3 rows or fewer it does not validate at all: ours does the same."""
    g = torch.Generator().manual_seed(n_train)
    X = torch.relu(torch.randn(n_train + 60, 12, generator=g))  # non-negative, like SAE features
    y = (X[:, 0] - X[:, 1] + 0.5 * torch.randn(n_train + 60, generator=g) > 0).long()
    y[:2] = torch.tensor([0, 1])  # both classes among the training rows
    Xtr, ytr, Xte, yte = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    ks = (3,)
    ours = probe_ksparse(Xtr, ytr, Xte, yte, ks=ks, penalty=penalty)
    assert_same_as_sae_probes(ours, sae_probes_reference(Xtr, ytr, Xte, yte, ks, penalty=penalty))


def test_sae_probes_split_is_one_held_out_tail():
    y = np.array([0, 1] * 400)
    [(train, val)] = probes.sae_probes_splits(y)
    assert val.tolist() == list(range(700, 800)) and train.tolist() == list(range(700))  # at most 100 rows
    [(train, val)] = probes.sae_probes_splits(y[:300])
    assert len(val) == 60 and val[0] == 240  # 20% when that is fewer
    with pytest.raises(ValueError, match="one class"):
        probes.sae_probes_splits(np.array([0, 1] * 100 + [1] * 60))


def test_l1_is_l1_whatever_the_scikit_learn_spelling(monkeypatch):
    Xtr, ytr, Xte, yte = planted_pair(seed=1)
    small_C = (1e-2,)
    l2 = probe_ksparse(Xtr, ytr, Xte, yte, ks=(16,), penalty="l2", Cs=small_C)[0]
    assert np.count_nonzero(l2.coef) == 16  # L2 shrinks but keeps every weight
    for version in [(1, 7), (1, 8)]:  # the pre-1.8 spelling (penalty="l1") and the new one (l1_ratio=1)
        monkeypatch.setattr(probes, "_sklearn_version", lambda v=version: v)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            l1 = probe_ksparse(Xtr, ytr, Xte, yte, ks=(16,), penalty="l1", Cs=small_C)[0]
        assert len(l1.coef) == 16 and np.count_nonzero(l1.coef) <= 4, version  # L1 zeroes the 14 noise weights
        assert set(np.flatnonzero(l1.coef)) >= {l1.features.index(0), l1.features.index(1)}
    for k in (1, 2, 4):
        fit = probe_ksparse(Xtr, ytr, Xte, yte, ks=(k,), penalty="l1")[0]
        assert np.count_nonzero(fit.coef) <= k


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_prompts_longer_than_the_context_keep_bos_and_their_end(tiny_model, padding_side):
    from conftest import random_sentences

    limit = tiny_model.cfg.n_ctx  # 32 for the tiny model (context_limit: min(n_ctx, 1024))
    prompts = [" ".join(random_sentences(12, seed=s, length=8)) for s in range(3)] + ["the dog ran"]
    full = [tiny_model.to_tokens(p, truncate=False)[0] for p in prompts]
    assert all(len(t) > limit for t in full[:3])
    got = last_token_activations(tiny_model, prompts, [HOOK], padding_side=padding_side, batch_size=4)[HOOK]
    for t, row in zip(full, got):
        cut = (
            torch.cat([t[:1], t[-(limit - 1) :]]) if len(t) > limit else t
        )  # SAE-Probes: truncate on the left, keep BOS
        alone = tiny_model.run_with_cache(cut[None], names_filter=[HOOK])[1][HOOK][0, -1]
        assert torch.allclose(row, alone, atol=1e-5)
    shorter = last_token_activations(tiny_model, prompts, [HOOK], padding_side=padding_side, context_size=8)[HOOK]
    cut = torch.cat([full[0][:1], full[0][-7:]])
    assert torch.allclose(
        shorter[0], tiny_model.run_with_cache(cut[None], names_filter=[HOOK])[1][HOOK][0, -1], atol=1e-5
    )


def test_ksparse_results_are_per_k_never_averaged():
    rows = []
    for k, auc in ((1, 0.6), (4, 0.9)):
        for ds in ("a", "b"):
            rows += [
                {
                    "dataset": ds,
                    "source": "meta",
                    "control": False,
                    "k": k,
                    "feature": 0,
                    "val_auc": auc,
                    "test_auc": auc,
                },
                {
                    "dataset": ds,
                    "source": "raw",
                    "control": False,
                    "k": k,
                    "feature": 0,
                    "val_auc": 0.75,
                    "test_auc": 0.75,
                },
            ]
    res = ProbingResults(pd.DataFrame(rows))
    s = res.summary(n_boot=100)
    assert s[["source", "k"]].values.tolist() == [["meta", 1], ["raw", 1], ["meta", 4], ["raw", 4]]
    assert s.loc[(s.source == "meta") & (s.k == 1), "mean_test_auc"].item() == pytest.approx(0.6)
    assert (
        res.wins(k=1).loc["raw", "meta"] == 2 and res.wins(k=4).loc["meta", "raw"] == 2
    )  # averaged over k, meta would always win
    with pytest.raises(ValueError, match="pass k="):
        res.wins()
    with pytest.raises(ValueError, match="pass k="):
        res.plot("unused.png")
