"""How on-manifold is an activation? Log-density and denoising scores under a prior.

- :func:`log_prob`: the log-density of raw activations under the prior's probability-flow ODE
  (the instantaneous change of variables), in nats, with the normaliser's Jacobian included.
- :func:`denoising_score`: the flow-matching error at a few fixed times and seeded noises, a
  cheap (``len(times) * n_noise`` evaluations) score; higher = further off the manifold.
- :func:`flow_log_prob`: the ODE part alone, for any velocity field (used to validate against
  fields whose density is known in closed form).

Conventions. Time is the paper's (:mod:`tl_glp.core.flow`): ``dz/dt = v(z, t)`` carries data (``t = 0``)
to noise (``t = 1``, base ``N(0, I)``), so
``log p_0(z_0) = log N(z_1; 0, I) + integral_0^1 div v(z_t, t) dt``. Raw activations are
``x = z * std + mean``, so ``log p_x(x) = log p_z(z) - sum(log std)``. Bits per dimension are
``-log p_x(x) / (d ln 2)``: positive, and *higher means less likely* (an off-manifold score, like
:func:`denoising_score`).

Example (an untrained prior, so the numbers mean nothing; the shapes and bookkeeping do):
    >>> import torch
    >>> from tl_glp import GenerativePrior
    >>> prior = GenerativePrior.from_activations(torch.randn(256, 4) * 2 + 1, n_blocks=1)
    >>> out = log_prob(prior, torch.randn(3, 4))
    >>> out.log_prob.shape, out.stderr.abs().max().item()
    (torch.Size([3]), 0.0)
    >>> denoising_score(prior, torch.randn(2, 5, 4)).shape
    torch.Size([2, 5])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from tl_glp.core.flow import REFERENCE_T_MIN, add_noise, velocity_target
from tl_glp.core.prior import GenerativePrior

DEFAULT_SCORE_TIMES = (0.1, 0.3, 0.5)
"""Times :func:`denoising_score` evaluates at by default."""


class LogProb(NamedTuple):
    """What :func:`log_prob` returns (tensors shaped like the input without its last axis)."""

    log_prob: Tensor
    """log-density in nats (natural log), in raw activation space."""
    bits_per_dim: Tensor
    """``-log_prob / (d ln 2)``: higher = less likely."""
    stderr: Tensor
    """Standard error of ``log_prob`` from the Hutchinson probes (zeros for ``method="exact"``)."""
    nfe: int
    """Velocity evaluations the ODE solver made (each one a forward and the divergence's backwards)."""


def flow_log_prob(
    velocity_fn: Callable[[Tensor, Tensor], Tensor],
    z0: Float[Tensor, "batch d"],
    *,
    method: str = "exact",
    n_probes: int = 4,
    seed: int = 0,
    t_min: float = REFERENCE_T_MIN,
    solver: str = "dopri5",
    rtol: float = 1e-4,
    atol: float = 1e-4,
    options: dict[str, Any] | None = None,
) -> tuple[Float[Tensor, " batch"], Float[Tensor, " batch"], int]:
    """``log p(z0)`` of ``dz/dt = velocity_fn(z, t)`` with a ``N(0, I)`` base at ``t = 1``.

    Integrates ``(z, log-det)`` from ``t_min`` to 1 with torchdiffeq (``solver``, ``rtol``,
    ``atol``, ``options`` are passed to ``torchdiffeq.odeint``). ``velocity_fn(z, t)`` takes
    ``[batch, d]`` and a 0-d time and must be differentiable in ``z``.

    - ``method="exact"``: the divergence is the Jacobian's trace, ``d`` backward passes per
      evaluation (batched); right for widths up to a few hundred.
    - ``method="hutchinson"``: ``n_probes`` fixed Rademacher probes per row (seeded by ``seed``),
      ``div v ~ e^T (dv/dz) e``, one backward each. Each probe's integral is an unbiased estimate;
      the result is their mean and the standard error their standard deviation over ``sqrt(n_probes)``.

    Returns ``(log_prob, stderr, nfe)``.

    Example (the field of data ``N(0, s^2 I)``, whose density is known):
        >>> import torch
        >>> s = 2.0
        >>> v = lambda z, t: (t - (1 - t) * s**2) / ((1 - t) ** 2 * s**2 + t**2) * z
        >>> z = torch.tensor([[0.0, 0.0], [2.0, -2.0]])
        >>> lp, _, _ = flow_log_prob(v, z, t_min=0.0)
        >>> exact = torch.distributions.Normal(0.0, s).log_prob(z).sum(-1)
        >>> bool(torch.allclose(lp, exact, atol=1e-3))
        True
    """
    from torchdiffeq import odeint

    if method not in ("exact", "hutchinson"):
        raise ValueError(f"method must be 'exact' or 'hutchinson', got {method!r}.")
    if not 0.0 <= t_min < 1.0:
        raise ValueError(f"t_min must be in [0, 1), got {t_min}.")
    if method == "hutchinson" and n_probes < 2:
        raise ValueError("Hutchinson's estimator needs n_probes >= 2 to report a standard error.")
    batch, d = z0.shape
    k = n_probes if method == "hutchinson" else 1
    probes = None
    if method == "hutchinson":
        g = torch.Generator().manual_seed(seed)
        probes = (torch.randint(0, 2, (k, batch, d), generator=g).float() * 2 - 1).to(z0.device)
    nfe = 0

    def dynamics(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        nonlocal nfe
        nfe += 1
        z = state[0].detach().requires_grad_(True)
        with torch.enable_grad():
            v = velocity_fn(z, t.to(torch.float32))
            div = _divergence(v, z, probes)
        return v.detach(), div.detach()

    state0 = (z0.detach().to(torch.float32), torch.zeros(batch, k, device=z0.device))
    times = torch.tensor([t_min, 1.0], device=z0.device)
    z1, integral = (
        part[-1] for part in odeint(dynamics, state0, times, rtol=rtol, atol=atol, method=solver, options=options)
    )
    base = -0.5 * (z1.double() ** 2).sum(-1) - 0.5 * d * math.log(2 * math.pi)
    per_probe = base[:, None] + integral.double()  # [batch, k]
    if k == 1:
        return per_probe[:, 0].float(), torch.zeros(batch, device=z0.device), nfe
    return per_probe.mean(1).float(), (per_probe.std(1) / math.sqrt(k)).float(), nfe


def _divergence(v: Tensor, z: Tensor, probes: Tensor | None) -> Tensor:
    """``[batch, k]`` divergences: exact trace (k = 1) or one Hutchinson estimate per probe."""
    if probes is not None:
        grads = torch.autograd.grad(v, z, grad_outputs=probes, is_grads_batched=True, retain_graph=True)[0]
        return (grads * probes).sum(-1).T
    batch, d = z.shape
    eye = torch.eye(d, device=z.device, dtype=v.dtype)[:, None, :].expand(d, batch, d)
    try:
        grads = torch.autograd.grad(v, z, grad_outputs=eye, is_grads_batched=True, retain_graph=True)[
            0
        ]  # [d, batch, d]
        return torch.diagonal(grads, dim1=0, dim2=2).sum(-1)[:, None]
    except RuntimeError:  # an op without a batching rule: one backward per dimension
        total = torch.zeros(batch, device=z.device)
        for i in range(d):
            total = total + torch.autograd.grad(v[:, i].sum(), z, retain_graph=True)[0][:, i]
        return total[:, None]


def log_prob(
    prior: GenerativePrior,
    acts: Float[Tensor, "... d_input"],
    *,
    method: str = "exact",
    layer: int | Tensor | None = None,
    n_probes: int = 4,
    seed: int = 0,
    t_min: float = REFERENCE_T_MIN,
    solver: str = "dopri5",
    rtol: float = 1e-4,
    atol: float = 1e-4,
    batch_size: int = 512,
    progress: bool = False,
) -> LogProb:
    """Log-density of raw activations under ``prior`` (nats), via the probability-flow ODE.

    ``log p_x(x) = log p_z(z) - sum(log std)`` with ``z`` the normalised activation (per-layer
    statistics for a multi-layer prior, ``layer=`` as in :meth:`~tl_glp.GenerativePrior.project`)
    and ``log p_z`` from :func:`flow_log_prob` (``method``, ``n_probes``, ``seed``, ``t_min``,
    ``solver``, ``rtol``, ``atol`` are its). The network was trained on times ``>= 0.001``, so the
    integral starts at ``t_min = 0.001`` (the reference's smallest grid time): strictly, this is
    the density of data noised to ``t = 0.001``, a negligible difference for standardised data.

    ``method="exact"`` costs ``d_input`` backward passes per ODE evaluation; use
    ``"hutchinson"`` (with its reported ``stderr``) for Llama-sized widths. Rows are processed in
    chunks of ``batch_size`` (each chunk has its own adaptive step sizes; ``nfe`` is their total).
    """
    x = prior.check_acts(acts)
    lead = x.shape[:-1]
    d = prior.cfg.d_input
    rows = prior.layer_rows(layer, lead, x.device)
    mean, std = prior._stats_for(lead, layer, x.device)
    z = ((x.to(torch.float32) - mean) / std).reshape(-1, d)
    log_det = torch.log(std).expand(*lead, d).reshape(-1, d).sum(-1)
    depth = prior.layer_depth(rows)
    out_lp, out_se, nfe = [], [], 0
    starts = range(0, z.shape[0], batch_size)
    for start in tqdm(starts, disable=not progress, desc=f"log_prob ({method})"):
        part = slice(start, start + batch_size)
        n = z[part].shape[0]
        dep = None if depth is None else depth[part]

        def velocity(zz: Tensor, t: Tensor, n: int = n, dep: Tensor | None = dep) -> Tensor:
            return prior.velocity(zz, t.expand(n), dep)

        lp, se, used = flow_log_prob(
            velocity,
            z[part],
            method=method,
            n_probes=n_probes,
            seed=seed + start,
            t_min=t_min,
            solver=solver,
            rtol=rtol,
            atol=atol,
        )
        out_lp.append(lp)
        out_se.append(se)
        nfe += used
    lp_z = torch.cat(out_lp)
    lp_x = (lp_z - log_det).reshape(lead)
    return LogProb(lp_x, -lp_x / (d * math.log(2)), torch.cat(out_se).reshape(lead), nfe)


@torch.no_grad()
def denoising_score(
    prior: GenerativePrior,
    acts: Float[Tensor, "... d_input"],
    *,
    times: Sequence[float] = DEFAULT_SCORE_TIMES,
    n_noise: int = 1,
    seed: int = 0,
    layer: int | Tensor | None = None,
    batch_size: int = 4096,
) -> Float[Tensor, ...]:
    """Per-activation flow-matching error: ``mean ||v(z_t, t) - (eps - z)||^2 / d`` over ``times``
    and ``n_noise`` seeded noises. Higher = further off the learned manifold.

    ``len(times) * n_noise`` network evaluations per activation. The noises are drawn on the CPU
    from ``torch.Generator().manual_seed(seed)`` for all rows at once (``[n_noise, rows, d]``), so
    the score of a row does not depend on the device or on ``batch_size``, and the same noise is
    used at every time. Natural activations score near the prior's training loss at those times.

    Example:
        >>> import torch
        >>> from tl_glp import GenerativePrior
        >>> prior = GenerativePrior.from_activations(torch.randn(128, 4), n_blocks=1)
        >>> s = denoising_score(prior, torch.randn(6, 4), times=(0.2, 0.5), n_noise=2)
        >>> s.shape, bool((s > 0).all())
        (torch.Size([6]), True)
    """
    if not times or any(not 0.0 < float(t) <= 1.0 for t in times):
        raise ValueError(f"times must be a non-empty list of values in (0, 1], got {list(times)}.")
    if n_noise < 1:
        raise ValueError(f"n_noise must be >= 1, got {n_noise}.")
    x = prior.check_acts(acts)
    lead = x.shape[:-1]
    rows = prior.layer_rows(layer, lead, x.device)
    z = prior.normalize(x, layer).reshape(-1, prior.cfg.d_input)
    noises = torch.randn(n_noise, *z.shape, generator=torch.Generator().manual_seed(seed)).to(z.device)
    depth = prior.layer_depth(rows)
    total = torch.zeros(z.shape[0], device=z.device)
    for start in range(0, z.shape[0], batch_size):
        part = slice(start, start + batch_size)
        z0 = z[part]
        dep = None if depth is None else depth[part]
        for eps in noises[:, part]:
            target = velocity_target(z0, eps)
            for t in times:
                v = prior.velocity(
                    add_noise(z0, eps, float(t)), torch.full((z0.shape[0],), float(t), device=z.device), dep
                )
                total[part] += ((v - target) ** 2).mean(-1)
    return (total / (len(times) * n_noise)).reshape(lead)
