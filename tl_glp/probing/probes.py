"""1-D and k-sparse probes, exactly as glp-method.md section 9 describes.

1-D probing (the reference pipeline, per candidate feature):

1. rank every feature by ``|mean(class 1) - mean(class 0)|`` on the training rows and keep the
   top ``top_k`` (512);
2. for each candidate, fit a ``StandardScaler`` once on the *whole* training split, then
   ``LogisticRegressionCV(Cs=C_GRID, cv=5, scoring="roc_auc")`` with an L2 penalty and
   ``max_iter=1000`` on the scaled feature. ``cv=5`` means scikit-learn's ``StratifiedKFold(5)``
   *without shuffling* (:func:`cv_folds`); ``C`` is the first one with the largest fold-mean AUC;
3. the candidate's validation AUC is that fold mean at the chosen ``C``; the feature with the best
   validation AUC (the first one, in ranked order, on ties) wins, and its test AUC comes from the
   refit on the whole training split at its ``C``.

Two backends give the same answer:

- ``"sklearn"``: the reference pipeline itself, one ``StandardScaler`` + ``LogisticRegressionCV``
  per candidate (tens of ms each);
- ``"torch"``: every candidate x fold at once, on the same scaled-once feature and the same folds.
  With one feature, a fitted model ranks rows like ``x`` when ``w > 0``, like ``-x`` when
  ``w < 0`` and all alike when ``w = 0``, so an AUC depends only on the sign of ``w``; and the sign
  of the L2-regularised optimum is the sign of the fold's covariance of ``x`` and ``y`` for every
  ``C`` (:func:`l2_logistic_sign`). The backend therefore needs no fitting: batched tie-aware
  ranks give every fold AUC, and scikit-learn's rule for ``C`` (first maximum of the fold sum)
  picks the first ``C`` of the grid. It differs from scikit-learn only where lbfgs stops short of
  the optimum on a feature that barely covaries with the label (rare, and < 0.01 AUC).

k-sparse probing (:func:`probe_ksparse`) follows SAE-Probes' own protocol, not the 1-D one, so its
numbers compare with SAE-Probes' published k-sparse results: mean-activation-normalised ranking,
unscaled features, their ``C`` grid (:data:`SAE_PROBES_CS`) chosen on a single held-out split
(:func:`sae_probes_splits`) with their L1 (saga) logistic regression, then a refit on the shuffled
training rows.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.randint(0, 2, (400,), generator=g)
    >>> X = torch.randn(400, 50, generator=g)
    >>> X[:, 7] += 2 * y                           # feature 7 carries the label
    >>> r = probe_1d(X[:300], y[:300], X[300:], y[300:], top_k=20)
    >>> r.feature, r.test_auc > 0.8
    (7, True)
    >>> ref = probe_1d(X[:300], y[:300], X[300:], y[300:], top_k=20, backend="sklearn")
    >>> ref.feature, abs(ref.test_auc - r.test_auc) < 1e-9
    (7, True)
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

C_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
"""The regularisation strengths searched by cross-validation."""

SPARSE_KS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
"""The ``k`` values of SAE-Probes' k-sparse protocol."""

SAE_PROBES_CS = tuple(float(c) for c in np.logspace(5, -5, 10))
"""The ``C`` grid of SAE-Probes' k-sparse protocol (``np.logspace(5, -5, 10)``, largest first)."""

N_FOLDS = 5
"""``LogisticRegressionCV(cv=5)``: five unshuffled stratified folds."""


@dataclass
class ProbeResult:
    """The chosen feature (index into the columns of ``X``), its CV (validation) and test AUC,
    the chosen ``C`` and the ranked candidates."""

    feature: int
    val_auc: float
    test_auc: float
    C: float = float("nan")
    candidates: list[int] = field(default_factory=list, repr=False)


@dataclass
class KSparseResult:
    """A k-sparse probe: the ``k`` features used (best first), the held-out validation AUC at the
    chosen ``C``, test AUC, the chosen ``C``, the refitted model's weights on those features (in the
    features' own units; L1 sets some to exactly 0), test accuracy and weighted F1."""

    k: int
    features: list[int]
    val_auc: float
    test_auc: float
    C: float
    coef: list[float] = field(default_factory=list, repr=False)
    test_acc: float = float("nan")
    test_f1: float = float("nan")


