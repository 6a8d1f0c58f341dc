import math

import pytest
import torch
from conftest import near_mode_share

from tl_glp import GenerativePrior, PriorConfig


@pytest.fixture
def small_prior():
    torch.manual_seed(0)
    acts = torch.randn(512, 12) * torch.linspace(0.5, 3, 12) + torch.linspace(-2, 2, 12)
    return GenerativePrior.from_activations(
        acts, n_blocks=2, hook_names=["blocks.1.hook_resid_post"], model_name="tiny"
    ), acts


def test_is_a_hooked_root_module_with_meta_neuron_hooks(small_prior):
    from tl_glp.core._compat import HookedRootModule  # transformer_lens.hook_points lost it in TL 4

    prior, _ = small_prior
    assert isinstance(prior, HookedRootModule)
    assert {"blocks.0.hook_neurons", "blocks.1.hook_neurons", "hook_velocity"} <= set(prior.hook_dict)
    _, cache = prior.run_with_cache(torch.randn(3, 12), 0.5)
    assert cache["blocks.1.hook_neurons"].shape == (3, prior.cfg.d_mlp)


def test_normalizer_matches_data_statistics_and_round_trips(small_prior):
    prior, acts = small_prior
    assert torch.allclose(prior.mean, acts.mean(0), atol=1e-5)
    assert torch.allclose(prior.var, acts.var(0, unbiased=False), rtol=1e-4)
    z = prior.normalize(acts)
    assert torch.allclose(z.mean(0), torch.zeros(12), atol=1e-4)
    assert torch.allclose(prior.denormalize(z), acts, atol=1e-4)
    expected = math.sqrt(float((acts.mean(0) ** 2 + acts.var(0, unbiased=False)).sum()))
    assert prior.act_norm == pytest.approx(expected, rel=1e-4)


def test_any_leading_dims_and_input_dtype(small_prior):
    prior, acts = small_prior
    x = acts[:24].reshape(2, 3, 4, 12)
    assert prior.project(x).shape == x.shape
    assert prior.encode(x).shape == (2, 3, 4, prior.n_features)
    assert prior.project(x.double()).dtype == torch.float64
    assert prior.encode(x.half()).dtype == torch.float16
    v = prior(torch.randn(2, 3, 12), torch.rand(2, 3))
    assert v.shape == (2, 3, 12)
    assert prior.loss(x).ndim == 0


def test_project_from_t0_is_identity_and_noise_is_seeded(small_prior):
    prior, acts = small_prior
    assert torch.allclose(prior.project(acts[:5], t_start=0.0), acts[:5], atol=1e-5)
    a = prior.project(acts[:5], generator=torch.Generator().manual_seed(3))
    b = prior.project(acts[:5], generator=torch.Generator().manual_seed(3))
    c = prior.project(acts[:5], generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_encode_equals_run_with_cache_and_is_deterministic(small_prior):
    prior, acts = small_prior
    x = acts[:7]
    feats = prior.encode(x, t=0.1, seed=42)
    assert torch.equal(feats, prior.encode(x, t=0.1, seed=42))
    assert torch.allclose(
        feats, prior.encode(x, t=0.1, seed=42, batch_size=3), atol=1e-6
    )  # same noise whatever the batching
    eps = torch.randn(7, 12, generator=torch.Generator().manual_seed(42))
    z_t = 0.9 * prior.normalize(x) + 0.1 * eps
    _, cache = prior.run_with_cache(z_t, 0.1)
    expected = torch.cat([cache[f"blocks.{i}.hook_neurons"] for i in range(2)], dim=-1)
    assert torch.allclose(feats, expected, atol=1e-6)
    assert not torch.allclose(feats, prior.encode(x, t=0.1, seed=7))


def test_multi_layer_prior_uses_per_layer_statistics():
    cfg = PriorConfig(
        d_input=6, n_blocks=1, n_llm_layers=3, hook_names=[f"blocks.{i}.hook_resid_post" for i in range(3)]
    )
    prior = GenerativePrior(cfg)
    data = torch.stack([torch.randn(100, 6) * (i + 1) + i for i in range(3)], dim=1)  # [n, 3 hooks, d]
    from tl_glp import as_source

    prior.fit_normalizer(as_source(data, hook_names=cfg.hook_names))
    for layer in range(3):
        assert torch.allclose(prior.mean[layer], data[:, layer].mean(0), atol=1e-5)
    x = data[:4, 2]
    assert torch.allclose(prior.normalize(x, layer=2), (x - prior.mean[2]) / prior.var[2].sqrt())
    assert prior.sample(3, num_steps=2, layer=1).shape == (3, 6)
    per_row = prior.project(data[:4].reshape(12, 6), layer=torch.arange(3).repeat(4))
    assert per_row.shape == (12, 6)
    assert prior.activation_norm(layer=0) < prior.activation_norm(layer=2)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p: p.project(torch.randn(3, 5)), "d_input=12"),
        (lambda p: p.project(torch.tensor([[float("nan")] * 12])), "NaN"),
        (lambda p: p.encode(torch.full((2, 12), float("inf"))), "NaN or inf"),
        (lambda p: p(torch.randn(2, 12), 1.5), r"\[0, 1\]"),
        (lambda p: p.encode(torch.randn(2, 12), t=-0.1), r"\[0, 1\]"),
        (lambda p: p.project(torch.randn(2, 12), layer=3), "single site"),
        (lambda p: p.project(torch.randn(2, 12).int()), "floating-point"),
    ],
)
def test_bad_input_gives_clear_errors(small_prior, call, match):
    prior, _ = small_prior
    with pytest.raises((ValueError, TypeError), match=match):
        call(prior)


