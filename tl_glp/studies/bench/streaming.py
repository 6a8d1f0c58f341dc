"""``bench_streaming``: training while the model streams activations, against the alternatives, in one run.

Measured side by side (medians of repeated runs on the same machine):

- ``forward_rows_per_s``: the model alone producing rows (the stream's row iterator, no training);
- ``train_rows_per_s``: training steps alone on rows already in memory;
- ``serial_bound_rows_per_s`` = 1 / (1/forward + 1/train): the rate of doing both, one after the other;
- ``stream_rows_per_s``: ``train(prior, StreamingActivations(...))``, and its ratio to the bound
  (the target is >= 0.9: the buffer and the reader thread add little);
- ``collect_then_train_rows_per_s``: ``collect_activations`` into memory, then ``train``;
- 2 gloo processes vs 1 on the CPU: collection to a store and training on it (rows/s), medians of
  ``repeats`` spawns each, after one untimed warm-up collection in every process;
- peak RSS of a streaming run over two corpus lengths (in subprocesses): flat in the corpus length.

Training rates are the training loop's own time (``TrainResult.seconds["steps"]``): the stream's
one-off warm-up (the normaliser's statistics, read before the loop) is reported on its own as
``stream_warmup_s``, as collect-then-train's statistics are part of its collection.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from tl_glp.activations.collect import collect_activations
from tl_glp.activations.streaming import StreamingActivations
from tl_glp.core._io import write_json
from tl_glp.core.config import PriorConfig
from tl_glp.core.prior import GenerativePrior
from tl_glp.studies.bench.basic import bench_model, timeit
from tl_glp.studies.reporting import print_figures as _print_table
from tl_glp.training import TrainConfig, train

HOOK = "blocks.1.hook_resid_post"


def bench_streaming(quick: bool = False, out: str | Path | None = None) -> dict[str, float]:
    """Streaming training vs collect-then-train vs the serial bound; 2 processes vs 1; RSS vs corpus length.

    ``out``: a folder to also write ``numbers.json`` into (the figures, under ``figures``, with the sizes,
    threads and seconds; atomically), for ``docs/gen_results.py``."""
    clock = time.perf_counter()
    d_model, seq, batch = 128, 128, 1024
    steps = 8 if quick else 64
    repeats = 3
    folder = None if out is None else Path(out)
    model = bench_model(d_model=d_model, n_layers=2, d_vocab=2000)
    n_rows = steps * batch
    n_docs = n_rows // seq + 8
    tokens = torch.randint(10, 2000, (n_docs, seq), generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(
        batch_size=batch,
        lr=1e-4,
        max_steps=steps,
        eval_every=0,
        progress=False,
        log_every=steps,
        val_fraction=0.0,
        plot=False,
    )

    def make_stream() -> StreamingActivations:
        return StreamingActivations(
            model,
            tokens,
            HOOK,
            context_size=seq,
            forward_batch=32,
            buffer_rows=4 * batch,
            warmup_rows=batch,
            val_rows=0,
        )

    stream = make_stream()
    prior_cfg = PriorConfig(d_input=d_model, n_blocks=2, hook_names=[HOOK])

    def fresh_prior() -> GenerativePrior:
        return GenerativePrior(prior_cfg).fit_normalizer(stream)

    def forward() -> None:
        for _ in stream.rows(0):
            pass

    rows = collect_activations(model, tokens, HOOK, context_size=seq, batch_size=32, progress=False)

    def train_only() -> float:
        return train(fresh_prior(), rows, cfg).seconds["steps"]

    warmups: list[float] = []

    def streamed() -> float:
        source = make_stream()
        tick = time.perf_counter()
        _ = source.validation  # the one-off warm-up: validation rows and the normaliser's statistics
        warmups.append(time.perf_counter() - tick)
        return train(fresh_prior(), source, cfg).seconds["steps"]

    def collect_then_train() -> float:
        tick = time.perf_counter()
        acts = collect_activations(model, tokens, HOOK, context_size=seq, batch_size=32, progress=False)
        return time.perf_counter() - tick + train(fresh_prior(), acts, cfg).seconds["steps"]

    def interleaved() -> dict[str, float]:
        """The four runs in turn, ``repeats`` rounds after one warm-up round; medians (seconds)."""
        fns = {"forward": lambda: timeit(forward, repeats=1, warmup=0), "train": train_only}
        fns |= {"stream": streamed, "both": collect_then_train}
        times: dict[str, list[float]] = {k: [] for k in fns}
        for round_ in range(repeats + 1):
            for key, fn in fns.items():
                seconds = fn()
                if round_:
                    times[key].append(seconds)
        return {k: statistics.median(v) for k, v in times.items()}

    med = interleaved()
    t_forward = med["forward"] / len(rows)  # seconds per row
    t_train, t_stream, t_both = med["train"] / n_rows, med["stream"] / n_rows, med["both"] / n_rows
    bound = 1.0 / (t_forward + t_train)
    figures: dict[str, float] = {
        "forward_rows_per_s": 1 / t_forward,
        "train_rows_per_s": 1 / t_train,
        "serial_bound_rows_per_s": bound,
        "stream_rows_per_s": 1 / t_stream,
        "collect_then_train_rows_per_s": 1 / t_both,
        "ratio_stream_vs_bound": (1 / t_stream) / bound,
        "ratio_stream_vs_collect_then_train": t_both / t_stream,
        "stream_warmup_s": statistics.median(warmups),
    }
    print("bench streaming: single process", {k: round(v, 3) for k, v in figures.items()}, flush=True)
    figures.update(_two_ranks(quick))
    print("bench streaming: two ranks done", flush=True)
    for n in [100_000, 400_000] if quick else [1_000_000, 4_000_000]:
        figures[f"stream_peak_rss_mb_{n // 1000}k_rows"] = _stream_rss(n)
    keys = [k for k in figures if k.startswith("stream_peak_rss")]
    figures["rss_ratio_long_vs_short"] = figures[keys[1]] / figures[keys[0]]
    print(
        f"bench streaming: model {model.cfg.model_name}, hook {HOOK}, {n_rows} rows, batch {batch}, {torch.get_num_threads()} threads; "
        "2-rank runs: gloo on this CPU; RSS runs: d_model 64, batch 4096, buffer 65536 rows"
    )
    _print_table(figures)
    if folder is not None:
        settings = {"model": f"random {model.cfg.n_layers}-layer d_model {d_model}", "hook": HOOK, "rows": n_rows}
        settings |= {"batch": batch, "prior_blocks": 2, "repeats": repeats, "threads": torch.get_num_threads()}
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "numbers.json", {"figures": figures, **settings, "seconds": time.perf_counter() - clock})
        print(f"wrote {folder / 'numbers.json'}")
    return figures


# --------------------------------------------------------------------------- one process vs two
def _two_ranks(quick: bool, repeats: int = 3) -> dict[str, float]:
    """1 vs 2 gloo processes, ``repeats`` spawns of each in turn; medians of the rates."""
    import torch.multiprocessing as mp

    n_docs, steps = (128, 8) if quick else (1024, 64)
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            for world in (1, 2):
                run = Path(tmp) / f"{world}_{rep}"
                run.mkdir()
                mp.spawn(
                    _rank_worker,
                    args=(world, str(run / "init"), str(run / "store"), str(run / "times"), n_docs, steps),
                    nprocs=world,
                    join=True,
                )
                collect_s, train_s, rows = (float(x) for x in (run / "times").read_text().split())
                rates.setdefault(f"collect_{world}rank_tok_per_s", []).append(rows / collect_s)
                rates.setdefault(f"train_{world}rank_rows_per_s", []).append(steps * 1024 / train_s)
    out = {k: statistics.median(v) for k, v in rates.items()}
    out["ratio_collect_2rank_vs_1"] = out["collect_2rank_tok_per_s"] / out["collect_1rank_tok_per_s"]
    out["ratio_train_2rank_vs_1"] = out["train_2rank_rows_per_s"] / out["train_1rank_rows_per_s"]
    return out


def _rank_worker(rank: int, world: int, init_file: str, store: str, result: str, n_docs: int, steps: int) -> None:
    """One process of the 2-vs-1 comparison: collect to a store, then train on it (DDP); rank 0 writes the times."""
    import torch.distributed as dist

    torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = bench_model(d_model=128, n_layers=2, d_vocab=2000)
        tokens = torch.randint(10, 2000, (n_docs, 128), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            model(tokens[:32], stop_at_layer=2)  # untimed: first-call costs (allocator, kernels) stay out
        _sync(world)
        start = time.perf_counter()
        source = collect_activations(model, tokens, HOOK, out=store, batch_size=32, context_size=128, progress=False)
        collect_s = time.perf_counter() - start
        prior = GenerativePrior(PriorConfig(d_input=128, n_blocks=2, hook_names=[HOOK])).fit_normalizer(source)
        cfg = TrainConfig(
            batch_size=1024,
            lr=1e-4,
            max_steps=steps,
            eval_every=0,
            progress=False,
            log_every=steps,
            val_fraction=0.0,
            plot=False,
        )
        _sync(world)
        seconds = train(prior, source, cfg).seconds["steps"]
        if rank == 0:
            Path(result).write_text(f"{collect_s} {seconds} {len(source)}")
    finally:
        if world > 1:
            dist.destroy_process_group()


def _sync(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


# --------------------------------------------------------------------------- memory vs corpus length
_RSS_CODE = """
import resource, torch
from tl_glp.studies.bench import bench_model
from tl_glp.activations.streaming import StreamingActivations
from tl_glp.core._io import write_json
from tl_glp.core.config import PriorConfig
from tl_glp.core.prior import GenerativePrior
from tl_glp.training import TrainConfig, train
m = bench_model(d_model=64, n_layers=2, d_vocab=500)
n = {n}
toks = torch.randint(10, 500, (1, 128)).expand(n // 128 + 64, 128)  # one document repeated: no memory grows with n
s = StreamingActivations(m, toks, "blocks.0.hook_resid_post", forward_batch=64, buffer_rows=65536, warmup_rows=65536, val_rows=0)
p = GenerativePrior(PriorConfig(d_input=64, n_blocks=1, hook_names=["blocks.0.hook_resid_post"])).fit_normalizer(s)
train(p, s, TrainConfig(batch_size=4096, lr=1e-4, max_steps=n // 4096, eval_every=0, progress=False, plot=False))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _stream_rss(n_rows: int) -> float:
    """Peak RSS (MB) of a fresh process that streams ``n_rows`` rows through training.

    The corpus is one random document repeated (an expanded view: nothing allocated per document),
    so any growth would come from the stream or the training loop.
    """
    done = subprocess.run(
        [sys.executable, "-c", _RSS_CODE.format(n=n_rows)], capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1]) / 1024


__all__ = ["bench_streaming"]


# --------------------------------------------------------------------------- quality: stream vs store
def stream_vs_store_on_testbed(seeds: int = 3, steps: int = 300, batch: int = 256) -> dict[str, list[float]]:
    """Validation loss of priors trained from a stream vs from a store of the same documents' rows.

    On the shipped testbed (hook ``blocks.2.hook_resid_post``, a 2-block prior), ``seeds`` seeds each;
    both runs hold out the same validation rows (the stream's first documents) and start from the
    same warm-up statistics. The store holds the first ``steps * batch`` rows after the validation
    documents; the stream trains on the same documents through its shuffle buffer. Prints the losses,
    their means and the seed-to-seed spread (max - min) of each.
    """
    from tl_glp.studies.testbed import MIDDLE_HOOK, load

    tb = load(progress=False)
    texts = tb.language.sample_texts(6000, seed=0)
    cfg = TrainConfig(
        batch_size=batch, lr=1e-3, max_steps=steps, eval_every=steps, fd_samples=0, progress=False, plot=False
    )

    def stream() -> StreamingActivations:
        return StreamingActivations(
            tb.model,
            texts,
            MIDDLE_HOOK,
            context_size=128,
            forward_batch=32,
            buffer_rows=8192,
            warmup_rows=8192,
            val_rows=2048,
        )

    first = stream()
    held = first.validation
    assert held is not None
    rows = collect_activations(
        tb.model, texts[first.first_train_doc :], MIDDLE_HOOK, max_tokens=steps * batch, batch_size=32, progress=False
    )
    store = torch.cat([rows[0 : len(rows)], held[0 : len(held)]])
    out: dict[str, list[float]] = {"stream": [], "store": []}
    for seed in range(seeds):
        for kind in ("stream", "store"):
            torch.manual_seed(seed)
            prior = GenerativePrior(
                PriorConfig(d_input=first.d_input, n_blocks=2, hook_names=[MIDDLE_HOOK])
            ).fit_normalizer(first)
            if kind == "stream":
                result = train(prior, stream(), cfg.replace(seed=seed))
            else:
                result = train(
                    prior, store, cfg.replace(seed=seed, val_fraction=len(held) / len(store), max_val_rows=len(held))
                )
            out[kind].append(result.metrics[-1]["val_loss"])
    for kind, losses in out.items():
        print(
            f"  {kind:<6} val_loss {[f'{v:.4f}' for v in losses]}  mean {sum(losses) / len(losses):.4f}  spread {max(losses) - min(losses):.4f}"
        )
    return out
