"""Fits for a scaling study: the compute-efficient frontier, ``L(C) = E + A * C^-alpha`` with
bootstrap confidence intervals, and Spearman rank correlations with bootstrap CIs.

Example (points planted on a power law):
    >>> import numpy as np
    >>> C = np.logspace(10, 14, 12)
    >>> fit = fit_power_law(C, 0.5 + 30.0 * C ** -0.3, n_boot=100)
    >>> round(fit.E, 3), round(fit.alpha, 3)
    (0.5, 0.3)
    >>> compute_frontier(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 1.0, 1.5, 0.5])).tolist()
    [True, True, False, True]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

ALPHA_GRID = np.exp(np.linspace(np.log(0.01), np.log(3.0), 60))


def compute_frontier(compute: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Boolean mask of the compute-efficient points: those with a lower loss than every point that
    used less (or equal) compute. The first (cheapest) point is always on it."""
    compute, loss = np.asarray(compute, float), np.asarray(loss, float)
    mask = np.zeros(len(compute), dtype=bool)
    best = np.inf
    for i in np.lexsort((loss, compute)):
        if loss[i] < best:
            mask[i] = True
            best = loss[i]
    return mask


@dataclass
class PowerLawFit:
    """``L(C) = E + A * C^-alpha`` and its 95% bootstrap intervals (residual bootstrap in log space)."""

    E: float
    """Irreducible loss."""
    A: float
    """Scale (in the units of ``C`` as given)."""
    alpha: float
    """Exponent."""
    E_ci: tuple[float, float]
    A_ci: tuple[float, float]
    alpha_ci: tuple[float, float]
    n_points: int
    """Points the fit rests on."""
    rmse_log: float
    """Root mean squared residual of ``log L``."""

    def predict(self, compute: Any) -> np.ndarray:
        return self.E + self.A * np.asarray(compute, float) ** -self.alpha

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fit_once(
    x: np.ndarray, y: np.ndarray, start: tuple[float, float, float] | None = None
) -> tuple[float, float, float]:
    """Least squares in ``log L`` for ``L = E + A * x^-alpha`` (``x`` = C / C0), E, A >= 0:
    for each alpha on a grid the best (E, A) is a 2-variable non-negative linear fit (a good
    start), then a bounded nonlinear refinement from the best grid point (or from ``start``)."""
    from scipy.optimize import least_squares, nnls

    logy = np.log(y)
    best = (np.inf, 0.0, 0.0, 1.0) if start is None else (0.0, *start)
    for a in ALPHA_GRID if start is None else ():
        design = np.stack([np.ones_like(x), x**-a], axis=1)
        (E, A), _ = nnls(design / y[:, None], np.ones_like(y))  # relative residuals ~ log residuals
        pred = E + A * x**-a
        if np.all(pred > 0):
            err = float(np.sum((np.log(pred) - logy) ** 2))
            if err < best[0]:
                best = (err, E, A, a)
    _, E0, A0, a0 = best

    def residual(p: np.ndarray) -> np.ndarray:
        return np.log(p[0] + p[1] * x ** -p[2]) - logy

    res = least_squares(residual, x0=[E0, max(A0, 1e-12), a0], bounds=([0.0, 1e-12, 1e-3], [np.inf, np.inf, 10.0]))
    return float(res.x[0]), float(res.x[1]), float(res.x[2])


def fit_power_law(compute: Any, loss: Any, *, n_boot: int = 1000, seed: int = 0) -> PowerLawFit:
    """Fit ``L(C) = E + A * C^-alpha`` to (compute, loss) points (e.g. the compute-efficient frontier).

    The fit minimises squared residuals of ``log L`` (each point counts by its relative error);
    CIs come from a residual bootstrap (resample the log residuals, refit). Needs at least 4
    points: with 3 parameters fewer leave nothing to estimate the noise from.
    """
    C, L = np.asarray(compute, float), np.asarray(loss, float)
    if C.shape != L.shape or C.ndim != 1:
        raise ValueError(f"compute and loss must be 1-D of the same length, got {C.shape} and {L.shape}.")
    good = np.isfinite(C) & np.isfinite(L) & (C > 0) & (L > 0)
    if good.sum() < 4:
        raise ValueError(
            f"fit_power_law needs at least 4 points with positive finite compute and loss; got {int(good.sum())}. Add checkpoints or depths."
        )
    C, L = C[good], L[good]
    C0 = float(np.exp(np.mean(np.log(C))))  # fit in x = C / C0 for conditioning
    x = C / C0
    E, A, alpha = _fit_once(x, L)
    pred = E + A * x**-alpha
    resid = np.log(L) - np.log(pred)
    # residuals of a 3-parameter fit understate the noise: rescale them to the unbiased variance
    boot_resid = (resid - resid.mean()) * np.sqrt(len(resid) / max(len(resid) - 3, 1))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        y = pred * np.exp(rng.choice(boot_resid, len(resid), replace=True))
        draws.append(_fit_once(x, y, start=(E, A, alpha)))
    d = np.array(draws) if draws else np.array([[E, A, alpha]])
    d[:, 1] = d[:, 1] * C0 ** d[:, 2]  # A back to the units of C

    def ci(col: int) -> tuple[float, float]:
        return float(np.percentile(d[:, col], 2.5)), float(np.percentile(d[:, col], 97.5))

    return PowerLawFit(E, A * C0**alpha, alpha, ci(0), ci(1), ci(2), int(len(C)), float(np.sqrt(np.mean(resid**2))))


@dataclass
class RankCorrelation:
    """Spearman's rho of a figure against loss, with a 95% bootstrap CI over points."""

    rho: float
    ci_low: float
    ci_high: float
    n: int
    """Points with both values finite (the rest are left out and counted in ``n_missing``)."""
    n_missing: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def spearman_ci(x: Any, y: Any, *, n_boot: int = 1000, seed: int = 0) -> RankCorrelation:
    """Spearman rank correlation of ``x`` and ``y`` with a percentile bootstrap CI (pairs resampled).

    Pairs with a NaN are dropped and counted; with fewer than 3 pairs left every number is NaN
    (a report prints ``n/a``). Resamples whose values are all tied are skipped.

    >>> r = spearman_ci([1, 2, 3, 4, 5, 6], [2, 4, 5, 7, 9, 12], n_boot=200)
    >>> r.rho, r.n
    (1.0, 6)
    """
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n, missing = int(len(x)), int((~ok).sum())
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return RankCorrelation(float("nan"), float("nan"), float("nan"), n, missing)
    rho = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        if np.ptp(x[idx]) > 0 and np.ptp(y[idx]) > 0:
            boots.append(spearmanr(x[idx], y[idx]).statistic)
    if len(boots) < 10:
        return RankCorrelation(rho, float("nan"), float("nan"), n, missing)
    return RankCorrelation(rho, float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5)), n, missing)
