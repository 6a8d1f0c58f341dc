from dataclasses import asdict

import torch

from tl_glp.core import _io
from tl_glp.studies.testbed import MIDDLE_HOOK
from tl_glp.studies.testbed.datasets import SPECS
from tl_glp.studies.testbed.lm import SHIPPED_DIR, TESTBED_VERSION, LMConfig, shipped_manifest
from tl_glp.studies.testbed.quality import BARS, measure_quality


def test_the_shipped_model_meets_every_quality_bar(testbed):
    q = measure_quality(testbed, n_docs=200, seed=4242, oracle=True, probe_rows=400)
    for latent in ("sentiment", "tense", "topic"):
        assert q[f"auc_{latent}"] >= BARS[latent], (latent, q)
    probes = {k: v for k, v in q.items() if k.startswith("probe_")}
    assert set(probes) == {f"probe_{name}" for name in SPECS} | {"probe_min"} and all(
        v >= BARS["probe"] for v in probes.values()
    ), probes
    # the Bayes loss is the floor for a model that must infer the latents from the words
    assert q["entropy_floor"] < q["bayes_loss"] < q["lm_loss"] < q["bayes_loss"] + 0.1, q
    assert q["passes"] == 1.0


def test_the_manifest_describes_the_shipped_weights():
    manifest = shipped_manifest()
    weights = SHIPPED_DIR / "model.safetensors"
    assert manifest is not None and weights.stat().st_size <= 5_000_000
    assert manifest["sha256"] == _io.sha256_file(weights) and manifest["size_bytes"] == weights.stat().st_size
    assert manifest["config"] == asdict(LMConfig()) and manifest["testbed_version"] == TESTBED_VERSION
    assert manifest["command"].startswith("tl-glp testbed build --seed 0") and manifest["seed"] == 0
    assert manifest["quality"]["passes"] == 1.0
    m = manifest["metrics"]
    # the floor is a lower bound (the generator knows the latents); the model must infer them
    assert 0 < m["lm_loss"] - m["entropy_floor"] < 0.2, m


def test_load_uses_the_shipped_weights_without_training(tmp_path, monkeypatch):
    import tl_glp.studies.testbed.lm as lm
    from tl_glp.studies.testbed import load

    def refuse(*args, **kwargs):
        raise AssertionError("load() trained although weights are shipped")

    monkeypatch.setattr(lm, "train_lm", refuse)
    testbed = load(cache_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert testbed.metrics == shipped_manifest()["metrics"]
    shipped = _io.read_tensors(SHIPPED_DIR / "model.safetensors")
    assert all(torch.equal(shipped[k], v) for k, v in testbed.model.state_dict().items())


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
    from tl_glp.studies.testbed import load

    tiny = LMConfig(
        n_layers=1, d_model=32, n_heads=2, d_mlp=64, n_ctx=32, train_docs=200, steps=5, batch_size=4, eval_docs=20
    )
    first = load(cache_dir=tmp_path, config=tiny, progress=False)
    weights = next(tmp_path.rglob("model.safetensors"))
    stamp = weights.stat().st_mtime_ns
    second = load(cache_dir=tmp_path, config=tiny, progress=False, retrain=False)
    assert second is first  # memoised in-process
    from tl_glp.studies.testbed import _LOADED

    _LOADED.clear()
    third = load(cache_dir=tmp_path, config=tiny, progress=False)
    assert weights.stat().st_mtime_ns == stamp  # loaded from disk, not retrained
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), third.model.state_dict().values()))
    weights.write_bytes(b"corrupt")
    _LOADED.clear()
    fourth = load(cache_dir=tmp_path, config=tiny, progress=False)
    assert all(
        torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), fourth.model.state_dict().values())
    )  # deterministic rebuild


def test_damaged_shipped_weights_fail_loudly(tmp_path):
    import shutil

    import pytest

    from tl_glp.studies.testbed.language import Language
    from tl_glp.studies.testbed.lm import load_shipped

    shutil.copytree(SHIPPED_DIR, tmp_path / "weights")
    (tmp_path / "weights" / "model.safetensors").write_bytes(b"damaged")
    with pytest.raises(ValueError, match="sha256"):
        load_shipped(LMConfig(), Language(), folder=tmp_path / "weights")
    assert (
        load_shipped(LMConfig(seed=1), Language(), folder=tmp_path / "weights") is None
    )  # another config: not shipped
