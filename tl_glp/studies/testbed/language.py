"""A synthetic language with known latent variables: the ground truth the testbed is built on.

Documents read like simple English ("the small dogs chased a red ball . they were happy .") and
are generated word by word from a probabilistic grammar whose state holds document-level latents:

- ``topic``: one of :data:`TOPICS`; each has its own nouns and verbs, and some nouns are shared;
- ``sentiment``: positive or negative; a tenth of the documents flip it once, at a sentence
  boundary (rare enough that a model reading the words can track the current value);
- ``tense``: past or present, for every verb of the document;
- ``number``: singular or plural subject of the current sentence, with agreement of the verb,
  the determiner and the pronoun that refers back;
- ``negation``: whether the current sentence is negated ("is not", "did not chase"). A negated
  judgement uses an adjective of the *opposite* polarity ("the cat was not happy" in a negative
  document), so sentiment is not readable off single words.

Every emitted word comes with its probability under the generator and the latent values at that
word, so the language gives exact ground truth: per-token latents for probing datasets, a
grammaticality checker, concept scorers, and the generator's entropy given the latents (a lower
bound on any language model's loss).

Example:
    >>> lang = Language()
    >>> doc = lang.sample(seed=3)
    >>> lang.is_grammatical(doc.text)
    True
    >>> lang.is_grammatical("dogs the chased . ball a")
    False
    >>> sorted(doc.latents)
    ['negation', 'number', 'sentiment', 'tense', 'topic']
"""

from __future__ import annotations

import math
import random
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field

TOPICS = ("animals", "food", "sports", "music")

NOUNS = {  # singular -> plural
    "animals": {"dog": "dogs", "cat": "cats", "bird": "birds", "horse": "horses", "fox": "foxes"},
    "food": {"cake": "cakes", "apple": "apples", "soup": "soups", "bread": "breads", "pie": "pies"},
    "sports": {"team": "teams", "player": "players", "goal": "goals", "coach": "coaches", "match": "matches"},
    "music": {"song": "songs", "band": "bands", "drum": "drums", "singer": "singers", "piano": "pianos"},
}
SHARED_NOUNS = {"friend": "friends", "child": "children", "ball": "balls", "day": "days"}
VERBS = {  # base, third person singular present, past
    "animals": [("chase", "chases", "chased"), ("feed", "feeds", "fed"), ("watch", "watches", "watched")],
    "food": [("eat", "eats", "ate"), ("cook", "cooks", "cooked"), ("share", "shares", "shared")],
    "sports": [("kick", "kicks", "kicked"), ("win", "wins", "won"), ("train", "trains", "trained")],
    "music": [("play", "plays", "played"), ("hear", "hears", "heard"), ("sing", "sings", "sang")],
}
SHARED_VERBS = [("see", "sees", "saw"), ("like", "likes", "liked")]
POSITIVE = ("happy", "lovely", "great", "kind", "bright")
NEGATIVE = ("sad", "awful", "terrible", "cruel", "gloomy")
NEUTRAL_ADJ = ("small", "big", "red", "old", "new")
END = "."

P_FLIP = 0.1
P_NEGATION = 0.3
P_ADJ = 0.5
P_SENTIMENT_ADJ = 0.8
P_JUDGEMENT = 0.4
P_PRONOUN = 0.3


@dataclass
class Document:
    """A sampled document: its words, their log-probabilities and the latents at every word."""

    words: list[str]
    logprobs: list[float]
    latents: dict[str, list[str]] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _nouns(topic: str) -> dict[str, str]:
    return {**NOUNS[topic], **SHARED_NOUNS}


def _verbs(topic: str) -> list[tuple[str, str, str]]:
    return VERBS[topic] + SHARED_VERBS


