"""Two gloo processes on the CPU: per-rank collection, per-rank store slices, streaming DDP, a killed run resumed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from conftest import WORDS, make_tiny_model, random_sentences  # noqa: E402
from run_streaming import HOOK, make_stream  # noqa: E402

from tl_glp import ActivationStore, GenerativePrior, InMemoryActivations, TrainConfig, collect_activations, train  # noqa: E402
from tl_glp.core.stats import RunningStats  # noqa: E402
from tl_glp.studies.testbed.tokenizer import build_tokenizer  # noqa: E402

TEXTS = random_sentences(90, seed=12, length=9)


def _init(rank, world, init_file):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    return dist


def _collect_worker(rank, world, init_file, out):
    dist = _init(rank, world, init_file)
    try:
        collect_activations(
            make_tiny_model(build_tokenizer(WORDS)), TEXTS, HOOK, out=out, batch_size=4, shard_rows=32, progress=False
        )
    finally:
        dist.destroy_process_group()


def test_two_rank_collection_writes_per_rank_shards_whose_statistics_merge_exactly(tmp_path):
    mp.spawn(_collect_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "s")), nprocs=2, join=True)
    merged = ActivationStore.open(tmp_path / "s")
    assert merged.complete and sorted(p.name for p in (tmp_path / "s").glob("rank_*")) == ["rank_00000", "rank_00001"]
    model = make_tiny_model(build_tokenizer(WORDS))
    # each rank packs its own documents (i % 2 == rank) into windows: one process collecting the same shares
    shares = [collect_activations(model, TEXTS[r::2], HOOK, batch_size=4, progress=False) for r in range(2)]
    single = InMemoryActivations(torch.cat([s.data for s in shares]), [HOOK])
    assert len(merged) == len(single)
    one_pass = RunningStats(merged.d_input)  # single-process statistics of the very same rows, in one pass
    one_pass.update(merged.read_rows(np.arange(len(merged)))[:, 0])
    assert torch.allclose(merged.mean[0], one_pass.mean, rtol=1e-10, atol=1e-13)
    assert torch.allclose(merged.var[0], one_pass.var, rtol=1e-10, atol=0)
    assert torch.allclose(merged.mean, single.mean, atol=1e-5)  # vs a 1-process collection: forward-pass rounding only
    by_rank = [ActivationStore.open(tmp_path / "s" / f"rank_{r:05d}") for r in range(2)]
    assert len(by_rank[0]) + len(by_rank[1]) == len(merged)
    docs = [{d for s in store.shards for d in (s["first_doc"], s["last_doc"])} for store in by_rank]
    assert {d % 2 for d in docs[0]} == {0} and {d % 2 for d in docs[1]} == {1}  # document i went to rank i % 2
    rows = lambda src: src.read_rows(np.arange(len(src)))[:, 0]  # noqa: E731
    a, b = rows(merged), rows(single)
    assert torch.allclose(a[torch.argsort(a[:, 0])], b[torch.argsort(b[:, 0])], atol=1e-5)  # the same rows, order aside


class CountingActivations(InMemoryActivations):
    read = 0

    def read_rows(self, rows):
        CountingActivations.read += len(rows)
        return super().read_rows(rows)


def _store_worker(rank, world, init_file, out):
    dist = _init(rank, world, init_file)
    try:
        data = torch.randn(2048, 1, 8, generator=torch.Generator().manual_seed(0))
        source = CountingActivations(data, [HOOK])
        torch.manual_seed(0)
        prior = GenerativePrior.from_activations(source, n_blocks=1)
        train(prior, source, TrainConfig(batch_size=64, max_steps=7, progress=False, eval_every=0, prefetch=0))
        Path(f"{out}.{rank}").write_text(str(CountingActivations.read))
    finally:
        dist.destroy_process_group()


def test_each_rank_reads_only_its_slice_of_a_store(tmp_path):
    mp.spawn(_store_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "read")), nprocs=2, join=True)
    assert [int((tmp_path / f"read.{r}").read_text()) for r in range(2)] == [7 * 32, 7 * 32]


def _resume_worker(rank, world, init_file, out):
    """Trains 4 steps into ``out``; then, resuming, rank 1 reads the folder slowly and records whether
    ``train_config.json`` changed under it while it read (the file rank 0 rewrites on every start)."""
    from tl_glp.training import trainer

    dist = _init(rank, world, init_file)
    check_same_run = trainer._check_same_run

    def slow_reader(folder, fingerprint):
        before = os.stat(folder / "train_config.json")
        check_same_run(folder, fingerprint)
        time.sleep(1.0)  # rank 0 is far ahead by now: without a barrier it rewrites the file in this window
        after = os.stat(folder / "train_config.json")
        same = (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
        Path(f"{out}.read").write_text("unchanged" if same else "rewritten while rank 1 read it")

    try:
        data = torch.randn(512, 1, 8, generator=torch.Generator().manual_seed(0))
        cfg = TrainConfig(batch_size=32, max_steps=4, checkpoint_every=2, progress=False, eval_every=0, prefetch=0)
        for attempt in range(2):
            if attempt == 1 and rank == 1:
                trainer._check_same_run = slow_reader
            torch.manual_seed(0)
            prior = GenerativePrior.from_activations(InMemoryActivations(data, [HOOK]), n_blocks=1)
            train(prior, InMemoryActivations(data, [HOOK]), cfg, out_dir=out)
    finally:
        trainer._check_same_run = check_same_run
        dist.destroy_process_group()


def test_a_resuming_rank_reads_the_run_folder_before_rank_0_rewrites_it(tmp_path):
    """Every rank reads the run's fingerprint and checkpoint on resume, and rank 0 then rewrites
    train_config.json. A rank still reading must never see that file change (a half-written file failed a
    resumed torchrun in CI): rank 0 writes only after every rank has read, and writes atomically."""
    mp.spawn(_resume_worker, args=(2, str(tmp_path / "init"), tmp_path / "run"), nprocs=2, join=True)
    assert (tmp_path / "run.read").read_text() == "unchanged"
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["fingerprint"]["total_steps"] == 4
    assert (tmp_path / "run" / "checkpoints" / "step_00000004").is_dir()


def _stream_worker(rank, world, init_file, out):
    dist = _init(rank, world, init_file)
    try:
        torch.manual_seed(0)
        stream = make_stream()
        prior = GenerativePrior.from_activations(stream, n_blocks=2, d_hidden=32, d_mlp=64)
        train(prior, stream, TrainConfig(batch_size=64, lr=1e-3, max_steps=12, progress=False, eval_every=0))
        if rank == 0:
            torch.save({k: v.clone() for k, v in prior.state_dict().items()}, out)
    finally:
        dist.destroy_process_group()


class ConcatenatedRanks:
    """A 1-process stream that hands out rank 0's batch followed by rank 1's: the 2-rank run's global batch."""

    def __init__(self, stream):
        self.stream = stream

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def iter_batches(self, batch_size, *, seed, state, rank, world):
        assert (rank, world, state) == (0, 1, None)
        parts = [self.stream.iter_batches(batch_size // 2, seed=seed, rank=r, world=2) for r in range(2)]
        for (a, _), (b, s) in zip(*parts):
            yield type(a)(*(torch.cat([x, y]) for x, y in zip(a, b))), s


def test_two_rank_streaming_training_equals_one_process_fed_the_concatenated_rank_batches(tmp_path):
    mp.spawn(_stream_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "ddp.pt")), nprocs=2, join=True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    stream = make_stream()
    prior = GenerativePrior.from_activations(stream, n_blocks=2, d_hidden=32, d_mlp=64)

    fed = ConcatenatedRanks(stream)
    train(
        prior, _as_stream_source(fed), TrainConfig(batch_size=64, lr=1e-3, max_steps=12, progress=False, eval_every=0)
    )
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for key, value in prior.state_dict().items():
        assert torch.allclose(ddp[key], value, atol=1e-5), key
    assert any(not torch.equal(ddp[k], v) for k, v in GenerativePrior(prior.cfg).state_dict().items() if "weight" in k)


def _as_stream_source(fed):
    """``fed`` as a StreamingActivations instance (train() takes sources), reading batches from ``fed``."""
    from tl_glp.activations.streaming import StreamingActivations

    class Fed(StreamingActivations):
        def __init__(self):
            self.__dict__.update(fed.stream.__dict__)

        def iter_batches(self, batch_size, **kwargs):
            return fed.iter_batches(batch_size, **kwargs)

    return Fed()


def _uneven_stream_worker(rank, world, init_file, out):
    import datetime

    import torch.distributed as dist

    from tl_glp.activations.streaming import StreamingActivations

    torch.set_num_threads(1)
    # a short timeout: a rank left waiting in the gradient all-reduce fails the test instead of hanging it
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=20)
    )
    long_docs = random_sentences(400, seed=3, length=10)
    texts = [doc if i % 2 == 0 else "dog" for i, doc in enumerate(long_docs)]  # rank 1's documents: one word each
    try:
        torch.manual_seed(0)
        stream = StreamingActivations(
            make_tiny_model(build_tokenizer(WORDS)), texts, HOOK, buffer_rows=64, warmup_rows=64, val_rows=0
        )
        prior = GenerativePrior.from_activations(stream, n_blocks=1, d_hidden=16, d_mlp=32)
        try:
            train(prior, stream, TrainConfig(batch_size=32, max_steps=500, progress=False, eval_every=0))
            outcome = "finished"
        except Exception as err:  # noqa: BLE001  (what each rank saw is the result)
            outcome = f"{type(err).__name__}: {err}"
        Path(f"{out}.{rank}").write_text(outcome)
    finally:
        dist.destroy_process_group()


