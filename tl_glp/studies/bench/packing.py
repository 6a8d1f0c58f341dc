"""``bench_packing``: how close the stream of activation rows comes to the bare forward pass, packed vs padded.

Measured side by side in one process, in interleaved rounds (forward, padded stream, packed stream,
then again), after one untimed warm-up of each; medians:

- ``forward_tokens_per_s``: the model alone, up to the hook's layer (``run_with_cache`` with
  ``stop_at_layer``), on full packed windows ``[forward_batch, context_size]`` of the same texts;
- ``packed_rows_per_s`` / ``padded_rows_per_s``: training rows through
  :class:`~tl_glp.StreamingActivations` (``iter_batches``: tokenising, packing or padding, the
  forward pass, dropping BOS, separators and padding, the shuffle buffer), in steady state: the
  rows of forward batches 2 to ``batches + 1`` over the time between the first and the last
  (the buffer's first fill and the rows still held at the end do not skew a short run);
- ``ratio_packed`` / ``ratio_padded``: the medians of those rates over the forward's median token
  rate, and (``..._within_rounds``) the median of the ratios within each round, which a shared
  machine's changing load disturbs less. The target for packing is >= 0.8; its ceiling is
  ``packed_real_token_share``, the share of a packed window's positions that are rows (all but the
  BOS and the separators); a ratio above it is timing noise;
- ``padded_real_token_share``: the share of the positions run that are rows when one document is
  padded per sequence (what padding wastes on these texts).

The machine's load average (1 minute) is printed before and after: the rates are only comparable
within one run, which is why the three are interleaved.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch

from tl_glp.activations.collect import _special_ids
from tl_glp.activations.packing import token_batches
from tl_glp.activations.streaming import StreamingActivations
from tl_glp.core import _compat
from tl_glp.core._tokens import context_limit, model_device
from tl_glp.studies.reporting import print_figures


def bench_texts(kind: Literal["testbed", "sae-probes"], n: int = 20_000) -> list[str]:
    """The benchmark's documents: the testbed language's texts, or the offline corpus's training side
    (the SAE-Probes texts, deduplicated; see :func:`tl_glp.corpora.sae_probes_corpus`)."""
    if kind == "testbed":
        from tl_glp.studies.testbed import load

        return load(progress=False).language.sample_texts(n, seed=0)
    from tl_glp.corpora import sae_probes_corpus

    return sae_probes_corpus(seed=0).train[:n]


def bench_packing(
    model: Any,
    texts: Sequence[str],
    *,
    hook: str | None = None,
    context_size: int = 128,
    forward_batch: int = 16,
    batch_size: int = 256,
    batches: int = 3,
    rounds: int = 3,
    verbose: bool = True,
) -> dict[str, float]:
    """Streaming rows/s (packed and padded) against the bare forward's tokens/s on ``model``.

    Args:
        model: a TransformerLens model with a tokenizer.
        texts: the documents (enough for ``batches + 2`` forward batches when padded, plus the warm-ups).
        hook: the hook (default: the middle layer's ``hook_resid_post``).
        context_size: tokens per forward sequence.
        forward_batch: sequences per forward pass.
        batch_size: rows per training batch the stream hands out.
        batches: forward batches per timed measurement (for the streams: after their first one, whose
            time includes filling the buffer).
        rounds: interleaved rounds; the figures are medians over them.
        verbose: print the table and the load average.
    """
    hook = hook or f"blocks.{model.cfg.n_layers // 2}.hook_resid_post"
    names = [hook]
    stop = _compat.stop_layer_for(names, model.cfg.n_layers)
    special = _special_ids(model)
    device = model_device(model)
    texts = list(texts)
    load_before = os.getloadavg()[0]
    full = (forward_batch, context_limit(model, cap=context_size))
    windows: list[torch.Tensor] = []
    kept = []
    for batch in token_batches(
        model, texts, batch_size=forward_batch, context_size=context_size, packing=True, special=special
    ):
        if tuple(batch.tokens.shape) == full:
            windows.append(batch.tokens)
            kept.append(batch)
        if len(windows) == batches:
            break
    if len(windows) < batches:
        raise ValueError(
            f"The texts fill {len(windows)} forward batches of {full[0]} windows of {full[1]} tokens, fewer than "
            f"batches={batches}: pass more texts."
        )
    n_forward_tokens = sum(w.numel() for w in windows)
    packed_share = sum(int((b.row >= 0).sum()) for b in kept) / n_forward_tokens
    padded = list(
        token_batches(
            model, texts[:2000], batch_size=forward_batch, context_size=context_size, packing=False, special=special
        )
    )
    real_share = sum(int((b.row >= 0).sum()) for b in padded) / sum(b.tokens.numel() for b in padded)

    def forward(limit: int | None = None) -> float:
        tick = time.perf_counter()
        with torch.inference_mode():
            for tokens in windows[:limit]:
                _, cache = model.run_with_cache(tokens.to(device), names_filter=names, stop_at_layer=stop)
                del cache
        return n_forward_tokens / (time.perf_counter() - tick) if limit is None else 0.0

    def stream(packing: bool, n_batches: int = batches) -> float:
        source = StreamingActivations(
            model,
            texts,
            names,
            context_size=context_size,
            forward_batch=forward_batch,
            buffer_rows=2 * batch_size,
            warmup_rows=batch_size,
            val_rows=0,
            packing=packing,
        )
        _ = source.mean  # the warm-up (the normaliser's statistics): untimed
        marks: list[tuple[float, int]] = []  # (time, rows) as each forward batch's rows come out
        read = source.rows

        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for chunk in read(*args, **kwargs):
                marks.append((time.perf_counter(), len(chunk.rows)))
                yield chunk

        source.rows = timed  # type: ignore[method-assign]
        for _batch in source.iter_batches(batch_size, seed=0):
            if len(marks) > n_batches:
                break
        if len(marks) <= n_batches:
            raise ValueError(f"The texts gave only {len(marks)} forward batches: pass more texts or lower batches.")
        # steady state: between the first and the last mark the stream ran forward batches 2..n+1 and handed
        # out the rows of the ones before, so the rate counts every step of the pipeline once
        return sum(r for _, r in marks[1 : n_batches + 1]) / (marks[n_batches][0] - marks[0][0])

    forward(limit=1)  # untimed warm-ups: first-call costs stay out
    stream(True, 1)
    stream(False, 1)
    rates: dict[str, list[float]] = {"forward": [], "packed": [], "padded": []}
    for _ in range(rounds):
        rates["forward"].append(forward())
        rates["packed"].append(stream(True))
        rates["padded"].append(stream(False))
    med = {k: statistics.median(v) for k, v in rates.items()}
    out = {
        "forward_tokens_per_s": med["forward"],
        "packed_rows_per_s": med["packed"],
        "padded_rows_per_s": med["padded"],
        "ratio_packed": med["packed"] / med["forward"],
        "ratio_padded": med["padded"] / med["forward"],
        "packed_vs_padded": med["packed"] / med["padded"],
        "ratio_packed_within_rounds": _median_ratio(rates["packed"], rates["forward"]),
        "ratio_padded_within_rounds": _median_ratio(rates["padded"], rates["forward"]),
        "packed_real_token_share": packed_share,
        "padded_real_token_share": real_share,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }
    if verbose:
        print(
            f"bench packing: model {_compat.model_name_of(model)}, hook {hook}, context {context_size}, "
            f"forward batch {forward_batch}, {batches} forward batches per measurement, {rounds} interleaved rounds "
            "(medians), "
            f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs"
        )
        print_figures(out)
        print("  per round:", {k: [round(x, 1) for x in v] for k, v in rates.items()})
    return out


def _median_ratio(a: list[float], b: list[float]) -> float:
    """The median over rounds of ``a[i] / b[i]``."""
    return statistics.median(x / y for x, y in zip(a, b))


__all__ = ["bench_packing", "bench_texts"]
