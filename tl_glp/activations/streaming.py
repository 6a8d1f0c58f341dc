"""``StreamingActivations``: run the model over a text stream while training consumes it.

No activation is ever written to disk and memory does not grow with the corpus: the source reads
documents lazily, runs one forward pass per ``forward_batch`` documents, keeps the same rows as
:func:`~tl_glp.collect_activations` (BOS, EOS and padding dropped; the code is shared), and mixes
them in a shuffle buffer of ``buffer_rows`` examples before handing out training batches.

Layout of the stream (document indices)::

    [0, val_end)          held out: the first ``val_rows`` rows form the validation set
    [val_end, warmup_end) the warm-up: the normaliser's mean/var come from its first ``warmup_rows`` rows
    [val_end, ...)        training (the warm-up documents are trained on too); under torchrun
                          rank r reads the documents whose index is r modulo the world size

``tl_glp.train(prior, stream, cfg, out_dir=...)`` needs nothing else (``cfg.max_steps`` must be
set: a stream has no length). A checkpoint records, for each rank, the next unread document and
the examples still held in the buffer (their document, position and hook), so a run killed at
any moment resumes without skipping a document or training on any example twice.

What is and is not bit-identical after a resume: the weights, optimizer, noise generator and the
buffer's shuffling generator are restored exactly, and the resumed run trains on exactly the
same examples in exactly the same order as an uninterrupted run. The held examples are recomputed
by re-running the model on their documents in forward batches grouped differently from the first
time, so their values can differ from the originals by float rounding (a matmul over a differently
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
    >>> batch.acts.shape, state.next_doc
    (torch.Size([16, 16]), 12)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from tl_glp.activations.collect import _hook_width, _special_ids, activation_rows
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
    """

    next_doc: int
    held: Tensor
    n_buffer: int
    emit_left: int
    rng: dict[str, Any]
    rank: int
    world: int

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
        context_size: documents are truncated to this many tokens (BOS included).
        forward_batch: documents per forward pass.
        buffer_rows: examples (row x hook) held in the shuffle buffer. Each round the buffer is
            filled, permuted, and its first half handed out; larger mixes more documents per batch.
        warmup_rows: rows whose mean and variance become the normaliser's statistics.
        val_rows: rows of the first documents held out for validation (never trained on); 0: none.
        skip_special_tokens: drop BOS, EOS and padding positions, as ``collect_activations``.
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
        self._validation: InMemoryActivations | None = None
        self._val_end: int | None = None
        self._stats: tuple[Tensor, Tensor] | None = None
        self.statistics_provenance: dict[str, Any] = {}

    # ------------------------------------------------------------------ reading documents
    def rows(
        self,
        start_doc: int = 0,
        *,
        rank: int = 0,
        world: int = 1,
        stop_doc: int | None = None,
        select: Callable[[int], bool] | None = None,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """``(rows [n, n_hooks, d], document of each row [n])`` per forward pass (see ``activation_rows``)."""
        data = self.data() if callable(self.data) else self.data
        return activation_rows(
            self.model,
            data,
            self.hook_names,
            context_size=self.context_size,
            batch_size=self.forward_batch,
            stop=self.stop,
            special=self.special,
            start_doc=start_doc,
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
            for rows, docs in self.rows(0):
                kept.append(rows)
                n += rows.shape[0]
                val_end = int(docs[-1]) + 1 if len(docs) else val_end + self.forward_batch
                if n >= self.val_rows:
                    break
            if n < self.val_rows:
                raise ValueError(
                    f"The stream holds only {n} rows, fewer than val_rows={self.val_rows} (plus a warm-up and training)."
                )
            self._validation = InMemoryActivations(
                torch.cat(kept)[: self.val_rows], self.hook_names, self.model_name, self.model_processing
            )
        stats = [RunningStats(self.d_input) for _ in self.hook_names]
        n, end = 0, val_end
        for rows, docs in self.rows(val_end):
            rows = rows[: self.warmup_rows - n]
            for h, s in enumerate(stats):
                s.update(rows[:, h])
            n += rows.shape[0]
            end = int(docs[-1]) + 1 if len(docs) else end
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
        cap = max(self.buffer_rows, 2 * batch_size)
        d = self.d_input
        buf = torch.empty(cap, d)
        ids = torch.empty(cap, 3, dtype=torch.long)  # document, row in document, hook
        if state is None:
            rng = np.random.default_rng([seed, rank, world])
            next_doc = self.first_train_doc + (rank - self.first_train_doc) % world
            fill = emit_pos = emit_end = 0
            pending_x, pending_id = torch.empty(0, d), torch.empty(0, 3, dtype=torch.long)
        else:
            rng = np.random.default_rng()
            rng.bit_generator.state = state.rng
            next_doc = state.next_doc
            held_x = self._recompute(state.held, rank, world)
            fill = state.n_buffer
            buf[:fill], ids[:fill] = held_x[:fill], state.held[:fill]
            emit_pos, emit_end = 0, state.emit_left
            pending_x, pending_id = held_x[fill:], state.held[fill:]
        incoming = self.rows(next_doc, rank=rank, world=world)
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
                        rows, docs = chunk
                        pending_x, pending_id = _examples(rows, docs)
                        if len(docs):
                            next_doc = int(docs[-1]) + world  # this rank's next document
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
                StreamState(next_doc, held, fill - emit_pos, emit_end - emit_pos, rng.bit_generator.state, rank, world),
            )

    def _recompute(self, held: Tensor, rank: int, world: int) -> Tensor:
        """The activations of the held examples, in order, by re-running the model on their documents."""
        if len(held) == 0:
            return torch.empty(0, self.d_input)
        wanted = set(held[:, 0].tolist())
        found: dict[tuple[int, int, int], Tensor] = {}
        for rows, docs in self.rows(
            min(wanted), rank=rank, world=world, stop_doc=max(wanted) + 1, select=wanted.__contains__
        ):
            x, key = _examples(rows, docs)
            for i, (doc, pos, hook) in enumerate(key.tolist()):
                found[(doc, pos, hook)] = x[i]
        missing = [k for k in map(tuple, held.tolist()) if k not in found]
        if missing:
            raise ValueError(
                f"Resuming the stream: {len(missing)} held examples (e.g. document {missing[0][0]}) are no longer in the "
                "data. The documents changed since the checkpoint; resume with the same data."
            )
        return torch.stack([found[k] for k in map(tuple, held.tolist())])


def _examples(rows: Tensor, docs: Tensor) -> tuple[Tensor, Tensor]:
    """Rows ``[n, n_hooks, d]`` -> examples ``[n * n_hooks, d]`` with ids ``[n * n_hooks, 3]`` (doc, row in doc, hook)."""
    n, n_hooks, d = rows.shape
    if n == 0:
        return rows.reshape(0, d), torch.empty(0, 3, dtype=torch.long)
    _, counts = torch.unique_consecutive(docs, return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    pos = torch.arange(n) - starts
    key = torch.stack(
        [docs.repeat_interleave(n_hooks), pos.repeat_interleave(n_hooks), torch.arange(n_hooks).repeat(n)], dim=1
    )
    return rows.reshape(n * n_hooks, d), key


__all__ = ["StreamBatch", "StreamState", "StreamingActivations"]
