"""``GenerativePrior``: normaliser + denoiser + flow, in raw activation space.

Every public method takes and returns activations in the LLM's own space, with any leading
dimensions (``[..., d_input]``), on CPU or CUDA; normalisation happens inside (the normaliser,
:mod:`tl_glp.core.normalizer`). Times are the paper's (``t = 1`` noise, ``t = 0`` data).

Dtypes, the rule: whatever the prior's own dtype (``prior.to(torch.bfloat16)`` is fine), every
method that takes activations returns them in the *input's* dtype (``project``, ``encode``,
``normalize``, ``denormalize``, ``forward``); methods that make new activations (``sample``)
return float32; losses are float32. Inside, the statistics and the solver state stay float32 and
only the network's matrix products run in the prior's dtype.

Example (a tiny untrained prior; see ``tl_glp.train`` to fit one):
    >>> import torch
    >>> from tl_glp import GenerativePrior
    >>> acts = torch.randn(256, 8) * 3 + 1
    >>> prior = GenerativePrior.from_activations(acts, n_blocks=2)
    >>> prior.sample(4, num_steps=5, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 8])
    >>> prior.project(acts[:3]).shape, prior.encode(acts[:3]).shape
    (torch.Size([3, 8]), torch.Size([3, 64]))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from tl_glp.core import persistence
from tl_glp.core.compiled import CompiledIntegrator
from tl_glp.core.config import PriorConfig
from tl_glp.core.flow import (
    Solver,
    add_noise,
    draw_noise_and_times,
    integrate,
    projection_schedule,
    reference_time_grid,
    velocity_target,
)
from tl_glp.core.network import Denoiser
from tl_glp.core.normalizer import Normalizer
from tl_glp.core.projection import ProjectionConfig
from tl_glp.core.published import is_published_dir, read_published, resolve_location
from tl_glp.core.stats import RunningStats


@runtime_checkable
class ActivationStatistics(Protocol):
    """What :meth:`GenerativePrior.from_activations` reads from a source of activations.

    Every activation source of :mod:`tl_glp.activations` (stores, in-memory and streaming sources)
    has these attributes; ``mean`` and ``var`` are ``[n_hooks, d_input]``.
    """

    d_input: int
    hook_names: Sequence[str]
    mean: Tensor
    var: Tensor


class GenerativePrior(Denoiser):
    """A flow-matching generative model of one hook site's activations (or several layers').

    ``prior(z_t, t, layer=None)`` is the raw network: the predicted velocity for *normalised*
    noisy inputs. The methods below work in raw activation space.

    Statistics live in ``prior.normalizer`` (:class:`~tl_glp.core.normalizer.Normalizer`; ``prior.mean``
    and ``prior.var`` are its ``[d_input]`` or ``[n_llm_layers, d_input]`` float32 buffers) and are
    saved with the weights.
    """

    def __init__(self, cfg: PriorConfig) -> None:
        super().__init__(cfg)
        self.normalizer = Normalizer(cfg.d_input, cfg.n_llm_layers)
        self.compiled_projection: CompiledIntegrator | None = None
        """Set by :meth:`compile_projection`; ``None``: :meth:`project` runs eager."""
        self.setup()

    @property
    def mean(self) -> Tensor:
        """Per-dimension mean of the training activations (float32; per LLM layer if multi-layer)."""
        return self.normalizer.mean

    @property
    def var(self) -> Tensor:
        """Per-dimension variance of the training activations (float32; per LLM layer if multi-layer)."""
        return self.normalizer.var

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_activations(
        cls, source: Tensor | ActivationStatistics, n_blocks: int = 3, **cfg_kwargs: Any
    ) -> GenerativePrior:
        """A fresh (untrained) prior whose normaliser is fitted to ``source``.

        ``source`` is a tensor ``[..., d_input]`` or any activation source (an
        :class:`~tl_glp.ActivationStore`, ``tl_glp.as_source(cache, attention_mask=...)`` for the
        ``ActivationCache`` of ``model.run_with_cache``, a streaming source). A source also gives its
        provenance (``hook_names``, ``model_name``, ``model_processing``); ``cfg_kwargs`` override it.
        A source with several hooks gives a multi-layer prior (``n_llm_layers`` must then be set).
        """
        stats = _statistics_of(source)
        kwargs: dict[str, Any] = {
            "d_input": stats.d_input,
            "hook_names": list(stats.hook_names),
            "model_name": getattr(stats, "model_name", None),
            "model_processing": getattr(stats, "model_processing", "unknown"),
        }
        kwargs.update({k: v for k, v in cfg_kwargs.items() if v is not None})
        cfg = PriorConfig(n_blocks=n_blocks, **kwargs)
        prior = cls(cfg)
        prior.fit_normalizer(stats)
        return prior

    def fit_normalizer(self, source: Tensor | ActivationStatistics) -> GenerativePrior:
        """Set ``mean``/``var`` from data (a tensor or any activation source). Returns ``self``.

        For a multi-layer prior the source must carry hook names that map to LLM layers; each
        layer's row is filled from that hook's statistics.
        """
        src = _statistics_of(source)
        if src.d_input != self.cfg.d_input:
            raise ValueError(
                f"Activations have width {src.d_input} but this prior models d_input="
                f"{self.cfg.d_input}; collect from the hook the prior was built for."
            )
        mean, var = src.mean.to(torch.float32), src.var.to(torch.float32)  # [n_hooks, d]
        if not self.cfg.is_multi_layer:
            if mean.shape[0] != 1:
                raise ValueError(
                    f"The source holds {mean.shape[0]} hooks ({list(src.hook_names)}); a single-site "
                    "prior needs one. Pick one with tl_glp.as_source(source, hook_names=[...]), or set n_llm_layers."
                )
            self.normalizer.set_statistics(mean[0], var[0])
        else:
            for row, name in enumerate(src.hook_names):
                layer = self.cfg.layer_of(name)
                if layer is None or layer >= self.cfg.n_llm_layers:  # type: ignore[operator]
                    raise ValueError(f"Cannot map hook {name!r} to an LLM layer of this prior.")
                self.normalizer.set_statistics(mean[row], var[row], row=layer)
        record = getattr(src, "statistics_provenance", None)
        if record:
            self.cfg.statistics = dict(record)
        return self

    # ------------------------------------------------------------------ normaliser
    def normalize(
        self, acts: Float[Tensor, "... d_input"], layer: int | Tensor | None = None
    ) -> Float[Tensor, "... d_input"]:
        """``(acts - mean) / sqrt(var)`` per dimension (per layer if multi-layer), computed in
        float32 and returned in ``acts``' dtype."""
        x = self.check_acts(acts)
        return self._normalize(x, layer).to(x.dtype)

    def denormalize(
        self, z: Float[Tensor, "... d_input"], layer: int | Tensor | None = None
    ) -> Float[Tensor, "... d_input"]:
        """Inverse of :meth:`normalize`, computed in float32 and returned in ``z``'s dtype."""
        return self._denormalize(z, layer).to(z.dtype)

    def activation_norm(self, layer: int | None = None) -> float:
        """Typical activation norm from the statistics: ``sqrt(sum(mean**2 + var))``."""
        rows = self.layer_rows(layer, (), self.mean.device)
        return self.normalizer.activation_norm(None if rows is None else int(rows))

    @property
    def act_norm(self) -> float:
        """:meth:`activation_norm` of a single-site prior; steering uses ``alpha = r * act_norm``."""
        if self.cfg.is_multi_layer:
            raise ValueError("A multi-layer prior has one norm per layer: use prior.activation_norm(layer=L).")
        return self.activation_norm()

    # ------------------------------------------------------------------ network entry point
    def forward(
        self,
        z_t: Float[Tensor, "... d_input"],
        t: float | Tensor,
        layer: int | Tensor | None = None,
    ) -> Float[Tensor, "... d_input"]:
        """Predicted velocity for normalised noisy inputs ``z_t`` at paper times ``t``.

        ``t`` is a float or a tensor matching the leading dimensions of ``z_t``; ``layer`` is the
        LLM layer index (multi-layer priors only). Returns ``z_t``'s dtype.
        """
        z = self.check_acts(z_t, "z_t")
        lead = z.shape[:-1]
        times = self._check_times(t, lead, z.device)
        depth = self.layer_depth(self.layer_rows(layer, lead, z.device))
        v = self.velocity(z.reshape(-1, self.cfg.d_input), times, depth)
        return v.reshape(*lead, self.cfg.d_input).to(z.dtype)

    # ------------------------------------------------------------------ training objective
    def loss(
        self,
        acts: Float[Tensor, "... d_input"],
        layer: int | Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Flow-matching loss on raw activations: MSE between predicted and ``eps - z0``.

        Times come from the grid ``{1/1000, ..., 1}``; noise and times are drawn from
        ``generator`` (or the global RNG).
        """
        z0 = self._normalize(self.check_acts(acts), layer).reshape(-1, self.cfg.d_input)
        depth = self.layer_depth(self.layer_rows(layer, acts.shape[:-1], z0.device))
        eps, t = draw_noise_and_times(z0.shape[0], self.cfg.d_input, generator, z0.device)
        return self.flow_loss(z0, eps, t, depth)

    def flow_loss(self, z0: Tensor, eps: Tensor, t: Tensor, depth: Tensor | None = None) -> Tensor:
        """Unchecked loss on normalised 2-D ``z0`` with given noise and times (the trainer's hot path)."""
        v_pred = self.velocity(add_noise(z0, eps, t), t, depth)
        return F.mse_loss(v_pred, velocity_target(z0, eps))

    # ------------------------------------------------------------------ sampling & projection
    @torch.no_grad()
    def sample(
        self,
        n: int,
        num_steps: int = 20,
        layer: int | None = None,
        generator: torch.Generator | None = None,
        solver: Solver = "euler",
    ) -> Float[Tensor, "n d_input"]:
        """Generate ``n`` new activations by integrating from pure noise (``t = 1``) to data.

        The default (Euler, 20 steps) is the paper's "moderate quality at fast speed"; its
        Frechet-distance numbers use 1000 steps.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}.")
        device = self.mean.device
        rows = self.layer_rows(layer, (n,), device)
        z = _randn((n, self.cfg.d_input), generator, device)
        z = self._integrate(z, reference_time_grid(num_steps), rows, solver)
        return self.normalizer.denormalize(z, rows)

    @torch.no_grad()
    def project(
        self,
        acts: Float[Tensor, "... d_input"],
        config: ProjectionConfig | None = None,
        *,
        layer: int | Tensor | None = None,
        generator: torch.Generator | None = None,
        **changes: Any,
    ) -> Float[Tensor, "... d_input"]:
        """Pull activations back onto the learned manifold (SDEdit in activation space).

        As the reference (glp-method.md section 5): normalise; take the grid time
        ``t_k``, ``k = floor((1 - t_start) * num_steps)``, of the ``num_steps`` reference schedule
        (:func:`tl_glp.core.flow.projection_grid`; 0.4742 for the defaults); noise to ``t_k``;
        integrate from ``t_k`` to 0 along ``config.schedule``; de-normalise. ``t_start=0``
        returns the input unchanged (up to float32 rounding).

        ``config`` is a :class:`~tl_glp.ProjectionConfig` (default: the reference); keyword
        ``changes`` replace its fields (``prior.project(x, t_start=0.3, schedule="euler:4")``).
        Noise comes from ``generator`` if given, else from ``config.seed`` (a new generator per
        call), else from the global RNG (fresh at every call).
        """
        cfg = config or ProjectionConfig()
        cfg = cfg.replace(**changes) if changes else cfg
        x = self.check_acts(acts)
        lead = x.shape[:-1]
        rows = self.layer_rows(layer, lead, x.device)
        z = self._normalize(x, layer).reshape(-1, self.cfg.d_input)
        if cfg.t_start > 0:
            if generator is None and cfg.seed is not None:
                generator = torch.Generator().manual_seed(cfg.seed)
            grid, own_solver = projection_schedule(float(cfg.t_start), cfg.num_steps, cfg.schedule)
            solver = cfg.solver if cfg.schedule == "reference" else own_solver
            z = add_noise(z, _randn(z.shape, generator, z.device), float(grid[0]))
            z = self._integrate(z, grid, rows, solver, allow_compiled=True)
        return self.normalizer.denormalize(z, rows).reshape(x.shape).to(x.dtype)

    def compile_projection(self, mode: str | None = "auto", backend: str = "inductor") -> GenerativePrior:
        """Run :meth:`project`'s integration loop as one compiled graph (:mod:`tl_glp.core.compiled`). Returns ``self``.

        ``mode="auto"``: ``torch.compile(mode="reduce-overhead")`` (CUDA graphs) when the activations are on
        CUDA, eager elsewhere (CPU results stay bit-identical). ``"default"``, ``"reduce-overhead"``,
        ``"max-autotune"`` compile on any device (equal to eager within float32 rounding). ``None`` removes the
        compiled path. Noise, normalisation and :meth:`sample` stay eager, and a call runs eager while a hook
        is attached to one of the prior's hook points. Every projection of this prior uses it: steering
        hooks, sweeps, delta LM loss. The first call per schedule and shape compiles (seconds on a GPU).
        """
        self.compiled_projection = None if mode is None else CompiledIntegrator(mode, backend)
        return self

    # ------------------------------------------------------------------ meta-neurons
    @torch.no_grad()
    def encode(
        self,
        acts: Float[Tensor, "... d_input"],
        t: float = 0.1,
        seed: int = 42,
        layer: int | Tensor | None = None,
        batch_size: int = 4096,
    ) -> Float[Tensor, "... n_features"]:
        """Meta-neurons: ``[..., n_blocks * d_mlp]``, block 0's units first.

        The activations are normalised and noised to time ``t`` with noise
        ``torch.randn(n_rows, d_input, generator=torch.Generator().manual_seed(seed))`` drawn on
        the CPU for all rows at once (so results do not depend on the device or ``batch_size``),
        then one forward pass records every block's ``hook_neurons``.
        """
        x = self.check_acts(acts)
        lead = x.shape[:-1]
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"t must be in [0, 1] (1 = pure noise), got {t}.")
        rows = self.layer_rows(layer, lead, x.device)
        z = self._normalize(x, layer).reshape(-1, self.cfg.d_input)
        eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed)).to(z.device)
        z_t = add_noise(z, eps, t)
        names = [f"blocks.{i}.hook_neurons" for i in range(self.cfg.n_blocks)]
        out = []
        for start in range(0, z_t.shape[0], batch_size):
            chunk = slice(start, start + batch_size)
            captured: dict[str, Tensor] = {}

            def grab(act: Tensor, hook: Any, store: dict[str, Tensor] = captured) -> None:
                store[hook.name] = act

            with self.hooks(fwd_hooks=[(name, grab) for name in names]):
                times = torch.full((z_t[chunk].shape[0],), float(t), device=z.device)
                self.velocity(z_t[chunk], times, self.layer_depth(None if rows is None else rows[chunk]))
            out.append(torch.cat([captured[name].float() for name in names], dim=-1))
        return torch.cat(out).reshape(*lead, -1).to(x.dtype)

    @property
    def n_features(self) -> int:
        """Number of meta-neurons :meth:`encode` returns (``n_blocks * d_mlp``)."""
        return self.cfg.n_blocks * self.cfg.d_mlp  # type: ignore[operator]

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``cfg.json`` and ``model.safetensors`` (weights and statistics) atomically.

        The weights are written first and the config last, so a folder with a ``cfg.json`` always
        holds a whole model.
        """
        return persistence.save_prior(path, self.cfg.to_dict(), self.state_dict())

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | Path,
        checkpoint: str | int = "final",
        device: str | torch.device | None = None,
    ) -> GenerativePrior:
        """Load a prior saved by :meth:`save_pretrained`, or import a published GLP checkpoint.

        ``path_or_hub_id`` is a local folder (works offline) or a Hugging Face repo id such as
        ``"generative-latent-prior/glp-llama8b-d6"``. ``checkpoint``: ``"final"``, or an
        intermediate one (``"step_000100"`` of a tl-glp training run; ``"epoch_K"`` or ``K`` of a
        published run). Published folders (``config.yaml`` + ``final.safetensors`` +
        ``rep_statistics.pt``) are recognised and imported.
        """
        path = resolve_location(path_or_hub_id, checkpoint)
        if is_published_dir(path):
            published = read_published(path, checkpoint)
            prior = cls(published.cfg)
            mean, var = published.statistics
            prior.load_weights({**published.state_dict, "mean": mean, "var": var}, source=published.weights_path)
        else:
            if checkpoint != "final":
                path = path / "checkpoints" / str(checkpoint)
            cfg_dict, state, weights_path = persistence.read_prior(path)
            prior = cls(PriorConfig.from_dict(cfg_dict))
            prior.load_weights(state, source=weights_path)
        return prior.to(device) if device is not None else prior

    def load_weights(self, state: dict[str, Tensor], source: Any = "state dict") -> None:
        """Load a full state dict, with an error that lists missing, unexpected or misshapen keys.

        Statistics saved as top-level ``mean``/``var`` (format 1, and the published import) are
        read into ``normalizer.mean``/``normalizer.var``.
        """
        state = {(f"normalizer.{k}" if k in ("mean", "var") else k): v for k, v in state.items()}
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        misshapen = [
            f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}"
            for k, v in own.items()
            if k in state and state[k].shape != v.shape
        ]
        if missing or unexpected or misshapen:
            raise ValueError(
                f"Weights in {source} do not fit this prior's config: missing={missing[:8]}, "
                f"unexpected={unexpected[:8]}, wrong shapes={misshapen[:8]}."
            )
        self.load_state_dict(state)

    # ------------------------------------------------------------------ helpers
    def _integrate(
        self, z: Tensor, grid: Tensor, rows: Tensor | None, solver: Solver, allow_compiled: bool = False
    ) -> Tensor:
        depth = self.layer_depth(rows)
        n = z.shape[0]
        fast = self.compiled_projection
        if allow_compiled and fast is not None and fast.active(self, grid, z.device):
            return fast(self.velocity, z, grid, solver, depth)
        if allow_compiled and fast is not None:
            fast.fallbacks += 1
        return integrate(lambda x, t: self.velocity(x, t.expand(n), depth), z, grid, solver)

    def check_acts(self, acts: Tensor, name: str = "acts") -> Tensor:
        """``acts`` itself, after checking it is a finite float tensor ``[..., d_input]`` (a clear error otherwise)."""
        if not isinstance(acts, Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor of shape [..., {self.cfg.d_input}], got {type(acts).__name__}."
            )
        if acts.ndim == 0 or acts.shape[-1] != self.cfg.d_input:
            raise ValueError(
                f"{name} has shape {tuple(acts.shape)}, but this prior models d_input={self.cfg.d_input} "
                f"(hook {self.cfg.hook_names or 'unknown'}): the last dimension must be {self.cfg.d_input}."
            )
        if not acts.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {acts.dtype}.")
        if not bool(torch.isfinite(acts).all()):
            bad = (~torch.isfinite(acts)).reshape(-1, acts.shape[-1]).any(-1).nonzero().flatten()
            raise ValueError(f"{name} contains NaN or inf values (rows {bad[:8].tolist()} of the flattened input).")
        return acts

    def _check_times(self, t: float | Tensor, lead: torch.Size, device: torch.device) -> Tensor:
        if not isinstance(t, Tensor):
            t = torch.tensor(float(t))
        t = t.to(device=device, dtype=torch.float32)
        if bool(((t < 0) | (t > 1) | ~torch.isfinite(t)).any()):
            raise ValueError(
                f"t must lie in [0, 1] (paper time: 1 = noise, 0 = data); got values in [{t.min().item()}, {t.max().item()}]."
            )
        try:
            return t.expand(lead).reshape(-1)
        except RuntimeError as err:
            raise ValueError(
                f"t of shape {tuple(t.shape)} does not match the leading dimensions {tuple(lead)} of z_t."
            ) from err

    def layer_rows(
        self, layer: int | Tensor | None, lead: tuple[int, ...] | torch.Size, device: torch.device
    ) -> Tensor | None:
        """Flattened LLM-layer index per row (multi-layer), or None (single-site)."""
        if not self.cfg.is_multi_layer:
            if layer is not None:
                raise ValueError(
                    f"This prior models a single site ({self.cfg.hook_names or 'no hook recorded'}); "
                    "do not pass layer= (it is only for multi-layer priors)."
                )
            return None
        n_layers = self.cfg.n_llm_layers
        if layer is None:
            raise ValueError(
                f"This is a multi-layer prior over {n_layers} LLM layers: pass layer=L (0..{n_layers - 1})."
            )
        rows = torch.as_tensor(layer, device=device).long()
        if bool(((rows < 0) | (rows >= n_layers)).any()):  # type: ignore[operator]
            raise ValueError(f"layer must be in 0..{n_layers - 1}, got {layer}.")
        try:
            return rows.expand(lead).reshape(-1)
        except RuntimeError as err:
            raise ValueError(
                f"layer of shape {tuple(rows.shape)} does not match the leading dimensions {tuple(lead)}."
            ) from err

    def layer_depth(self, rows: Tensor | None) -> Tensor | None:
        """The layer embedding's input ``layer / (n_llm_layers - 1)`` for :meth:`layer_rows` (None: single-site)."""
        if rows is None:
            return None
        return rows.to(torch.float32) / (self.cfg.n_llm_layers - 1)  # type: ignore[operator]

    def _stats_for(self, lead: torch.Size, layer: int | Tensor | None, device: torch.device) -> tuple[Tensor, Tensor]:
        """Float32 ``mean`` and ``std`` broadcastable against ``[*lead, d_input]``."""
        return self.normalizer.statistics(self.layer_rows(layer, lead, device), lead, device)

    def _normalize(self, x: Tensor, layer: int | Tensor | None) -> Tensor:
        """Float32 normalised activations (no input checks: callers check)."""
        return self.normalizer.normalize(x, self.layer_rows(layer, x.shape[:-1], x.device))

    def _denormalize(self, z: Tensor, layer: int | Tensor | None) -> Tensor:
        return self.normalizer.denormalize(z, self.layer_rows(layer, z.shape[:-1], z.device))


