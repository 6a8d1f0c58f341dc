"""Feature sources for probing: one small interface, several implementations.

A source says which hooks it reads (:meth:`FeatureSource.hooks`), may fit itself on the
training rows (:meth:`FeatureSource.fit`, e.g. PCA), and turns activations into features
(:meth:`FeatureSource.features`). All of them see the same activations, so they can be compared
head to head.

Example:
    >>> import torch
    >>> acts = {"blocks.1.hook_resid_post": torch.randn(10, 8)}
    >>> RawActivations().features(acts, "blocks.1.hook_resid_post").shape
    torch.Size([10, 8])
    >>> src = PCAFeatures(3).fit(acts, "blocks.1.hook_resid_post")
    >>> src.features(acts, "blocks.1.hook_resid_post").shape
    torch.Size([10, 3])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tl_glp.core import _compat
from tl_glp.core.prior import GenerativePrior

Acts = dict[str, Tensor]


class FeatureSource:
    """Base class; ``name`` labels the source in result tables."""

    name: str = "source"

    def hooks(self, hook_name: str) -> list[str]:
        """The hooks whose activations this source needs, given the probed hook."""
        return [hook_name]

    def fit(self, train_acts: Acts, hook_name: str) -> FeatureSource:
        """Fit on the training rows only (no-op for most sources). Returns ``self``."""
        return self

    def features(self, acts: Acts, hook_name: str) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class RawActivations(FeatureSource):
    """The hook's own dimensions (e.g. raw residual-stream coordinates)."""

    name = "raw"

    def features(self, acts: Acts, hook_name: str) -> Tensor:
        return acts[hook_name]


class MLPNeurons(FeatureSource):
    """The same layer's MLP neurons (``blocks.{L}.mlp.hook_post``)."""

    name = "mlp"

    def __init__(self, hook_name: str | None = None) -> None:
        self.hook_name = hook_name

    def hooks(self, hook_name: str) -> list[str]:
        return [self.hook_name or _compat.mlp_post_hook(hook_name)]

    def features(self, acts: Acts, hook_name: str) -> Tensor:
        return acts[self.hooks(hook_name)[0]]


class MetaNeurons(FeatureSource):
    """The prior's meta-neurons (``n_blocks * d_mlp`` per activation) via its hook points."""

    name = "meta"

    def __init__(self, prior: GenerativePrior, t: float = 0.1, seed: int = 42, batch_size: int = 1024) -> None:
        self.prior, self.t, self.seed, self.batch_size = prior, t, seed, batch_size

    def hooks(self, hook_name: str) -> list[str]:
        return [hook_name]

    def features(self, acts: Acts, hook_name: str) -> Tensor:
        x = acts[hook_name]
        if x.shape[-1] != self.prior.cfg.d_input:
            raise ValueError(
                f"MetaNeurons: activations at {hook_name} have width {x.shape[-1]} but the prior models {self.prior.cfg.d_input}."
            )
        layer = _compat.layer_of(hook_name) if self.prior.cfg.is_multi_layer else None
        device = self.prior.mean.device
        return (
            self.prior.encode(x.to(device), t=self.t, seed=self.seed, layer=layer, batch_size=self.batch_size)
            .float()
            .cpu()
        )


class SAEFeatures(FeatureSource):
    """Any SAE-Lens SAE's feature activations (``sae.encode``); its hook must match."""

    name = "sae"

    def __init__(self, sae: Any, batch_size: int = 1024, name: str = "sae") -> None:
        self.sae, self.batch_size, self.name = sae, batch_size, name

    def sae_hook(self) -> str | None:
        cfg = self.sae.cfg
        meta = getattr(cfg, "metadata", None)
        return getattr(meta, "hook_name", None) or getattr(cfg, "hook_name", None)

    def features(self, acts: Acts, hook_name: str) -> Tensor:
        own = self.sae_hook()
        if own and _canonical(own) != _canonical(hook_name):
            raise ValueError(
                f"The SAE was trained at {own!r} but the probe reads {hook_name!r}; use an SAE of that hook."
            )
        x = acts[hook_name]
        if x.shape[-1] != self.sae.cfg.d_in:
            raise ValueError(
                f"The SAE expects width {self.sae.cfg.d_in} but the activations at {hook_name} have {x.shape[-1]}."
            )
        param = next(self.sae.parameters())
        with torch.no_grad():
            out = [
                self.sae.encode(x[i : i + self.batch_size].to(param.device, param.dtype)).float().cpu()
                for i in range(0, len(x), self.batch_size)
            ]
        return torch.cat(out)


class PCAFeatures(FeatureSource):
    """The top-``k`` principal components of the training activations (a control)."""

    name = "pca"

    def __init__(self, k: int = 64) -> None:
        self.k = k
        self.mean: Tensor | None = None
        self.components: Tensor | None = None

    def fit(self, train_acts: Acts, hook_name: str) -> PCAFeatures:
        x = train_acts[hook_name].double()
        self.mean = x.mean(0)
        _, _, v = torch.linalg.svd(x - self.mean, full_matrices=False)
        self.components = v[: self.k].T  # [d, k]
        return self

    def features(self, acts: Acts, hook_name: str) -> Tensor:
        if self.components is None or self.mean is None:
            raise RuntimeError("PCAFeatures must be fitted on training activations first.")
        return ((acts[hook_name].double() - self.mean) @ self.components).float()


class RandomProjection(FeatureSource):
    """``k`` random Gaussian directions of the activations (a control)."""

    name = "random"

    def __init__(self, k: int = 512, seed: int = 0) -> None:
        self.k, self.seed = k, seed

    def features(self, acts: Acts, hook_name: str) -> Tensor:
        x = acts[hook_name]
        proj = torch.randn(x.shape[-1], self.k, generator=torch.Generator().manual_seed(self.seed)) / x.shape[-1] ** 0.5
        return x.float() @ proj


def _canonical(name: str) -> str:
    return name.replace(".hook_out", ".hook_resid_post").replace(".hook_in", ".hook_resid_pre")
