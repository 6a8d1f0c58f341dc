"""The offline examples run (small budget); the Llama example imports and its offline parts run."""

import importlib.util
import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("name", ["quickstart.py", "steering.py", "sae_head_to_head.py"])
def test_offline_examples_run(name, testbed, monkeypatch, tmp_path):
    monkeypatch.setenv("TL_GLP_EXAMPLE_BUDGET", "small")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")


def test_published_llama_example_offline_parts(testbed, tiny_tokenizer):
    spec = importlib.util.spec_from_file_location("published_llama1b", EXAMPLES / "published_llama1b.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports without touching the Hub
    assert module.PRIOR_ID.startswith("generative-latent-prior/")
    import tl_glp
    from tl_glp.studies.testbed import MIDDLE_HOOK

    texts = testbed.language.sample_texts(60, seed=5)
    acts = tl_glp.collect_activations(testbed.model, texts, MIDDLE_HOOK, progress=False)
    prior = tl_glp.GenerativePrior.from_activations(acts, n_blocks=1)
    report = module.check_prior_on_model(testbed.model, prior, texts[:10])
    assert set(report) == {"fd", "delta_lm_loss", "act_norm"} and report["fd"] > 0
    out = module.steer_with_prior(testbed.model, prior, "the dog", ["it was happy ."], ["it was sad ."], max_new_tokens=4)
    assert set(out) == {"none", "plain", "prior"}
