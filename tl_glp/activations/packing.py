"""Packing: tokenised documents cut into full context windows, each starting with BOS.

This is the convention of SAE-Lens (``concat_and_batch_sequences`` with its default
``begin_batch_token="bos"`` and ``sequence_separator_token="bos"``) and, up to the separator, of
TransformerLens's ``utils.tokenize_and_concatenate`` (which joins documents with EOS): documents are
concatenated in order, a separator goes between two documents that share a window, and the stream
is cut into windows of ``context_size`` tokens, each opened by BOS. A document longer than the
room left continues at the start of the next window (after its BOS); no token is padded and none is
dropped. Every window is full except, possibly, the very last one of the stream (kept, shorter).

Each position of a window carries where it came from: the document index, the token's offset in
that document, and its *row*, the index among the document's kept tokens (``-1`` for the BOS and
separators that packing inserts, and for the document's own special tokens when those are skipped).
Rows are what :func:`~tl_glp.collect_activations` and :class:`~tl_glp.StreamingActivations` keep.

A window is a pure function of its start, the ``(document, offset)`` of its first document token:
packing restarted there yields the same window and every later one. The stream records that start
so that a resumed run rebuilds exactly the windows (and so the activations) of the first run.

Example:
    >>> docs = [(0, [10, 11, 12]), (1, [20, 21]), (2, [30, 31, 32, 33, 34])]
    >>> windows = list(pack_documents(docs, 5, bos=1, separator=1))
    >>> [w.tokens.tolist() for w in windows]
    [[1, 10, 11, 12, 1], [1, 20, 21, 1, 30], [1, 31, 32, 33, 34]]
    >>> windows[2].doc.tolist(), windows[2].offset.tolist(), windows[2].start
    ([-1, 2, 2, 2, 2], [-1, 1, 2, 3, 4], (2, 1))
    >>> [w.tokens.tolist() for w in pack_documents(docs[2:], 5, bos=1, separator=1, start=(2, 1))]
    [[1, 31, 32, 33, 34]]
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from tl_glp.core._tokens import context_limit, right_padded_tokens

TOKENIZE_CHUNK = 256
"""Documents handed to the tokenizer at once (one batched call is much faster than one per document)."""


class Window(NamedTuple):
    """One packed window: its tokens and, per position, where each token came from.

    ``doc`` and ``offset`` are ``-1`` at the BOS and separators packing inserts; ``row`` is ``-1``
    wherever no activation row is kept (those, and skipped special tokens inside a document).
    """

    tokens: Int[Tensor, " n"]
    doc: Int[Tensor, " n"]
    offset: Int[Tensor, " n"]
    row: Int[Tensor, " n"]

    @property
    def start(self) -> tuple[int, int]:
        """``(document, offset)`` of the window's first document token: packing restarted there rebuilds it."""
        return int(self.doc[1]), int(self.offset[1])

    @property
    def end(self) -> tuple[int, int]:
        """``(document, offset + 1)`` of the window's last document token."""
        real = torch.nonzero(self.doc >= 0)[-1, 0]
        return int(self.doc[real]), int(self.offset[real]) + 1


