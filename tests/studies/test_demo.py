import json
import math
import os
import re
import stat

import numpy as np
import pytest
import torch

import tl_glp.studies.demo as demo_module
from tl_glp.studies.demo import STAGES, DemoSettings, run_demo


@pytest.mark.slow
def test_demo_runs_end_to_end_in_quick_mode(testbed, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    saved = os.umask(0o022)
    try:
        result = run_demo(tmp_path / "demo", quick=True, progress=True)
    finally:
        os.umask(saved)
    printed = capsys.readouterr().out
    out = tmp_path / "demo"
    report = (out / "report.md").read_text()
    for section in ("Testbed model", "The prior", "Steering", "Probing"):
        assert section in report
    for figure in ("prior/loss.png", "norms.png", "steering_pareto.png", "probing.png", "monosemanticity.png"):
        assert (out / figure).stat().st_size > 1000 and figure in report
    numbers = json.loads((out / "numbers.json").read_text())
    for key in (
        "fd_prior",
        "fd_lower_bound",
        "fd_held_out_halves",
        "fd_gaussian",
        "fd_prior_at_n",
        "fd_norm_prior",
        "fd_norm_held_out_halves",
        "fd_robust_prior",
        "fd_robust_held_out_halves",
        "fd_robust_gaussian",
        "capped_share_prior",
        "c2st_auc_prior",
        "c2st_auc_gaussian",
        "delta_lm_loss_prior",
        "delta_lm_loss_sae",
        "delta_lm_loss_prior_minus_sae",
        "testbed_lm_loss",
    ):
        assert math.isfinite(numbers[key]), key
    for name in ("prior", "lower_bound", "held_out_halves", "gaussian"):  # FD-infinity with its bootstrap CI
        lo, hi = numbers[f"fd_{name}_ci"]
        assert lo <= numbers[f"fd_{name}"] <= hi, name
        assert f"{numbers[f'fd_{name}']:.3f} [{lo:.3f}, {hi:.3f}]" in printed, name
    assert "| its 95% CI (bootstrap) | [" in report
    summary = printed[printed.index("=== tl-glp demo summary ===") :].splitlines()
    assert max(len(line) for line in summary) <= 100  # the printed tables fit the terminal...
    assert any(
        len(line) > 150 for line in report.splitlines() if line.startswith("| delta LM loss")
    )  # ...the report's stay whole
    assert numbers["versions"]["torch"] == torch.__version__ and "sae-lens" in numbers["versions"]
    steering = result.tables["steering"]
    assert set(steering.method) == {"none", "plain", "prior"} and {"concept", "grammatical", "nll"} <= set(
        steering.columns
    )
    summary = result.tables["probing_summary"]
    assert {"meta", "raw", "mlp", "pca", "sae"} <= set(summary.source)
    manifold = result.tables["manifold"]
    assert "How on-manifold" in report and (out / "off_manifold.csv").is_file()
    assert set(manifold.condition) == {"steer:sentiment", "steer:random", "shuffled"}
    scores = manifold[["denoising", "mahalanobis", "sae_error"]].to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all() and (manifold.n_natural > 0).all()
    # a strong random push is easy to detect for the Gaussian baseline: the table is not noise
    assert float(manifold[(manifold.condition == "steer:random") & (manifold.r == 0.25)].mahalanobis.iloc[0]) > 0.8
    # every stage announced once, in order, as [k/N] with the right N; no other stage labels
    labels = re.findall(r"^\[(\d+)/(\d+)\] ([^:(]+)", printed, flags=re.M)
    assert [(int(k), int(n), name.strip()) for k, n, name in labels] == [
        (k + 1, len(STAGES), s) for k, s in enumerate(STAGES)
    ], printed
    assert not re.search(r"^\[\d+\] ", printed, flags=re.M)
    for step in (
        "sampling",
        "Frechet distance 4/4",
        "classifier two-sample test 3/3",
        "training an SAE-Lens",
        "delta LM loss",
    ):
        assert step in printed, step
    # outputs readable by others under umask 022, like files written with open(..., "w")
    unreadable = [
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and stat.S_IMODE(p.stat().st_mode) != 0o644
    ]
    assert not unreadable, unreadable


def test_demo_fd_numbers_carry_a_bootstrap_ci_for_every_reference():
    from tl_glp.studies.demo.run import frechet_numbers

    g = torch.Generator().manual_seed(0)
    held = torch.randn(300, 5, generator=g)
    refs = [("prior", torch.randn(300, 5, generator=g) + 0.5), ("gaussian", torch.randn(300, 5, generator=g))]
    numbers = frechet_numbers(refs, held, n_boot=4, seed=0)
    assert numbers["fd_boot"] == 4
    for name in ("prior", "gaussian"):
        lo, hi = numbers[f"fd_{name}_ci"]
        assert lo < numbers[f"fd_{name}"] < hi and numbers[f"fd_{name}_se"] > 0
        assert numbers[f"fd_{name}_at_n"] > 0
    assert numbers["fd_prior_ci"][0] > numbers["fd_gaussian_ci"][1]  # a 0.5 shift in 5 dimensions: FD 1.25 vs 0
    assert json.loads(json.dumps(numbers)) == numbers  # numbers.json holds it as it is


def test_demo_docstring_lists_every_stage():
    doc = demo_module.__doc__
    for k, name in enumerate(STAGES, start=1):
        assert f"{k}. {name}" in doc, name


def test_full_settings_are_the_readme_run_and_the_default_is_lighter():
    full, default = DemoSettings.full(), DemoSettings()
    assert (full.prior_steps, full.eval_samples, full.sae_steps, full.n_docs) == (5000, 10_000, 1000, 6000)
    assert default.prior_steps < full.prior_steps and default.eval_samples < full.eval_samples
    with pytest.raises(ValueError, match="not both"):
        run_demo("unused", quick=True, full=True)


def test_sae_training_is_deterministic_across_runs_and_thread_counts():
    from tl_glp.saes import train_sae

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 64, generator=g) @ torch.randn(64, 64, generator=g)
    threads = torch.get_num_threads()
    try:
        runs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            sae = train_sae(x, d_sae=256, k=8, steps=15, batch_size=256, seed=3)
            runs.append([p.detach().clone() for p in sae.parameters()])
    finally:
        torch.set_num_threads(threads)
    for other in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], other))
    sae_other_seed = train_sae(x, d_sae=256, k=8, steps=15, batch_size=256, seed=4)
    assert not torch.equal(next(sae_other_seed.parameters()), runs[0][0])


