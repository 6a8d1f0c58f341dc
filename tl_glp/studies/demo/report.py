"""The demo's ``report.md`` and ``numbers.json``, in the order of its stages, each written atomically;
and the library versions its figures depend on."""

from __future__ import annotations

import json
from dataclasses import asdict

from tl_glp.core import _io
from tl_glp.studies.demo.quality import ROBUST_CLIP
from tl_glp.studies.demo.settings import DemoResult, DemoSettings
from tl_glp.studies.demo.verdicts import FD_REFERENCES, PRACTICAL_MARGINS, fd_ci
from tl_glp.studies.reporting import markdown_table as _md_table


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose numerics the demo's figures depend on (recorded in ``numbers.json`` and the
    report, so that a figure that moves between two machines can be traced to a version).

    >>> sorted(library_versions())[:2]
    ['numpy', 'sae-lens']
    """
    import importlib.metadata as md

    out = {}
    for name in ("numpy", "sae-lens", "scikit-learn", "torch", "transformer-lens"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _steering_intro(n: dict) -> list[str]:
    """What the steering section measures: the testbed's ground truth, or a real model's outside judges and
    the direction check that decides whether projectors are compared at all."""
    if "judges" not in n:
        return [
            "Positive-sentiment direction (difference of means at the token before a judged adjective), plain vs prior-guided steering at the last position of each forward pass. "
            "`concept`: ground-truth sentiment score of the continuation (+1 all positive, -1 all negative), averaged over the `n_concept_scored` generations that hold a sentiment word "
            "(n/a where none does); `grammatical`: share of continuations the grammar accepts; `nll`: the unsteered model's NLL of the continuation (lower = more fluent). "
            "The conclusions above compare the two Pareto fronts at matched concept, with a bootstrap CI over prompts."
        ]
    check = n.get("direction_check", {})
    choice = n.get("direction_choice")
    target = choice["target"] if choice else "positive"
    lines = [
        f"{target.capitalize()}-sentiment direction: a contrastive difference of means (six sentences of each sentiment, last token), "
        "plain vs prior-guided steering at the last position of each forward pass, on neutral prompt stems. "
        f"Judges nobody here wrote: {n['judges']}. `nll` is the steered model's own NLL (it rewards repetition; read it beside distinct-2). "
        "The conclusions above compare the two Pareto fronts at matched concept, with a bootstrap CI over prompts.",
    ]
    if choice:
        tried = sorted({(c["hook"], c["target"]) for c in choice["candidates"]})
        lines += [
            "",
            f"**Direction choice** (before the activations were collected): {len(tried)} candidates "
            f"({', '.join(sorted({h for h, _ in tried}))} x {'/'.join(dict.fromkeys(t for _, t in tried))}) steered "
            f"{choice['calibration_stems']} calibration stems (not the prompts below); chosen: `{choice['hook']}` towards "
            f"{choice['target']}, whose best shift there was {choice['shift']:+.3f} [95% CI {choice['ci_low']:+.3f}, "
            f"{choice['ci_high']:+.3f}] at r = {choice['best_r']:g}. The prior is trained at that layer. Every candidate: "
            "`direction_choice.csv`.",
        ]
    if check.get("per_r"):
        lines += [
            "",
            f"**Direction check** (before any projector is compared): unsteered VADER {check['unsteered']:+.3f}; plain steering's best shift "
            f"{check['shift']:+.3f} [95% CI {check['ci_low']:+.3f}, {check['ci_high']:+.3f}] at r = {check['best_r']} over {check['n_prompts']} prompts: "
            + ("the direction steers." if check["steers"] else "the direction does **not** steer clearly."),
        ]
    else:
        lines += [
            "",
            "**Direction check** (before any projector is compared): the concept judge scored none of the plain-steered "
            "continuations (no sentiment word in any): the direction does **not** steer measurably.",
        ]
    if "steering_map_skipped" in n:
        lines += ["", f"The steering head to head is left out: {n['steering_map_skipped']}."]
    return lines


def write_report(result: DemoResult, cfg: DemoSettings, model_name: str, hook: str) -> None:
    """``report.md`` (sections numbered as the stages) and ``numbers.json`` in ``result.out_dir``, each atomically."""
    n = result.numbers
    parts = [
        "# tl-glp demo report",
        "",
        f"Model: `{model_name}`, hook `{hook}`; {n['activation_rows']} activation rows; settings: `{json.dumps(asdict(cfg))}`; took {n['seconds']:.0f} s; "
        f"versions: `{json.dumps(n.get('versions', {}))}`.",
        "",
    ]
    if "testbed_lm_loss" in n:
        parts += [
            "## 1. Testbed model",
            "",
            f"Held-out LM loss **{n['testbed_lm_loss']:.3f}** nats/token; the generator's entropy given the latent variables is "
            f"{n['testbed_entropy_floor']:.3f} (a lower bound: a model must also infer topic, sentiment and tense from the words).",
            "",
        ]
    ci = lambda key: f"[{n[key][0]:+.4f}, {n[key][1]:+.4f}]"  # noqa: E731
    parts += [
        "## Conclusions",
        "",
        "Each headline comparison with its 95% CI and what it rests on; the verdict is read off the CI "
        '("equivalent" where it lies within the smallest difference that matters, fixed before any run: '
        + ", ".join(f"{k} {v:g}" for k, v in PRACTICAL_MARGINS.items())
        + '; "no clear difference" where it holds 0 otherwise), and is reported as measured, whichever way it falls.',
        "",
        _md_table(result.tables["conclusions"]),
        "",
        "## 2-3. The prior",
        "",
        "![loss](prior/loss.png)",
        "",
        f"Frechet distance as FD-infinity (FD at a quarter, half and all of {n['eval_samples']} samples per side, extrapolated to infinitely many); "
        "every distance is to the same held-out rows (documents the prior never saw). The lower bound takes real rows from the "
        "training documents: a prior that had learned the data exactly would score about this. Two random halves of the held-out rows "
        "can share documents (the rows of a document share its topic and sentiment), which pulls their distance down. "
        f"95% CI: the estimate +- t bootstrap standard errors ({n['fd_boot']} resamples of the rows on both sides; "
        "Student's t, as the standard error is itself estimated).",
        "",
        "| measure | prior | lower bound (other documents) | held-out halves (can share documents) | moment-matched Gaussian |",
        "|---|---|---|---|---|",
        "| Frechet distance to held-out activations (FD-infinity) | "
        + " | ".join(f"{n[f'fd_{r}']:.3f}" for r in FD_REFERENCES)
        + " |",
        "| its 95% CI (bootstrap) | " + " | ".join(fd_ci(n, r) for r in FD_REFERENCES) + " |",
        f"| Frechet distance at N = {n['eval_samples']} | {n['fd_prior_at_n']:.3f} | {n['fd_lower_bound_at_n']:.3f} | {n['fd_held_out_halves_at_n']:.3f} | {n['fd_gaussian_at_n']:.3f} |",
        f"| Frechet distance at N on standardised rows (the prior's normaliser) | {n['fd_norm_prior']:.3f} | {n['fd_norm_lower_bound']:.3f} | {n['fd_norm_held_out_halves']:.3f} | {n['fd_norm_gaussian']:.3f} |",
        f"| Frechet distance at N, robust (median/MAD, norms capped at {ROBUST_CLIP:g}x the median) | {n['fd_robust_prior']:.3f} | {n['fd_robust_lower_bound']:.3f} | {n['fd_robust_held_out_halves']:.3f} | {n['fd_robust_gaussian']:.3f} |",
        f"| share of rows beyond that norm cap (held-out: {n['capped_share_real']:.4f}) | {n['capped_share_prior']:.4f} | {n['capped_share_lower_bound']:.4f} | {n['capped_share_held_out_halves']:.4f} | {n['capped_share_gaussian']:.4f} |",
        f"| classifier two-sample AUC (0.5 = indistinguishable) | {n['c2st_auc_prior']:.3f} | | {n['c2st_auc_held_out']:.3f} | {n['c2st_auc_gaussian']:.3f} |",
        "",
        "A raw FD is dominated by a few huge rows and high-variance dimensions (on SmolLM2-135M two halves of the held-out rows "
        "were farther apart than a Gaussian from them). The normalised rows weigh every dimension alike; the robust ones also "
        "keep a few huge rows from setting the scale (their share is in the next row, their distribution in the figure). "
        "Read each FD against its floors in the same row: the held-out halves and the lower bound are real data at the same N.",
        "",
        "![row norms](norms.png)",
        "",
        f"Delta LM loss when every non-BOS activation at `{hook}` is replaced (clean loss {n['lm_loss_clean']:.3f}; "
        f"{n['lm_eval_docs']} documents, {n['lm_eval_tokens']} tokens; 95% bootstrap CI over documents):",
        "",
        "| replacement | delta LM loss | 95% CI |",
        "|---|---|---|",
        f"| prior projection (t=0.5, 20 steps) | {n['delta_lm_loss_prior']:+.4f} | {ci('delta_lm_loss_prior_ci')} |",
        f"| SAE reconstruction (SAE-Lens TopK, FVU {n['sae_fraction_variance_unexplained']:.3f}) | {n['delta_lm_loss_sae']:+.4f} | {ci('delta_lm_loss_sae_ci')} |",
        f"| prior - SAE (paired over documents) | {n['delta_lm_loss_prior_minus_sae']:+.4f} | {ci('delta_lm_loss_prior_minus_sae_ci')} |",
        "",
        "## 4. Steering",
        "",
        *_steering_intro(n),
        "",
        "![pareto](steering_pareto.png)",
        "",
        _md_table(result.tables["steering"]),
        "",
        "Examples:",
        "",
        _md_table(result.tables["steering_examples"]),
        "",
    ]
    if "steering_map_md" in result.tables:  # 5. steering head to head
        parts += [
            result.tables["steering_map_md"].replace("## Steering head to head", "## 5. Steering head to head", 1),
            "",
        ]
    parts += [
        "## 6. Probing",
        "",
        "Best single feature per source (1-D probe, 5-fold CV over C, test AUC); `(shuffled labels)` rows are the permutation null.",
        "",
        "![probing](probing.png)",
        "",
        _md_table(result.tables["probing_summary"]),
        "",
        "Meta-neurons minus each other source, per dataset, with a paired bootstrap CI over datasets:",
        "",
        _md_table(result.tables["probing_paired"]),
        "",
        "Per dataset (test AUC):",
        "",
        _md_table(result.tables["probing"]),
        "",
        "Wins (row beats column, datasets):",
        "",
        _md_table(result.tables["probing_wins"].reset_index()),
        "",
    ]
    if "interpret_md" in result.tables:  # 7. ground-truth monosemanticity
        parts.append(result.tables["interpret_md"])
    if "manifold" in result.tables:
        parts += [
            "",
            "## 8. How on-manifold? Off-manifold detection",
            "",
            "ROC-AUC (0.5 = chance) for telling held-out natural activations from the same activations steered by `r * act_norm` "
            "along the sentiment direction or a random one, and from activations of the same texts with their words shuffled. "
            "Scores (higher = further off): `denoising` (the prior's flow-matching error at t = 0.1, 0.3, 0.5), `mahalanobis` "
            "(a Gaussian fitted to other natural activations), `sae_error` (the SAE's reconstruction error), and `log_prob` "
            "(bits per dimension under the prior, Hutchinson divergence) when enabled. `n_natural`/`n_off`: activations each AUC rests on.",
            "",
            _md_table(result.tables["manifold"]),
            "",
        ]
    with _io.atomic_path(result.out_dir / "report.md") as tmp:
        tmp.write_text("\n".join(parts))
    _io.write_json(result.out_dir / "numbers.json", result.numbers)
