import json
import math

from tl_glp.studies.demo import run_demo


def test_demo_runs_end_to_end_in_quick_mode(testbed, tmp_path):
    result = run_demo(tmp_path / "demo", quick=True, progress=False)
    out = tmp_path / "demo"
    report = (out / "report.md").read_text()
    for section in ("Testbed model", "The prior", "Steering", "Probing"):
        assert section in report
    for figure in ("prior/loss.png", "steering_pareto.png", "probing.png"):
        assert (out / figure).stat().st_size > 1000 and figure in report
    numbers = json.loads((out / "numbers.json").read_text())
    for key in ("fd_prior", "fd_lower_bound", "fd_held_out_halves", "fd_gaussian", "fd_prior_at_n", "c2st_auc_prior", "c2st_auc_gaussian", "delta_lm_loss_prior", "delta_lm_loss_sae",
                "delta_lm_loss_prior_minus_sae", "testbed_lm_loss"):
        assert math.isfinite(numbers[key]), key
    steering = result.tables["steering"]
    assert set(steering.method) == {"none", "plain", "prior"} and {"concept", "grammatical", "nll"} <= set(steering.columns)
    summary = result.tables["probing_summary"]
    assert {"meta", "raw", "mlp", "pca", "sae"} <= set(summary.source)
    manifold = result.tables["manifold"]
    assert "How on-manifold" in report and (out / "off_manifold.csv").is_file()
    assert set(manifold.condition) == {"steer:sentiment", "steer:random", "shuffled"}
    scores = manifold[["denoising", "mahalanobis", "sae_error"]].to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all() and (manifold.n_natural > 0).all()
    # a strong random push is easy to detect for the Gaussian baseline: the table is not noise
    assert float(manifold[(manifold.condition == "steer:random") & (manifold.r == 0.25)].mahalanobis.iloc[0]) > 0.8
