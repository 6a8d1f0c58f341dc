import pytest
import torch
from conftest import make_tiny_bridge, make_tiny_model, random_sentences

from tl_glp import ActivationStore, collect_activations

HOOK = "blocks.1.hook_resid_post"


def reference_rows(model, texts, hook):
    """Oracle: one document at a time, keep non-special positions."""
    rows = []
    special = set(model.tokenizer.all_special_ids)
    for text in texts:
        tokens = model.to_tokens(text)
        _, cache = model.run_with_cache(tokens, names_filter=[hook])
        keep = torch.tensor([int(t) not in special for t in tokens[0]])
        rows.append(cache[hook][0][keep])
    return torch.cat(rows)


def test_string_documents_give_every_real_token_once(tiny_model):
    """Unpacked (one padded document per sequence): each row equals the document run on its own."""
    texts = random_sentences(13, seed=1)
    acts = collect_activations(tiny_model, texts, HOOK, batch_size=4, packing=False, progress=False)
    expected = reference_rows(tiny_model, texts, HOOK)
    assert len(acts) == sum(len(t.split()) for t in texts) == expected.shape[0]
    assert torch.allclose(acts[0 : len(acts)], expected, atol=1e-5)
    assert acts.model_name == "tiny-test" and acts.model_processing == "unprocessed"


def test_stop_at_layer_means_later_blocks_never_run(tiny_model):
    fired = []
    tiny_model.add_hook("blocks.2.hook_resid_pre", lambda act, hook: fired.append(hook.name))
    try:
        collect_activations(tiny_model, random_sentences(3), "blocks.0.hook_resid_post", progress=False)
        assert fired == []
        collect_activations(tiny_model, random_sentences(3), "blocks.2.hook_resid_post", progress=False)
        assert fired  # the deepest requested block does run
    finally:
        tiny_model.reset_hooks()


def test_several_hooks_in_one_pass_match_single_hook_runs(tiny_model):
    texts = random_sentences(5, seed=2)
    both = collect_activations(tiny_model, texts, ["blocks.0.hook_resid_post", HOOK], progress=False)
    one = collect_activations(tiny_model, texts, HOOK, progress=False)
    assert both.hook_names == ["blocks.0.hook_resid_post", HOOK]
    assert torch.allclose(both[0 : len(both)][:, 1], one[0 : len(one)])


@pytest.mark.parametrize("packing", [True, False])
def test_disk_store_equals_memory_and_resumes_after_a_crash(tiny_model, tmp_path, packing):
    n_docs, crash_at = (400, 300) if packing else (40, 23)  # packing tokenises 256 documents ahead
    texts = random_sentences(n_docs, seed=3)
    in_memory = collect_activations(tiny_model, texts, HOOK, batch_size=3, packing=packing, progress=False)

    def crashing(n):
        for i, t in enumerate(texts):
            if i == n:
                raise KeyboardInterrupt("simulated kill")
            yield t

    with pytest.raises(KeyboardInterrupt):
        collect_activations(
            tiny_model,
            crashing(crash_at),
            HOOK,
            out=tmp_path / "s",
            batch_size=3,
            shard_rows=16,
            packing=packing,
            progress=False,
        )
    partial = ActivationStore.open(tmp_path / "s")
    assert 0 < len(partial) < len(in_memory) and len(partial) % 16 == 0 and not partial.complete
    assert partial.shards[-1]["last_doc"] < crash_at
    store = collect_activations(
        tiny_model, texts, HOOK, out=tmp_path / "s", batch_size=3, shard_rows=16, packing=packing, progress=False
    )
    assert store.complete and len(store) == len(in_memory)
    assert torch.allclose(store[0 : len(store)], in_memory[0 : len(in_memory)], atol=1e-6)
    assert torch.allclose(store.mean, in_memory.mean, atol=1e-6)
    manifest_docs = [(s["first_doc"], s["last_doc"]) for s in store.shards]
    assert manifest_docs[0][0] == 0 and manifest_docs[-1][1] == n_docs - 1
    with pytest.raises(Exception, match="other settings"):  # a padded store is not resumed packed, nor the reverse
        collect_activations(tiny_model, texts, HOOK, out=tmp_path / "s", packing=not packing, progress=False)


def test_a_complete_store_is_not_recomputed(tiny_model, tmp_path, monkeypatch):
    texts = random_sentences(6)
    first = collect_activations(tiny_model, texts, HOOK, out=tmp_path / "s", progress=False)
    monkeypatch.setattr(
        tiny_model, "run_with_cache", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran the model"))
    )
    again = collect_activations(tiny_model, texts, HOOK, out=tmp_path / "s", progress=False)
    assert len(again) == len(first)


