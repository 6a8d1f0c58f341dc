"""What the demo brings to a real pretrained LM (``tl-glp demo --model smollm2-135m``): an offline corpus,
judges nobody here wrote, neutral prompts, a check that the steering direction steers at all, and a
bounded set of probing datasets.

- **Corpus**: the SAE-Probes texts split by :func:`tl_glp.corpora.sae_probes_corpus` into prior-training
  and evaluation documents that share no exact or near-duplicate text (:func:`offline_texts`).
- **Judges** (:func:`outside_judges`): concept is VADER's compound sentiment towards the target; fluency is
  the NLL per token under another model family (Gemma-3-270M for SmolLM2), with distinct-2 beside it so
  that repetitive text, which every NLL rewards, cannot win the front.
- **Direction choice** (:func:`tl_glp.steering.choose.choose_direction`): the contrastive direction of
  :data:`REAL_POSITIVE` minus :data:`REAL_NEGATIVE` at the last token, at the layer (around the middle) and
  towards the side that plain steering moves most clearly on :data:`CALIBRATION_STEMS`; the prior is then
  trained at that layer.
- **Direction check** (:func:`direction_check`): plain steering must move the concept judge clearly on the
  other stems (:data:`NEUTRAL_STEMS`) before projectors are compared; otherwise the comparison measures
  noise, and the demo says so.
- **Probing** (:func:`probing_subsets`): a real model's forward pass over all 334k SAE-Probes prompts
  takes hours on a CPU, so the demo probes a spread of datasets with a stratified sample of each.

>>> len(NEUTRAL_STEMS), len(set(NEUTRAL_STEMS)), len(set(NEUTRAL_STEMS) & set(CALIBRATION_STEMS))
(24, 24, 0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tl_glp.steering.choose import concept_shift

NEUTRAL_STEMS = [
    "I think that",
    "The movie was",
    "Yesterday we",
    "My friend said",
    "The weather today is",
    "When I opened the door,",
    "The new restaurant on the corner",
    "Last weekend my family",
    "The book I am reading",
    "Our meeting this morning",
    "The train to the city",
    "After the game, the players",
    "The hotel room was",
    "My first day at the new job",
    "The song on the radio",
    "When the package arrived,",
    "The teacher told us that",
    "At the end of the trip,",
    "The food at the party",
    "This phone",
    "The service at the bank",
    "Walking home, I noticed",
    "The results of the test",
    "In the review, the critic wrote that",
]
"""Neutral prompt stems for sentiment steering on a real model (no sentiment word of their own)."""

CALIBRATION_STEMS = [
    "The bus ride this afternoon",
    "My neighbour told me that",
    "The museum downstairs",
    "When we reached the beach,",
    "The coffee in this place",
    "Her new apartment",
    "The concert last night",
    "On the way to school,",
    "The email from my boss",
    "The garden behind the house",
    "During the holidays we",
    "The first chapter of the novel",
]
"""Other neutral stems, on which the demo chooses the steering direction's layer and side
(:func:`tl_glp.steering.choose.choose_direction`); the sweep that judges it uses :data:`NEUTRAL_STEMS`, so
the choice is not judged on the prompts it was selected on."""

REAL_POSITIVE = [
    "I love this, it is wonderful.",
    "What a beautiful and happy day.",
    "This is great news, I am delighted.",
    "The staff were kind and the food was excellent.",
    "We had a fantastic time and everyone smiled.",
    "It was the best gift I have ever received.",
]
REAL_NEGATIVE = [
    "I hate this, it is awful.",
    "What a miserable and sad day.",
    "This is terrible news, I am upset.",
    "The staff were rude and the food was disgusting.",
    "We had a horrible time and everyone complained.",
    "It was the worst gift I have ever received.",
]
"""Contrast sentences for the real-model sentiment direction (the last-token difference of means): each pair
differs in its sentiment words and little else."""


def offline_texts(n_train: int, n_eval: int, *, seed: int = 0, progress: bool = True) -> tuple[list[str], list[str]]:
    """``n_train`` prior-training and ``n_eval`` evaluation documents of the SAE-Probes corpus (no shared
    or near-duplicate text across the two), each side shuffled with ``seed``."""
    from tl_glp.corpora import sae_probes_corpus

    split = sae_probes_corpus(seed=seed, progress=progress)
    if len(split.train) < n_train or len(split.eval) < n_eval:
        raise ValueError(
            f"The SAE-Probes corpus has {len(split.train)} training and {len(split.eval)} evaluation documents; "
            f"asked for {n_train} and {n_eval}. Lower n_docs or lm_eval_docs."
        )
    rng = np.random.default_rng(seed)
    train = [split.train[i] for i in rng.permutation(len(split.train))[:n_train]]
    held = [split.eval[i] for i in rng.permutation(len(split.eval))[:n_eval]]
    return train, held


def outside_judges(judge_model: str, *, target: str = "positive", device: str | None = None, progress: bool = True):
    """``(concept, scorers, fluencies, note)`` for a sentiment sweep on a real model.

    ``concept`` is :class:`~tl_glp.steering.scorers.VaderScorer` towards ``target``; ``scorers`` are the
    NLL under ``judge_model`` (column ``nll_judge``; a registered name such as ``gemma3-270m``, a
    ``.gguf`` file or a model folder; ``""`` leaves it out) and :class:`~tl_glp.steering.scorers.DistinctN`
    (column ``distinct_2``); ``fluencies`` names the columns each gain is read on. Raises an ImportError
    naming the install command when VADER is missing."""
    from tl_glp.models import resolve_model
    from tl_glp.steering.scorers import DistinctN, ForeignNLL, VaderScorer

    concept = VaderScorer(target)
    scorers: list[Any] = []
    fluencies: list[str] = []
    note = f"concept: VADER compound towards {target}; repetition: distinct-2 (share of distinct word bigrams)"
    if judge_model:
        folder = resolve_model(judge_model, progress=progress)
        scorers.append(ForeignNLL(folder, name="nll_judge", device=device))
        fluencies.append("nll_judge")
        note += f"; fluency: NLL per token under {judge_model}"
    scorers.append(DistinctN(2))
    fluencies.append("distinct_2")
    return concept, scorers, tuple(fluencies), note


def direction_check(df: Any, *, n_boot: int = 1000, seed: int = 0, concept: str = "concept") -> dict[str, Any]:
    """Whether plain steering moves the concept judge in the demo's sweep: :func:`tl_glp.steering.choose.concept_shift`
    (per strength, the mean shift over prompts with a 95% bootstrap CI; ``steers`` when the best strength's
    CI excludes 0)."""
    return concept_shift(df, n_boot=n_boot, seed=seed, concept=concept)


def probing_subsets(n_datasets: int, n_examples: int, *, seed: int = 0) -> list[Any]:
    """``n_datasets`` SAE-Probes datasets spread evenly over the 113 (every one for ``n_datasets <= 0``),
    each cut to ``n_examples`` prompts, half of each class where the smaller class allows (all of them
    for ``n_examples <= 0``), as :class:`~tl_glp.probing.ProbingDataset` objects named as in SAE-Probes
    and split by :func:`~tl_glp.probing.load_dataset` (SAE-Probes' balanced split; 100 test rows kept)."""
    from tl_glp.probing import load_dataset, sae_probes_datasets
    from tl_glp.probing.datasets import _read_sae_probes

    names: Sequence[str] = sae_probes_datasets()
    if 0 < n_datasets < len(names):
        names = [names[int(i)] for i in np.linspace(0, len(names) - 1, n_datasets).round()]
    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        frame = _read_sae_probes(name)
        if 0 < n_examples < len(frame):
            groups = [np.flatnonzero((frame["target"] == v).to_numpy()) for v in frame["target"].unique()]
            per_class = min(n_examples // 2, *(len(g) for g in groups))
            keep = np.sort(np.concatenate([rng.choice(g, per_class, replace=False) for g in groups]))
            frame = frame.iloc[keep].reset_index(drop=True)
        out.append(load_dataset(frame, name=name))
    return out


__all__ = [
    "CALIBRATION_STEMS",
    "NEUTRAL_STEMS",
    "REAL_NEGATIVE",
    "REAL_POSITIVE",
    "direction_check",
    "offline_texts",
    "outside_judges",
    "probing_subsets",
]
