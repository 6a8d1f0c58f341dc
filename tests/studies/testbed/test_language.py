import random

import numpy as np
import pytest

from tl_glp.studies.testbed.datasets import build_datasets
from tl_glp.studies.testbed.language import NEGATIVE, POSITIVE, Language
from tl_glp.studies.testbed.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def language():
    return Language()


def test_generated_text_is_grammatical_and_shuffled_text_is_not(language):
    docs = list(language.documents(500, seed=4))
    assert all(language.is_grammatical(d.text) for d in docs)
    rng = random.Random(0)
    rejected = 0
    for d in docs[:200]:
        words = d.words[:]
        rng.shuffle(words)
        rejected += not language.is_grammatical(" ".join(words))
    assert rejected / 200 > 0.95
    assert not language.is_grammatical("the dogs chases a ball .")  # agreement
    assert not language.is_grammatical("a dogs chased the ball .")  # determiner number
    assert language.is_grammatical("the dogs chased a red ball . they were happy .")
    assert language.is_grammatical("the dog did not")  # a valid beginning


def test_latents_are_recorded_per_word_and_probabilities_are_exact(language):
    doc = language.sample(seed=7)
    assert all(len(v) == len(doc.words) for v in doc.latents.values())
    assert all(lp <= 0 for lp in doc.logprobs)
    from tl_glp.studies.testbed.language import SHARED_VERBS, VERBS

    past_forms = (
        {"was", "were", "did"} | {v[2] for verbs in VERBS.values() for v in verbs} | {v[2] for v in SHARED_VERBS}
    )
    present_forms = {"is", "are", "does", "do"} | {v[1] for verbs in VERBS.values() for v in verbs}
    for seed in range(20):
        doc = language.sample(seed=seed)
        for i, w in enumerate(doc.words):
            if w in past_forms:
                assert doc.latents["tense"][i] == "past"
            if w in present_forms:
                assert doc.latents["tense"][i] == "present"
    # sentiment words follow the latent sentiment, negated judgements flip the adjective
    for i, w in enumerate(doc.words):
        if w in POSITIVE + NEGATIVE and i > 0 and doc.words[i - 1] in ("was", "were", "is", "are", "not"):
            flipped = doc.words[i - 1] == "not"
            expressed = (
                ("positive" if w in POSITIVE else "negative")
                if not flipped
                else ("negative" if w in POSITIVE else "positive")
            )
            assert expressed == doc.latents["sentiment"][i]


def test_some_documents_flip_sentiment_and_topics_share_words(language):
    docs = list(language.documents(400, seed=1))
    flips = sum(len(set(d.latents["sentiment"])) == 2 for d in docs)
    assert 0.04 < flips / len(docs) < 0.18
    topic_of = {}
    for d in docs:
        for w, t in zip(d.words, d.latents["topic"]):
            topic_of.setdefault(w, set()).add(t)
    assert any(len(t) > 1 for w, t in topic_of.items() if w in ("ball", "friend", "saw"))


def test_concept_scorers(language):
    assert language.sentiment_score("it was happy . they were lovely .") == 1.0
    assert language.sentiment_score("it was not happy .") == -1.0
    assert np.isnan(language.sentiment_score("the dog ran ."))
    assert language.topic_score("the dog chased the cat .", "animals") == 1.0


def test_tokenizer_round_trips_the_vocabulary(language):
    tok = build_tokenizer(language.vocabulary)
    text = language.sample(seed=2).text
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.unk_token_id not in ids
    assert tok.decode(ids[1:]) == text


def test_probing_datasets_are_balanced_and_labelled_by_the_latents(language):
    sets = build_datasets(language, n=200, seed=0)
    assert set(sets) == {
        "sentiment",
        "tense",
        "number",
        "negation",
        "topic_animals",
        "topic_food",
        "topic_sports",
        "topic_music",
    }
    for frame in sets.values():
        assert sorted(frame.target.value_counts().tolist()) == [100, 100]
    tense = sets["tense"]
    past_words = {"was", "were", "did"}
    for prompt, target in zip(tense.prompt, tense.target):
        words = set(prompt.split())
        if words & past_words:
            assert target == "yes"
        if words & {"is", "are", "does", "do"}:
            assert target == "no"
    neg = sets["negation"]
    for prompt, target in zip(neg.prompt, neg.target):
        last_sentence = prompt.split(" . ")[-1]
        assert (target == "yes") == ("not" in last_sentence.split())
