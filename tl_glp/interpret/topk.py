"""Streaming top-k activations of every feature of any feature source, over a whole corpus.

:func:`top_activations` keeps, per feature, the ``k`` highest activations seen so far (and the ``k``
lowest where the unit is signed) with their document, position and the feature's activations on a
window of tokens around them. Each batch is merged into these buffers with one ``torch.topk`` over
the concatenation, so memory is ``O(k * n_features * window)`` whatever the corpus size. Alongside
it counts the activation density, a fixed-bin histogram, mean and standard deviation per feature,
and keeps a seeded random sample of token positions (negatives for detection scoring).

Ties are exact and deterministic: every candidate is ranked by one 64-bit key, the float's
order-preserving bit pattern in the high half and the (inverted) corpus position in the low half,
so among equal activations the earlier (document, position) wins and the result does not depend
on the batch size or on how ``torch.topk`` orders ties.

Example:
    >>> import torch
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> from tl_glp.probing import RawActivations
    >>> model = HookedTransformer(HookedTransformerConfig(n_layers=1, d_model=8, d_head=4, n_heads=2,
    ...     d_mlp=16, n_ctx=8, d_vocab=12, act_fn="gelu"))
    >>> tokens = torch.randint(0, 12, (10, 6), generator=torch.Generator().manual_seed(0))
    >>> res = top_activations(model, RawActivations(), tokens, hook_name="blocks.0.hook_resid_post", k=3, progress=False)
    >>> res.top.values.shape, res.bottom is not None        # raw dimensions are signed
    (torch.Size([8, 3]), True)
    >>> again = top_activations(model, RawActivations(), tokens, hook_name="blocks.0.hook_resid_post", k=3, batch_size=7, progress=False)
    >>> bool((res.top.doc == again.top.doc).all() and (res.top.pos == again.top.pos).all())
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from tl_glp.core import _compat
from tl_glp.core.prior import GenerativePrior
from tl_glp.interpret.dashboard import write_dashboards
from tl_glp.interpret.explain import to_neuronpedia
from tl_glp.interpret.features import is_signed, resolve_source, token_batches, tokenize
from tl_glp.interpret.histogram import HIST_DECADES, HIST_PER_DECADE, N_HIST_BINS, histogram_edges  # noqa: F401
from tl_glp.interpret.types import (  # noqa: F401  (Example, Tail and the file names: re-exported, importable from here as before)
    META_FILE,
    TENSORS_FILE,
    Example,
    Tail,
    TopActivationsData,
)
from tl_glp.probing.sources import FeatureSource, MetaNeurons, SAEFeatures

_INVALID = torch.iinfo(torch.int64).min
_LOW = 0xFFFFFFFF
_CHUNK = 32
"""Rows per chunk of the top-k pre-selection (see :meth:`_TailBuffer.merge`)."""


def order_keys(values: Tensor, position: Tensor) -> Tensor:
    """64-bit keys whose order is (value, then position reversed): the larger key is the larger
    value, and among equal values the earlier position; NaN gets the lowest key.

    ``position`` (non-negative, < 2**32) broadcasts against ``values``.
    """
    x = values.float() + 0.0  # -0.0 + 0.0 == +0.0: the two zeros tie, as they compare equal
    bits = x.view(torch.int32)
    ordered = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).long()
    key = (ordered << 32) | (_LOW - position.long())
    return torch.where(torch.isnan(x), torch.full_like(key, _INVALID), key)


def decode_keys(keys: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`order_keys`: ``(values, positions)``; invalid keys give ``(nan, -1)``."""
    ordered = (keys >> 32).to(torch.int32)
    bits = torch.where(ordered >= 0, ordered, ordered ^ 0x7FFFFFFF)
    values = bits.view(torch.float32).clone()
    positions = _LOW - (keys & _LOW)
    invalid = keys == _INVALID
    values[invalid] = float("nan")
    positions[invalid] = -1
    return values, positions


