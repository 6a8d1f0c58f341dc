"""The testbed's sentiment steering task, scored with ground truth: what the demo and the scaling
study steer towards, and how they judge the generations.

- :func:`judgement_prefixes`: prefixes of single-sentiment documents ending with the copula right
  before a judged adjective (where a sentiment direction is read off, at the last token).
- :func:`concept_scorer`: the ground-truth sentiment of a continuation (+1 all positive, -1 all
  negative, NaN when it holds no sentiment word), column ``concept``.
- :func:`grammatical_scorer`: 1.0 if the grammar accepts prompt + continuation, else 0.0, column
  ``grammatical`` (a fluency figure, higher is better).
- :func:`sentiment_steering_task`: all of it as a :class:`tl_glp.studies.scaling.SteeringTask`.

Example:
    >>> from tl_glp.studies.testbed.language import Language
    >>> lang = Language()
    >>> docs = list(lang.documents(200, seed=2))
    >>> all(p.split()[-1] in ("was", "were", "is", "are") for p in judgement_prefixes(docs, "positive"))
    True
    >>> task = sentiment_steering_task(lang, n_prompts=4)
    >>> len(task.prompts), task.fluency, [s.name for s in task.scorers]
    (4, 'grammatical', ['grammatical'])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tl_glp.studies.scaling import SteeringTask
from tl_glp.studies.testbed.language import NEGATIVE, POSITIVE, Language


def judgement_prefixes(docs: list[Any], sentiment: str) -> list[str]:
    """Prefixes of single-sentiment documents that end with the copula before a judged adjective."""
    out = []
    for doc in docs:
        if set(doc.latents["sentiment"]) != {sentiment}:
            continue
        for i, word in enumerate(doc.words[:-1]):
            if word in ("was", "were", "is", "are") and doc.words[i + 1] in POSITIVE + NEGATIVE:
                out.append(" ".join(doc.words[: i + 1]))
    return out


def concept_scorer(language: Language) -> Callable[[Any, Any], list[float]]:
    """Ground-truth sentiment of each continuation (NaN when it holds no sentiment word)."""

    def concept(model: Any, gens: Any) -> list[float]:
        return [language.sentiment_score(c) for c in gens.continuations]

    concept.name = "concept"  # type: ignore[attr-defined]
    return concept


def grammatical_scorer(language: Language) -> Callable[[Any, Any], list[float]]:
    """1.0 when the grammar accepts prompt + continuation, else 0.0."""

    def grammatical(model: Any, gens: Any) -> list[float]:
        return [float(language.is_grammatical(p + " " + c)) for p, c in zip(gens.prompts, gens.continuations)]

    grammatical.name = "grammatical"  # type: ignore[attr-defined]
    return grammatical


def steering_prompts(language: Language, n: int, seed: int = 3) -> list[str]:
    """The first three words of ``n`` documents: open prompts that steering can push either way."""
    return [" ".join(d.words[:3]) for d in language.documents(n, seed=seed)]


def sentiment_steering_task(language: Language, n_prompts: int = 24, seed: int = 0, n_direction_docs: int = 600) -> Any:
    """The positive-sentiment task: direction from judgement prefixes (last token), ground-truth
    concept score, grammaticality as fluency."""

    docs = list(language.documents(n_direction_docs, seed=seed + 2))
    return SteeringTask(
        prompts=steering_prompts(language, n_prompts, seed=seed + 3),
        positive=judgement_prefixes(docs, "positive"),
        negative=judgement_prefixes(docs, "negative"),
        direction_positions="last",
        concept=concept_scorer(language),
        scorers=[grammatical_scorer(language)],
        fluency="grammatical",
        name="positive sentiment (testbed ground truth)",
    )
