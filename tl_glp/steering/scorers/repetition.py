"""Repetition: the fluency signal that an NLL misses. A model, the steered one or another, gives "of of of
of" a low NLL (each repeat is easy to predict); counting repeated n-grams does not.

Tokenisation: whitespace words, lower-cased (``text.lower().split()``); punctuation stays attached to
its word. The n-grams of a text are its runs of ``n`` consecutive words. A text with fewer than ``n``
words holds no n-gram and counts as fully repetitive (distinct-n 0, repeated share 1): a generation of
a dozen tokens that makes fewer than two words is whitespace or one run-on string.

Example:
    >>> distinct_n(["the cat saw the cat", "of of of of"], 2)
    [0.75, 0.3333333333333333]
    >>> repeated_ngram_share(["the cat saw the cat", "a b c"], 2)
    [0.5, 0.0]
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tl_glp.steering.scorers.base import Generations, scorer_name


def ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    """The word n-grams of ``text`` in order (whitespace words, lower-cased).

    >>> ngrams("The cat sat", 2)
    [('the', 'cat'), ('cat', 'sat')]
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    words = text.lower().split()
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str], n: int = 2) -> list[float]:
    """Per text: distinct n-grams / all n-grams (1 = no n-gram repeats; 0 for a text without n-grams)."""
    out = []
    for text in texts:
        grams = ngrams(text, n)
        out.append(len(set(grams)) / len(grams) if grams else 0.0)
    return out


def repeated_ngram_share(texts: Sequence[str], n: int = 2) -> list[float]:
    """Per text: the share of n-gram occurrences whose n-gram occurs more than once in the text (first
    occurrences included; 0 = no repeats, 1 for a text without n-grams)."""
    out = []
    for text in texts:
        counts = Counter(ngrams(text, n))
        total = sum(counts.values())
        out.append(sum(c for c in counts.values() if c > 1) / total if total else 1.0)
    return out


class DistinctN:
    """Scorer: :func:`distinct_n` of each continuation (column ``distinct_<n>``; higher = less repetitive)."""

    def __init__(self, n: int = 2, name: str | None = None) -> None:
        ngrams("", n)  # validates n
        self.n, self.name = n, name or f"distinct_{n}"

    def __call__(self, model: Any, gens: Generations) -> list[float]:
        return distinct_n(gens.continuations, self.n)


class RepeatedNgramShare:
    """Scorer: :func:`repeated_ngram_share` of each continuation (column ``repeated_<n>``; lower = better)."""

    def __init__(self, n: int = 2, name: str | None = None) -> None:
        ngrams("", n)
        name = name or f"repeated_{n}"
        if not name.startswith("repeated"):
            raise ValueError(f"RepeatedNgramShare: name {name!r} must start with 'repeated' (read as lower-is-better).")
        self.n, self.name = n, name

    def __call__(self, model: Any, gens: Generations) -> list[float]:
        return repeated_ngram_share(gens.continuations, self.n)


class FlooredNLL:
    """Fluency that degenerate text cannot win: an NLL scorer's value where the continuation's
    distinct-n is at least ``floor``, else ``penalty`` (the NLL of a uniform guess over the judge's
    vocabulary, ``ln V``, by default: repetitive text counts as no better than noise).

    ``nll``: any NLL scorer (e.g. :class:`~tl_glp.steering.scorers.ForeignNLL`, whose ``uniform_nll``
    gives the default penalty, or :func:`~tl_glp.steering.scorers.nll_fluency`, whose default penalty
    is ``ln(model.cfg.d_vocab)`` of the model the sweep passes). Column ``<nll's name>_floored``.

    Example:
        >>> const = lambda model, gens: [1.0] * len(gens)
        >>> const.name = "nll_const"
        >>> gens = Generations(["p", "p"], ["a fine day out", "of of of of"], [], [])
        >>> s = FlooredNLL(const, floor=0.5, penalty=9.0)
        >>> s.name, s(None, gens)
        ('nll_const_floored', [1.0, 9.0])
    """

    def __init__(
        self, nll: Any, *, floor: float = 0.5, n: int = 2, penalty: float | None = None, name: str | None = None
    ) -> None:
        if not 0.0 <= floor <= 1.0:
            raise ValueError(f"FlooredNLL: floor is a distinct-{n} value in [0, 1], got {floor}.")
        ngrams("", n)
        self.nll, self.floor, self.n, self.penalty = nll, float(floor), n, penalty
        self.name = name or f"{scorer_name(nll)}_floored"
        if not self.name.startswith("nll"):
            raise ValueError(f"FlooredNLL: name {self.name!r} must start with 'nll' (read as lower-is-better).")

    def penalty_for(self, model: Any) -> float:
        """The value a repetitive continuation gets (``penalty``, else ``ln V`` as described above)."""
        if self.penalty is not None:
            return float(self.penalty)
        uniform = getattr(self.nll, "uniform_nll", None)
        if uniform is not None:
            return float(uniform)
        vocab = getattr(getattr(model, "cfg", None), "d_vocab", None)
        if vocab is None:
            raise ValueError("FlooredNLL: cannot tell the vocabulary size for the default penalty; pass penalty=...")
        return math.log(int(vocab))

    def __call__(self, model: Any, gens: Generations) -> list[float]:
        values = self.nll(model, gens)
        penalty = self.penalty_for(model)
        distinct = distinct_n(gens.continuations, self.n)
        return [float(v) if d >= self.floor else penalty for v, d in zip(values, distinct)]