class TopActivations(TopActivationsData):
    """Result of :func:`top_activations`: the data (:class:`~tl_glp.interpret.types.TopActivationsData`:
    tails, statistics, ``examples``, ``score``, ``save``/``load``) and its views."""

    # ------------------------------------------------------------------ views
    def to_html(self, folder: str | Path, **kwargs: Any) -> Path:
        """Self-contained HTML dashboards: see :func:`tl_glp.interpret.dashboard.write_dashboards`."""

        return write_dashboards(self, folder, **kwargs)

    def to_neuronpedia(self, path: str | Path, **kwargs: Any) -> Path:
        """Neuronpedia-style JSON: see :func:`tl_glp.interpret.explain.to_neuronpedia`."""

        return to_neuronpedia(self, path, **kwargs)


class _TailBuffer:
    """Per-feature running top-k of int64 keys, with the feature's activations around each entry."""

    def __init__(self, n_features: int, k: int, width: int, largest: bool, device: torch.device) -> None:
        self.largest = largest
        self.keys = torch.full((n_features, k), _INVALID, dtype=torch.int64, device=device)
        self.context = torch.full((n_features, k, width), float("nan"), device=device)
        self.kth = torch.full((n_features,), float("-inf"), device=device)
        """Each feature's k-th (signed) value; a batch whose best value is not above it cannot enter."""

    def merge(self, cols: slice, xt: Tensor, position: Tensor, windows: Tensor) -> None:
        """Merge one batch into feature columns ``cols``.

        ``xt`` is ``[n_cols, n_rows]`` (one column per real token of the batch), ``position`` the
        rows' corpus positions ``[n_rows]``, ``windows`` ``[n_rows, W]`` the row index of each
        row's window token (-1 outside the document or at a special token).

        Two exact shortcuts keep this cheap. (1) A feature whose best value in the batch is not
        strictly above its current k-th entry cannot change (ties lose: they come later). (2) The
        rows are cut into chunks of :data:`_CHUNK`; a feature's k best values lie in its k best
        chunks (by chunk extreme), since any value outside them has k chunk extremes above it. So
        the top-k runs over those ``k * _CHUNK`` candidates instead of every row. Where the k-th
        and (k+1)-th chunk extremes tie, or NaN shows up, the feature takes the full path.
        """
        c, n = xt.shape
        n_chunks = n // _CHUNK
        n_full = n_chunks * _CHUNK
        reduce = torch.amax if self.largest else torch.amin
        chunk_ext = reduce(xt[:, :n_full].view(c, n_chunks, _CHUNK), 2) if n_chunks else xt[:, :0]
        extreme = reduce(xt, 1) if n_full < n or not n_chunks else reduce(chunk_ext, 1)
        if n_full < n and n_chunks:
            extreme = (
                torch.maximum(extreme, reduce(chunk_ext, 1))
                if self.largest
                else torch.minimum(extreme, reduce(chunk_ext, 1))
            )
        best = extreme if self.largest else -extreme
        live = ((best > self.kth[cols]) | torch.isnan(best)).nonzero().squeeze(1)
        if live.numel() == 0:
            return
        kk = min(self.keys.shape[1], n)
        if n_chunks <= 2 * kk:  # too few chunks for the pre-selection to pay: every row is a candidate
            self._update(cols, xt, live, xt if live.numel() == c else xt[live], None, position, windows)
            return
        ext = chunk_ext[live]
        sel = torch.topk(ext, kk + 1, dim=1, largest=self.largest)
        exact = (sel.values[:, kk - 1] != sel.values[:, kk]) & ~torch.isnan(ext).any(1)
        fast, slow = exact.nonzero().squeeze(1), (~exact).nonzero().squeeze(1)
        if fast.numel():
            rows, chunks = live[fast], sel.indices[fast, :kk]
            rowmap = (chunks[:, :, None] * _CHUNK + torch.arange(_CHUNK, device=xt.device)).reshape(len(fast), -1)
            vals = (
                xt[:, :n_full].view(c, n_chunks, _CHUNK)[rows[:, None], chunks].reshape(len(fast), -1)
            )  # whole chunks: a block copy
            if n_full < n:  # the last, partial chunk is always a candidate
                rowmap = torch.cat([rowmap, torch.arange(n_full, n, device=xt.device).expand(len(fast), -1)], dim=1)
                vals = torch.cat([vals, xt[rows, n_full:]], dim=1)
            self._update(cols, xt, rows, vals, rowmap, position, windows)
        if slow.numel():
            self._update(cols, xt, live[slow], xt[live[slow]], None, position, windows)

    def _update(
        self,
        cols: slice,
        xt: Tensor,
        ix: Tensor,
        vals: Tensor,
        rowmap: Tensor | None,
        position: Tensor,
        windows: Tensor,
    ) -> None:
        """Merge the candidates ``vals`` ``[m, n_cand]`` of rows ``ix`` of ``xt``; ``rowmap`` gives
        each candidate's column in ``xt`` (``None``: the candidates are all of ``xt``'s columns)."""
        k = self.keys.shape[1]
        n = vals.shape[1]
        kk = min(k, n)
        extra = 1 if n > kk else 0
        tv, ti = torch.topk(vals, kk + extra, dim=1, largest=self.largest)  # fast float top-k
        signed = tv if self.largest else -tv
        rows = ti[:, :kk] if rowmap is None else torch.gather(rowmap, 1, ti[:, :kk])
        keys = order_keys(signed[:, :kk], position[rows])
        # the float top-k is exact unless a tie straddles its boundary (or NaN shows up): redo
        # those features with the 64-bit keys, which order ties by corpus position
        redo = torch.isnan(signed).any(dim=1)
        if extra:
            redo |= signed[:, kk - 1] == signed[:, kk]
        if bool(redo.any()):
            idx = redo.nonzero().squeeze(1)
            cand_pos = position[None] if rowmap is None else position[rowmap[idx]]
            exact = torch.topk(order_keys(vals[idx] if self.largest else -vals[idx], cand_pos), kk, dim=1)
            keys[idx] = exact.values
            rows[idx] = exact.indices if rowmap is None else torch.gather(rowmap[idx], 1, exact.indices)
        feats = ix + cols.start
        # only features whose best new candidate beats their current k-th entry change
        change = (keys[:, 0] > self.keys[feats, -1]).nonzero().squeeze(1)
        if change.numel() == 0:
            return
        keys, rows, feats = keys[change], rows[change], feats[change]
        win = windows[rows]  # [n_changed, kk, W]
        # read the windows straight out of xt (indexing xt[rows] first would copy whole rows)
        ctx = torch.take(xt, ix[change, None, None] * xt.shape[1] + win.clamp_min(0))
        ctx = torch.where(win >= 0, ctx, torch.full_like(ctx, float("nan")))
        all_keys = torch.cat([self.keys[feats], keys], dim=1)
        all_ctx = torch.cat([self.context[feats], ctx], dim=1)
        top = torch.topk(all_keys, k, dim=1)
        self.keys[feats] = top.values
        kth, _ = decode_keys(top.values[:, -1])
        self.kth[feats] = torch.nan_to_num(kth, nan=float("-inf"))
        self.context[feats] = torch.gather(all_ctx, 1, top.indices[..., None].expand(-1, -1, all_ctx.shape[-1]))


