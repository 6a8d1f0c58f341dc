"""The registered real models, end to end (slow): found in their installed packages, converted once into
``$TL_GLP_CACHE`` (the first run takes minutes; later runs reuse the folder), loaded as TransformerLens models.

Each test is skipped, with the command that installs the package, where the package is absent.
"""

from __future__ import annotations

import time

import pytest
import torch

from tl_glp import models
from tl_glp.core import _compat

pytestmark = pytest.mark.slow


def need(name: str) -> None:
    pytest.importorskip("gguf", reason="needs the gguf package: pip install 'tl-glp[real]'")
    if models.status(name) == "missing":
        pytest.skip(f"{name} is not installed: {models.REGISTRY[name].install_command}")


def greedy(model, prompt: str, n: int) -> str:
    """``n`` greedy tokens after ``prompt``, decoded (a loop of plain forwards: the same on HookedTransformer and bridge)."""
    tokens = model.to_tokens(prompt)
    start = tokens.shape[1]
    with torch.no_grad():
        for _ in range(n):
            tokens = torch.cat([tokens, model(tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return model.to_string(tokens[0, start:])


def hf_logits(name: str, tokens: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    folder = models.converted_folder("", name=name)
    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()(tokens).logits


@pytest.mark.parametrize(
    "name, tolerance, answer",
    [("smollm2-135m", 6e-5, " Paris"), ("gemma3-270m", 1e-4, None)],
)
def test_a_registered_model_loads_by_name_and_matches_transformers(name, tolerance, answer):
    need(name)
    clock = time.perf_counter()
    model = models.load_model(name, device="cpu", progress=False)
    print(f"{name}: loaded in {time.perf_counter() - clock:.1f} s ({type(model).__name__})")
    assert _compat.model_processing(model) == "unprocessed"
    tokens = model.to_tokens("The capital of France is")
    with torch.no_grad():
        ours = model(tokens)
    torch.testing.assert_close(ours, hf_logits(name, tokens), atol=tolerance, rtol=0)
    text = greedy(model, "The capital of France is", 3)
    if answer is not None:
        assert text.startswith(answer), text
    clock = time.perf_counter()
    again = models.resolve_model(name, progress=False)  # the folder is reused: only the checksum is computed
    assert time.perf_counter() - clock < 10 and models.read_manifest(again)["name"] == name


def test_the_demo_runs_on_smollm2_in_quick_mode(tmp_path):
    """``tl-glp demo --model smollm2-135m --quick``: the offline corpus, the prior, sample quality, delta LM
    loss against an SAE-Lens SAE, steering judged by VADER, Gemma-3-270M's NLL and distinct-2 with the
    direction check first, and probing on SAE-Probes datasets (the issue's target: at most 6 minutes on 2 CPU cores)."""
    import json

    import pandas as pd

    need("smollm2-135m")
    pytest.importorskip("vaderSentiment", reason="the concept judge: pip install 'tl-glp[judges]'")
    pytest.importorskip("sae_probes", reason="the offline corpus: pip install 'tl-glp[probes]'")
    from tl_glp.studies.demo import DemoSettings, run_demo

    judge = "gemma3-270m" if models.status("gemma3-270m") != "missing" else ""
    settings = DemoSettings.from_overrides(DemoSettings.quick(), [f"judge_model={judge}"])
    clock = time.perf_counter()
    result = run_demo(tmp_path / "demo", model_name="smollm2-135m", settings=settings, progress=False)
    print(f"demo --model smollm2-135m --quick: {time.perf_counter() - clock:.0f} s")
    out = tmp_path / "demo"
    numbers = json.loads((out / "numbers.json").read_text())
    assert numbers == json.loads(json.dumps(result.numbers, default=str))
    for key in ("fd_prior", "fd_robust_prior", "fd_robust_gaussian", "c2st_auc_prior", "delta_lm_loss_prior"):
        assert numbers[key] == numbers[key], key  # finite, not NaN
    steering = pd.read_csv(out / "steering.csv")
    assert {"concept", "distinct_2"} <= set(steering.columns) and ("nll_judge" in steering.columns) == bool(judge)
    assert steering[steering.method == "none"].prompt.tolist()[:2] == ["I think that", "The movie was"]
    choice = numbers["direction_choice"]  # the layer and side are chosen first, among layers 10, 14 and 15
    assert choice["hook"] in {f"blocks.{i}.hook_resid_post" for i in (10, 14, 15)}
    assert len(choice["candidates"]) == 6 and f"towards {choice['target']}" in numbers["judges"]
    check = numbers["direction_check"]
    assert "steers" in check and ("steering_map_skipped" in numbers) != check["steers"]
    if check["steers"]:  # the head to head runs on the stems the direction check passed on, and checks them again
        from tl_glp.studies.demo.real import NEUTRAL_STEMS

        assert set(pd.read_csv(out / "steering_map.csv").prompt) <= set(NEUTRAL_STEMS[: settings.steer_prompts])
        assert (
            numbers["map_direction_check"]["per_r"]
            and "On these prompts plain steering" in (out / "report.md").read_text()
        )
    probing = pd.read_csv(out / "probing.csv")
    assert probing.dataset.nunique() == settings.probe_datasets
    report = (out / "report.md").read_text()
    assert "Direction check" in report and "smollm2-135m" in report and (out / "norms.png").is_file()