class Language:
    """The generator, the grammaticality checker and the concept scorers of the testbed language."""

    def __init__(self, min_sentences: int = 3, max_sentences: int = 6) -> None:
        self.min_sentences, self.max_sentences = min_sentences, max_sentences
        self._categories = self._build_categories()

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocabulary(self) -> list[str]:
        """Every word of the language, in a fixed order (the tokenizer's ids follow it)."""
        words: list[str] = [
            "the",
            "a",
            "some",
            "it",
            "they",
            "not",
            "did",
            "does",
            "do",
            "is",
            "are",
            "was",
            "were",
            "and",
            END,
        ]
        for topic in TOPICS:
            for sg, pl in _nouns(topic).items():
                words += [sg, pl]
            for forms in _verbs(topic):
                words += list(forms)
        words += list(POSITIVE + NEGATIVE + NEUTRAL_ADJ)
        return list(dict.fromkeys(words))

    # ------------------------------------------------------------------ generation
    def sample(self, seed: int | None = None, rng: random.Random | None = None) -> Document:
        """One document with per-word log-probabilities and latents.

        Every random choice inside a sentence *is* a word choice (the determiner fixes or leaves
        open the subject's number, the word after the subject says transitive / negated /
        judgement), so each recorded probability is the exact next-word probability given the
        document-level latents (topic, sentiment, tense and where sentiment flips).
        """
        rng = rng or random.Random(seed)
        doc = Document([], [], {k: [] for k in ("topic", "sentiment", "tense", "number", "negation")})
        topic = rng.choice(TOPICS)
        sentiment = rng.choice(("positive", "negative"))
        tense = rng.choice(("past", "present"))
        n_sent = rng.randint(self.min_sentences, self.max_sentences)
        flip_at = rng.randint(1, n_sent - 1) if rng.random() < P_FLIP and n_sent > 1 else None
        last_number = None
        for s in range(n_sent):
            if flip_at is not None and s == flip_at:
                sentiment = "negative" if sentiment == "positive" else "positive"
            state = {"topic": topic, "sentiment": sentiment, "tense": tense}
            start = len(doc.words)
            steps = self._sentence(state, last_number)
            dist = next(steps)
            while True:
                words, probs = zip(*dist.items())
                word = rng.choices(words, probs)[0]
                doc.words.append(word)
                doc.logprobs.append(math.log(dist[word]))
                try:
                    dist = steps.send(word)
                except StopIteration:
                    break
            sentence = doc.words[start:]
            number = self._subject_number(sentence, last_number)
            negation = "negated" if "not" in sentence else "affirmative"
            for key, value in {**state, "number": number, "negation": negation}.items():
                doc.latents[key].extend([value] * len(sentence))
            last_number = number
        return doc

    def sample_texts(self, n: int, seed: int = 0) -> list[str]:
        """``n`` document texts (deterministic for a seed)."""
        rng = random.Random(seed)
        return [self.sample(rng=rng).text for _ in range(n)]

    def documents(self, n: int, seed: int = 0) -> Iterator[Document]:
        rng = random.Random(seed)
        for _ in range(n):
            yield self.sample(rng=rng)

    def _subject_number(self, sentence: list[str], last_number: str | None) -> str:
        if sentence[0] in ("it", "they"):
            return "plural" if sentence[0] == "they" else "singular"
        for word in sentence[1:3]:
            cats = self._categories.get(word, set())
            if "N_sg" in cats:
                return "singular"
            if "N_pl" in cats:
                return "plural"
        return last_number or "singular"

    def _sentence(self, state: dict[str, str], last_number: str | None) -> Generator[dict[str, float], str, None]:
        """Yield the distribution of each next word; the chosen word is sent back.

        Templates: transitive ``NP VERB NP .``, negated ``NP did/does/do not VERB NP .`` and
        judgement ``PRONOUN|NP COPULA (not) ADJ .``, with ``NP = DET (ADJ) NOUN``. A pronoun
        refers back to the previous subject and agrees with its number.
        """
        dets = {"the": 0.5, "a": 0.25, "some": 0.25}
        first = dets
        if last_number is not None:
            pronoun = "they" if last_number == "plural" else "it"
            first = {pronoun: P_PRONOUN, **{k: (1 - P_PRONOUN) * v for k, v in dets.items()}}
        word = yield first
        if word in ("it", "they"):
            plural = word == "they"
            yield from self._judgement(state, plural)
        else:
            noun = yield from self._after_determiner(state, word)
            plural = noun in set(_nouns(state["topic"]).values())
            verbs = _verbs(state["topic"])
            aux = "did" if state["tense"] == "past" else ("do" if plural else "does")
            form = 2 if state["tense"] == "past" else (0 if plural else 1)
            dist = {self._copula(state, plural): P_JUDGEMENT, aux: (1 - P_JUDGEMENT) * P_NEGATION}
            dist.update({v[form]: (1 - P_JUDGEMENT) * (1 - P_NEGATION) / len(verbs) for v in verbs})
            word = yield dist
            if word == self._copula(state, plural):
                yield from self._judgement(state, plural, copula_done=True)
            else:
                if word == aux:
                    yield {"not": 1.0}
                    yield _uniform([v[0] for v in verbs])
                det = yield dets
                yield from self._after_determiner(state, det)
        yield {END: 1.0}

    def _judgement(
        self, state: dict[str, str], plural: bool, copula_done: bool = False
    ) -> Generator[dict[str, float], str, None]:
        if not copula_done:
            yield {self._copula(state, plural): 1.0}
        own = POSITIVE if state["sentiment"] == "positive" else NEGATIVE
        other = NEGATIVE if state["sentiment"] == "positive" else POSITIVE
        word = yield {"not": P_NEGATION, **{a: (1 - P_NEGATION) / len(own) for a in own}}
        if word == "not":  # "not" + the opposite polarity expresses the document's sentiment
            yield _uniform(other)

    def _after_determiner(self, state: dict[str, str], det: str) -> Generator[dict[str, float], str, str]:
        """(ADJ) NOUN after a determiner ("a" singular, "some" plural, "the" either); returns the noun."""
        nouns = _nouns(state["topic"])
        forms = (
            list(nouns) if det == "a" else list(nouns.values()) if det == "some" else list(nouns) + list(nouns.values())
        )
        sentiment_adj = POSITIVE if state["sentiment"] == "positive" else NEGATIVE
        dist = {a: P_ADJ * (1 - P_SENTIMENT_ADJ) / len(NEUTRAL_ADJ) for a in NEUTRAL_ADJ}
        dist.update({a: P_ADJ * P_SENTIMENT_ADJ / len(sentiment_adj) for a in sentiment_adj})
        dist.update({n: (1 - P_ADJ) / len(forms) for n in forms})
        word = yield dist
        if word in dist and word not in forms:
            word = yield _uniform(forms)
        return word

    @staticmethod
    def _copula(state: dict[str, str], plural: bool) -> str:
        if state["tense"] == "past":
            return "were" if plural else "was"
        return "are" if plural else "is"

    # ------------------------------------------------------------------ checking
    def _build_categories(self) -> dict[str, set[str]]:
        cats: dict[str, set[str]] = {}

        def add(word: str, cat: str) -> None:
            cats.setdefault(word, set()).add(cat)

        for topic in TOPICS:
            for sg, pl in _nouns(topic).items():
                add(sg, "N_sg")
                add(pl, "N_pl")
            for base, third, past in _verbs(topic):
                add(base, "V_base")
                add(third, "V_3sg")
                add(past, "V_past")
        for adj in POSITIVE + NEGATIVE:
            add(adj, "A_sent")
        for adj in NEUTRAL_ADJ:
            add(adj, "A_neu")
        return cats

    def is_grammatical(self, text: str) -> bool:
        """True when every sentence of ``text`` is a sentence of the language (a trailing
        unfinished sentence must be a valid beginning of one)."""
        sentences, rest = _split_sentences(text)
        if not sentences and not rest:
            return False
        return all(self.sentence_ok(s) for s in sentences) and (not rest or self.sentence_ok(rest, prefix=True))

    def grammatical_fraction(self, text: str) -> float:
        """Share of the complete sentences of ``text`` that are grammatical (NaN if none)."""
        sentences, _ = _split_sentences(text)
        if not sentences:
            return float("nan")
        return sum(self.sentence_ok(s) for s in sentences) / len(sentences)

    def sentence_ok(self, words: list[str], prefix: bool = False) -> bool:
        """Whether ``words`` (without the final ".") form a sentence (or, with ``prefix``, begin one)."""
        return any(_match(words, pattern, self._categories, prefix) for pattern in _PATTERNS)

    # ------------------------------------------------------------------ concept scorers
    def sentiment_score(self, text: str) -> float:
        """(positive - negative) / judged adjectives in ``text``, reading "not ADJ" as the opposite:
        +1 all positive, -1 all negative, NaN if no sentiment word."""
        words = text.split()
        score, count = 0, 0
        for i, w in enumerate(words):
            polarity = 1 if w in POSITIVE else -1 if w in NEGATIVE else 0
            if polarity:
                if i > 0 and words[i - 1] == "not":
                    polarity = -polarity
                score += polarity
                count += 1
        return score / count if count else float("nan")

    def topic_score(self, text: str, topic: str) -> float:
        """Share of the topic-specific nouns and verbs in ``text`` that belong to ``topic``."""
        own = set(NOUNS[topic]) | set(NOUNS[topic].values()) | {f for v in VERBS[topic] for f in v}
        specific = set()
        for t in TOPICS:
            specific |= set(NOUNS[t]) | set(NOUNS[t].values()) | {f for v in VERBS[t] for f in v}
        hits = [w for w in text.split() if w in specific]
        return sum(w in own for w in hits) / len(hits) if hits else float("nan")


