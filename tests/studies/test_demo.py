import json
import math
import os
import re
import stat

import pytest
import torch

import tl_glp.studies.demo as demo_module
from tl_glp.studies.demo import STAGES, DemoSettings, run_demo


@pytest.mark.slow
def test_demo_runs_end_to_end_in_quick_mode(testbed, tmp_path, capsys):
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
