"""``StreamingActivations``: run the model over a text stream while training consumes it.

No activation is ever written to disk and memory does not grow with the corpus: the source reads
documents lazily, runs one forward pass per ``forward_batch`` documents, keeps the same rows as
:func:`~tl_glp.collect_activations` (BOS, EOS and padding dropped; the code is shared), and mixes
them in a shuffle buffer of ``buffer_rows`` examples before handing out training batches.

Layout of the stream (document indices)::

    [0, val_end)          held out: the first ``val_rows`` rows form the validation set (val_end is
                          the document after the one holding the last of them)
    [val_end, warmup_end) the warm-up: the normaliser's mean/var come from its first ``warmup_rows`` rows
    [val_end, ...)        training (the warm-up documents are trained on too); under torchrun
                          rank r reads the documents whose index is r modulo the world size

``tl_glp.train(prior, stream, cfg, out_dir=...)`` needs nothing else (``cfg.max_steps`` must be
set: a stream has no length). A checkpoint records, for each rank, where reading continues (a
document, and with packing the token offset in it), the examples still held in the buffer (their
document, position and hook) and the earliest packed window they came from, so a run killed at
any moment resumes without skipping a document or training on any example twice.

Text is packed by default (see :mod:`tl_glp.activations.packing`): full windows of
``context_size`` tokens, each opened by BOS, built from this rank's documents; the rows are the
same as :func:`~tl_glp.collect_activations`'s for the same documents and settings.

What is and is not bit-identical after a resume: the weights, optimizer, noise generator and the
buffer's shuffling generator are restored exactly, and the resumed run trains on exactly the
same examples in exactly the same order as an uninterrupted run. The held examples are recomputed
by re-running the model on their documents (re-packed into the same windows) in forward batches
grouped differently from the first time, so their values can differ from the originals by float rounding (a matmul over a differently
padded batch); on CPU with a fixed thread count they usually match to the bit. Nothing else differs.

Example (a tiny random model; two batches of 16 examples):
    >>> import torch
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> model = HookedTransformer(HookedTransformerConfig(n_layers=2, d_model=16, d_head=4, n_heads=4,
    ...     d_mlp=32, n_ctx=16, d_vocab=20, act_fn="gelu"))
    >>> docs = torch.randint(0, 20, (40, 8))
    >>> stream = StreamingActivations(model, docs, "blocks.0.hook_resid_post", buffer_rows=64,
    ...     warmup_rows=64, val_rows=16, forward_batch=4)
    >>> stream.mean.shape, len(stream.validation)
    (torch.Size([1, 16]), 16)
    >>> batches = stream.iter_batches(16, seed=0)
    >>> batch, state = next(batches)
    >>> batch.acts.shape, state.next_doc  # validation: documents 0-1; the first buffer: 2-9
    (torch.Size([16, 16]), 10)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from tl_glp.activations.collect import RowChunk, _hook_width, _special_ids, activation_rows
from tl_glp.activations.sources import ActivationSource, InMemoryActivations
from tl_glp.core import _compat
from tl_glp.core.stats import RunningStats


class StreamBatch(NamedTuple):
    """A training batch from a stream: activations ``[batch, d_input]``, the hook index of each
    example, and where each example came from (document index, row within the document's kept rows)."""

    acts: Tensor
    hook_idx: Tensor
    doc: Tensor
    pos: Tensor


@dataclass
class StreamState:
    """Where a stream stands right after a batch: enough to rebuild the rest of the stream exactly.

    ``held`` lists the examples not yet handed out, in buffer order (``[n, 3]``: document, row in
    document, hook); the first ``n_buffer`` are in the buffer, the rest wait to enter it.
    ``next_doc``/``next_offset`` is where reading continues (a packed window may stop inside a
    document); ``replay`` is the ``(document, offset)`` from which re-packing rebuilds the windows
    of every held example (the earliest of their windows' starts).
    """

    next_doc: int
    held: Tensor
    n_buffer: int
    emit_left: int
    rng: dict[str, Any]
    rank: int
    world: int
    next_offset: int = 0
    replay: tuple[int, int] | None = None
    packing: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what a checkpoint stores)."""
        docs = self.held[:, 0].tolist()
        return {
            "next_doc": self.next_doc,
            "held_docs": docs,
            "held_pos": self.held[:, 1].tolist(),
            "held_hooks": self.held[:, 2].tolist(),
            "n_buffer": self.n_buffer,
            "emit_left": self.emit_left,
            "rng": self.rng,
            "rank": self.rank,
            "world": self.world,
            "next_offset": self.next_offset,
            "replay": list(self.replay) if self.replay is not None else None,
            "packing": self.packing,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StreamState:
        held = torch.tensor([data["held_docs"], data["held_pos"], data["held_hooks"]], dtype=torch.long).T.reshape(
            -1, 3
        )
        return cls(
            int(data["next_doc"]),
            held,
            int(data["n_buffer"]),
            int(data["emit_left"]),
            data["rng"],
            int(data["rank"]),
            int(data["world"]),
            int(data.get("next_offset", 0)),
            tuple(data["replay"]) if data.get("replay") is not None else None,  # type: ignore[arg-type]
            bool(data.get("packing", False)),  # states written before packing existed were padded
        )


class StreamingActivations(ActivationSource):
    """Activations computed on the fly from a text stream, for :func:`tl_glp.train`.

    Args:
        model: a ``HookedTransformer`` or ``TransformerBridge`` (under torchrun: already on this rank's device).
        data: documents, re-readable: a list of strings, a token tensor ``[n_docs, seq]``, an
            :class:`~tl_glp.HFText`, a ``datasets`` dataset, or a zero-argument callable that
            returns a fresh iterable of strings. A one-shot iterator (a generator) is refused,
            because the validation set, the warm-up and a resume each read the stream again.
        hook_names: one hook or several (a multi-layer prior; one forward pass serves all).
        context_size: tokens per forward sequence (BOS included; at most the model's ``n_ctx``).
        forward_batch: sequences (packed windows, or documents) per forward pass.
        buffer_rows: examples (row x hook) held in the shuffle buffer. Each round the buffer is
            filled, permuted, and its first half handed out; larger mixes more documents per batch.
        warmup_rows: rows whose mean and variance become the normaliser's statistics.
        val_rows: rows of the first documents held out for validation (never trained on); 0: none.
        skip_special_tokens: drop BOS, EOS and padding positions, as ``collect_activations``.
        packing: pack the text into full windows of ``context_size`` tokens, each opened by BOS, as
            ``collect_activations`` does (the default; the rows are the same); ``False``: one
            right-padded document per sequence. Each rank packs its own documents.
    """

    is_streaming = True

    def __init__(
        self,
        model: Any,
        data: Any,
        hook_names: str | Sequence[str],
        *,
        context_size: int = 128,
        forward_batch: int = 32,
        buffer_rows: int = 65536,
        warmup_rows: int = 65536,
        val_rows: int = 4096,
        skip_special_tokens: bool = True,
        packing: bool = True,
    ) -> None:
        names = [hook_names] if isinstance(hook_names, str) else list(hook_names)
        if not names:
            raise ValueError("hook_names is empty: name at least one hook, e.g. 'blocks.6.hook_resid_post'.")
        for name, value in (
            ("forward_batch", forward_batch),
            ("buffer_rows", buffer_rows),
            ("warmup_rows", warmup_rows),
            ("context_size", context_size),
        ):
            if value < 1:
                raise ValueError(f"StreamingActivations: {name} must be >= 1, got {value}.")
        if val_rows < 0:
            raise ValueError(f"StreamingActivations: val_rows must be >= 0, got {val_rows}.")
        if not callable(data) and iter(data) is data:
            raise TypeError(
                "StreamingActivations reads its data more than once (validation, warm-up, resume), so a one-shot "
                "iterator cannot be used. Pass a list, HFText(...), a datasets.Dataset, or a zero-argument function "
                "that returns a fresh iterator, e.g. lambda: my_generator()."
            )
        for name in names:
            _compat.check_hook_name(model, name)
        self.model, self.data = model, data
        self.hook_names = names
        self.stop = _compat.stop_layer_for(names, model.cfg.n_layers)
        self.special = _special_ids(model) if skip_special_tokens else set()
        self.model_name = _compat.model_name_of(model)
        self.model_processing = _compat.model_processing(model)
        self.d_input = _hook_width(model, names, self.stop)
        self.context_size, self.forward_batch = context_size, forward_batch
        self.buffer_rows, self.warmup_rows, self.val_rows = buffer_rows, warmup_rows, val_rows
        self.skip_special_tokens = skip_special_tokens
        self.packing = packing and not isinstance(data, Tensor)
        self._validation: InMemoryActivations | None = None
        self._val_end: int | None = None
        self._stats: tuple[Tensor, Tensor] | None = None
        self.statistics_provenance: dict[str, Any] = {}

    # ------------------------------------------------------------------ reading documents
    def rows(
        self,
        start_doc: int = 0,
        *,
        start_offset: int = 0,
        rank: int = 0,
        world: int = 1,
        stop_doc: int | None = None,
        select: Callable[[int], bool] | None = None,
    ) -> Iterator[RowChunk]:
        """A :class:`~tl_glp.activations.collect.RowChunk` per forward pass (see ``activation_rows``),
        from token ``start_offset`` of document ``start_doc`` on (a packed window's restart point)."""
        data = self.data() if callable(self.data) else self.data
        return activation_rows(
            self.model,
            data,
            self.hook_names,
            context_size=self.context_size,
            batch_size=self.forward_batch,
            stop=self.stop,
            special=self.special,
            packing=self.packing,
            start=(start_doc, start_offset),
            rank=rank,
            world=world,
            stop_doc=stop_doc,
            select=select,
        )

    def _prepare(self) -> None:
        """Read the validation documents and the warm-up once (deterministic: every rank gets the same)."""
        if self._stats is not None:
            return
        val_end, kept = 0, []
        if self.val_rows:
            n = 0
            for chunk in self.rows(0):
                take = min(len(chunk.rows), self.val_rows - n)
                kept.append(chunk.rows[:take])
                n += take
                if n >= self.val_rows:  # training starts at the document after the last validation row's
                    val_end = int(chunk.doc[take - 1]) + 1
                    break
            if n < self.val_rows:
                raise ValueError(
                    f"The stream holds only {n} rows, fewer than val_rows={self.val_rows} (plus a warm-up and training)."
                )
            self._validation = InMemoryActivations(
                torch.cat(kept), self.hook_names, self.model_name, self.model_processing
            )
        stats = [RunningStats(self.d_input) for _ in self.hook_names]
        n, end = 0, val_end
        for chunk in self.rows(val_end):
            rows = chunk.rows[: self.warmup_rows - n]
            for h, s in enumerate(stats):
                s.update(rows[:, h])
            n += rows.shape[0]
            end = int(chunk.doc[len(rows) - 1]) + 1 if len(rows) else end
            if n >= self.warmup_rows:
                break
        if n == 0:
            raise ValueError("The stream holds no training rows after the validation documents.")
        self._val_end = val_end
        self._stats = (torch.stack([s.mean for s in stats]), torch.stack([s.var for s in stats]))
        self.statistics_provenance = {
            "kind": "streaming warm-up",
            "rows": n,
            "first_doc": val_end,
            "end_doc": end,
            "hook_names": list(self.hook_names),
        }

    @property
    def mean(self) -> Tensor:  # type: ignore[override]
        """Per-hook mean of the warm-up rows, ``[n_hooks, d_input]`` float64 (computed on first use)."""
        self._prepare()
        assert self._stats is not None
        return self._stats[0]

    @property
    def var(self) -> Tensor:  # type: ignore[override]
        """Per-hook population variance of the warm-up rows, ``[n_hooks, d_input]`` float64."""
        self._prepare()
        assert self._stats is not None
        return self._stats[1]

    @property
    def validation(self) -> InMemoryActivations | None:
        """The held-out rows (the first ``val_rows`` rows of the stream), or ``None`` with ``val_rows=0``."""
        self._prepare()
        return self._validation

    @property
    def first_train_doc(self) -> int:
        """Index of the first document trained on (the first one after the validation documents)."""
        self._prepare()
        assert self._val_end is not None
        return self._val_end

    def __len__(self) -> int:
        raise TypeError(
            "A StreamingActivations has no length: it reads documents as training asks. Set TrainConfig.max_steps."
        )

    def read_rows(self, rows: np.ndarray) -> Tensor:
        raise TypeError(
            "A StreamingActivations cannot be indexed by row; collect_activations(...) gives a store that can."
        )

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "stream",
            "d_input": self.d_input,
            "hook_names": self.hook_names,
            "model_name": self.model_name,
            "model_processing": self.model_processing,
            "context_size": self.context_size,
            "forward_batch": self.forward_batch,
            "buffer_rows": self.buffer_rows,
            "warmup_rows": self.warmup_rows,
            "val_rows": self.val_rows,
            "skip_special_tokens": self.skip_special_tokens,
            "packing": self.packing,
        }

    # ------------------------------------------------------------------ the shuffle buffer
    def iter_batches(
        self,
        batch_size: int,
        *,
        seed: int = 0,
        state: StreamState | dict[str, Any] | None = None,
        rank: int = 0,
        world: int = 1,
    ) -> Iterator[tuple[StreamBatch, StreamState]]:
        """Shuffled batches of ``batch_size`` examples from this rank's documents, each with the
        :class:`StreamState` right after it; ``state`` (from a checkpoint) continues a stream exactly.

        Ends when the documents run out (the last partial batch is dropped).
        """
        if isinstance(state, dict):
            state = StreamState.from_dict(state)
        if state is not None and (state.rank, state.world) != (rank, world):
            raise ValueError(
                f"This stream state belongs to rank {state.rank} of {state.world}, not rank {rank} of {world}: "
                "resume with the same number of processes."
            )
        if state is not None and state.packing != self.packing:
            raise ValueError(
                f"This stream state was written with packing={state.packing}, but this stream has packing={self.packing}: "
                f"resume with StreamingActivations(..., packing={state.packing})."
            )
        cap = max(self.buffer_rows, 2 * batch_size)
        d = self.d_input
        buf = torch.empty(cap, d)
        ids = torch.empty(cap, 5, dtype=torch.long)  # document, row in document, hook, its window's start (2)
        if state is None:
            rng = np.random.default_rng([seed, rank, world])
            next_doc, next_offset = self.first_train_doc + (rank - self.first_train_doc) % world, 0
            fill = emit_pos = emit_end = 0
            pending_x, pending_id = torch.empty(0, d), torch.empty(0, 5, dtype=torch.long)
        else:
            rng = np.random.default_rng()
            rng.bit_generator.state = state.rng
            next_doc, next_offset = state.next_doc, state.next_offset
            held_x, held_id = self._recompute(state.held, state.replay, rank, world)
            fill = state.n_buffer
            buf[:fill], ids[:fill] = held_x[:fill], held_id[:fill]
            emit_pos, emit_end = 0, state.emit_left
            pending_x, pending_id = held_x[fill:], held_id[fill:]
        incoming = self.rows(next_doc, start_offset=next_offset, rank=rank, world=world)
        exhausted = False
        while True:
            if emit_pos >= emit_end:  # a new round: keep the unsent tail, refill, permute, send the first half
                tail = fill - emit_end
                buf[:tail], ids[:tail] = buf[emit_end:fill].clone(), ids[emit_end:fill].clone()
                fill = tail
                while fill < cap:
                    if len(pending_x) == 0:
                        chunk = next(incoming, None)
                        if chunk is None:
                            exhausted = True
                            break
                        pending_x, pending_id = _examples(chunk)
                        next_doc, next_offset = chunk.resume  # where this rank's stream continues
                    k = min(cap - fill, len(pending_x))
                    buf[fill : fill + k], ids[fill : fill + k] = pending_x[:k], pending_id[:k]
                    pending_x, pending_id = pending_x[k:], pending_id[k:]
                    fill += k
                if fill < batch_size:
                    return
                perm = torch.from_numpy(rng.permutation(fill))
                buf[:fill], ids[:fill] = buf[perm], ids[perm]
                emit_pos, emit_end = 0, batch_size * ((fill if exhausted else fill // 2) // batch_size)
            sl = slice(emit_pos, emit_pos + batch_size)
            batch = StreamBatch(buf[sl].clone(), ids[sl, 2].clone(), ids[sl, 0].clone(), ids[sl, 1].clone())
            emit_pos += batch_size
            held = torch.cat([ids[emit_pos:fill], pending_id])
            yield (
                batch,
                StreamState(
                    next_doc,
                    held[:, :3],
                    fill - emit_pos,
                    emit_end - emit_pos,
                    rng.bit_generator.state,
                    rank,
                    world,
                    next_offset,
                    _earliest(held[:, 3:]),
                    self.packing,
                ),
            )

    def _recompute(self, held: Tensor, replay: tuple[int, int] | None, rank: int, world: int) -> tuple[Tensor, Tensor]:
        """The activations of the held examples, in order, and their ids ``[n, 5]``, by re-running the
        model on the sequences that held them (re-packed from ``replay``, the earliest window start)."""
        if len(held) == 0:
            return torch.empty(0, self.d_input), torch.empty(0, 5, dtype=torch.long)
        wanted = set(held[:, 0].tolist())
        start = replay if replay is not None else (min(wanted), 0)
        found: dict[tuple[int, int, int], tuple[Tensor, Tensor]] = {}
        for chunk in self.rows(
            start[0],
            start_offset=start[1],
            rank=rank,
            world=world,
            stop_doc=max(wanted) + 1,
            select=wanted.__contains__,
        ):
            x, key = _examples(chunk)
            for i, k in enumerate(key.tolist()):
                found[(k[0], k[1], k[2])] = (x[i], key[i])
        missing = [k for k in map(tuple, held.tolist()) if k not in found]
        if missing:
            raise ValueError(
                f"Resuming the stream: {len(missing)} held examples (e.g. document {missing[0][0]}) are no longer in the "
                "data. The documents changed since the checkpoint; resume with the same data."
            )
        pairs = [found[k] for k in map(tuple, held.tolist())]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def _examples(chunk: RowChunk) -> tuple[Tensor, Tensor]:
    """Rows ``[n, n_hooks, d]`` -> examples ``[n * n_hooks, d]`` with ids ``[n * n_hooks, 5]``
    (document, row in document, hook, and the start ``(document, offset)`` of the window it came from)."""
    rows = chunk.rows
    n, n_hooks, d = rows.shape
    if n == 0:
        return rows.reshape(0, d), torch.empty(0, 5, dtype=torch.long)
    key = torch.cat(
        [
            chunk.doc.repeat_interleave(n_hooks)[:, None],
            chunk.pos.repeat_interleave(n_hooks)[:, None],
            torch.arange(n_hooks).repeat(n)[:, None],
            chunk.start.repeat_interleave(n_hooks, dim=0),
        ],
        dim=1,
    )
    return rows.reshape(n * n_hooks, d), key


def _earliest(starts: Tensor) -> tuple[int, int] | None:
    """The lexicographically first ``(document, offset)`` among ``starts`` ``[n, 2]`` (``None`` if empty)."""
    if len(starts) == 0:
        return None
    doc = int(starts[:, 0].min())
    return doc, int(starts[starts[:, 0] == doc, 1].min())


__all__ = ["StreamBatch", "StreamState", "StreamingActivations"]