def top_activations(
    model: Any,
    source: FeatureSource | str,
    texts: Sequence[str] | Tensor,
    *,
    hook_name: str | None = None,
    prior: GenerativePrior | None = None,
    k: int = 20,
    batch_size: int = 32,
    context_size: int = 128,
    context: tuple[int, int] = (12, 4),
    signed: bool | None = None,
    density_threshold: float = 0.0,
    n_random: int = 100,
    seed: int = 0,
    histogram_sample: float = 0.1,
    feature_chunk: int = 8192,
    progress: bool = True,
) -> TopActivations:
    """The ``k`` top-activating (document, position) pairs of every feature of ``source`` over ``texts``.

    Args:
        model: a TransformerLens model (``HookedTransformer`` or ``TransformerBridge``).
        source: a :class:`~tl_glp.probing.sources.FeatureSource` (``MetaNeurons(prior)``,
            ``SAEFeatures(sae)``, ``RawActivations()``, ``MLPNeurons()`` ...) or a short name.
        texts: documents (strings) or a token tensor ``[n_docs, seq]``.
        hook_name: the hook the source reads (default: the prior's or the SAE's own hook).
        k: examples kept per feature and tail.
        batch_size: documents per forward pass; the result does not depend on it.
        context_size: tokens per document (BOS included); longer documents are truncated.
        context: ``(left, right)`` tokens of each example's window whose activations are kept.
        signed: also track the lowest ``k`` (default: :func:`~tl_glp.interpret.features.is_signed`).
        density_threshold: a token "fires" when its activation exceeds this (and, signed, when it
            is below minus this, counted separately).
        n_random: random token positions kept (seeded by ``seed``), e.g. as negatives for
            detection scoring; their activations of every feature are kept too.
        seed: seed of the random positions. Meta-neuron noise uses ``source.seed`` and the
            document index (see :func:`~tl_glp.interpret.features.document_seed`).
        histogram_sample: share of tokens (a seeded per-token draw, the same in any batching)
            whose activations enter the histograms; 1.0 counts every token. Density, mean and
            std always use every token.
        feature_chunk: features merged at once (bounds the temporary memory on wide sources).
        progress: show a tqdm bar (documents).
    """
    src = resolve_source(source, prior)
    hook = hook_name or _default_hook(src)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    left, right = context
    if left < 0 or right < 0:
        raise ValueError(f"context must be two non-negative token counts, got {context}.")
    docs = tokenize(model, texts, context_size)
    seq_stride = max(len(d) for d in docs)
    if len(docs) * seq_stride >= 2**32:
        raise ValueError(f"{len(docs)} documents x {seq_stride} tokens exceed 2**32 positions; split the corpus.")
    track_bottom = is_signed(src) if signed is None else bool(signed)
    offsets_cpu = torch.arange(-left, right + 1)

    bar = tqdm(total=len(docs), disable=not progress, desc=f"top activations ({src.name})", unit="doc")
    state: dict[str, Any] = {}
    n_tokens = 0
    for batch in token_batches(
        model, src, docs, hook, batch_size=batch_size, context_size=context_size, keep_on_device=True, reuse_buffer=True
    ):
        rows = batch.rows  # [n_valid, F]: the real tokens only
        dev = rows.device
        n_feat = rows.shape[1]
        if not state:
            state = _init_state(n_feat, k, left + right + 1, track_bottom, n_random, dev)
        b, seq = batch.tokens.shape
        # row index of every (document, position) of the batch, -1 where not a real token
        row_of = torch.full((b, seq), -1, dtype=torch.int64)
        row_of[batch.valid] = torch.arange(rows.shape[0])
        doc_of, pos_of = batch.valid.nonzero(as_tuple=True)
        win_pos = pos_of[:, None] + offsets_cpu
        inside = (win_pos >= 0) & (win_pos < seq)
        windows = torch.where(inside, row_of[doc_of[:, None].expand_as(win_pos), win_pos.clamp(0, seq - 1)], -1).to(dev)
        position = (batch.doc_ids[doc_of] * seq_stride + pos_of).to(dev)
        prio = _priorities(batch, seq_stride, seed).to(dev)
        sample = prio < histogram_sample
        for start in range(0, n_feat, feature_chunk):
            cols = slice(start, min(n_feat, start + feature_chunk))
            part = rows[:, cols].T  # [c, n]: reductions run along the last dimension
            xt = part if part.is_contiguous() else _scratch(state, "xt", part.shape, dev).copy_(part)
            state["top"].merge(cols, xt, position, windows)
            # comparisons written as 0/1 floats into a reused buffer: summing floats is ~4x faster
            # than summing bools, exact (a batch has far fewer than 2**24 rows), and a fresh big
            # allocation per batch costs more than the math
            flags = _scratch(state, "flags", xt.shape, dev)
            state["fire"][cols] += torch.gt(xt, density_threshold, out=flags).sum(1).long()
            if track_bottom:
                state["bottom"].merge(cols, xt, position, windows)
                state["fire_neg"][cols] += torch.lt(xt, -density_threshold, out=flags).sum(1).long()
            state["sum"][cols] += xt.sum(1).double()  # float32 within a batch, float64 across batches
            state["sumsq"][cols] += torch.linalg.vector_norm(xt, dim=1).double() ** 2
            if bool(sample.any()):
                picked = xt[:, sample]
                bins = (torch.bucketize(picked, state["edges"], right=True) - 1).clamp_(
                    0, N_HIST_BINS - 1
                ) + torch.arange(picked.shape[0], device=dev)[:, None] * N_HIST_BINS
                state["hist"][cols] += torch.bincount(
                    bins.reshape(-1), minlength=picked.shape[0] * N_HIST_BINS
                ).reshape(-1, N_HIST_BINS)
        n_tokens += rows.shape[0]
        state["hist_tokens"] += int(sample.sum())
        _merge_random(state, rows, prio, position, n_random)
        bar.update(b)
    bar.close()
    if n_tokens == 0:
        raise ValueError("The corpus holds no real tokens (only special tokens or padding).")
    return _finish(
        state,
        model,
        src,
        hook,
        docs,
        seq_stride,
        k,
        context,
        n_tokens,
        track_bottom,
        {
            "batch_size": batch_size,
            "context_size": context_size,
            "density_threshold": density_threshold,
            "seed": seed,
            "histogram_sample": histogram_sample,
            "histogram_tokens": state["hist_tokens"],
            "source_seed": getattr(src, "seed", None),
            "source_t": getattr(src, "t", None),
            "model_name": _compat.model_name_of(model),
        },
    )


