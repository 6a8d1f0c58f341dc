"""The projection diagnosis against computations written here: kept share, distance moved, probe
flips, the noised input's norm ratio and the next-token KL of a hand-made hook."""

import math

import numpy as np
import pytest
import torch

from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig
from tl_glp.steering.diagnose import diagnose_activations, diagnose_projections, fit_probes
from tl_glp.steering.hooks import steering_hook
from tl_glp.steering.projectors import Identity, PCAProjector, PriorProjector

HOOK = "blocks.1.hook_resid_post"


def test_fit_probes_is_sklearn_logistic_regression_folded_into_raw_space():
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g) * torch.tensor([1.0, 5, 0.2, 2, 1]) + 3
    y = x[:, 1] + 3 * x[:, 2] > 3.5
    probe = fit_probes(x, {"y": y})["y"]
    xd = x.double().numpy()
    z = (xd - xd.mean(0)) / xd.std(0, ddof=1)
    expected = LogisticRegression(C=1.0, max_iter=1000).fit(z, y.numpy()).decision_function(z)
    assert np.allclose(probe.logit(x).double().numpy(), expected, atol=1e-3)
    with pytest.raises(ValueError, match="two classes"):
        fit_probes(x, {"y": torch.ones(400)})


def test_kept_moved_and_flips_match_a_direct_computation():
    g = torch.Generator().manual_seed(1)
    natural = torch.randn(800, 6, generator=g) * torch.tensor([3.0, 2, 1, 0.5, 0.3, 0.1])
    acts = natural[:30]
    w = torch.tensor([1.0, 0, 0, 0, 0, 1.0])  # half of it leaves the top principal subspace
    probes = fit_probes(natural, {"a": natural[:, 0] > 0, "b": natural[:, 1] > 0})
    pca = PCAProjector.fit(natural, k=3)
    d = diagnose_activations(acts, w, [Identity(), pca], strengths=[0.5, 2.0], act_norm=2.0, probes=probes)
    rows = d.rows.set_index(["projector", "r", "row"]).sort_index()
    unit = w / w.norm()
    for r in (0.5, 2.0):
        alpha = r * 2.0
        steered = acts + alpha * unit
        out = pca.project(steered, original=acts)
        kept = ((out - acts) @ unit) / alpha
        moved = (out - steered).norm(dim=-1) / 2.0
        flips = ((probes["b"].logit(out) > 0) != (probes["b"].logit(acts) > 0)).float()
        part = rows.loc[(pca.name, r)]
        assert np.allclose(part.kept, kept.numpy(), atol=1e-5) and np.allclose(part.moved, moved.numpy(), atol=1e-5)
        assert np.allclose(part.flip_b, flips.numpy())
        plain = rows.loc[("plain", r)]
        assert (
            np.allclose(plain.kept, 1.0, atol=1e-5)
            and np.allclose(plain.moved, 0.0)
            and np.allclose(plain.off_direction, 0.0, atol=1e-5)
        )
    # PCA keeps the part of w inside its subspace: about half of the displacement along w
    assert 0.3 < rows.loc[(pca.name, 2.0)].kept.mean() < 0.7
    flips = d.flips()
    assert set(flips.projector) == {pca.name} and set(flips.most_flipped) <= {"a", "b"}
    excess = flips.set_index("r").loc[2.0]
    summary = d.summary().set_index(["projector", "r"])
    assert excess.excess_flip_b == pytest.approx(
        summary.loc[(pca.name, 2.0), "flip_b"] - summary.loc[("plain", 2.0), "flip_b"]
    )


def test_noised_norm_ratio_and_denoising_scores_of_the_prior():
    torch.manual_seed(0)
    natural = torch.randn(600, 8) * 2 + 1
    prior = GenerativePrior.from_activations(natural, n_blocks=1)
    proj = PriorProjector(prior, ProjectionConfig(seed=0))
    w = torch.eye(8)[0]
    d = diagnose_activations(natural[:50], w, [Identity(), proj], strengths=[0.0, 3.0], prior=prior, seed=7)
    rows = d.rows[d.rows.projector == proj.name].set_index(["r", "row"])
    t = 1 - 10 * 0.999 / 19  # the reference's grid time for t_start 0.5, 20 steps
    z = prior.normalize(natural[:50] + 3.0 * prior.act_norm * w)
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(7))
    expected = ((1 - t) * z + t * eps).norm(dim=-1) / math.sqrt(((1 - t) ** 2 + t**2) * 8)
    assert np.allclose(rows.loc[3.0].noised_norm_ratio, expected.numpy(), atol=1e-4)
    assert rows.loc[3.0].noised_norm_ratio.mean() > rows.loc[0.0].noised_norm_ratio.mean() + 0.3
    assert 0.8 < rows.loc[0.0].noised_norm_ratio.mean() < 1.2  # natural activations sit where training noise put them
    assert rows.loc[3.0].denoising_steered.mean() > rows.loc[0.0].denoising_steered.mean()
    assert d.rows[d.rows.projector == "plain"].noised_norm_ratio.isna().all()


