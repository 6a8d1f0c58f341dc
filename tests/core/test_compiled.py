"""The compiled projection (tl_glp.core.compiled): eager on CPU by default, equal to eager when compiled."""

import copy

import pytest
import torch

from tl_glp.core import compiled as compiled_mod
from tl_glp.core.compiled import resolve_mode
from tl_glp.core.config import PriorConfig
from tl_glp.core.flow import projection_schedule
from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig


def _prior(multi: bool = False) -> GenerativePrior:
    torch.manual_seed(0)
    if multi:
        prior = GenerativePrior(
            PriorConfig(
                d_input=12, n_blocks=2, n_llm_layers=4, hook_names=[f"blocks.{i}.hook_resid_post" for i in range(4)]
            )
        )
    else:
        prior = GenerativePrior.from_activations(torch.randn(512, 12) * 2 + 1, n_blocks=2)
    with torch.no_grad():  # non-identity blocks (init zeroes down_proj)
        for block in prior.blocks:
            block.down_proj.weight.normal_(0.0, 0.2)
    return prior.eval()


def test_auto_is_reduce_overhead_on_cuda_and_eager_on_cpu():
    assert resolve_mode("auto", "cuda") == "reduce-overhead" and resolve_mode("auto", "cpu") is None
    assert resolve_mode(None, "cuda") is None and resolve_mode("max-autotune", "cpu") == "max-autotune"
    with pytest.raises(ValueError, match="Unknown compile mode"):
        resolve_mode("fast", "cpu")


def test_auto_on_cpu_runs_the_eager_path_bit_identically(monkeypatch):
    prior, x = _prior(), torch.randn(5, 12)
    before = prior.project(x, ProjectionConfig(seed=3))
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("auto must not compile on CPU"))
    prior.compile_projection()  # "auto"
    assert torch.equal(prior.project(x, ProjectionConfig(seed=3)), before)
    assert prior.compiled_projection.calls == 0 and prior.compiled_projection.fallbacks == 1


@pytest.mark.parametrize(
    "schedule,solver",
    [("reference", "euler"), ("reference", "heun"), ("euler:4", "euler"), ("heun:2", "euler"), ("one_step", "euler")],
)
def test_the_traced_loop_equals_the_eager_projection(schedule, solver):
    prior, x = _prior(), torch.randn(2, 3, 12)
    cfg = ProjectionConfig(seed=1, schedule=schedule, solver=solver, t_start=0.6)
    eager = prior.project(x, cfg)
    prior.compile_projection("default", backend="eager")  # dynamo traces the unrolled loop, no kernels generated
    assert torch.equal(prior.project(x, cfg), eager)
    assert prior.compiled_projection.calls == 1


def test_multi_layer_prior_passes_its_layer_depth_through_the_compiled_loop():
    prior, x = _prior(multi=True), torch.randn(4, 12)
    eager = [prior.project(x, ProjectionConfig(seed=0), layer=layer) for layer in (0, 3)]
    prior.compile_projection("default", backend="eager")
    assert all(
        torch.equal(prior.project(x, ProjectionConfig(seed=0), layer=layer), e) for layer, e in zip((0, 3), eager)
    )
    assert not torch.equal(eager[0], eager[1])


def test_a_hook_on_the_prior_forces_the_eager_path_so_the_hook_takes_effect():
    prior, x = _prior(), torch.randn(3, 12)
    prior.compile_projection("default", backend="eager")
    plain = prior.project(x, ProjectionConfig(seed=0))
    with prior.hooks(fwd_hooks=[("hook_velocity", lambda v, hook: v * 0)]):
        frozen = prior.project(x, ProjectionConfig(seed=0))
    noised = prior.project(x, ProjectionConfig(seed=0, schedule="one_step"))  # zero velocity: the noised input
    assert prior.compiled_projection.fallbacks == 1
    assert not torch.equal(frozen, plain) and not torch.equal(frozen, noised)
    expected = prior.denormalize(
        torch.lerp(prior.normalize(x), torch.randn(3, 12, generator=torch.Generator().manual_seed(0)), 0.4742105)
    )
    assert torch.allclose(frozen, expected, atol=1e-5)


def test_long_grids_run_eager(monkeypatch):
    monkeypatch.setattr(compiled_mod, "MAX_UNROLLED_EVALUATIONS", 4)
    prior, x = _prior(), torch.randn(2, 12)
    prior.compile_projection("default", backend="eager")
    prior.project(x, ProjectionConfig(seed=0))  # 10 evaluations > 4
    prior.project(x, ProjectionConfig(seed=0, schedule="euler:3"))
    assert (prior.compiled_projection.fallbacks, prior.compiled_projection.calls) == (1, 1)


def test_a_compiled_prior_deep_copies_and_none_removes_the_compiled_path():
    prior, x = _prior(), torch.randn(2, 12)
    prior.compile_projection("default", backend="eager")
    prior.project(x)
    twin = copy.deepcopy(prior)
    assert twin.compiled_projection is not prior.compiled_projection and twin.compiled_projection.calls == 0
    assert torch.equal(twin.project(x, seed=0), prior.project(x, seed=0))
    assert prior.compile_projection(None).compiled_projection is None


@pytest.mark.slow
def test_inductor_compiled_projection_on_cpu_equals_eager_within_float32_rounding():
    prior, x = _prior(), torch.randn(6, 12)
    eager = prior.project(x, ProjectionConfig(seed=0))
    prior.compile_projection("default")  # inductor's C++ kernels (tens of seconds to compile)
    fast = prior.project(x, ProjectionConfig(seed=0))
    assert prior.compiled_projection.calls == 1
    assert torch.allclose(fast, eager, atol=1e-5, rtol=1e-5)


def test_a_sweep_over_many_noise_levels_compiles_each_grid_instead_of_falling_back_to_eager():
    """Dynamo caches graphs per code object, at most 8 (its recompile limit): when every grid shared one loop
    function, the ninth noise level of a sweep and all later ones ran eager while ``calls`` counted them compiled."""
    compiles = []

    def counting_backend(graph, example_inputs):
        compiles.append(len(example_inputs))
        return graph.forward

    prior, x = _prior(), torch.randn(3, 12)
    configs = [ProjectionConfig(seed=0, t_start=0.05 + 0.08 * i, num_steps=10) for i in range(11)]
    grids = {tuple(projection_schedule(c.t_start, c.num_steps)[0].tolist()) for c in configs}
    assert len(grids) > 8  # more distinct grids (1 to 9 steps) than dynamo's recompile limit
    eager = [prior.project(x, c) for c in configs]
    prior.compile_projection("default", backend=counting_backend)
    for c, expected in zip(configs, eager):
        assert torch.equal(prior.project(x, c), expected)
    assert len(compiles) == len(grids) and prior.compiled_projection.calls == len(configs)
    for c in configs:  # a second pass reuses every graph
        prior.project(x, c)
    assert len(compiles) == len(grids)
