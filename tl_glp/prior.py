"""``GenerativePrior``: normaliser + denoiser + flow, in raw activation space.

Every public method takes and returns activations in the LLM's own space, with any leading
dimensions (``[..., d_input]``), on CPU or CUDA; normalisation happens inside (the normaliser,
:mod:`tl_glp.normalizer`). Times are the paper's (``t = 1`` noise, ``t = 0`` data).

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

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from tl_glp import _io
from tl_glp.config import PriorConfig
from tl_glp.flow import (
    Solver,
    add_noise,
    draw_noise_and_times,
    integrate,
    reference_time_grid,
    projection_schedule,
    velocity_target,
)
from tl_glp.network import Denoiser
from tl_glp.normalizer import Normalizer

if TYPE_CHECKING:
    from tl_glp.training.config import TrainConfig

CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 2
"""2: the statistics are saved as ``normalizer.mean``/``normalizer.var`` (1: ``mean``/``var``; still read)."""


class GenerativePrior(Denoiser):
    """A flow-matching generative model of one hook site's activations (or several layers').

    ``prior(z_t, t, layer=None)`` is the raw network: the predicted velocity for *normalised*
    noisy inputs. The methods below work in raw activation space.

    Statistics live in ``prior.normalizer`` (:class:`~tl_glp.normalizer.Normalizer`; ``prior.mean``
    and ``prior.var`` are its ``[d_input]`` or ``[n_llm_layers, d_input]`` float32 buffers) and are
    saved with the weights.
    """

    def __init__(self, cfg: PriorConfig) -> None:
        super().__init__(cfg)
        self.normalizer = Normalizer(cfg.d_input, cfg.n_llm_layers)
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
    def from_activations(cls, source: Any, n_blocks: int = 3, **cfg_kwargs: Any) -> GenerativePrior:
        """A fresh (untrained) prior whose normaliser is fitted to ``source``.

        ``source`` is anything :func:`tl_glp.as_source` accepts: a tensor ``[..., d_input]``, the
        ``ActivationCache`` from ``model.run_with_cache`` (pass ``hook_names=`` if it holds several
        hooks), an :class:`~tl_glp.ActivationStore`. A store also gives its provenance
        (``hook_names``, ``model_name``, ``model_processing``); ``cfg_kwargs`` override it.
        A source with several hooks gives a multi-layer prior (``n_llm_layers`` must then be set).
        """
        from tl_glp.activations.sources import as_source

        src = as_source(source, hook_names=cfg_kwargs.get("hook_names"))
        kwargs: dict[str, Any] = {
            "d_input": src.d_input,
            "hook_names": list(src.hook_names),
            "model_name": src.model_name,
            "model_processing": src.model_processing,
        }
        kwargs.update({k: v for k, v in cfg_kwargs.items() if v is not None})
        cfg = PriorConfig(n_blocks=n_blocks, **kwargs)
        prior = cls(cfg)
        prior.fit_normalizer(src)
        return prior

    def fit_normalizer(self, source: Any) -> GenerativePrior:
        """Set ``mean``/``var`` from data (a tensor or any activation source). Returns ``self``.

        For a multi-layer prior the source must carry hook names that map to LLM layers; each
        layer's row is filled from that hook's statistics.
        """
        from tl_glp.activations.sources import as_source

        src = as_source(source)
        if src.d_input != self.cfg.d_input:
            raise ValueError(
                f"Activations have width {src.d_input} but this prior models d_input="
                f"{self.cfg.d_input}; collect from the hook the prior was built for."
            )
        mean, var = src.mean.to(torch.float32), src.var.to(torch.float32)  # [n_hooks, d]
        if not self.cfg.is_multi_layer:
            if mean.shape[0] != 1:
                raise ValueError(
                    f"The source holds {mean.shape[0]} hooks ({src.hook_names}); a single-site "
                    "prior needs one. Pass hook_names=[...] to pick one, or set n_llm_layers."
                )
            self.normalizer.set_statistics(mean[0], var[0])
        else:
            for row, name in enumerate(src.hook_names):
                layer = self.cfg.layer_of(name)
                if layer is None or layer >= self.cfg.n_llm_layers:  # type: ignore[operator]
                    raise ValueError(f"Cannot map hook {name!r} to an LLM layer of this prior.")
                self.normalizer.set_statistics(mean[row], var[row], row=layer)
        return self

    # ------------------------------------------------------------------ normaliser
    def normalize(self, acts: Float[Tensor, "... d_input"], layer: int | Tensor | None = None) -> Float[Tensor, "... d_input"]:
        """``(acts - mean) / sqrt(var)`` per dimension (per layer if multi-layer), computed in
        float32 and returned in ``acts``' dtype."""
        x = self._check_acts(acts)
        return self._normalize(x, layer).to(x.dtype)

    def denormalize(self, z: Float[Tensor, "... d_input"], layer: int | Tensor | None = None) -> Float[Tensor, "... d_input"]:
        """Inverse of :meth:`normalize`, computed in float32 and returned in ``z``'s dtype."""
        return self._denormalize(z, layer).to(z.dtype)

    def activation_norm(self, layer: int | None = None) -> float:
        """Typical activation norm from the statistics: ``sqrt(sum(mean**2 + var))``."""
        rows = self._layer_rows(layer, (), self.mean.device)
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
        z = self._check_acts(z_t, "z_t")
        lead = z.shape[:-1]
        times = self._check_times(t, lead, z.device)
        depth = self._depth(self._layer_rows(layer, lead, z.device))
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
        z0 = self._normalize(self._check_acts(acts), layer).reshape(-1, self.cfg.d_input)
        depth = self._depth(self._layer_rows(layer, acts.shape[:-1], z0.device))
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
        rows = self._layer_rows(layer, (n,), device)
        z = _randn((n, self.cfg.d_input), generator, device)
        z = self._integrate(z, reference_time_grid(num_steps), rows, solver)
        return self.normalizer.denormalize(z, rows)

    @torch.no_grad()
    def project(
        self,
        acts: Float[Tensor, "... d_input"],
        t_start: float = 0.5,
        num_steps: int = 20,
        layer: int | Tensor | None = None,
        generator: torch.Generator | None = None,
        solver: Solver = "euler",
        method: str = "reference",
    ) -> Float[Tensor, "... d_input"]:
        """Pull activations back onto the learned manifold (SDEdit in activation space).

        As the reference (glp-method.md section 5): normalise; take the grid time
        ``t_k``, ``k = floor((1 - t_start) * num_steps)``, of the ``num_steps`` reference schedule
        (:func:`tl_glp.flow.projection_grid`; 0.4742 for the defaults); noise to ``t_k`` with fresh
        noise (or ``generator``'s); integrate from ``t_k`` to 0; de-normalise. ``t_start=0``
        returns the input unchanged (up to float32 rounding); a ``num_steps`` too small for
        ``t_start`` raises.

        ``method`` picks a cheaper integration back from the same noise level
        (:func:`tl_glp.flow.projection_schedule`): ``"one_step"`` (1 evaluation), ``"euler:K"``,
        ``"heun:K"``; those use their own solver, so ``solver`` only applies to ``"reference"``.
        """
        x = self._check_acts(acts)
        lead = x.shape[:-1]
        if not 0.0 <= t_start <= 1.0:
            raise ValueError(f"t_start must be in [0, 1] (1 = pure noise), got {t_start}.")
        rows = self._layer_rows(layer, lead, x.device)
        z = self._normalize(x, layer).reshape(-1, self.cfg.d_input)
        if t_start > 0:
            grid, own_solver = projection_schedule(t_start, num_steps, method)
            solver = solver if method == "reference" else own_solver
            z = add_noise(z, _randn(z.shape, generator, z.device), float(grid[0]))
            z = self._integrate(z, grid, rows, solver)
        return self.normalizer.denormalize(z, rows).reshape(x.shape).to(x.dtype)

    # ------------------------------------------------------------------ on-manifold scores (tl_glp.likelihood)
    def log_prob(self, acts: Float[Tensor, "... d_input"], *, method: str = "exact", layer: int | Tensor | None = None, **kwargs: Any) -> Any:
        """Log-density of raw activations via the probability-flow ODE; see :func:`tl_glp.likelihood.log_prob`."""
        from tl_glp.likelihood import log_prob

        return log_prob(self, acts, method=method, layer=layer, **kwargs)

    def denoising_score(self, acts: Float[Tensor, "... d_input"], *, layer: int | Tensor | None = None, **kwargs: Any) -> Float[Tensor, "..."]:
        """Per-activation flow-matching error (cheap off-manifold score); see :func:`tl_glp.likelihood.denoising_score`."""
        from tl_glp.likelihood import denoising_score

        return denoising_score(self, acts, layer=layer, **kwargs)

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
        x = self._check_acts(acts)
        lead = x.shape[:-1]
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"t must be in [0, 1] (1 = pure noise), got {t}.")
        rows = self._layer_rows(layer, lead, x.device)
        z = self._normalize(x, layer).reshape(-1, self.cfg.d_input)
        eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed)).to(z.device)
        z_t = add_noise(z, eps, t)
        names = [f"blocks.{i}.hook_neurons" for i in range(self.cfg.n_blocks)]
        out = []
        for start in range(0, z_t.shape[0], batch_size):
            chunk = slice(start, start + batch_size)
            captured: dict[str, Tensor] = {}

            def grab(act: Tensor, hook: Any) -> None:
                captured[hook.name] = act

            with self.hooks(fwd_hooks=[(name, grab) for name in names]):
                times = torch.full((z_t[chunk].shape[0],), float(t), device=z.device)
                self.velocity(z_t[chunk], times, self._depth(None if rows is None else rows[chunk]))
            out.append(torch.cat([captured[name].float() for name in names], dim=-1))
        return torch.cat(out).reshape(*lead, -1).to(x.dtype)

    @property
    def n_features(self) -> int:
        """Number of meta-neurons :meth:`encode` returns (``n_blocks * d_mlp``)."""
        return self.cfg.n_blocks * self.cfg.d_mlp  # type: ignore[operator]

    # ------------------------------------------------------------------ steering (see tl_glp.steering)
    def steering_hook(self, direction: Tensor, alpha: float | Tensor, **kwargs: Any) -> Callable[..., Tensor]:
        """A TransformerLens hook that adds ``alpha * direction`` and projects with this prior.

        See :func:`tl_glp.steering.hooks.steering_hook` for the arguments.
        """
        from tl_glp.steering.hooks import steering_hook

        return steering_hook(direction, alpha, prior=self, **kwargs)

    def projection_hook(self, **kwargs: Any) -> Callable[..., Tensor]:
        """A TransformerLens hook that only projects (no steering): used for delta LM loss."""
        from tl_glp.steering.hooks import projection_hook

        return projection_hook(self, **kwargs)

    # ------------------------------------------------------------------ training
    def fit(self, source: Any, cfg: TrainConfig | None = None, out_dir: str | Path | None = None, **overrides: Any) -> Any:
        """Train this prior on ``source`` (tensor, ``ActivationCache``, store); see :func:`tl_glp.train`.

        ``overrides`` set :class:`~tl_glp.TrainConfig` fields, e.g. ``prior.fit(cache, max_steps=500)``.
        Returns the :class:`~tl_glp.training.trainer.TrainResult`.
        """
        from tl_glp.training.config import TrainConfig
        from tl_glp.training.trainer import train

        cfg = TrainConfig(**overrides) if cfg is None else cfg.replace(**overrides)
        return train(self, source, cfg, out_dir=out_dir)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``cfg.json`` and ``model.safetensors`` (weights and statistics) atomically.

        The weights are written first and the config last, so a folder with a ``cfg.json`` always
        holds a whole model.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        _io.write_tensors(path / WEIGHTS_FILE, self.state_dict(), metadata={"format": "tl-glp"})
        _io.write_json(path / CONFIG_FILE, {**self.cfg.to_dict(), "tl_glp_format_version": FORMAT_VERSION})
        return path

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
        from tl_glp.published import is_published_dir, load_published, resolve_location

        path = resolve_location(path_or_hub_id, checkpoint)
        if is_published_dir(path):
            prior = load_published(path, checkpoint)
        else:
            if checkpoint != "final":
                path = path / "checkpoints" / str(checkpoint)
            prior = cls._load_own(path)
        return prior.to(device) if device is not None else prior

    @classmethod
    def _load_own(cls, path: Path) -> GenerativePrior:
        if not (path / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"{path} holds no {CONFIG_FILE}: it is not a saved tl-glp prior (nor a published GLP "
                "folder with config.yaml). Check the path, or the checkpoint name."
            )
        cfg = PriorConfig.from_dict(_io.read_json(path / CONFIG_FILE))
        prior = cls(cfg)
        prior.load_weights(_io.read_tensors(path / WEIGHTS_FILE), source=path / WEIGHTS_FILE)
        return prior

    def load_weights(self, state: dict[str, Tensor], source: Any = "state dict") -> None:
        """Load a full state dict, with an error that lists missing, unexpected or misshapen keys.

        Statistics saved as top-level ``mean``/``var`` (format 1, and the published import) are
        read into ``normalizer.mean``/``normalizer.var``.
        """
        state = {(f"normalizer.{k}" if k in ("mean", "var") else k): v for k, v in state.items()}
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        misshapen = [f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
        if missing or unexpected or misshapen:
            raise ValueError(
                f"Weights in {source} do not fit this prior's config: missing={missing[:8]}, "
                f"unexpected={unexpected[:8]}, wrong shapes={misshapen[:8]}."
            )
        self.load_state_dict(state)

    # ------------------------------------------------------------------ helpers
    def _integrate(self, z: Tensor, grid: Tensor, rows: Tensor | None, solver: Solver) -> Tensor:
        depth = self._depth(rows)
        n = z.shape[0]
        return integrate(lambda x, t: self.velocity(x, t.expand(n), depth), z, grid, solver)

    def _check_acts(self, acts: Tensor, name: str = "acts") -> Tensor:
        if not isinstance(acts, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape [..., {self.cfg.d_input}], got {type(acts).__name__}.")
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
            raise ValueError(f"t must lie in [0, 1] (paper time: 1 = noise, 0 = data); got values in [{t.min().item()}, {t.max().item()}].")
        try:
            return t.expand(lead).reshape(-1)
        except RuntimeError as err:
            raise ValueError(f"t of shape {tuple(t.shape)} does not match the leading dimensions {tuple(lead)} of z_t.") from err

    def _layer_rows(self, layer: int | Tensor | None, lead: tuple[int, ...] | torch.Size, device: torch.device) -> Tensor | None:
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
            raise ValueError(f"This is a multi-layer prior over {n_layers} LLM layers: pass layer=L (0..{n_layers - 1}).")
        rows = torch.as_tensor(layer, device=device).long()
        if bool(((rows < 0) | (rows >= n_layers)).any()):  # type: ignore[operator]
            raise ValueError(f"layer must be in 0..{n_layers - 1}, got {layer}.")
        try:
            return rows.expand(lead).reshape(-1)
        except RuntimeError as err:
            raise ValueError(f"layer of shape {tuple(rows.shape)} does not match the leading dimensions {tuple(lead)}.") from err

    def _depth(self, rows: Tensor | None) -> Tensor | None:
        if rows is None:
            return None
        return rows.to(torch.float32) / (self.cfg.n_llm_layers - 1)  # type: ignore[operator]

    def _stats_for(self, lead: torch.Size, layer: int | Tensor | None, device: torch.device) -> tuple[Tensor, Tensor]:
        """Float32 ``mean`` and ``std`` broadcastable against ``[*lead, d_input]``."""
        return self.normalizer.statistics(self._layer_rows(layer, lead, device), lead, device)

    def _normalize(self, x: Tensor, layer: int | Tensor | None) -> Tensor:
        """Float32 normalised activations (no input checks: callers check)."""
        return self.normalizer.normalize(x, self._layer_rows(layer, x.shape[:-1], x.device))

    def _denormalize(self, z: Tensor, layer: int | Tensor | None) -> Tensor:
        return self.normalizer.denormalize(z, self._layer_rows(layer, z.shape[:-1], z.device))


def _randn(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Standard normal noise from ``generator`` (on its own device), moved to ``device``."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=torch.float32).to(device)