@pytest.mark.parametrize(
    "hook",
    [HOOK, "blocks.1.hook_resid_pre", "blocks.2.hook_resid_post", "blocks.1.hook_mlp_out"],
    ids=["resumes-after-block-1", "resumes-at-block-1", "resumes-after-the-last-block", "reruns-every-block"],
)
def test_next_token_kl_matches_a_hand_made_steering_hook(tiny_model, tmp_path, hook):
    prompts = ["the dog", "a red cat was", "the big"]
    direction = torch.nn.functional.normalize(torch.randn(32, generator=torch.Generator().manual_seed(2)), dim=0)
    d = diagnose_projections(
        tiny_model, prompts, direction, [Identity()], hook_name=hook, strengths=[0.0, 4.0], act_norm=1.0, progress=False
    )
    rows = d.rows.set_index(["r", "prompt"]).sort_index()
    for p in prompts:
        tokens = tiny_model.to_tokens(p)
        with torch.no_grad():
            clean = torch.log_softmax(tiny_model(tokens)[0, -1], -1)
            with tiny_model.hooks(fwd_hooks=[(hook, steering_hook(direction, 4.0, positions="last"))]):
                steered = torch.log_softmax(tiny_model(tokens)[0, -1], -1)
        kl = float((clean.exp() * (clean - steered)).sum())
        assert rows.loc[(4.0, p), "kl"] == pytest.approx(kl, rel=1e-4, abs=1e-6)
        assert rows.loc[(0.0, p), "kl"] == pytest.approx(0.0, abs=1e-6)
    assert (rows.loc[4.0].kl > 1e-4).all()
    assert d.to_csv(tmp_path / "d.csv").exists() and d.plot(tmp_path / "d.png").stat().st_size > 0


def test_new_projectors_report_their_own_columns():
    from tl_glp.steering.projectors import DirectionPreserving, LikelihoodGated, NormClamp, ScorePull

    torch.manual_seed(0)
    natural = torch.randn(600, 8) * 2 + 1
    prior = GenerativePrior.from_activations(natural, n_blocks=1)
    w = torch.eye(8)[0]
    keep = DirectionPreserving(PriorProjector(prior, ProjectionConfig(seed=0)), w)
    pull = ScorePull(prior, t=0.1)
    gate = LikelihoodGated.fit(prior, natural[300:], quantile=0.9, seed=0)
    clamp = NormClamp.fit(natural, space="standardized", then=PriorProjector(prior, ProjectionConfig(seed=0)))
    acts = natural[:40]
    d = diagnose_activations(acts, w, [Identity(), keep, pull, gate, clamp], strengths=[2.0], prior=prior, seed=3)
    rows = d.rows.set_index(["projector", "row"]).sort_index()
    assert np.allclose(rows.loc[keep.name].kept, 1.0, atol=1e-4)  # the concept kept, by construction
    # keep-w's noised input is the inner prior projection's: the formula by hand, noise seeded with 3
    t = 1 - 10 * 0.999 / 19
    steered = acts + 2.0 * prior.act_norm * w
    eps = torch.randn(steered.shape, generator=torch.Generator().manual_seed(3))
    z = prior.normalize(steered)
    expected = ((1 - t) * z + t * eps).norm(dim=-1) / math.sqrt(((1 - t) ** 2 + t**2) * 8)
    assert np.allclose(rows.loc[keep.name].noised_norm_ratio, expected.numpy(), atol=1e-4)
    # score pull: the noise-free input (1 - t) z at t = 0.1
    expected = (0.9 * z).norm(dim=-1) / math.sqrt((0.81 + 0.01) * 8)
    assert np.allclose(rows.loc[pull.name].noised_norm_ratio, expected.numpy(), atol=1e-4)
    assert (rows.loc[pull.name].moved <= pull.max_move + 1e-5).all()
    # the gate: the time each row got; untouched rows moved nothing and have no noised input
    g = rows.loc[gate.name]
    assert set(g.gate_t.unique()) <= {0.0, *gate.times} and (g.gate_t > 0).any()
    assert np.allclose(g.moved[g.gate_t == 0], 0.0) and g.noised_norm_ratio[g.gate_t == 0].isna().all()
    # its cost: 3 score evaluations per row, then per time tried its projection's and 3 more
    cost = {0.0: 3.0}
    for t in gate.times:
        cost[t] = cost[max(cost)] + ProjectionConfig(t_start=t).evaluations + 3
    assert np.allclose(g.evaluations, [cost[t] for t in g.gate_t])
    assert (rows.loc[keep.name].evaluations == 10).all() and (rows.loc[pull.name].evaluations == 3).all()
    # the clamp + prior: its prior sees the rescaled input, whose noised norm is nearer the natural one
    assert rows.loc[clamp.name].noised_norm_ratio.mean() < rows.loc[keep.name].noised_norm_ratio.mean()


def test_resume_layer_is_the_block_after_a_residual_hook(tiny_model):
    from tl_glp.core._compat import is_bridge, resume_layer

    expected = {
        "blocks.1.hook_resid_pre": 1,
        "blocks.1.hook_resid_post": 2,
        "blocks.2.hook_resid_post": 3,
        "blocks.1.hook_mlp_out": None,
        "blocks.0.attn.hook_z": None,
    }
    for name, layer in expected.items():
        assert resume_layer(tiny_model, name) == (None if is_bridge(tiny_model) else layer), name
