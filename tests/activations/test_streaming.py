import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import random_sentences

from tl_glp import GenerativePrior, StreamingActivations, TrainConfig, collect_activations, train
from tl_glp.core._io import read_tensors
from tl_glp.core.stats import RunningStats

HOOK = "blocks.1.hook_resid_post"
TRAINING = Path(__file__).parents[1] / "training"


def drain(stream, batch_size, **kwargs):
    """Every batch of a stream, stacked: (acts, doc, pos, hook)."""
    got = [b for b, _ in stream.iter_batches(batch_size, **kwargs)]
    return (
        torch.cat([b.acts for b in got]),
        torch.cat([b.doc for b in got]),
        torch.cat([b.pos for b in got]),
        torch.cat([b.hook_idx for b in got]),
    )


def test_the_stream_holds_exactly_collects_rows_and_its_statistics_come_from_the_warmup(tiny_model):
    texts = random_sentences(120, seed=4, length=8)
    stream = StreamingActivations(
        tiny_model, texts, HOOK, buffer_rows=96, warmup_rows=150, val_rows=40, forward_batch=8
    )
    val_end = stream.first_train_doc
    assert val_end > 0  # the document after the one that holds the 40th row
    assert stream.packing and stream.describe()["packing"]
    every = collect_activations(
        tiny_model, texts, HOOK, batch_size=8, progress=False
    )  # same forward batches as the stream
    assert torch.equal(stream.validation[0:40], every[0:40])
    train_rows = collect_activations(tiny_model, texts[val_end:], HOOK, batch_size=8, progress=False)
    ref = RunningStats(train_rows.d_input)
    ref.update(train_rows[0:150].double())
    assert torch.allclose(stream.mean[0], ref.mean, rtol=1e-10, atol=1e-12)
    assert torch.allclose(stream.var[0], ref.var, rtol=1e-10, atol=1e-12)
    assert stream.statistics_provenance["rows"] == 150 and stream.statistics_provenance["first_doc"] == val_end
    # one pass with batches of 1: every training row handed out exactly once, with collect's values
    acts, doc, pos, hook = drain(stream, 1)
    order = torch.argsort(doc * 1000 + pos)
    assert torch.equal(hook, torch.zeros_like(hook)) and len(acts) == len(train_rows)
    assert torch.allclose(acts[order], train_rows[0 : len(train_rows)], atol=1e-6)
    assert not torch.equal(order, torch.arange(len(order)))  # shuffled
    prior = GenerativePrior.from_activations(stream, n_blocks=1)
    assert prior.cfg.statistics["kind"] == "streaming warm-up" and torch.allclose(prior.mean, stream.mean[0].float())


def test_several_hooks_stream_every_row_once_per_hook(tiny_model):
    texts = random_sentences(60, seed=6)
    hooks = ["blocks.0.hook_resid_post", HOOK]
    stream = StreamingActivations(tiny_model, texts, hooks, buffer_rows=64, warmup_rows=50, val_rows=0, forward_batch=8)
    acts, doc, pos, hook = drain(stream, 4)
    both = collect_activations(tiny_model, texts, hooks, batch_size=8, progress=False)  # the stream's forward batches
    keys = doc * 10_000 + pos * 2 + hook
    assert (
        len(set(keys.tolist())) == len(keys) >= 2 * len(both) - 3
    )  # each (row, hook) once; only the last partial batch dropped
    per_doc = torch.tensor([tiny_model.to_tokens(t).shape[1] - 1 for t in texts])  # real tokens after BOS
    first_row = torch.cumsum(per_doc, 0) - per_doc
    expected = both.read_rows((first_row[doc] + pos).numpy())[torch.arange(len(acts)), hook]
    assert torch.equal(acts, expected)


def test_a_bigger_buffer_mixes_more_documents_into_each_batch(tiny_model):
    texts = random_sentences(200, seed=7, length=10)

    def docs_in_first_batches(buffer_rows):
        stream = StreamingActivations(
            tiny_model, texts, HOOK, buffer_rows=buffer_rows, warmup_rows=32, val_rows=0, forward_batch=16
        )
        batches = stream.iter_batches(32, seed=0)
        return sum(len(set(next(batches)[0].doc.tolist())) for _ in range(4))

    assert docs_in_first_batches(1024) > 1.5 * docs_in_first_batches(64)


def test_a_stream_state_continues_the_stream_exactly(tiny_model):
    texts = random_sentences(150, seed=8, length=9)
    stream = StreamingActivations(
        tiny_model, texts, HOOK, buffer_rows=128, warmup_rows=64, val_rows=16, forward_batch=8
    )
    whole = list(stream.iter_batches(16, seed=3))
    state = json.loads(json.dumps(whole[9][1].to_dict()))  # what a checkpoint stores
    resumed = list(stream.iter_batches(16, seed=3, state=state))
    assert len(resumed) == len(whole) - 10
    for (a, _), (b, _) in zip(whole[10:], resumed):
        assert torch.equal(a.doc, b.doc) and torch.equal(a.pos, b.pos) and torch.allclose(a.acts, b.acts, atol=1e-6)
    with pytest.raises(ValueError, match="same number of processes"):
        next(stream.iter_batches(16, state=state, rank=0, world=2))


