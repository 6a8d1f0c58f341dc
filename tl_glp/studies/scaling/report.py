"""The scaling study's outputs: ``scaling.csv``, ``report.md`` and figures (loss vs compute with the
fit and the frontier; each downstream figure vs loss), with a plain-language verdict per finding.

Nothing printed is NaN: a figure that could not be computed is written ``n/a`` with the reason.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from tl_glp.core import _io
from tl_glp.core._plot import pyplot, save_figure
from tl_glp.studies.scaling.fit import PowerLawFit, compute_frontier, fit_power_law, spearman_ci

DOWNSTREAM = {
    "fd_prior": ("Frechet distance (FD-inf) to held-out", "lower"),
    "c2st_prior": ("classifier two-sample AUC", "lower"),
    "delta_lm_loss_prior": ("delta LM loss of the projection", "lower"),
    "probe_auc_meta": ("mean 1-D probe AUC of meta-neurons", "higher"),
    "steer_gain": ("steering fluency gain at matched concept", "higher"),
}
"""Per-checkpoint figures reported against loss: (label, which direction is better)."""


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: ``n/a`` for None/NaN, scientific for very large or small values."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    v = float(value)
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}f}"


def _ci(low: Any, high: Any) -> str:
    return f"[{fmt(low)}, {fmt(high)}]"


def write_report(
    out: Path,
    table: Any,
    refs: dict[str, Any],
    cfg: Any,
    timing: dict[str, Any],
    *,
    model_name: str,
    hook_name: str,
    steering: Any,
) -> tuple[PowerLawFit | None, dict[str, Any]]:
    """Write ``scaling.csv``, ``loss_vs_compute.png``, ``downstream_vs_loss.png`` and ``report.md``."""
    table["frontier"] = compute_frontier(table["compute"].to_numpy(), table["val_loss"].to_numpy())
    table.sort_values(["depth", "samples"], inplace=True, kind="stable")
    table.to_csv(out / "scaling.csv", index=False)
    front = table[table.frontier]
    fit, fit_error = None, ""
    try:
        fit = fit_power_law(front.compute.to_numpy(), front.val_loss.to_numpy(), n_boot=cfg.n_boot, seed=cfg.seed)
    except ValueError as err:
        fit_error = str(err)
    correlations = {
        col: spearman_ci(table[col].to_numpy(float), table.val_loss.to_numpy(float), n_boot=cfg.n_boot, seed=cfg.seed)
        for col in DOWNSTREAM
        if col in table
    }
    _plot_loss(out / "loss_vs_compute.png", table, fit)
    _plot_downstream(out / "downstream_vs_loss.png", table, refs)
    text = _markdown(table, refs, cfg, timing, fit, fit_error, correlations, model_name, hook_name, steering)
    with _io.atomic_path(out / "report.md") as tmp:
        tmp.write_text(text)
    summary = {
        "fit": fit.to_dict() if fit else None,
        "fit_error": fit_error,
        "correlations": {k: v.to_dict() for k, v in correlations.items()},
    }
    _io.write_json(out / "summary.json", summary)
    return fit, correlations


def _plot_loss(path: Path, table: Any, fit: PowerLawFit | None) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for depth, part in table.groupby("depth"):
        ax.plot(
            part.compute, part.val_loss, "o-", ms=4, lw=1, alpha=0.8, label=f"{depth} block{'s' if depth > 1 else ''}"
        )
    front = table[table.frontier].sort_values("compute")
    ax.plot(front.compute, front.val_loss, "k*", ms=10, label="compute-efficient frontier", zorder=5)
    if fit is not None:
        grid = np.logspace(np.log10(table.compute.min()), np.log10(table.compute.max()), 100)
        ax.plot(grid, fit.predict(grid), "k--", lw=1.2, label=f"fit E={fit.E:.3f}, alpha={fit.alpha:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute C = 6 * params * samples (FLOP)")
    ax.set_ylabel("validation flow-matching loss")
    ax.set_title("Prior loss vs compute")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _plot_downstream(path: Path, table: Any, refs: dict[str, Any]) -> Path:
    plt = pyplot()
    cols = [c for c in DOWNSTREAM if c in table]
    fig, axes = plt.subplots(1, len(cols), figsize=(3.6 * len(cols), 3.6), squeeze=False)
    references = {
        "fd_prior": [
            ("lower bound", refs.get("fd_lower_bound")),
            ("held-out halves", refs.get("fd_held_out_halves")),
            ("Gaussian", refs.get("fd_gaussian")),
        ],
        "c2st_prior": [("held-out", refs.get("c2st_held_out")), ("Gaussian", refs.get("c2st_gaussian"))],
        "delta_lm_loss_prior": [
            (f"SAE k={v['k']}", v["delta_lm_loss"]) for k, v in sorted(refs.items()) if k.startswith("sae_k")
        ],
        "probe_auc_meta": [("raw neurons", refs.get("probe_auc_raw"))],
        "steer_gain": [("no gain", 0.0)],
    }
    for ax, col in zip(axes[0], cols):
        for depth, part in table.groupby("depth"):
            if col == "steer_gain":
                ok = part[np.isfinite(part.steer_gain)]
                err = np.stack([ok.steer_gain - ok.steer_ci_low, ok.steer_ci_high - ok.steer_gain]).clip(min=0)
                ax.errorbar(
                    ok.val_loss,
                    ok.steer_gain,
                    yerr=np.nan_to_num(err),
                    fmt="o",
                    ms=4,
                    capsize=2,
                    label=f"depth {depth}",
                )
            else:
                ax.plot(part.val_loss, part[col], "o", ms=4, label=f"depth {depth}")
        for i, (label, value) in enumerate(references.get(col, [])):
            if value is not None and math.isfinite(value):
                ax.axhline(value, color=f"C{7 + i % 3}", ls=":", lw=1, label=label)
        if np.isfinite(table[col].to_numpy(float)).any():
            ax.set_xscale("log")
        else:
            ax.text(0.5, 0.5, "n/a at every checkpoint", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("validation loss")
        ax.set_title(DOWNSTREAM[col][0], fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, path)


def _verdicts(
    table: Any, refs: dict[str, Any], fit: PowerLawFit | None, fit_error: str, corr: dict[str, Any], cfg: Any
) -> list[str]:
    lo, hi = table.val_loss.min(), table.val_loss.max()
    span = f"validation loss spans {fmt(lo)} to {fmt(hi)} ({fmt(hi / lo, 2)}x) over {len(table)} checkpoints, compute {fmt(table.compute.min())} to {fmt(table.compute.max())} FLOP"
    out = []
    n_front = int(table.frontier.sum())
    if fit is None:
        out.append(f"**(1) Loss vs compute: not assessed.** {fit_error} ({span}.)")
    else:
        smooth = fit.rmse_log < 0.05 and fit.alpha_ci[0] > 0.01
        verdict = "appears" if smooth else "does not clearly appear"
        out.append(
            f"**(1) Loss falls smoothly with compute: {verdict}.** On the {n_front} frontier points, L(C) = E + A C^-alpha with "
            f"alpha = {fmt(fit.alpha)} {_ci(*fit.alpha_ci)}, E = {fmt(fit.E)} {_ci(*fit.E_ci)}; the log residuals' RMS is {fmt(fit.rmse_log)} "
            f"(smooth = below 0.05 with alpha's CI above 0.01). {span}. The learning rate is constant after warmup, so checkpoints "
            "are unannealed models: an annealed run of the same length would reach a somewhat lower loss."
        )

    def rho_text(col: str) -> str:
        r = corr.get(col)
        if r is None or r.n < 3:
            return "n/a (fewer than 3 checkpoints with a finite value)"
        if not math.isfinite(r.rho):
            values = table[col][np.isfinite(table[col].to_numpy(float))]
            return f"n/a (the figure is {fmt(float(values.iloc[0]))} at all {r.n} checkpoints: no ranking to correlate)"
        return f"rho = {fmt(r.rho)} {_ci(r.ci_low, r.ci_high)} over {r.n} checkpoints"

    def trend(col: str, better: str) -> str:
        r = corr.get(col)
        if r is not None and r.n >= 3 and not math.isfinite(r.rho):
            return "does not appear (the figure does not change across checkpoints)"
        if r is None or not math.isfinite(r.ci_low):
            return "cannot be assessed"
        # improving as the loss falls = moving with the loss (rho > 0) when lower is better, against it (rho < 0) when higher is better
        low, high = (r.ci_low, r.ci_high) if better == "lower" else (-r.ci_high, -r.ci_low)
        if low > 0:
            return "appears"
        if high < 0:
            return "the opposite appears"
        return "does not appear (the CI includes no correlation)"

    ok = table[np.isfinite(table.steer_gain)] if "steer_gain" in table else table.iloc[:0]
    n_na = len(table) - len(ok)
    strengths = ", ".join(fmt(r, 2) for r in cfg.strengths)
    gen_note = (
        f"each gain rests on {int(table.steer_n_plain.median())} plain and {int(table.steer_n_prior.median())} prior-guided scored generations "
        f"(median; {int(table.steer_n_nan_concept.sum())} unscorable generations left out in all), {int(table.steer_n_prompts.iloc[0])} prompts resampled"
    )
    best_gain = (
        f"gains range {fmt(ok.steer_gain.min())} to {fmt(ok.steer_gain.max())}"
        if len(ok)
        else "no checkpoint's fronts overlapped"
    )
    out.append(
        f"**(2) Prior-guided steering gets more fluent at matched concept as the loss falls: {trend('steer_gain', 'higher')}.** "
        f"Spearman of the gain vs loss: {rho_text('steer_gain')}; {best_gain}; strengths r = {strengths} times the activation norm; {gen_note}; "
        f"{n_na} checkpoint(s) had non-overlapping fronts (n/a). Mean relative move of a projection (t=0.5): "
        f"{fmt(table.projection_distance.min())} to {fmt(table.projection_distance.max())}."
    )
    out.append(
        f"**(3) Meta-neurons' 1-D probe AUC rises as the loss falls: {trend('probe_auc_meta', 'higher')}.** "
        f"Spearman vs loss: {rho_text('probe_auc_meta')}; mean AUC {fmt(table.probe_auc_meta.min())} to {fmt(table.probe_auc_meta.max())} "
        f"over {int(table.probe_datasets.iloc[0])} datasets (raw neurons: {fmt(refs.get('probe_auc_raw'))})."
    )
    if len(ok) >= 3 and np.ptp(ok.steer_gain.to_numpy(float)) == 0:
        out.append(
            f"**Is steering limited by the prior's quality or by the method?** Not decidable here: the gain is {fmt(float(ok.steer_gain.iloc[0]))} "
            "at every checkpoint, i.e. over the concept range both methods reach the fluency measure does not separate them "
            f"(it is the same for both there, e.g. saturated). The methods differ, if at all, in how far their concept reaches "
            f"(plain steering's best mean concept {fmt(refs.get('steer_plain_concept_max'))}, prior-guided up to "
            f"{fmt(float(np.nanmax(table.steer_prior_concept_max.to_numpy(float))))}); a finer fluency measure or other strengths are needed."
        )
    elif len(ok) >= 3:
        r = corr.get("steer_gain")
        limited = r is not None and math.isfinite(r.ci_low) and r.ci_high < 0
        out.append(
            "**Is steering limited by the prior's quality or by the method?** "
            + (
                "By the prior's quality, in the range studied: the gain grows as the loss falls (its rank correlation with loss is negative, CI excluding 0)."
                if limited
                else "Not by the prior's loss in the range studied: the gain does not improve measurably as the loss falls, so over this range the method "
                "(or the concept/fluency trade-off of this task) sets the gain, not the prior's quality. A wider loss range could still show a trend."
            )
        )
    return out


def _markdown(
    table: Any,
    refs: dict[str, Any],
    cfg: Any,
    timing: dict[str, Any],
    fit: PowerLawFit | None,
    fit_error: str,
    corr: dict[str, Any],
    model_name: str,
    hook_name: str,
    steering: Any,
) -> str:
    saes = sorted((v for k, v in refs.items() if k.startswith("sae_k")), key=lambda v: v["k"])
    parts = [
        "# Scaling study",
        "",
        f"Model `{model_name}`, hook `{hook_name}`; {refs['train_rows']} training activation rows, {refs['held_out_rows']} held out "
        f"(drawn at random from the last quarter of the documents, never trained on, and split into two halves by a random permutation, not by document). Depths {list(cfg.depths)}; one run per depth to "
        f"{cfg.max_samples} samples (batch {cfg.batch_size}, lr {cfg.lr} constant after {cfg.warmup_steps} warmup steps), checkpoints at "
        f"{len(cfg.checkpoint_steps())} geometrically spaced sample counts (ratio {cfg.checkpoint_ratio}). Compute C = 6 x denoiser parameters x samples.",
        "",
        "## Findings",
        "",
    ]
    parts += [v + "\n" for v in _verdicts(table, refs, fit, fit_error, corr, cfg)]
    parts += ["## 1. Loss vs compute", "", "![loss vs compute](loss_vs_compute.png)", ""]
    if fit is not None:
        parts += [
            "| parameter | estimate | 95% CI (residual bootstrap) |",
            "|---|---|---|",
            f"| E (irreducible loss) | {fmt(fit.E)} | {_ci(*fit.E_ci)} |",
            f"| A | {fmt(fit.A)} | {_ci(*fit.A_ci)} |",
            f"| alpha | {fmt(fit.alpha)} | {_ci(*fit.alpha_ci)} |",
            "",
            f"Fitted on the {fit.n_points} compute-efficient frontier points (lowest loss so far in compute order), least squares in log L.",
            "",
        ]
    else:
        parts += [f"No fit: {fit_error}", ""]
    parts += [
        "## 2. Every checkpoint",
        "",
        f"FD: Frechet distance extrapolated to infinitely many samples (FD-inf, from {cfg.fd_samples // 4}, {cfg.fd_samples // 2} and {cfg.fd_samples} per side); "
        f"references, all against the same held-out rows: lower bound (real rows of other documents: what a prior that had learned the data exactly "
        f"would score) **{fmt(refs['fd_lower_bound'])}**, held-out halves (a document's rows can fall in both, which pulls the distance down) "
        f"**{fmt(refs.get('fd_held_out_halves'))}**, moment-matched Gaussian **{fmt(refs['fd_gaussian'])}** "
        f"(at {cfg.fd_samples} per side, before extrapolation: lower bound {fmt(refs.get('fd_lower_bound_at_n'))}, held-out halves "
        f"{fmt(refs.get('fd_held_out_halves_at_n'))}, Gaussian {fmt(refs.get('fd_gaussian_at_n'))}, "
        "prior in `scaling.csv` column `fd_prior_at_n`; an extrapolated value can fall slightly below 0, by noise in the fit). "
        f"c2st: classifier two-sample AUC ({cfg.c2st_samples} per side; held-out vs held-out **{fmt(refs['c2st_held_out'])}**, Gaussian **{fmt(refs['c2st_gaussian'])}**). "
        f"Delta LM loss of the projection (every non-BOS position, t=0.5; clean loss {fmt(refs['lm_loss_clean'])}) vs SAE-Lens TopK SAEs on the same activations: "
        + "; ".join(
            f"k={s['k']}/{s['d_sae']} ({fmt(100 * s['k'] / s['d_sae'], 1)}% active): **{fmt(s['delta_lm_loss'], 4)}** (FVU {fmt(s['fvu'])})"
            for s in saes
        )
        + f". Probe: mean test AUC of the best single meta-neuron (raw neurons: **{fmt(refs['probe_auc_raw'])}**). "
        f"Steering ({steering.name}): fluency (`{steering.fluency}`) gain of prior-guided over plain steering at matched concept, mean gap "
        "between the two Pareto fronts over their shared concept range, 95% bootstrap CI over prompts; `n` = scored plain / prior-guided generations.",
        "",
        "| depth | samples | compute | val loss | FD prior | c2st | delta LM | probe AUC | steering gain [95% CI] | n | proj. move |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        star = " *" if r.frontier else ""
        gain = (
            f"{fmt(r.steer_gain)} {_ci(r.steer_ci_low, r.steer_ci_high)}"
            if math.isfinite(r.steer_gain)
            else f"n/a ({r.steer_reason})"
        )
        parts.append(
            f"| {r.depth} | {r.samples}{star} | {fmt(r.compute)} | {fmt(r.val_loss, 4)} | {fmt(r.fd_prior)} | {fmt(r.c2st_prior)} | "
            f"{fmt(r.delta_lm_loss_prior, 4)} | {fmt(r.probe_auc_meta)} | {gain} | {int(r.steer_n_plain)}/{int(r.steer_n_prior)} | {fmt(r.projection_distance)} |"
        )
    parts += [
        "",
        "`*`: on the compute-efficient frontier.",
        "",
        "## 3. Downstream figures vs loss",
        "",
        "![downstream vs loss](downstream_vs_loss.png)",
        "",
        "| figure | better | Spearman rho vs loss | 95% CI (bootstrap) | checkpoints |",
        "|---|---|---|---|---|",
    ]
    for col, (label, better) in DOWNSTREAM.items():
        r = corr.get(col)
        if r is not None:
            parts.append(f"| {label} | {better} | {fmt(r.rho)} | {_ci(r.ci_low, r.ci_high)} | {r.n} |")
    parts += [
        "",
        "A figure that improves as the loss falls has a positive rho when lower is better and a negative rho when higher is better.",
        "",
        "## 4. Where the time went",
        "",
        timing_text(timing, markdown=True),
        "",
    ]
    return "\n".join(parts)


def timing_text(timing: dict[str, Any], markdown: bool = False) -> str:
    """The per-phase wall times and the share spent outside training steps."""
    seconds = timing["seconds"]
    wall = timing["wall_seconds"] or 1.0
    lines = ["| phase | seconds | share |", "|---|---|---|"] if markdown else ["[scaling] wall time by phase:"]
    for phase, value in sorted(seconds.items(), key=lambda kv: -kv[1]):
        lines.append(
            f"| {phase} | {value:.1f} | {100 * value / wall:.1f}% |"
            if markdown
            else f"  {phase:<22} {value:8.1f} s  {100 * value / wall:5.1f}%"
        )
    share = timing["share_outside_training_steps"]
    lines.append(
        ("\n" if markdown else "  ")
        + f"Share of wall time outside training steps: {100 * share:.1f}% (of {wall:.0f} s, summed over invocations)."
    )
    return "\n".join(lines)
