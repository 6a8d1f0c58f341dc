import math

import pytest
import torch

from tl_glp.core import flow


def test_reference_grid_matches_linspace_then_zero():
    grid = flow.reference_time_grid(20)
    expected = torch.cat([torch.linspace(1.0, 0.001, 20), torch.zeros(1)])
    assert torch.allclose(grid, expected)
    assert torch.all(grid[1:] < grid[:-1])


def test_projection_grid_starts_at_the_reference_grid_index():
    sub = flow.projection_grid(20, 0.5)
    assert len(sub) == 11  # t_10 = 0.474 ... 0.001, 0: ten Euler steps
    assert abs(float(sub[0]) - (1 - 10 * 0.999 / 19)) < 1e-6
    assert float(sub[-1]) == 0.0
    full = flow.reference_time_grid(20)
    for t_start in (1.0, 0.9, 0.37, 0.05):
        k = math.floor((1 - t_start) * 20)
        assert torch.equal(flow.projection_grid(20, t_start), full[k:])
    assert torch.equal(flow.projection_grid(20, 1.0), full)
    with pytest.raises(ValueError, match="t_start"):
        flow.projection_grid(20, 1.5)


def test_projection_grid_refuses_a_grid_with_nothing_to_integrate():
    # one step: the reference index floor(0.5 * 1) = 0 noises to t = 1 and runs the one step
    assert flow.projection_grid(1, 0.5).tolist() == [1.0, 0.0]
    assert len(flow.projection_grid(20, 0.01)) == 2  # k = 19: t = 0.001, one step
    for n, t_start in ((20, 0.0), (20, 1e-18), (3, 0.0)):
        with pytest.raises(ValueError, match="too small"):
            flow.projection_grid(n, t_start)


def test_noising_and_target_are_the_straight_path():
    z0, eps = torch.randn(5, 3), torch.randn(5, 3)
    t = torch.rand(5)
    zt = flow.add_noise(z0, eps, t)
    assert torch.allclose(zt, (1 - t[:, None]) * z0 + t[:, None] * eps)
    # moving along the target velocity from t to 0 recovers the clean point
    assert torch.allclose(zt - t[:, None] * flow.velocity_target(z0, eps), z0, atol=1e-6)


def test_train_times_live_on_the_thousand_point_grid():
    t = flow.sample_train_times(10_000, generator=torch.Generator().manual_seed(0))
    assert t.min() >= 0.001 and t.max() <= 1.0
    assert torch.allclose(t * 1000, (t * 1000).round())


def test_euler_exact_on_straight_flow_and_heun_second_order():
    # dz/dt = c (constant): both solvers are exact
    c = torch.tensor([[1.0, -2.0]])
    z = flow.integrate(lambda z, t: c.expand_as(z), torch.zeros(1, 2), flow.reference_time_grid(7))
    assert torch.allclose(z, -c)  # integrate from t=1 to 0: z(0) = z(1) - c

    # dz/dt = z: z(0) = z(1) * e^-1; Heun's error shrinks ~4x per halving, Euler's ~2x
    def err(solver, n):
        grid = torch.linspace(1, 0, n + 1)
        out = flow.integrate(lambda z, t: z, torch.ones(1, 1), grid, solver)
        return abs(float(out) - math.exp(-1))

    assert err("euler", 40) / err("euler", 80) == pytest.approx(2, rel=0.1)
    assert err("heun", 40) / err("heun", 80) == pytest.approx(4, rel=0.1)
    assert flow.number_of_evaluations(20, "heun") == 40


def test_unknown_solver_is_refused():
    with pytest.raises(ValueError, match="solver"):
        flow.integrate(lambda z, t: z, torch.ones(1, 1), flow.reference_time_grid(2), "rk4")
