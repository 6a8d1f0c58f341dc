"""The demo's ground-truth section on the real testbed (an untrained prior: plumbing, not a result)."""

from tl_glp.probing import MetaNeurons, MLPNeurons, RawActivations
from tl_glp.studies.interpret_run import ground_truth_section


def test_ground_truth_section_on_testbed(testbed, tmp_path):
    from tl_glp import GenerativePrior, collect_activations
    from tl_glp.studies.testbed import MIDDLE_HOOK

    acts = collect_activations(testbed.model, testbed.language.sample_texts(20, seed=1), MIDDLE_HOOK, progress=False)
    prior = GenerativePrior.from_activations(acts, n_blocks=1)
    docs = list(testbed.language.documents(30, seed=5))
    numbers, markdown = ground_truth_section(
        testbed.model,
        {"meta": MetaNeurons(prior), "raw": RawActivations(), "mlp": MLPNeurons()},
        docs,
        MIDDLE_HOOK,
        tmp_path,
    )
    assert set(numbers) == {f"gt_{m}_{s}" for m in ("values_detected", "mean_best_auc") for s in ("meta", "raw", "mlp")}
    assert all(0.5 <= numbers[f"gt_mean_best_auc_{s}"] <= 1 for s in ("meta", "raw", "mlp"))
    assert "| topic | animals |" in markdown and (tmp_path / "monosemanticity.png").is_file()
