"""A compiled projection: the whole SDEdit integration loop as one ``torch.compile`` graph.

An on-manifold projection during generation runs ~10 network evaluations on a handful of rows
per generated token. On a GPU each evaluation is ~30 tiny kernels, so the time goes to kernel
launches, not arithmetic. :meth:`GenerativePrior.compile_projection
<tl_glp.core.prior.GenerativePrior.compile_projection>` attaches a :class:`CompiledIntegrator`:
the Euler/Heun loop along the projection's (fixed) time grid is traced once per grid, solver
and input shape, and on CUDA run with ``mode="reduce-overhead"`` (CUDA graphs: one replay per
projection instead of ~300 launches).

What stays eager, and why:

- the noise draw and the (de)normalisation (a seeded ``torch.Generator`` cannot be traced, and
  they are one kernel each);
- :meth:`~tl_glp.core.prior.GenerativePrior.sample` (1000-step generation would unroll into an
  enormous graph) and any grid longer than :data:`MAX_UNROLLED_EVALUATIONS` evaluations;
- any call while a hook is attached to one of the prior's own hook points (a compiled graph
  would silently ignore it).

Modes (:data:`MODES`): ``"auto"`` (the default) is ``"reduce-overhead"`` on CUDA and eager
everywhere else, so CPU results are exactly those of the eager path; an explicit mode compiles
on any device (on CPU with inductor's C++ kernels: equal to eager within float32 rounding, and
the first call compiles for tens of seconds). ``backend="aot_eager"`` traces without generating
kernels (for debugging).

Example (``backend="eager"``: dynamo traces the loop, no kernels are generated; the result is
the eager one):
    >>> import torch
    >>> from tl_glp.core.prior import GenerativePrior
    >>> from tl_glp.core.projection import ProjectionConfig
    >>> prior = GenerativePrior.from_activations(torch.randn(256, 8), n_blocks=1).eval()
    >>> x = torch.randn(3, 8)
    >>> eager = prior.project(x, ProjectionConfig(seed=0))
    >>> _ = prior.compile_projection("default", backend="eager")
    >>> torch.equal(prior.project(x, ProjectionConfig(seed=0)), eager)
    True
    >>> prior.compiled_projection.calls, prior.compile_projection(None).compiled_projection is None
    (1, True)
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from tl_glp.core.flow import Solver

MODES = ("auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""``torch.compile`` modes :class:`CompiledIntegrator` accepts (``"auto"``: reduce-overhead on CUDA, eager elsewhere)."""

MAX_UNROLLED_EVALUATIONS = 64
"""Grids needing more network evaluations than this run eager (the loop is unrolled into the graph)."""

VelocityFn = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]
"""``velocity(z [n, d], t [n], depth [n] | None) -> [n, d]`` (the denoiser's unchecked fast path)."""


