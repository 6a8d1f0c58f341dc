"""Concept as sentiment read by a judge nobody here wrote: VADER's compound score (``vaderSentiment``).

VADER (Hutto and Gilbert, 2014) is a lexicon of word valences with rules for negation, boosters,
capitals and punctuation; it needs no model and no download. Its ``compound`` score sums the
valences of a text's words (after the rules) into ``s`` and maps it into [-1, 1] as
``s / sqrt(s^2 + 15)``, rounded to 4 decimals: "good" (valence 1.9) scores 0.4404.
"""

from __future__ import annotations

from typing import Any, Literal

from tl_glp.steering.scorers.base import Generations

VADER_INSTALL = "pip install vadersentiment"


def vader_analyzer() -> Any:
    """VADER's ``SentimentIntensityAnalyzer``, or an ImportError that names the install command."""
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as e:
        raise ImportError(
            f"VaderScorer needs the vaderSentiment package (a lexicon, no download at run time): {VADER_INSTALL}"
        ) from e
    return SentimentIntensityAnalyzer()


class VaderScorer:
    """VADER compound sentiment of each continuation, signed towards ``target``: the compound itself
    for ``"positive"``, its negation for ``"negative"`` (so higher always means more of the concept).

    Only the continuation is scored (``text="continuation"``, the default): what steering added, not
    the prompt's own sentiment. VADER then cannot see a negation in the prompt ("not" + "good"); pass
    ``text="full"`` to score prompt + continuation instead. A text without sentiment words scores 0.

    Example:
        >>> gens = Generations(["The film was", "It was"], [" good", " terrible"], [], [])
        >>> VaderScorer("positive")(None, gens), VaderScorer("negative")(None, gens)
        ([0.4404, -0.4767], [-0.4404, 0.4767])
        >>> VaderScorer("negative").name
        'vader_negative'
    """

    def __init__(
        self,
        target: Literal["positive", "negative"] = "positive",
        *,
        text: Literal["continuation", "full"] = "continuation",
        name: str | None = None,
    ) -> None:
        if target not in ("positive", "negative"):
            raise ValueError(f"VaderScorer: target must be 'positive' or 'negative', got {target!r}.")
        if text not in ("continuation", "full"):
            raise ValueError(f"VaderScorer: text must be 'continuation' or 'full', got {text!r}.")
        self.target, self.text = target, text
        self.sign = 1.0 if target == "positive" else -1.0
        self.name = name or f"vader_{target}"
        self.analyzer = vader_analyzer()

    def compound(self, text: str) -> float:
        """VADER's compound score of ``text`` in [-1, 1] (unsigned)."""
        return float(self.analyzer.polarity_scores(text)["compound"])

    def __call__(self, model: Any, gens: Generations) -> list[float]:
        texts = (
            gens.continuations
            if self.text == "continuation"
            else [p + c for p, c in zip(gens.prompts, gens.continuations)]
        )
        return [self.sign * self.compound(t) for t in texts]
