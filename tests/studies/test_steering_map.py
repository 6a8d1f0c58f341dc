"""The steering head-to-head on the shipped testbed (an untrained prior and a tiny SAE: plumbing and
bookkeeping, not a result)."""

import pandas as pd
import pytest
import torch

from tl_glp.steering.pareto import matched_concept_gains

CHEAP = ["prior (keep w)", "score pull t=0.1", "norm clamp (raw)", "norm clamp (std) + prior"]
"""The projectors that keep the concept and cost no more than the prior per token: in every map."""


@pytest.mark.slow
def test_testbed_steering_map_tables_numbers_and_files(testbed, tmp_path):
    from tl_glp import GenerativePrior, collect_activations
    from tl_glp.saes import train_sae
    from tl_glp.steering import diff_of_means
    from tl_glp.studies.steering_map import testbed_prefixes, testbed_steering_map
    from tl_glp.studies.testbed import MIDDLE_HOOK
    from tl_glp.studies.testbed.tasks import judgement_prefixes

    acts = collect_activations(testbed.model, testbed.language.sample_texts(60, seed=1), MIDDLE_HOOK, progress=False)
    natural = acts[0 : len(acts)]
    torch.manual_seed(0)
    prior = GenerativePrior.from_activations(acts, n_blocks=1)
    sae = train_sae(acts, d_sae=256, k=8, steps=20, batch_size=128)
    docs = list(testbed.language.documents(200, seed=2))
    direction = diff_of_means(
        testbed.model,
        judgement_prefixes(docs, "positive"),
        judgement_prefixes(docs, "negative"),
        MIDDLE_HOOK,
        positions="last",
    )
    m = testbed_steering_map(
        testbed,
        prior,
        natural,
        sae,
        direction,
        hook_name=MIDDLE_HOOK,
        out_dir=tmp_path,
        n_prompts=4,
        strengths=(1.0, 3.0),
        max_new_tokens=4,
        pca_k=8,
        n_probe_prefixes=300,
        n_diagnose=16,
        n_boot=20,
        progress=False,
    )
    projectors = ["prior", "sae", "sae+error", "pca k=8", "gaussian cap", *CHEAP]
    for fluency in ("grammatical", "nll"):
        table = m.gains[fluency]
        assert set(zip(table.method, table.positions)) == {(p, pos) for p in projectors for pos in ("last", "all")}
        # the map's gains are matched_concept_gains of the CSV it wrote
        again = matched_concept_gains(
            pd.read_csv(tmp_path / "steering_map.csv", keep_default_na=False, na_values=[""]),
            fluency=fluency,
            n_boot=20,
            seed=0,
        )
        assert again.gain.tolist() == pytest.approx(table.gain.tolist(), nan_ok=True)
        for p in projectors:
            assert f"map_gain_{fluency}_{p}_last" in m.numbers
    s = m.diagnosis.summary().set_index(["projector", "r"])
    assert s.loc[("plain", 3.0), "kept"] == pytest.approx(1.0, abs=1e-4) and s.loc[
        ("plain", 3.0), "moved"
    ] == pytest.approx(0.0, abs=1e-6)
    assert s.loc[("sae+error", 1.0), "kl"] >= 0 and {
        f"flip_{k}" for k in ("sentiment", "tense", "number", "negation")
    } <= set(s.columns)
    assert (
        s.loc[("prior", 3.0), "noised_norm_ratio"] > s.loc[("prior", 1.0), "noised_norm_ratio"]
    )  # further off, larger input norm
    assert set(m.flips.projector) == set(projectors)
    assert s.loc[("prior (keep w)", 3.0), "kept"] == pytest.approx(1.0, abs=1e-4)  # keep-w keeps the concept
    assert set(m.cost.method) == {"plain", *projectors} and "Cost of generation per token" in m.markdown
    assert m.numbers["map_cost_seconds"]["plain @ last"]["vs_plain"] == pytest.approx(1.0)
    broken = m.numbers["map_plain_breaks_at"]
    assert "what each projection changes" in m.markdown.lower()
    if broken:
        assert m.numbers["map_prior_flips_where_plain_breaks"]["latent"] in m.diagnosis.probe_names
        assert set(m.numbers["map_flips_where_plain_breaks"]) == set(projectors)
    for name in (
        "steering_map.csv",
        "steering_diagnosis.csv",
        "steering_diagnosis.png",
        "steering_map_pareto_grammatical.png",
    ):
        assert (tmp_path / name).stat().st_size > 0
    # the ground-truth latents at a prefix's last word are the document's there
    prompts, labels = testbed_prefixes(testbed.language, 5, seed=9)
    doc = next(testbed.language.documents(1, seed=9))
    assert doc.text.startswith(prompts[0]) and labels["sentiment"][0] == (
        doc.latents["sentiment"][len(prompts[0].split()) - 1] == "positive"
    )