def test_bad_streams_are_refused_clearly(tiny_model):
    with pytest.raises(TypeError, match="one-shot"):
        StreamingActivations(tiny_model, (t for t in ["the dog"]), HOOK)
    stream = StreamingActivations(
        tiny_model, lambda: iter(random_sentences(50)), HOOK, buffer_rows=32, warmup_rows=32, val_rows=8
    )
    prior = GenerativePrior.from_activations(stream, n_blocks=1)
    with pytest.raises(ValueError, match="max_steps"):
        train(prior, stream, TrainConfig(batch_size=8, progress=False, eval_every=0))
    with pytest.raises(ValueError, match="ran out of documents"):
        train(prior, stream, TrainConfig(batch_size=8, max_steps=10_000, progress=False, eval_every=0))
    with pytest.raises(TypeError, match="no length"):
        len(stream)


@pytest.mark.slow
def test_training_from_the_stream_matches_training_from_a_store_of_the_same_rows(tiny_model):
    """Same rows, same steps: the validation losses of the two priors agree within the seed-to-seed spread."""
    texts = random_sentences(1500, seed=9, length=10)
    cfg = TrainConfig(batch_size=64, lr=2e-3, max_steps=60, eval_every=120, fd_samples=0, progress=False, plot=False)

    def stream_of(seed):
        return StreamingActivations(
            tiny_model, texts, HOOK, buffer_rows=1024, warmup_rows=2048, val_rows=512, forward_batch=32
        )

    first = stream_of(0)
    held = first.validation
    rows = collect_activations(tiny_model, texts[first.first_train_doc :], HOOK, progress=False)
    n_rows = cfg.max_steps * cfg.batch_size
    store_like = torch.cat(
        [rows[0:n_rows], held[0 : len(held)]]
    )  # the stream's rows; the held-out rows last = validation
    val_stream, val_store = [], []
    for seed in range(3):
        torch.manual_seed(seed)
        s = stream_of(seed)
        prior = GenerativePrior.from_activations(s, n_blocks=2, d_hidden=64, d_mlp=128)
        val_stream.append(train(prior, s, cfg.replace(seed=seed)).metrics[-1]["val_loss"])
        torch.manual_seed(seed)
        p2 = GenerativePrior.from_activations(s, n_blocks=2, d_hidden=64, d_mlp=128)  # same statistics (the warm-up)
        val_store.append(
            train(
                p2, store_like, cfg.replace(seed=seed, val_fraction=len(held) / len(store_like), max_val_rows=len(held))
            ).metrics[-1]["val_loss"]
        )
    spread = max(max(val_stream) - min(val_stream), max(val_store) - min(val_store))
    mean_gap = abs(sum(val_stream) / 3 - sum(val_store) / 3)
    assert mean_gap <= spread, (val_stream, val_store)


def _launch(out, delay):
    return subprocess.Popen(
        [sys.executable, str(TRAINING / "run_streaming.py"), str(out), str(delay)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _trained(out, pid, steps):
    lines = (Path(out) / f"batches_rank0_pid{pid}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[:steps]]


@pytest.mark.slow
def test_sigkill_then_resume_trains_on_the_same_examples_in_the_same_order(tmp_path):
    straight = _launch(tmp_path / "straight", 0.0)
    victim = _launch(tmp_path / "killed", 0.05)
    deadline = time.time() + 240
    while not (tmp_path / "killed" / "checkpoints" / "step_00000030").exists():
        assert time.time() < deadline and victim.poll() is None, "the run finished or stalled before it could be killed"
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    last = sorted((tmp_path / "killed" / "checkpoints").glob("step_*"))[-1]
    resumed_from = int(last.name.split("_")[1])
    state = json.loads((last / "train_state.json").read_text())["stream"][0]
    resumed = _launch(tmp_path / "killed", 0.0)
    assert resumed.wait(timeout=300) == 0 and straight.wait(timeout=300) == 0
    reference = _trained(tmp_path / "straight", straight.pid, 60)
    replayed = _trained(tmp_path / "killed", victim.pid, resumed_from) + _trained(
        tmp_path / "killed", resumed.pid, 60 - resumed_from
    )
    assert replayed == reference  # no example skipped, none trained twice, same order
    assert len(state["held_docs"]) > 0 and state["next_doc"] >= max(
        state["held_docs"]
    )  # the buffer really held rows at the kill (with packing, reading may continue inside the last one)
    a = read_tensors(tmp_path / "straight" / "model.safetensors")
    b = read_tensors(tmp_path / "killed" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    cfg = json.loads((tmp_path / "killed" / "cfg.json").read_text())
    assert cfg["statistics"]["kind"] == "streaming warm-up" and cfg["statistics"]["rows"] == 1024


def test_a_stream_that_ends_just_after_the_last_step_does_not_hang(tiny_model):
    """The reader thread runs ahead; its 'ran out of documents' error must not block the end of training."""
    texts = random_sentences(80, seed=10, length=8)
    stream = StreamingActivations(tiny_model, texts, HOOK, buffer_rows=64, warmup_rows=32, val_rows=0, forward_batch=8)
    n_batches = sum(1 for _ in stream.iter_batches(16))
    prior = GenerativePrior.from_activations(stream, n_blocks=1)
    result = train(
        prior, stream, TrainConfig(batch_size=16, max_steps=n_batches - 2, prefetch=2, progress=False, eval_every=0)
    )
    assert result.steps == n_batches - 2  # the reader fills the queue (2) and then hits the end
