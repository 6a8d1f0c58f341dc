"""``ProjectionConfig``: how an activation is pulled back onto the manifold, as one validated value.

One value travels from the CLI to :meth:`~tl_glp.GenerativePrior.project`, the steering hooks,
:func:`~tl_glp.steering_sweep`, delta LM loss and the scaling study; it is checked once, here.
The defaults reproduce the authors' reference (glp-method.md section 5): noise to the grid time
of ``t_start = 0.5`` on the 20-step schedule (0.4742), then 10 Euler steps back to ``t = 0``.

Example:
    >>> cfg = ProjectionConfig()
    >>> cfg.label, cfg.evaluations
    ('reference t=0.5', 10)
    >>> ProjectionConfig(t_start=0.3, schedule="euler:4").label
    'euler:4 t=0.3'
    >>> ProjectionConfig(schedule="rk4")
    Traceback (most recent call last):
    ...
    ValueError: Unknown projection schedule 'rk4'; choose 'reference', 'one_step', 'euler:K' or 'heun:K' with K >= 1 steps (e.g. 'heun:2').
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

SCHEDULES = ("reference", "one_step", "euler:K", "heun:K")
"""The projection schedules: the reference grid, one clean-estimate step, K Euler or K Heun steps."""


@dataclass(frozen=True)
class ProjectionConfig:
    """Settings of one on-manifold projection (SDEdit in activation space)."""

    t_start: float = 0.5
    """Noise level in paper time (1 = pure noise, 0 = data); 0 returns the input unchanged. The input is noised
    to the grid time ``t_k``, ``k = floor((1 - t_start) * num_steps)``, of the reference schedule."""
    num_steps: int = 20
    """Steps of the reference schedule ``linspace(1, 0.001, num_steps)`` that ``t_start`` indexes."""
    schedule: str = "reference"
    """How to integrate back to 0: ``reference`` (Euler along the reference grid), ``one_step``
    (``z - t v``), ``euler:K`` or ``heun:K`` (K steps on a uniform grid)."""
    solver: Literal["euler", "heun"] = "euler"
    """Solver along the reference grid (the ``reference`` schedule only; the others carry their own)."""
    seed: int | None = None
    """Noise seed. ``None``: fresh global-RNG noise at every call. A seeded steering hook draws fresh noise
    at every call from one generator seeded once (a new hook with the same seed repeats the sequence)."""

    def __post_init__(self) -> None:
        from tl_glp.core.flow import projection_schedule  # torch: the class itself stays light (CLI --help reads it)

        if not isinstance(self.t_start, (int, float)) or not 0.0 <= float(self.t_start) <= 1.0:
            raise ValueError(f"t_start must be in [0, 1] (paper time: 1 = pure noise), got {self.t_start!r}.")
        if not isinstance(self.num_steps, int) or isinstance(self.num_steps, bool) or self.num_steps < 1:
            raise ValueError(
                f"num_steps must be an integer >= 1 (the reference schedule's length), got {self.num_steps!r}."
            )
        if self.solver not in ("euler", "heun"):
            raise ValueError(f"solver must be 'euler' or 'heun', got {self.solver!r}.")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise ValueError(f"seed must be an int or None, got {self.seed!r}.")
        if self.t_start > 0:
            projection_schedule(float(self.t_start), self.num_steps, self.schedule)  # raises on a bad schedule or grid
        elif self.schedule not in ("reference", "one_step") and not _is_k_schedule(self.schedule):
            projection_schedule(0.5, self.num_steps, self.schedule)  # the same error message

    @property
    def evaluations(self) -> int:
        """Network evaluations per projected activation (0 for ``t_start = 0``)."""
        from tl_glp.core.flow import evaluations, projection_schedule

        if self.t_start == 0:
            return 0
        grid, solver = projection_schedule(float(self.t_start), self.num_steps, self.schedule)
        return evaluations(grid, self.solver if self.schedule == "reference" else solver)

    @property
    def label(self) -> str:
        """A short name for tables and plots, e.g. ``'reference t=0.5'``, ``'euler:4 t=0.3'``."""
        solver = f" {self.solver}" if self.schedule == "reference" and self.solver != "euler" else ""
        steps = f" N={self.num_steps}" if self.num_steps != 20 else ""
        return f"{self.schedule}{solver} t={self.t_start:g}{steps}"

    def replace(self, **changes: Any) -> ProjectionConfig:
        """A copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProjectionConfig:
        """Build from a dict, ignoring unknown keys (forward compatibility)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _is_k_schedule(schedule: str) -> bool:
    kind, sep, steps = schedule.partition(":")
    return bool(sep) and kind in ("euler", "heun") and steps.isdigit() and int(steps) >= 1