def test_text_prefixes_cut_each_text_to_three_to_twelve_words():
    from tl_glp.studies.steering_map import text_prefixes

    texts = [" ".join(f"w{i}_{j}" for j in range(2 + i % 15)) for i in range(40)]
    prompts = text_prefixes(texts, 10, seed=3)
    long_enough = [t for t in texts if len(t.split()) >= 3]
    assert len(prompts) == 10 and prompts == text_prefixes(texts, 10, seed=3)
    for prompt, text in zip(prompts, long_enough):
        assert text.startswith(prompt) and 3 <= len(prompt.split()) <= min(12, len(text.split()))
    assert text_prefixes(["a b", "c"], 3) == []


def test_model_steering_map_needs_no_ground_truth(testbed, tmp_path):
    """The real-model path (what `tl-glp demo --model gpt2` runs) on the testbed's model used as any model:
    plain text only, the concept read along the direction, NLL fluency, a probe-free diagnosis."""
    from tl_glp import GenerativePrior, collect_activations
    from tl_glp.studies.steering_map import model_steering_map
    from tl_glp.studies.testbed import MIDDLE_HOOK

    texts = testbed.language.sample_texts(80, seed=1)
    acts = collect_activations(testbed.model, texts[:40], MIDDLE_HOOK, progress=False)
    torch.manual_seed(0)
    prior = GenerativePrior.from_activations(acts, n_blocks=1)
    direction = torch.randn(acts.d_input, generator=torch.Generator().manual_seed(0))
    m = model_steering_map(
        testbed.model,
        prior,
        acts[0 : len(acts)],
        None,
        direction,
        texts[40:],
        hook_name=MIDDLE_HOOK,
        out_dir=tmp_path,
        n_prompts=4,
        strengths=(1.0,),
        positions=("last",),
        max_new_tokens=3,
        pca_k=4,
        n_diagnose=6,
        n_boot=20,
        progress=False,
    )
    assert set(m.gains) == {"nll"} and "grammatical" not in m.sweep.columns
    projectors = {"prior", "pca k=4", "gaussian cap", *CHEAP}
    assert set(m.gains["nll"].method) == projectors  # no SAE given: no SAE round trips
    assert set(m.sweep.method) == {"none", "plain", *projectors}
    assert m.sweep.concept.notna().all() and m.flips is None
    summary = m.diagnosis.summary()
    assert set(summary.projector) >= {"prior", "pca k=4", "gaussian cap"} and summary.kl.notna().all()
    assert (tmp_path / "steering_map.csv").is_file() and "map_gain_nll_prior" in m.numbers
    cost = m.numbers["map_cost_seconds"]
    assert set(cost) == {f"{p} @ last" for p in ("plain", *projectors)} and cost["plain @ last"]["vs_plain"] == 1.0
    assert "Steering head to head" in m.markdown
    # the map's own direction check: plain's concept minus the unsteered one, per prompt, averaged (by hand here)
    sweep = m.sweep
    base = sweep[sweep.method == "none"].set_index("prompt").concept
    plain = sweep[(sweep.method == "plain") & (sweep.r == 1.0)].set_index("prompt").concept
    check = m.numbers["map_direction_check"]
    assert check["per_r"]["1.0"]["shift"] == pytest.approx(float((plain - base.loc[plain.index]).mean()))
    assert check["per_r"]["1.0"]["n_prompts"] == 4 and check["steers"] == (check["ci_low"] > 0)
    assert "On these prompts plain steering moves the concept by" in m.markdown


def test_model_steering_map_refuses_too_little_text(tmp_path):
    from tl_glp.studies.steering_map import model_steering_map

    with pytest.raises(ValueError, match="pass more text"):
        model_steering_map(
            None, None, None, None, None, ["a b", "c d", "one two three"], hook_name="h", out_dir=tmp_path
        )


