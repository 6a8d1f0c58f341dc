import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import mixture, near_mode_share

from tl_glp import GenerativePrior, PriorConfig, TrainConfig, as_source, train
from tl_glp.activations.store import StoreWriter
from tl_glp.core._io import read_tensors

HERE = Path(__file__).parent


def test_training_learns_and_writes_metrics_plot_and_final_prior(tmp_path):
    torch.manual_seed(0)
    data, centres = mixture(8192)
    prior = GenerativePrior.from_activations(data, n_blocks=2, d_hidden=64, d_mlp=128)
    cfg = TrainConfig(
        batch_size=256, lr=3e-3, max_steps=300, eval_every=150, checkpoint_every=100, fd_samples=512, progress=False
    )
    with torch.no_grad():
        loss_before = float(prior.loss(data[:4096], generator=torch.Generator().manual_seed(5)))
    result = train(prior, data, cfg, out_dir=tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "fd" in r]
    assert [r["step"] for r in evals] == [150, 300]
    assert {"val_loss_t0.1", "val_loss_t0.9", "grad_norm", "lr", "samples_per_s"} <= set(evals[0]) | set(train_rows[0])
    with torch.no_grad():
        assert float(prior.loss(data[:4096], generator=torch.Generator().manual_seed(5))) < 0.7 * loss_before
    assert evals[-1]["fd"] < 1.0
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    loaded = GenerativePrior.from_pretrained(tmp_path / "run")
    assert near_mode_share(loaded.sample(500, generator=torch.Generator().manual_seed(0)), centres, 1.5) > 0.5
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_00000200", "step_00000300"]
    step200 = GenerativePrior.from_pretrained(tmp_path / "run", checkpoint="step_00000200")
    assert not torch.equal(step200.out_proj.weight, loaded.out_proj.weight)
    assert result.steps == 300 and result.final_loss == train_rows[-1]["loss"]


def test_fit_accepts_an_activation_cache(tiny_model):
    texts = ["the dog ran", "a red cat was happy ."]
    _, cache = tiny_model.run_with_cache(tiny_model.to_tokens(texts), names_filter=["blocks.1.hook_resid_post"])
    with pytest.raises(ValueError, match="attention_mask"):
        as_source(cache)  # two prompts of different lengths: padding cannot be told apart silently
    lengths = torch.tensor([tiny_model.to_tokens(t).shape[1] for t in texts])  # 4 and 7 with BOS
    mask = torch.arange(7)[None] < lengths[:, None]
    src = as_source(cache, attention_mask=mask)
    assert len(src) == (4 - 1) + (7 - 1)  # real tokens only, BOS dropped
    expected = torch.cat(
        [
            tiny_model.run_with_cache(t, names_filter=["blocks.1.hook_resid_post"])[1]["blocks.1.hook_resid_post"][
                0, 1:
            ]
            for t in texts
        ]
    )
    assert torch.allclose(src.read_rows(np.arange(len(src)))[:, 0], expected, atol=1e-5)
    prior = GenerativePrior.from_activations(src, n_blocks=1)
    assert prior.cfg.hook_names == ["blocks.1.hook_resid_post"] and prior.cfg.model_name == "tiny-test"
    _, single = tiny_model.run_with_cache(texts[1], names_filter=["blocks.1.hook_resid_post"])
    assert len(as_source(single)) == 6  # one prompt needs no mask
    result = train(prior, src, batch_size=4, lr=1e-3, max_steps=3, progress=False, eval_every=0)
    assert result.steps == 3


def test_cache_from_left_padded_batch_drops_each_rows_pad_and_bos(tiny_model):
    texts = ["the dog ran", "a red cat was happy ."]
    tokens = tiny_model.to_tokens(texts, padding_side="left")
    _, cache = tiny_model.run_with_cache(tokens, names_filter=["blocks.1.hook_resid_post"], padding_side="left")
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[0, -4:] = True
    mask[1, :] = True
    assert len(as_source(cache, attention_mask=mask)) == 3 + 6
    with pytest.raises(ValueError, match="shape"):
        as_source(cache, attention_mask=mask[:, 1:])


