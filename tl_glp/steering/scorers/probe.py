"""Concept read off the steered model's own activations: a linear probe, or the steering direction."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from tl_glp.steering.scorers.base import Generations, teacher_forced


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
