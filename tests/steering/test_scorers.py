"""The judges of steered text, each against a hand computation: VADER, NLL under another model,
repetition, the floored NLL, and the Pareto gain read on several fluency columns of one sweep."""

import math
import sys

import pandas as pd
import pytest
import torch
from conftest import make_tiny_model

from tl_glp.steering import matched_concept_gain, matched_concept_gains, steering_sweep
from tl_glp.steering.scorers import (
    DistinctN,
    FlooredNLL,
    ForeignNLL,
    Generations,
    RepeatedNgramShare,
    VaderScorer,
    distinct_n,
    higher_is_better,
    repeated_ngram_share,
)

HOOK = "blocks.1.hook_resid_post"


def gens_of(prompts, continuations):
    return Generations(list(prompts), list(continuations), [], [])


# ---------------------------------------------------------------------------------------------- VADER


def vader_by_hand(valences):
    """VADER's compound for words without rules: the valence sum s mapped to s / sqrt(s^2 + 15), 4 decimals."""
    s = sum(valences)
    return round(s / math.sqrt(s * s + 15), 4)


def test_vader_compound_matches_the_lexicon_and_normalisation_by_hand():
    scorer = VaderScorer("positive")
    lexicon = scorer.analyzer.lexicon
    gens = gens_of(["I think the food was", "Then came a"], [" good", " good great day"])
    expected = [vader_by_hand([lexicon["good"]]), vader_by_hand([lexicon["good"], lexicon["great"]])]
    assert scorer(None, gens) == pytest.approx(expected, abs=1e-9)
    assert expected[0] == pytest.approx(0.4404) and expected[1] > expected[0]
    # towards negative: the same numbers, negated; "terrible" has a negative valence
    negative = VaderScorer("negative")
    assert negative(None, gens) == pytest.approx([-v for v in expected], abs=1e-9)
    bad = gens_of(["It was"], [" terrible"])
    assert negative(None, bad) == pytest.approx([-vader_by_hand([lexicon["terrible"]])]) and negative(None, bad)[0] > 0


def test_vader_scores_the_continuation_only_unless_asked_for_the_full_text():
    gens = gens_of(["What a wonderful"], [" day"])
    assert VaderScorer()(None, gens) == [0.0]  # "day" carries no sentiment; the prompt's "wonderful" is not counted
    full = VaderScorer(text="full")(None, gens)[0]
    assert full == pytest.approx(vader_by_hand([VaderScorer().analyzer.lexicon["wonderful"]]))


