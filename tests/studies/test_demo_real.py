"""The demo's real-model pieces (tl_glp.studies.demo.real): the direction check, the probing subsets,
the offline corpus and the outside judges."""

import numpy as np
import pandas as pd
import pytest

from tl_glp.studies.demo import real


def _sweep(shifts: dict[float, list[float]], base: list[float]) -> pd.DataFrame:
    rows = [{"prompt": f"p{i}", "method": "none", "r": 0.0, "concept": b} for i, b in enumerate(base)]
    for r, values in shifts.items():
        rows += [{"prompt": f"p{i}", "method": "plain", "r": r, "concept": v} for i, v in enumerate(values)]
    rows += [{"prompt": "p0", "method": "prior", "r": 1.0, "concept": 9.0}]  # other methods are ignored
    return pd.DataFrame(rows)


def test_direction_check_picks_the_largest_mean_shift_and_its_bootstrap_ci():
    rng = np.random.default_rng(0)
    base = rng.uniform(-0.2, 0.2, 12).tolist()
    small = [b + 0.05 + 0.01 * rng.standard_normal() for b in base]
    large = [b + 0.4 + 0.1 * rng.standard_normal() for b in base]
    check = real.direction_check(_sweep({0.25: small, 1.0: large}, base), n_boot=500, seed=1)
    d = np.asarray(large) - np.asarray(base)
    assert check["best_r"] == 1.0 and check["steers"]
    assert check["shift"] == pytest.approx(d.mean()) and check["unsteered"] == pytest.approx(np.mean(base))
    assert check["ci_low"] < d.mean() < check["ci_high"] and check["n_prompts"] == 12
    # the bootstrap CI of a mean: about +-1.96 standard errors
    se = d.std(ddof=1) / np.sqrt(len(d))
    assert check["ci_high"] - check["ci_low"] == pytest.approx(2 * 1.96 * se, rel=0.3)
    assert set(check["per_r"]) == {"0.25", "1.0"}


def test_direction_check_says_no_when_the_ci_holds_zero_and_skips_unscored_prompts():
    base = [0.0, 0.1, float("nan"), -0.1, 0.05, 0.0]
    noise = [0.3, -0.2, 0.5, -0.1, 0.1, -0.25]  # mean shift near 0 with a wide spread
    check = real.direction_check(_sweep({0.5: noise}, base), n_boot=500, seed=0)
    assert not check["steers"] and check["ci_low"] < 0 < check["ci_high"]
    assert check["n_prompts"] == 5  # the prompt without an unsteered score is left out
    empty = real.direction_check(_sweep({}, base))
    assert not empty["steers"] and empty["per_r"] == {}


def test_probing_subsets_spread_over_the_datasets_and_balance_the_classes():
    from tl_glp.probing import sae_probes_datasets

    names = sae_probes_datasets()
    subsets = real.probing_subsets(3, 240, seed=0)
    assert [d.name for d in subsets] == [names[0], names[len(names) // 2], names[-1]]
    for ds in subsets:
        assert len(ds) <= 240 and np.bincount(ds.labels).min() == np.bincount(ds.labels).max()
        assert len(set(ds.train_idx) & set(ds.test_idx)) == 0 and len(ds.test_idx) >= 10
    again = real.probing_subsets(3, 240, seed=0)
    assert all(a.prompts == b.prompts for a, b in zip(subsets, again))  # seeded


def test_offline_texts_come_from_the_split_and_refuse_too_many(monkeypatch):
    from tl_glp import corpora

    train = [f"train document {i}" for i in range(50)]
    held = [f"eval document {i}" for i in range(10)]
    fake = corpora.CorpusSplit(train, held, np.arange(50), np.arange(50, 60))
    monkeypatch.setattr(corpora, "sae_probes_corpus", lambda **kw: fake)
    a, b = real.offline_texts(20, 5, seed=3, progress=False)
    assert len(a) == 20 and len(set(a)) == 20 and set(a) <= set(train)
    assert len(b) == 5 and set(b) <= set(held)
    assert real.offline_texts(20, 5, seed=3, progress=False) == (a, b)
    with pytest.raises(ValueError, match="Lower n_docs"):
        real.offline_texts(51, 5, progress=False)


def test_outside_judges_score_with_vader_distinct_2_and_a_judge_model(tmp_path):
    pytest.importorskip("vaderSentiment")
    from test_llama_path import save_tiny_llama
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from tl_glp.steering.scorers import Generations, distinct_n

    save_tiny_llama(tmp_path / "judge")
    concept, scorers, fluencies, note = real.outside_judges(str(tmp_path / "judge"), progress=False)
    assert fluencies == ("nll_judge", "distinct_2") and "VADER" in note and "judge" in note
    texts = [" a wonderful happy day", " the the the the", " an awful sad night"]
    gens = Generations(["x"] * 3, texts, [], [])
    vader = SentimentIntensityAnalyzer()
    assert concept(None, gens) == [vader.polarity_scores(t)["compound"] for t in texts]
    nll, d2 = (s(None, gens) for s in scorers)
    assert d2 == distinct_n(texts, 2) and all(np.isfinite(nll))
    no_model = real.outside_judges("", progress=False)
    assert no_model[2] == ("distinct_2",)


def test_the_report_states_the_direction_check_and_why_the_head_to_head_is_left_out():
    from tl_glp.studies.demo.report import _steering_intro

    base = [0.0, 0.1, -0.1, 0.05, 0.0, 0.02]
    check = real.direction_check(_sweep({0.5: [0.3, -0.2, 0.1, -0.1, 0.1, -0.25]}, base), n_boot=200, seed=0)
    numbers = {"judges": "VADER; distinct-2", "direction_check": check, "steering_map_skipped": "the CI holds 0"}
    text = "\n".join(_steering_intro(numbers))
    assert f"{check['shift']:+.3f}" in text and "does **not** steer" in text
    assert "head to head is left out: the CI holds 0" in text
    # nothing scored at all: the report says so instead of printing NaNs
    empty = "\n".join(_steering_intro({"judges": "VADER", "direction_check": real.direction_check(_sweep({}, base))}))
    assert "scored none" in empty and "nan" not in empty.lower()
    # the testbed's report has no judges and no direction check
    assert "Direction check" not in "\n".join(_steering_intro({}))