def test_multi_layer_prior_requires_a_valid_layer():
    prior = GenerativePrior(PriorConfig(d_input=4, n_blocks=1, n_llm_layers=3))
    with pytest.raises(ValueError, match="pass layer="):
        prior.project(torch.randn(2, 4))
    with pytest.raises(ValueError, match="0..2"):
        prior.project(torch.randn(2, 4), layer=5)
    with pytest.raises(ValueError, match="activation_norm"):
        _ = prior.act_norm


def test_save_load_round_trip_is_bit_identical(small_prior, tmp_path):
    prior, acts = small_prior
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # make sure the zero-initialised weights are covered
    prior.save_pretrained(tmp_path / "p")
    loaded = GenerativePrior.from_pretrained(tmp_path / "p")
    assert loaded.cfg == prior.cfg
    z, t = torch.randn(9, 12), torch.rand(9)
    assert torch.equal(loaded(z, t), prior(z, t))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(loaded.project(acts[:4], generator=g()), prior.project(acts[:4], generator=g()))
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["cfg.json", "model.safetensors"]


def test_loading_errors_name_the_path_and_problem(small_prior, tmp_path):
    prior, _ = small_prior
    with pytest.raises(FileNotFoundError, match="not a Hugging Face repo id"):
        GenerativePrior.from_pretrained(tmp_path / "nowhere" / "deeper")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        GenerativePrior.from_pretrained(tmp_path / "empty")
    prior.save_pretrained(tmp_path / "p")
    (tmp_path / "p" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="model.safetensors"):
        GenerativePrior.from_pretrained(tmp_path / "p")
    prior.save_pretrained(tmp_path / "q")
    other = GenerativePrior(PriorConfig(d_input=12, n_blocks=3))
    with pytest.raises(ValueError, match="missing="):
        other.load_weights(GenerativePrior.from_pretrained(tmp_path / "q").state_dict(), source="q")


def test_learning_lands_samples_on_the_mixture(trained_mixture_prior, mixture_data):
    prior, losses = trained_mixture_prior
    data, centres = mixture_data
    assert sum(losses[-50:]) / 50 < 0.75 * sum(losses[:10]) / 10
    samples = prior.sample(1000, generator=torch.Generator().manual_seed(1))
    untrained = GenerativePrior.from_activations(data, n_blocks=2, d_hidden=64, d_mlp=128)
    gaussian = torch.distributions.MultivariateNormal(data.mean(0), torch.cov(data.T)).sample((1000,))
    radius = 1.5
    trained_share = near_mode_share(samples, centres, radius)
    assert trained_share > 0.5
    assert trained_share > 5 * near_mode_share(gaussian, centres, radius)
    assert trained_share > 5 * max(near_mode_share(untrained.sample(1000), centres, radius), 0.01)
    heun = prior.sample(1000, generator=torch.Generator().manual_seed(1), solver="heun")
    assert near_mode_share(heun, centres, radius) > 0.5


def test_project_moves_off_distribution_points_towards_the_data(trained_mixture_prior, mixture_data):
    prior, _ = trained_mixture_prior
    data, centres = mixture_data
    off = data[:200] + 3 * torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    projected = prior.project(off, generator=torch.Generator().manual_seed(0))
    before = torch.cdist(off, centres).min(-1).values.mean()
    after = torch.cdist(projected, centres).min(-1).values.mean()
    assert after < 0.7 * before


