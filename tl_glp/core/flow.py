"""Flow-matching math: the one place that knows the time convention, noising and the solvers.

Time convention (the paper's): ``t = 1`` is pure noise, ``t = 0`` is clean data. A clean point
``z0`` and noise ``eps`` give the noisy point ``z_t = (1 - t) * z0 + t * eps`` and the velocity
target ``v = eps - z0`` (so ``dz/dt = v``). Sampling integrates ``dz/dt = v(z, t)`` from high to
low ``t``.

Solvers are pure functions of ``(velocity_fn, state, time grid)``: no hidden step counters.

Example:
    >>> import torch
    >>> grid = reference_time_grid(20)
    >>> len(grid), float(grid[0]), float(grid[-1])
    (21, 1.0, 0.0)
    >>> sub = projection_grid(20, 0.5)   # SDEdit from t = 0.5: noise to t_10 = 0.474, 10 Euler steps
    >>> len(sub), round(float(sub[0]), 3)
    (11, 0.474)
    >>> z = integrate(lambda z, t: -z, torch.ones(3), torch.tensor([1.0, 0.0]))  # one Euler step
    >>> z.tolist()
    [2.0, 2.0, 2.0]
    >>> grid, solver = projection_schedule(0.5, 20, "heun:2")   # a cheaper projection: 4 evaluations
    >>> [round(float(t), 3) for t in grid], solver, evaluations(grid, solver)
    ([0.474, 0.237, 0.0], 'heun', 4)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

NUM_TRAIN_TIMESTEPS = 1000
"""The denoiser sees time as ``NUM_TRAIN_TIMESTEPS * t`` (the published models' input scale)."""

REFERENCE_T_MIN = 0.001
"""Smallest non-zero time of the reference sampling schedule."""

Solver = Literal["euler", "heun"]
PROJECTION_METHODS = ("reference", "one_step", "euler:K", "heun:K")
"""Projection schedules :func:`projection_schedule` knows (``K`` = number of steps, e.g. ``"heun:2"``)."""
VelocityFn = Callable[[Tensor, Tensor], Tensor]
"""``velocity_fn(z, t)`` with ``z`` of shape ``[batch, d]`` and a 0-d time tensor ``t``."""


def add_noise(z0: Float[Tensor, "... d"], eps: Float[Tensor, "... d"], t: Tensor | float) -> Float[Tensor, "... d"]:
    """Noise clean points to time ``t``: ``(1 - t) * z0 + t * eps``.

    ``t`` is a float, or a tensor broadcastable against ``z0`` once a trailing axis is added
    (one time per row).
    """
    t = _as_time(t, z0)
    return (1 - t) * z0 + t * eps


def velocity_target(z0: Float[Tensor, "... d"], eps: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
    """The rectified-flow regression target ``eps - z0`` (``dz/dt`` along the straight path)."""
    return eps - z0


def sample_train_times(
    n: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> Float[Tensor, " n"]:
    """Training times drawn uniformly from the grid ``{1/1000, 2/1000, ..., 1}`` (the authors')."""
    steps = torch.randint(1, NUM_TRAIN_TIMESTEPS + 1, (n,), generator=generator, device=_gen_device(generator, device))
    return (steps.to(torch.float32) / NUM_TRAIN_TIMESTEPS).to(device)


def draw_noise_and_times(
    n: int, d: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> tuple[Float[Tensor, "n d"], Float[Tensor, " n"]]:
    """Noise ``eps ~ N(0, I)`` and training times for ``n`` examples, in that order from ``generator``.

    Drawn on the generator's device and moved to ``device``, so a seeded CPU generator gives the
    same draws whatever device trains.
    """
    gen_device = _gen_device(generator, device)
    eps = torch.randn(n, d, generator=generator, device=gen_device, dtype=torch.float32)
    t = sample_train_times(n, generator=generator, device=gen_device)
    return eps.to(device), t.to(device)


def reference_time_grid(num_steps: int) -> Float[Tensor, " num_steps_plus_1"]:
    """The reference schedule: ``linspace(1, 0.001, num_steps)`` followed by a final ``0``.

    ``num_steps`` Euler steps go from each grid point to the next.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}.")
    if num_steps == 1:
        times = torch.tensor([1.0], dtype=torch.float64)
    else:
        times = torch.linspace(1.0, REFERENCE_T_MIN, num_steps, dtype=torch.float64)
    return torch.cat([times, torch.zeros(1, dtype=torch.float64)]).to(torch.float32)


def projection_grid(num_steps: int, t_start: float) -> Float[Tensor, " m"]:
    """The schedule an on-manifold projection (SDEdit) from ``t_start`` runs, as the reference does.

    The reference indexes its ``num_steps`` schedule with ``u = 1 - t_start``: grid index
    ``k = floor((1 - t_start) * num_steps)``. The input is noised to that grid time ``t_k`` (not
    to ``t_start`` itself), first evaluated at ``t_k``, and integrated along ``t_k, ..., 0``. For
    ``t_start = 0.5`` on 20 steps: ``k = 10``, ``t_k = 0.4742``, 10 Euler steps (10 evaluations).
    The first element of the result is the noise level.

    Raises ``ValueError`` when ``k`` lands on the final ``0`` (``t_start`` below the grid's
    resolution, ``1 - t_start`` rounding to 1): there would be nothing to integrate, and a silent
    no-op would hide it. (Before this rule, a coarse grid with no point below ``t_start``, e.g.
    ``num_steps=1``, returned the noised input unprojected.)

    Example:
        >>> g = projection_grid(20, 0.5)
        >>> len(g) - 1, round(float(g[0]), 4)
        (10, 0.4742)
    """
    if not 0.0 <= t_start <= 1.0:
        raise ValueError(f"t_start must be in [0, 1] (1 = pure noise), got {t_start}.")
    grid = reference_time_grid(num_steps)
    k = math.floor((1.0 - t_start) * num_steps)
    if k >= num_steps:
        raise ValueError(
            f"num_steps={num_steps} is too small for t_start={t_start}: the grid index "
            f"floor((1 - t_start) * num_steps) = {k} is the final t = 0, so there is no step to run. "
            "Use a larger t_start or more steps (t_start=0 means no projection at all)."
        )
    return grid[k:]


def number_of_evaluations(num_steps: int, solver: Solver) -> int:
    """Network evaluations a solver spends on ``num_steps`` steps (Euler 1, Heun 2 per step)."""
    return num_steps * {"euler": 1, "heun": 2}[_check_solver(solver)]


@torch.no_grad()
def integrate(
    velocity_fn: VelocityFn,
    z: Float[Tensor, "batch d"],
    grid: Float[Tensor, " n"],
    solver: Solver = "euler",
) -> Float[Tensor, "batch d"]:
    """Integrate ``dz/dt = velocity_fn(z, t)`` along ``grid`` (decreasing times).

    - ``"euler"``: ``z <- z + (t_next - t) * v(z, t)``; one evaluation per step. With
      :func:`reference_time_grid` this is the authors' sampler exactly.
    - ``"heun"``: the trapezoidal corrector ``z <- z + dt/2 * (v(z, t) + v(z_euler, t_next))``;
      two evaluations per step, second-order accurate.
    """
    _check_solver(solver)
    times = grid.tolist()
    for t, t_next in zip(times[:-1], times[1:]):
        t_tensor = torch.tensor(t, device=z.device, dtype=torch.float32)
        dt = t_next - t
        v = velocity_fn(z, t_tensor)
        if solver == "euler":
            z = z + dt * v
        else:
            z_pred = z + dt * v
            v_next = velocity_fn(z_pred, torch.tensor(t_next, device=z.device, dtype=torch.float32))
            z = z + (0.5 * dt) * (v + v_next)
    return z


def projection_schedule(
    t_start: float, num_steps: int = 20, method: str = "reference"
) -> tuple[Float[Tensor, " m"], Solver]:
    """The time grid and solver of an on-manifold projection; the noise level is always ``grid[0]``.

    All methods noise to the same time as the reference, ``t_k`` of :func:`projection_grid`
    (``t_start=0.5``, 20 steps: 0.4742), and differ only in how they integrate back to 0:

    - ``"reference"``: Euler along the reference grid ``t_k, ..., 0`` (10 evaluations for the defaults);
    - ``"one_step"``: the clean estimate ``z - t_k * v(z, t_k)`` (one Euler step to 0; 1 evaluation);
    - ``"euler:K"``: ``K`` Euler steps on a uniform grid from ``t_k`` to 0 (``K`` evaluations);
    - ``"heun:K"``: ``K`` Heun steps on that uniform grid (``2 K`` evaluations).

    Example:
        >>> grid, solver = projection_schedule(0.5, 20, "one_step")
        >>> [round(float(t), 4) for t in grid], solver
        ([0.4742, 0.0], 'euler')
    """
    ref = projection_grid(num_steps, t_start)
    if method == "reference":
        return ref, "euler"
    t_k = float(ref[0])
    if method == "one_step":
        return torch.tensor([t_k, 0.0]), "euler"
    kind, sep, steps = method.partition(":")
    if not sep or kind not in ("euler", "heun") or not steps.isdigit() or int(steps) < 1:
        raise ValueError(
            f"Unknown projection schedule {method!r}; choose 'reference', 'one_step', 'euler:K' or "
            "'heun:K' with K >= 1 steps (e.g. 'heun:2')."
        )
    grid = torch.linspace(t_k, 0.0, int(steps) + 1, dtype=torch.float64).to(torch.float32)
    return grid, kind  # type: ignore[return-value]


def evaluations(grid: Tensor, solver: Solver) -> int:
    """Network evaluations :func:`integrate` spends along ``grid`` with ``solver``."""
    return number_of_evaluations(len(grid) - 1, solver)


def clean_estimate(velocity_fn: VelocityFn, z_t: Float[Tensor, "batch d"], t: float) -> Float[Tensor, "batch d"]:
    """The one-evaluation estimate of the clean point, ``z_t - t * v(z_t, t)``.

    Exact for the straight path (``z_t = (1 - t) z0 + t eps``, ``v = eps - z0`` gives ``z0``);
    for a learned ``v`` it is the posterior mean ``E[z0 | z_t]``. Equal to one Euler step to 0.
    """
    return z_t - t * velocity_fn(z_t, torch.tensor(float(t), device=z_t.device, dtype=torch.float32))


def _check_solver(solver: str) -> Solver:
    if solver not in ("euler", "heun"):
        raise ValueError(f"Unknown solver {solver!r}; choose 'euler' (reference) or 'heun'.")
    return solver  # type: ignore[return-value]


def _as_time(t: Tensor | float, like: Tensor) -> Tensor:
    if not isinstance(t, Tensor):
        return torch.tensor(float(t), dtype=like.dtype, device=like.device)
    t = t.to(dtype=like.dtype, device=like.device)
    return t.unsqueeze(-1) if t.ndim > 0 else t


def _gen_device(generator: torch.Generator | None, device: torch.device | str) -> torch.device:
    return generator.device if generator is not None else torch.device(device)
