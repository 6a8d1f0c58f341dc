"""Likelihood and on-manifold scores, off-manifold detection, cheaper and adaptive projection.

Tolerances are stated where they are checked; the measured values (see the README section
"How on-manifold is this activation?") sit well inside them.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import mixture, random_sentences, train_quickly
from scipy.stats import spearmanr

from tl_glp import GenerativePrior, ProjectionConfig, steering_hook
from tl_glp.core.flow import evaluations, projection_schedule
from tl_glp.manifold.adaptive import AdaptiveProjector, OffManifold, score_recorder
from tl_glp.manifold.likelihood import denoising_score, flow_log_prob, log_prob


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tests are many small ops: one thread is several times faster on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gaussian_velocity(s: float):
    """The exact flow-matching velocity of data N(0, s^2 I): ``(t - (1-t) s^2) / sigma_t^2 * z``."""
    return lambda z, t: (t - (1 - t) * s**2) / ((1 - t) ** 2 * s**2 + t**2) * z


# ----------------------------------------------------------------------------- the ODE, analytic
def test_flow_log_prob_matches_an_analytic_density():
    z = torch.randn(64, 5, generator=torch.Generator().manual_seed(0)) * 3
    exact = torch.distributions.Normal(0.0, 3.0).log_prob(z).sum(-1)
    lp, se, nfe = flow_log_prob(gaussian_velocity(3.0), z, t_min=0.0, rtol=1e-6, atol=1e-6)
    assert torch.allclose(lp, exact, atol=1e-3) and bool((se == 0).all()) and nfe > 0
    # a wrong sign (integrating -div) would be off by 2 d log s = 11 nats
    hut, hut_se, _ = flow_log_prob(
        gaussian_velocity(3.0), z, method="hutchinson", n_probes=4, t_min=0.0, rtol=1e-6, atol=1e-6
    )
    # for a field proportional to z, Rademacher probes are exact: e^T (c I) e = c d
    assert torch.allclose(hut, exact, atol=1e-3) and float(hut_se.max()) < 1e-4


def test_log_prob_includes_the_normaliser_jacobian():
    """Scaling the data by c (same network, statistics scaled) shifts log p by -d log c."""
    prior = GenerativePrior.from_activations(torch.randn(256, 6) * 2 + 1, n_blocks=1).eval()
    scaled = GenerativePrior.from_activations(torch.randn(256, 6), n_blocks=1).eval()
    scaled.load_state_dict(prior.state_dict())
    with torch.no_grad():
        scaled.mean.mul_(10.0)
        scaled.var.mul_(100.0)
    x = torch.randn(8, 6) * 2 + 1
    a, b = log_prob(prior, x).log_prob, log_prob(scaled, 10.0 * x).log_prob
    assert torch.allclose(b, a - 6 * math.log(10.0), atol=1e-3)
    bpd = log_prob(prior, x).bits_per_dim
    assert torch.allclose(bpd, -a / (6 * math.log(2)), atol=1e-5)


# ----------------------------------------------------------------------------- trained priors, known truth
@pytest.fixture(scope="module")
def gaussian_prior():
    """A prior trained on a correlated 8-d Gaussian (300 steps); returns (prior, true distribution)."""
    torch.manual_seed(0)
    d, g = 8, torch.Generator().manual_seed(1)
    a = torch.randn(d, d, generator=g) * 0.5 + torch.eye(d)
    dist = torch.distributions.MultivariateNormal(torch.randn(d, generator=g) * 3, a @ a.T)
    data = dist.sample((8192,))
    prior = GenerativePrior.from_activations(data, n_blocks=2, d_hidden=64, d_mlp=128)
    train_quickly(prior, data, steps=300)
    return prior.eval(), dist


def test_trained_gaussian_prior_matches_the_analytic_log_density(gaussian_prior):
    prior, dist = gaussian_prior
    x = dist.sample((128,))
    out = log_prob(prior, x)
    err = out.log_prob - dist.log_prob(x)
    # stated tolerance: mean |error| <= 0.1 nats per dimension, bias <= 0.05 nats/dim (measured ~0.04, ~0.006)
    assert float(err.abs().mean()) / 8 <= 0.1
    assert abs(float(err.mean())) / 8 <= 0.05
    assert spearmanr(out.log_prob, dist.log_prob(x))[0] >= 0.9


def test_hutchinson_agrees_with_exact_within_its_reported_error(gaussian_prior):
    prior, dist = gaussian_prior
    x = dist.sample((48,))
    exact = log_prob(prior, x).log_prob
    hut = log_prob(prior, x, method="hutchinson", n_probes=8, seed=3)
    z = (hut.log_prob - exact) / hut.stderr
    assert float((z.abs() < 2.5).float().mean()) >= 0.85  # ~99% expected; 95% measured at |z| < 2
    assert float(hut.stderr.min()) > 0
    again = log_prob(prior, x, method="hutchinson", n_probes=8, seed=3)
    assert torch.equal(again.log_prob, hut.log_prob)  # seeded


def test_log_prob_ranks_mixture_points_by_true_density():
    torch.manual_seed(0)
    d, spread = 8, 0.5
    data, centres = mixture(8192, d=d, spread=spread)
    prior = GenerativePrior.from_activations(data, n_blocks=2, d_hidden=64, d_mlp=128)
    train_quickly(prior, data, steps=600)
    prior.eval()
    test, _ = mixture(200, d=d, spread=spread, seed=1)
    true = torch.logsumexp(
        torch.distributions.Normal(centres[:, None, :], spread).log_prob(test[None]).sum(-1), 0
    ) - math.log(len(centres))
    assert spearmanr(log_prob(prior, test).log_prob, true)[0] >= 0.9  # measured 0.93


def test_denoising_score_is_seeded_batch_independent_and_flags_off_mode_points(trained_mixture_prior, mixture_data):
    prior, _ = trained_mixture_prior
    data, _ = mixture_data
    natural = data[:200]
    a = denoising_score(prior, natural, n_noise=2, seed=1)
    b = torch.cat(
        [denoising_score(prior, natural[i : i + 50], n_noise=2, seed=1, batch_size=7) for i in range(0, 200, 50)]
    )
    assert a.shape == (200,)
    full = denoising_score(prior, natural, n_noise=2, seed=1, batch_size=7)
    assert torch.allclose(a, full, atol=1e-5)
    assert b.shape == a.shape
    off = natural + 3.0 * torch.randn(200, natural.shape[1], generator=torch.Generator().manual_seed(2))
    assert float(denoising_score(prior, off).median()) > 2 * float(denoising_score(prior, natural).median())


# ----------------------------------------------------------------------------- projection options
@pytest.mark.parametrize("method, expected", [("reference", 10), ("one_step", 1), ("euler:3", 3), ("heun:2", 4)])
def test_projection_options_spend_the_stated_evaluations(method, expected):
    prior = GenerativePrior.from_activations(torch.randn(128, 4), n_blocks=1).eval()
    calls = []
    prior.hook_velocity.add_hook(lambda act, hook: calls.append(1))
    out = prior.project(torch.randn(5, 4), schedule=method, generator=torch.Generator().manual_seed(0))
    prior.reset_hooks()
    grid, solver = projection_schedule(0.5, 20, method)
    assert len(calls) == expected == evaluations(grid, solver) and out.shape == (5, 4)
    assert float(grid[0]) == pytest.approx(1 - 10 * 0.999 / 19, abs=1e-6)  # all noise to the reference's t_k


def test_one_step_is_the_clean_estimate(trained_mixture_prior, mixture_data):
    prior, _ = trained_mixture_prior
    x = mixture_data[0][:16]
    one = prior.project(x, schedule="one_step", generator=torch.Generator().manual_seed(0))
    ref = prior.project(x, generator=torch.Generator().manual_seed(0))
    assert (one - x).norm(dim=-1).mean() < 3 * (ref - x).norm(dim=-1).mean() + 1.0
    with pytest.raises(ValueError, match="Unknown projection schedule"):
        prior.project(x, schedule="rk4")


# ----------------------------------------------------------------------------- hooks on a tiny model
def test_score_recorder_during_generation(tiny_model, tiny_prior_and_acts):
    from tl_glp import steer

    prior, _ = tiny_prior_and_acts
    hook = "blocks.1.hook_resid_post"
    tokens = tiny_model.to_tokens(["the dog ran", "a cat saw"])
    direction = torch.randn(32, generator=torch.Generator().manual_seed(0))
    means = {}
    for r in (0.0, 3.0):
        rec = score_recorder(prior, positions="last")
        with steer(tiny_model, direction, r, hook_name=hook, relative=True, act_norm=prior.act_norm, positions="last"):
            tiny_model.add_hook(hook, rec)
            tiny_model.generate(tokens, max_new_tokens=4, do_sample=False, verbose=False, stop_at_eos=False)
        tiny_model.reset_hooks()
        assert len(rec.records) == 4  # prefill + 3 cached decode steps (the last token is never fed back)
        assert rec.row_means().shape == (2,) and bool(torch.isfinite(rec.row_means()).all())
        means[r] = float(rec.row_means().mean())
    assert means[3.0] > means[0.0]  # the recorder sees the steered activations


def test_off_manifold_positions_calibrated_to_a_false_positive_rate(tiny_model, tiny_prior_and_acts):
    from tl_glp import collect_activations

    prior, _ = tiny_prior_and_acts
    held = collect_activations(
        tiny_model, random_sentences(300, seed=99, length=10), "blocks.1.hook_resid_post", progress=False
    )
    held = held[0 : len(held)].reshape(len(held), -1)
    calib, fresh = held[: len(held) // 2], held[len(held) // 2 :]
    rule = OffManifold.calibrate(prior, calib, fpr=0.1, times=(0.3, 0.5), n_noise=2)
    assert float(rule.flags(prior, calib).float().mean()) == pytest.approx(0.1, abs=0.02)
    assert float(rule.flags(prior, fresh).float().mean()) == pytest.approx(0.1, abs=0.07)
    w = torch.randn(32, generator=torch.Generator().manual_seed(1))
    steered = fresh + 1.0 * prior.act_norm * w / w.norm()
    assert float(rule.flags(prior, steered).float().mean()) > 0.5
    # in a hook: only flagged positions are projected, and the counts are reported
    adaptive = AdaptiveProjector(prior, rule, ProjectionConfig(seed=0))
    fn = steering_hook(w, 1.0, prior=prior, projector=adaptive, relative=True, positions=rule.within)
    acts = fresh[:40].reshape(4, 10, 32)
    out = fn(acts, hook=None)
    plain = acts + prior.act_norm * w / w.norm()
    changed = (out - plain).norm(dim=-1) > 1e-4
    assert adaptive.stats["candidates"] == 40 and adaptive.stats["projected"] == int(changed.sum()) > 0
    with pytest.raises(ValueError, match="not both"):
        steering_hook(w, 1.0, prior=prior, projector=adaptive, projection=ProjectionConfig())


def test_detect_off_manifold_end_to_end(tiny_model, tiny_prior_and_acts):
    from tl_glp.manifold.detection import detect_off_manifold

    prior, _ = tiny_prior_and_acts
    texts = random_sentences(60, seed=5, length=10)
    df = detect_off_manifold(
        tiny_model,
        prior,
        texts,
        hook_name="blocks.1.hook_resid_post",
        strengths=(0.5, 2.0),
        max_rows=80,
        progress=False,
        directions={"axis": torch.eye(32)[0]},
        log_prob_kwargs={"rtol": 1e-3, "atol": 1e-3},
    )
    assert set(df.score) == {"log_prob", "denoising", "mahalanobis"}
    assert set(df.condition) == {"steer:axis", "steer:random", "shuffled"}
    assert df.auc.between(0, 1).all()
    strong = df[(df.r == 2.0) & (df.condition == "steer:random")]
    assert (strong.auc > 0.9).all()  # two activation norms away is easy for every score


def test_steering_sweep_score_columns_and_fast_projection(tiny_model, tiny_prior_and_acts):
    from tl_glp import steering_sweep

    prior, _ = tiny_prior_and_acts
    w = torch.randn(32, generator=torch.Generator().manual_seed(0))
    df = steering_sweep(
        tiny_model,
        w,
        ["the dog", "a cat"],
        prior=prior,
        strengths=[0.5, 3.0],
        hook_name="blocks.1.hook_resid_post",
        max_new_tokens=3,
        manifold_score="denoising",
        projection=ProjectionConfig(schedule="heun:2"),
        progress=False,
    )
    assert "score_denoising" in df.columns and df.score_denoising.notna().all()
    means = df.groupby(["method", "r"]).score_denoising.mean()
    assert means[("plain", 3.0)] > means[("none", 0.0)]  # strong plain steering leaves the manifold
    assert means[("prior", 3.0)] < means[("plain", 3.0)]  # the projection pulls it back
