"""The projectors that keep the concept, each against an independent computation written here: the
direction-preserving formula from a PriorProjector output on the same seed, score pull's steps from the
network's velocity by hand, the gate's untouched rows bit for bit and its least time by a loop here,
the norm clamp's target norms; and the shared plumbing (reseeding, wrappers, hooks)."""

import numpy as np
import pytest
import torch

from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig
from tl_glp.manifold.likelihood import denoising_score
from tl_glp.steering.hooks import steering_hook
from tl_glp.steering.projectors import (
    DirectionPreserving,
    Identity,
    LikelihoodGated,
    NormClamp,
    PCAProjector,
    PriorProjector,
    Projector,
    ScorePull,
    meta_neuron_subspace,
)


def _untrained(d: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    natural = torch.randn(512, d) * torch.linspace(0.5, 2.0, d) + 1.0
    return GenerativePrior.from_activations(natural, n_blocks=1), natural


def test_direction_preserving_is_the_formula_on_a_prior_projection_with_the_same_seed():
    prior, natural = _untrained()
    g = torch.Generator().manual_seed(1)
    direction = torch.randn(8, generator=g) * 3  # not unit: the projector normalises it
    original = natural[:6]
    edited = original + 2.5 * direction / direction.norm()
    got = DirectionPreserving(PriorProjector(prior, ProjectionConfig(seed=7)), direction).project(
        edited, original=original
    )
    p = PriorProjector(prior, ProjectionConfig(seed=7)).project(edited).double().numpy()
    e, w = edited.double().numpy(), direction.double().numpy()
    w = w / np.linalg.norm(w)
    expected = p + ((e @ w) - (p @ w))[:, None] * w[None, :]
    assert np.allclose(got.double().numpy(), expected, atol=1e-5)
    assert not np.allclose(expected, p, atol=1e-2)  # the restoration does something: the test can fail
    assert np.allclose(got.double().numpy() @ w, e @ w, atol=1e-5)


def test_direction_preserving_inside_a_subspace_restores_the_unsteered_rest():
    prior, natural = _untrained()
    g = torch.Generator().manual_seed(2)
    direction = torch.randn(8, generator=g)
    rows = torch.randn(3, 8, generator=g)  # any spanning rows: orthonormalised inside
    original = natural[:5]
    edited = original + 2.0 * direction / direction.norm()
    proj = DirectionPreserving(PriorProjector(prior, ProjectionConfig(seed=3)), direction, keep_outside=rows)
    got = proj.project(edited, original=original).double().numpy()
    p = PriorProjector(prior, ProjectionConfig(seed=3)).project(edited).double().numpy()
    q, _ = np.linalg.qr(rows.double().numpy().T)  # [d, k] basis of the row space
    o, e = original.double().numpy(), edited.double().numpy()
    w = direction.double().numpy() / np.linalg.norm(direction.double().numpy())
    y = o + (p - o) @ q @ q.T
    expected = y + ((e - y) @ w)[:, None] * w
    assert np.allclose(got, expected, atol=1e-5)
    assert proj.name == "prior reference t=0.5 (keep w, x0 outside k=3)"
    with pytest.raises(ValueError, match="original="):
        proj.project(edited)
    with pytest.raises(ValueError, match="keep_outside"):
        DirectionPreserving(Identity(), direction, keep_outside=torch.randn(3, 5))


def test_meta_neuron_subspace_is_the_span_of_a_linear_regression_on_the_most_variable_meta_neurons():
    from sklearn.linear_model import LinearRegression

    prior, natural = _untrained()
    k = 3
    u = meta_neuron_subspace(prior, natural, k=k)
    feats = prior.encode(natural, t=0.1, seed=42).double().numpy()
    top = np.argsort(feats.var(0))[::-1][:k]
    coef = LinearRegression().fit(feats[:, top], natural.double().numpy()).coef_  # [d, k]
    q, _ = np.linalg.qr(coef)
    ud = u.double().numpy()
    assert np.allclose(ud @ ud.T, np.eye(k), atol=1e-5)
    assert np.allclose(ud.T @ ud, q @ q.T, atol=1e-4)  # the same subspace
    with pytest.raises(ValueError, match="k must be"):
        meta_neuron_subspace(prior, natural, k=9)


def _manual_pull(prior, x, t, eta, steps, eps_fn):
    mean, std = prior.mean.double(), prior.var.double().sqrt()
    z = (x.double() - mean) / std
    for _ in range(steps):
        z_t = (1 - t) * z + t * eps_fn(z.shape).double()
        with torch.no_grad():
            v = prior(z_t.float(), torch.full((len(z),), t)).double()
        z = z + eta * ((z_t - t * v) - z)
    return z * std + mean


def test_score_pull_takes_the_steps_a_hand_loop_takes_and_caps_the_move():
    prior, natural = _untrained()
    x = natural[:6] + 3.0 * torch.eye(8)[2]
    free = ScorePull(prior, t=0.2, eta=0.4, steps=3, max_move=1e6)
    expected = _manual_pull(prior, x, 0.2, 0.4, 3, torch.zeros)
    assert np.allclose(free.project(x).double().numpy(), expected.numpy(), atol=1e-4)
    move = expected - x.double()
    assert float(move.norm(dim=-1).min()) > 0.05  # it does move: the test can fail
    cap = 0.5 * float(move.norm(dim=-1).min()) / prior.act_norm  # every row moves further than the cap
    capped = ScorePull(prior, t=0.2, eta=0.4, steps=3, max_move=cap).project(x).double() - x.double()
    assert np.allclose(capped.norm(dim=-1).numpy(), cap * prior.act_norm, rtol=1e-4)
    cos = torch.nn.functional.cosine_similarity(capped, move, dim=-1)
    assert bool((cos > 1 - 1e-5).all())  # the same move, scaled down
    # seeded fresh noise: one draw per step from one generator seeded once
    g = torch.Generator().manual_seed(5)
    noisy = ScorePull(prior, t=0.2, eta=0.4, steps=2, max_move=1e6, noise="fresh", seed=5)
    expected = _manual_pull(prior, x, 0.2, 0.4, 2, lambda shape: torch.randn(shape, generator=g))
    assert np.allclose(noisy.project(x).double().numpy(), expected.numpy(), atol=1e-4)
    assert not torch.equal(noisy.project(x), noisy.project(x))  # fresh noise at every call
    for bad in (dict(t=0.0), dict(eta=1.5), dict(steps=0), dict(max_move=0.0), dict(noise="some")):
        with pytest.raises(ValueError):
            ScorePull(prior, **bad)  # type: ignore[arg-type]


def test_score_pull_lowers_the_denoising_score_of_off_manifold_points(trained_mixture_prior, mixture_data):
    prior, _ = trained_mixture_prior
    data, _ = mixture_data
    off = data[:64] + 1.5 * torch.nn.functional.normalize(
        torch.randn(16, generator=torch.Generator().manual_seed(0)), dim=0
    )
    pulled = ScorePull(prior, t=0.1, eta=0.5, steps=3, max_move=0.5).project(off)
    before, after = denoising_score(prior, off), denoising_score(prior, pulled)
    assert float(after.mean()) < float(before.mean())
    assert float((after < before).float().mean()) > 0.8


def test_likelihood_gate_leaves_in_range_rows_bit_for_bit_and_takes_the_least_time(trained_mixture_prior, mixture_data):
    prior, _ = trained_mixture_prior
    data, _ = mixture_data
    held_out = data[-1000:]
    gate = LikelihoodGated.fit(prior, held_out, quantile=0.95, seed=11)
    scores = denoising_score(prior, held_out, times=(0.1, 0.3, 0.5), seed=0)
    assert gate.rule.threshold == pytest.approx(float(torch.quantile(scores.double(), 0.95)), rel=1e-6)
    w = torch.nn.functional.normalize(torch.ones(16), dim=0)
    original = data[:40]
    edited = original.clone()
    edited[20:] += torch.linspace(0.5, 6.0, 20)[:, None] * w  # half steered, more and more strongly
    out = gate.project(edited, original=original)
    flagged = denoising_score(prior, edited, times=(0.1, 0.3, 0.5), seed=0) > gate.rule.threshold
    assert bool(flagged[20:].sum() >= 5) and bool((~flagged).sum() >= 10)  # both kinds present: the test can fail
    assert torch.equal(out[~flagged], edited[~flagged])  # untouched, bit for bit
    # independent loop: the same generator, the remaining rows projected at each time in turn
    g = torch.Generator().manual_seed(11)
    todo = flagged.nonzero().flatten()
    expected, times = edited.clone(), torch.zeros(40, dtype=torch.float64)
    for i, t in enumerate(gate.times):
        cand = prior.project(edited[todo], ProjectionConfig(t_start=t), generator=g)
        ok = denoising_score(prior, cand, times=(0.1, 0.3, 0.5), seed=0) <= gate.rule.threshold
        if i == len(gate.times) - 1:
            ok[:] = True
        expected[todo[ok]], times[todo[ok]] = cand[ok], t
        todo = todo[~ok]
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.equal(gate.last_times, times)
    assert float(times[30:].mean()) >= float(times[20:30].mean())  # strength-aware: stronger rows, larger t
    assert gate.stats["projected"] == int(flagged.sum())


def test_norm_clamp_hits_the_target_norms():
    g = torch.Generator().manual_seed(6)
    natural = torch.randn(2000, 6, generator=g) * torch.tensor([1.0, 2, 3, 1, 1, 0.5]) + 0.7
    clamp = NormClamp.fit(natural, quantiles=(0.05, 0.95))
    norms = natural.double().norm(dim=-1).numpy()
    assert clamp.low == pytest.approx(float(np.quantile(norms, 0.05)), rel=1e-6)
    assert clamp.high == pytest.approx(float(np.quantile(norms, 0.95)), rel=1e-6)
    original = natural[:50]
    edited = original + torch.linspace(-4, 12, 50)[:, None] * torch.eye(6)[1]
    out = clamp.project(edited, original=original).double()
    e, o = edited.double(), original.double()
    low = torch.minimum(torch.full((50,), clamp.low, dtype=torch.float64), o.norm(dim=-1))
    high = torch.maximum(torch.full((50,), clamp.high, dtype=torch.float64), o.norm(dim=-1))
    target = e.norm(dim=-1).clamp(min=low, max=high)
    assert np.allclose(out.norm(dim=-1).numpy(), target.numpy(), atol=1e-4)
    assert bool((torch.nn.functional.cosine_similarity(out, e, dim=-1) > 1 - 1e-6).all())
    assert bool((target != e.norm(dim=-1)).sum() >= 10)  # it clamps some: the test can fail
    assert torch.equal(clamp.project(original, original=original), original)  # unsteered: never moved
    # the unsteered norm exactly, in standardized space
    std_clamp = NormClamp.fit(natural, space="standardized", target="original")
    mean, sd = natural.double().mean(0), natural.double().std(0)
    out = std_clamp.project(edited, original=original).double()
    assert np.allclose(((out - mean) / sd).norm(dim=-1).numpy(), ((o - mean) / sd).norm(dim=-1).numpy(), atol=1e-4)
    # a wrapper: the clamped activation, then the other projector
    pca = PCAProjector.fit(natural, 3)
    wrapped = NormClamp.fit(natural, quantiles=(0.05, 0.95), then=pca)
    assert torch.allclose(
        wrapped.project(edited, original=original),
        pca.project(clamp.project(edited, original=original), original=original),
        atol=1e-5,
    )
    assert wrapped.name == "norm clamp (raw) + pca k=3"


def test_reseeded_copies_seed_the_inner_projector_and_leave_the_original_alone():
    prior, natural = _untrained()
    x, w = natural[:4], torch.eye(8)[0]
    keep = DirectionPreserving(PriorProjector(prior, ProjectionConfig(seed=1)), w)
    copy = keep.reseeded(9)
    assert keep.inner.config.seed == 1 and copy.inner.config.seed == 9
    fresh = DirectionPreserving(PriorProjector(prior, ProjectionConfig(seed=9)), w)
    assert torch.equal(copy.project(x + w, original=x), fresh.project(x + w, original=x))
    assert keep.prior is prior and NormClamp.fit(natural, then=keep).prior is prior  # the hooks find its prior
    assert NormClamp.fit(natural).prior is None
    pull = ScorePull(prior, noise="fresh", seed=2).reseeded(4)
    assert torch.equal(pull.project(x), ScorePull(prior, noise="fresh", seed=4).project(x))


def test_every_new_projector_works_in_a_steering_hook_and_a_sweep_unit():
    from tl_glp.steering.sweep import _unit_projector

    prior, natural = _untrained()
    w = torch.nn.functional.normalize(torch.randn(8), dim=0)
    projectors = [
        DirectionPreserving(PriorProjector(prior, ProjectionConfig(seed=0)), w),
        ScorePull(prior),
        LikelihoodGated.fit(prior, natural, quantile=0.5, seed=0),
        NormClamp.fit(natural),
        NormClamp.fit(natural, space="standardized", then=PriorProjector(prior, ProjectionConfig(seed=0))),
    ]
    act = torch.randn(2, 5, 8) + 1.0
    for proj in projectors:
        assert isinstance(proj, Projector) and proj.name
        fn = steering_hook(w, 1.5, projector=proj, positions="last")
        out = fn(act.clone(), hook=None)
        proj.reset()
        expected = proj.project(act[:, -1] + 1.5 * w, original=act[:, -1])
        assert torch.allclose(out[:, -1], expected, atol=1e-5), proj.name
        assert torch.equal(out[:, :-1], act[:, :-1]), proj.name
        unit = _unit_projector(proj, 123)
        assert unit is not proj and unit.name == proj.name
    assert _unit_projector(projectors[0], 123).inner.config.seed == 123
    assert len({p.name for p in projectors}) == len(projectors)
