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
   latent probes; on a real model with the concept along the direction and NLL fluency);
6. probing: 1-D probes on meta-neurons vs raw, MLP, PCA and SAE features;
7. ground-truth monosemanticity of single units (testbed only);
8. off-manifold detection: how well each score tells natural from steered or shuffled activations.

It writes ``report.md``, ``numbers.json``, CSVs and PNG figures to the output folder. The default sizes
(:class:`DemoSettings`) are a lighter version of the full-size run behind the README's tables
(``DemoSettings.full()``); ``DemoSettings.quick()`` is a smoke run of every step.

With ``--model`` (a Hugging Face id, or a local folder written by ``save_pretrained``), ``--hook``,
``--sae`` (``RELEASE:SAE_ID``, or a local folder for ``SAE.load_from_disk``) and ``--dataset`` the
same steps run on a real model (stage 7 left out: ``[k/7]``). With a local model folder, a local SAE
folder and CSV datasets (``prompt``, ``target``; their prompts then also serve as the text corpus) it
runs offline; for anything large it wants a GPU.
"""

from tl_glp.studies.demo.corpus import DEMO_NEGATIVE, DEMO_POSITIVE, corpus_texts, split_dataset_args
from tl_glp.studies.demo.report import library_versions, write_report
from tl_glp.studies.demo.run import run_demo
from tl_glp.studies.demo.settings import STAGES, TESTBED_ONLY_STAGES, DemoResult, DemoSettings
from tl_glp.studies.demo.verdicts import PRACTICAL_MARGINS, conclusions, read_verdict, steering_table, summary_text

__all__ = [
    "DEMO_NEGATIVE",
    "DEMO_POSITIVE",
    "PRACTICAL_MARGINS",
    "STAGES",
    "TESTBED_ONLY_STAGES",
    "DemoResult",
    "DemoSettings",
    "conclusions",
    "corpus_texts",
    "library_versions",
    "read_verdict",
    "run_demo",
    "split_dataset_args",
    "steering_table",
    "summary_text",
    "write_report",
]