def _uniform(words) -> dict[str, float]:
    words = list(words)
    return {w: 1.0 / len(words) for w in words}


def _split_sentences(text: str) -> tuple[list[list[str]], list[str]]:
    sentences, current = [], []
    for w in text.split():
        if w == END:
            sentences.append(current)
            current = []
        else:
            current.append(w)
    return sentences, current


# Sentence patterns for the checker: slots with agreement tags ("sg"/"pl" subject number; "past"/"pres" tense).
_NP = {
    "sg": [["the|a", "N_sg"], ["the|a", "A", "N_sg"]],
    "pl": [["the|some", "N_pl"], ["the|some", "A", "N_pl"]],
}
_PATTERNS: list[list[str]] = []
for _num in ("sg", "pl"):
    _pron = "it" if _num == "sg" else "they"
    for _subj in _NP[_num]:
        for _obj in _NP["sg"] + _NP["pl"]:
            _PATTERNS.append(_subj + ["V_past"] + _obj)
            _PATTERNS.append(_subj + ["V_3sg" if _num == "sg" else "V_base"] + _obj)
            _PATTERNS.append(_subj + ["did", "not", "V_base"] + _obj)
            _PATTERNS.append(_subj + ["does" if _num == "sg" else "do", "not", "V_base"] + _obj)
    for _subj in _NP[_num] + [[_pron]]:
        for _cop in (["was"] if _num == "sg" else ["were"], ["is"] if _num == "sg" else ["are"]):
            _PATTERNS.append(_subj + _cop + ["A_sent"])
            _PATTERNS.append(_subj + _cop + ["not", "A_sent"])


def _match(words: list[str], pattern: list[str], cats: dict[str, set[str]], prefix: bool) -> bool:
    if len(words) > len(pattern) or (not prefix and len(words) != len(pattern)):
        return False
    for word, slot in zip(words, pattern):
        if slot == "A":
            ok = bool(cats.get(word, set()) & {"A_sent", "A_neu"})
        elif slot[0].isupper():
            ok = slot in cats.get(word, set())
        else:
            ok = word in slot.split("|")
        if not ok:
            return False
    return True
