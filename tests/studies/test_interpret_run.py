"""run_interpret end to end on the tiny model: dashboards per source, ground-truth table, explanations."""

from types import SimpleNamespace

from tests.conftest import random_sentences
from tests.interpret.test_explain import TokenMatch, word_judge
from tl_glp.probing import RawActivations
from tl_glp.studies.interpret_run import run_interpret


def test_run_interpret(tiny_model, tmp_path):
    texts = random_sentences(30, seed=6, length=8)
    docs = [
        SimpleNamespace(text=t, latents={"word": ["dog" if w == "dog" else "other" for w in t.split()]})
        for t in random_sentences(30, seed=7, length=8)
    ]
    sources = {"token": TokenMatch(tiny_model, ["cat", "dog"]), "raw": RawActivations()}
    out = run_interpret(
        tiny_model,
        sources,
        texts,
        "blocks.0.hook_resid_post",
        tmp_path,
        documents=docs,
        k=6,
        pages=2,
        judge=word_judge,
        explain_top=2,
        progress=False,
    )
    assert (
        (tmp_path / "index.html").is_file()
        and (tmp_path / "monosemanticity.png").is_file()
        and (tmp_path / "interpret.md").is_file()
    )
    assert (tmp_path / "token" / "dashboard" / "index.html").is_file() and (
        tmp_path / "raw" / "top_activations.json"
    ).is_file()
    token = out.results["token"]
    assert token.scores[1]["ground_truth_auc"] == 1.0  # the "dog" unit, sorted first
    assert (
        "ground truth: best per-token AUC 1.000, for word=dog"
        in (tmp_path / "token" / "dashboard" / "feature_1.html").read_text()
    )
    assert out.numbers["gt_values_detected_token"] == 1.0 and "detection_balanced_accuracy_token" in out.numbers
    assert "| token |" in out.markdown