def test_ranks_whose_streams_run_out_at_different_steps_all_stop_together_with_one_clear_error(tmp_path):
    """Each rank streams its own documents; rank 1's are short and run out first. Every rank must stop at the
    same step with the same error: one that stopped alone would leave the other waiting in the all-reduce."""
    mp.spawn(_uneven_stream_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2, join=True)
    outcomes = [(tmp_path / f"out.{r}").read_text() for r in range(2)]
    for outcome in outcomes:
        assert outcome.startswith("StreamExhausted: The stream ran out of documents on rank(s) [1] of 2"), outcome
    assert "This rank:" in outcomes[1] and "This rank:" not in outcomes[0]


def _torchrun(out, delay, steps, port):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(port),
        str(HERE / "run_streaming.py"),
        str(out),
        str(delay),
        str(steps),
    ]
    return subprocess.Popen(
        cmd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _what_each_rank_said(proc) -> str:
    """The end of each rank's own error output (torchrun's tail alone shows only the rank that failed last)."""
    lines = proc.stderr.read().decode().splitlines()
    by_rank = {r: [ln for ln in lines if ln.startswith(f"[rank{r}]")][-25:] for r in range(2)}
    return "\n".join(["\n".join(v) for v in by_rank.values()] + lines[-15:])


@pytest.mark.slow
def test_a_killed_two_rank_streaming_run_resumes_and_ends_like_an_uninterrupted_one(tmp_path):
    port = 29500 + os.getpid() % 1000
    victim = _torchrun(tmp_path / "killed", 0.05, 40, port)
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "checkpoints" / "step_00000020").exists():
        assert time.time() < deadline and victim.poll() is None, "the run finished or stalled before it could be killed"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)  # torchrun and both ranks
    victim.wait()
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    state = json.loads(
        (sorted((tmp_path / "killed" / "checkpoints").glob("step_*"))[-1] / "train_state.json").read_text()
    )
    assert [s["rank"] for s in state["stream"]] == [0, 1]  # both ranks' stream positions in the one checkpoint
    resumed = _torchrun(tmp_path / "killed", 0.0, 40, port + 1)
    assert resumed.wait(timeout=300) == 0, _what_each_rank_said(resumed)
    straight = _torchrun(tmp_path / "straight", 0.0, 40, port + 2)
    assert straight.wait(timeout=300) == 0, _what_each_rank_said(straight)
    a = GenerativePrior.from_pretrained(tmp_path / "straight").state_dict()
    b = GenerativePrior.from_pretrained(tmp_path / "killed").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
