"""``collect_activations``: run a TransformerLens model over text and keep one hook's (or several
hooks') activations for every real token.

Example (a tiny random model, token input):
    >>> import torch
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> model = HookedTransformer(HookedTransformerConfig(n_layers=2, d_model=16, d_head=4, n_heads=4,
    ...     d_mlp=32, n_ctx=16, d_vocab=20, act_fn="gelu"))
    >>> acts = collect_activations(model, torch.randint(0, 20, (3, 8)), "blocks.0.hook_resid_post", progress=False)
    >>> len(acts), acts.d_input
    (24, 16)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from tl_glp.activations.packing import token_batches
from tl_glp.activations.sources import ActivationSource, InMemoryActivations
from tl_glp.activations.store import ActivationStore, StoreWriter, _read_manifest, merge_rank_stores
from tl_glp.core import _compat, _dist
from tl_glp.core._tokens import model_device


@dataclass
class HFText:
    """A Hugging Face dataset of texts, read lazily (``streaming=True`` never downloads it whole).

    Example: ``HFText("HuggingFaceFW/fineweb", name="sample-10BT", split="train", column="text")``.
    """

    path: str
    name: str | None = None
    split: str = "train"
    column: str = "text"
    streaming: bool = True

    def __iter__(self) -> Iterator[str]:
        from datasets import load_dataset

        ds = load_dataset(self.path, self.name, split=self.split, streaming=self.streaming)
        for row in ds:
            yield row[self.column]


def collect_activations(
    model: Any,
    data: Any,
    hook_names: str | Sequence[str],
    *,
    out: str | os.PathLike | None = None,
    context_size: int = 128,
    batch_size: int = 32,
    max_tokens: int | None = None,
    skip_special_tokens: bool = True,
    packing: bool = True,
    dtype: str = "float32",
    shard_rows: int = 65536,
    progress: bool = True,
) -> ActivationSource:
    """Activations at ``hook_names`` for every real token of ``data``.

    Args:
        model: a ``HookedTransformer`` or ``TransformerBridge`` (anything with ``run_with_cache``).
        data: a list or iterable of strings, a token tensor ``[n_docs, seq]``, a :class:`HFText`,
            or a Hugging Face ``datasets`` dataset with a ``"text"`` column.
        hook_names: one hook name or several (one forward pass serves all; a multi-layer prior
            trains on several).
        out: ``None`` keeps the activations in memory; a folder streams them to an
            :class:`~tl_glp.ActivationStore` in shards, and re-running the same call resumes.
        context_size: tokens per forward sequence (BOS included; at most the model's ``n_ctx``).
        batch_size: sequences (packed windows, or documents) per forward pass.
        max_tokens: stop after this many activation rows.
        skip_special_tokens: drop every position that holds one of the tokenizer's special tokens
            (``tokenizer.all_special_ids``: BOS, EOS and padding, and also ``<unk>``, ``<mask>`` ... where the
            tokenizer has them; their activations are outliers) as well as right padding. Words outside the
            vocabulary of a word-level tokenizer (the testbed's) become ``<unk>`` and are dropped with it, so a
            document can yield fewer rows than it has words. ``False`` keeps every real position: with
            ``packing=False`` the BOS too; with packing, the special tokens inside documents (the BOS and
            separators that packing inserts belong to no document and are never rows).
        packing: text is tokenised without BOS, concatenated with a BOS between documents and cut into
            full windows of ``context_size`` tokens, each opened by BOS (SAE-Lens's convention; see
            :mod:`tl_glp.activations.packing`): no padding, and a long document continues into the next
            window instead of being truncated. The last window of the data may be shorter; it is kept.
            ``False``: one document per sequence, truncated to ``context_size`` and right-padded (every
            document then starts at position 0 after its own BOS). A token tensor is always taken as given.
        dtype: storage dtype, ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        shard_rows: rows per on-disk shard.
        progress: show a tqdm bar with tokens/s.

    The model runs under ``torch.inference_mode`` with ``stop_at_layer`` just past the deepest
    requested hook, so no later layer is computed.

    Under ``torchrun`` (``torch.distributed`` initialised), document ``i`` goes to rank
    ``i % world_size`` (each rank packs its own documents); each rank runs the model on its own share and writes its own shards under
    ``out/rank_00000/``, ``out/rank_00001/``...; when every rank is done, rank 0 writes one
    ``out/manifest.json`` listing every shard with statistics merged exactly (Chan et al.'s
    parallel mean/variance), so :class:`~tl_glp.ActivationStore` opens ``out`` as one store.
    ``max_tokens`` is then split evenly over the ranks. Each rank's folder resumes on its own.
    """
    names = [hook_names] if isinstance(hook_names, str) else list(hook_names)
    if not names:
        raise ValueError("hook_names is empty: name at least one hook, e.g. 'blocks.6.hook_resid_post'.")
    for name in names:
        _compat.check_hook_name(model, name)
    stop = _compat.stop_layer_for(names, model.cfg.n_layers)
    special = _special_ids(model) if skip_special_tokens else set()
    model_name = _compat.model_name_of(model)
    processing = _compat.model_processing(model)

    packs = packing and not isinstance(data, Tensor)
    d_input = (_stored_width(out) if out is not None else None) or _hook_width(model, names, stop)
    writer = None
    if out is None and _dist.world_size() > 1:
        raise ValueError(
            "Under torchrun, collect_activations needs out= (a folder): each process writes its own shards there."
        )
    if out is not None:
        if _dist.world_size() > 1:
            merged = _read_manifest(Path(out))
            if merged is not None and merged.get("complete"):
                return ActivationStore.open(out)
        writer = StoreWriter(
            rank_folder(out) if _dist.world_size() > 1 else out,
            d_input=d_input,
            hook_names=names,
            dtype=dtype,
            shard_rows=shard_rows,
            model_name=model_name,
            model_processing=processing,
            fingerprint={
                "context_size": context_size,
                "skip_special_tokens": skip_special_tokens,
                "max_tokens": max_tokens,
                **({"packing": True} if packs else {}),
            },
        )
        if writer.complete:
            return _close(writer, out)
    skip_docs = writer.resume_doc if writer else 0
    drop_rows = writer.resume_rows_of_doc if writer else 0
    produced = writer.rows_written if writer else 0
    kept: list[Tensor] = []
    rank, world = _dist.rank(), _dist.world_size()
    cap = max_tokens if max_tokens is None or world == 1 else -(-max_tokens // world)  # each rank's share

    bar = tqdm(
        total=cap,
        disable=not progress,
        unit="tok",
        desc="collect" if world == 1 else f"collect rank {rank}",
        initial=produced,
        smoothing=0.1,
    )
    start_time = time.perf_counter()
    rows_iter = activation_rows(
        model,
        data,
        names,
        context_size=context_size,
        batch_size=batch_size,
        stop=stop,
        special=special,
        packing=packs,
        start=(0 if packs else skip_docs, 0),  # packed windows are rebuilt from the start, then skipped
        rank=rank,
        world=world,
        after=(skip_docs, drop_rows) if skip_docs or drop_rows else None,
    )
    for chunk in rows_iter:
        rows, row_docs = chunk.rows, chunk.doc
        if cap is not None and produced + rows.shape[0] > cap:
            rows, row_docs = rows[: cap - produced], row_docs[: cap - produced]
        if writer:
            writer.add(rows, row_docs)
        else:
            kept.append(rows.to(_torch_dtype(dtype)))
        produced += rows.shape[0]
        bar.update(rows.shape[0])
        bar.set_postfix(tok_per_s=f"{(produced) / max(time.perf_counter() - start_time, 1e-9):.0f}", refresh=False)
        if cap is not None and produced >= cap:
            break
    bar.close()
    if writer:
        return _close(writer, out)
    if not kept or sum(k.shape[0] for k in kept) == 0:
        raise ValueError("No activations were collected: the data is empty or holds only special tokens.")
    return InMemoryActivations(torch.cat(kept), names, model_name=model_name, model_processing=processing)


def _stored_width(out: str | os.PathLike) -> int | None:
    """The width recorded by an existing store at ``out`` (so resuming needs no probe pass)."""

    manifest = _read_manifest(Path(out))
    return int(manifest["d_input"]) if manifest else None


def _hook_width(model: Any, names: list[str], stop: int | None) -> int:
    """The common last-dimension width of the hooks, from a one-token forward pass."""
    device = model_device(model)
    with torch.inference_mode():
        _, cache = model.run_with_cache(
            torch.zeros(1, 1, dtype=torch.long, device=device), names_filter=names, stop_at_layer=stop
        )
    widths = {n: int(cache[n].shape[-1]) for n in names}
    shapes = {n: tuple(cache[n].shape[2:]) for n in names}
    if len(set(widths.values())) != 1 or any(len(s) != 1 for s in shapes.values()):
        raise ValueError(f"The hooks must all give vectors of one width per token; got {shapes}.")
    return next(iter(widths.values()))


def _torch_dtype(dtype: str) -> torch.dtype:
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def _special_ids(model: Any) -> set[int]:
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return set()
    return {int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None}


class RowChunk(NamedTuple):
    """The rows of one forward pass: activations ``[n, n_hooks, d]`` (float32, CPU), and for each row its
    document, its index among that document's rows (``pos``) and the restart point ``(document, offset)``
    of the sequence it was computed in (``start``, ``[n, 2]``); ``resume`` is where the stream continues."""

    rows: Tensor
    doc: Tensor
    pos: Tensor
    start: Tensor
    resume: tuple[int, int]


def activation_rows(
    model: Any,
    data: Any,
    names: list[str],
    *,
    context_size: int,
    batch_size: int,
    stop: int | None,
    special: set[int],
    packing: bool = True,
    start: tuple[int, int] = (0, 0),
    rank: int = 0,
    world: int = 1,
    stop_doc: int | None = None,
    select: Callable[[int], bool] | None = None,
    after: tuple[int, int] | None = None,
) -> Iterator[RowChunk]:
    """One forward pass per ``batch_size`` sequences (packed windows, or one padded document each:
    see :func:`~tl_glp.activations.packing.token_batches`): a :class:`RowChunk` of every kept position
    (not BOS, a separator or padding, nor a ``special`` token id), documents in order from ``start``
    up to ``stop_doc`` (excluded), only those with ``index % world == rank`` (and, with ``select``, only
    the sequences that hold a document for which ``select(index)`` is true; with ``after = (doc, row)``
    only the rows from there on).

    This is the one place that decides which positions become rows: :func:`collect_activations`
    and :class:`~tl_glp.activations.streaming.StreamingActivations` both read through it.
    """
    device = model_device(model)
    for batch in token_batches(
        model,
        data,
        batch_size=batch_size,
        context_size=context_size,
        packing=packing,
        special=special,
        start=start,
        rank=rank,
        world=world,
        stop_doc=stop_doc,
        select=select,
        after=after,
    ):
        with torch.inference_mode():  # per call: inference mode is thread-local and this may run in a reader thread
            _, cache = model.run_with_cache(batch.tokens.to(device), names_filter=names, stop_at_layer=stop)
            stacked = torch.stack([cache[n] for n in names], dim=2)  # [batch, pos, n_hooks, d]
            del cache
            keep = batch.row >= 0
            rows = stacked[keep.to(stacked.device)].float().cpu()
        starts = batch.start[:, None, :].expand(-1, keep.shape[1], 2)[keep]
        yield RowChunk(rows, batch.doc[keep], batch.row[keep], starts, batch.resume)


def rank_folder(out: str | os.PathLike, rank: int | None = None) -> Path:
    """Where one rank of a collection under ``torchrun`` writes its shards: ``out/rank_{rank:05d}``."""
    return Path(out) / f"rank_{_dist.rank() if rank is None else rank:05d}"


def _close(writer: StoreWriter, out: Any) -> ActivationStore:
    """Close the store; under torchrun wait for every rank, then rank 0 writes the merged manifest."""
    store = writer.close()
    if _dist.world_size() == 1:
        return store
    _dist.barrier()
    if _dist.rank() == 0:
        merge_rank_stores(out, [rank_folder(out, r) for r in range(_dist.world_size())])
    _dist.barrier()
    return ActivationStore.open(out)
