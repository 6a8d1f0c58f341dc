"""Model-level evaluations of a prior: delta LM loss (glp-method.md section 9).

Example::

    clean, patched, delta = delta_lm_loss(model, texts, "blocks.2.hook_resid_post",
                                          projection_hook(prior, ProjectionConfig(seed=0), positions=slice(1, None)))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from tl_glp.core import _compat, padding
from tl_glp.core._tokens import model_device, right_padded_tokens


class DeltaLoss(NamedTuple):
    clean: float
    patched: float
    delta: float


class DocumentLosses(NamedTuple):
    """Summed next-token cross-entropy (nats) and the number of target tokens, per document."""

    sums: Float[Tensor, " n_docs"]
    counts: Float[Tensor, " n_docs"]

    def mean(self) -> float:
        """Mean loss per token over all documents."""
        return float(self.sums.sum() / self.counts.sum())


@torch.inference_mode()
def document_losses(
    model: Any,
    texts: Sequence[str],
    hook_name: str | None = None,
    hook_fn: Callable[..., Float[Tensor, "batch pos d_model"] | None] | None = None,
    *,
    batch_size: int = 32,
    context_size: int = 128,
    progress: bool = False,
    desc: str = "LM loss",
) -> DocumentLosses:
    """Next-token cross-entropy of every text, summed over its real tokens (right-padded
    batches), with ``hook_fn`` attached at ``hook_name`` when given; ``progress`` shows a bar over batches."""
    if hook_name is not None:
        _compat.check_hook_name(model, hook_name)
    device = model_device(model)
    sums, counts = [], []
    for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", disable=not progress, leave=False):
        tokens, lengths = right_padded_tokens(model, texts[start : start + batch_size], context_size)
        hooks = [(hook_name, hook_fn)] if hook_fn is not None else []
        real = torch.arange(tokens.shape[1])[None] < lengths[:, None]
        with padding.real_tokens(real):  # the hook never edits or counts the right padding
            logits = model.run_with_hooks(tokens.to(device), fwd_hooks=hooks)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2).float(), tokens[:, 1:].to(logits.device), reduction="none"
        )
        mask = (torch.arange(tokens.shape[1] - 1)[None] < (lengths - 1)[:, None]).to(loss.device)
        sums.append((loss * mask).sum(1).double().cpu())
        counts.append(mask.sum(1).double().cpu())
    return DocumentLosses(torch.cat(sums), torch.cat(counts))


def lm_loss_with_hook(
    model: Any,
    texts: Sequence[str],
    hook_name: str | None = None,
    hook_fn: Callable[..., Float[Tensor, "batch pos d_model"] | None] | None = None,
    *,
    batch_size: int = 32,
    context_size: int = 128,
) -> float:
    """Mean next-token cross-entropy over the real tokens of ``texts`` (right-padded batches),
    with ``hook_fn`` attached at ``hook_name`` when given."""
    return document_losses(model, texts, hook_name, hook_fn, batch_size=batch_size, context_size=context_size).mean()


def delta_lm_loss(
    model: Any,
    texts: Sequence[str],
    hook_name: str,
    hook_fn: Callable[..., Float[Tensor, "batch pos d_model"] | None],
    **kwargs: Any,
) -> DeltaLoss:
    """LM loss with ``hook_fn`` replacing the activations at ``hook_name``, minus the clean loss.

    Use ``projection_hook(prior, ProjectionConfig(...), positions=slice(1, None))`` for the prior (every non-BOS position
    projected from t=0.5 with 20 steps) or :func:`tl_glp.saes.sae_reconstruction_hook` for an SAE.
    """
    clean = lm_loss_with_hook(model, texts, **kwargs)
    patched = lm_loss_with_hook(model, texts, hook_name, hook_fn, **kwargs)
    return DeltaLoss(clean, patched, patched - clean)


@dataclass
class DeltaLossComparison:
    """Delta LM loss of several replacements on the same documents, with paired bootstrap CIs.

    ``table`` has one row per replacement: ``replacement``, ``delta`` (mean loss per token with the
    replacement minus without), ``ci_low``/``ci_high`` (95% percentile bootstrap over documents),
    ``n_docs``, ``n_tokens``. :meth:`difference` gives the paired difference of two replacements
    (the same resampled documents for both, so document difficulty cancels).
    """

    clean: DocumentLosses
    patched: dict[str, DocumentLosses]
    n_boot: int = 2000
    seed: int = 0
    level: float = 0.95

    def _boot(self, name: str) -> Tensor:
        g = torch.Generator().manual_seed(self.seed)  # the same resamples for every replacement: paired
        idx = torch.randint(0, len(self.clean.sums), (self.n_boot, len(self.clean.sums)), generator=g)
        counts = self.clean.counts[idx].sum(1)
        return (self.patched[name].sums[idx].sum(1) - self.clean.sums[idx].sum(1)) / counts

    def _interval(self, boot: Tensor) -> tuple[float, float]:
        q = torch.tensor([(1 - self.level) / 2, 1 - (1 - self.level) / 2], dtype=boot.dtype)
        lo, hi = torch.quantile(boot, q).tolist()
        return lo, hi

    def delta(self, name: str) -> tuple[float, float, float]:
        """``(delta, ci_low, ci_high)`` of one replacement."""
        d = float((self.patched[name].sums.sum() - self.clean.sums.sum()) / self.clean.counts.sum())
        return (d, *self._interval(self._boot(name)))

    def difference(self, a: str, b: str) -> tuple[float, float, float]:
        """``(delta_a - delta_b, ci_low, ci_high)``, paired over documents."""
        diff = self.delta(a)[0] - self.delta(b)[0]
        return (diff, *self._interval(self._boot(a) - self._boot(b)))

    @property
    def table(self) -> Any:
        import pandas as pd

        rows = []
        for name in self.patched:
            d, lo, hi = self.delta(name)
            rows.append(
                {
                    "replacement": name,
                    "delta": d,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_docs": len(self.clean.sums),
                    "n_tokens": int(self.clean.counts.sum()),
                }
            )
        return pd.DataFrame(rows)


def compare_delta_lm_loss(
    model: Any,
    texts: Sequence[str],
    hook_name: str,
    replacements: dict[str, Callable[..., Float[Tensor, "batch pos d_model"] | None]],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    progress: bool = False,
    **kwargs: Any,
) -> DeltaLossComparison:
    """Delta LM loss of each hook in ``replacements`` on the same ``texts``, with CIs.

    Example::

        cmp = compare_delta_lm_loss(model, texts, "blocks.6.hook_resid_post", {
            "prior": projection_hook(prior, ProjectionConfig(seed=0), positions=slice(1, None)),
            "sae": sae_reconstruction_hook(sae),
        })
        cmp.table                       # delta, 95% CI, documents and tokens per replacement
        cmp.difference("prior", "sae")  # paired: (difference, ci_low, ci_high)
    """
    clean = document_losses(model, texts, progress=progress, desc="LM loss (clean)", **kwargs)
    patched = {
        name: document_losses(model, texts, hook_name, fn, progress=progress, desc=f"LM loss ({name})", **kwargs)
        for name, fn in replacements.items()
    }
    return DeltaLossComparison(clean, patched, n_boot=n_boot, seed=seed)
