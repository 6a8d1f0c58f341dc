import errno

import numpy as np
import pytest
import torch

from tl_glp import ActivationStore, StoreError
from tl_glp.activations import store as store_mod
from tl_glp.activations.store import StoreWriter

HOOK = ["blocks.0.hook_resid_post"]


def write(path, data, docs, shard_rows=5, dtype="float32"):
    writer = StoreWriter(
        path, d_input=data.shape[-1], hook_names=HOOK, shard_rows=shard_rows, dtype=dtype, model_name="m"
    )
    writer.add(data[:, None], docs)
    return writer.close()


@pytest.mark.parametrize("dtype, tol", [("float32", 0), ("float16", 1e-2), ("bfloat16", 2e-2)])
def test_round_trip_indexing_and_statistics(tmp_path, dtype, tol):
    data = torch.randn(23, 6) * 3 + 1
    store = write(tmp_path / dtype, data, torch.arange(23) // 4, dtype=dtype)
    assert len(store) == 23 and store.n_shards == 5 and store.d_input == 6
    assert [s["rows"] for s in store.shards] == [5, 5, 5, 5, 3]
    assert torch.allclose(store[0:23], data, atol=tol * 10, rtol=tol)
    assert torch.allclose(store[7], data[7], atol=tol * 10, rtol=tol)
    assert torch.allclose(store[-1], data[-1], atol=tol * 10, rtol=tol)
    stored = store[0:23].double()
    assert torch.allclose(store.mean[0], stored.mean(0), atol=1e-6)
    assert torch.allclose(store.var[0], stored.var(0, unbiased=False), atol=1e-6)
    reopened = ActivationStore.open(tmp_path / dtype)
    assert reopened.hook_names == HOOK and reopened.model_name == "m" and reopened.complete


def test_shuffled_batches_cover_every_row_once_and_are_seeded(tmp_path):
    data = torch.arange(40, dtype=torch.float32)[:, None].repeat(1, 3)
    store = write(tmp_path / "s", data, torch.arange(40))
    batches = list(store.batches(8, seed=1))
    seen = torch.cat([b.acts[:, 0] for b in batches]).long().sort().values
    assert torch.equal(seen, torch.arange(40))
    again = list(store.batches(8, seed=1))
    assert all(torch.equal(a.acts, b.acts) for a, b in zip(batches, again))
    assert not torch.equal(batches[0].acts, next(store.batches(8, seed=2)).acts)
    resumed = list(store.batches(8, seed=1, start=2))
    assert all(torch.equal(a.acts, b.acts) for a, b in zip(batches[2:], resumed))
    train, val = store.split(0.1)
    assert len(val) == 4 and set(train).isdisjoint(val) and len(train) + len(val) == 40


def test_nan_rows_are_refused_with_their_location(tmp_path):
    writer = StoreWriter(tmp_path / "s", d_input=3, hook_names=HOOK, shard_rows=4)
    writer.add(torch.randn(6, 1, 3), torch.zeros(6))
    bad = torch.randn(3, 1, 3)
    bad[1, 0, 2] = float("nan")
    with pytest.raises(ValueError, match=r"rows \[1\].*shard 1"):
        writer.add(bad, torch.ones(3))


def test_full_disk_leaves_a_valid_store_and_resume_finishes_it(tmp_path, monkeypatch):
    data = torch.randn(30, 4)
    docs = torch.arange(30) // 3
    real_write = store_mod._write_shard_bytes
    calls = {"n": 0}

    def flaky(path, raw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, raw)

    monkeypatch.setattr(store_mod, "_write_shard_bytes", flaky)
    writer = StoreWriter(tmp_path / "s", d_input=4, hook_names=HOOK, shard_rows=5)
    with pytest.raises(StoreError, match="disk filled up while writing shard 2.*2 whole shards"):
        writer.add(data[:, None], docs)
    partial = ActivationStore.open(tmp_path / "s")
    assert len(partial) == 10 and not partial.complete
    assert torch.equal(partial[0:10], data[:10])
    assert not list((tmp_path / "s").glob(".*tmp"))  # no temporary debris
    monkeypatch.setattr(store_mod, "_write_shard_bytes", real_write)
    resumed = StoreWriter(tmp_path / "s", d_input=4, hook_names=HOOK, shard_rows=5)
    assert (resumed.resume_doc, resumed.resume_rows_of_doc) == (3, 1)  # row 9 is doc 3's first row


def test_corrupted_or_truncated_shards_are_detected(tmp_path):
    store = write(tmp_path / "s", torch.randn(12, 4), torch.arange(12))
    shard = tmp_path / "s" / store.shards[1]["file"]
    raw = bytearray(shard.read_bytes())
    raw[3] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="shard_00001.bin.*checksum"):
        ActivationStore.open(tmp_path / "s").verify()
    shard.write_bytes(bytes(raw[:-4]))
    with pytest.raises(StoreError, match="Shard 1.*corrupted"):
        ActivationStore.open(tmp_path / "s")


def test_other_settings_are_not_mixed_into_an_existing_store(tmp_path):
    write(tmp_path / "s", torch.randn(6, 4), torch.arange(6))
    with pytest.raises(StoreError, match="other settings"):
        StoreWriter(tmp_path / "s", d_input=4, hook_names=HOOK, shard_rows=7)
    with pytest.raises(FileNotFoundError, match="No activation store"):
        ActivationStore.open(tmp_path / "missing")


def test_multi_hook_store_gathers_one_hook_per_example(tmp_path):
    data = torch.stack([torch.zeros(10, 2), torch.ones(10, 2)], dim=1)  # hook 0 -> 0s, hook 1 -> 1s
    writer = StoreWriter(
        tmp_path / "m", d_input=2, hook_names=["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"], shard_rows=4
    )
    writer.add(data, torch.arange(10))
    store = writer.close()
    batch = store.gather(np.array([0, 1, 5, 19]))
    assert batch.hook_idx.tolist() == [0, 1, 1, 1]
    assert batch.acts[:, 0].tolist() == [0.0, 1.0, 1.0, 1.0]
    assert store[3].shape == (2, 2)
