"""1-D and k-sparse probes, exactly as glp-method.md section 9 describes.

1-D probing: rank every feature by ``|mean(class 1) - mean(class 0)|`` on the training rows, keep
the top ``top_k`` (512); for each, standardise and fit an L2 logistic regression with 5-fold
cross-validation over ``C`` in {1e-5, ..., 1} scored by ROC-AUC; pick the feature with the best
mean CV AUC and report its test AUC (refitted on all training rows with its best ``C``).

Two backends give the same answer:

- ``"sklearn"``: the reference, one scikit-learn fit per candidate, ``C`` and fold (~86 ms per
  candidate on one core);
- ``"torch"``: all candidates x ``C`` values x folds fitted at once by batched Newton steps on
  the same regularised objective (``0.5 w^2 + C * sum(log-loss)``), with AUCs from batched
  tie-aware ranks.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.randint(0, 2, (400,), generator=g)
    >>> X = torch.randn(400, 50, generator=g)
    >>> X[:, 7] += 2 * y                           # feature 7 carries the label
    >>> r = probe_1d(X[:300], y[:300], X[300:], y[300:], top_k=20)
    >>> r.feature, r.test_auc > 0.8
    (7, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

C_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
"""The regularisation strengths searched by cross-validation."""

SPARSE_KS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass
class ProbeResult:
    """The chosen feature (index into the columns of ``X``), its CV (validation) and test AUC."""

    feature: int
    val_auc: float
    test_auc: float
    C: float = float("nan")
    candidates: list[int] = field(default_factory=list, repr=False)


@dataclass
class KSparseResult:
    """A k-sparse probe: the ``k`` features used, CV AUC, test AUC and the chosen ``C``."""

    k: int
    features: list[int]
    val_auc: float
    test_auc: float
    C: float


def rank_by_mean_difference(X: Tensor, y: Tensor) -> Tensor:
    """Feature indices sorted by ``|mean(X[y==1]) - mean(X[y==0])|``, largest first (stable)."""
    X, y = _as_tensor(X), _as_tensor(y).bool()
    diff = (X[y].mean(0) - X[~y].mean(0)).abs()
    diff = torch.nan_to_num(diff, nan=-1.0)
    return torch.from_numpy(np.argsort(-diff.numpy(), kind="stable"))


def cv_folds(y: Tensor | np.ndarray, n_folds: int = 5, seed: int = 42) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, shuffled folds (scikit-learn's ``StratifiedKFold``), shared by both backends."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    return list(StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def probe_1d(
    X_train: Tensor,
    y_train: Tensor,
    X_test: Tensor,
    y_test: Tensor,
    *,
    top_k: int = 512,
    backend: str = "torch",
    Cs: Sequence[float] = C_GRID,
    n_folds: int = 5,
    seed: int = 42,
) -> ProbeResult:
    """The best single feature for a binary label (see the module docstring)."""
    X_train, X_test = _as_tensor(X_train).double(), _as_tensor(X_test).double()
    y_train, y_test = _as_tensor(y_train).long(), _as_tensor(y_test).long()
    _check_binary(y_train, "y_train")
    _check_binary(y_test, "y_test")
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError(f"X_train has {X_train.shape[1]} features but X_test has {X_test.shape[1]}.")
    candidates = rank_by_mean_difference(X_train, y_train)[:top_k]
    folds = cv_folds(y_train.numpy(), n_folds, seed)
    Xc, Xt = X_train[:, candidates], X_test[:, candidates]
    if backend == "torch":
        val, best_c = _cv_torch(Xc, y_train, folds, Cs)
    elif backend == "sklearn":
        val, best_c = _cv_sklearn(Xc, y_train, folds, Cs)
    else:
        raise ValueError(f"backend must be 'torch' or 'sklearn', got {backend!r}.")
    j = int(np.argmax(val))
    C = float(Cs[best_c[j]])
    fit = _test_torch if backend == "torch" else _test_sklearn
    test_auc = fit(Xc[:, j], y_train, Xt[:, j], y_test, C)
    return ProbeResult(int(candidates[j]), float(val[j]), float(test_auc), C, candidates.tolist())


def probe_ksparse(
    X_train: Tensor,
    y_train: Tensor,
    X_test: Tensor,
    y_test: Tensor,
    *,
    ks: Sequence[int] = SPARSE_KS,
    penalty: str = "l1",
    Cs: Sequence[float] = C_GRID,
    n_folds: int = 5,
    seed: int = 42,
    normalize: bool = True,
) -> list[KSparseResult]:
    """SAE-Probes' k-sparse protocol: the top-``k`` features by class-mean difference (after
    SAE-Probes' mean-activation normalisation when ``normalize``), one standardised logistic
    regression (``penalty`` "l1" or "l2") with ``C`` chosen by CV AUC, for each ``k``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if penalty not in ("l1", "l2"):
        raise ValueError("penalty must be 'l1' or 'l2'")
    X_train, X_test = _as_tensor(X_train).double(), _as_tensor(X_test).double()
    y_train, y_test = _as_tensor(y_train).long(), _as_tensor(y_test).long()
    _check_binary(y_train, "y_train")
    ranked_on = _mean_act_normalization(X_train) if normalize else X_train
    order = rank_by_mean_difference(ranked_on, y_train)
    folds = cv_folds(y_train.numpy(), n_folds, seed)
    ytr, yte = y_train.numpy(), y_test.numpy()

    def model(C: float):
        solver = {"l1": "saga", "l2": "lbfgs"}[penalty]
        clf = LogisticRegression(C=C, l1_ratio=1.0 if penalty == "l1" else 0.0, solver=solver, max_iter=1000, random_state=seed) if penalty == "l1" else LogisticRegression(C=C, max_iter=1000, random_state=seed)
        return make_pipeline(StandardScaler(), clf)

    results = []
    for k in ks:
        if k > X_train.shape[1]:
            break
        cols = order[:k].numpy()
        xtr, xte = X_train[:, cols].numpy(), X_test[:, cols].numpy()
        scores = []
        for C in Cs:
            aucs = [roc_auc_score(ytr[va], model(C).fit(xtr[tr], ytr[tr]).predict_proba(xtr[va])[:, 1]) for tr, va in folds]
            scores.append(float(np.mean(aucs)))
        best = int(np.argmax(scores))
        final = model(Cs[best]).fit(xtr, ytr)
        results.append(KSparseResult(k, cols.tolist(), scores[best], float(roc_auc_score(yte, final.predict_proba(xte)[:, 1])), float(Cs[best])))
    return results


