"""Run the scaling study on the testbed or a named model: what ``tl-glp scaling`` and ``tl-glp bench train --scaling`` call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tl_glp.models import load_model
from tl_glp.probing import load_dataset, sae_probes_datasets
from tl_glp.studies.demo.corpus import DEMO_NEGATIVE, DEMO_POSITIVE, corpus_texts, split_dataset_args
from tl_glp.studies.scaling.study import ScalingSettings, SteeringTask, run_scaling_study
from tl_glp.studies.testbed import MIDDLE_HOOK, load
from tl_glp.studies.testbed.tasks import sentiment_steering_task


def run_named_study(
    out: str | Path,
    settings: ScalingSettings,
    *,
    model: str = "testbed",
    hook: str | None = None,
    dataset: list[str] | None = None,
    device: str | None = None,
    bridge: bool = False,
    quick: bool = False,
    progress: bool = True,
) -> Any:
    """The study on ``model`` (``"testbed"``: offline; else a Hugging Face id or a local folder) at ``hook``.

    On the testbed the texts come from its language, the probing datasets are its own and the
    steering task is its sentiment; on another model ``dataset`` names an HF text dataset,
    sae-probes names or CSVs (prompt,target), as in ``tl-glp demo``.
    """
    n_texts = settings.n_docs + settings.lm_eval_docs
    if model == "testbed":
        testbed = load(seed=settings.seed, progress=progress)
        lm, hook, name = testbed.model, hook or MIDDLE_HOOK, None  # the model names itself
        texts = testbed.language.sample_texts(n_texts, seed=settings.seed + 1)
        probes: Any = [load_dataset(frame, name=key) for key, frame in testbed.datasets.items()]
        task = sentiment_steering_task(testbed.language, n_prompts=12 if quick else 24, seed=settings.seed)
    else:
        lm, name = load_model(model, device=device, bridge=bridge, progress=progress), model
        hook = hook or f"blocks.{lm.cfg.n_layers // 2}.hook_resid_post"
        corpus, probes = split_dataset_args(dataset)
        if probes == "all":
            probes = sae_probes_datasets()
        texts = corpus_texts(corpus, probes, n_texts)
        task = SteeringTask(
            prompts=["I think that", "The movie was", "Yesterday we", "My friend said"],
            positive=DEMO_POSITIVE,
            negative=DEMO_NEGATIVE,
            name="positive sentiment (direction from contrast sentences; fluency = unsteered NLL)",
        )
    return run_scaling_study(
        lm, hook, texts, probes, task, out, settings=settings, device=device, model_name=name, progress=progress
    )
