"""Model-level evaluations of a prior: delta LM loss (glp-method.md section 9).

Example::

    clean, patched, delta = delta_lm_loss(model, texts, "blocks.2.hook_resid_post",
                                          prior.projection_hook(positions=slice(1, None), seed=0))
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from tl_glp import _compat
from tl_glp._tokens import model_device, right_padded_tokens


class DeltaLoss(NamedTuple):
    clean: float
    patched: float
    delta: float


@torch.inference_mode()
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
    if hook_name is not None:
        _compat.check_hook_name(model, hook_name)
    device = model_device(model)
    total, count = 0.0, 0
    for start in range(0, len(texts), batch_size):
        tokens, lengths = right_padded_tokens(model, texts[start : start + batch_size], context_size)
        hooks = [(hook_name, hook_fn)] if hook_fn is not None else []
        logits = model.run_with_hooks(tokens.to(device), fwd_hooks=hooks)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten().to(logits.device), reduction="none")
        mask = (torch.arange(tokens.shape[1] - 1)[None] < (lengths - 1)[:, None]).flatten().to(loss.device)
        total += float(loss[mask].sum())
        count += int(mask.sum())
    return total / count


def delta_lm_loss(
    model: Any,
    texts: Sequence[str],
    hook_name: str,
    hook_fn: Callable[..., Float[Tensor, "batch pos d_model"] | None],
    **kwargs: Any,
) -> DeltaLoss:
    """LM loss with ``hook_fn`` replacing the activations at ``hook_name``, minus the clean loss.

    Use ``prior.projection_hook(positions=slice(1, None))`` for the prior (every non-BOS position
    projected from t=0.5 with 20 steps) or :func:`tl_glp.saes.sae_reconstruction_hook` for an SAE.
    """
    clean = lm_loss_with_hook(model, texts, **kwargs)
    patched = lm_loss_with_hook(model, texts, hook_name, hook_fn, **kwargs)
    return DeltaLoss(clean, patched, patched - clean)


from tl_glp.manifold import detect_off_manifold  # noqa: E402,F401  (issue 12: tl_glp.evaluation.detect_off_manifold)
