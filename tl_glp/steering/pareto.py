"""One number for a steering sweep: the fluency gain of prior-guided over plain steering at matched
concept strength, read off the two Pareto fronts, with a bootstrap CI over prompts.

For each method (``"plain"``, ``"prior"``) the sweep's rows are averaged per strength ``r``
into one point (mean concept, mean fluency). The method's front is the upper envelope of its
points (the points no other point of the method beats in both concept and fluency), joined by
straight lines and extended flat towards lower concept (a lower concept at the same fluency is
attainable: the front's weakest point has it). The two fronts are compared over the concept range
both methods cover: from the larger of the two methods' lowest concept to the smaller of their
highest. The gain is the mean vertical gap (prior minus plain, in fluency units, positive = prior
more fluent) on an even grid of concept values over that range. The CI resamples prompts (the
sweep's ``prompt`` column) with replacement, the same prompts for both methods, and recomputes
everything.

A concept score can be NaN (a continuation with no scorable word): such rows are left out of the
means and counted in ``n_nan_concept``; a NaN never reaches the result silently. When the fronts do
not overlap in concept the gain cannot be read off: ``gain`` is then NaN and ``reason`` says why.

Example:
    >>> import pandas as pd
    >>> rows = [{"prompt": f"p{i}", "method": m, "r": r, "concept": r + 0.01 * i, "grammatical": (0.9 if m == "prior" else 0.6) - 0.1 * r}
    ...         for i in range(8) for m in ("plain", "prior") for r in (0.5, 1.0, 2.0)]
    >>> g = matched_concept_gain(pd.DataFrame(rows), fluency="grammatical", n_boot=200)
    >>> round(g.gain, 3), g.ci_low > 0, g.n_nan_concept
    (0.3, True, 0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tl_glp.steering.scorers.base import higher_is_better as _higher_is_better

GRID_POINTS = 64


@dataclass
class MatchedGain:
    """Fluency gain of prior-guided over plain steering at matched concept strength."""

    gain: float
    """Mean (prior - plain) fluency over the shared concept range, higher-is-better units
    (for a lower-is-better fluency such as ``nll`` the sign is flipped: positive = prior more fluent)."""
    ci_low: float
    """2.5% bootstrap percentile (NaN if fewer than 10 resamples had overlapping fronts)."""
    ci_high: float
    """97.5% bootstrap percentile."""
    concept_low: float
    """Lower end of the concept range both fronts cover."""
    concept_high: float
    """Upper end of that range."""
    n_prompts: int
    """Prompts resampled by the bootstrap."""
    n_plain: int
    """Plain-steering generations with a concept score (what the plain front rests on)."""
    n_prior: int
    """Prior-guided generations with a concept score."""
    n_nan_concept: int
    """Generations left out because their concept score was NaN (both methods)."""
    n_boot_valid: int
    """Bootstrap resamples whose fronts overlapped (the CI rests on these)."""
    fluency: str
    """The fluency column used."""
    reason: str = ""
    """Why ``gain`` is NaN, if it is."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pareto_front(concept: np.ndarray, fluency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The upper envelope of points (both coordinates higher-is-better), sorted by concept.

    >>> c, f = pareto_front(np.array([0.0, 1.0, 2.0, 1.5]), np.array([1.0, 0.8, 0.2, 0.1]))
    >>> c.tolist(), f.tolist()
    ([0.0, 1.0, 2.0], [1.0, 0.8, 0.2])
    """
    order = np.lexsort((-fluency, -concept))  # by concept descending, ties: most fluent first
    keep, best = [], -np.inf
    for i in order:
        if fluency[i] > best:
            keep.append(i)
            best = fluency[i]
    keep = np.array(keep[::-1], dtype=int)
    return concept[keep], fluency[keep]


def _front_gap(points: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, float]:
    """(gain, concept_low, concept_high) from per-method strength means; NaN gain if no overlap."""
    lo = max(points["plain"][0].min(), points["prior"][0].min())
    hi = min(points["plain"][0].max(), points["prior"][0].max())
    if not lo <= hi:
        return float("nan"), float(lo), float(hi)
    (cp, fp), (cq, fq) = pareto_front(*points["plain"]), pareto_front(*points["prior"])
    grid = np.linspace(lo, hi, GRID_POINTS) if hi > lo else np.array([lo])
    gap = np.interp(grid, cq, fq) - np.interp(grid, cp, fp)  # np.interp holds the end values flat outside a front
    return float(gap.mean()), float(lo), float(hi)


def matched_concept_gain(
    df: Any,
    concept: str = "concept",
    fluency: str = "nll",
    *,
    higher_is_better: bool | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    method: str = "prior",
    baseline: str = "plain",
    positions: str | None = None,
) -> MatchedGain:
    """Fluency gain of ``method`` (default ``"prior"``) over ``baseline`` (default ``"plain"``) rows of a
    :func:`~tl_glp.steering.steering_sweep` frame at matched ``concept``, with a 95% bootstrap CI over
    prompts (see the module docstring).

    ``fluency``: a column where higher is better (e.g. ``"grammatical"``, ``"distinct_2"``) or lower is
    better (``"nll"``, ``"nll_gemma"``, ``"repeated_2"``); ``higher_is_better`` defaults to
    :func:`tl_glp.steering.scorers.higher_is_better` of the column's name (False for names that start
    with ``nll`` or ``repeated``, True otherwise). Compare on several fluency columns of the same sweep
    (e.g. an NLL and a repetition measure) so that degenerate text cannot win. Rows of
    other methods (``"none"``) are ignored. A sweep over several positions (a ``positions``
    column with more than one value) needs ``positions=`` (compare both methods at those positions).
    """
    for col in ("prompt", "method", "r", concept, fluency):
        if col not in df.columns:
            raise ValueError(f"matched_concept_gain: the sweep has no {col!r} column (columns: {list(df.columns)}).")
    if method == baseline:
        raise ValueError(f"matched_concept_gain: method and baseline are both {method!r}.")
    if "positions" in df.columns:
        steered = df[df.method.isin([method, baseline])]
        if positions is not None:
            df = df[df["positions"] == positions]
        elif steered["positions"].nunique() > 1:
            raise ValueError(
                f"matched_concept_gain: the sweep edited several positions {sorted(steered['positions'].unique())}; "
                "pass positions=... (or use matched_concept_gains, which compares per positions)."
            )
    elif positions is not None:
        raise ValueError("matched_concept_gain: positions= given but the sweep has no 'positions' column.")
    df = df[df.method.isin([method, baseline])].assign(
        method=lambda d: d.method.map({method: "prior", baseline: "plain"})
    )
    sign = 1.0 if (higher_is_better if higher_is_better is not None else _higher_is_better(fluency)) else -1.0
    rows = df[df.method.isin(["plain", "prior"])]
    nan_concept = rows[concept].isna().to_numpy()
    if rows[fluency].isna().any():
        raise ValueError(
            f"matched_concept_gain: {int(rows[fluency].isna().sum())} rows have a NaN {fluency!r}; fluency scores must be defined for every generation."
        )
    rows = rows[~nan_concept]
    counts = rows.method.value_counts()
    prompts = sorted(df.prompt.unique())
    base = dict(
        n_prompts=len(prompts),
        n_plain=int(counts.get("plain", 0)),
        n_prior=int(counts.get("prior", 0)),
        n_nan_concept=int(nan_concept.sum()),
        fluency=fluency,
    )
    if base["n_plain"] == 0 or base["n_prior"] == 0:
        return MatchedGain(
            float("nan"),
            float("nan"),
            float("nan"),
            float("nan"),
            float("nan"),
            n_boot_valid=0,
            reason="one method has no generation with a concept score",
            **base,
        )
    # per prompt, method and strength: sums and counts, so a resample of prompts is a weighted sum
    table = rows.assign(_f=sign * rows[fluency].astype(float), _c=rows[concept].astype(float))
    keys = sorted({(m, float(r)) for m, r in zip(table.method, table.r)})
    key_index = {k: i for i, k in enumerate(keys)}
    prompt_index = {p: i for i, p in enumerate(prompts)}
    sums = np.zeros((len(prompts), len(keys), 3))  # concept sum, fluency sum, count
    for p, m, r, c, f in zip(table.prompt, table.method, table.r, table._c, table._f):
        sums[prompt_index[p], key_index[(m, float(r))]] += (c, f, 1.0)

    def gain_of(weights: np.ndarray) -> tuple[float, float, float]:
        total = np.tensordot(weights, sums, axes=1)  # [keys, 3]
        points: dict[str, tuple[list[float], list[float]]] = {"plain": ([], []), "prior": ([], [])}
        for (m, _), (c, f, n) in zip(keys, total):
            if n > 0:
                points[m][0].append(c / n)
                points[m][1].append(f / n)
        if not points["plain"][0] or not points["prior"][0]:
            return float("nan"), float("nan"), float("nan")
        return _front_gap({m: (np.array(c), np.array(f)) for m, (c, f) in points.items()})

    gain, lo, hi = gain_of(np.ones(len(prompts)))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        weights = np.bincount(rng.integers(0, len(prompts), len(prompts)), minlength=len(prompts)).astype(float)
        value = gain_of(weights)[0]
        if np.isfinite(value):
            boots.append(value)
    ci = (
        (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5)))
        if len(boots) >= 10
        else (float("nan"), float("nan"))
    )
    reason = (
        ""
        if np.isfinite(gain)
        else f"the two fronts do not overlap in {concept} (plain and prior cover disjoint ranges)"
    )
    return MatchedGain(gain, ci[0], ci[1], lo, hi, n_boot_valid=len(boots), reason=reason, **base)


def matched_concept_gains(
    df: Any,
    concept: str = "concept",
    fluency: str = "nll",
    *,
    baseline: str = "plain",
    higher_is_better: bool | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> Any:
    """:func:`matched_concept_gain` of every method of a sweep against ``baseline``: a DataFrame with one
    row per method (``method``, ``gain``, ``ci_low``, ``ci_high``, ``concept_low``, ``concept_high``,
    ``n_prompts``, ``reason``), in the sweep's order of methods. A sweep over several positions gets
    one row per method and positions (column ``positions``), each against ``baseline`` at the same
    positions.

    Example:
        >>> import pandas as pd
        >>> rows = [{"prompt": f"p{i}", "method": m, "r": r, "concept": r, "nll": 2.0 + r * (0.5 if m == "a" else 1.0)}
        ...         for i in range(6) for m in ("plain", "a") for r in (0.5, 1.0)]
        >>> t = matched_concept_gains(pd.DataFrame(rows), n_boot=50)
        >>> t.method.tolist(), round(float(t.gain[0]), 3)
        (['a'], 0.375)
    """
    import pandas as pd

    methods = [m for m in dict.fromkeys(df.method) if m not in (baseline, "none")]
    by_positions = "positions" in df.columns and df.loc[df.method != "none", "positions"].nunique() > 1
    groups = [p for p in dict.fromkeys(df.loc[df.method != "none", "positions"])] if by_positions else [None]
    rows = []
    for pos in groups:
        for m in methods:
            if pos is not None and not ((df.method == m) & (df["positions"] == pos)).any():
                continue
            g = matched_concept_gain(
                df,
                concept,
                fluency,
                higher_is_better=higher_is_better,
                n_boot=n_boot,
                seed=seed,
                method=m,
                baseline=baseline,
                positions=pos,
            )
            rows.append(
                {
                    "method": m,
                    **({"positions": pos} if by_positions else {}),
                    "gain": g.gain,
                    "ci_low": g.ci_low,
                    "ci_high": g.ci_high,
                    "concept_low": g.concept_low,
                    "concept_high": g.concept_high,
                    "n_prompts": g.n_prompts,
                    "reason": g.reason,
                }
            )
    columns = [
        "method",
        *(["positions"] if by_positions else []),
        "gain",
        "ci_low",
        "ci_high",
        "concept_low",
        "concept_high",
        "n_prompts",
        "reason",
    ]
    return pd.DataFrame(rows, columns=columns)