def _randn(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Standard normal noise from ``generator`` (on its own device), moved to ``device``."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=torch.float32).to(device)


def _statistics_of(source: Tensor | ActivationStatistics) -> ActivationStatistics:
    """``source`` itself if it carries statistics; a tensor's own statistics (float64, as the sources compute them)."""
    if isinstance(source, Tensor):
        if source.ndim < 1 or not source.is_floating_point():
            raise ValueError(
                f"Activations must be a float tensor [..., d_input], got {source.dtype} of shape {tuple(source.shape)}."
            )
        rows = source.detach().reshape(-1, source.shape[-1]).cpu()
        if not bool(torch.isfinite(rows).all()):
            raise ValueError("NaN or inf in the activations; refusing to model them.")
        stats = RunningStats(rows.shape[-1])
        for chunk in rows.split(65536):
            stats.update(chunk)
        return _TensorStatistics(int(rows.shape[-1]), [], stats.mean[None], stats.var[None])
    if isinstance(source, ActivationStatistics):
        return source
    raise TypeError(
        f"Cannot read activation statistics from a {type(source).__name__}. Pass a tensor [..., d_input] or an "
        "activation source: an ActivationStore, or tl_glp.as_source(cache, attention_mask=...) for the ActivationCache "
        "of model.run_with_cache."
    )


class _TensorStatistics:
    def __init__(self, d_input: int, hook_names: list[str], mean: Tensor, var: Tensor) -> None:
        self.d_input, self.hook_names, self.mean, self.var = d_input, hook_names, mean, var
        self.model_name, self.model_processing = None, "unknown"