def test_max_tokens_token_tensors_and_hf_datasets(tiny_model):
    from datasets import Dataset

    capped = collect_activations(tiny_model, random_sentences(30), HOOK, max_tokens=17, progress=False)
    assert len(capped) == 17
    tokens = torch.randint(4, 20, (4, 9))
    from_tokens = collect_activations(tiny_model, tokens, HOOK, progress=False)
    assert len(from_tokens) == 36  # no special ids among them
    ds = Dataset.from_dict({"text": random_sentences(5, seed=9)})
    from_ds = collect_activations(tiny_model, ds, HOOK, progress=False)
    assert len(from_ds) == len(collect_activations(tiny_model, list(ds["text"]), HOOK, progress=False))


def test_transformer_bridge_with_legacy_and_canonical_names():
    bridge = make_tiny_bridge()
    tokens = torch.randint(0, 40, (5, 7))
    legacy = collect_activations(bridge, tokens, "blocks.1.hook_resid_post", progress=False)
    canonical = collect_activations(bridge, tokens, "blocks.1.hook_out", progress=False)
    assert len(legacy) == 35 and torch.allclose(legacy[0:35], canonical[0:35])
    _, cache = bridge.run_with_cache(tokens, names_filter=["blocks.1.hook_out"])
    assert torch.allclose(legacy[0:7], cache["blocks.1.hook_out"][0], atol=1e-5)


def test_bad_input(tiny_model):
    with pytest.raises(KeyError, match="blocks.1.hook_resid_post"):
        collect_activations(tiny_model, ["the dog"], "blocks.1.hook_resid_pots", progress=False)
    with pytest.raises(ValueError, match="no documents"):
        collect_activations(tiny_model, [], HOOK, progress=False)
    with pytest.raises(ValueError, match="one width"):
        collect_activations(tiny_model, ["the dog"], [HOOK, "blocks.1.mlp.hook_post"], progress=False)
    with pytest.raises(TypeError, match="strings"):
        collect_activations(tiny_model, [1, 2], HOOK, progress=False)


def test_sae_lens_cached_activations_are_a_source(tmp_path, monkeypatch):
    """Activations written by SAE-Lens's own CacheActivationsRunner train a prior directly."""
    pytest.importorskip("sae_lens", reason="needs sae-lens (the sae extra; not installable with TransformerLens 4)")
    pytest.importorskip("datasets", reason="needs datasets (the dev extra)")
    import sae_lens.cache_activations_runner as runner_mod
    from datasets import Dataset
    from sae_lens import CacheActivationsRunner, CacheActivationsRunnerConfig

    from tl_glp.activations.saelens import SAELensCache

    model = make_tiny_model(n_layers=2, d_model=16, seed=3)
    monkeypatch.setattr(runner_mod, "load_model", lambda **kwargs: model)  # offline: no hub download
    ds = Dataset.from_dict({"input_ids": torch.randint(0, 40, (32, 8)).tolist()})
    cfg = CacheActivationsRunnerConfig(
        dataset_path="unused",
        model_name="tiny-test",
        model_batch_size=8,
        hook_name="blocks.0.hook_resid_post",
        d_in=16,
        training_tokens=32 * 8,
        context_size=8,
        new_cached_activations_path=str(tmp_path / "cache"),
        device="cpu",
        shuffle=False,
        prepend_bos=False,
        buffer_size_gb=0.0005,
    )
    CacheActivationsRunner(cfg, override_dataset=ds).run()
    src = SAELensCache(tmp_path / "cache", model_name="tiny-test", progress=False)
    assert src.d_input == 16 and src.hook_names == ["blocks.0.hook_resid_post"] and len(src) % 8 == 0
    from datasets import load_from_disk

    tokens = torch.tensor(load_from_disk(str(tmp_path / "cache"))[2]["token_ids"])[None]
    _, cache = model.run_with_cache(tokens, names_filter=["blocks.0.hook_resid_post"])
    assert torch.allclose(src[16:24], cache["blocks.0.hook_resid_post"][0], atol=1e-5)
    from tl_glp import GenerativePrior, TrainConfig, train

    prior = GenerativePrior.from_activations(src, n_blocks=1)
    assert prior.cfg.hook_names == ["blocks.0.hook_resid_post"] and prior.cfg.model_name == "tiny-test"
    result = train(prior, src, TrainConfig(batch_size=64, lr=1e-3, max_steps=3, progress=False, eval_every=0))
    assert result.steps == 3
