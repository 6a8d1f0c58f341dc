"""Look inside a prior (or any feature source): top activations, dashboards, explanations, ground truth."""

from tl_glp.interpret.features import is_signed, token_batches
from tl_glp.interpret.topk import Example, Tail, TopActivations, top_activations

__all__ = ["Example", "Tail", "TopActivations", "is_signed", "token_batches", "top_activations"]
