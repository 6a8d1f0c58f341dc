"""The GPU and torchrun paths of training, checked on the CPU: devices with an index, the backend, DDP's
arguments, and no host synchronisation inside the training loop."""

import sys
import threading
from collections import Counter

import pytest
import torch
from torch import nn

from tl_glp.cli import _run
from tl_glp.core import _dist
from tl_glp.core.config import PriorConfig
from tl_glp.core.prior import GenerativePrior
from tl_glp.training import distributed, trainer
from tl_glp.training.config import TrainConfig
from tl_glp.training.trainer import train


@pytest.fixture
def two_gpus_rank_1(monkeypatch):
    """A process that torchrun started as local rank 1 of 2 on a node whose CUDA is reported available."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")


def test_a_cuda_device_always_gets_this_ranks_index(two_gpus_rank_1, monkeypatch):
    assert _dist.rank_device(None) == torch.device("cuda", 1)
    assert _dist.rank_device("cuda") == torch.device("cuda", 1)
    assert _dist.rank_device("cuda:0") == torch.device("cuda", 0)  # an explicit index wins
    assert _dist.rank_device("cpu") == torch.device("cpu")
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)  # a single process after set_device(1)
    assert _dist.rank_device("cuda") == torch.device("cuda", 1)


def test_without_cuda_the_default_device_is_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _dist.rank_device(None) == torch.device("cpu")


def test_the_cli_loads_the_model_onto_this_ranks_gpu_not_gpu_0(two_gpus_rank_1, monkeypatch):
    """TransformerLens places a model given plain "cuda" on cuda:0 (``device.index or 0``): under torchrun all
    eight processes would load their LLM onto GPU 0."""
    from tl_glp.core import _compat

    seen = []
    monkeypatch.setattr(_compat, "load_model", lambda name, **kw: seen.append(kw["device"]) or "model")
    _run.load_model(_run.ModelArgs(model="some/model"))
    _run.load_model(_run.ModelArgs(model="some/model", device="cuda"))
    _run.load_model(_run.ModelArgs(model="some/model", device="cpu"))
    assert seen == ["cuda:1", "cuda:1", "cpu"]


def test_init_from_env_picks_nccl_only_for_cuda_and_this_ranks_gpu(two_gpus_rank_1, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", torch.device(d))))
    monkeypatch.setattr(distributed.torch_dist, "init_process_group", lambda backend: calls.append(("init", backend)))
    assert distributed.init_from_env() is True
    assert calls == [("set_device", torch.device("cuda", 1)), ("init", "nccl")]
    calls.clear()
    distributed.init_from_env("cpu")  # a CPU run on a GPU node: NCCL cannot reduce CPU tensors
    assert calls == [("init", "gloo")]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # two processes, one GPU
    with pytest.raises(ValueError, match="one process per GPU"):
        distributed.init_from_env()


def test_the_collect_cli_initialises_the_process_group_before_loading_the_model(monkeypatch, tmp_path):
    from tl_glp.cli import collect as collect_cli
    from tl_glp.training import distributed

    order = []
    monkeypatch.setattr(distributed, "init_from_env", lambda device=None: order.append("init"))

    class Stop(Exception):
        pass

    def load(*a, **k):
        order.append("load")
        raise Stop

    monkeypatch.setattr(collect_cli, "load_model", load)
    args = collect_cli.CollectArgs(hook=("blocks.0.hook_resid_post",), out=str(tmp_path / "s"))
    with pytest.raises(Stop):
        collect_cli.collect(args)
    assert order == ["init", "load"]  # without it, every torchrun process collects every document into one folder


def test_ddp_gets_the_device_index_and_no_per_step_buffer_broadcast(monkeypatch):
    seen = {}

    def fake_ddp(module, device_ids=None, broadcast_buffers=True, forward_sync_buffers=True):
        seen.update(device_ids=device_ids, per_step_buffer_sync=broadcast_buffers and forward_sync_buffers)
        return module

    monkeypatch.setattr(nn.parallel, "DistributedDataParallel", fake_ddp)
    module = nn.Linear(2, 2)
    assert trainer.data_parallel(module, torch.device("cuda", 3)) is module
    assert seen == {"device_ids": [3], "per_step_buffer_sync": False}
    trainer.data_parallel(module, torch.device("cpu"))
    assert seen["device_ids"] is None
    with pytest.raises(ValueError, match="with an index"):
        trainer.data_parallel(module, torch.device("cuda"))


# --------------------------------------------------------------------------- host synchronisation
SYNCING = ("__bool__", "__float__", "__int__", "item", "tolist", "cpu", "numpy")
"""Tensor -> Python conversions: on CUDA each one waits for every queued kernel."""


def _conversions_in_tl_glp(monkeypatch, run) -> Counter:
    """Calls of :data:`SYNCING` made from tl_glp code in the calling thread while ``run()`` runs (the prefetch
    thread, which only touches CPU batches, is left out; so is the CPU optimizer's own ``.item()``)."""
    main, seen = threading.get_ident(), Counter()
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, _name=name, **k):
            caller = sys._getframe(1).f_code.co_filename
            if threading.get_ident() == main and "tl_glp" in caller:
                seen[(_name, caller.rsplit("tl_glp", 1)[-1], sys._getframe(1).f_lineno)] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    try:
        run()
    finally:
        monkeypatch.undo()
    return seen


