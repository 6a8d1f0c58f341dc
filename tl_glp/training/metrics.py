"""Distribution metrics for activations: Frechet distance (raw, on normalised rows with its noise floor,
and extrapolated to infinitely many samples), a classifier two-sample test, and the row-norm figure.

Example:
    >>> import torch
    >>> a, b = torch.randn(2000, 4), torch.randn(2000, 4) + 1
    >>> round(frechet_distance(a, a), 6), 3.5 < frechet_distance(a, b) < 4.5
    (0.0, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from tl_glp.core._plot import pyplot, save_figure
from tl_glp.core.prior import GenerativePrior


def frechet_distance(a: Float[Tensor, "n d"], b: Float[Tensor, "m d"]) -> float:
    """``|mu_a - mu_b|^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^{1/2})`` with full covariances.

    Computed in float64 through eigenvalues: ``Tr((S_a S_b)^{1/2})`` is the sum of square roots of
    the eigenvalues of the symmetric PSD matrix ``S_a^{1/2} S_b S_a^{1/2}``, which is stable where a
    general matrix square root is not.
    """
    a = a.detach().reshape(-1, a.shape[-1]).to("cpu", torch.float64)
    b = b.detach().reshape(-1, b.shape[-1]).to("cpu", torch.float64)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"widths differ: {a.shape[-1]} vs {b.shape[-1]}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("need at least two rows on each side")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], a.shape[1]), torch.cov(b.T).reshape(b.shape[1], b.shape[1])
    evals_a, evecs_a = torch.linalg.eigh(cov_a)
    sqrt_a = (evecs_a * evals_a.clamp_min(0).sqrt()) @ evecs_a.T
    middle = sqrt_a @ cov_b @ sqrt_a
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    fd = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * tr_sqrt
    return float(fd.clamp_min(0))


class RowNormalizer(NamedTuple):
    """Per-dimension standardisation by real data's statistics, and an optional cap on row norms: the space
    in which :func:`normalized_frechet_distance` compares activations.

    Raw LLM activations have a few dimensions with huge variance (massive activations) and a heavy tail of
    row norms; a raw FD is dominated by them (on SmolLM2-135M, two halves of the held-out rows scored
    61k, above the prior's 11k). Standardising every dimension by the real data's mean and standard
    deviation (the prior's normaliser statistics, :meth:`of_prior`) gives each dimension the same weight,
    but the huge rows still set those statistics and still dominate the covariances. The robust variant
    (:meth:`fit` with ``robust=True, clip=3.0``) standardises by each dimension's median and MAD and
    shrinks rows longer than three times the median norm onto that radius (a winsorised FD), so that a
    few huge rows move neither the scale nor the distance. Show the norm distribution beside it
    (:func:`plot_norm_distribution`) and the share of rows the cap shrank (:meth:`share_capped`): the
    cap hides the tail from FD on purpose.
    """

    mean: Float[Tensor, " d"]
    std: Float[Tensor, " d"]
    max_norm: float | None = None
    """Standardised rows longer than this are scaled down to it (None: no cap)."""

    @classmethod
    def fit(cls, real: Float[Tensor, "n d"], *, robust: bool = False, clip: float | None = None) -> RowNormalizer:
        """Statistics of ``real`` rows: each dimension's mean and standard deviation, or with ``robust`` its
        median and ``1.4826 * MAD`` (the standard deviation of a Gaussian with that MAD; a few huge rows move
        neither). ``clip`` (e.g. 3.0) caps row norms at that multiple of the real rows' median
        standardised norm.

        >>> x = torch.randn(1000, 3) * torch.tensor([1.0, 10.0, 100.0]) + 5
        >>> z = RowNormalizer.fit(x)(x)
        >>> [round(v, 3) for v in z.std(0).tolist()], round(float(z.mean(0).abs().max()), 6)
        ([1.0, 1.0, 1.0], 0.0)
        """
        real = real.detach().reshape(-1, real.shape[-1]).to("cpu", torch.float64)
        if real.shape[0] < 2:
            raise ValueError("RowNormalizer.fit needs at least two real rows.")
        if robust:
            x = real.numpy()
            centre = torch.from_numpy(np.median(x, axis=0))  # numpy: the mean of the two middle values
            mad = torch.from_numpy(np.median(np.abs(x - centre.numpy()), axis=0)) * 1.4826
            scale = torch.where(mad > 0, mad, real.std(0))  # a dimension constant on over half the rows
            out = cls(centre, scale.clamp_min(1e-12))
        else:
            out = cls(real.mean(0), real.std(0).clamp_min(1e-12))
        if clip is None:
            return out
        if not clip > 0:
            raise ValueError(f"clip is a multiple of the median row norm and must be positive, got {clip}.")
        return out._replace(max_norm=float(clip * np.median(out(real).norm(dim=-1).numpy())))

    @classmethod
    def of_prior(cls, prior: GenerativePrior, *, max_norm: float | None = None) -> RowNormalizer:
        """The prior's own normaliser statistics (those of its training activations; single-layer priors)."""
        norm = prior.normalizer
        if norm.per_row:
            raise ValueError(
                "RowNormalizer.of_prior: a multi-layer prior has one row of statistics per layer; fit one per layer."
            )
        return cls(
            norm.mean.detach().cpu().double(), norm.var.detach().cpu().double().clamp_min(1e-24).sqrt(), max_norm
        )

    def share_capped(self, x: Float[Tensor, "n d"]) -> float:
        """The share of rows of ``x`` whose standardised norm exceeds ``max_norm`` (what the cap shrinks);
        compare it between real and generated rows (0 without a cap)."""
        if self.max_norm is None:
            return 0.0
        z = (x.detach().reshape(-1, x.shape[-1]).to("cpu", torch.float64) - self.mean) / self.std
        return float((z.norm(dim=-1) > self.max_norm).double().mean())

    def __call__(self, x: Float[Tensor, "n d"]) -> Float[Tensor, "n d"]:
        """``(x - mean) / std`` in float64, each row's norm capped at ``max_norm``."""
        z = (x.detach().reshape(-1, x.shape[-1]).to("cpu", torch.float64) - self.mean) / self.std
        if self.max_norm is not None:
            z = z * (self.max_norm / z.norm(dim=-1, keepdim=True).clamp_min(self.max_norm))
        return z


def normalized_frechet_distance(a: Float[Tensor, "n d"], b: Float[Tensor, "m d"], normalizer: RowNormalizer) -> float:
    """:func:`frechet_distance` of ``normalizer(a)`` and ``normalizer(b)``: in units of the real data's
    per-dimension variance (a Gaussian shifted by one standard deviation in each of ``d`` dimensions scores
    ``d``). Report it beside its noise floor (:func:`fd_noise_floor`), the distance a perfect model would
    reach with this many rows.

    >>> g = torch.Generator().manual_seed(0)
    >>> real = torch.randn(4000, 4, generator=g) * torch.tensor([1.0, 1.0, 1.0, 1000.0])
    >>> shifted = real + torch.tensor([1.0, 1.0, 1.0, 0.0])   # one standard deviation in 3 dimensions
    >>> round(normalized_frechet_distance(shifted, real, RowNormalizer.fit(real)), 1)
    3.0
    """
    return frechet_distance(normalizer(a), normalizer(b))


def fd_noise_floor(held_out: Float[Tensor, "n d"], normalizer: RowNormalizer | None = None, *, seed: int = 0) -> float:
    """FD between two random halves of ``held_out`` real rows (normalised when ``normalizer`` is given): the
    floor of any FD measured with ``len(held_out) // 2`` rows per side. A model's FD at that size is
    read against it (for FD-infinity, extrapolate the floor the same way)."""
    n = len(held_out) // 2
    if n < 2:
        raise ValueError("fd_noise_floor needs at least four held-out rows (two per half).")
    perm = torch.randperm(len(held_out), generator=torch.Generator().manual_seed(seed))
    a, b = held_out[perm[:n]], held_out[perm[n : 2 * n]]
    return frechet_distance(a, b) if normalizer is None else normalized_frechet_distance(a, b, normalizer)


def classifier_two_sample_auc(
    real: Tensor, fake: Tensor, *, seed: int = 0, hidden: int = 128, steps: int = 300
) -> float:
    """Held-out ROC-AUC of a small MLP that tells ``real`` from ``fake`` (0.5 = indistinguishable).

    Unlike the Frechet distance, it sees more than two moments: a Gaussian with the data's mean and
    covariance passes FD but not this test when the data is not Gaussian.
    """
    g = torch.Generator().manual_seed(seed)
    n = min(real.shape[0], fake.shape[0])
    x = torch.cat([real[:n], fake[:n]]).float().cpu()
    y = torch.cat([torch.ones(n), torch.zeros(n)])
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    perm = torch.randperm(2 * n, generator=g)
    cut = int(1.4 * n)
    tr, te = perm[:cut], perm[cut:]
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], hidden),
        torch.nn.SiLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.SiLU(),
        torch.nn.Linear(hidden, 1),
    )
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(steps):
        idx = tr[torch.randint(0, len(tr), (256,), generator=g)]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[idx]).squeeze(-1), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        scores = net(x[te]).squeeze(-1).numpy()
    return roc_auc(y[te].numpy(), scores)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC by the rank-sum formula (ties get average ranks)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="mergesort")] = np.arange(1, len(scores) + 1)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.bincount(inverse, weights=ranks) / counts)[inverse]  # ties share their mean rank
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC-AUC needs both classes")
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class FDInfinity(NamedTuple):
    """Frechet distance extrapolated to infinitely many samples, and the measurements it rests on."""

    fd_inf: float
    """Intercept of the straight-line fit of FD against 1/N (the bias of FD is about linear in 1/N)."""
    ns: tuple[int, ...]
    """Sample sizes (per side) measured."""
    fd_at_n: tuple[float, ...]
    """Mean FD at each size."""


