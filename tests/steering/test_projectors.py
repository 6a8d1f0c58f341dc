"""Every projector against an independent computation written here (SAE round trips against
SAE-Lens's own forward and hook points), and each one inside a steering hook."""

import numpy as np
import pytest
import torch

from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig
from tl_glp.steering.hooks import steering_hook
from tl_glp.steering.projectors import (
    GaussianShrinkage,
    Identity,
    PCAProjector,
    PriorProjector,
    Projector,
    SAEProjector,
)


def _saes(d: int = 8):
    from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

    torch.manual_seed(0)
    standard = StandardSAE(StandardSAEConfig(d_in=d, d_sae=4 * d))
    topk = TopKSAE(TopKSAEConfig(d_in=d, d_sae=4 * d, k=3))
    for sae in (standard, topk):  # non-trivial biases, so a forgotten b_dec or b_enc would show
        with torch.no_grad():
            sae.b_dec.normal_(0, 0.5)
            sae.b_enc.normal_(0, 0.5)
    return {"standard": standard, "topk": topk}


@pytest.mark.parametrize("kind", ["standard", "topk"])
def test_sae_round_trip_is_sae_lens_forward(kind):
    sae = _saes()[kind]
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(1)) * 3
    with torch.no_grad():
        expected = sae(x)  # SAE-Lens's own forward, use_error_term off: the reconstruction
    got = SAEProjector(sae).project(x, original=torch.zeros_like(x))
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, x, atol=1e-2)  # a random SAE does change things: the test can fail


@pytest.mark.parametrize("kind", ["standard", "topk"])
def test_sae_with_error_is_the_edit_through_the_sae_plus_the_unsteered_error(kind):
    sae = _saes()[kind]
    g = torch.Generator().manual_seed(2)
    original = torch.randn(4, 8, generator=g) * 3
    edited = original + 2.0 * torch.randn(1, 8, generator=g)
    # SAE-Lens's error term (use_error_term: output = recons + (x - recons)), with the error hook
    # replaced by the unsteered activation's error
    sae.use_error_term = True
    try:
        with torch.no_grad():
            _, cache = sae.run_with_cache(original)
            error = cache["hook_sae_error"]
            expected = sae.run_with_hooks(edited, fwd_hooks=[("hook_sae_error", lambda act, hook: error)])
    finally:
        sae.use_error_term = False
    got = SAEProjector(sae, keep_error=True).project(edited, original=original)
    assert torch.allclose(got, expected, atol=1e-4)
    assert torch.allclose(SAEProjector(sae, keep_error=True).project(original, original=original), original, atol=1e-5)
    with pytest.raises(ValueError, match="original="):
        SAEProjector(sae, keep_error=True).project(edited)
    with pytest.raises(ValueError, match="encode"):
        SAEProjector(object())


def test_pca_projector_matches_an_eigendecomposition_and_restores_the_complement():
    g = torch.Generator().manual_seed(3)
    scales = torch.tensor([6.0, 4, 3, 1, 0.5, 0.3, 0.2, 0.1])
    natural = torch.randn(2000, 8, generator=g) @ torch.linalg.qr(torch.randn(8, 8, generator=g))[0] * 1.0
    natural = natural * scales + 1.5
    k = 3
    pca = PCAProjector.fit(natural, k=k)
    # independent: eigenvectors of the covariance matrix in numpy
    x = natural.double().numpy()
    mu = x.mean(0)
    vals, vecs = np.linalg.eigh(np.cov(x.T))
    u = vecs[:, np.argsort(vals)[::-1][:k]]
    p = u @ u.T
    original = natural[:6]
    edited = original + 5.0 * torch.randn(1, 8, generator=g)
    e, o = edited.double().numpy(), original.double().numpy()
    expected = mu + (e - mu) @ p + (o - mu) @ (np.eye(8) - p)
    got = pca.project(edited, original=original)
    assert np.allclose(got.double().numpy(), expected, atol=1e-4)
    assert torch.allclose(pca.project(original, original=original), original, atol=1e-4)  # nothing to undo
    assert np.allclose(
        pca.project(edited).double().numpy(), mu + (e - mu) @ p, atol=1e-4
    )  # plain rank-k reconstruction
    with pytest.raises(ValueError, match="k must be"):
        PCAProjector.fit(natural, k=9)