def reference_projection(prior, x, t_start, num_steps, eps, layer=None):
    """glp-method.md section 5 written out independently: normalise, noise to the grid time
    t_k (k = floor((1 - t_start) * N)), Euler along the rest of the reference schedule, de-normalise."""
    mean = prior.mean if layer is None else prior.mean[layer]
    std = (prior.var if layer is None else prior.var[layer]).sqrt()
    z = (x - mean) / std
    times = torch.linspace(1.0, 0.001, num_steps, dtype=torch.float64).float().tolist() + [0.0]
    k = math.floor((1 - t_start) * num_steps)
    z = (1 - times[k]) * z + times[k] * eps
    for i in range(k, num_steps):
        z = z + (times[i + 1] - times[i]) * prior(z, times[i], layer=layer)
    return z * std + mean


@pytest.mark.parametrize("t_start, num_steps", [(0.5, 20), (0.3, 20), (0.9, 7), (0.5, 1)])
def test_project_equals_the_reference_procedure(small_prior, t_start, num_steps):
    prior, acts = small_prior
    x = acts[:16] + 0.5
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    expected = reference_projection(prior, x, t_start, num_steps, eps)
    got = prior.project(x, t_start=t_start, num_steps=num_steps, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    # the old behaviour (noise to t_start itself) differs measurably: this is the fix
    if t_start == 0.5 and num_steps == 20:
        old_noise = prior.normalize(x) * 0.5 + 0.5 * eps
        assert not torch.allclose(prior.normalize(got), old_noise, atol=1e-3)


def test_project_equals_the_reference_procedure_multi_layer():
    torch.manual_seed(1)
    cfg = PriorConfig(
        d_input=6, n_blocks=2, n_llm_layers=4, hook_names=[f"blocks.{i}.hook_resid_post" for i in range(4)]
    )
    prior = GenerativePrior(cfg)
    from tl_glp import as_source

    data = torch.stack([torch.randn(200, 6) * (i + 1) + i for i in range(4)], dim=1)
    prior.fit_normalizer(as_source(data, hook_names=cfg.hook_names))
    x = data[:10, 2]
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    expected = reference_projection(prior, x, 0.5, 20, eps, layer=2)
    got = prior.project(x, layer=2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_project_with_nothing_to_integrate_is_an_error(small_prior):
    prior, acts = small_prior
    with pytest.raises(ValueError, match="too small"):
        prior.project(acts[:2], t_start=1e-18, num_steps=20)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_prior_keeps_float32_statistics_and_returns_the_input_dtype(dtype):
    torch.manual_seed(0)
    acts = torch.randn(256, 8) * 300.0 + 40.0  # variances ~9e4: a square beyond fp16's range is one step away
    prior = GenerativePrior.from_activations(acts, n_blocks=1)
    prior.var[0] = 1e6  # Llama-like outlier dimension: overflows fp16
    low = prior.to(dtype)
    assert low.mean.dtype == low.var.dtype == torch.float32
    assert float(low.var[0]) == 1e6 and low.in_proj.weight.dtype == dtype
    assert torch.isfinite(low.normalize(acts[:4].float())).all()
    for x in (acts[:4].float(), acts[:4].double(), acts[:4].to(dtype)):
        assert low.project(x, generator=torch.Generator().manual_seed(0)).dtype == x.dtype
        assert low.encode(x).dtype == x.dtype
        assert low.normalize(x).dtype == x.dtype and low.denormalize(x).dtype == x.dtype
        assert low(low.normalize(x), 0.5).dtype == x.dtype
    assert low.sample(2, num_steps=2).dtype == torch.float32
    # the projection of a low-precision prior stays close to the float32 prior's
    ref = prior.float().project(acts[:4], generator=torch.Generator().manual_seed(0))
    got = low.to(dtype).project(acts[:4], generator=torch.Generator().manual_seed(0))
    assert float((got - ref).norm() / ref.norm()) < 0.05


def test_files_saved_before_the_normalizer_module_still_load(small_prior, tmp_path):
    from tl_glp.core import _io

    prior, acts = small_prior
    prior.save_pretrained(tmp_path / "p")
    state = _io.read_tensors(tmp_path / "p" / "model.safetensors")
    assert "normalizer.mean" in state
    state["mean"], state["var"] = state.pop("normalizer.mean"), state.pop("normalizer.var")  # format 1 layout
    _io.write_tensors(tmp_path / "p" / "model.safetensors", state)
    again = GenerativePrior.from_pretrained(tmp_path / "p")
    assert torch.equal(again.mean, prior.mean) and torch.equal(again.var, prior.var)


def test_from_pretrained_honours_device_for_weights_and_statistics(small_prior, tmp_path):
    prior, _ = small_prior
    prior.save_pretrained(tmp_path / "p")
    moved = GenerativePrior.from_pretrained(tmp_path / "p", device="meta")
    assert moved.mean.device.type == moved.var.device.type == "meta"
    assert {p.device.type for p in moved.parameters()} == {"meta"}
    assert moved.mean.dtype == torch.float32