@pytest.mark.slow
def test_two_quick_demo_runs_give_identical_numbers(testbed, tmp_path):
    first = run_demo(tmp_path / "a", quick=True, progress=False).numbers
    second = run_demo(tmp_path / "b", quick=True, progress=False).numbers

    def comparable(numbers: dict) -> str:
        """Wall times dropped; NaN (a gain the quick sizes cannot estimate) compares equal to NaN."""
        kept = {k: v for k, v in numbers.items() if not k.endswith("seconds")}
        return json.dumps(kept, sort_keys=True, default=str)

    assert "seconds" in first and comparable(first) == comparable(second)


def _summary_result(tmp_path):
    """A DemoResult with the numbers and tables the printed summary reads, shaped as a run writes them."""
    import pandas as pd

    from tl_glp.studies.demo import DemoResult, conclusions, steering_table

    numbers = {
        "testbed_lm_loss": 1.673,
        "testbed_entropy_floor": 1.55,
        "eval_samples": 4000,
        "c2st_auc_prior": 0.861,
        "c2st_auc_gaussian": 0.944,
        "c2st_auc_held_out": 0.482,
        "lm_loss_clean": 1.67,
        "delta_lm_loss_prior": 0.0127,
        "delta_lm_loss_prior_ci": [-0.0032, 0.0284],
        "delta_lm_loss_sae": 0.0866,
        "delta_lm_loss_sae_ci": [0.0576, 0.1166],
        "delta_lm_loss_prior_minus_sae": -0.0739,
        "delta_lm_loss_prior_minus_sae_ci": [-0.106, -0.043],
        "sae_fraction_variance_unexplained": 0.2,
        "lm_eval_docs": 200,
        "lm_eval_tokens": 6123,
        "steering_gain_grammatical": {
            **dict(gain=-0.178, ci_low=-0.472, ci_high=-0.069, n_prompts=24, n_plain=120, n_prior=120),
            **dict(n_nan_concept=7, concept_low=0.1, concept_high=0.8, reason=""),
        },
        "seconds": 215.0,
    }
    for i, name in enumerate(("prior", "lower_bound", "held_out_halves", "gaussian")):
        numbers[f"fd_{name}"] = 33.412 / (i + 1)
        numbers[f"fd_{name}_ci"] = [30.1 / (i + 1), 36.7 / (i + 1)]
        numbers[f"fd_robust_{name}"] = 0.517 * (i + 1)
    rng = np.random.default_rng(0)
    sweep = pd.DataFrame(
        {
            "method": ["none"] * 4 + ["plain", "prior"] * 8,
            "r": [0.0] * 4 + [0.25, 0.25, 1.0, 1.0] * 4,
            "concept": rng.uniform(-1, 1, 20),
            "grammatical": rng.uniform(0, 1, 20),
            "nll": rng.uniform(1, 4, 20),
        }
    )
    probing = pd.DataFrame(
        {
            "source": ["meta", "meta (shuffled labels)", "raw", "sae"],
            "mean_test_auc": [0.813, 0.498, 0.807, 0.678],
            "ci_low": [0.737, 0.492, 0.742, 0.612],
            "ci_high": [0.89, 0.504, 0.877, 0.777],
            "n_datasets": [8, 8, 8, 8],
        }
    )
    paired = pd.DataFrame(
        {
            "other": ["raw", "sae"],
            "mean_difference": [0.0066, 0.136],
            "ci_low": [-0.025, 0.0649],
            "ci_high": [0.0382, 0.206],
            "n_datasets": [8, 8],
        }
    )
    result = DemoResult(tmp_path, numbers, {"steering": steering_table(sweep), "probing_summary": probing})
    result.tables["probing_paired"] = paired
    result.tables["conclusions"] = conclusions(result)
    return result