def _mahalanobis(x, mu, prec):
    d = x - mu
    return np.sqrt(np.einsum("...i,ij,...j->...", d, prec, d))


def test_gaussian_shrinkage_caps_the_distance_as_a_bisection_does():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(6, 6, generator=g)
    natural = torch.randn(3000, 6, generator=g) @ a + 2.0
    cap = GaussianShrinkage.fit(natural, quantile=0.95)
    mu, prec = cap.mean.numpy(), cap.precision.numpy()
    dist_nat = _mahalanobis(natural.double().numpy(), mu, prec)
    assert cap.radius == pytest.approx(float(np.quantile(dist_nat, 0.95)), rel=1e-6)
    original = natural[:20]
    direction = torch.randn(6, generator=g)
    for strength in (0.1, 3.0, 30.0):
        edited = original + strength * direction
        got = cap.project(edited, original=original).double().numpy()
        o, e = original.double().numpy(), edited.double().numpy()
        for i in range(len(o)):  # independent: the largest s in [0, 1] within the cap, by bisection
            limit = max(cap.radius, _mahalanobis(o[i], mu, prec))
            if _mahalanobis(e[i], mu, prec) <= limit:
                s = 1.0
            else:
                lo, hi = 0.0, 1.0
                for _ in range(80):
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if _mahalanobis(o[i] + mid * (e[i] - o[i]), mu, prec) <= limit else (lo, mid)
                s = lo
            assert np.allclose(got[i], o[i] + s * (e[i] - o[i]), atol=1e-5), (strength, i)
    far = original + 30.0 * direction
    assert bool(
        (
            cap.distance(cap.project(far, original=original))
            <= torch.clamp(cap.distance(original), min=cap.radius) + 1e-6
        ).all()
    )
    assert torch.equal(cap.project(original, original=original), original)


def test_gaussian_shrinkage_toward_the_mean_is_radial():
    g = torch.Generator().manual_seed(5)
    natural = torch.randn(1000, 4, generator=g) * torch.tensor([1.0, 2, 3, 4])
    cap = GaussianShrinkage.fit(natural, radius=2.0, toward="mean")
    x = torch.randn(10, 4, generator=g) * 5
    mu, prec = cap.mean.numpy(), cap.precision.numpy()
    xd = x.double().numpy()
    d = _mahalanobis(xd, mu, prec)
    expected = mu + (xd - mu) * np.minimum(1.0, 2.0 / d)[:, None]
    assert np.allclose(cap.project(x).double().numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="toward"):
        GaussianShrinkage.fit(natural, toward="nowhere")  # type: ignore[arg-type]


def test_every_projector_follows_the_protocol_and_works_in_a_steering_hook():
    torch.manual_seed(0)
    natural = torch.randn(512, 8) * 2
    prior = GenerativePrior.from_activations(natural, n_blocks=1)
    projectors = [
        Identity(),
        PriorProjector(prior, ProjectionConfig(seed=0)),
        SAEProjector(_saes()["topk"]),
        SAEProjector(_saes()["standard"], keep_error=True),
        PCAProjector.fit(natural, 3),
        GaussianShrinkage.fit(natural),
    ]
    direction = torch.nn.functional.normalize(torch.randn(8), dim=0)
    act = torch.randn(2, 5, 8)
    for proj in projectors:
        assert isinstance(proj, Projector) and proj.name
        fn = steering_hook(direction, 1.5, projector=proj, positions="last")
        out = fn(act.clone(), hook=None)
        if hasattr(proj, "reset"):
            proj.reset()
        expected = proj.project(act[:, -1] + 1.5 * direction, original=act[:, -1])
        assert torch.allclose(out[:, -1], expected, atol=1e-5), proj.name
        assert torch.equal(out[:, :-1], act[:, :-1]), proj.name  # other positions untouched
    assert len({p.name for p in projectors}) == len(projectors)
