"""Automatic interpretation: explanations from any judge, detection scoring, Neuronpedia-style export.

A *judge* is any callable ``judge(prompt: str) -> str``: an API model, a local ``transformers``
pipeline, or a rule in a test. :func:`explain` shows it a feature's top contexts (the token where
the feature peaks between ``<<`` and ``>>``, with its activation) and keeps its one-line answer.
:func:`score_explanations` then asks, for each of a shuffled mix of *held-out* top contexts and
random corpus contexts, whether the explanation applies to the marked token, and scores the
answers: balanced accuracy of yes/no (a probability >= 0.5 counts as yes) and ROC-AUC of the
numbers when the judge gives probabilities. This is detection scoring as EleutherAI's delphi and
Neuronpedia run it; the authors' release stops at explanations.

Example (how answers are read)::

    explain(results, judge)                                   # {feature: "the word dog", ...}
    table = score_explanations(results, None, judge)          # balanced_accuracy, auc per feature

    >>> parse_probability("Answer: 0.8"), parse_probability("yes"), parse_probability("No.")
    (0.8, 1.0, 0.0)
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from tl_glp.core import _io
from tl_glp.interpret.histogram import histogram_edges
from tl_glp.interpret.types import Example, TopActivationsData
from tl_glp.probing.probes import auc_columns

if TYPE_CHECKING:
    import pandas as pd

Judge = Callable[[str], str]

EXPLAIN_TEMPLATE = """We are studying one unit (feature) of a neural network that reads text. Below are text excerpts where the unit is most active. In each excerpt the token where it peaks is between << and >>, followed by its activation.

{examples}

In one short phrase, what does this unit detect? Answer with the phrase only."""

DETECT_TEMPLATE = """A unit of a neural network that reads text is described as follows.
Explanation: {explanation}

Text: {text}

