"""Ground-truth monosemanticity: per-token AUCs, a planted unit found, alignment of latents to tokens."""

import pytest
import torch

from tests.conftest import random_sentences
from tests.interpret.test_explain import TokenMatch
from tl_glp.interpret.ground_truth import ground_truth, latent_aucs, monosemanticity
from tl_glp.probing import MLPNeurons, RawActivations
from tl_glp.probing.probes import auc_columns


def test_latent_aucs_match_reference_and_signed():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(300, 6, generator=g).round()  # many ties
    topic = [["a", "b", "c"][i % 3] for i in range(300)]
    auc, names = latent_aucs(feats, {"topic": topic}, chunk=4)
    assert names == [("topic", "a"), ("topic", "b"), ("topic", "c")]
    for v, value in enumerate("abc"):
        y = torch.tensor([t == value for t in topic])
        torch.testing.assert_close(auc[v].double(), auc_columns(feats, y), atol=1e-6, rtol=0)
    signed, _ = latent_aucs(-feats, {"topic": topic}, signed=True)
    torch.testing.assert_close(signed, torch.maximum(auc, 1 - auc), atol=1e-6, rtol=0)


def test_planted_unit_is_found():
    g = torch.Generator().manual_seed(1)
    n = 400
    tense = ["past" if torch.rand(1, generator=g) < 0.3 else "present" for _ in range(n)]
    negation = ["negated" if i % 5 == 0 else "affirmative" for i in range(n)]
    noise = torch.randn(n, 50, generator=g)
    planted = noise.clone()
    planted[:, 17] = torch.tensor([t == "past" for t in tense]).float()  # copies the latent exactly
    report = monosemanticity({"noise": noise, "planted": planted}, {"tense": tense, "negation": negation})
    best = report.best.set_index(["source", "latent", "value"])
    assert (
        best.loc[("planted", "tense", "past"), "feature"] == 17 and best.loc[("planted", "tense", "past"), "auc"] == 1.0
    )
    assert best.loc[("noise", "tense", "past"), "auc"] < 0.7
    share = report.share_detected()
    assert share == {"noise": 0.0, "planted": 0.25}  # one of four latent values
    per_feature = report.feature_best_auc()["planted"]
    assert per_feature[17] == 1.0 and (per_feature[torch.arange(50) != 17] < 0.75).all()
    summary = report.summary().set_index("source")
    assert summary.loc["planted", "features_auc>=0.9"] == 1 and summary.loc["noise", "features_auc>=0.9"] == 0
    with pytest.raises(ValueError, match="values"):
        latent_aucs(noise, {"tense": tense[:-1]})


def test_ground_truth_end_to_end_aligns_latents_with_tokens(tiny_model, tmp_path):
    texts = random_sentences(40, seed=4, length=8)
    latents = [{"word_is_dog": ["yes" if w == "dog" else "no" for w in t.split()]} for t in texts]
    sources = {"token": TokenMatch(tiny_model, ["cat", "dog"]), "raw": RawActivations(), "mlp": MLPNeurons()}
    report = ground_truth(tiny_model, sources, texts, latents, "blocks.0.hook_resid_post", batch_size=7, progress=False)
    best = report.best.set_index(["source", "value"])
    assert best.loc[("token", "yes"), "feature"] == 1 and best.loc[("token", "yes"), "auc"] == 1.0
    assert report.n_tokens == sum(len(t.split()) for t in texts)
    assert report.signed == {"token": True, "raw": True, "mlp": False}
    paths = report.to_csv(tmp_path)
    assert all(p.is_file() for p in paths)
    assert report.plot(tmp_path / "gt.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="only"):
        ground_truth(
            tiny_model,
            {"raw": RawActivations()},
            texts[:2],
            [{"x": ["a"]}, {"x": ["a"]}],
            "blocks.0.hook_resid_post",
            progress=False,
        )