@pytest.mark.parametrize("multi_layer", [False, True])
def test_the_training_loop_does_not_synchronise_with_the_device_each_step(monkeypatch, multi_layer):
    """Only logging (every ``log_every`` steps) may read a number back; the old loop validated each batch
    (``bool(isfinite(acts).all())``, and the layer range for a multi-layer prior) on the device every step."""
    g = torch.Generator().manual_seed(0)
    hooks = ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"] if multi_layer else ["blocks.0.hook_resid_post"]
    data = torch.randn(2048, len(hooks), 8, generator=g)

    def run(steps):
        from tl_glp.activations.sources import InMemoryActivations

        src = InMemoryActivations(data, hooks)
        torch.manual_seed(0)
        cfg = PriorConfig(d_input=8, n_blocks=1, hook_names=hooks, n_llm_layers=3 if multi_layer else None)
        prior = GenerativePrior(cfg).fit_normalizer(src)
        return lambda: train(
            prior,
            src,
            TrainConfig(
                batch_size=64, max_steps=steps, progress=False, eval_every=0, log_every=1000, prefetch=2, val_fraction=0
            ),
        )

    short = _conversions_in_tl_glp(monkeypatch, run(3))
    long = _conversions_in_tl_glp(monkeypatch, run(11))
    assert long == short, f"conversions that grow with the steps: {long - short}"


def test_a_checkpoint_of_a_cuda_run_is_refused_on_the_cpu_with_a_clear_error(tmp_path):
    """A CUDA generator's state (seed + offset, 16 bytes) does not fit a CPU generator: the old message was
    torch's "RNG state is wrong size". The checkpoint below is what a CUDA run writes, faked on the CPU."""
    import json

    from safetensors.torch import load_file, save_file

    from tl_glp.training import checkpoint as ckpt

    data = torch.randn(512, 4)
    cfg = TrainConfig(batch_size=64, max_steps=4, checkpoint_every=2, eval_every=0, progress=False, plot=False)
    train(GenerativePrior.from_activations(data, n_blocks=1), data, cfg, out_dir=tmp_path)
    last = ckpt.list_checkpoints(tmp_path)[-1]
    state = json.loads((last / ckpt.STATE_FILE).read_text())
    (last / ckpt.STATE_FILE).write_text(json.dumps({**state, "generator_device": "cuda:0"}))
    tensors = load_file(last / ckpt.OPTIMIZER_FILE)
    save_file({**tensors, "rng.noise": torch.zeros(16, dtype=torch.uint8)}, last / ckpt.OPTIMIZER_FILE)
    prior = GenerativePrior.from_activations(data, n_blocks=1)
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    with pytest.raises(ValueError, match="noise generator was on cuda, but this run trains on cpu"):
        train(prior, data, cfg.replace(device="cpu"), out_dir=tmp_path)
    assert all(torch.equal(before[k], v) for k, v in prior.state_dict().items())  # refused before loading anything


def test_under_bf16_autocast_the_normaliser_and_the_loss_stay_float32(monkeypatch):
    """The CUDA step's autocast, forced on the CPU: the statistics and the normalised batch are float32 and made
    outside autocast; only the network's matrix products run in bf16, and the loss comes back float32."""
    from tl_glp.core.normalizer import Normalizer
    from tl_glp.training import accel

    monkeypatch.setattr(accel, "use_autocast", lambda device, bf16: True)
    seen = []
    original = Normalizer.normalize

    def normalize(self, x, rows=None):
        out = original(self, x, rows)
        seen.append((torch.is_autocast_enabled("cpu"), self.mean.dtype, self.var.dtype, out.dtype))
        return out

    monkeypatch.setattr(Normalizer, "normalize", normalize)
    data = torch.randn(512, 8) * 50 + 1000  # a large mean: bf16 would round it
    prior = GenerativePrior.from_activations(data, n_blocks=1)
    losses = []
    monkeypatch.setattr(prior, "flow_loss", lambda *a, f=prior.flow_loss: losses.append(f(*a)) or losses[-1])
    train(prior, data, TrainConfig(batch_size=64, max_steps=2, progress=False, eval_every=0, val_fraction=0))
    assert seen and all(s == (False, torch.float32, torch.float32, torch.float32) for s in seen)
    assert [loss.dtype for loss in losses] == [torch.float32, torch.float32]