def run_child(out_dir, delay):
    return subprocess.Popen(
        [sys.executable, str(HERE / "run_training.py"), str(out_dir), str(delay)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_sigkill_then_resume_ends_bit_identical_to_an_uninterrupted_run(tmp_path):
    straight = run_child(tmp_path / "straight", 0.0)
    victim = run_child(tmp_path / "killed", 0.02)
    deadline = time.time() + 120
    while not (tmp_path / "killed" / "checkpoints" / "step_00000030").exists():
        assert time.time() < deadline and victim.poll() is None, "the run finished or stalled before it could be killed"
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed" / "model.safetensors").exists()  # it really died mid-run
    resumed = run_child(tmp_path / "killed", 0.0)
    assert resumed.wait(timeout=300) == 0 and straight.wait(timeout=300) == 0
    a = read_tensors(tmp_path / "straight" / "model.safetensors")
    b = read_tensors(tmp_path / "killed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(line) for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 60  # no duplicated lines after the resume


def _ddp_worker(rank, world, init_file, out):
    import torch.distributed as dist

    sys.path.insert(0, str(HERE))
    from run_training import make_run

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        prior, source, cfg = make_run()
        train(prior, source, cfg.replace(max_steps=15, eval_every=0), out_dir=None)
        if rank == 0:
            torch.save({k: v.clone() for k, v in prior.state_dict().items()}, out)
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    import torch.multiprocessing as mp

    sys.path.insert(0, str(HERE))
    from run_training import make_run

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "ddp.pt")), nprocs=2, join=True)
    torch.set_num_threads(1)
    prior, source, cfg = make_run()
    train(prior, source, cfg.replace(max_steps=15, eval_every=0))
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for key, value in prior.state_dict().items():
        assert torch.allclose(ddp[key], value, atol=1e-5), key
    assert any(not torch.equal(ddp[k], v) for k, v in GenerativePrior(prior.cfg).state_dict().items() if "weight" in k)


def test_multi_layer_prior_trains_on_a_multi_hook_store(tmp_path):
    """Layer 0 is Gaussian, layer 2 is bimodal along dim 0: samples must follow the layer asked for."""
    hooks = ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]
    writer = StoreWriter(tmp_path / "s", d_input=4, hook_names=hooks, shard_rows=1024)
    g = torch.Generator().manual_seed(0)
    layer2 = torch.randn(4096, 4, generator=g) * 0.1 + 3
    layer2[:, 0] = 10 + 2 * torch.sign(torch.randn(4096, generator=g)) + 0.4 * torch.randn(4096, generator=g)
    data = torch.stack([torch.randn(4096, 4, generator=g), layer2], dim=1)
    writer.add(data, torch.arange(4096))
    store = writer.close()
    torch.manual_seed(0)
    prior = GenerativePrior.from_activations(store, n_blocks=2, n_llm_layers=3, d_hidden=64, d_mlp=128)
    assert torch.allclose(prior.mean[2], data[:, 1].mean(0), atol=1e-4) and torch.equal(prior.mean[1], torch.zeros(4))
    train(prior, store, TrainConfig(batch_size=256, lr=3e-3, max_steps=400, progress=False, eval_every=0))
    gen = torch.Generator().manual_seed(1)
    at2, at0 = prior.sample(1000, layer=2, generator=gen), prior.sample(1000, layer=0, generator=gen)
    away_from_centre = lambda x, layer: float(prior.normalize(x, layer=layer)[:, 0].abs().gt(0.5).float().mean())  # noqa: E731
    assert away_from_centre(at2, 2) > 0.8  # bimodal: few samples between the modes
    assert away_from_centre(at0, 0) < 0.7  # Gaussian: 62% expected
    assert abs(float(at0[:, 0].mean())) < 0.3 and 0.7 < float(at0[:, 0].std()) < 1.3


