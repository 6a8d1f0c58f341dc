"""An offline testbed: a synthetic language with known latents and a tiny model trained on it.

``load()`` returns a :class:`Testbed` whose ``.model`` is a real ``HookedTransformer`` (with a
word-level Hugging Face tokenizer, so ``to_tokens``, ``to_string`` and ``generate`` work as with
gpt2), ``.language`` samples documents with ground-truth latents and checks grammaticality, and
``.datasets`` holds one SAE-Probes-style probing dataset per latent variable. The default model
ships with the package (built by ``tl-glp testbed build``, see :mod:`tl_glp.studies.testbed.build`), so it
loads at once; other seeds or configs train on first use and load from the cache afterwards.
:func:`tl_glp.studies.testbed.quality.measure_quality` checks how well a model represents the latents.

Example::

    tb = tl_glp.studies.testbed.load()
    tb.model.generate("the dog", max_new_tokens=8)
    tb.language.is_grammatical("the dogs chased a red ball .")   # True
    tb.datasets["sentiment"].head()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tl_glp.studies.testbed.datasets import build_datasets
from tl_glp.studies.testbed.language import Document, Language
from tl_glp.studies.testbed.lm import LMConfig, default_cache_dir, load_or_train
from tl_glp.studies.testbed.tokenizer import build_tokenizer

__all__ = ["Document", "LMConfig", "Language", "Testbed", "build_tokenizer", "load"]

MIDDLE_HOOK = "blocks.2.hook_resid_post"
"""The hook the demo models: the residual stream after the middle block of the 4-layer model."""


@dataclass
class Testbed:
    """The testbed model, its language and probing datasets, and how well the model learned."""

    model: Any
    language: Language
    metrics: dict[str, float]
    config: LMConfig = field(default_factory=LMConfig)
    dataset_size: int = 2400
    """Prompts per probing dataset: SAE-Probes' 1024 training rows leave 1375 for test (at 800 the
    test set was 99 prompts, and one unit's test AUC moved by up to 0.08 between priors)."""

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    @cached_property
    def datasets(self) -> dict[str, Any]:
        """``{name: DataFrame(prompt, target)}``: sentiment, tense, number, negation, and each of the four topics against the rest."""
        return build_datasets(self.language, n=self.dataset_size, seed=self.config.seed)


_LOADED: dict[tuple, Testbed] = {}


def load(
    seed: int = 0,
    cache_dir: str | Path | None = None,
    retrain: bool = False,
    progress: bool = True,
    config: LMConfig | None = None,
) -> Testbed:
    """The testbed for ``seed``: the shipped model for the default config (seed 0), otherwise
    loaded from ``cache_dir`` (default ``$TL_GLP_CACHE`` or ``~/.cache/tl_glp``) or trained and
    cached there. ``retrain`` trains anew even when shipped or cached weights exist."""
    cfg = config or LMConfig(seed=seed)
    key = (cfg.key(), str(cache_dir or default_cache_dir()))
    if not retrain and key in _LOADED:
        return _LOADED[key]
    language = Language()
    model, metrics = load_or_train(
        cfg, language, Path(cache_dir) if cache_dir else None, retrain=retrain, progress=progress
    )
    testbed = Testbed(model, language, metrics, cfg)
    _LOADED[key] = testbed
    return testbed
