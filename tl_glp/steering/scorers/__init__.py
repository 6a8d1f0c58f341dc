"""Judges of steered generations: concept strength and fluency, one module per kind of judge.

A scorer is any callable ``scorer(model, generations) -> list[float]`` with a ``name`` attribute
(plain functions use their ``__name__``); the sweep (:func:`~tl_glp.steering.steering_sweep`) adds
one column per scorer, so a sweep can record several fluency columns side by side. Columns whose
name starts with ``nll`` or ``repeated`` are better when lower, all others when higher
(:func:`higher_is_better`, which the Pareto code follows).

Concept:

- :class:`DirectionScorer` (:mod:`.probe`): the unsteered model's activations at a hook, projected
  on the steering direction, averaged over the continuation (the sweep's default concept score).
- :class:`ProbeScorer`: the same with any linear probe ``w . x + b``.
- :class:`VaderScorer` (:mod:`.sentiment`): VADER's compound sentiment of the continuation, signed
  towards a target sentiment (a judge nobody here wrote; needs ``pip install vadersentiment``).
- :class:`LLMJudge` (:mod:`.judge`): AxBench-style 0-2 ratings of concept or fluency from any
  ``judge(prompt_text) -> str`` callable (an API model, for instance).

Fluency:

- :func:`nll_fluency` (:mod:`.base`): mean NLL of the continuation under the *unsteered* model
  (always computed by the sweep, column ``nll``).
- :class:`ForeignNLL` (:mod:`.foreign`): the same under another model with its own tokenizer
  (e.g. Gemma-3-270M judging SmolLM2), so the steered model does not grade itself.
- :func:`distinct_n`, :func:`repeated_ngram_share` and their scorers :class:`DistinctN`,
  :class:`RepeatedNgramShare` (:mod:`.repetition`): repetition, which every NLL rewards.
- :class:`FlooredNLL`: an NLL that repetitive text (distinct-n below a floor) cannot win.
- Grammaticality on the testbed lives with the testbed (``tl_glp.studies.testbed.tasks``).
"""

from tl_glp.steering.scorers.base import (
    LOWER_IS_BETTER_PREFIXES,
    Generations,
    higher_is_better,
    nll_fluency,
    scorer_name,
    teacher_forced,
)
from tl_glp.steering.scorers.foreign import ForeignNLL, load_causal_lm
from tl_glp.steering.scorers.judge import CONCEPT_PROMPT, FLUENCY_PROMPT, LLMJudge, parse_rating
from tl_glp.steering.scorers.probe import DirectionScorer, ProbeScorer
from tl_glp.steering.scorers.repetition import (
    DistinctN,
    FlooredNLL,
    RepeatedNgramShare,
    distinct_n,
    ngrams,
    repeated_ngram_share,
)
from tl_glp.steering.scorers.sentiment import VaderScorer

__all__ = [
    "CONCEPT_PROMPT",
    "FLUENCY_PROMPT",
    "LOWER_IS_BETTER_PREFIXES",
    "DirectionScorer",
    "DistinctN",
    "FlooredNLL",
    "ForeignNLL",
    "Generations",
    "LLMJudge",
    "ProbeScorer",
    "RepeatedNgramShare",
    "VaderScorer",
    "distinct_n",
    "higher_is_better",
    "load_causal_lm",
    "ngrams",
    "nll_fluency",
    "parse_rating",
    "repeated_ngram_share",
    "scorer_name",
    "teacher_forced",
]
