"""``tl-glp demo``: the whole pipeline end to end, with a report.

On the offline testbed (default) it runs in minutes on 2 CPU cores, in eight stages, each announced
as ``[k/8]`` with the seconds elapsed (every longer step inside shows a bar or a line):

1. model: the shipped testbed model (a tiny HookedTransformer on a synthetic language with known latents);
2. activations at its middle layer;
3. prior: a prior trained on them (loss curve), samples, Frechet distance and classifier two-sample tests
   against held-out activations and a moment-matched Gaussian, an SAE trained with SAE-Lens on the same
   activations, and delta LM loss of the prior's projection vs the SAE's reconstruction;
4. steering: plain vs prior-guided sentiment steering scored with ground truth;
5. steering head to head: every way back to the manifold (prior, SAE round trip, PCA, Gaussian cap) against
   plain steering, and what each projection changes (on the testbed with ground-truth concept, grammar and
   latent probes; on a real model on the stems where the direction check passed, checked again there, with
   the judges' concept and fluency);
6. probing: 1-D probes on meta-neurons vs raw, MLP, PCA and SAE features;
7. ground-truth monosemanticity of single units (testbed only);
8. off-manifold detection: how well each score tells natural from steered or shuffled activations.

It writes ``report.md``, ``numbers.json``, CSVs and PNG figures to the output folder. The default sizes
(:class:`DemoSettings`) are a lighter version of the full-size run behind the README's tables
(``DemoSettings.full()``); ``DemoSettings.quick()`` is a smoke run of every step.

With ``--model`` (a Hugging Face id, or a local folder written by ``save_pretrained``), ``--hook``,
``--sae`` (``RELEASE:SAE_ID``, or a local folder for ``SAE.load_from_disk``) and ``--dataset`` the
same steps run on a real model, in the stages of ``REAL_STAGES``: stage 7 is left out, and a stage 2,
direction, chooses the layer (around the middle) and the side (positive or negative) whose contrastive
sentiment direction plain steering moves most clearly on calibration stems; the activations and the
prior are then taken at that layer (``--hook`` fixes the layer). With a local model folder, a local SAE
folder and CSV datasets (``prompt``, ``target``; their prompts then also serve as the text corpus) it
runs offline; for anything large it wants a GPU.
"""

import importlib
from typing import Any

_EXPORTS = {
    "DEMO_NEGATIVE": "corpus",
    "DEMO_POSITIVE": "corpus",
    "corpus_texts": "corpus",
    "split_dataset_args": "corpus",
    "library_versions": "report",
    "write_report": "report",
    "run_demo": "run",
    "STAGES": "settings",
    "TESTBED_ONLY_STAGES": "settings",
    "REAL_STAGES": "settings",
    "DemoResult": "settings",
    "DemoSettings": "settings",
    "PRACTICAL_MARGINS": "verdicts",
    "conclusions": "verdicts",
    "read_verdict": "verdicts",
    "steering_table": "verdicts",
    "summary_text": "verdicts",
}
"""Public name -> the module of this package that defines it. Loaded on first use, so that
``tl-glp demo --help`` (which needs only :mod:`.settings`) does not import the whole pipeline."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