def frechet_distance_infinity(
    a: Float[Tensor, "n d"],
    b: Float[Tensor, "m d"],
    ns: Sequence[int] | None = None,
    *,
    repeats: int = 16,
    seed: int = 0,
) -> FDInfinity:
    """FD-infinity: FD of random subsets of ``a`` and ``b`` of sizes ``ns`` (default: a quarter,
    half and all of the smaller side), ``repeats`` subsets each (one for the full size), fitted as
    ``FD(N) = FD_inf + k / N`` and read off at ``1/N = 0``. Apply it the same way to every
    distribution being compared (the prior, the held-out lower bound, the Gaussian).

    The extrapolation amplifies the noise of the small subsets, so they are averaged over many
    random draws (they cost no new samples, only covariances). On the testbed's 128-dimensional
    residual (trace of the covariance 12,800), the lower bound between two disjoint sets of 4096
    real rows scattered with standard deviation 13.6 at ``repeats=2`` and 5.1 at 20 (eight
    disjoint pairs; FD at N itself: 41.7 +- 7.3). The lower bound's own FD-infinity, whose true
    value is 0, shows the noise left.
    """
    n_max = min(len(a), len(b))
    ns = tuple(int(n) for n in (ns or (n_max // 4, n_max // 2, n_max)))
    if min(ns) < 2 or max(ns) > n_max or len(set(ns)) < 2:
        raise ValueError(
            f"ns={ns}: need at least two different sizes between 2 and {n_max} (the rows available on the smaller side)."
        )
    g = torch.Generator().manual_seed(seed)
    means = []
    for n in ns:
        reps = 1 if n == n_max else repeats
        vals = [
            frechet_distance(a[torch.randperm(len(a), generator=g)[:n]], b[torch.randperm(len(b), generator=g)[:n]])
            for _ in range(reps)
        ]
        means.append(float(np.mean(vals)))
    slope, intercept = np.polyfit(1.0 / np.array(ns, float), np.array(means), 1)
    return FDInfinity(float(intercept), ns, tuple(means))


class FDInfinityCI(NamedTuple):
    """FD-infinity with a bootstrap confidence interval (see :func:`frechet_distance_infinity_ci`)."""

    fd_inf: float
    """The estimate: :func:`frechet_distance_infinity` on all rows, with the same seed."""
    ci_low: float
    """Lower end of the interval."""
    ci_high: float
    """Upper end of the interval."""
    std_error: float
    """Bootstrap standard error (standard deviation of the replicates)."""
    replicates: tuple[float, ...]
    """FD-infinity of each bootstrap resample."""
    estimate: FDInfinity
    """The measurements the estimate rests on."""


def frechet_distance_infinity_ci(
    a: Float[Tensor, "n d"],
    b: Float[Tensor, "m d"],
    ns: Sequence[int] | None = None,
    *,
    repeats: int = 16,
    n_boot: int = 50,
    level: float = 0.95,
    seed: int = 0,
    progress: bool = False,
) -> FDInfinityCI:
    """FD-infinity and a bootstrap CI: ``estimate +- t * SE``, with ``SE`` the standard deviation
    of FD-infinity over ``n_boot`` resamples (rows of ``a`` and of ``b`` drawn with replacement, the
    same sizes ``ns`` and ``repeats``) and ``t`` Student's quantile with ``n_boot - 1`` degrees of
    freedom, since ``SE`` is itself estimated from a few resamples (``t`` = 2.26 at 10, 2.09 at
    20, toward 1.96 for many).

    Why the standard error and not the percentiles of the replicates: a resample estimates the
    FD of the *sample* (the plug-in FD at all rows, which carries the ``k / N`` bias), not the
    estimate's FD-infinity, so its replicates sit about ``fd_at_n - fd_inf`` above the estimate,
    while their spread is the estimate's sampling spread. An interval from the spread, centred on
    the estimate, needs no correction for that shift, and a few dozen resamples fix it (each costs
    one FD-infinity: ``2 * repeats + 1`` Frechet distances).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> a, b = torch.randn(800, 4, generator=g), torch.randn(800, 4, generator=g) + 1
        >>> r = frechet_distance_infinity_ci(a, b, n_boot=20)   # true FD: 4
        >>> r.ci_low < r.fd_inf < r.ci_high, 3.0 < r.ci_low and r.ci_high < 5.0
        (True, True)
    """
    from scipy import stats
    from tqdm.auto import tqdm

    if n_boot < 2:
        raise ValueError(f"n_boot={n_boot}: a bootstrap standard error needs at least 2 resamples.")
    if not 0 < level < 1:
        raise ValueError(f"level={level} must lie between 0 and 1 (e.g. 0.95).")
    estimate = frechet_distance_infinity(a, b, ns, repeats=repeats, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    reps = []
    for i in tqdm(range(n_boot), disable=not progress, desc="FD-infinity bootstrap", unit="resample"):
        ia = torch.randint(0, len(a), (len(a),), generator=g)
        ib = torch.randint(0, len(b), (len(b),), generator=g)
        reps.append(frechet_distance_infinity(a[ia], b[ib], estimate.ns, repeats=repeats, seed=seed + 2 + i).fd_inf)
    se = float(np.std(reps, ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n_boot - 1)) * se
    return FDInfinityCI(estimate.fd_inf, estimate.fd_inf - half, estimate.fd_inf + half, se, tuple(reps), estimate)


def gaussian_like(x: Float[Tensor, "n d"], n: int, seed: int = 0) -> Float[Tensor, "n d"]:
    """``n`` draws from the Gaussian with ``x``'s mean and covariance (the moment-matched baseline)."""
    x64 = x.double()
    cov = torch.cov(x64.T) + 1e-6 * torch.eye(x.shape[1], dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    z = torch.randn(n, x.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (x64.mean(0) + z @ chol.T).float()


def plot_norm_distribution(
    groups: dict[str, Float[Tensor, "n d"]],
    path: str | Path,
    *,
    bins: int = 60,
    title: str = "Row norms: real activations vs generated",
) -> Path:
    """Histograms of the row norms ``|x|`` of each group (e.g. ``{"held-out": real, "prior": samples,
    "Gaussian": gaussian_like(real, n)}``) on a log-scale norm axis, one step line per group with its
    median marked, saved as an image (the heavy tail that a Frechet distance on normalised rows does not
    show, and the first thing to look at when a prior's samples sit at the wrong scale).

    >>> import tempfile, os
    >>> x = torch.randn(500, 8)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = plot_norm_distribution({"real": x, "scaled": 3 * x}, os.path.join(d, "norms.png"))
    ...     p.stat().st_size > 0
    True
    """
    if not groups:
        raise ValueError("plot_norm_distribution needs at least one group of rows.")
    norms = {
        name: x.detach().reshape(-1, x.shape[-1]).to("cpu", torch.float64).norm(dim=-1).numpy()
        for name, x in groups.items()
    }
    positive = np.concatenate([v[v > 0] for v in norms.values()])
    if positive.size == 0:
        raise ValueError("plot_norm_distribution: every row is zero; there is no norm to show on a log scale.")
    edges = np.geomspace(positive.min(), positive.max() * 1.0001, bins + 1)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for (name, values), color in zip(norms.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4):
        median = float(np.median(values))
        ax.hist(
            values,
            bins=edges,
            histtype="step",
            lw=1.4,
            color=color,
            weights=np.full(len(values), 1.0 / len(values)),  # bins are equal in log norm: a density in log |x|
            label=f"{name} (median {median:.3g}, n={len(values)})",
        )
        ax.axvline(median, color=color, ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("row norm |x| (log scale)")
    ax.set_ylabel("share of rows per bin (log scale)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path)
