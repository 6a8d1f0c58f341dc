"""The denoiser network: a stack of time-gated MLP blocks that predicts a velocity per token.

The architecture is exactly the published one (glp-method.md section 3), so published weights
load and give identical outputs:

1. ``emb = time_embed(sinusoid(1000 * t))`` (+ ``layer_embed(sinusoid(layer / (L - 1)))`` for a
   multi-layer prior);
2. ``h = in_proj(z_t)``;
3. per block: ``a = ln(h)``, ``n = silu(gate_proj(a) * time_proj(emb)) * up_proj(a)`` (the block's
   **meta-neurons**), ``h = h + down_proj(n)``;
4. ``velocity = out_proj(ln_final(h))``.

The network is a TransformerLens :class:`HookedRootModule`, so ``run_with_cache``, ``hooks`` and
``hook_dict`` work as on any TransformerLens model. Hook points:

========================== ========================= ===========================================
name                       shape                     what
========================== ========================= ===========================================
``hook_in``                ``[batch, d_input]``      the noisy input ``z_t``
``hook_cond``              ``[batch, d_hidden]``     time (+ layer) conditioning embedding
``blocks.{i}.hook_resid_pre``  ``[batch, d_hidden]`` the residual entering block ``i``
``blocks.{i}.hook_neurons``    ``[batch, d_mlp]``    block ``i``'s meta-neurons
``blocks.{i}.hook_resid_post`` ``[batch, d_hidden]`` the residual leaving block ``i``
``hook_velocity``          ``[batch, d_input]``      the predicted velocity
========================== ========================= ===========================================
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from tl_glp.core._compat import HookedRootModule, HookPoint
from tl_glp.core.config import PriorConfig
from tl_glp.core.flow import NUM_TRAIN_TIMESTEPS


def sinusoidal_embedding(values: Float[Tensor, " batch"], dim: int) -> Float[Tensor, "batch dim"]:
    """``concat(cos(v * f), sin(v * f))`` with ``f_k = exp(-ln(10000) k / (dim // 2))``.

    Cosines come first; an odd ``dim`` gets one zero column at the end. Computed in float32.
    """
    half = dim // 2
    k = torch.arange(half, device=values.device, dtype=torch.float32)
    freqs = torch.exp(-math.log(10000.0) * k / half)
    args = values.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class EmbeddingMLP(nn.Sequential):
    """``Linear -> SiLU -> Linear`` on a sinusoidal embedding (state-dict indices 0 and 2)."""

    def __init__(self, dim: int) -> None:
        super().__init__(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))


class GatedBlock(nn.Module):
    """One pre-LayerNorm residual block with multiplicative time conditioning."""

    def __init__(self, d_hidden: int, d_mlp: int, eps: float) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(d_hidden, eps=eps)
        self.up_proj = nn.Linear(d_hidden, d_mlp)
        self.gate_proj = nn.Linear(d_hidden, d_mlp)
        self.time_proj = nn.Linear(d_hidden, d_mlp)
        self.down_proj = nn.Linear(d_mlp, d_hidden)
        self.hook_resid_pre = HookPoint()
        self.hook_neurons = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(
        self, h: Float[Tensor, "batch d_hidden"], cond: Float[Tensor, "batch d_hidden"]
    ) -> Float[Tensor, "batch d_hidden"]:
        h = self.hook_resid_pre(h)
        a = self.ln(h)
        neurons = self.hook_neurons(F.silu(self.gate_proj(a) * self.time_proj(cond)) * self.up_proj(a))
        return self.hook_resid_post(h + self.down_proj(neurons))


class Denoiser(HookedRootModule):
    """The velocity network on *normalised* activations (see the module docstring).

    Subclasses call :meth:`setup` at the end of their ``__init__`` (TransformerLens's contract).
    """

    def __init__(self, cfg: PriorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, h, m = cfg.d_input, cfg.d_hidden, cfg.d_mlp
        assert h is not None and m is not None
        self.time_embed = EmbeddingMLP(h)
        self.layer_embed = EmbeddingMLP(h) if cfg.is_multi_layer else None
        self.in_proj = nn.Linear(d, h)
        self.blocks = nn.ModuleList(GatedBlock(h, m, cfg.layer_norm_eps) for _ in range(cfg.n_blocks))
        self.ln_final = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.out_proj = nn.Linear(h, d)
        self.hook_in = HookPoint()
        self.hook_cond = HookPoint()
        self.hook_velocity = HookPoint()
        self._init_weights()

    def _init_weights(self) -> None:
        """The one place for initialisation: PyTorch defaults, with each block's ``down_proj``
        zeroed so every block starts as the identity on the residual (DiT-style)."""
        for block in self.blocks:
            nn.init.zeros_(block.down_proj.weight)
            nn.init.zeros_(block.down_proj.bias)

    def condition(
        self, t: Float[Tensor, " batch"], depth: Float[Tensor, " batch"] | None
    ) -> Float[Tensor, "batch d_hidden"]:
        """The conditioning embedding for paper times ``t`` (and layer depths in [0, 1])."""
        h = self.cfg.d_hidden
        assert h is not None
        dtype = self.in_proj.weight.dtype
        emb = self.time_embed(sinusoidal_embedding(t * NUM_TRAIN_TIMESTEPS, h).to(dtype))
        if self.layer_embed is not None:
            assert depth is not None, "a multi-layer denoiser needs a layer depth"
            emb = emb + self.layer_embed(sinusoidal_embedding(depth, h).to(dtype))
        return self.hook_cond(emb)

    def velocity(
        self,
        z_t: Float[Tensor, "batch d_input"],
        t: Float[Tensor, " batch"],
        depth: Float[Tensor, " batch"] | None = None,
    ) -> Float[Tensor, "batch d_input"]:
        """Unchecked fast path: 2-D inputs, one time (and depth) per row, returns float32."""
        cond = self.condition(t, depth)
        h = self.in_proj(self.hook_in(z_t.to(self.in_proj.weight.dtype)))
        for block in self.blocks:
            h = block(h, cond)
        return self.hook_velocity(self.out_proj(self.ln_final(h))).float()
