import torch

from tl_glp.testbed import MIDDLE_HOOK
from tl_glp.testbed.lm import LMConfig


def test_testbed_model_learns_the_language_close_to_its_entropy_floor(testbed):
    m = testbed.metrics
    # the floor is a lower bound (the generator knows the latents); the model must infer them
    assert m["lm_loss"] - m["entropy_floor"] < 0.3, m
    assert m["train_seconds"] < 240


def test_testbed_model_behaves_like_a_transformer_lens_model(testbed):
    model = testbed.model
    tokens = model.to_tokens("the dog chased a red ball .")
    assert tokens[0, 0] == testbed.tokenizer.bos_token_id and tokens.shape[1] == 8
    assert model.to_string(tokens[0, 1:]) == "the dog chased a red ball ."
    torch.manual_seed(0)
    text = model.generate("the dogs", max_new_tokens=12, verbose=False, do_sample=False)
    assert testbed.language.is_grammatical(text)
    _, cache = model.run_with_cache(tokens, names_filter=[MIDDLE_HOOK])
    assert cache[MIDDLE_HOOK].shape == (1, 8, 128)


def test_samples_from_the_model_are_mostly_grammatical(testbed):
    torch.manual_seed(0)
    texts = testbed.model.generate(["the", "a", "some", "the"] * 4, max_new_tokens=20, verbose=False, do_sample=True)
    share = sum(testbed.language.grammatical_fraction(t) for t in texts) / len(texts)
    assert share > 0.8


def test_cache_is_reused_and_rebuilt_when_corrupt(tmp_path):
    from tl_glp.testbed import load

    tiny = LMConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=64, n_ctx=32, train_docs=200, steps=5, batch_size=4, eval_docs=20)
    first = load(cache_dir=tmp_path, config=tiny, progress=False)
    weights = next(tmp_path.rglob("model.safetensors"))
    stamp = weights.stat().st_mtime_ns
    second = load(cache_dir=tmp_path, config=tiny, progress=False, retrain=False)
    assert second is first  # memoised in-process
    from tl_glp.testbed import _LOADED

    _LOADED.clear()
    third = load(cache_dir=tmp_path, config=tiny, progress=False)
    assert weights.stat().st_mtime_ns == stamp  # loaded from disk, not retrained
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), third.model.state_dict().values()))
    weights.write_bytes(b"corrupt")
    _LOADED.clear()
    fourth = load(cache_dir=tmp_path, config=tiny, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), fourth.model.state_dict().values()))  # deterministic rebuild