def rank_by_mean_difference(X: Float[Tensor, "n d"], y: Int[Tensor, " n"]) -> Int[Tensor, " d"]:
    """Feature indices sorted by ``|mean(X[y==1]) - mean(X[y==0])|``, largest first (stable).

    Example:
        >>> rank_by_mean_difference(torch.tensor([[0.0, 5.0], [0.0, 1.0]]), torch.tensor([1, 0])).tolist()
        [1, 0]
    """
    X, y = _as_tensor(X), _as_tensor(y).bool()
    diff = (X[y].mean(0) - X[~y].mean(0)).abs()
    diff = torch.nan_to_num(diff, nan=-1.0)
    return torch.from_numpy(np.argsort(-diff.numpy(), kind="stable"))


def cv_folds(y: Int[Tensor, " n"] | np.ndarray, n_folds: int = N_FOLDS) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds ``LogisticRegressionCV(cv=n_folds)`` uses: ``StratifiedKFold(n_folds)``, *not*
    shuffled (each class's rows are cut in order), as ``(train_rows, validation_rows)`` pairs.

    Example:
        >>> [va.tolist() for _, va in cv_folds(np.array([0, 1] * 5))]
        [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    return list(StratifiedKFold(n_splits=n_folds).split(np.zeros(len(y)), y))


def probe_1d(
    X_train: Float[Tensor, "n_train d"],
    y_train: Int[Tensor, " n_train"],
    X_test: Float[Tensor, "n_test d"],
    y_test: Int[Tensor, " n_test"],
    *,
    top_k: int = 512,
    backend: str = "torch",
    Cs: Sequence[float] = C_GRID,
    n_folds: int = N_FOLDS,
) -> ProbeResult:
    """The best single feature for a binary label (the protocol in the module docstring).

    Args:
        X_train, X_test: features (columns are candidates), any float dtype (used as float64).
        y_train, y_test: labels in {0, 1}; both classes must occur in each.
        top_k: how many features, ranked by class-mean difference, are cross-validated.
        backend: ``"torch"`` (batched, fast) or ``"sklearn"`` (the reference pipeline itself).
        Cs, n_folds: the ``C`` grid and the number of unshuffled stratified folds.
    """
    X_train, X_test = _as_tensor(X_train).double(), _as_tensor(X_test).double()
    y_train, y_test = _as_tensor(y_train).long(), _as_tensor(y_test).long()
    _check_binary(y_train, "y_train")
    _check_binary(y_test, "y_test")
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError(f"X_train has {X_train.shape[1]} features but X_test has {X_test.shape[1]}.")
    if backend not in ("torch", "sklearn"):
        raise ValueError(f"backend must be 'torch' or 'sklearn', got {backend!r}.")
    candidates = rank_by_mean_difference(X_train, y_train)[:top_k]
    Xc, Xt = X_train[:, candidates], X_test[:, candidates]
    if backend == "sklearn":
        val, best_c, test = _probe_sklearn(Xc, y_train, Xt, y_test, Cs, n_folds)
        j = int(np.argmax(val))
        return ProbeResult(int(candidates[j]), float(val[j]), float(test[j]), float(Cs[best_c[j]]), candidates.tolist())
    xs_train, xs_test = _standardise(Xc, Xt)  # scaled once, on the whole training split
    val, best_c = _cv_torch(xs_train, y_train, cv_folds(y_train.numpy(), n_folds), Cs)
    j = int(np.argmax(val))
    C = float(Cs[best_c[j]])
    test_auc = _test_torch(xs_train[:, j], y_train, xs_test[:, j], y_test, C)
    return ProbeResult(int(candidates[j]), float(val[j]), float(test_auc), C, candidates.tolist())


def sae_probes_splits(y: Int[Tensor, " n"] | np.ndarray, seed: int = 42) -> list[tuple[np.ndarray, np.ndarray]]:
    """The validation rows SAE-Probes' k-sparse protocol chooses ``C`` on, as ``(train, validation)`` pairs.

    With 128 or more training rows it is a *single held-out split*: the last
    ``min(int(0.2 * n), 100)`` rows (in the given order; the training split is already shuffled)
    validate, the rest train. Smaller training sets use ``StratifiedKFold(6, shuffle=True,
    random_state=seed)`` (13-127 rows) or every pair of rows held out (``LeavePOut(2)``, 12 rows or
    fewer), keeping only the splits whose validation rows hold both classes.

    Example:
        >>> [(len(tr), int(va[0]), int(va[-1])) for tr, va in sae_probes_splits(np.array([0, 1] * 300))]
        [(500, 500, 599)]
        >>> len(sae_probes_splits(np.array([0, 1] * 30)))
        6
    """
    from sklearn.model_selection import LeavePOut, StratifiedKFold

    y = np.asarray(y)
    n = len(y)
    if n >= 128:
        n_val = min(int(0.2 * n), 100)
        train, val = np.arange(n - n_val), np.arange(n - n_val, n)
        if len(np.unique(y[val])) < 2:
            raise ValueError(
                f"The held-out validation rows (the last {n_val} of {n} training rows) hold one class only; "
                "shuffle the training rows first (SAE-Probes' splits are shuffled)."
            )
        return [(train, val)]
    splitter = LeavePOut(2) if n <= 12 else StratifiedKFold(n_splits=6, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in splitter.split(np.zeros((n, 1)), y) if len(np.unique(y[va])) == 2]


def probe_ksparse(
    X_train: Float[Tensor, "n_train d"],
    y_train: Int[Tensor, " n_train"],
    X_test: Float[Tensor, "n_test d"],
    y_test: Int[Tensor, " n_test"],
    *,
    ks: Sequence[int] = SPARSE_KS,
    penalty: str = "l1",
    Cs: Sequence[float] = SAE_PROBES_CS,
    seed: int = 42,
    normalize: bool = True,
) -> list[KSparseResult]:
    """SAE-Probes' k-sparse protocol (its ``run_sae_eval`` + ``find_best_reg``), one result per ``k``.

    1. Rank every feature by ``|mean(class 1) - mean(class 0)|`` on the training rows, after
       dividing each feature by its mean non-zero ``|activation|`` when ``normalize`` (their
       ``mean_act_normalization``); keep the top ``k``.
    2. For each ``C`` in ``Cs`` (``1e5`` down to ``1e-5``, ten values), fit a logistic regression on
       the *unscaled* features (``penalty="l1"``: their L1 path, saga; ``"l2"``: lbfgs; both with
       ``random_state=seed``, ``max_iter=1000``) on the training part of :func:`sae_probes_splits`
       (a single held-out split for 128+ rows) and score ROC-AUC on its validation rows (0.5 for a
       fold with one class). ``C`` is the first with the best mean score (the largest ``C`` on ties),
       and that score is ``val_auc``.
    3. Refit at that ``C`` on all training rows, shuffled by ``np.random.RandomState(seed)``, and
       report test ROC-AUC, accuracy and weighted F1.

    The ranking runs in the features' own dtype (SAE-Probes ranks float32 tensors) and the fits in
    float64 (scikit-learn converts their tensors so), so the same inputs give their numbers.
    With 3 training rows or fewer there is nothing to validate on: ``C = 1`` and ``val_auc`` is the
    training AUC, as in SAE-Probes. Saga stops at ``max_iter`` for the largest ``C`` on most data;
    SAE-Probes silences that ``ConvergenceWarning``, and so does this function.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.randn(300, 20, generator=g)
        >>> y = (X[:, 0] + X[:, 1] > 0).long()       # a two-feature concept
        >>> res = probe_ksparse(X[:200], y[:200], X[200:], y[200:], ks=(1, 2))
        >>> [r.k for r in res], sorted(res[1].features), res[1].test_auc > res[0].test_auc + 0.05
        ([1, 2], [0, 1], True)
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    if penalty not in ("l1", "l2"):
        raise ValueError(f"penalty must be 'l1' (SAE-Probes' L1 path) or 'l2', got {penalty!r}.")
    X_train, X_test = _as_tensor(X_train), _as_tensor(X_test)
    y_train, y_test = _as_tensor(y_train).long(), _as_tensor(y_test).long()
    _check_binary(y_train, "y_train")
    _check_binary(y_test, "y_test")
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError(f"X_train has {X_train.shape[1]} features but X_test has {X_test.shape[1]}.")
    order = rank_by_mean_difference(_mean_act_normalization(X_train) if normalize else X_train, y_train)
    # ranked in the features' dtype (torch, like SAE-Probes); fitted in float64, as scikit-learn
    # converts SAE-Probes' torch tensors (it sees no numpy dtype on them and takes float64)
    xtr_all, xte_all = X_train.detach().cpu().double().numpy(), X_test.detach().cpu().double().numpy()
    ytr, yte = y_train.numpy(), y_test.numpy()
    n = len(ytr)
    splits = sae_probes_splits(ytr, seed) if n > 3 else []
    shuffle = np.random.RandomState(seed).permutation(n)

    def model(C: float) -> Any:
        return _sae_probes_logistic(C, penalty, seed)

    def split_auc(x: np.ndarray, C: float, tr: np.ndarray, va: np.ndarray) -> float:
        if len(np.unique(ytr[tr])) < 2:
            return 0.5
        return float(roc_auc_score(ytr[va], model(C).fit(x[tr], ytr[tr]).predict_proba(x[va])[:, 1]))

    results = []
    for k in ks:
        if k > X_train.shape[1]:
            break
        cols = order[:k].numpy()
        xtr, xte = xtr_all[:, cols], xte_all[:, cols]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=ConvergenceWarning)
            if splits:
                scores = [float(np.mean([split_auc(xtr, C, tr, va) for tr, va in splits])) for C in Cs]
                best_C = float(Cs[int(np.argmax(scores))])
            else:
                best_C = 1.0
            final = model(best_C).fit(xtr[shuffle], ytr[shuffle])
        proba = final.predict_proba(xte)[:, 1]
        pred = final.predict(xte)
        val_auc = max(scores) if splits else float(roc_auc_score(ytr, final.predict_proba(xtr)[:, 1]))
        results.append(
            KSparseResult(
                k,
                cols.tolist(),
                float(val_auc),
                float(roc_auc_score(yte, proba)),
                best_C,
                final.coef_.ravel().tolist(),
                test_acc=float(accuracy_score(yte, pred)),
                test_f1=float(f1_score(yte, pred, average="weighted")),
            )
        )
    return results


def _sae_probes_logistic(C: float, penalty: str, seed: int) -> Any:
    """SAE-Probes' model: L1 with saga, or scikit-learn's default L2 (lbfgs); ``max_iter=1000``."""
    from sklearn.linear_model import LogisticRegression

    solver = "saga" if penalty == "l1" else "lbfgs"
    kwargs = logistic_penalty_kwargs(1.0 if penalty == "l1" else 0.0)
    return LogisticRegression(C=C, solver=solver, random_state=seed, max_iter=1000, **kwargs)


# --------------------------------------------------------------------------- scikit-learn versions
def _sklearn_version() -> tuple[int, int]:
    import sklearn

    major, minor = (int(p) for p in re.findall(r"\d+", sklearn.__version__)[:2])
    return major, minor


def logistic_penalty_kwargs(
    l1_ratio: float, cv: bool = False, version: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Keyword arguments that make ``LogisticRegression`` (``cv=False``) or ``LogisticRegressionCV``
    (``cv=True``) use a pure L2 (``l1_ratio=0``) or pure L1 (``l1_ratio=1``) penalty.

    scikit-learn 1.8 deprecated ``penalty`` in favour of ``l1_ratio``/``l1_ratios``; before 1.8,
    ``l1_ratio`` is *ignored* unless ``penalty="elasticnet"`` (``l1_ratio=1.0`` alone fits an L2
    model), so older versions need ``penalty=``.

    Example:
        >>> logistic_penalty_kwargs(1.0, version=(1, 7))
        {'penalty': 'l1'}
        >>> logistic_penalty_kwargs(1.0, version=(1, 8))
        {'l1_ratio': 1.0}
        >>> logistic_penalty_kwargs(0.0, cv=True, version=(1, 9))
        {'l1_ratios': (0.0,)}
    """
    if l1_ratio not in (0.0, 1.0):
        raise ValueError(f"l1_ratio must be 0 (L2) or 1 (L1), got {l1_ratio}.")
    if (version or _sklearn_version()) >= (1, 8):
        return {"l1_ratios": (float(l1_ratio),)} if cv else {"l1_ratio": float(l1_ratio)}
    return {"penalty": "l1" if l1_ratio == 1.0 else "l2"}


def reference_logistic_cv(Cs: Sequence[float] = C_GRID, n_folds: int = N_FOLDS) -> Any:
    """The reference 1-D model: ``LogisticRegressionCV(Cs, cv=n_folds, scoring="roc_auc",
    penalty="l2", max_iter=1000)``, spelt for the installed scikit-learn."""
    from sklearn.linear_model import LogisticRegressionCV

    kwargs = logistic_penalty_kwargs(0.0, cv=True)
    if "use_legacy_attributes" in LogisticRegressionCV().get_params():  # scikit-learn >= 1.9
        kwargs["use_legacy_attributes"] = False
    return LogisticRegressionCV(Cs=list(Cs), cv=n_folds, scoring="roc_auc", max_iter=1000, **kwargs)


def fold_scores(clf: Any) -> np.ndarray:
    """A fitted binary ``LogisticRegressionCV``'s validation scores as ``[n_folds, n_Cs]``, from
    its ``scores_`` (a dict keyed by the positive class in the legacy layout, else an array with a
    size-1 ``l1_ratios`` axis)."""
    scores = clf.scores_
    if isinstance(scores, dict):
        scores = scores[clf.classes_[-1]]
    scores = np.asarray(scores, dtype=np.float64)
    return scores.reshape(scores.shape[0], len(clf.Cs_))


# --------------------------------------------------------------------------- sklearn reference
def _probe_sklearn(
    Xc: Tensor, y: Tensor, Xt: Tensor, y_test: Tensor, Cs, n_folds
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate: StandardScaler on the whole train split, LogisticRegressionCV on the scaled
    feature; the fold-mean AUC at the chosen C, the C's index and the refit's test AUC."""
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    X, Xte, yy, yte = Xc.numpy(), Xt.numpy(), y.numpy(), y_test.numpy()
    K = X.shape[1]
    val, test = np.zeros(K), np.zeros(K)
    best_c = np.zeros(K, dtype=int)
    for j in range(K):
        scaler = StandardScaler().fit(X[:, j : j + 1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            clf = reference_logistic_cv(Cs, n_folds).fit(scaler.transform(X[:, j : j + 1]), yy)
        C = float(np.ravel(clf.C_)[0])
        best_c[j] = int(np.flatnonzero(np.asarray(clf.Cs_) == C)[0])
        val[j] = fold_scores(clf).mean(axis=0)[best_c[j]]
        test[j] = roc_auc_score(yte, clf.predict_proba(scaler.transform(Xte[:, j : j + 1]))[:, 1])
    return val, best_c, test


# --------------------------------------------------------------------------- batched torch backend
def _cv_torch(xs: Tensor, y: Tensor, folds, Cs) -> tuple[np.ndarray, np.ndarray]:
    """Fold-mean AUC at the chosen C and the C's index, for every (already scaled) column.

    A fold's AUC depends only on the sign of the fitted ``w``, and that sign does not depend on
    ``C`` (see :func:`l2_logistic_sign`): every ``C`` gives the same fold sum, and the first ``C``
    wins, as in ``LogisticRegressionCV`` (first maximum of the summed fold scores).
    """
    total = torch.zeros(len(Cs), xs.shape[1], dtype=torch.float64)
    for tr, va in folds:  # summed in fold order, as LogisticRegressionCV sums its scores_
        tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)
        w = l2_logistic_sign(xs[tr_t], y[tr_t])[None].expand(len(Cs), -1)  # [C, K]
        total += _signed_auc(xs[va_t], y[va_t], w)
    best_c = torch.argmax(total, dim=0)  # first maximum of the fold sum, as LogisticRegressionCV
    mean = total / len(folds)
    return mean.gather(0, best_c[None])[0].numpy(), best_c.numpy()


def _test_torch(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, C: float) -> float:
    w = l2_logistic_sign(x_train[:, None], y_train)[None]
    return float(_signed_auc(x_test[:, None], y_test, w)[0, 0])


def _standardise(train: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
    """scikit-learn's StandardScaler: population std, and scale 1 where the std is 0."""
    mean = train.mean(0)
    std = train.std(0, unbiased=False)
    std = torch.where(std < 10 * torch.finfo(std.dtype).eps * mean.abs().clamp_min(1), torch.ones_like(std), std)
    return (train - mean) / std, (other - mean) / std


def l2_logistic_sign(x: Float[Tensor, "n k"], y: Int[Tensor, " n"]) -> Float[Tensor, " k"]:
    """The sign (+1, -1 or 0) of ``w`` in the minimiser of ``0.5 w^2 + C sum_i log-loss(w x_i + b, y_i)``
    (scikit-learn's L2 objective, intercept unpenalised) for each column of ``x``, for every ``C > 0``.

    Minimising over ``b`` first leaves a convex function of ``w`` whose slope at ``w = 0`` (where
    the best ``b`` is the log-odds of ``mean(y)``) is ``-C * sum_i (y_i - mean(y)) x_i``. So
    ``w > 0`` exactly when ``x`` and ``y`` covary positively, ``w < 0`` when negatively, and
    ``w = 0`` when they do not covary: no iterative fit is needed to know how a 1-D probe ranks.

    Example:
        >>> x = torch.tensor([[0.0, 3.0], [1.0, 2.0], [2.0, 1.0], [3.0, 0.0]])
        >>> l2_logistic_sign(x, torch.tensor([0, 0, 1, 1])).tolist()
        [1.0, -1.0]
    """
    x, yc = x.double(), y.double() - y.double().mean()
    cov = yc @ x
    bound = yc.norm() * x.norm(dim=0)  # Cauchy-Schwarz: |cov| <= bound; below rounding, w is 0
    return torch.where(cov.abs() <= 1e-12 * bound, torch.zeros_like(cov), torch.sign(cov))


def _signed_auc(x: Float[Tensor, "n k"], y: Int[Tensor, " n"], w: Float[Tensor, "n_C k"]) -> Float[Tensor, "n_C k"]:
    """AUC of the predictions ``sigmoid(w x + b)`` for each (C, column): they rank like ``x``
    when ``w > 0``, like ``-x`` when ``w < 0``, and all tie (0.5) when ``w == 0``."""
    auc = auc_columns(x, y)[None]  # [1, K]
    return torch.where(w > 0, auc, torch.where(w < 0, 1 - auc, torch.full_like(auc, 0.5)))


def auc_columns(scores: Float[Tensor, "n k"], y: Int[Tensor, " n"]) -> Float[Tensor, " k"]:
    """ROC-AUC of every column of ``scores`` ``[n, K]`` against labels ``y`` (ties get mean ranks)."""
    y = _as_tensor(y).bool()
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("ROC-AUC needs both classes.")
    ranks = average_ranks(scores.double())
    return (ranks[y].sum(0) - n1 * (n1 + 1) / 2) / (n1 * n0)


def average_ranks(x: Float[Tensor, "n k"]) -> Float[Tensor, "n k"]:
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
    """``x`` as a CPU tensor: the probes run on the CPU (float64, numpy folds), and features straight from
    ``MetaNeurons`` or ``prior.encode`` on a GPU are CUDA tensors, which ``.numpy()`` refuses."""
    return x.detach().cpu() if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))


def _check_binary(y: Tensor, name: str) -> None:
    values = set(torch.unique(y).tolist())
    if values != {0, 1}:
        raise ValueError(f"{name} must hold both classes 0 and 1, got {sorted(values)}.")


def _mean_act_normalization(X: Tensor) -> Tensor:
    """SAE-Probes' ranking normalisation: divide each feature by its mean non-zero |activation|."""
    col_sums = X.abs().sum(0)
    nonzero = (X != 0).sum(0)
    return X / (col_sums / (nonzero + 1e-6) + 1e-6)
