"""Ratings from a language-model judge (AxBench style): any ``judge(prompt) -> reply`` callable."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tl_glp.steering.scorers.base import Generations

CONCEPT_PROMPT = """You are grading how strongly a piece of text expresses a concept.
Concept: {concept}
Text: {text}
Give 0 if the concept is absent, 1 if it is somewhat present, 2 if it is clearly present.
Answer with the rating in double brackets, e.g. Rating: [[1]]."""

FLUENCY_PROMPT = """You are grading the fluency of a piece of text, regardless of its topic.
Text: {text}
Give 0 if it is not fluent (broken, repetitive or nonsensical), 1 if it is somewhat fluent,
2 if it is fluent, natural language. Answer with the rating in double brackets, e.g. Rating: [[2]]."""


class LLMJudge:
    """Ratings 0-2 from a language-model judge, AxBench style: ``aspect`` is "concept" or "fluency".

    ``judge`` is any callable from a prompt string to the judge's reply. Replies without a
    readable rating score NaN.
    """

    def __init__(
        self, judge: Callable[[str], str], concept: str = "", aspect: str = "concept", name: str | None = None
    ) -> None:
        if aspect not in ("concept", "fluency"):
            raise ValueError("aspect must be 'concept' or 'fluency'")
        if aspect == "concept" and not concept:
            raise ValueError("Describe the concept for a concept judge, e.g. concept='positive sentiment'.")
        self.judge, self.concept, self.aspect = judge, concept, aspect
        self.name = name or f"judge_{aspect}"

    def prompt(self, text: str) -> str:
        template = CONCEPT_PROMPT if self.aspect == "concept" else FLUENCY_PROMPT
        return template.format(concept=self.concept, text=text)

    def __call__(self, model: Any, gens: Generations) -> list[float]:
        return [parse_rating(self.judge(self.prompt(p + c))) for p, c in zip(gens.prompts, gens.continuations)]


def parse_rating(reply: str) -> float:
    """The 0-2 rating in a judge's reply (``[[2]]`` preferred, else the last lone digit 0-2)."""
    found = re.findall(r"\[\[\s*([0-2](?:\.\d+)?)\s*\]\]", reply)
    if not found:
        found = re.findall(r"(?<![\d.])([0-2])(?![\d.])", reply)
    return float(found[-1]) if found else float("nan")
