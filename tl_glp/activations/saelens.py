"""Activations cached by SAE-Lens's ``CacheActivationsRunner`` as a training source.

SAE-Lens saves a Hugging Face ``datasets`` folder whose column named after the hook holds one
``[context_size, d_in]`` array per sequence (plus ``token_ids``). :class:`SAELensCache` reads it
through Arrow's memory map, so a prior can train on the very activations an SAE was trained on.

Example::

    src = SAELensCache("activations/gpt2-l8", model_name="gpt2")
    prior = GenerativePrior.from_activations(src, n_blocks=3)
    train(prior, src, TrainConfig(batch_size=1024, lr=1e-4))
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from tl_glp.activations.sources import ActivationSource
from tl_glp.core.stats import RunningStats


class SAELensCache(ActivationSource):
    """Rows are ``(sequence, position)`` pairs of a ``CacheActivationsRunner`` output folder."""

    def __init__(
        self,
        path: str | os.PathLike,
        hook_name: str | None = None,
        model_name: str | None = None,
        model_processing: str = "unknown",
        progress: bool = True,
    ) -> None:
        from datasets import load_from_disk

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"No SAE-Lens activation cache at {self.path}.")
        ds = load_from_disk(str(self.path))
        hooks = [c for c in ds.column_names if c != "token_ids"]
        if hook_name is None:
            if len(hooks) != 1:
                raise ValueError(f"{self.path} holds columns {hooks}: pass hook_name= to pick one.")
            hook_name = hooks[0]
        if hook_name not in hooks:
            raise KeyError(f"{self.path} has no column {hook_name!r}; it holds {hooks}.")
        self.dataset = ds.with_format("numpy", columns=[hook_name])
        self.hook_names = [hook_name]
        first = np.asarray(self.dataset[0][hook_name])
        self.context_size, self.d_input = int(first.shape[0]), int(first.shape[1])
        self.model_name, self.model_processing = model_name, model_processing
        stats = RunningStats(self.d_input)
        for start in tqdm(range(0, len(ds), 64), disable=not progress, desc="cache statistics"):
            stats.update(torch.from_numpy(np.asarray(self.dataset[start : start + 64][hook_name], dtype=np.float32)))
        self.mean, self.var = stats.mean[None], stats.var[None]

    def __len__(self) -> int:
        return len(self.dataset) * self.context_size

    def read_rows(self, rows: np.ndarray) -> Tensor:
        rows = np.asarray(rows, dtype=np.int64)
        seqs, pos = np.divmod(rows, self.context_size)
        unique, inverse = np.unique(seqs, return_inverse=True)
        block = np.asarray(self.dataset[unique.tolist()][self.hook_names[0]], dtype=np.float32)  # [u, ctx, d]
        return torch.from_numpy(block[inverse, pos])[:, None, :]