# --------------------------------------------------------------------------- sklearn reference
def _cv_sklearn(Xc: Tensor, y: Tensor, folds, Cs) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    X, yy = Xc.numpy(), y.numpy()
    val = np.zeros(X.shape[1])
    best_c = np.zeros(X.shape[1], dtype=int)
    for j in range(X.shape[1]):
        x = X[:, j : j + 1]
        scores = []
        for C in Cs:
            aucs = []
            for tr, va in folds:
                scaler = StandardScaler().fit(x[tr])
                clf = LogisticRegression(C=C, max_iter=1000).fit(scaler.transform(x[tr]), yy[tr])
                aucs.append(roc_auc_score(yy[va], clf.predict_proba(scaler.transform(x[va]))[:, 1]))
            scores.append(np.mean(aucs))
        best_c[j] = int(np.argmax(scores))
        val[j] = scores[best_c[j]]
    return val, best_c


def _test_sklearn(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, C: float) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    xtr, xte = x_train.numpy()[:, None], x_test.numpy()[:, None]
    scaler = StandardScaler().fit(xtr)
    clf = LogisticRegression(C=C, max_iter=1000).fit(scaler.transform(xtr), y_train.numpy())
    return float(roc_auc_score(y_test.numpy(), clf.predict_proba(scaler.transform(xte))[:, 1]))


# --------------------------------------------------------------------------- batched torch backend
def _cv_torch(Xc: Tensor, y: Tensor, folds, Cs) -> tuple[np.ndarray, np.ndarray]:
    Cs_t = torch.tensor(list(Cs), dtype=torch.float64)
    total = torch.zeros(len(Cs), Xc.shape[1], dtype=torch.float64)
    for tr, va in folds:
        tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)
        x_tr, x_va = _standardise(Xc[tr_t], Xc[va_t])
        w, _ = fit_logistic_1d(x_tr, y[tr_t].double(), Cs_t)  # [C, K]
        total += _signed_auc(x_va, y[va_t], w)
    mean = total / len(folds)
    best_c = torch.argmax(mean, dim=0)  # first maximum, as np.argmax
    return mean.max(dim=0).values.numpy(), best_c.numpy()


def _test_torch(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, C: float) -> float:
    x_tr, x_te = _standardise(x_train[:, None], x_test[:, None])
    w, _ = fit_logistic_1d(x_tr, y_train.double(), torch.tensor([C], dtype=torch.float64))
    return float(_signed_auc(x_te, y_test, w)[0, 0])


