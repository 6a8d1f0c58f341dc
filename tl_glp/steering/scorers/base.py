"""The scorer protocol: :class:`Generations` (what a scorer reads), :func:`teacher_forced` (the
steered model's own log-probabilities and activations on them), :func:`nll_fluency`, and the rule for
which way a score column points (:func:`higher_is_better`).

A scorer is any callable ``scorer(model, generations) -> list[float]`` (one value per generation)
with a ``name`` attribute (plain functions use their ``__name__``); ``model`` is the steered model,
run without hooks. The name becomes the sweep's column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from tl_glp.core._tokens import model_device, pad_right

LOWER_IS_BETTER_PREFIXES = ("nll", "repeated")
"""Score columns whose name starts with one of these are better when lower (NLLs, repetition shares);
every other column (concept scores, ``grammatical``, ``distinct_2`` ...) is better when higher."""


def higher_is_better(column: str) -> bool:
    """Whether a higher value of the score column ``column`` is better (the Pareto code's default).

    >>> higher_is_better("nll"), higher_is_better("nll_gemma"), higher_is_better("repeated_3"), higher_is_better("distinct_2")
    (False, False, False, True)
    """
    return not str(column).startswith(LOWER_IS_BETTER_PREFIXES)


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


def scorer_name(scorer: Any) -> str:
    return getattr(scorer, "name", None) or getattr(scorer, "__name__", type(scorer).__name__)
