"""The offline examples run (small budget) and do what they say; the Llama example imports, its offline
parts run, it picks a device that exists, and without the Hub it stops with one line that says why."""

import importlib.util
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def run_example(name, monkeypatch, tmp_path):
    monkeypatch.setenv("TL_GLP_EXAMPLE_BUDGET", "small")
    monkeypatch.delenv("TL_GLP_EXAMPLE_OUT", raising=False)
    monkeypatch.chdir(tmp_path)
    return runpy.run_path(str(EXAMPLES / name), run_name="__main__")


@pytest.mark.slow  # 640 s under load 12 on the shared 2-core machine
def test_quickstart_runs(testbed, monkeypatch, tmp_path):
    run_example("quickstart.py", monkeypatch, tmp_path)


@pytest.mark.slow
def test_sae_example_writes_its_figure_under_the_ignored_output_folder(testbed, monkeypatch, tmp_path):
    run_example("sae_head_to_head.py", monkeypatch, tmp_path)
    assert (tmp_path / "examples_out" / "probing.png").is_file()
    assert not list(tmp_path.glob("*.png")), "figures belong in examples_out/, not the working directory"


def test_steering_example_two_ways_of_attaching_agree_and_figures_go_to_examples_out(
    testbed, monkeypatch, tmp_path, capsys
):
    ns = run_example("steering.py", monkeypatch, tmp_path)
    printed = capsys.readouterr().out
    assert ns["via_hooks"] == ns["via_patch"], (ns["via_hooks"], ns["via_patch"])
    assert "same continuation: True" in printed
    assert (tmp_path / "examples_out" / "steering_pareto.png").is_file()
    assert not list(tmp_path.glob("*.png")), "figures belong in examples_out/, not the working directory"


def test_examples_output_folder_is_git_ignored():
    lines = {line.strip() for line in (REPO / ".gitignore").read_text().splitlines()}
    assert "examples_out/" in lines or "/examples_out/" in lines
    for name in ["steering.py", "sae_head_to_head.py"]:
        assert '"examples_out"' in (EXAMPLES / name).read_text()


def load_llama_example():
    spec = importlib.util.spec_from_file_location("published_llama1b", EXAMPLES / "published_llama1b.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports without touching the Hub
    return module


def test_published_llama_example_offline_parts(testbed, tiny_tokenizer):
    module = load_llama_example()
    assert module.PRIOR_ID.startswith("generative-latent-prior/")
    import tl_glp
    from tl_glp.studies.testbed import MIDDLE_HOOK

    texts = testbed.language.sample_texts(60, seed=5)
    acts = tl_glp.collect_activations(testbed.model, texts, MIDDLE_HOOK, progress=False)
    prior = tl_glp.GenerativePrior.from_activations(acts, n_blocks=1)
    report = module.check_prior_on_model(testbed.model, prior, texts[:10])
    assert set(report) == {"fd", "delta_lm_loss", "act_norm"} and report["fd"] > 0
    out = module.steer_with_prior(
        testbed.model, prior, "the dog", ["it was happy ."], ["it was sad ."], max_new_tokens=4
    )
    assert set(out) == {"none", "plain", "prior"}


def test_published_llama_example_picks_a_device_that_exists():
    module = load_llama_example()
    device = module.pick_device()
    torch.zeros(1, device=device)  # raises if the device does not exist here
    assert device == ("cuda" if torch.cuda.is_available() else device)


def test_published_llama_example_hub_errors_are_recognised():
    module = load_llama_example()
    assert module.hub_unreachable(OSError("We couldn't connect to 'https://huggingface.co'"))
    wrapped = RuntimeError("load failed")
    wrapped.__cause__ = ConnectionError("no network")
    assert module.hub_unreachable(wrapped)
    assert not module.hub_unreachable(ValueError("a bug in the example"))


@pytest.mark.slow
def test_published_llama_example_without_the_hub_says_so_in_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "published_llama1b.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip() and "Warning" not in line]
    assert "needs the Hugging Face Hub" in lines[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
