"""Meta-neurons behind the SAE duck type, so SAE harnesses benchmark them like SAEs.

``sae_probes.run_sae_evals`` and SAEBench-style code only call ``encode`` and read a few config
fields; :class:`MetaNeuronSAE` provides them on top of a :class:`~tl_glp.GenerativePrior`.

Example:
    >>> import torch
    >>> from tl_glp import GenerativePrior
    >>> prior = GenerativePrior.from_activations(torch.randn(64, 8), n_blocks=1, hook_names=["blocks.1.hook_resid_post"])
    >>> sae_like = MetaNeuronSAE(prior)
    >>> sae_like.cfg.d_in, sae_like.cfg.d_sae, sae_like.cfg.hook_name
    (8, 32, 'blocks.1.hook_resid_post')
    >>> sae_like.encode(torch.randn(5, 8)).shape
    torch.Size([5, 32])
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor, nn

from tl_glp.core.prior import GenerativePrior


class MetaNeuronSAE(nn.Module):
    """An SAE-shaped view of a prior: ``encode(x)`` returns its meta-neurons (``t``, ``seed`` fixed)."""

    def __init__(
        self,
        prior: GenerativePrior,
        t: float = 0.1,
        seed: int = 42,
        hook_name: str | None = None,
        model_name: str | None = None,
    ) -> None:
        super().__init__()
        self.prior, self.t, self.seed = prior, t, seed
        hook = hook_name or prior.cfg.hook_name
        model = model_name or prior.cfg.model_name
        self.cfg = SimpleNamespace(
            d_in=prior.cfg.d_input,
            d_sae=prior.n_features,
            hook_name=hook,
            model_name=model,
            metadata=SimpleNamespace(hook_name=hook, model_name=model),
            device=str(prior.mean.device),
            dtype=str(prior.mean.dtype).replace("torch.", ""),
            architecture="glp-meta-neurons",
        )

    @property
    def device(self) -> torch.device:
        return self.prior.mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.prior.mean.dtype

    def encode(self, x: Tensor) -> Tensor:
        return self.prior.encode(x.to(self.device), t=self.t, seed=self.seed)

    def forward(self, x: Tensor) -> Tensor:
        return self.encode(x)