def _default_hook(src: FeatureSource) -> str:
    if isinstance(src, MetaNeurons):
        names = getattr(src.prior.cfg, "hook_names", None) or []
        if len(names) == 1:
            return names[0]
    if isinstance(src, SAEFeatures) and src.sae_hook():
        return str(src.sae_hook())
    raise ValueError(f"Pass hook_name=...: the {src.name!r} source does not say which hook it reads.")


def _init_state(n_feat: int, k: int, width: int, bottom: bool, n_random: int, dev: torch.device) -> dict[str, Any]:
    edges = histogram_edges().float()
    edges[0], edges[-1] = -math.inf, math.inf  # values beyond +-1e4 land in the outermost bins
    return {
        "top": _TailBuffer(n_feat, k, width, True, dev),
        "bottom": _TailBuffer(n_feat, k, width, False, dev) if bottom else None,
        "fire": torch.zeros(n_feat, dtype=torch.int64, device=dev),
        "fire_neg": torch.zeros(n_feat, dtype=torch.int64, device=dev),
        "sum": torch.zeros(n_feat, dtype=torch.float64, device=dev),
        "sumsq": torch.zeros(n_feat, dtype=torch.float64, device=dev),
        "hist": torch.zeros(n_feat, N_HIST_BINS, dtype=torch.int64, device=dev),
        "hist_tokens": 0,
        "edges": edges.to(dev),
        "rand_keys": torch.full((n_random,), _INVALID, dtype=torch.int64, device=dev),
        "rand_values": torch.full((n_random, n_feat), float("nan"), device=dev),
    }


