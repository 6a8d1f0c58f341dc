"""Scores for steered generations: fluency (the unsteered model's NLL) and concept strength.

A scorer is any callable ``scorer(model, generations) -> list[float]`` with a ``name``
attribute (plain functions use their ``__name__``). Built in:

- :func:`nll_fluency`: mean negative log-likelihood of the continuation given the prompt under
  the *unsteered* model (lower is more fluent); always computed by the sweep.
- :class:`DirectionScorer`: the unsteered model's activations at a hook, projected on the
  steering direction, averaged over the continuation (the default concept score).
- :class:`ProbeScorer`: the same with any linear probe ``w . x + b``.
- :class:`LLMJudge`: AxBench-style 0-2 ratings of concept or fluency from any
  ``judge(prompt_text) -> str`` callable (an API model, for instance).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from tl_glp.core._tokens import model_device, pad_right


@dataclass
class Generations:
    """Prompts and their continuations, as text and as (unpadded) tokens."""

    prompts: list[str]
    continuations: list[str]
    prompt_tokens: list[Tensor]
    continuation_tokens: list[Tensor]

    def __len__(self) -> int:
        return len(self.prompts)


@torch.inference_mode()
def teacher_forced(
    model: Any, gens: Generations, hook_names: Sequence[str] = ()
) -> tuple[list[Tensor], dict[str, list[Tensor]]]:
    """Run the model (no hooks of ours) on prompt + continuation, right-padded (no mask needed:
    causal attention never lets a real token see a pad). Returns per row the log-probabilities of
    the continuation tokens, and per hook the activations at the continuation positions."""
    tokens, _ = pad_right([torch.cat([p.cpu(), c.cpu()]) for p, c in zip(gens.prompt_tokens, gens.continuation_tokens)])
    device = model_device(model)
    logits, cache = (
        model.run_with_cache(tokens.to(device), names_filter=list(hook_names))
        if hook_names
        else (model(tokens.to(device)), {})
    )
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    out_lp, out_acts = [], {h: [] for h in hook_names}
    for i, (p, c) in enumerate(zip(gens.prompt_tokens, gens.continuation_tokens)):
        start, n = len(p), len(c)
        out_lp.append(logprobs[i, start - 1 : start - 1 + n].gather(-1, c.to(logprobs.device)[:, None])[:, 0].cpu())
        for h in hook_names:
            out_acts[h].append(cache[h][i, start : start + n].float().cpu())
    return out_lp, out_acts


def nll_fluency(model: Any, gens: Generations) -> list[float]:
    """Mean NLL of each continuation given its prompt under the unsteered model (lower = more fluent)."""
    logprobs, _ = teacher_forced(model, gens)
    return [float(-lp.mean()) if len(lp) else float("nan") for lp in logprobs]


nll_fluency.name = "nll"  # type: ignore[attr-defined]


class ProbeScorer:
    """Mean over the continuation of ``w . x + b`` on the unsteered model's activations at ``hook_name``."""

    def __init__(self, weight: Tensor, hook_name: str, bias: float = 0.0, name: str = "concept") -> None:
        self.weight, self.bias, self.hook_name, self.name = weight.detach().float().cpu(), float(bias), hook_name, name

    def __call__(self, model: Any, gens: Generations) -> list[float]:
        _, acts = teacher_forced(model, gens, [self.hook_name])
        return [float((a @ self.weight).mean() + self.bias) if len(a) else float("nan") for a in acts[self.hook_name]]


class DirectionScorer(ProbeScorer):
    """Projection on the (unit) steering direction, averaged over the continuation."""

    def __init__(self, direction: Tensor, hook_name: str, name: str = "concept") -> None:
        super().__init__(direction / direction.norm(), hook_name, 0.0, name)


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


def scorer_name(scorer: Any) -> str:
    return getattr(scorer, "name", None) or getattr(scorer, "__name__", type(scorer).__name__)
