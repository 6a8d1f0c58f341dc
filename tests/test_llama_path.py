"""The real-model path, offline: a tiny random Llama saved the way the Hub serves Llama-3.2-1B.

A 3-layer, width-32 ``transformers.LlamaForCausalLM`` plus a word-level tokenizer are written with
``save_pretrained`` into a folder named ``Llama-3.2-1B``, then loaded the ways users load the real
one:

- ``TransformerBridge.boot_transformers(folder)`` works with a local folder (TL 3.9 and 4); its
  ``cfg.model_name`` is the folder path as given.
- ``HookedTransformer.from_pretrained_no_processing(folder)`` does *not* (TL 3.9 first maps the
  name to an official one and raises "not found"), and ``from_pretrained_no_processing(
  "meta-llama/Llama-3.2-1B", hf_model=..., tokenizer=...)`` only fits weights of the real
  architecture (the config comes from the official name). ``tl_glp.core._compat.load_model(folder)``
  therefore builds the ``HookedTransformer`` from the folder's ``config.json``
  (:func:`tl_glp.core._compat.hooked_transformer_from_folder`); its ``cfg.model_name`` is the folder name.

Everything here is plumbing on the real code path at tiny sizes.
"""

from __future__ import annotations

import json
import random
import warnings

import pandas as pd
import pytest
import torch
from conftest import WORDS, random_sentences, write_published

import tl_glp
from tl_glp.core import _compat
from tl_glp.core.prior import GenerativePrior

N_LAYERS, D_MODEL, LAYER = 3, 32, 1
HOOK = f"blocks.{LAYER}.hook_resid_post"
PROMPT = "the dog"