Is the unit active on the token between << and >>, according to the explanation? Answer with a probability between 0 and 1."""


def _format_example(ex: Example, sep: str) -> str:
    return f"{ex.marked_text(sep)}   (activation {ex.value:.3g})"


def parse_probability(answer: str) -> float:
    """A judge's answer as a number in [0, 1]: the first number found (clipped), else yes/no; NaN if neither."""
    match = re.search(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", answer)
    if match:
        return float(min(1.0, max(0.0, float(match.group()))))
    words = answer.strip().lower()
    if words.startswith(("yes", "true")):
        return 1.0
    if words.startswith(("no", "false")):
        return 0.0
    return float("nan")


def _clean(answer: str) -> str:
    line = next((ln.strip() for ln in answer.strip().splitlines() if ln.strip()), "")
    return re.sub(r"^(explanation|answer)\s*:\s*", "", line, flags=re.I).strip().strip('"')


def explain(
    results: TopActivationsData,
    judge: Judge,
    *,
    features: Sequence[int] | None = None,
    n_examples: int | None = None,
    template: str = EXPLAIN_TEMPLATE,
    progress: bool = True,
) -> dict[int, str]:
    """An explanation per feature from ``judge`` and the feature's top contexts.

    ``n_examples`` top contexts are shown (default: the first half of ``k``, the rest is held out
    for :func:`score_explanations`). The explanations are also stored in ``results.explanations``.
    """
    chosen = list(range(results.n_features)) if features is None else [results._check_feature(f) for f in features]
    n = n_examples or max(1, results.k // 2)
    out: dict[int, str] = {}
    for f in tqdm(chosen, disable=not progress, desc="explain", unit="feature"):
        examples = results.examples(f, "top", n)
        if not examples:
            continue
        prompt = template.format(examples="\n".join(_format_example(e, results.token_sep) for e in examples))
        out[f] = _clean(judge(prompt))
    results.explanations.update(out)
    results.settings["explain_n_examples"] = n
    return out


@dataclass
class DetectionScore:
    """One feature's detection score: balanced accuracy of yes/no, AUC of the judge's numbers."""

    feature: int
    balanced_accuracy: float
    auc: float
    n_positive: int
    n_negative: int
    n_unparsed: int


def score_explanations(
    results: TopActivationsData,
    explanations: dict[int, str] | None,
    judge: Judge,
    *,
    n_positive: int | None = None,
    n_negative: int | None = None,
    seed: int = 0,
    template: str = DETECT_TEMPLATE,
    progress: bool = True,
) -> pd.DataFrame:
    """Detection scoring: can ``judge``, given the explanation, tell top contexts from random ones?

    Positives are the top contexts :func:`explain` did not show (ranks ``explain_n_examples`` and
    on; all top contexts if none are left), negatives are random corpus positions whose activation
    of the feature is below the weakest positive, both presented in a seeded random order. Returns
    a DataFrame (one row per feature) and stores each scored explanation and its score in
    ``results.explanations`` and ``results.scores`` (the last scoring of a feature wins).
    """
    import pandas as pd

    explanations = results.explanations if explanations is None else explanations
    if not explanations:
        raise ValueError("No explanations to score: run explain(results, judge) first or pass a dict {feature: text}.")
    shown = int(results.settings.get("explain_n_examples", 0))
    randoms = results.random_examples()
    rows = []
    for f, text in tqdm(sorted(explanations.items()), disable=not progress, desc="score", unit="feature"):
        f = results._check_feature(f)
        top = results.examples(f, "top")
        positives = top[shown:] if len(top) > shown else top
        positives = positives[:n_positive] if n_positive else positives
        if not positives:
            continue
        weakest = min(e.value for e in positives)
        values = results.random_values[:, f]
        negatives = [r for r, v in zip(randoms, values.tolist()) if v < weakest]
        rng = random.Random(seed * 100_003 + f)
        rng.shuffle(negatives)
        negatives = negatives[: (n_negative or len(positives))]
        if not negatives:
            continue
        trials = [(e, 1) for e in positives] + [(e, 0) for e in negatives]
        rng.shuffle(trials)
        probs, labels = [], []
        for ex, label in trials:
            probs.append(
                parse_probability(judge(template.format(explanation=text, text=ex.marked_text(results.token_sep))))
            )
            labels.append(label)
        p = torch.tensor(probs, dtype=torch.float64)
        y = torch.tensor(labels)
        unparsed = int(torch.isnan(p).sum())
        p = torch.nan_to_num(p, nan=0.5)
        yes = p >= 0.5
        tpr = float(yes[y == 1].double().mean())
        tnr = float((~yes[y == 0]).double().mean())
        auc = float(auc_columns(p[:, None], y)[0])
        score = DetectionScore(f, 0.5 * (tpr + tnr), auc, int((y == 1).sum()), int((y == 0).sum()), unparsed)
        results.explanations[f] = text  # the result keeps each explanation with its own score
        results.scores.setdefault(f, {}).update(
            {
                "balanced_accuracy": score.balanced_accuracy,
                "auc": score.auc,
                "n_positive": score.n_positive,
                "n_negative": score.n_negative,
                "n_unparsed": score.n_unparsed,
            }
        )
        rows.append(vars(score))
    return pd.DataFrame(rows, columns=["feature", "balanced_accuracy", "auc", "n_positive", "n_negative", "n_unparsed"])


def neuronpedia_records(
    results: TopActivationsData,
    *,
    model_id: str = "",
    source_id: str | None = None,
    features: Sequence[int] | None = None,
    explanation_model: str = "",
) -> list[dict[str, Any]]:
    """Feature records with the field names of Neuronpedia's feature JSON (``modelId``, ``layer``,
    ``index``, ``activations`` with ``tokens``/``values``/``maxValue``/``maxValueTokenIndex``,
    ``explanations`` with ``description`` and ``scores``, ``frac_nonzero``, histogram bars)."""
    layer = source_id or f"{results.hook_name}-{results.source}"
    edges = histogram_edges()
    centres = ((edges[:-1] + edges[1:]) / 2).tolist()
    chosen = range(results.n_features) if features is None else [results._check_feature(f) for f in features]
    out = []
    for f in chosen:
        acts = []
        for tail in ("top", "bottom") if results.signed else ("top",):
            for ex in results.examples(f, tail):
                values = [0.0 if v != v else float(v) for v in ex.acts]
                acts.append(
                    {
                        "tokens": ex.tokens,
                        "values": values,
                        "maxValue": max(values),
                        "minValue": min(values),
                        "maxValueTokenIndex": ex.center,
                        "dataIndex": ex.doc,
                        "tail": tail,
                    }
                )
        record: dict[str, Any] = {
            "modelId": model_id,
            "layer": layer,
            "index": str(f),
            "hookName": results.hook_name,
            "activations": acts,
            "frac_nonzero": float(results.density[f]),
            "maxActApprox": float(results.top.values[f, 0]),
            "freq_hist_data_bar_values": centres,
            "freq_hist_data_bar_heights": results.histogram[f].tolist(),
            "explanations": [],
        }
        if f in results.explanations:
            score = results.scores.get(f, {})
            record["explanations"].append(
                {
                    "description": results.explanations[f],
                    "explanationModelName": explanation_model,
                    "typeName": "tl-glp",
                    "scores": [
                        {"explanationScoreTypeName": f"detection_{k}", "value": float(v)}
                        for k, v in score.items()
                        if k in ("balanced_accuracy", "auc")
                    ],
                }
            )
        out.append(record)
    return out


def to_neuronpedia(results: TopActivationsData, path: str | Path, *, per_file: int = 1024, **kwargs: Any) -> Path:
    """Write :func:`neuronpedia_records` as ``batch-{i}.json`` files of ``per_file`` features into
    the folder ``path`` (atomically). Returns the folder."""
    folder = Path(path)
    records = neuronpedia_records(results, **kwargs)
    for i in range(0, max(len(records), 1), per_file):
        _io.write_json(folder / f"batch-{i // per_file}.json", records[i : i + per_file])
    return folder
