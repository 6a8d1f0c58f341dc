"""The scaling study: its statistics on planted data, the steering summary, and a reduced study end to end
(report, resume without recomputation, refusal of changed settings, the CLI)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from tl_glp.steering.pareto import matched_concept_gain, pareto_front
from tl_glp.studies.scaling import (
    ScalingSettings,
    compute_frontier,
    fit_power_law,
    frechet_distance_infinity,
    spearman_ci,
)
from tl_glp.training.metrics import frechet_distance


# --------------------------------------------------------------------------- fits
def test_power_law_fit_recovers_planted_parameters_with_covering_cis():
    E, A, alpha = 0.7, 4.0e3, 0.32
    C = np.logspace(11, 15, 14)
    covered = []
    for seed in range(8):  # 1% multiplicative noise; the 95% intervals should cover the truth most of the time
        L = (E + A * C**-alpha) * np.exp(np.random.default_rng(seed).normal(0, 0.01, len(C)))
        fit = fit_power_law(C, L, n_boot=150, seed=0)
        covered.append(
            [
                fit.E_ci[0] <= E <= fit.E_ci[1],
                fit.alpha_ci[0] <= alpha <= fit.alpha_ci[1],
                fit.A_ci[0] <= A <= fit.A_ci[1],
            ]
        )
        assert abs(fit.alpha - alpha) < 0.05 and abs(fit.E - E) < 0.05 and fit.n_points == 14
        assert np.allclose(fit.predict(C), E + A * C**-alpha, rtol=0.03)
    assert np.mean(covered, axis=0).min() >= 0.75, np.mean(covered, axis=0)
    exact = fit_power_law(C, E + A * C**-alpha, n_boot=20)
    assert (
        exact.E == pytest.approx(E, rel=1e-3)
        and exact.alpha == pytest.approx(alpha, rel=1e-3)
        and exact.A == pytest.approx(A, rel=1e-2)
    )
    with pytest.raises(ValueError, match="at least 4 points"):
        fit_power_law(C[:3], C[:3])


def test_compute_frontier_keeps_only_points_that_beat_all_cheaper_ones():
    compute = np.array([1.0, 2.0, 2.0, 4.0, 8.0, 16.0])
    loss = np.array([3.0, 2.0, 2.5, 2.2, 1.5, 1.6])
    assert compute_frontier(compute, loss).tolist() == [True, True, False, False, True, False]


def test_spearman_ci_and_missing_values():
    x = np.arange(20.0)
    r = spearman_ci(x, x**2 + np.r_[np.nan, np.zeros(19)], n_boot=200)
    assert r.rho == pytest.approx(1.0) and r.n == 19 and r.n_missing == 1 and r.ci_low > 0.9
    assert math.isnan(spearman_ci([1.0, 2.0], [2.0, 1.0]).rho)
    constant = spearman_ci(x, np.zeros(20))  # a figure that never changes has no ranking: NaN, reported as n/a
    assert math.isnan(constant.rho) and constant.n == 20


def test_frechet_distance_infinity_on_gaussians_with_known_distance():
    g = torch.Generator().manual_seed(0)
    d = 32
    mu, s = torch.full((d,), 0.3), torch.linspace(0.5, 1.5, d)
    true_fd = float(mu.pow(2).sum() + (1 + s**2 - 2 * s).sum())  # N(0, I) vs N(mu, diag(s^2))
    a = torch.randn(6000, d, generator=g)
    b = mu + s * torch.randn(6000, d, generator=g)
    fdi = frechet_distance_infinity(a, b, seed=0)
    assert abs(fdi.fd_inf - true_fd) < 0.5 * abs(fdi.fd_at_n[-1] - true_fd)  # extrapolation removes most of the bias
    assert abs(fdi.fd_inf - true_fd) < 0.08 * true_fd
    with pytest.raises(ValueError, match="two different sizes"):
        frechet_distance_infinity(a[:10], b[:10], ns=(10, 10))


def test_frechet_distance_infinity_repeats_shrink_the_scatter_of_a_zero_distance():
    """Two disjoint samples of one distribution (true FD 0): averaging many subsets per size
    (the default) scatters the extrapolated value less than two subsets do."""
    g = torch.Generator().manual_seed(1)
    d, n = 48, 1200
    scale = torch.linspace(0.2, 3.0, d)  # anisotropic, like a residual stream
    few, many = [], []
    for i in range(6):
        a, b = scale * torch.randn(n, d, generator=g), scale * torch.randn(n, d, generator=g)
        few.append(frechet_distance_infinity(a, b, repeats=2, seed=i).fd_inf)
        many.append(frechet_distance_infinity(a, b, seed=i).fd_inf)
    assert np.std(many) < 0.75 * np.std(few)
    assert abs(np.mean(many)) < 3 * np.std(many) / math.sqrt(len(many)) + 0.05 * frechet_distance(a, b)


# --------------------------------------------------------------------------- steering summary
def _sweep(prior_bonus: float, n_prompts: int = 10, nan_every: int = 0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_prompts):
        for method in ("plain", "prior"):
            for r in (0.25, 0.5, 1.0, 2.0):
                concept = r + rng.normal(0, 0.05)
                fluency = 0.9 - 0.3 * r + (prior_bonus if method == "prior" else 0.0) + rng.normal(0, 0.05)
                rows.append(
                    {
                        "prompt": f"p{i}",
                        "method": method,
                        "r": r,
                        "concept": concept,
                        "grammatical": fluency,
                        "nll": 2.0 - fluency,
                    }
                )
    df = pd.DataFrame(rows)
    if nan_every:
        df.loc[df.index[::nan_every], "concept"] = np.nan
    return pd.concat(
        [
            df,
            pd.DataFrame(
                [{"prompt": "p0", "method": "none", "r": 0.0, "concept": 0.0, "grammatical": 1.0, "nll": 1.0}]
            ),
        ]
    )


def test_matched_concept_gain_positive_when_prior_is_more_fluent_everywhere():
    g = matched_concept_gain(_sweep(0.2), fluency="grammatical", n_boot=300)
    assert (
        g.gain == pytest.approx(0.2, abs=0.05)
        and g.ci_low > 0
        and g.n_plain == g.n_prior == 40
        and g.n_nan_concept == 0
    )
    g_nll = matched_concept_gain(_sweep(0.2), fluency="nll", n_boot=300)  # lower is better: the sign is flipped
    assert g_nll.gain == pytest.approx(g.gain) and g_nll.ci_low > 0


def test_matched_concept_gain_zero_for_identical_methods():
    df = _sweep(0.0)
    plain = df[df.method == "plain"]
    same = pd.concat([plain, plain.assign(method="prior")])
    g = matched_concept_gain(same, fluency="grammatical", n_boot=200)
    assert g.gain == pytest.approx(0.0, abs=1e-12) and g.ci_low <= 0 <= g.ci_high


def test_matched_concept_gain_counts_nan_concepts_and_never_returns_them_silently():
    g = matched_concept_gain(_sweep(0.2, nan_every=7), fluency="grammatical", n_boot=200)
    assert g.n_nan_concept == 12 and g.n_plain + g.n_prior == 80 - 12 and math.isfinite(g.gain) and g.gain > 0
    far = _sweep(0.0)
    far.loc[far.method == "prior", "concept"] += 10  # disjoint concept ranges: no matched comparison possible
    g = matched_concept_gain(far, fluency="grammatical", n_boot=50)
    assert math.isnan(g.gain) and "do not overlap" in g.reason
    with pytest.raises(ValueError, match="no 'grammatical' column"):
        matched_concept_gain(far.drop(columns="grammatical"), fluency="grammatical")


def test_pareto_front_is_the_upper_envelope():
    c, f = pareto_front(np.array([0.0, 1.0, 1.0, 2.0, 0.5]), np.array([1.0, 0.5, 0.7, 0.1, 0.6]))
    assert c.tolist() == [0.0, 1.0, 2.0] and f.tolist() == [1.0, 0.7, 0.1]


# --------------------------------------------------------------------------- the study end to end
TINY = ScalingSettings(
    depths=(1, 2),
    max_samples=256 * 12,
    batch_size=256,
    n_checkpoints=3,
    warmup_steps=2,
    n_docs=300,
    held_out_rows=1024,
    fd_samples=512,
    c2st_samples=256,
    c2st_steps=30,
    projection_rows=64,
    lm_eval_docs=10,
    d_sae=64,
    sae_k_fractions=(0.03, 0.1),
    sae_steps=20,
    probe_top_k=16,
    strengths=(0.5, 2.0),
    new_tokens=4,
    n_boot=50,
)


@pytest.fixture(scope="module")
def study_inputs(testbed):
    from tl_glp.probing import load_dataset
    from tl_glp.studies.testbed import MIDDLE_HOOK
    from tl_glp.studies.testbed.tasks import sentiment_steering_task

    texts = testbed.language.sample_texts(TINY.n_docs + TINY.lm_eval_docs, seed=1)
    sets = [load_dataset(frame, name=name) for name, frame in list(testbed.datasets.items())[:2]]
    return testbed.model, MIDDLE_HOOK, texts, sets, sentiment_steering_task(testbed.language, n_prompts=4)


@pytest.mark.slow
def test_reduced_study_writes_report_and_resumes_without_recomputing(study_inputs, tmp_path, monkeypatch):
    from tl_glp.studies.scaling import evals, run_scaling_study

    model, hook, texts, sets, task = study_inputs
    out = tmp_path / "study"
    calls = []
    real = evals.evaluate_checkpoint

    def flaky(prior, ctx, **kw):  # the study is "killed" right after its first checkpoint evaluation
        if calls:
            raise KeyboardInterrupt("simulated kill")
        calls.append(prior.cfg.n_blocks)
        return real(prior, ctx, **kw)

    monkeypatch.setattr(evals, "evaluate_checkpoint", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_scaling_study(model, hook, texts, sets, task, out, settings=TINY, progress=False)
    first = sorted((out / "evals").glob("*.json"))
    assert len(first) == 1
    stamp = first[0].stat().st_mtime_ns
    cached = [
        out / "saes" / "k2" / "cfg.json",
        out / "steering_plain.csv",
        out / "data" / "activations.safetensors",
        out / "references.json",
    ]
    stamps = [p.stat().st_mtime_ns for p in cached]

    counted = []
    monkeypatch.setattr(
        evals, "evaluate_checkpoint", lambda prior, ctx, **kw: counted.append(1) or real(prior, ctx, **kw)
    )
    result = run_scaling_study(model, hook, texts, sets, task, out, settings=TINY, progress=False)
    assert len(counted) == 5  # 6 checkpoints, the finished one read back
    assert first[0].stat().st_mtime_ns == stamp
    assert [
        p.stat().st_mtime_ns for p in cached
    ] == stamps  # SAEs, plain steering, activations, references: read back, not recomputed
    table = result.table
    assert len(table) == 6 and set(table.depth) == {1, 2} and sorted(set(table.samples)) == [768, 1536, 3072]
    assert (table.compute == 6 * table.params * table.samples).all()
    import json

    refs = json.loads((out / "references.json").read_text())
    for key in ("fd_lower_bound", "fd_held_out_halves", "fd_gaussian"):  # other documents, same documents, Gaussian
        assert math.isfinite(refs[key]) and refs[f"{key}_at_n"] > 0, (key, refs)
    assert (
        table.groupby("depth").val_loss.apply(lambda v: v.iloc[-1] < v.iloc[0]).all()
    )  # training lowers held-out loss
    for col in ("val_loss", "fd_prior", "c2st_prior", "delta_lm_loss_prior", "probe_auc_meta", "projection_distance"):
        assert np.isfinite(table[col]).all(), col
    report = (out / "report.md").read_text()
    assert "nan" not in report.replace("unannealed", "").lower()
    for section in (
        "Findings",
        "Loss vs compute",
        "Every checkpoint",
        "Downstream figures vs loss",
        "Where the time went",
        "SAE",
    ):
        assert section in report
    for figure in ("loss_vs_compute.png", "downstream_vs_loss.png"):
        assert (out / figure).stat().st_size > 1000 and figure in report
    csv = pd.read_csv(out / "scaling.csv")
    assert len(csv) == 6 and {"depth", "samples", "compute", "val_loss", "frontier", "steer_gain"} <= set(csv.columns)
    timing = result.timing
    assert timing["seconds"]["train_steps"] > 0 and 0 < timing["share_outside_training_steps"] < 1

    # a third run recomputes nothing at all
    counted.clear()
    run_scaling_study(model, hook, texts, sets, task, out, settings=TINY, progress=False)
    assert counted == []

    # changed settings on the same folder are refused, never mixed
    from dataclasses import replace

    with pytest.raises(ValueError, match="max_samples"):
        run_scaling_study(
            model, hook, texts, sets, task, out, settings=replace(TINY, max_samples=256 * 24), progress=False
        )


# --------------------------------------------------------------------------- resuming under the held-out rule
class _ReachedTheData(Exception):
    """Raised where the study would collect activations: the folder was accepted."""


def _open_study(out, monkeypatch, settings=TINY):
    """Run the study up to its data: refused (ValueError) or accepted (_ReachedTheData)."""
    from tl_glp.studies.scaling import SteeringTask, run_scaling_study, study

    def reached(*args, **kwargs):
        raise _ReachedTheData

    monkeypatch.setattr(study, "_activations", reached)
    task = SteeringTask(prompts=["the dog"], direction=torch.ones(4))
    with pytest.raises(_ReachedTheData):
        run_scaling_study(
            object(),
            "blocks.1.hook_resid_post",
            [f"text {i}" for i in range(40)],
            [],
            task,
            out,
            settings=settings,
            model_name="tiny",
            progress=False,
        )


def test_a_folder_resumes_only_under_the_held_out_rule_that_made_it(tmp_path, monkeypatch):
    import json

    from tl_glp.studies import splits
    from tl_glp.studies.scaling import study

    out = tmp_path / "study"
    _open_study(out, monkeypatch)
    _open_study(out, monkeypatch)  # the same rule: resumes

    def first_quarter_held_out(rows, n_held, seed):  # another split function altogether
        return splits.held_out_split(rows.flip(0), n_held, seed)

    with monkeypatch.context() as m:
        m.setattr(study, "held_out_split", first_quarter_held_out)
        with pytest.raises(
            ValueError, match=r"split tl_glp\.studies\.splits\.held_out_split -> .*first_quarter_held_out"
        ):
            _open_study(out, monkeypatch)

    record = json.loads((out / "study.json").read_text())["held_out"]
    assert record == {"split": "tl_glp.studies.splits.held_out_split", "version": 1, "held_out_rows": 1024, "seed": 0}
    with monkeypatch.context() as m:  # a tl-glp whose held_out_split chooses other rows (rule version 2)
        m.setattr(splits, "HELD_OUT_VERSION", 2)
        with pytest.raises(
            ValueError,
            match=r"held_out differ \(held_out: version 1 -> 2\).*another output folder.*"
            r"held_out_split version 1 with held_out_rows=1024, seed=0",
        ):
            _open_study(out, monkeypatch)
    _open_study(out, monkeypatch)  # and back under its own rule it still resumes


def test_a_folder_from_before_the_rule_was_recorded(tmp_path, monkeypatch):
    """study.json without a held-out record: made by version 1 of the rule (the only one there was)."""
    import json

    from tl_glp.studies import splits

    out = tmp_path / "study"
    _open_study(out, monkeypatch)
    path = out / "study.json"
    old = json.loads(path.read_text())
    del old["held_out"]
    path.write_text(json.dumps(old))
    with monkeypatch.context() as m:
        m.setattr(splits, "HELD_OUT_VERSION", 2)
        with pytest.raises(ValueError, match=r"version 1 -> 2"):
            _open_study(out, monkeypatch)
    assert "held_out" not in json.loads(path.read_text())  # a refused folder is left as it was
    _open_study(out, monkeypatch)
    assert json.loads(path.read_text())["held_out"]["version"] == 1  # accepted, and the rule recorded


def test_checkpoint_steps_are_geometric():
    s = ScalingSettings(max_samples=512 * 160, batch_size=512, n_checkpoints=5, checkpoint_ratio=2.0)
    assert s.checkpoint_steps() == [10, 20, 40, 80, 160]
    with pytest.raises(ValueError, match="checkpoint_ratio"):
        ScalingSettings(checkpoint_ratio=1.0)


@pytest.mark.slow
def test_cli_scaling_smoke(testbed, tmp_path, capsys):
    from tl_glp.cli import main

    sets = [
        f"{k}={v}"
        for k, v in {
            "depths": "1",
            "max_samples": 768,
            "batch_size": 256,
            "n_checkpoints": 2,
            "warmup_steps": 1,
            "n_docs": 200,
            "held_out_rows": 512,
            "fd_samples": 256,
            "c2st_samples": 128,
            "c2st_steps": 10,
            "projection_rows": 32,
            "lm_eval_docs": 8,
            "d_sae": 32,
            "sae_k_fractions": "0.1",
            "sae_steps": 5,
            "probe_top_k": 8,
            "strengths": "1.0",
            "new_tokens": 3,
            "n_boot": 20,
        }.items()
    ]
    argv = ["scaling", "--quick", "--out", str(tmp_path / "cli"), "--quiet"] + [a for s in sets for a in ("--set", s)]
    assert main(argv) == 0
    assert (tmp_path / "cli" / "report.md").is_file() and "report.md" in capsys.readouterr().out
    from tl_glp.studies.bench import bench_scaling_overhead

    rows = bench_scaling_overhead(str(tmp_path / "cli"))  # what `tl-glp bench train --study DIR` adds
    assert 0 < rows["share_outside_training_steps"] < 1 and "outside training steps" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="timing.json"):
        bench_scaling_overhead(str(tmp_path))
    assert main(["scaling", "--out", str(tmp_path / "x"), "--set", "bogus=1"]) == 2


def test_the_library_never_imports_the_testbed_cli_or_demo():
    import subprocess
    import sys

    code = (
        "import sys, tl_glp, tl_glp.studies.scaling, tl_glp.steering.pareto; "
        "bad = [m for m in sys.modules if m.startswith(('tl_glp.studies.testbed', 'tl_glp.cli', 'tl_glp.studies.demo'))]; print(bad); assert not bad"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0


def test_matched_concept_gain_when_one_front_is_a_single_point():
    """A front that collapses to one point (it dominates the method's other strengths) still counts
    over the concept range both methods cover: flat towards lower concept, as the upper envelope."""
    rows = []
    for i in range(6):
        for m, pts in {
            "plain": [(0.1, 0.5, 1.0), (0.5, -0.8, 1.0), (1.0, -0.7, 0.4)],
            "prior": [(0.1, 0.4, 1.0), (0.5, 0.6, 1.0), (1.0, 0.0, 0.3)],
        }.items():
            rows += [{"prompt": f"p{i}", "method": m, "r": r, "concept": c, "grammatical": f} for r, c, f in pts]
    g = matched_concept_gain(pd.DataFrame(rows), fluency="grammatical", n_boot=50)
    assert (g.concept_low, g.concept_high) == (0.0, 0.5) and g.gain == pytest.approx(
        0.0
    )  # equally fluent where both reach