def _scratch(state: dict[str, Any], name: str, shape: torch.Size, dev: torch.device) -> Tensor:
    """A reusable float buffer of ``shape`` (grown when needed, never shrunk)."""
    n = math.prod(shape)
    buf = state.get(name)
    if buf is None or buf.numel() < n:
        buf = state[name] = torch.empty(n, device=dev)
    return buf[:n].view(shape)


def _priorities(batch: Any, stride: int, seed: int) -> Tensor:
    """A seeded uniform number per real token, drawn per document (so independent of batching)."""
    rand = [
        torch.rand(stride, generator=torch.Generator().manual_seed(seed * 7919 + int(d) + 1)) for d in batch.doc_ids
    ]
    return torch.stack(rand)[:, : batch.tokens.shape[1]][batch.valid]


def _merge_random(state: dict[str, Any], rows: Tensor, prio: Tensor, position: Tensor, n_random: int) -> None:
    """Keep the ``n_random`` real tokens with the highest priority, and their features."""
    if n_random == 0:
        return
    keys = order_keys(prio, position)
    best = torch.topk(keys, min(n_random, len(keys)))
    all_keys = torch.cat([state["rand_keys"], best.values])
    all_values = torch.cat([state["rand_values"], rows[best.indices].float()])
    top = torch.topk(all_keys, n_random)  # the buffer holds n_random entries, so there are enough
    state["rand_keys"], state["rand_values"] = top.values, all_values[top.indices]