def save_tiny_llama(folder, seed: int = 0):
    """A random 3-layer Llama (grouped-query attention, RMSNorm, rotary) and its tokenizer in ``folder``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tl_glp.studies.testbed.tokenizer import build_tokenizer

    tok = build_tokenizer(WORDS)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=D_MODEL,
        intermediate_size=2 * D_MODEL,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hub") / "Llama-3.2-1B"
    save_tiny_llama(folder)
    return folder


@pytest.fixture(scope="module")
def hf_llama(llama_dir):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(llama_dir).eval()


@pytest.fixture(scope="module")
def bridge(llama_dir):
    from transformer_lens.model_bridge import TransformerBridge

    model = TransformerBridge.boot_transformers(str(llama_dir), device="cpu")
    model.eval()
    return model


def layer_outputs(hf_model, tokens):
    """What the published priors were trained on: each ``model.layers.{L}`` output (a forward hook on HF)."""
    outs, handles = {}, []
    for i, layer in enumerate(hf_model.model.layers):
        handles.append(
            layer.register_forward_hook(
                lambda mod, args, out, i=i: outs.__setitem__(i, out[0] if isinstance(out, tuple) else out)
            )
        )
    try:
        with torch.no_grad():
            hidden = hf_model(tokens, output_hidden_states=True).hidden_states
    finally:
        for h in handles:
            h.remove()
    return outs, hidden


def published_prior_for(folder, model_name="meta-llama/Llama-3.2-1B", layer=LAYER, seed=0):
    write_published(folder, d_input=D_MODEL, n_blocks=1, layers=(layer,), seed=seed, model_name=model_name)
    return GenerativePrior.from_pretrained(folder)


def greedy(model, prompt=PROMPT, n=6):
    return model.generate(prompt, max_new_tokens=n, do_sample=False, verbose=False, stop_at_eos=False)


# --------------------------------------------------------------------------- loading
def test_bridge_hook_is_the_hf_layer_output(bridge, hf_llama):
    tokens = bridge.to_tokens("the dog chased a red ball .")
    outs, hidden = layer_outputs(hf_llama, tokens)
    names = [f"blocks.{L}.hook_resid_post" for L in range(N_LAYERS)] + [f"blocks.{L}.hook_out" for L in range(N_LAYERS)]
    _, cache = bridge.run_with_cache(tokens, names_filter=names)
    for L in range(N_LAYERS):
        assert torch.allclose(cache[f"blocks.{L}.hook_resid_post"], outs[L], atol=1e-6)
        assert torch.equal(cache[f"blocks.{L}.hook_out"], cache[f"blocks.{L}.hook_resid_post"])
        if L < N_LAYERS - 1:  # HF's last hidden state is after the final RMSNorm, not the layer output
            assert torch.allclose(cache[f"blocks.{L}.hook_resid_post"], hidden[L + 1], atol=1e-6)
    assert _compat.model_processing(bridge) == "unprocessed"
    assert bridge.cfg.model_name == str(bridge.cfg.model_name) and bridge.cfg.model_name.endswith("Llama-3.2-1B")


def test_hooked_transformer_from_the_local_folder(llama_dir, hf_llama):
    pytest.importorskip("transformer_lens", reason="needs TransformerLens")
    if not _compat.has_hooked_transformer():
        pytest.skip("TransformerLens 4 has no HookedTransformer; load_model uses TransformerBridge there")
    model = _compat.load_model(
        str(llama_dir), device="cpu"
    )  # the folder's name holds "llama": TL's own converter trips on that
    assert type(model).__name__ == "HookedTransformer"
    assert model.cfg.model_name == "Llama-3.2-1B" and _compat.model_processing(model) == "unprocessed"
    tokens = model.to_tokens("the dog chased a red ball .")
    outs, _ = layer_outputs(hf_llama, tokens)
    _, cache = model.run_with_cache(tokens, names_filter=[HOOK])
    assert torch.allclose(cache[HOOK], outs[LAYER], atol=1e-5)


def test_load_model_local_folder_on_the_bridge_and_bad_folder(llama_dir, tmp_path):
    model = _compat.load_model(str(llama_dir), bridge=True, device="cpu")
    assert _compat.is_bridge(model) and model.cfg.n_layers == N_LAYERS
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        _compat.load_model(str(tmp_path / "empty"))


# --------------------------------------------------------------------------- a published prior on it
def test_published_prior_lands_on_its_hook_and_steers(bridge, tmp_path):
    prior = published_prior_for(tmp_path / "glp")
    assert prior.cfg.hook_name == HOOK and prior.cfg.model_name == "meta-llama/Llama-3.2-1B"
    direction = torch.randn(D_MODEL, generator=torch.Generator().manual_seed(1))
    tokens = bridge.to_tokens(PROMPT)
    _, clean = bridge.run_with_cache(tokens, names_filter=[HOOK])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # its own model: no name, hook or basis warning
        with tl_glp.steer(
            bridge,
            direction,
            2.0,
            prior=prior,
            relative=True,
            positions="last",
            projection=tl_glp.ProjectionConfig(seed=0),
        ) as handle:
            assert handle.hook_name == HOOK
            _, steered = bridge.run_with_cache(tokens, names_filter=[HOOK])
            steered_text = greedy(bridge)
    alpha = 2.0 * prior.act_norm
    expected = prior.project(
        clean[HOOK][0, -1:] + alpha * direction, t_start=0.5, num_steps=20, generator=torch.Generator().manual_seed(0)
    )
    assert torch.allclose(steered[HOOK][0, -1:], expected, atol=1e-5)
    assert torch.equal(steered[HOOK][0, :-1], clean[HOOK][0, :-1])
    assert steered_text != greedy(bridge)
    assert not bridge.hook_dict[HOOK].fwd_hooks  # came off


def test_model_name_comparison_ignores_org_folder_and_case(bridge, llama_dir, tmp_path):
    assert _compat.same_model("meta-llama/Llama-3.2-1B", "Llama-3.2-1B")
    assert _compat.same_model("meta-llama/Llama-3.2-1B", str(llama_dir))
    assert _compat.same_model("META-LLAMA/llama-3.2-1b", "/hf/hub/models--meta-llama--Llama-3.2-1B/snapshots/abc123")
    assert not _compat.same_model("meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.1-8B")
    assert not _compat.same_model(None, "Llama-3.2-1B")
    other = published_prior_for(tmp_path / "other", model_name="meta-llama/Llama-3.1-8B")
    with pytest.warns(UserWarning, match="Llama-3.1-8B"):
        tl_glp.patch(bridge, torch.ones(D_MODEL), 1.0, prior=other).remove()
    if _compat.has_hooked_transformer():
        model = _compat.load_model(str(llama_dir), device="cpu")  # cfg.model_name "Llama-3.2-1B", no org
        own = published_prior_for(tmp_path / "own")
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            tl_glp.patch(model, torch.ones(D_MODEL), 1.0, prior=own).remove()


# --------------------------------------------------------------------------- bf16 model, float32 prior
def test_bf16_bridge_steered_by_a_float32_prior(llama_dir, tmp_path):
    from transformer_lens.model_bridge import TransformerBridge

    model = TransformerBridge.boot_transformers(str(llama_dir), device="cpu", dtype=torch.bfloat16)
    prior = published_prior_for(tmp_path / "glp")
    assert next(prior.parameters()).dtype == torch.float32
    tokens = model.to_tokens(PROMPT)
    direction = torch.randn(D_MODEL, generator=torch.Generator().manual_seed(1))
    with tl_glp.steer(
        model, direction, 1.0, prior=prior, relative=True, positions="last", projection=tl_glp.ProjectionConfig(seed=0)
    ):
        _, cache = model.run_with_cache(tokens, names_filter=[HOOK])
        text = greedy(model, n=3)
    assert cache[HOOK].dtype == torch.bfloat16 and bool(torch.isfinite(cache[HOOK].float()).all())
    assert isinstance(text, str) and text.startswith(PROMPT)
    assert prior.mean.dtype == torch.float32  # the normaliser stays float32


# --------------------------------------------------------------------------- the pipeline on it
def probing_frame(n: int = 160, seed: int = 0) -> pd.DataFrame:
    """Prompt/target rows in the SAE-Probes CSV layout: does the sentence mention a dog?"""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(["cat", "ball", "red", "small", "ran", "saw"]) for _ in range(4)]
        if i % 2:
            words[rng.randrange(4)] = "dog"
        rows.append({"prompt": "the " + " ".join(words) + " .", "target": int(i % 2)})
    return pd.DataFrame(rows)


def test_collect_train_steer_probe(bridge, tmp_path):
    pytest.importorskip("sklearn", reason="probing needs scikit-learn (the probes extra)")
    from tl_glp.probing import load_dataset

    store = tl_glp.collect_activations(
        bridge, random_sentences(150, seed=3, length=8), HOOK, out=tmp_path / "acts", progress=False, shard_rows=256
    )
    assert store.d_input == D_MODEL and _compat.same_model(store.model_name, "meta-llama/Llama-3.2-1B")
    assert store.model_processing == "unprocessed"
    prior = GenerativePrior.from_activations(store, n_blocks=1, d_hidden=32, d_mlp=64)
    result = tl_glp.train(
        prior, store, tl_glp.TrainConfig(batch_size=128, lr=2e-3, max_steps=15, eval_every=0, progress=False)
    )
    assert result.steps == 15 and prior.cfg.hook_name == HOOK
    direction = tl_glp.diff_of_means(bridge, ["the dog was happy ."], ["the cat was sad ."], HOOK)
    with tl_glp.steer(
        bridge, direction, 1.0, prior=prior, relative=True, positions="last", projection=tl_glp.ProjectionConfig(seed=0)
    ):
        assert greedy(bridge, n=3).startswith(PROMPT)
    results = tl_glp.run_probing(
        bridge,
        prior,
        ["meta", "raw"],
        [load_dataset(probing_frame(), name="has_dog")],
        top_k=16,
        controls=False,
        progress=False,
    )
    aucs = results.table.set_index("source").test_auc
    assert set(aucs.index) == {"meta", "raw"} and aucs.between(0, 1).all()


@pytest.mark.slow
def test_demo_command_on_a_local_folder(llama_dir, tmp_path):
    pytest.importorskip("sae_lens", reason="the demo's SAE comparison needs sae-lens")
    pytest.importorskip("sklearn", reason="the demo's probing needs scikit-learn")
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from tl_glp.cli import main

    sae = StandardSAE(
        StandardSAEConfig(
            d_in=D_MODEL, d_sae=64, metadata=SAEMetadata(hook_name=HOOK, model_name="meta-llama/Llama-3.2-1B")
        )
    )
    sae.save_model(str(tmp_path / "sae"))
    probing_frame().to_csv(tmp_path / "has_dog.csv", index=False)
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--model",
            str(llama_dir),
            "--hook",
            HOOK,
            "--sae",
            str(tmp_path / "sae"),
            "--dataset",
            str(tmp_path / "has_dog.csv"),
            "--quick",
            "--quiet",
            "--out",
            str(out),
            "--n-docs",
            "120",
            "--prior-steps",
            "10",
            "--set",
            "c2st_steps=20",
            "--set",
            "eval_samples=200",
            "--set",
            "real_strengths=1.0",
            "--set",
            "direction_strengths=1.0",
            "--set",
            f"judge_model={llama_dir}",  # the fluency judge: any local folder (here the model itself)
        ]
    )
    assert code == 0
    report = (out / "report.md").read_text()
    assert "Llama-3.2-1B" in report and HOOK in report
    assert (out / "probing.csv").is_file() and (out / "steering.csv").is_file()
    steering = pd.read_csv(out / "steering.csv")
    assert {"concept", "nll", "nll_judge", "distinct_2"} <= set(steering.columns)  # VADER, the judge, repetition
    numbers = json.loads((out / "numbers.json").read_text())
    check = numbers["direction_check"]
    assert "Direction check" in report and "VADER" in numbers["judges"]
    # --hook fixes the layer, so the choice is only the side; the sweep then judges towards that side
    choice = numbers["direction_choice"]
    assert choice["hook"] == HOOK and choice["target"] in ("positive", "negative")
    assert {(c["hook"], c["target"]) for c in choice["candidates"]} == {(HOOK, "positive"), (HOOK, "negative")}
    assert f"towards {choice['target']}" in numbers["judges"]
    assert pd.read_csv(out / "direction_choice.csv").chosen.sum() == 1
    assert "**Direction choice**" in report and f"`{HOOK}` towards {choice['target']}" in report
    # the head to head runs only where plain steering moves VADER; a random model's continuations may or may not
    # (on this seed its fixed output tokens do carry sentiment), so both branches are checked for consistency
    if check["steers"]:
        assert "steering_map_skipped" not in numbers and (out / "steering_map.csv").is_file()
        assert "head to head is left out" not in report
    else:
        assert "steering_map_skipped" in numbers and not (out / "steering_map.csv").exists()
        assert "head to head is left out" in report


def test_demo_dataset_arguments_with_csv_files():
    from tl_glp.studies.demo import split_dataset_args

    assert split_dataset_args(["data/has_dog.csv"]) == (
        None,
        ["data/has_dog.csv"],
    )  # offline: the CSV prompts are the corpus
    assert split_dataset_args(["HuggingFaceFW/fineweb", "a.csv"]) == ("HuggingFaceFW/fineweb", ["a.csv"])
    assert split_dataset_args(["5_hist_fig_ismale", "a.csv.zst"]) == (None, ["5_hist_fig_ismale", "a.csv.zst"])
