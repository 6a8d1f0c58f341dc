"""SAE-Lens helpers: train a TopK SAE on the same activations a prior sees, and splice an SAE's
reconstruction in as a TransformerLens hook (for delta LM loss).

Example::

    sae = train_sae(acts, d_sae=1024, k=16, steps=2000)          # an SAE-Lens TopKTrainingSAE
    probing_source = tl_glp.probing.SAEFeatures(sae)
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from tl_glp.activations.sources import as_source


def train_sae(
    source: Any,
    *,
    d_sae: int = 1024,
    k: int = 16,
    steps: int = 2000,
    batch_size: int = 512,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    hook_name: str | None = None,
    model_name: str | None = None,
    progress: bool = False,
) -> Any:
    """Train an SAE-Lens ``TopKTrainingSAE`` with SAE-Lens's own ``SAETrainer`` on ``source``
    (tensor, cache or store), feeding it shuffled batches of the source's first hook."""
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    src = as_source(source)
    hook = hook_name or (src.hook_names[0] if src.hook_names else None)
    torch.manual_seed(seed)
    cfg = TopKTrainingSAEConfig(
        d_in=src.d_input,
        d_sae=d_sae,
        k=k,
        device=device,
        metadata=SAEMetadata(hook_name=hook, model_name=model_name or src.model_name),
    )
    sae = TopKTrainingSAE(cfg)

    def batches() -> Iterator[Tensor]:
        epoch = 0
        while True:
            for batch in src.batches(batch_size, seed=seed, epoch=epoch):
                yield batch.acts.to(device)
            epoch += 1

    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * batch_size,
        train_batch_size_samples=batch_size,
        lr=lr,
        lr_end=lr / 10,
        lr_scheduler_name="cosineannealing",
        device=device,
        logger=LoggingConfig(log_to_wandb=False),
        n_batches_for_norm_estimate=10,
    )
    quiet = contextlib.redirect_stderr(io.StringIO()) if not progress else contextlib.nullcontext()
    with quiet:
        trained = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=batches()).fit()
    trained.eval()
    return trained


def load_sae(spec: str, device: str | None = None) -> Any:
    """An SAE-Lens SAE from a local folder (``SAE.load_from_disk``) or ``"release:sae_id"``
    (``SAE.from_pretrained``, e.g. ``"gpt2-small-res-jb:blocks.8.hook_resid_pre"``)."""
    from pathlib import Path

    from sae_lens import SAE

    if Path(spec).exists():
        return SAE.load_from_disk(spec, device=device or "cpu")
    release, sep, sae_id = spec.partition(":")
    if not sep or not sae_id:
        raise ValueError(f"{spec!r} is neither an SAE folder nor 'release:sae_id'.")
    return SAE.from_pretrained(release, sae_id, device=device or "cpu")


def sae_reconstruction_hook(sae: Any, positions: slice = slice(1, None)) -> Callable[..., Tensor]:
    """A hook that replaces activations at ``positions`` (default: all but BOS) by the SAE's reconstruction."""

    def hook_fn(activation: Tensor, *, hook: Any = None) -> Tensor:
        out = activation.clone()
        with torch.no_grad():
            part = activation[:, positions]
            param = next(sae.parameters())
            out[:, positions] = sae.decode(sae.encode(part.to(param.device, param.dtype))).to(activation.dtype)
        return out

    return hook_fn
