"""What the demo concludes: the headline comparisons with their CIs and verdicts read off a region of
practical equivalence (:func:`read_verdict`, :func:`conclusions`), the steering table and the printed summary."""

from __future__ import annotations

import math
from typing import Any

from tl_glp.studies.demo.settings import DemoResult
from tl_glp.studies.reporting import fit_text, terminal_width
from tl_glp.studies.reporting import text_table as _text_table


def steering_table(df: Any) -> Any:
    """Per method and strength: how many generations, how many of them have a concept score (a
    continuation without a sentiment word has none), and the means of the scores (concept over
    the scored ones only; NaN, printed "n/a", only where none was scored)."""
    metrics = [c for c in ("concept", "grammatical", "nll", "nll_judge", "distinct_2") if c in df.columns]
    groups = df.groupby(["method", "r"], sort=True)
    table = groups.size().rename("n_generations").to_frame()
    if "concept" in df.columns:
        table["n_concept_scored"] = groups["concept"].count()
    table = table.join(groups[metrics].mean())
    return table.reset_index()


FD_REFERENCES = ("prior", "lower_bound", "held_out_halves", "gaussian")
"""What the demo's FD-infinity compares with the held-out rows, in the report's column order."""


def fd_ci(numbers: dict, name: str, digits: int = 3) -> str:
    """``[low, high]`` of ``fd_<name>_ci`` (``n/a`` where a run recorded none).

    >>> fd_ci({"fd_prior_ci": [30.25, 36.5]}, "prior"), fd_ci({}, "prior")
    ('[30.250, 36.500]', 'n/a')
    """
    lo_hi = numbers.get(f"fd_{name}_ci")
    return f"[{lo_hi[0]:.{digits}f}, {lo_hi[1]:.{digits}f}]" if lo_hi else "n/a"


PRACTICAL_MARGINS = {
    "delta_lm_loss": 0.01,
    "grammatical": 0.05,
    "nll": 0.1,
    "nll_judge": 0.1,
    "distinct_2": 0.05,
    "probe_auc": 0.01,
}
"""The smallest difference each headline comparison treats as real, fixed before any run: delta LM
loss 0.01 nats per token (0.6% of the testbed's clean loss; the paper's GLP-vs-SAE gap is 0.15),
fluency 0.05 in share of grammatical continuations, 0.1 nats of NLL (the judge model's too) or 0.05 in
distinct-2, probe AUC 0.01 (the
region of practical equivalence Benavoli et al. 2017 use for classifier comparisons)."""