@pytest.mark.parametrize("columns", [100, 60, 40])
def test_demo_summary_fits_the_terminal_and_keeps_every_verdict(tmp_path, monkeypatch, columns):
    from tl_glp.studies.demo import summary_text

    monkeypatch.setenv("COLUMNS", str(columns))  # what shutil.get_terminal_size reads first
    result = _summary_result(tmp_path)
    text = summary_text(result)
    too_wide = [line for line in text.splitlines() if len(line) > columns]
    assert not too_wide, too_wide
    flat = " ".join(text.split())
    for verdict in result.tables["conclusions"].verdict:  # wrapping moves words, it loses none
        assert all(word in flat.split() for word in verdict.split()), verdict
    for name in ("prior", "lower_bound", "held_out_halves", "gaussian"):
        assert f"{result.numbers[f'fd_{name}']:.3f}" in text
        assert f"{result.numbers[f'fd_robust_{name}']:.3f}" in text
    assert "whole in report.md" in text  # the conclusions table is ~250 wide: narrowed here, whole in the report


def test_text_table_fits_any_width_and_is_unchanged_where_it_fits():
    import pandas as pd

    from tl_glp.studies.reporting import text_table

    frame = pd.DataFrame(
        {
            "comparison": ["delta LM loss: prior projection - SAE reconstruction", "1-D probing: meta - raw"],
            "estimate": [-0.0739, 0.0066],
            "n_concept_scored": [120, 8],
            "verdict": ["the prior costs less LM loss than the SAE", "no clear difference (the CI holds 0)"],
        }
    )
    wide = text_table(frame)
    assert wide == text_table(frame, width=500) and max(len(line) for line in wide.splitlines()) > 100
    for width in (100, 60, 40, 24):
        narrow = text_table(frame, width=width)
        assert max(len(line) for line in narrow.splitlines()) <= width, width
        for cell in ("-0.0739", "0.0066", "120"):  # numbers are never cut
            assert re.search(rf"(^|\s){re.escape(cell)}(\s|$)", narrow, re.M), (width, cell)
        words = narrow.split()
        for text in (*frame.comparison, *frame.verdict):
            assert all(w in words for w in text.split()), (width, text)