def test_run_testbed_map_writes_the_map_and_its_numbers_end_to_end(tmp_path):
    """The README's larger map, at toy sizes: activations, prior, SAE, direction, sweep, diagnosis, files."""
    import json

    from tl_glp.studies.steering_map import run_testbed_map

    m = run_testbed_map(
        tmp_path,
        seed=1,
        n_docs=80,
        prior_steps=3,
        sae_steps=3,
        n_prompts=2,
        strengths=(1.0,),
        positions=("last",),
        max_new_tokens=2,
        n_probe_prefixes=200,
        n_diagnose=6,
    )
    numbers = json.loads((tmp_path / "numbers.json").read_text())
    assert numbers["seed"] == 1 and numbers["prior_steps"] == 3 and numbers["seconds_map"] > 0
    assert {f"map_gain_grammatical_{p}" for p in ("prior", "sae", "sae+error", "pca k=16", "gaussian cap")} <= set(
        numbers
    )
    assert (tmp_path / "map.md").read_text() == m.markdown and (tmp_path / "prior" / "model.safetensors").is_file()
    assert set(m.sweep.method) == {
        "none",
        "plain",
        "prior",
        "sae",
        "sae+error",
        "pca k=16",
        "gaussian cap",
        *CHEAP,
        "gated prior",
        "prior (keep w, x0 outside k=16)",
    }
    gate = m.diagnosis.rows[m.diagnosis.rows.projector == "gated prior"]
    assert gate.gate_t.notna().all() and (gate.moved[gate.gate_t == 0] == 0).all()


def test_model_steering_map_with_outside_judges(tiny_model, tiny_tokenizer, tmp_path):
    """Concept by VADER, fluency by another model's NLL and by distinct-2: every gain table is read on the
    columns the judges wrote, and the concept column is VADER's own score of each continuation."""
    from conftest import make_tiny_model, random_sentences
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from tl_glp import GenerativePrior, collect_activations
    from tl_glp.steering.scorers import DistinctN, ForeignNLL, VaderScorer, distinct_n
    from tl_glp.studies.steering_map import model_steering_map

    hook = "blocks.1.hook_resid_post"
    texts = random_sentences(60, seed=5, length=8)
    acts = collect_activations(tiny_model, texts[:30], hook, progress=False)
    torch.manual_seed(0)
    prior = GenerativePrior.from_activations(acts, n_blocks=1)
    judge = ForeignNLL(make_tiny_model(tiny_tokenizer, n_layers=1, seed=9), name="nll_other")
    m = model_steering_map(
        tiny_model,
        prior,
        acts[0 : len(acts)],
        None,
        torch.randn(32, generator=torch.Generator().manual_seed(1)),
        texts[30:],
        hook_name=hook,
        out_dir=tmp_path,
        n_prompts=4,
        strengths=(0.5, 2.0),
        positions=("last",),
        max_new_tokens=4,
        pca_k=4,
        n_diagnose=4,
        concept=VaderScorer("positive"),
        scorers=[judge, DistinctN(2)],
        fluencies=("nll_other", "distinct_2"),
        prompts=["the day was", "we saw the", "my friend said", "it is a", "never used"],
        n_boot=20,
        progress=False,
    )
    # the prompts passed (the first n_prompts of them), not prefixes of the texts
    assert list(dict.fromkeys(m.sweep.prompt)) == ["the day was", "we saw the", "my friend said", "it is a"]
    assert set(m.gains) == {"nll_other", "distinct_2"}
    assert {"steering_map_pareto_nll_other.png", "steering_map_pareto_distinct_2.png"} <= set(m.figures)
    vader = SentimentIntensityAnalyzer()
    assert m.sweep.concept.tolist() == [vader.polarity_scores(c)["compound"] for c in m.sweep.continuation]
    assert m.sweep.distinct_2.tolist() == distinct_n(m.sweep.continuation.tolist(), 2)


def test_standard_projectors_add_the_guided_ones_by_cost():
    from tl_glp import GenerativePrior
    from tl_glp.studies.steering_map import standard_projectors

    torch.manual_seed(0)
    natural = torch.randn(400, 8)
    prior = GenerativePrior.from_activations(natural, n_blocks=1)
    w = torch.eye(8)[0]
    names = {
        g: [p.name for p in standard_projectors(prior, natural, direction=w, pca_k=4, guided=g)]
        for g in ("none", "cheap", "all")
    }
    assert names["none"] == ["plain", "prior", "pca k=4", "gaussian cap"]
    assert names["cheap"] == names["none"] + CHEAP
    assert names["all"] == names["cheap"] + ["gated prior", "prior (keep w, x0 outside k=4)"]
    no_direction = [p.name for p in standard_projectors(prior, natural, pca_k=4, guided="all")]
    assert not any("keep w" in n for n in no_direction)  # keep-w needs the direction
    with pytest.raises(ValueError, match="guided"):
        standard_projectors(prior, natural, guided="some")  # type: ignore[arg-type]