def _standardise(train: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
    """scikit-learn's StandardScaler: population std, and scale 1 where the std is 0."""
    mean = train.mean(0)
    std = train.std(0, unbiased=False)
    std = torch.where(std < 10 * torch.finfo(std.dtype).eps * mean.abs().clamp_min(1), torch.ones_like(std), std)
    return (train - mean) / std, (other - mean) / std


def fit_logistic_1d(x: Tensor, y: Tensor, Cs: Tensor, iters: int = 40, tol: float = 1e-5, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Minimise ``0.5 w^2 + C sum_i log(1 + exp(-s_i (w x_i + b)))`` for every column of ``x``
    ``[n, K]`` and every ``C`` at once (``s = 2y - 1``): scikit-learn's L2 objective.

    Damped Newton steps on ``(w, b)``: each iteration makes one pass over the data, computing the
    objective at the current point with the gradient and Hessian; a problem whose objective rose
    goes back and halves its last step. Returns ``w, b`` of shape ``[len(Cs), K]``.
    """
    n, K = x.shape
    C = Cs.to(dtype)[:, None].expand(len(Cs), K)
    xt = x.T.to(dtype)[None]  # [1, K, n]
    yt = y.to(dtype)[None, None]  # [1, 1, n]
    sign = 1 - 2 * yt  # log-loss is softplus(sign * z)
    p0 = float(y.double().mean().clamp(1e-6, 1 - 1e-6))
    w = torch.zeros(len(Cs), K, dtype=dtype)
    b = torch.full((len(Cs), K), float(np.log(p0 / (1 - p0))), dtype=dtype)
    w_prev, b_prev = w.clone(), b.clone()
    dw_prev, db_prev = torch.zeros_like(w), torch.zeros_like(b)
    f_prev = torch.full_like(w, float("inf"))
    step = torch.ones_like(w)
    for _ in range(iters):
        z = w[..., None] * xt + b[..., None]
        f = 0.5 * w**2 + C * torch.nn.functional.softplus(sign * z).sum(-1)
        worse = f > f_prev + 1e-6 * f_prev.abs()
        p = torch.sigmoid(z)
        r = p - yt
        h = p * (1 - p)
        g_w = w + C * (r * xt).sum(-1)
        g_b = C * r.sum(-1)
        h_ww = 1 + C * (h * xt * xt).sum(-1)
        h_wb = C * (h * xt).sum(-1)
        h_bb = C * h.sum(-1) + 1e-12
        det = h_ww * h_bb - h_wb**2
        dw = (h_bb * g_w - h_wb * g_b) / det
        db = (h_ww * g_b - h_wb * g_w) / det
        # accepted problems take a fresh Newton step; rejected ones retry half their last step
        step = torch.where(worse, step / 2, torch.ones_like(step))
        w_prev, b_prev = torch.where(worse, w_prev, w), torch.where(worse, b_prev, b)
        dw_prev, db_prev = torch.where(worse, dw_prev, dw), torch.where(worse, db_prev, db)
        f_prev = torch.where(worse, f_prev, f)
        w_new, b_new = w_prev - step * dw_prev, b_prev - step * db_prev
        moved = torch.maximum((w_new - w).abs(), (b_new - b).abs())
        w, b = w_new, b_new
        if bool((moved < tol * (1 + w.abs())).all()) and not bool(worse.any()):
            break
    return w.double(), b.double()


def _signed_auc(x: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """AUC of the predictions ``sigmoid(w x + b)`` for each (C, column): they rank like ``x``
    when ``w > 0``, like ``-x`` when ``w < 0``, and all tie (0.5) when ``w == 0``."""
    auc = auc_columns(x, y)[None]  # [1, K]
    return torch.where(w > 0, auc, torch.where(w < 0, 1 - auc, torch.full_like(auc, 0.5)))


def auc_columns(scores: Tensor, y: Tensor) -> Tensor:
    """ROC-AUC of every column of ``scores`` ``[n, K]`` against labels ``y`` (ties get mean ranks)."""
    y = _as_tensor(y).bool()
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("ROC-AUC needs both classes.")
    ranks = average_ranks(scores.double())
    return (ranks[y].sum(0) - n1 * (n1 + 1) / 2) / (n1 * n0)


def average_ranks(x: Tensor) -> Tensor:
    """1-based ranks along dim 0, ties sharing their average rank (like ``scipy.stats.rankdata``)."""
    n = x.shape[0]
    sorted_x, order = torch.sort(x, dim=0, stable=True)
    new_group = torch.ones_like(sorted_x, dtype=torch.bool)
    new_group[1:] = sorted_x[1:] != sorted_x[:-1]
    group = new_group.long().cumsum(0) - 1
    position = torch.arange(1, n + 1, dtype=torch.float64)[:, None].expand_as(sorted_x)
    sums = torch.zeros_like(position).scatter_add_(0, group, position)
    counts = torch.zeros_like(position).scatter_add_(0, group, torch.ones_like(position))
    avg_sorted = sums.gather(0, group) / counts.gather(0, group)
    return torch.empty_like(avg_sorted).scatter_(0, order, avg_sorted)


# --------------------------------------------------------------------------- helpers
def _as_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))


def _check_binary(y: Tensor, name: str) -> None:
    values = set(torch.unique(y).tolist())
    if values != {0, 1}:
        raise ValueError(f"{name} must hold both classes 0 and 1, got {sorted(values)}.")


def _mean_act_normalization(X: Tensor) -> Tensor:
    """SAE-Probes' ranking normalisation: divide each feature by its mean non-zero |activation|."""
    col_sums = X.abs().sum(0)
    nonzero = (X != 0).sum(0)
    return X / (col_sums / (nonzero + 1e-6) + 1e-6)
