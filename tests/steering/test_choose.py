"""Choosing a direction that steers: the concept shift with its CI, and the choice of layer and side."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import random_sentences

from tl_glp import diff_of_means, steering_sweep
from tl_glp.steering import choose_direction, concept_shift, middle_layer_hooks


def _frame(base, steered):
    """A sweep frame: unsteered concept per prompt, and {r: concept per prompt} of plain steering."""
    rows = [{"prompt": f"p{i}", "method": "none", "r": 0.0, "concept": v} for i, v in enumerate(base)]
    for r, values in steered.items():
        rows += [{"prompt": f"p{i}", "method": "plain", "r": r, "concept": v} for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_concept_shift_is_the_mean_paired_difference_with_a_bootstrap_ci_over_prompts():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.3, 40)
    moved, still = base + 0.5 + rng.normal(0, 0.1, 40), base + rng.normal(0, 0.3, 40)
    shift = concept_shift(_frame(base, {0.25: moved, 1.0: still}), n_boot=2000, seed=0)
    # by hand: the paired mean difference, and a percentile bootstrap of it over prompts
    d = moved - base
    assert shift["best_r"] == 0.25 and shift["shift"] == pytest.approx(d.mean())
    assert shift["per_r"]["1.0"]["shift"] == pytest.approx((still - base).mean())
    se = d.std(ddof=1) / np.sqrt(len(d))  # the percentile CI is about the normal one for 40 prompts
    assert shift["ci_low"] == pytest.approx(d.mean() - 1.96 * se, abs=0.6 * se)
    assert shift["ci_high"] == pytest.approx(d.mean() + 1.96 * se, abs=0.6 * se)
    assert shift["steers"] and shift["unsteered"] == pytest.approx(base.mean())
    # a shift whose CI holds 0 does not steer
    assert not concept_shift(_frame(base, {0.5: still}), seed=0)["steers"]


def test_concept_shift_leaves_out_prompts_the_judge_could_not_score():
    base, steered = [0.0, np.nan, 0.2], [0.5, 0.9, np.nan]
    shift = concept_shift(_frame(base, {0.5: steered}), n_boot=100, seed=0)
    assert shift["n_prompts"] == 1 and shift["shift"] == pytest.approx(0.5)
    nothing = concept_shift(_frame([np.nan], {0.5: [np.nan]}), seed=0)
    assert not nothing["steers"] and nothing["per_r"] == {}


def test_middle_layer_hooks_include_the_papers_rule_and_stay_in_range():
    assert middle_layer_hooks(30) == [f"blocks.{i}.hook_resid_post" for i in (10, 14, 15)]
    assert middle_layer_hooks(1) == ["blocks.0.hook_resid_post"]
    with pytest.raises(ValueError, match="at least one layer"):
        middle_layer_hooks(0)


def test_choose_direction_picks_the_candidate_with_the_highest_lower_bound_and_its_table_is_the_sweeps(tiny_model):
    texts = random_sentences(12, seed=4, length=6)
    positive, negative, stems = texts[:3], texts[3:6], texts[6:10]
    hooks = ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]

    def concept(target):  # a judge that reads the continuation's length in characters, signed by the side
        sign = 1.0 if target == "positive" else -1.0
        return lambda model, gens: [sign * len(c) for c in gens.continuations]

    pick = choose_direction(
        tiny_model,
        positive,
        negative,
        stems,
        hook_names=hooks,
        concept=concept,
        strengths=(0.5, 2.0),
        max_new_tokens=3,
        n_boot=300,
        progress=False,
    )
    table = pick.table
    assert len(table) == 2 * 2 * 2 and table.chosen.sum() == 2
    # each candidate's best strength; the pick has the highest lower bound among them (ties: larger shift)
    best = table.loc[table.groupby(["hook", "target"])["shift"].idxmax()]
    top = best.sort_values(["ci_low", "shift"], ascending=False).iloc[0]
    assert (pick.hook_name, pick.target) == (top.hook, top.target)
    assert pick.shift["ci_low"] == pytest.approx(top.ci_low)
    # the direction points towards the target: along the contrast for "positive", against it for "negative"
    w = diff_of_means(tiny_model, positive, negative, pick.hook_name, positions="last")
    assert torch.allclose(pick.direction, w if pick.target == "positive" else -w, atol=1e-6)
    # the table is what a plain sweep along that direction measures, recomputed here by hand
    df = steering_sweep(
        tiny_model,
        pick.direction,
        stems,
        strengths=(0.5, 2.0),
        methods=("plain",),
        act_norm=pick.act_norm,
        hook_name=pick.hook_name,
        max_new_tokens=3,
        concept=concept(pick.target),
        progress=False,
    )
    base = df[df.method == "none"].set_index("prompt").concept
    for r in (0.5, 2.0):
        steered = df[(df.method == "plain") & (df.r == r)].set_index("prompt").concept
        row = table[(table.hook == pick.hook_name) & (table.target == pick.target) & (table.r == r)].iloc[0]
        assert row["shift"] == pytest.approx(float((steered - base).mean()))


def test_choose_direction_bad_input(tiny_model):
    with pytest.raises(ValueError, match="at least one hook"):
        choose_direction(tiny_model, ["a"], ["b"], ["c"], hook_names=[], concept=lambda t: None)
    with pytest.raises(ValueError, match="one side, or two"):
        choose_direction(
            tiny_model, ["a"], ["b"], ["c"], hook_names=["blocks.0.hook_resid_post"], concept=lambda t: None, targets=()
        )
    with pytest.raises(ValueError, match="calibration stems"):
        choose_direction(tiny_model, ["a"], ["b"], [], hook_names=["blocks.0.hook_resid_post"], concept=lambda t: None)
