"""Configuration of a generative latent prior.

A :class:`PriorConfig` says everything needed to rebuild a prior's network and to know which
activations it models. It round-trips through JSON (:meth:`PriorConfig.to_dict` /
:meth:`PriorConfig.from_dict`), ignoring keys it does not know so that files written by a newer
version still load.

Example:
    >>> cfg = PriorConfig(d_input=16, n_blocks=2, hook_names=["blocks.1.hook_resid_post"])
    >>> cfg.d_hidden, cfg.d_mlp
    (32, 64)
    >>> PriorConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

ModelProcessing = Literal["unprocessed", "processed", "unknown"]
"""Which residual basis the activations come from.

- ``"unprocessed"``: the model's native basis, as a Hugging Face model, a ``TransformerBridge``
  without compatibility processing, or ``HookedTransformer.from_pretrained_no_processing`` give it.
  The published priors live here.
- ``"processed"``: ``HookedTransformer.from_pretrained`` with its default LayerNorm folding and
  weight centring, which changes the residual basis.
- ``"unknown"``: not recorded.
"""

_LAYER_RE = re.compile(r"blocks\.(\d+)\.")


@dataclass
class PriorConfig:
    """Shape and provenance of a :class:`~tl_glp.GenerativePrior`."""

    d_input: int
    """Width of the activations modelled (e.g. ``d_model`` of the LLM for a residual stream)."""

    n_blocks: int = 3
    """Number of gated MLP blocks in the denoiser (the published priors use 3, 6, 12 or 24)."""

    d_hidden: int | None = None
    """Width of the denoiser's residual stream. Defaults to ``2 * d_input`` (published models)."""

    d_mlp: int | None = None
    """Meta-neurons per block. Defaults to ``2 * d_hidden = 4 * d_input`` (published models)."""

    n_llm_layers: int | None = None
    """``None`` for a single-site prior; for a multi-layer prior, the LLM's number of layers.

    The layer embedding feeds ``layer / (n_llm_layers - 1)`` and the normaliser keeps one
    mean/variance row per LLM layer."""

    hook_names: list[str] = field(default_factory=list)
    """The TransformerLens hook name(s) the prior models, e.g. ``["blocks.6.hook_resid_post"]``.

    A multi-layer prior lists one name per LLM layer it was trained on."""

    model_name: str | None = None
    """The language model whose activations were modelled (provenance, e.g. ``"gpt2"``)."""

    model_processing: ModelProcessing = "unknown"
    """Residual basis of the activations; see :data:`ModelProcessing`."""

    layer_norm_eps: float = 1e-5
    """Epsilon of the denoiser's LayerNorms (PyTorch's default, as in the published models)."""

    statistics: dict[str, Any] = field(default_factory=dict)
    """How the normaliser's mean/var were computed, when the source says so (a streaming source
    records its warm-up: ``{"kind": "streaming warm-up", "rows": ..., "first_doc": ..., "end_doc": ...}``)."""

    def __post_init__(self) -> None:
        if self.d_hidden is None:
            self.d_hidden = 2 * self.d_input
        if self.d_mlp is None:
            self.d_mlp = 2 * self.d_hidden
        for name in ("d_input", "d_hidden", "d_mlp", "n_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PriorConfig.{name} must be a positive integer, got {value!r}.")
        if self.n_llm_layers is not None and (not isinstance(self.n_llm_layers, int) or self.n_llm_layers < 2):
            raise ValueError(
                "PriorConfig.n_llm_layers must be None (single-site prior) or the LLM's layer "
                f"count (>= 2) for a multi-layer prior, got {self.n_llm_layers!r}."
            )
        if isinstance(self.hook_names, str):
            self.hook_names = [self.hook_names]
        self.hook_names = list(self.hook_names)
        if self.model_processing not in ("unprocessed", "processed", "unknown"):
            raise ValueError(
                "PriorConfig.model_processing must be 'unprocessed', 'processed' or 'unknown', "
                f"got {self.model_processing!r}."
            )
        if self.layer_norm_eps <= 0:
            raise ValueError(f"PriorConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps}.")

    @property
    def is_multi_layer(self) -> bool:
        """True when the prior is conditioned on the LLM layer (``n_llm_layers`` is set)."""
        return self.n_llm_layers is not None

    @property
    def hook_name(self) -> str | None:
        """The single hook name of a single-site prior (``None`` if unknown or multi-layer)."""
        return self.hook_names[0] if len(self.hook_names) == 1 else None

    def layer_of(self, hook_name: str) -> int | None:
        """The LLM layer index in a hook name such as ``blocks.7.hook_resid_post``."""
        match = _LAYER_RE.match(hook_name)
        return int(match.group(1)) if match else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriorConfig:
        """Build a config from a dict, ignoring keys this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
