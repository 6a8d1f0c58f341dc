"""The GPU path of training (tl_glp.training.accel): a no-op on CPU, checked against a plain loop."""

import warnings

import pytest
import torch
from torch import nn

from tl_glp.activations.sources import Batch, as_source
from tl_glp.core.flow import draw_noise_and_times
from tl_glp.core.prior import GenerativePrior
from tl_glp.training import accel
from tl_glp.training.config import TrainConfig
from tl_glp.training.schedule import lr_factor
from tl_glp.training.trainer import train

CFG = TrainConfig(batch_size=64, lr=1e-3, max_steps=6, eval_every=0, progress=False, val_fraction=0.0, prefetch=0)


def _data() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(1024, 16, generator=g) @ torch.randn(16, 16, generator=g) + 2.0


def _fresh_prior(data: torch.Tensor) -> GenerativePrior:
    torch.manual_seed(1)
    return GenerativePrior.from_activations(data, n_blocks=2, d_hidden=32, d_mlp=64)


def _plain_loop(data: torch.Tensor, cfg: TrainConfig) -> GenerativePrior:
    """What a training step was before the GPU path: eager, float32, unfused AdamW, no pinning."""
    prior = _fresh_prior(data).train()
    src = as_source(data)
    rows, _ = src.split(cfg.val_fraction, cfg.max_val_rows)
    opt = torch.optim.AdamW(prior.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    batches = src.batches(cfg.batch_size, rows=rows, seed=cfg.seed, epoch=0, start=0)
    for step in range(cfg.max_steps):
        batch = next(batches)
        eps, t = draw_noise_and_times(cfg.batch_size, prior.cfg.d_input, gen, "cpu")
        z0 = prior.normalize(batch.acts)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(
                step, cfg.max_steps, warmup_frac=cfg.warmup_frac, start=cfg.warmup_start, final=cfg.final_lr_frac
            )
        loss = prior.flow_loss(z0, eps, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(prior.parameters(), cfg.grad_clip)
        opt.step()
    return prior


def _trained(data: torch.Tensor, cfg: TrainConfig) -> GenerativePrior:
    return train(_fresh_prior(data), data, cfg).prior


def _same_parameters(a: nn.Module, b: nn.Module, atol: float = 0.0) -> bool:
    pairs = zip(a.state_dict().values(), b.state_dict().values())
    return all(torch.equal(x, y) if atol == 0 else torch.allclose(x, y, atol=atol, rtol=0) for x, y in pairs)


def test_default_cpu_training_is_bit_identical_to_a_plain_eager_float32_loop():
    data = _data()
    assert _same_parameters(_trained(data, CFG), _plain_loop(data, CFG))


def test_cpu_never_autocasts_bf16_and_asking_for_it_warns_and_trains_in_float32():
    cpu = torch.device("cpu")
    assert accel.use_autocast(cpu, None) is False
    assert accel.use_autocast(torch.device("cuda"), None) is True
    assert accel.use_autocast(torch.device("cuda"), False) is False
    data = _data()
    with pytest.warns(UserWarning, match="ignored on CPU"):
        asked = _trained(data, CFG.replace(bf16=True))
    assert _same_parameters(asked, _trained(data, CFG))


def test_pinning_happens_only_for_cuda_and_can_be_turned_off(monkeypatch):
    pinned_ids = []
    monkeypatch.setattr(accel, "pin_batch", lambda b: pinned_ids.append(id(b)) or b)
    items = [(0, i, Batch(torch.full((2, 3), float(i)), torch.zeros(2, dtype=torch.long))) for i in range(3)]
    assert list(accel.pinned(iter(items), torch.device("cpu"))) == items and pinned_ids == []
    assert list(accel.pinned(iter(items), torch.device("cuda"), enabled=False)) == items and pinned_ids == []
    out = list(accel.pinned(iter(items), torch.device("cuda")))
    assert [o[:2] for o in out] == [i[:2] for i in items] and pinned_ids == [id(i[2]) for i in items]


def test_a_forced_pin_memory_leaves_a_cpu_run_unchanged():
    data = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pinning attempted (it would need CUDA)
        forced = _trained(data, CFG.replace(pin_memory=True, prefetch=2))
    assert _same_parameters(forced, _trained(data, CFG))


def test_fused_adamw_only_on_cuda():
    assert accel.optimizer_options(torch.device("cpu")) == {}
    assert accel.optimizer_options(torch.device("cuda", 0)) == {"fused": True}


def test_compile_module_is_the_module_itself_when_off_or_auto_on_cpu():
    module = nn.Linear(3, 3)
    assert accel.compile_module(module, None) is module
    assert accel.compile_module(module, "auto") is module
    compiled = accel.compile_module(module, "default", backend="eager")
    x = torch.randn(4, 3)
    assert compiled is not module and torch.equal(compiled(x), module(x))
    assert list(compiled.parameters())[0] is module.weight  # shares parameters: checkpoints are unchanged


def test_compiled_training_step_matches_eager_on_cpu():
    data = _data()
    compiled = _trained(data, CFG.replace(compile="default", compile_backend="aot_eager"))
    assert _same_parameters(compiled, _trained(data, CFG), atol=1e-6)


def test_an_unknown_compile_mode_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="reduce-overhead"):
        TrainConfig(compile="fast")
    with pytest.raises(ValueError, match="Unknown compile mode"):
        accel.compile_module(nn.Linear(2, 2), "turbo")


def test_prefetch_depth_reads_ahead_only_where_a_thread_does_not_steal_the_steps_cores(tmp_path, monkeypatch):
    from tl_glp.training import trainer

    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
    memory = as_source(_data()[:, None])

    class Stream:
        is_streaming = True

    store = object()  # any source that is neither in memory nor a stream: reads from disk
    assert [accel.prefetch_depth(None, cpu, s) for s in (memory, Stream(), store)] == [0, 0, 2]
    assert [accel.prefetch_depth(None, cuda, s) for s in (memory, Stream(), store)] == [2, 2, 2]
    assert accel.prefetch_depth(5, cpu, memory) == 5 and accel.prefetch_depth(0, cuda, store) == 0
    with pytest.raises(ValueError, match="prefetch must be >= 0"):
        accel.prefetch_depth(-1, cpu, memory)
    # the trainer asks for exactly that depth
    depths = []
    real = trainer._prefetch
    monkeypatch.setattr(trainer, "_prefetch", lambda stream, depth: depths.append(depth) or real(stream, depth))
    data = _data()
    train(_fresh_prior(data), data, CFG.replace(prefetch=None))
    train(_fresh_prior(data), data, CFG.replace(prefetch=3))
    assert depths == [0, 3]
