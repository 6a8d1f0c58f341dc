"""Explanations and detection scoring end to end with rule-based judges (plumbing only: no number
from these judges is a result)."""

import json
import math
import re

import pytest
import torch

from tests.conftest import random_sentences
from tl_glp.interpret import TopActivations, explain, score_explanations, top_activations
from tl_glp.probing import FeatureSource


class TokenMatch(FeatureSource):
    """Feature i = how much a token's embedding matches word i's (a planted, perfectly token-selective unit)."""

    name = "token"

    def __init__(self, model, words):
        self.rows = model.W_E[[model.tokenizer.get_vocab()[w] for w in words]].detach()

    def hooks(self, hook_name):
        return ["hook_embed"]

    def features(self, acts, hook_name):
        return acts["hook_embed"] @ self.rows.T


def word_judge(prompt: str) -> str:
    """Explains with the most common marked word; detects by matching the marked word."""
    marked = re.findall(r"<<(.+?)>>", prompt)
    if "Explanation:" in prompt:
        found = re.search(r"Explanation: the word (.*)", prompt)  # one line; a token may hold spaces
        word = found.group(1).strip() if found else None
        return "0.9" if marked and word is not None and marked[0].strip() == word else "no"
    return "the word " + max(sorted(set(marked)), key=marked.count).strip()


@pytest.fixture(scope="module")
def token_results(tiny_model):
    src = TokenMatch(tiny_model, ["dog", "cat", "ball"])
    return top_activations(
        tiny_model,
        src,
        random_sentences(80, seed=2, length=8),
        hook_name="blocks.0.hook_resid_post",
        k=8,
        n_random=60,
        progress=False,
    )


def test_explain_and_detection_scoring(token_results, tmp_path):
    res = token_results
    explanations = explain(res, word_judge, progress=False)
    assert explanations == {0: "the word dog", 1: "the word cat", 2: "the word ball"}
    table = score_explanations(res, None, word_judge, progress=False)
    assert list(table.feature) == [0, 1, 2]
    assert (table.balanced_accuracy == 1.0).all() and (table.auc == 1.0).all() and (table.n_unparsed == 0).all()
    assert (table.n_positive == 4).all() and (table.n_negative == 4).all()  # held-out half of k=8, balanced
    # a judge that always says yes cannot tell them apart; swapped explanations score below chance
    always = score_explanations(res, explanations, lambda p: "yes", progress=False)
    assert (always.balanced_accuracy == 0.5).all() and (always.auc == 0.5).all()
    swapped = score_explanations(res, {0: "the word cat", 1: "the word dog"}, word_judge, progress=False)
    assert (swapped.balanced_accuracy <= 0.5).all()
    assert res.explanations[0] == "the word cat" and res.scores[0]["balanced_accuracy"] <= 0.5  # stored with its score
    score_explanations(res, explanations, word_judge, progress=False)
    # scores are stored, rendered and persisted
    assert res.scores[1]["balanced_accuracy"] == 1.0 and res.explanations == explanations
    index = res.to_html(tmp_path / "dash", order_by="balanced_accuracy")
    assert "detection scoring" in (index.parent / "feature_1.html").read_text()
    back = TopActivations.load(res.save(tmp_path / "res"))
    assert back.explanations == res.explanations and back.scores == res.scores


def test_neuronpedia_export(token_results, tmp_path):
    res = token_results
    explain(res, word_judge, features=[0], progress=False)
    folder = res.to_neuronpedia(tmp_path / "np", model_id="tiny-test", per_file=2)
    files = sorted(p.name for p in folder.glob("*.json"))
    assert files == ["batch-0.json", "batch-1.json"]
    records = json.loads((folder / "batch-0.json").read_text()) + json.loads((folder / "batch-1.json").read_text())
    assert [r["index"] for r in records] == ["0", "1", "2"] and records[0]["modelId"] == "tiny-test"
    first = records[0]["activations"][0]
    assert first["tokens"][first["maxValueTokenIndex"]] == "dog"
    assert math.isclose(first["values"][first["maxValueTokenIndex"]], float(res.top.values[0, 0]), rel_tol=1e-6)
    assert records[0]["explanations"][0]["description"] == "the word dog"
    assert sum(records[0]["freq_hist_data_bar_heights"]) == res.settings["histogram_tokens"] > 0


def test_errors(token_results):
    from tl_glp.interpret.explain import parse_probability

    fresh = TopActivations.__new__(TopActivations)
    fresh.__dict__.update(token_results.__dict__, explanations={}, scores={})
    with pytest.raises(ValueError, match="No explanations"):
        score_explanations(fresh, None, word_judge, progress=False)
    with pytest.raises(IndexError, match="out of range"):
        explain(token_results, word_judge, features=[99], progress=False)
    assert math.isnan(parse_probability("maybe")) and parse_probability("7") == 1.0
    assert torch.isfinite(token_results.top.values[:, 0]).all()
