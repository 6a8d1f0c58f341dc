import torch

from tests.conftest import random_sentences
from tl_glp.evaluation import delta_lm_loss, lm_loss_with_hook
from tl_glp.saes import sae_reconstruction_hook, train_sae

HOOK = "blocks.1.hook_resid_post"


def test_identity_hook_gives_zero_delta_and_noise_hurts(tiny_model, testbed):
    texts = ["the dog ran .", "a red cat was happy .", "the big ball"]
    assert delta_lm_loss(tiny_model, texts, HOOK, lambda act, hook: act).delta == 0.0
    trained_texts = testbed.language.sample_texts(20, seed=9)  # a trained model: noise must hurt it
    noisy = delta_lm_loss(
        testbed.model, trained_texts, "blocks.2.hook_resid_post", lambda act, hook: act + 50 * torch.randn_like(act)
    )
    assert noisy.delta > 0.1
    # the loss is the plain mean next-token cross-entropy over real tokens
    tokens = tiny_model.to_tokens(texts[0])
    with torch.no_grad():
        expected = tiny_model(tokens, return_type="loss")
    assert abs(lm_loss_with_hook(tiny_model, texts[:1]) - float(expected)) < 1e-5


def test_sae_lens_training_and_reconstruction_hook(tiny_prior_and_acts, tiny_model):
    _, acts = tiny_prior_and_acts
    sae = train_sae(acts, d_sae=128, k=8, steps=300, batch_size=256, seed=0)  # FVU ~0.33 (150 steps sat at 0.49-0.51)
    x = acts[0:500]
    with torch.no_grad():
        fvu = float(((sae.decode(sae.encode(x)) - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    assert fvu < 0.5
    assert sae.cfg.metadata.hook_name == HOOK
    hook = sae_reconstruction_hook(sae)
    act = x[:6].reshape(2, 3, 32)
    out = hook(act)
    assert torch.equal(out[:, 0], act[:, 0]) and not torch.equal(out[:, 1:], act[:, 1:])


def test_load_sae_from_a_local_folder_and_bad_specs(tmp_path):
    import pytest
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from tl_glp.saes import load_sae

    sae = StandardSAE(StandardSAEConfig(d_in=8, d_sae=16, metadata=SAEMetadata(hook_name=HOOK)))
    sae.save_model(str(tmp_path / "sae"))
    loaded = load_sae(str(tmp_path / "sae"))
    assert torch.equal(loaded.W_dec, sae.W_dec) and loaded.cfg.metadata.hook_name == HOOK
    with pytest.raises(ValueError, match="release:sae_id"):
        load_sae("no-such-folder-and-no-colon")


def test_demo_sorts_dataset_arguments_into_corpus_and_probing_sets():
    from tl_glp.studies.demo import split_dataset_args

    assert split_dataset_args(None) == ("NeelNanda/pile-10k", "all")
    assert split_dataset_args(["HuggingFaceFW/fineweb", "5_hist_fig_ismale"]) == (
        "HuggingFaceFW/fineweb",
        ["5_hist_fig_ismale"],
    )
    assert split_dataset_args(["all"])[1] == "all"


def test_compare_delta_lm_loss_pairs_documents_and_matches_delta_lm_loss(tiny_model):
    from tl_glp.evaluation import compare_delta_lm_loss, document_losses

    texts = random_sentences(24, seed=4, length=9)
    gen = torch.Generator().manual_seed(0)
    noise = {"small": 0.5, "large": 5.0}
    fixed = {
        name: torch.randn(1, 64, 32, generator=gen) * s for name, s in noise.items()
    }  # deterministic noise per position

    def hook(name):
        return lambda act, hook: act + fixed[name][:, : act.shape[1]]

    cmp = compare_delta_lm_loss(tiny_model, texts, HOOK, {name: hook(name) for name in noise}, n_boot=500)
    for name in noise:  # the point estimate is exactly delta_lm_loss
        d, lo, hi = cmp.delta(name)
        assert abs(d - delta_lm_loss(tiny_model, texts, HOOK, hook(name)).delta) < 1e-9 and lo <= d <= hi
    # an independent per-document computation
    per_doc = document_losses(tiny_model, texts)
    for i, text in enumerate(texts[:3]):
        tokens = tiny_model.to_tokens(text)
        with torch.no_grad():
            want = tiny_model(tokens, return_type="loss", loss_per_token=True).sum()
        assert abs(float(per_doc.sums[i]) - float(want)) < 1e-4 and per_doc.counts[i] == tokens.shape[1] - 1
    diff, lo, hi = cmp.difference("large", "small")
    assert lo <= diff <= hi and abs(diff - (cmp.delta("large")[0] - cmp.delta("small")[0])) < 1e-12
    # paired: the same hook under two names differs by exactly 0 on every resample, although each
    # delta alone varies across resamples (an unpaired CI of the difference would not be 0)
    twins = compare_delta_lm_loss(tiny_model, texts, HOOK, {"a": hook("large"), "b": hook("large")}, n_boot=500)
    assert twins.difference("a", "b") == (0.0, 0.0, 0.0)
    _, lo_a, hi_a = twins.delta("a")
    assert hi_a - lo_a > 1e-3
    table = cmp.table
    assert table.n_docs.tolist() == [24, 24] and not table.isna().any().any()