def bos_token_id(model: Any) -> int:
    """The model's BOS id, which opens every window and separates documents (SAE-Lens's default)."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(
            "Packing text needs the model's tokenizer (model.tokenizer is None). Pass token windows "
            "([n, context_size] tensors) instead, or load the model with its tokenizer."
        )
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        bos = getattr(tokenizer, "eos_token_id", None)
    if bos is None:
        raise ValueError(
            f"The tokenizer of {getattr(model.cfg, 'model_name', 'this model')} has neither a BOS nor an EOS token, "
            "so packed windows cannot be opened with one. Use packing=False (one padded document per row)."
        )
    return int(bos)


def document_tokens(model: Any, texts: Sequence[str]) -> list[list[int]]:
    """The tokens of each text without BOS or any other added special token (one batched tokenizer call)."""
    if not texts:
        return []
    ids = model.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [list(t) for t in ids]


def tokenized(model: Any, numbered: Iterable[tuple[int, str]]) -> Iterator[tuple[int, list[int]]]:
    """``(index, tokens)`` for ``(index, text)`` pairs, tokenised in chunks of :data:`TOKENIZE_CHUNK`."""
    chunk: list[tuple[int, str]] = []
    for item in numbered:
        chunk.append(item)
        if len(chunk) == TOKENIZE_CHUNK:
            yield from zip((i for i, _ in chunk), document_tokens(model, [t for _, t in chunk]))
            chunk = []
    yield from zip((i for i, _ in chunk), document_tokens(model, [t for _, t in chunk]))


def pack_documents(
    docs: Iterable[tuple[int, Sequence[int]]],
    context_size: int,
    *,
    bos: int,
    separator: int | None,
    special: Iterable[int] = (),
    start: tuple[int, int] | None = None,
) -> Iterator[Window]:
    """Pack ``(document index, tokens)`` pairs (tokens without BOS) into windows of ``context_size``.

    Args:
        docs: documents in stream order; empty ones are skipped.
        context_size: tokens per window, BOS included (>= 2).
        bos: the token that opens every window.
        separator: the token between two documents in one window (``None``: none). A separator that
            lands on a window's last position ends that window; the next document then opens the next
            window right after its BOS, as SAE-Lens does.
        special: token ids that become no row (their ``row`` is ``-1``; the document's rows skip them).
        start: ``(document, offset)``: the first document read begins at this token offset (a
            window's :attr:`Window.start`, to rebuild the stream from there). Its document index must
            be the first of ``docs``.

    The last window is yielded even when the documents run out before it is full, so every
    document token lands in exactly one window, in order.
    """
    if context_size < 2:
        raise ValueError(f"Packing needs context_size >= 2 (BOS plus one token), got {context_size}.")
    special_ids = np.array(sorted({int(s) for s in special}), dtype=np.int64)
    tok = np.empty(context_size, dtype=np.int64)
    doc = np.empty(context_size, dtype=np.int64)
    off = np.empty(context_size, dtype=np.int64)
    row = np.empty(context_size, dtype=np.int64)
    n = 0  # positions filled in the current window

    def emit() -> Window:
        return Window(*(torch.from_numpy(a[:n].copy()) for a in (tok, doc, off, row)))

    def put_inserted(token: int) -> None:
        nonlocal n
        tok[n], doc[n], off[n], row[n] = token, -1, -1, -1
        n += 1

    first = True
    for index, tokens in docs:
        t = np.asarray(tokens, dtype=np.int64).reshape(-1)
        o = 0
        if first and start is not None:
            if int(index) != start[0]:
                raise ValueError(f"pack_documents: start names document {start[0]} but the first document is {index}.")
            o = int(start[1])
        first = False
        if o >= len(t):
            continue
        kept = ~np.isin(t, special_ids) if len(special_ids) else np.ones(len(t), dtype=bool)
        rows = np.where(kept, np.cumsum(kept) - 1, -1)
        if n > 1 and separator is not None:  # another document already in this window
            put_inserted(separator)
            if n == context_size:
                yield emit()
                n = 0
        while o < len(t):
            if n == 0:
                put_inserted(bos)
            k = min(context_size - n, len(t) - o)
            tok[n : n + k], off[n : n + k], row[n : n + k] = t[o : o + k], np.arange(o, o + k), rows[o : o + k]
            doc[n : n + k] = index
            n, o = n + k, o + k
            if n == context_size:
                yield emit()
                n = 0
    if n > 1:
        yield emit()


# --------------------------------------------------------------------------- forward batches
class TokenBatch(NamedTuple):
    """One forward pass's input and, per position, the row it becomes.

    ``tokens``, ``doc`` and ``row`` are ``[batch, seq]`` (CPU); ``row`` is ``-1`` where no
    activation is kept (BOS, separators, padding, skipped special tokens). ``start`` is
    ``[batch, 2]``: each sequence's restart point ``(document, offset)``. ``resume`` is where this
    rank's stream continues after the batch: packing restarted there yields the next batch's windows.
    """

    tokens: Int[Tensor, "batch seq"]
    doc: Int[Tensor, "batch seq"]
    row: Int[Tensor, "batch seq"]
    start: Int[Tensor, "batch 2"]
    resume: tuple[int, int]


def token_batches(
    model: Any,
    data: Any,
    *,
    batch_size: int,
    context_size: int,
    packing: bool,
    special: set[int],
    start: tuple[int, int] = (0, 0),
    rank: int = 0,
    world: int = 1,
    stop_doc: int | None = None,
    select: Callable[[int], bool] | None = None,
    after: tuple[int, int] | None = None,
) -> Iterator[TokenBatch]:
    """Forward batches of this rank's documents (index ``% world == rank``) from ``start`` on.

    With ``packing`` (text only) each sequence is a packed :class:`Window`; otherwise one document
    per sequence, truncated to ``context_size`` and right-padded. A token tensor ``[n_docs, seq]`` is
    taken as given (its rows are already the sequences; no BOS is added).

    ``stop_doc`` ends the stream before that document; ``select(doc)`` keeps only the sequences
    holding a selected document; ``after = (doc, row)`` keeps only rows from that one on (sequences
    with none are not returned), which is how a resumed collection skips what it has stored.
    """
    if isinstance(data, Tensor):
        yield from _tensor_batches(data, batch_size, context_size, special, start[0], rank, world, stop_doc, select)
        return
    first = start[0] + (rank - start[0]) % world  # this rank's first document
    texts = itertools.islice(_texts(data), first, stop_doc)
    numbered = ((i, t) for i, t in enumerate(texts, start=first) if i % world == rank)
    if not packing:
        yield from _padded_batches(model, numbered, batch_size, context_size, special, world, select, after, start)
        return
    limit = context_limit(model, cap=context_size)
    bos = bos_token_id(model)
    read = [0]  # documents read (to tell an empty stream from one that is all special tokens)

    def counted() -> Iterator[tuple[int, str]]:
        for item in numbered:
            read[0] += 1
            yield item

    windows = pack_documents(
        tokenized(model, counted()), limit, bos=bos, separator=bos, special=special, start=start if start[1] else None
    )
    chunk: list[Window] = []
    for window in windows:
        if select is not None and not any(select(int(d)) for d in torch.unique(window.doc[window.doc >= 0])):
            continue
        if after is not None and _last_row(window) < after:
            continue
        chunk.append(window)
        if len(chunk) == batch_size:
            yield _stack(chunk, bos, after)
            chunk = []
    if chunk:
        yield _stack(chunk, bos, after)
    if read[0] == 0 and start == (0, 0):
        raise ValueError("The data holds no documents.")


def _last_row(window: Window) -> tuple[int, int]:
    rows = torch.nonzero(window.row >= 0)
    if len(rows) == 0:
        return (-1, -1)
    i = int(rows[-1, 0])
    return int(window.doc[i]), int(window.row[i])


def _stack(windows: Sequence[Window], pad: int, after: tuple[int, int] | None = None) -> TokenBatch:
    """Windows into one batch; a short (last) window is right-padded with ``pad``, which is no row."""
    seq = max(len(w.tokens) for w in windows)
    tokens = torch.full((len(windows), seq), pad, dtype=torch.long)
    doc = torch.full((len(windows), seq), -1, dtype=torch.long)
    row = torch.full((len(windows), seq), -1, dtype=torch.long)
    for i, w in enumerate(windows):
        tokens[i, : len(w.tokens)], doc[i, : len(w.tokens)], row[i, : len(w.tokens)] = w.tokens, w.doc, w.row
    starts = torch.tensor([w.start for w in windows], dtype=torch.long)
    batch = TokenBatch(tokens, doc, row, starts, windows[-1].end)
    return batch if after is None else _drop_before(batch, after)


def _padded_batches(
    model: Any,
    numbered: Iterator[tuple[int, str]],
    batch_size: int,
    context_size: int,
    special: set[int],
    world: int,
    select: Callable[[int], bool] | None,
    after: tuple[int, int] | None,
    start: tuple[int, int],
) -> Iterator[TokenBatch]:
    """One document per sequence (the model's own BOS rule), truncated and right-padded."""
    if select is not None:
        numbered = ((i, t) for i, t in numbered if select(i))
    seen_any = start[0] > 0
    while True:
        chunk = list(itertools.islice(numbered, batch_size))
        if not chunk:
            break
        seen_any = True
        ids = torch.tensor([i for i, _ in chunk])
        tokens, lengths = right_padded_tokens(model, [t for _, t in chunk], context_size)
        batch = _per_document(tokens, lengths, ids, special, world)
        if after is not None:
            batch = _drop_before(batch, after)
            if not bool((batch.row >= 0).any()):
                continue
        yield batch
    if not seen_any:
        raise ValueError("The data holds no documents.")


def _tensor_batches(
    data: Tensor,
    batch_size: int,
    context_size: int,
    special: set[int],
    skip_docs: int,
    rank: int,
    world: int,
    stop_doc: int | None,
    select: Callable[[int], bool] | None,
) -> Iterator[TokenBatch]:
    if data.ndim != 2:
        raise ValueError(f"A token tensor must be [n_docs, seq], got {tuple(data.shape)}.")
    if data.shape[0] == 0:
        raise ValueError("The token tensor holds no documents.")
    toks = data[:, :context_size]
    first = skip_docs + (rank - skip_docs) % world
    mine = torch.arange(first, toks.shape[0] if stop_doc is None else min(stop_doc, toks.shape[0]), world)
    if select is not None:
        mine = mine[[bool(select(int(i))) for i in mine]]
    for i in range(0, len(mine), batch_size):
        ids = mine[i : i + batch_size]
        batch = toks[ids].cpu()
        yield _per_document(batch, torch.full((batch.shape[0],), batch.shape[1]), ids, special, world)


def _per_document(tokens: Tensor, lengths: Tensor, ids: Tensor, special: set[int], world: int) -> TokenBatch:
    """A batch with one document per sequence: each document's rows are its kept positions, in order."""
    keep = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
    if special:
        keep &= ~torch.isin(tokens, torch.tensor(sorted(special)))
    row = torch.where(keep, torch.cumsum(keep.long(), 1) - 1, -1)
    doc = torch.where(keep, ids[:, None], -1)
    starts = torch.stack([ids, torch.zeros_like(ids)], 1)
    return TokenBatch(tokens, doc, row, starts, (int(ids[-1]) + world, 0))


def _drop_before(batch: TokenBatch, after: tuple[int, int]) -> TokenBatch:
    """The batch with the rows before ``(doc, row)`` made no rows."""
    early = (batch.doc < after[0]) | ((batch.doc == after[0]) & (batch.row < after[1]))
    return batch._replace(row=torch.where(early, -1, batch.row), doc=torch.where(early, -1, batch.doc))


def _texts(data: Any) -> Iterable[str]:
    if isinstance(data, str):
        return [data]
    if hasattr(data, "column_names") and "text" in (data.column_names or []):
        return (row["text"] for row in data)
    if isinstance(data, Iterable):
        return (t if isinstance(t, str) else _bad_item(t) for t in data)
    raise TypeError(
        f"Cannot read documents from a {type(data).__name__}: pass strings, a token tensor, HFText(...) or a datasets.Dataset."
    )


def _bad_item(item: Any) -> str:
    raise TypeError(f"Documents must be strings, got a {type(item).__name__}.")


__all__ = ["TokenBatch", "Window", "document_tokens", "pack_documents", "bos_token_id", "token_batches", "tokenized"]