def _finish(
    state: dict[str, Any],
    model: Any,
    src: FeatureSource,
    hook: str,
    docs: list[Tensor],
    stride: int,
    k: int,
    context: tuple[int, int],
    n_tokens: int,
    bottom: bool,
    settings: dict[str, Any],
) -> TopActivations:
    def tail(buf: _TailBuffer, sign: float) -> Tail:
        values, position = decode_keys(buf.keys.cpu())
        doc = torch.where(position >= 0, position // stride, -1)
        pos = torch.where(position >= 0, position % stride, -1)
        return Tail(values * sign, doc, pos, buf.context.cpu())

    top = tail(state["top"], 1.0)
    low = tail(state["bottom"], -1.0) if bottom else None  # its keys rank -activation
    _, rand_position = decode_keys(state["rand_keys"].cpu())
    keep = rand_position >= 0
    rand_position = rand_position[keep]
    mean = (state["sum"] / n_tokens).float().cpu()
    var = (state["sumsq"] / n_tokens - (state["sum"] / n_tokens) ** 2).clamp_min(0)
    referenced = set(top.doc[top.doc >= 0].tolist()) | set((rand_position // stride).tolist())
    if low is not None:
        referenced |= set(low.doc[low.doc >= 0].tolist())
    doc_tokens = {d: docs[d].tolist() for d in sorted(referenced)}
    vocab, sep = _vocab(model, doc_tokens)
    return TopActivations(
        source=src.name,
        hook_name=hook,
        k=k,
        context=context,
        n_docs=len(docs),
        n_tokens=n_tokens,
        top=top,
        bottom=low,
        density=(state["fire"].double() / n_tokens).float().cpu(),
        density_negative=(state["fire_neg"].double() / n_tokens).float().cpu() if bottom else None,
        mean=mean,
        std=var.sqrt().float().cpu(),
        histogram=state["hist"].cpu(),
        random_doc=rand_position // stride,
        random_pos=rand_position % stride,
        random_values=state["rand_values"][keep.to(state["rand_values"].device)].cpu(),
        doc_tokens=doc_tokens,
        vocab=vocab,
        token_sep=sep,
        settings=settings,
    )


def _vocab(model: Any, doc_tokens: dict[int, list[int]]) -> tuple[dict[int, str], str]:
    """Display strings of every token id used, and the separator to put between tokens
    (a space for word-level tokenizers whose tokens carry no leading whitespace)."""
    ids = sorted({t for toks in doc_tokens.values() for t in toks})
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return {i: f"<{i}>" for i in ids}, " "
    vocab = {i: tokenizer.decode([i]) for i in ids}
    sep = ""
    for toks in doc_tokens.values():
        if len(toks) >= 3:
            a, b = toks[-2], toks[-1]
            joined = tokenizer.decode([a, b])
            if joined != vocab[a] + vocab[b] and joined == vocab[a] + " " + vocab[b]:
                sep = " "
            break
    return vocab, sep


def brute_force_top(
    features: Float[Tensor, "n_tokens n_features"], doc: Int[Tensor, " n_tokens"], pos: Int[Tensor, " n_tokens"], k: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Reference top-k by a full sort (value descending, then earlier document and position): the
    test oracle for :func:`top_activations`. Returns ``(values, doc, pos)``, each ``[n_features, k]``."""
    n, n_feat = features.shape
    values = torch.full((n_feat, k), float("nan"))
    docs = torch.full((n_feat, k), -1, dtype=torch.int64)
    poss = torch.full((n_feat, k), -1, dtype=torch.int64)
    for f in range(n_feat):
        order = sorted(range(n), key=lambda i: (-float(features[i, f]), int(doc[i]), int(pos[i])))[:k]
        m = len(order)
        values[f, :m] = features[order, f]
        docs[f, :m] = doc[order]
        poss[f, :m] = pos[order]
    return values, docs, poss
