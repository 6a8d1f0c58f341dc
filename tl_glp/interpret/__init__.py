"""Look inside a prior (or any feature source): top activations, dashboards, explanations, ground truth.

Example::

    from tl_glp.interpret import top_activations, explain, score_explanations
    res = top_activations(model, MetaNeurons(prior), texts, k=20)     # streaming, any corpus size
    res.to_html("dash/")                                                # dash/index.html
    explain(res, judge); score_explanations(res, None, judge)           # judge(prompt) -> str
    res.save("res/"); res.to_neuronpedia("np/")
"""

from tl_glp.interpret.explain import DetectionScore, explain, neuronpedia_records, score_explanations, to_neuronpedia
from tl_glp.interpret.features import is_signed, token_batches
from tl_glp.interpret.ground_truth import (
    MonosemanticityReport,
    ground_truth,
    labels_from_documents,
    latent_aucs,
    monosemanticity,
)
from tl_glp.interpret.topk import TopActivations, top_activations
from tl_glp.interpret.types import Example, Tail, TopActivationsData

__all__ = [
    "DetectionScore",
    "Example",
    "MonosemanticityReport",
    "Tail",
    "TopActivations",
    "TopActivationsData",
    "explain",
    "ground_truth",
    "is_signed",
    "labels_from_documents",
    "latent_aucs",
    "monosemanticity",
    "neuronpedia_records",
    "score_explanations",
    "to_neuronpedia",
    "token_batches",
    "top_activations",
]