def test_vader_errors_name_the_install_command_and_bad_targets(monkeypatch):
    with pytest.raises(ValueError, match="'positive' or 'negative'"):
        VaderScorer("happy")
    monkeypatch.setitem(sys.modules, "vaderSentiment.vaderSentiment", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install vadersentiment"):
        VaderScorer()


# ------------------------------------------------------------------------------ NLL under another model


def tiny_llama(vocab_size, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(cfg).eval()


def nll_by_hand(forward, tokenizer, prompt_words, continuation_words):
    """-mean log p(continuation token | BOS, prompt, earlier continuation) from one unpadded forward."""
    ctx = [tokenizer.bos_token_id, *tokenizer.convert_tokens_to_ids(prompt_words)]
    cont = tokenizer.convert_tokens_to_ids(continuation_words)
    with torch.no_grad():
        logits = forward(torch.tensor([ctx + cont]))[0]
    logprobs = torch.log_softmax(logits.float(), -1)
    return -sum(float(logprobs[len(ctx) - 1 + j, cont[j]]) for j in range(len(cont))) / len(cont)


CASES = [  # different lengths: the scorer pads the batch, the hand computation does not
    ("the dog", "ran and ran"),
    ("a big red cat was", "happy"),
    ("the", "cat chased the small ball ."),
]


def test_foreign_nll_under_a_transformers_model_matches_a_hand_computation(tiny_tokenizer, tmp_path):
    judge_model = tiny_llama(tiny_tokenizer.vocab_size)
    judge = ForeignNLL(judge_model, tiny_tokenizer, batch_size=2, name="nll_llama")
    prompts, conts = [p for p, _ in CASES], [" " + c for _, c in CASES]
    got = judge(None, gens_of(prompts, conts))
    expected = [
        nll_by_hand(lambda t: judge_model(input_ids=t).logits, tiny_tokenizer, p.split(), c.split()) for p, c in CASES
    ]
    assert got == pytest.approx(expected, abs=1e-5)
    assert judge.uniform_nll == pytest.approx(math.log(tiny_tokenizer.vocab_size))
    # the same judge loaded from a saved folder scores the same
    judge_model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    assert ForeignNLL(str(tmp_path))(None, gens_of(prompts, conts)) == pytest.approx(expected, abs=1e-5)


def test_foreign_nll_under_a_transformerlens_model_matches_a_hand_computation(tiny_tokenizer):
    judge_model = make_tiny_model(tiny_tokenizer, n_layers=2, seed=3)  # carries its tokenizer
    judge = ForeignNLL(judge_model)
    got = judge(None, gens_of([p for p, _ in CASES], [" " + c for _, c in CASES]))
    expected = [nll_by_hand(judge_model, tiny_tokenizer, p.split(), c.split()) for p, c in CASES]
    assert got == pytest.approx(expected, abs=1e-5)


def test_foreign_nll_ignores_the_steered_model_and_refuses_bad_settings(tiny_tokenizer, tiny_model):
    judge = ForeignNLL(tiny_llama(tiny_tokenizer.vocab_size), tiny_tokenizer)
    gens = gens_of(["the dog"], [" ran"])
    assert judge(tiny_model, gens) == judge(None, gens)
    assert math.isnan(judge(None, gens_of(["the dog"], [""]))[0])  # nothing to score
    with pytest.raises(ValueError, match="must start with 'nll'"):
        ForeignNLL(tiny_model, name="gemma")
    with pytest.raises(ValueError, match="no tokenizer"):
        ForeignNLL(tiny_llama(20))
    with pytest.raises(ValueError, match="neither a local model folder nor a .gguf file"):
        ForeignNLL("/no/such/model")


# ------------------------------------------------------------------------------------------ repetition


def test_distinct_n_and_repeated_share_match_hand_counts():
    texts = ["the cat saw the cat", "of of of of", "A a b", "one", "", "x y z w"]
    # bigrams: the-cat cat-saw saw-the the-cat (3 distinct of 4); of-of x3 (1 of 3); a-a a-b (lower-cased, 2 of 2);
    # "one" and "" have no bigram (counted as fully repetitive); x-y y-z z-w (3 of 3)
    assert distinct_n(texts, 2) == [3 / 4, 1 / 3, 1.0, 0.0, 0.0, 1.0]
    # occurrences of bigrams that occur more than once: the-cat twice of 4; all 3 of-of; none; none
    assert repeated_ngram_share(texts, 2) == [2 / 4, 1.0, 0.0, 1.0, 1.0, 0.0]
    # unigrams: "the cat saw the cat" has 3 distinct words of 5, and 4 of its 5 words repeat
    assert distinct_n(texts[:1], 1) == [3 / 5] and repeated_ngram_share(texts[:1], 1) == [4 / 5]
    assert distinct_n(["a b a b a b"], 3) == [2 / 4]  # a-b-a b-a-b a-b-a b-a-b
    with pytest.raises(ValueError, match="at least 1"):
        distinct_n(["a"], 0)


def test_repetition_scorers_and_floored_nll(tiny_tokenizer):
    gens = gens_of(["p", "q", "r"], [" the dog ran and the cat sat", " of of of of", " ran"])
    assert DistinctN(2)(None, gens) == distinct_n(gens.continuations, 2) and DistinctN(3).name == "distinct_3"
    assert RepeatedNgramShare(2)(None, gens) == repeated_ngram_share(gens.continuations, 2)
    judge = ForeignNLL(tiny_llama(tiny_tokenizer.vocab_size), tiny_tokenizer, name="nll_j")
    floored = FlooredNLL(judge, floor=0.5)
    nll = judge(None, gens)
    got = floored(None, gens)
    # distinct-2: 1.0 (kept), 1/3 and 0 (one word, no bigram; below the floor: ln V, a uniform guess over the judge's vocabulary)
    assert got == pytest.approx([nll[0], math.log(tiny_tokenizer.vocab_size), math.log(tiny_tokenizer.vocab_size)])
    assert floored.name == "nll_j_floored" and not higher_is_better(floored.name)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        FlooredNLL(judge, floor=2.0)
    with pytest.raises(ValueError, match="penalty="):
        FlooredNLL(lambda m, g: [1.0] * len(g), name="nll_x")(None, gens)


def test_direction_of_each_column():
    assert [
        higher_is_better(c) for c in ("nll", "nll_gemma", "repeated_2", "distinct_2", "grammatical", "concept")
    ] == [
        False,
        False,
        False,
        True,
        True,
        True,
    ]


# ------------------------------------------------------------------------- several fluencies, one sweep


def test_degenerate_text_wins_on_nll_but_not_on_repetition():
    """A method that buys its NLL with repetition: ahead on NLL, behind on distinct-2 and the floored NLL."""
    rows = []
    for i in range(10):
        for m in ("plain", "loops"):
            for r in (0.5, 1.0, 2.0):
                loops = m == "loops"
                rows.append(
                    {
                        "prompt": f"p{i}",
                        "method": m,
                        "r": r,
                        "concept": r + 0.01 * i,
                        "nll_gemma": 2.0 + r - (1.0 if loops else 0.0),
                        "distinct_2": 0.2 if loops else 0.95,
                        "nll_gemma_floored": 12.0 if loops else 2.0 + r,
                    }
                )
    df = pd.DataFrame(rows)
    by = {f: matched_concept_gain(df, fluency=f, method="loops", n_boot=100) for f in df.columns[4:]}
    assert by["nll_gemma"].gain == pytest.approx(1.0) and by["nll_gemma"].ci_low > 0  # lower NLL, read as better
    assert by["distinct_2"].gain == pytest.approx(-0.75)
    assert by["nll_gemma_floored"].gain < 0 and by["nll_gemma_floored"].ci_high < 0


def test_a_sweep_records_several_fluency_columns_and_reads_a_gain_on_each(tiny_model, tiny_tokenizer):
    judge = ForeignNLL(make_tiny_model(tiny_tokenizer, n_layers=1, seed=7), name="nll_other")
    direction = torch.randn(32, generator=torch.Generator().manual_seed(0))
    df = steering_sweep(
        tiny_model,
        direction,
        ["the dog", "a red cat was", "the big ball"],
        strengths=[0.5, 2.0],
        methods=["plain"],
        act_norm=5.0,
        hook_name=HOOK,
        max_new_tokens=5,
        scorers=[judge, DistinctN(2), FlooredNLL(judge, floor=0.5)],
        progress=False,
    )
    assert {"nll", "nll_other", "distinct_2", "nll_other_floored"} <= set(df.columns)
    # each column is what its scorer gives on the sweep's own text
    row = df.iloc[-1]
    assert row["distinct_2"] == distinct_n([row["continuation"]], 2)[0]
    assert row["nll_other"] == pytest.approx(judge.nll([row["prompt"]], [row["continuation"]])[0], abs=1e-5)
    # a second method from the same frame (relabelled rows) compares on every fluency column at once
    other = df[df.method == "plain"].assign(method="twin")
    both = pd.concat([df, other])
    for fluency in ("nll", "nll_other", "distinct_2", "nll_other_floored"):
        t = matched_concept_gains(both, fluency=fluency, n_boot=20)
        assert t.gain.tolist() == pytest.approx([0.0])  # identical rows: no gain on any fluency
