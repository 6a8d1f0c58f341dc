import pytest
import torch
from conftest import random_sentences

from tl_glp import diff_of_means, plot_pareto, sae_direction, steering_sweep
from tl_glp.steering import LLMJudge, ProbeScorer
from tl_glp.steering.scorers import Generations, nll_fluency, parse_rating
from tl_glp.steering.sweep import cost_table

HOOK = "blocks.1.hook_resid_post"


def test_diff_of_means_is_unit_and_separates_the_two_sets(tiny_model):
    from tl_glp import collect_activations

    pos = [s + " happy" for s in random_sentences(30, seed=1)]
    neg = [s + " sad" for s in random_sentences(30, seed=2)]
    d = diff_of_means(tiny_model, pos, neg, HOOK)
    assert d.shape == (32,) and abs(float(d.norm()) - 1) < 1e-5
    p = collect_activations(tiny_model, pos, HOOK, progress=False)
    n = collect_activations(tiny_model, neg, HOOK, progress=False)
    assert float(p.mean[0].float() @ d) > float(n.mean[0].float() @ d)
    raw = diff_of_means(tiny_model, pos, neg, HOOK, normalize=False)
    assert torch.allclose(raw / raw.norm(), d, atol=1e-6)


def test_contrastive_direction_is_the_last_token_mean_difference(tiny_model):
    """diff_of_means(positions="last"): mean of each text's last-token activation, positive minus negative,
    computed here one text at a time with run_with_cache (different lengths: the batched path pads)."""
    pos = ["the dog was happy", "a cat ran and was happy", "the big ball saw"]
    neg = ["the dog was sad", "sad"]

    def last(text):
        _, cache = tiny_model.run_with_cache(tiny_model.to_tokens(text), names_filter=[HOOK])
        return cache[HOOK][0, -1].float()

    expected = torch.stack([last(t) for t in pos]).mean(0) - torch.stack([last(t) for t in neg]).mean(0)
    raw = diff_of_means(tiny_model, pos, neg, HOOK, positions="last", normalize=False, batch_size=2)
    assert torch.allclose(raw, expected, atol=1e-5)
    assert torch.allclose(
        diff_of_means(tiny_model, pos, neg, HOOK, positions="last"), expected / expected.norm(), atol=1e-5
    )
    assert not torch.allclose(raw, diff_of_means(tiny_model, pos, neg, HOOK, normalize=False), atol=1e-3)


def test_sae_decoder_rows_are_directions():
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    sae = StandardSAE(StandardSAEConfig(d_in=32, d_sae=64, metadata=SAEMetadata(hook_name=HOOK)))
    d = sae_direction(sae, 5)
    assert torch.allclose(d, sae.W_dec[5].detach() / sae.W_dec[5].detach().norm())
    with pytest.raises(IndexError, match="64 features"):
        sae_direction(sae, 64)


def test_fluency_nll_matches_a_direct_computation(tiny_model):
    prompt = tiny_model.to_tokens("the dog")[0]
    cont = torch.tensor([5, 9, 12])
    gens = Generations(["the dog"], ["x"], [prompt], [cont])
    with torch.no_grad():
        logits = tiny_model(torch.cat([prompt, cont])[None])[0]
    lp = torch.log_softmax(logits, -1)
    expected = -torch.stack([lp[len(prompt) - 1 + i, cont[i]] for i in range(3)]).mean()
    assert nll_fluency(tiny_model, gens)[0] == pytest.approx(float(expected), abs=1e-5)


