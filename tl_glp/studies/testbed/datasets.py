"""Probing datasets from the testbed language, in the SAE-Probes format (``prompt``, ``target``).

One dataset per latent value (each topic against the rest); each prompt is a document prefix and its target is the latent's
value at the prefix's last word, balanced 50/50. Cut points are chosen where the value is
knowable from the words so far and, for sentence-level variables, where the model needs it:
number after the subject's noun or pronoun and at the sentence's end (the next sentence may refer
back with "it"/"they"), negation at the sentence's end, sentiment at the copula before a judged
adjective once words have expressed it, topic after a topic-specific word.

Example:
    >>> from tl_glp.studies.testbed.language import Language
    >>> sets = build_datasets(Language(), n=200, seed=0)
    >>> sorted(sets)
    ['negation', 'number', 'sentiment', 'tense', 'topic_animals', 'topic_food', 'topic_music', 'topic_sports']
    >>> sets["sentiment"]["target"].value_counts().tolist()
    [100, 100]
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from tl_glp.studies.testbed.language import (
    END,
    NEGATIVE,
    NOUNS,
    POSITIVE,
    SHARED_NOUNS,
    TOPICS,
    VERBS,
    Document,
    Language,
)

Target = Callable[[Document, int], "str | None"]


def _latent(name: str, positive: str) -> Target:
    return lambda doc, i: "yes" if doc.latents[name][i] == positive else "no"


def _topic(topic: str) -> Target:
    return lambda doc, i: "yes" if doc.latents["topic"][i] == topic else "no"


def _cut_ok(name: str) -> Callable[[Document, int], bool]:
    """Positions where the latent is determined by the words up to and including position i."""

    def sentence_pos(doc: Document, i: int) -> int:
        j = i
        while j > 0 and doc.words[j - 1] != END:
            j -= 1
        return i - j

    if name == "number":
        # where the next word depends on the subject's number: after the subject's noun or pronoun
        # (the verb agrees) and at the end of the sentence (a pronoun in the next one refers back)
        def uses_number(doc: Document, i: int) -> bool:
            w, pos = doc.words[i], sentence_pos(doc, i)
            if w == END or (pos == 0 and w in ("it", "they")):
                return True
            is_noun = w in SUBJECT_NOUNS
            return is_noun and (pos == 1 or (pos == 2 and doc.words[i - 1] not in SUBJECT_NOUNS))

        return uses_number
    if name == "negation":
        return lambda doc, i: doc.words[i] == END
    if name == "sentiment":
        # the copula before a judged adjective (the model needs the sentiment right here), once the
        # words so far have expressed the current sentiment at least once
        def evidence(doc: Document, i: int) -> bool:
            for j in range(i - 1, -1, -1):
                w = doc.words[j]
                if w in POSITIVE or w in NEGATIVE:
                    polarity = "positive" if w in POSITIVE else "negative"
                    if j > 0 and doc.words[j - 1] == "not":
                        polarity = "negative" if polarity == "positive" else "positive"
                    return polarity == doc.latents["sentiment"][i]
            return False

        return lambda doc, i: (
            doc.words[i] in ("was", "were", "is", "are")
            and i + 1 < len(doc.words)
            and doc.words[i + 1] != "not"
            and evidence(doc, i)
        )
    if name == "tense":
        return lambda doc, i: i >= 8  # past the first verb or copula
    if name == "topic":  # once a topic-specific noun or verb has appeared
        specific = {
            w for t in TOPICS for w in list(NOUNS[t]) + list(NOUNS[t].values()) + [f for v in VERBS[t] for f in v]
        }
        return lambda doc, i: i >= 4 and any(w in specific for w in doc.words[: i + 1])
    raise ValueError(f"no cut rule for latent {name!r}")


SUBJECT_NOUNS = {n for t in TOPICS for sg, pl in NOUNS[t].items() for n in (sg, pl)} | {
    n for sg, pl in SHARED_NOUNS.items() for n in (sg, pl)
}

SPECS: dict[str, tuple[str, Target]] = {
    "sentiment": ("sentiment", _latent("sentiment", "positive")),
    "tense": ("tense", _latent("tense", "past")),
    "number": ("number", _latent("number", "plural")),
    "negation": ("negation", _latent("negation", "negated")),
    "topic_animals": ("topic", _topic("animals")),
    "topic_food": ("topic", _topic("food")),
    "topic_sports": ("topic", _topic("sports")),
    "topic_music": ("topic", _topic("music")),
}


def build_datasets(language: Language, n: int = 800, seed: int = 0) -> dict[str, Any]:
    """``{name: DataFrame(prompt, target)}``, ``n`` balanced rows each, deterministic for ``seed``."""
    import pandas as pd

    out = {}
    for k, (name, (latent, target)) in enumerate(SPECS.items()):
        rng = random.Random(seed * 1000 + k)
        ok = _cut_ok(latent)
        rows: dict[str, list[str]] = {"yes": [], "no": []}
        while min(len(v) for v in rows.values()) < n // 2:
            doc = language.sample(rng=rng)
            cuts = [i for i in range(len(doc.words)) if ok(doc, i)]
            if not cuts:
                continue
            i = rng.choice(cuts)
            label = target(doc, i)
            if len(rows[label]) < n // 2:
                rows[label].append(" ".join(doc.words[: i + 1]))
        records = [(p, t) for t in ("yes", "no") for p in rows[t]]
        random.Random(seed).shuffle(records)
        out[name] = pd.DataFrame(records, columns=["prompt", "target"])
    return out