def test_incompatible_sources_are_refused_or_warned_about():
    prior = GenerativePrior(
        PriorConfig(d_input=4, n_blocks=1, hook_names=["blocks.1.hook_resid_post"], model_name="gpt2")
    )
    cfg = TrainConfig(batch_size=8, max_steps=1, progress=False, eval_every=0)
    with pytest.raises(ValueError, match="width 5"):
        train(prior, torch.randn(100, 5), cfg)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(prior, torch.randn(5, 4), cfg)
    other = as_source(torch.randn(64, 4), hook_names=["blocks.3.hook_resid_post"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(prior, other, cfg)
    assert any("blocks.3.hook_resid_post" in str(w.message) for w in caught)


def test_a_run_folder_of_another_run_is_not_resumed_silently(tmp_path):
    cfg = TrainConfig(batch_size=64, lr=1e-3, max_steps=4, checkpoint_every=2, eval_every=0, progress=False, plot=False)
    a, b = torch.randn(512, 4), torch.randn(512, 4) * 3 + 1
    train(GenerativePrior.from_activations(a, n_blocks=1), a, cfg, out_dir=tmp_path / "run")
    with pytest.raises(ValueError, match="another run"):
        train(GenerativePrior.from_activations(b, n_blocks=1), b, cfg, out_dir=tmp_path / "run")
    fresh = train(
        GenerativePrior.from_activations(b, n_blocks=1),
        b,
        cfg.replace(max_steps=2),
        out_dir=tmp_path / "run",
        resume=False,
    )
    assert fresh.resumed_from == 0
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step_00000002"]
    again = train(
        GenerativePrior.from_activations(b, n_blocks=1), b, cfg.replace(max_steps=2), out_dir=tmp_path / "run"
    )
    assert again.resumed_from == 2


def test_the_prefetch_thread_is_joined_after_training_and_after_errors(monkeypatch):
    import threading

    alive = lambda: [t for t in threading.enumerate() if t.name == "tl-glp-prefetch"]  # noqa: E731
    data = torch.randn(2048, 4)
    prior = GenerativePrior.from_activations(data, n_blocks=1)
    train(prior, data, TrainConfig(batch_size=64, max_steps=3, progress=False, eval_every=0))
    assert alive() == []
    monkeypatch.setattr(prior, "flow_loss", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        train(prior, data, TrainConfig(batch_size=64, max_steps=3, progress=False, eval_every=0))
    assert alive() == []


def test_checkpoint_steps_are_written_and_never_pruned(tmp_path):
    """Explicit checkpoint steps (a scaling study's geometric sample counts) survive keep_checkpoints."""
    import torch

    from tl_glp import GenerativePrior, TrainConfig, train
    from tl_glp.training.checkpoint import list_checkpoints

    acts = torch.randn(1024, 8)
    prior = GenerativePrior.from_activations(acts, n_blocks=1)
    cfg = TrainConfig(
        batch_size=64,
        lr=1e-3,
        max_steps=12,
        checkpoint_every=5,
        keep_checkpoints=1,
        checkpoint_steps=(2, 3, 7, 50),
        eval_every=0,
        progress=False,
        plot=False,
    )
    result = train(prior, acts, cfg, out_dir=tmp_path / "run")
    steps = [int(p.name.split("_")[1]) for p in list_checkpoints(tmp_path / "run")]
    assert steps == [2, 3, 7, 12]  # 5 and 10 pruned (keep 1), the explicit ones kept, 50 beyond the run ignored
    assert {"steps", "eval", "checkpoint", "setup"} <= set(result.seconds) and result.seconds["steps"] > 0
    try:
        TrainConfig(checkpoint_steps=(0,))
    except ValueError as err:
        assert "checkpoint_steps" in str(err)
    else:
        raise AssertionError("checkpoint_steps=(0,) should be refused")