def test_sweep_table_scores_and_pareto_plot(tiny_model, tiny_prior_and_acts, tmp_path):
    prior, _ = tiny_prior_and_acts
    direction = torch.randn(
        32, generator=torch.Generator().manual_seed(0)
    )  # seeded: the test must not depend on which tests ran before
    prompts = ["the dog", "a red cat was"]
    judge_calls = []

    def judge(text):
        judge_calls.append(text)
        return "Rating: [[2]]"

    df = steering_sweep(
        tiny_model,
        direction,
        prompts,
        prior=prior,
        strengths=[0.5, 2.0],
        max_new_tokens=4,
        batch_size=5,
        scorers=[LLMJudge(judge, concept="dogs"), ProbeScorer(torch.ones(32), HOOK, name="probe")],
        progress=False,
    )
    assert len(df) == 2 + 2 * 2 * 2
    assert set(df.columns) >= {
        "prompt",
        "method",
        "r",
        "alpha",
        "continuation",
        "nll",
        "concept",
        "judge_concept",
        "probe",
    }
    assert set(df.method) == {"none", "plain", "prior"}
    assert (df.seconds > 0).all()
    cost = cost_table(df, max_new_tokens=4).set_index("method")
    assert cost.loc["plain", "cost_vs_plain"] == pytest.approx(1.0)
    steered = df[df.method != "none"]
    assert cost.loc["prior", "cost_vs_plain"] == pytest.approx(
        steered[steered.method == "prior"].seconds.sum() / steered[steered.method == "plain"].seconds.sum()
    )
    assert cost.loc["prior", "seconds_per_token"] == pytest.approx(
        steered[steered.method == "prior"].seconds.mean() / 4
    )
    assert df.loc[df.method == "plain", "alpha"].max() == pytest.approx(2.0 * prior.act_norm)
    assert (df.judge_concept == 2.0).all() and len(judge_calls) == len(df) and "dogs" in judge_calls[0]
    # the default concept score, computed independently: the unsteered model's activations on
    # prompt + continuation, projected on the unit direction and averaged over the continuation
    # (whether steering raises it depends on the random model's tokens, so that is not asserted)
    unit = direction / direction.norm()
    for row in df[df.continuation.str.len() > 0].head(4).itertuples():
        prompt_tokens = tiny_model.to_tokens(row.prompt)[0]
        full = torch.cat([prompt_tokens, tiny_model.to_tokens(row.continuation, prepend_bos=False)[0]])
        _, cache = tiny_model.run_with_cache(full[None], names_filter=[HOOK])
        want = (cache[HOOK][0, len(prompt_tokens) :] @ unit).mean()
        assert row.concept == pytest.approx(float(want), abs=1e-4)
    again = steering_sweep(
        tiny_model,
        direction,
        prompts,
        prior=prior,
        strengths=[0.5, 2.0],
        max_new_tokens=4,
        batch_size=5,
        progress=False,
    )
    assert list(again.continuation) == list(df.continuation)  # seeded: reproducible
    path = plot_pareto(df, tmp_path / "pareto.png")
    assert path.stat().st_size > 1000


def test_sweep_and_judge_bad_input(tiny_model):
    with pytest.raises(ValueError, match="no prior"):
        steering_sweep(tiny_model, torch.randn(32), ["the"], methods=["prior"], hook_name=HOOK, act_norm=1.0)
    with pytest.raises(ValueError, match="Unknown method"):
        steering_sweep(tiny_model, torch.randn(32), ["the"], methods=["magic"], hook_name=HOOK, act_norm=1.0)
    assert parse_rating("I'd say 1. Rating: [[2]]") == 2.0 and parse_rating("score: 1") == 1.0
    assert parse_rating("no idea") != parse_rating("no idea")  # NaN


