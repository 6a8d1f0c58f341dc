"""Activation sources: one interface over in-memory tensors, caches and on-disk stores.

An :class:`ActivationSource` is a table of rows (usually tokens); each row holds one
``d_input`` vector per hook name (several hooks for a multi-layer prior). It knows its per-hook
statistics (float64 mean and population variance over all rows) and its provenance, and it
serves shuffled batches for training.

:func:`as_source` turns what a notebook user has into a source:

- a tensor ``[..., d_input]`` (one unnamed hook) or ``[n, n_hooks, d_input]`` with ``hook_names``;
- the ``ActivationCache`` returned by ``model.run_with_cache`` (BOS dropped when the model prepends one);
- an :class:`~tl_glp.ActivationStore` or any other source (returned as is).

Example:
    >>> import torch
    >>> src = as_source(torch.randn(2, 5, 8))
    >>> len(src), src.d_input, src.n_hooks
    (10, 8, 1)
    >>> src[0:3].shape
    torch.Size([3, 8])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from tl_glp.core._compat import model_processing
from tl_glp.core.stats import RunningStats


class Batch(NamedTuple):
    """A training batch: activations ``[batch, d_input]`` and the hook index of each row."""

    acts: Tensor
    hook_idx: Tensor


class ActivationSource:
    """Base class: subclasses implement :meth:`read_rows` and set the attributes below."""

    d_input: int
    hook_names: list[str]
    model_name: str | None = None
    model_processing: str = "unknown"
    mean: Tensor
    """Per-hook mean, ``[n_hooks, d_input]`` float64."""
    var: Tensor
    """Per-hook population variance, ``[n_hooks, d_input]`` float64."""

    def __len__(self) -> int:
        raise NotImplementedError

    def read_rows(self, rows: np.ndarray) -> Float[Tensor, "n n_hooks d_input"]:
        """Rows at the given (sorted or unsorted) indices, as float32."""
        raise NotImplementedError

    @property
    def n_hooks(self) -> int:
        return max(1, len(self.hook_names))

    def __getitem__(self, index: int | slice) -> Tensor:
        """``source[i]`` -> ``[d_input]`` (``[n_hooks, d_input]`` for several hooks); slices add a row axis."""
        n = len(self)
        if isinstance(index, slice):
            rows = np.arange(n)[index]
        else:
            i = int(index)
            if not -n <= i < n:
                raise IndexError(f"row {i} out of range for a source of {n} rows")
            rows = np.array([i % n])
        out = self.read_rows(rows)
        if self.n_hooks == 1:
            out = out[:, 0]
        return out if isinstance(index, slice) else out[0]

    def split(self, val_fraction: float = 0.01, max_val_rows: int = 50_000) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic train/validation row indices: the validation rows are the last ones.

        Taking the tail (the last documents collected) keeps the two sets document-disjoint.
        """
        n = len(self)
        n_val = int(min(max_val_rows, max(1, round(n * val_fraction)))) if val_fraction > 0 else 0
        if n - n_val < 1:
            raise ValueError(f"The source has only {n} rows: too few to hold out {n_val} for validation.")
        return np.arange(n - n_val), np.arange(n - n_val, n)

    def gather(self, flat: np.ndarray) -> Batch:
        """Rows for flat example indices ``row * n_hooks + hook`` (each example is one hook's vector)."""
        rows, hooks = np.divmod(flat, self.n_hooks)
        order = np.argsort(rows, kind="stable")
        data = self.read_rows(rows[order])  # sorted reads are faster on memory-mapped shards
        picked = data[torch.arange(len(order)), torch.from_numpy(hooks[order])]
        inverse = torch.from_numpy(np.argsort(order, kind="stable"))
        return Batch(picked[inverse], torch.from_numpy(hooks).long())

    def batches(
        self,
        batch_size: int,
        *,
        rows: np.ndarray | None = None,
        seed: int = 0,
        epoch: int = 0,
        start: int = 0,
        part: tuple[int, int] = (0, 1),
    ) -> Iterator[Batch]:
        """Shuffled batches over ``rows`` (default: all) x hooks, one epoch, from batch ``start``.

        The permutation is a pure function of ``(seed, epoch)``, so a resumed run that asks for the
        same epoch from batch ``start`` sees exactly the batches it would have seen. The last
        partial batch is dropped. ``part=(rank, world)`` reads only that rank's contiguous
        ``batch_size // world`` slice of each global batch (what one DDP process trains on).
        """
        rank, world = part
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} must divide evenly over {world} processes.")
        local = batch_size // world
        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        flat = (rows[:, None] * self.n_hooks + np.arange(self.n_hooks)[None, :]).reshape(-1)
        perm = np.random.default_rng([seed, epoch]).permutation(len(flat))
        for b in range(start, len(flat) // batch_size):
            yield self.gather(flat[perm[b * batch_size + rank * local : b * batch_size + (rank + 1) * local]])

    def describe(self) -> dict[str, Any]:
        return {
            "rows": len(self),
            "d_input": self.d_input,
            "hook_names": self.hook_names,
            "model_name": self.model_name,
            "model_processing": self.model_processing,
        }


class InMemoryActivations(ActivationSource):
    """Activations held in a tensor ``[n, n_hooks, d_input]`` (what ``collect_activations(out=None)`` returns)."""

    def __init__(
        self,
        data: Float[Tensor, "n n_hooks d_input"],
        hook_names: Sequence[str] = (),
        model_name: str | None = None,
        model_processing: str = "unknown",
    ) -> None:
        if data.ndim != 3:
            raise ValueError(f"expected activations of shape [n, n_hooks, d_input], got {tuple(data.shape)}")
        if data.shape[0] == 0:
            raise ValueError("No activations: the source is empty. Did the data hold any (non-special) tokens?")
        if hook_names and len(hook_names) != data.shape[1]:
            raise ValueError(f"{len(hook_names)} hook names for {data.shape[1]} hooks in the data.")
        _check_finite(data, where="the activations")
        self.data = data.detach().to("cpu")
        self.hook_names = list(hook_names)
        self.d_input = int(data.shape[-1])
        self.model_name = model_name
        self.model_processing = model_processing
        self.mean, self.var = _stats_per_hook(self.data)

    def __len__(self) -> int:
        return self.data.shape[0]

    def read_rows(self, rows: np.ndarray) -> Tensor:
        return self.data[torch.from_numpy(np.asarray(rows, dtype=np.int64))].to(torch.float32)


def as_source(
    obj: Any,
    hook_names: Sequence[str] | str | None = None,
    drop_bos: bool = True,
    attention_mask: Tensor | None = None,
) -> ActivationSource:
    """Wrap a tensor, an ``ActivationCache`` or a store as an :class:`ActivationSource`.

    ``hook_names`` picks hooks out of a cache (default: every key) or names a tensor's hooks.
    From a cache, BOS is dropped when the model prepends one (``drop_bos``), because BOS
    activations are outliers that a prior of text tokens should not model.

    Padding: a cache over several prompts of different lengths holds activations of pad
    positions, which must not be modelled, and the cache itself cannot tell which they are. So a
    cache with more than one row needs ``attention_mask`` (``[batch, pos]``, 1 for real tokens;
    e.g. ``model.tokenizer(texts, padding=True, return_tensors="pt").attention_mask`` for the
    same texts, or ``torch.ones`` when every prompt has the same length); only masked-in positions
    are kept (and, with ``drop_bos``, each row's first real token).
    """
    if isinstance(hook_names, str):
        hook_names = [hook_names]
    if isinstance(obj, ActivationSource):
        if hook_names and list(hook_names) != list(obj.hook_names):
            return _select_hooks(obj, list(hook_names))
        return obj
    if isinstance(obj, Tensor):
        if obj.ndim == 3 and hook_names and len(hook_names) > 1:
            return InMemoryActivations(obj, hook_names)
        if obj.ndim < 1:
            raise ValueError("A 0-d tensor is not a batch of activations.")
        return InMemoryActivations(obj.reshape(-1, 1, obj.shape[-1]), list(hook_names or []))
    if _is_activation_cache(obj):
        return _from_cache(obj, hook_names, drop_bos, attention_mask)
    raise TypeError(
        f"Cannot use a {type(obj).__name__} as activations. Pass a tensor [..., d_input], the "
        "ActivationCache from model.run_with_cache, or an ActivationStore."
    )


def _is_activation_cache(obj: Any) -> bool:
    return type(obj).__name__ == "ActivationCache" and hasattr(obj, "cache_dict")


def _from_cache(cache: Any, hook_names: Sequence[str] | None, drop_bos: bool, attention_mask: Tensor | None) -> InMemoryActivations:
    available = list(cache.cache_dict.keys())
    names = list(hook_names) if hook_names else available
    missing = [n for n in names if n not in cache.cache_dict]
    if missing:
        raise KeyError(f"Hook(s) {missing} are not in the cache; it holds {available[:10]}.")
    tensors = [cache.cache_dict[n] for n in names]
    if len({t.shape for t in tensors}) != 1:
        raise ValueError(f"The cached hooks {names} have different shapes; pick one with hook_names=.")
    stacked = torch.stack(tensors, dim=-2)  # [batch, pos, n_hooks, d]
    model = getattr(cache, "model", None)
    cfg = getattr(model, "cfg", None)
    bos = drop_bos and getattr(cfg, "default_prepend_bos", False)
    if stacked.ndim == 4:
        rows = _cache_rows(stacked, attention_mask, bos)  # [n_kept, n_hooks, d]
    else:
        rows = stacked

    return InMemoryActivations(
        rows.reshape(-1, len(names), stacked.shape[-1]).detach().clone().float(),
        names,
        model_name=getattr(cfg, "model_name", None),
        model_processing=model_processing(model) if model is not None else "unknown",
    )


def _cache_rows(stacked: Tensor, attention_mask: Tensor | None, drop_bos: bool) -> Tensor:
    """The real-token rows of cached ``[batch, pos, n_hooks, d]`` activations."""
    batch, seq = stacked.shape[:2]
    if attention_mask is None:
        if batch > 1:
            raise ValueError(
                f"This ActivationCache holds {batch} prompts: if their lengths differ, some positions are "
                "padding, and the cache cannot tell which. Pass attention_mask=[batch, pos] (1 = real token), "
                "e.g. model.tokenizer(texts, padding=True, return_tensors='pt').attention_mask for the same "
                "texts, or torch.ones(batch, pos) if every prompt has the same length; or collect with "
                "tl_glp.collect_activations, which drops padding itself."
            )
        mask = torch.ones(batch, seq, dtype=torch.bool)
    else:
        mask = torch.as_tensor(attention_mask).to("cpu").bool()
        if tuple(mask.shape) != (batch, seq):
            raise ValueError(f"attention_mask has shape {tuple(mask.shape)} but the cache holds [batch, pos] = [{batch}, {seq}].")
    if drop_bos and seq > 1:
        first = mask.float().argmax(dim=1)  # each row's first real token (left padding puts it later)
        mask = mask.clone()
        mask[torch.arange(batch), first] = False
    return stacked[mask.to(stacked.device)]


def _select_hooks(src: ActivationSource, names: list[str]) -> ActivationSource:
    missing = [n for n in names if n not in src.hook_names]
    if missing:
        raise KeyError(f"Hook(s) {missing} are not in this source; it holds {src.hook_names}.")
    idx = [src.hook_names.index(n) for n in names]
    return _HookSubset(src, idx)


class _HookSubset(ActivationSource):
    """A view of some hooks of another source."""

    def __init__(self, base: ActivationSource, idx: list[int]) -> None:
        self.base, self.idx = base, idx
        self.d_input = base.d_input
        self.hook_names = [base.hook_names[i] for i in idx]
        self.model_name, self.model_processing = base.model_name, base.model_processing
        self.mean, self.var = base.mean[idx], base.var[idx]

    def __len__(self) -> int:
        return len(self.base)

    def read_rows(self, rows: np.ndarray) -> Tensor:
        return self.base.read_rows(rows)[:, self.idx]


def _stats_per_hook(data: Tensor) -> tuple[Tensor, Tensor]:
    means, variances = [], []
    for h in range(data.shape[1]):
        stats = RunningStats(data.shape[-1])
        for chunk in data[:, h].split(65536):
            stats.update(chunk)
        means.append(stats.mean)
        variances.append(stats.var)
    return torch.stack(means), torch.stack(variances)


def _check_finite(data: Tensor, where: str) -> None:
    bad = ~torch.isfinite(data.reshape(data.shape[0], -1)).all(-1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten()[:8].tolist()
        raise ValueError(f"NaN or inf in {where} at rows {rows}; refusing to model them.")