def read_verdict(lo: float, hi: float, margin: float, above: str, below: str) -> str:
    """The verdict a 95% CI ``[lo, hi]`` of a difference supports, with a region of practical
    equivalence ``(-margin, margin)``: a CI inside it says the two are equivalent (whatever side
    of 0 it lies on, so that a difference too small to matter does not flip with the seed); a CI
    above or below 0 otherwise says which is ahead; anything else holds no clear difference.

    >>> read_verdict(0.002, 0.006, 0.01, "A ahead", "B ahead")
    'equivalent (the CI lies within +-0.01)'
    >>> read_verdict(0.02, 0.2, 0.01, "A ahead", "B ahead")
    'A ahead'
    >>> read_verdict(-0.004, 0.17, 0.01, "A ahead", "B ahead")
    'no clear difference (the CI holds 0)'
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "not measurable"
    if -margin < lo and hi < margin:
        return f"equivalent (the CI lies within +-{margin:g})"
    return above if lo > 0 else below if hi < 0 else "no clear difference (the CI holds 0)"


def conclusions(result: DemoResult) -> Any:
    """The comparisons the demo headlines, each with its estimate, 95% CI, what it rests on and a
    verdict read off the CI and the :data:`PRACTICAL_MARGINS` (see :func:`read_verdict`)."""
    import pandas as pd

    n = result.numbers
    rows = []
    d, (lo, hi) = n["delta_lm_loss_prior_minus_sae"], n["delta_lm_loss_prior_minus_sae_ci"]
    rows.append(
        {
            "comparison": "delta LM loss: prior projection - SAE reconstruction",
            "estimate": d,
            "ci_low": lo,
            "ci_high": hi,
            "rests_on": f"{n['lm_eval_docs']} documents, {n['lm_eval_tokens']} tokens",
            "verdict": read_verdict(
                lo,
                hi,
                PRACTICAL_MARGINS["delta_lm_loss"],
                "the prior costs more LM loss than the SAE",
                "the prior costs less LM loss than the SAE",
            ),
        }
    )
    units = {
        "grammatical": "share grammatical",
        "nll": "NLL, sign flipped",
        "nll_judge": "judge model's NLL, sign flipped",
        "distinct_2": "distinct-2",
    }
    for fluency, unit in units.items():
        gain = n.get(f"steering_gain_{fluency}")
        if gain is None:
            continue
        verdict = (
            gain["reason"]
            if not math.isfinite(gain["gain"])
            else read_verdict(
                gain["ci_low"],
                gain["ci_high"],
                PRACTICAL_MARGINS[fluency],
                "prior-guided steering is more fluent at matched concept",
                "prior-guided steering is less fluent at matched concept",
            )
        )
        rows.append(
            {
                "comparison": f"steering: fluency gain of prior-guided over plain at matched concept ({unit})",
                "estimate": gain["gain"],
                "ci_low": gain["ci_low"],
                "ci_high": gain["ci_high"],
                "rests_on": f"{gain['n_prompts']} prompts; {gain['n_plain']} plain and {gain['n_prior']} prior-guided scored generations "
                f"({gain['n_nan_concept']} without a sentiment word left out); concept range {gain['concept_low']:.2f}..{gain['concept_high']:.2f}",
                "verdict": verdict,
            }
        )
    for row in result.tables["probing_paired"].itertuples():
        rows.append(
            {
                "comparison": f"1-D probing: meta-neurons - {row.other} (test AUC)",
                "estimate": row.mean_difference,
                "ci_low": row.ci_low,
                "ci_high": row.ci_high,
                "rests_on": f"{row.n_datasets} datasets",
                "verdict": read_verdict(
                    row.ci_low,
                    row.ci_high,
                    PRACTICAL_MARGINS["probe_auc"],
                    f"meta-neurons ahead of {row.other}",
                    f"meta-neurons behind {row.other}",
                ),
            }
        )
    return pd.DataFrame(rows)


def summary_text(result: DemoResult, width: int | None = None) -> str:
    """The printed summary: the headline numbers and tables, every line within ``width`` columns
    (default: the terminal's, 100 when output is not a terminal). Tables too wide for it are
    printed narrower (:func:`~tl_glp.studies.reporting.text_table`); ``report.md`` keeps them whole."""
    width = width or terminal_width()
    n = result.numbers
    lines = ["", "=== tl-glp demo summary ==="]
    if "testbed_lm_loss" in n:
        lines.append(
            f"testbed LM loss {n['testbed_lm_loss']:.3f} nats/token vs entropy floor (lower bound) {n['testbed_entropy_floor']:.3f}"
        )
    fd = [
        (label, f"{n[f'fd_{key}']:.3f}", fd_ci(n, key))
        for key, label in (
            ("prior", "prior"),
            ("lower_bound", "lower bound (real rows, other documents)"),
            ("held_out_halves", "held-out halves"),
            ("gaussian", "moment-matched Gaussian"),
        )
    ]
    lm = [
        (f"{name}", f"{n[f'delta_lm_loss_{key}']:+.4f}", "[{:+.4f}, {:+.4f}]".format(*n[f"delta_lm_loss_{key}_ci"]))
        for key, name in (("prior", "prior projection"), ("sae", "SAE reconstruction"))
    ]
    lines += [
        f"Frechet distance to held-out rows (FD-infinity [95% bootstrap CI], {n['eval_samples']} samples per side):",
        *_aligned(fd),
        f"Frechet distance at N, robust (median/MAD, norm cap): prior {n['fd_robust_prior']:.3f} | lower bound {n['fd_robust_lower_bound']:.3f} | "
        f"held-out halves {n['fd_robust_held_out_halves']:.3f} | Gaussian {n['fd_robust_gaussian']:.3f}",
        f"classifier two-sample AUC vs held-out (0.5 = indistinguishable): prior {n['c2st_auc_prior']:.3f} | Gaussian {n['c2st_auc_gaussian']:.3f} | held-out {n['c2st_auc_held_out']:.3f}",
        f"delta LM loss [95% bootstrap CI] (clean {n['lm_loss_clean']:.3f}; SAE FVU {n['sae_fraction_variance_unexplained']:.3f}):",
        *_aligned(lm),
        "",
    ]
    lines = [fit_text(line, width, indent="    " if line.startswith("  ") else "  ") for line in lines]
    tables = (
        (
            "steering (per method and strength r; concept averaged over the generations that have a sentiment word):",
            "steering",
        ),
        ("probing (mean test AUC, 95% bootstrap CI over datasets):", "probing_summary"),
        (
            "conclusions (95% CIs; 'equivalent' where the CI lies within the practical margin, a direction only where it excludes 0):",
            "conclusions",
        ),
    )
    narrowed = False
    for title, key in tables:
        wide = _text_table(result.tables[key])
        table = _text_table(result.tables[key], width=width)
        narrowed |= table != wide
        lines += [fit_text(title, width), table, ""]
    report = f"report: {result.out_dir / 'report.md'}  ({n['seconds']:.0f} s)"
    if narrowed:
        report += f"; tables narrowed to {width} columns here, whole in report.md"
    lines.append(fit_text(report, width))
    return "\n".join(lines)


def _aligned(rows: list[tuple[str, str, str]]) -> list[str]:
    """``  label  value [ci]`` lines, labels left-aligned and values right-aligned in their columns."""
    label_w, value_w = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    return [f"  {label:<{label_w}}  {value:>{value_w}} {ci}" for label, value, ci in rows]