def test_sweep_pairs_methods_greedy_by_default_and_leaves_the_global_rng_alone(tiny_model, tiny_prior_and_acts):
    prior, _ = tiny_prior_and_acts
    direction = torch.randn(32, generator=torch.Generator().manual_seed(3))
    prompts = ["the dog", "a red cat was", "the ball", "a small dog saw"]
    state = torch.get_rng_state()
    df = steering_sweep(
        tiny_model,
        direction,
        prompts,
        prior=prior,
        strengths=[0.0, 1.0],
        max_new_tokens=3,
        batch_size=3,
        progress=False,
    )
    assert torch.equal(torch.get_rng_state(), state)  # nothing touched the global RNG
    # paired: for each (prompt, r) the plain and prior rows share the seed (and so the batch)
    seeds = df.pivot_table(index=["prompt", "r"], columns="method", values="seed")
    assert (seeds["plain"] == seeds["prior"]).all()
    # greedy: at r = 0 plain steering is the unsteered model, so it repeats the baseline exactly
    base = df[df.method == "none"].set_index("prompt").continuation
    plain0 = df[(df.method == "plain") & (df.r == 0.0)].set_index("prompt").continuation
    assert (base == plain0[base.index]).all()
    sampled = steering_sweep(
        tiny_model,
        direction,
        prompts,
        prior=prior,
        strengths=[1.0],
        max_new_tokens=3,
        batch_size=3,
        do_sample=True,
        progress=False,
    )
    assert torch.equal(torch.get_rng_state(), state)
    again = steering_sweep(
        tiny_model,
        direction,
        prompts,
        prior=prior,
        strengths=[1.0],
        max_new_tokens=3,
        batch_size=3,
        do_sample=True,
        progress=False,
    )
    assert list(again.continuation) == list(sampled.continuation)


def test_sweep_maps_projectors_and_positions_each_paired_with_plain(tiny_model, tiny_prior_and_acts, tmp_path):
    from tl_glp.steering import matched_concept_gains
    from tl_glp.steering.projectors import GaussianShrinkage, PCAProjector

    prior, acts = tiny_prior_and_acts
    natural = acts[0 : len(acts)]
    direction = torch.nn.functional.normalize(torch.randn(32, generator=torch.Generator().manual_seed(3)), dim=0)
    prompts = ["the dog", "a red cat was", "the big"]
    pca = PCAProjector.fit(natural, k=4)
    methods = ["plain", "prior", pca, GaussianShrinkage.fit(natural)]
    df = steering_sweep(
        tiny_model,
        direction,
        prompts,
        prior=prior,
        strengths=[0.5, 1.5],
        methods=methods,
        positions=["last", "all"],
        max_new_tokens=3,
        progress=False,
    )
    assert len(df) == 3 + 3 * 2 * 4 * 2
    assert set(df[df.method == "none"].positions) == {"-"}
    assert df.groupby(["method", "positions"]).size().drop(("none", "-")).eq(6).all()
    # plain steering at every position, generated by hand with a hook of our own, matches the sweep
    alpha = 1.5 * prior.act_norm
    with tiny_model.hooks(fwd_hooks=[(HOOK, lambda act, hook: act + alpha * direction)]):
        manual = tiny_model.generate(
            prompts, max_new_tokens=3, do_sample=False, stop_at_eos=False, verbose=False, return_type="tokens"
        )
    rows = df[(df.method == "plain") & (df.positions == "all") & (df.r == 1.5)]
    assert rows.continuation.tolist() == [tiny_model.to_string(t) for t in manual[:, -3:]]
    gains = matched_concept_gains(df, n_boot=20)
    assert set(zip(gains.method, gains.positions)) == {
        (m, p) for m in ("prior", pca.name, "gaussian cap") for p in ("last", "all")
    }
    # each against plain at the same positions: the same as the gain on that slice alone
    from tl_glp.steering import matched_concept_gain

    part = df[df.positions.isin(["all", "-"])].drop(columns="positions")
    alone = matched_concept_gain(part, method=pca.name, n_boot=20)
    row = gains[(gains.method == pca.name) & (gains.positions == "all")].iloc[0]
    assert row.gain == pytest.approx(alone.gain, nan_ok=True) and row.ci_low == pytest.approx(alone.ci_low, nan_ok=True)
    with pytest.raises(ValueError, match="positions="):
        matched_concept_gain(df, method=pca.name)
    path = plot_pareto(df, tmp_path / "fronts.png")
    assert path.exists() and path.stat().st_size > 0
    with pytest.raises(ValueError, match="repeated"):
        steering_sweep(tiny_model, direction, prompts, prior=prior, positions=["last", "last"], progress=False)
