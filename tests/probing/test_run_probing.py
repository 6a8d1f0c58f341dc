import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import random_sentences

from tl_glp import run_probing
from tl_glp.probing import (
    MetaNeurons,
    MetaNeuronSAE,
    MLPNeurons,
    PCAFeatures,
    RawActivations,
    SAEFeatures,
    last_token_activations,
    load_dataset,
)

HOOK = "blocks.1.hook_resid_post"


def concept_frame(n=240, seed=0):
    """Prompts ending in 'happy' (target pos) or 'sad' (neg): the last token carries the concept."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.array(["pos", "neg"] * (n // 2)))
    prompts = [s + (" happy" if lab == "pos" else " sad") for s, lab in zip(random_sentences(n, seed=seed), labels)]
    return pd.DataFrame({"prompt": prompts, "target": labels})


def test_sae_probes_datasets_load_with_their_own_labels_and_split():
    from sae_probes.utils_data import get_train_test_indices, get_yvals

    for name in ("95_toxic_is", "41_truthqa_tf"):
        ds = load_dataset(name)
        n = len(ds)
        assert np.array_equal(ds.labels, get_yvals(name)[:n])
        n_train = min(1024, n - 100)
        tr, te = get_train_test_indices(get_yvals(name)[:n], n_train, n - n_train - 1, pos_ratio=0.5, seed=42)
        assert np.array_equal(ds.train_idx, tr) and np.array_equal(ds.test_idx, te)
        assert len(set(ds.train_idx) & set(ds.test_idx)) == 0


def test_dataset_errors_are_clear():
    with pytest.raises(KeyError, match="Did you mean.*5_hist_fig_ismale"):
        load_dataset("hist_fig_ismale")
    with pytest.raises(ValueError, match="1 class"):
        load_dataset(pd.DataFrame({"prompt": ["a"] * 300, "target": [1] * 300}))
    with pytest.raises(ValueError, match="'prompt' and 'target'"):
        load_dataset(pd.DataFrame({"text": ["a"] * 300, "label": [0, 1] * 150}))


def test_last_token_is_right_with_left_and_right_padding(tiny_model):
    prompts = ["the dog", "a red cat was happy .", "big ball"]
    right = last_token_activations(tiny_model, prompts, [HOOK], padding_side="right")[HOOK]
    left = last_token_activations(tiny_model, prompts, [HOOK], padding_side="left")[HOOK]
    single = torch.stack([tiny_model.run_with_cache(p, names_filter=[HOOK])[1][HOOK][0, -1] for p in prompts])
    assert torch.allclose(right, single, atol=1e-5) and torch.allclose(left, single, atol=1e-5)


def test_activation_cache_on_disk_is_reused(tiny_model, tmp_path, monkeypatch):
    prompts = random_sentences(10)
    first = last_token_activations(tiny_model, prompts, [HOOK], cache_dir=tmp_path, cache_key="d")
    assert len(list(tmp_path.iterdir())) == 1
    monkeypatch.setattr(
        tiny_model, "run_with_cache", lambda *a, **k: (_ for _ in ()).throw(AssertionError("model re-ran"))
    )
    again = last_token_activations(tiny_model, prompts, [HOOK], cache_dir=tmp_path, cache_key="d")
    assert torch.equal(first[HOOK], again[HOOK])


def test_run_probing_end_to_end_with_an_sae_lens_sae(tiny_model, tiny_prior_and_acts, tmp_path):
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    prior, _ = tiny_prior_and_acts
    torch.manual_seed(0)
    sae = StandardSAE(
        StandardSAEConfig(d_in=32, d_sae=64, metadata=SAEMetadata(hook_name=HOOK, model_name="tiny-test"))
    )
    sources = ["meta", "raw", MLPNeurons(), PCAFeatures(8), SAEFeatures(sae)]
    frames = [concept_frame(seed=s) for s in (0, 1)]
    results = run_probing(tiny_model, prior, sources, frames, top_k=64, progress=False, cache_dir=tmp_path / "cache")
    table = results.table
    assert len(table) == 2 * 5 * 2  # datasets x sources x (real, shuffled)
    real, control = table[~table.control], table[table.control]
    assert real.loc[real.source == "raw", "test_auc"].min() > 0.8  # the last token is the concept word
    assert (control.test_auc - 0.5).abs().max() < 0.2
    summary = results.summary(n_boot=500)
    assert {"mean_test_auc", "ci_low", "ci_high"} <= set(summary.columns)
    assert (summary.ci_low <= summary.mean_test_auc).all() and (summary.mean_test_auc <= summary.ci_high).all()
    assert results.wins().shape == (5, 5)
    assert results.plot(tmp_path / "probing.png").stat().st_size > 1000
    assert len(pd.read_csv(results.to_csv(tmp_path / "probing.csv"))) == len(table)
    assert real.loc[real.source == "meta", "n_features"].iloc[0] == prior.n_features


def test_a_planted_single_dimension_is_found_and_the_control_stays_at_chance(tiny_tokenizer):
    from conftest import make_tiny_model

    model = make_tiny_model(tiny_tokenizer, seed=5)
    with torch.no_grad():  # plant the concept: residual dimension 7 says happy (+) or sad (-)
        model.W_E[tiny_tokenizer.convert_tokens_to_ids("happy"), 7] = 25.0
        model.W_E[tiny_tokenizer.convert_tokens_to_ids("sad"), 7] = -25.0
    results = run_probing(
        model,
        None,
        ["raw"],
        [concept_frame(400, seed=3)],
        hook_name="blocks.0.hook_resid_pre",
        top_k=32,
        progress=False,
    )
    real = results.table[~results.table.control].iloc[0]
    control = results.table[results.table.control].iloc[0]
    assert real.feature == 7 and real.test_auc > 0.99
    assert abs(control.test_auc - 0.5) < 0.12


def test_sources_refuse_mismatched_hooks_and_widths(tiny_model):
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    acts = {HOOK: torch.randn(5, 32)}
    other_hook = StandardSAE(
        StandardSAEConfig(d_in=32, d_sae=8, metadata=SAEMetadata(hook_name="blocks.0.hook_resid_post"))
    )
    with pytest.raises(ValueError, match="trained at 'blocks.0.hook_resid_post'"):
        SAEFeatures(other_hook).features(acts, HOOK)
    narrow = StandardSAE(StandardSAEConfig(d_in=16, d_sae=8, metadata=SAEMetadata(hook_name=HOOK)))
    with pytest.raises(ValueError, match="width 16"):
        SAEFeatures(narrow).features(acts, HOOK)
    from tl_glp import GenerativePrior

    with pytest.raises(ValueError, match="width 32"):
        MetaNeurons(GenerativePrior.from_activations(torch.randn(50, 16), n_blocks=1)).features(acts, HOOK)
    with pytest.raises(ValueError, match="Unknown feature source"):
        run_probing(tiny_model, None, ["magic"], [concept_frame()], hook_name=HOOK, progress=False)
    assert RawActivations().features(acts, HOOK).shape == (5, 32)


def test_sae_probes_own_evaluation_runs_on_the_meta_neuron_adapter(tiny_model, tiny_prior_and_acts, tmp_path):
    """sae_probes.run_sae_evals benchmarks meta-neurons exactly as it benchmarks an SAE."""
    from sae_probes import run_sae_evals

    prior, _ = tiny_prior_and_acts
    name = "95_toxic_is"
    ds = load_dataset(name)
    cache = tmp_path / "model_cache" / "model_activations_tiny-test"
    cache.mkdir(parents=True)
    acts = last_token_activations(tiny_model, ds.prompts, [HOOK])[HOOK]
    torch.save(acts, cache / f"{name}_{HOOK}.pt")  # the layout sae_probes reads model activations from
    adapter = MetaNeuronSAE(prior)
    run_sae_evals(
        adapter,
        model_name="tiny-test",
        hook_name=HOOK,
        reg_type="l2",
        setting="normal",
        ks=[1, 4],
        datasets=[name],
        results_path=tmp_path / "results",
        model_cache_path=tmp_path / "model_cache",
        device="cpu",
    )
    out = list((tmp_path / "results").rglob("*.json"))
    assert len(out) == 1
    metrics = json.loads(out[0].read_text())
    assert [m["k"] for m in metrics] == [1, 4]
    assert all(0.0 <= m["test_auc"] <= 1.0 for m in metrics)
    assert max(max(m["indices"]) for m in metrics) < prior.n_features


def test_run_probing_passes_its_context_size_to_the_extraction(tiny_model, monkeypatch):
    """``context_size`` reaches the activations: a truncated prompt (BOS + last tokens) gives other
    last-token activations above layer 0, and the probe reads exactly those."""
    from tl_glp.probing import runner

    seen = []
    real_extract = runner.last_token_activations

    def recording(*args, **kwargs):
        seen.append(kwargs.get("context_size"))
        return real_extract(*args, **kwargs)

    monkeypatch.setattr(runner, "last_token_activations", recording)
    frame = concept_frame(240, seed=4)
    for context in (None, 3):
        run_probing(tiny_model, None, ["raw"], [frame], hook_name=HOOK, top_k=8, controls=False, progress=False)
        run_probing(
            tiny_model,
            None,
            ["raw"],
            [frame],
            hook_name=HOOK,
            top_k=8,
            controls=False,
            context_size=context,
            progress=False,
        )
    assert seen == [None, None, None, 3]
    long_prompts = [p for p in frame.prompt if len(tiny_model.to_tokens(p)[0]) > 3][:4]
    full = real_extract(tiny_model, long_prompts, [HOOK])[HOOK]
    cut = real_extract(tiny_model, long_prompts, [HOOK], context_size=3)[HOOK]
    assert not torch.allclose(full, cut)