def check_mode(mode: str | None) -> str | None:
    """``mode`` itself if it is ``None`` or one of :data:`MODES`; a clear error otherwise."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"Unknown compile mode {mode!r}; choose one of {MODES} or None (eager).")
    return mode


def resolve_mode(mode: str | None, device: torch.device | str) -> str | None:
    """The ``torch.compile`` mode to use on ``device``: ``"auto"`` is ``"reduce-overhead"`` on CUDA, ``None``
    (eager) elsewhere; other modes pass through.

    Example:
        >>> resolve_mode("auto", "cpu") is None, resolve_mode("auto", "cuda:0"), resolve_mode("default", "cpu")
        (True, 'reduce-overhead', 'default')
    """
    check_mode(mode)
    if mode == "auto":
        return "reduce-overhead" if torch.device(device).type == "cuda" else None
    return mode


def uses_cuda_graphs(mode: str | None, device: torch.device | str) -> bool:
    """Whether ``torch.compile(mode=mode)`` records CUDA graphs for tensors on ``device``."""
    return torch.device(device).type == "cuda" and mode in ("reduce-overhead", "max-autotune")


class CompiledIntegrator:
    """Integrates ``dz/dt = v(z, t)`` along a fixed grid with a compiled, unrolled loop.

    The same arithmetic as :func:`tl_glp.core.flow.integrate` (Euler ``z + dt v``; Heun's trapezoid),
    with each step's time as a constant of the graph. One compiled function per (grid, solver, layered
    or not); ``torch.compile`` itself specialises on shapes and dtypes. ``calls`` counts compiled runs,
    ``fallbacks`` the calls that ran eager (hooks attached, grid too long, mode resolved to eager).
    """

    def __init__(self, mode: str | None = "auto", backend: str = "inductor") -> None:
        self.mode = check_mode(mode)
        self.backend = backend
        self.calls = 0
        self.fallbacks = 0
        self._compiled: dict[tuple[Any, ...], Callable[..., Tensor]] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> CompiledIntegrator:
        return CompiledIntegrator(self.mode, self.backend)  # compiled graphs are not copied: a copy recompiles

    def __repr__(self) -> str:
        return f"CompiledIntegrator(mode={self.mode!r}, backend={self.backend!r}, graphs={len(self._compiled)})"

    def active(self, module: nn.Module, grid: Tensor, device: torch.device) -> bool:
        """Whether a call on ``device`` along ``grid`` runs compiled (else the caller integrates eagerly)."""
        if resolve_mode(self.mode, device) is None or len(grid) - 1 > MAX_UNROLLED_EVALUATIONS:
            return False
        return not any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())

    def __call__(self, velocity: VelocityFn, z: Tensor, grid: Tensor, solver: Solver, depth: Tensor | None) -> Tensor:
        """``z`` integrated along ``grid`` with ``solver``; ``velocity`` is the network's unchecked fast path."""
        mode = resolve_mode(self.mode, z.device)
        times = tuple(float(t) for t in grid.tolist())
        key = (times, solver, depth is None, z.device.type)
        fn = self._compiled.get(key)
        if fn is None:
            fn = torch.compile(_unrolled(velocity, times, solver), mode=mode, backend=self.backend)
            self._compiled[key] = fn
        if uses_cuda_graphs(mode, z.device):
            torch.compiler.cudagraph_mark_step_begin()  # the previous call's outputs were consumed (cloned below)
        self.calls += 1
        return fn(z, depth).clone()


def _unrolled(
    velocity: VelocityFn, times: tuple[float, ...], solver: Solver
) -> Callable[[Tensor, Tensor | None], Tensor]:
    """The integration loop with the grid baked in as Python floats (constants of the traced graph), as a
    function with its own code object (:func:`_with_own_code`)."""

    def run(z: Tensor, depth: Tensor | None) -> Tensor:
        n = z.shape[0]
        for t, t_next in zip(times[:-1], times[1:]):
            dt = t_next - t
            v = velocity(z, torch.full((n,), t, device=z.device, dtype=torch.float32), depth)
            if solver == "euler":
                z = z + dt * v
            else:
                v_next = velocity(z + dt * v, torch.full((n,), t_next, device=z.device, dtype=torch.float32), depth)
                z = z + (0.5 * dt) * (v + v_next)
        return z

    return _with_own_code(run, f"projection_{solver}_{len(times) - 1}_steps")


def _with_own_code(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fn`` with a private copy of its code object, named ``name``.

    Dynamo keeps its compiled graphs in one cache per *code object*, with a limit on the entries
    (``torch._dynamo.config.recompile_limit``, 8). Every grid's loop is the same ``run`` closure, so they
    would all share one cache: a sweep over nine noise levels hit the limit, and every later grid silently
    ran eager while still counted as compiled. A code object per grid gives each its own cache, where only
    input shapes and dtypes add entries (and a second shape makes the graph dynamic).
    """
    code = fn.__code__.replace(co_name=name, co_qualname=name)
    return types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)
