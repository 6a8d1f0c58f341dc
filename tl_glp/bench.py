"""``tl-glp bench ...``: speed figures measured side by side in one run (never timed tests).

Each benchmark prints a small table of medians and the ratio its target is stated in. Run
``tl-glp bench --help`` for the list.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
from torch import nn

from tl_glp.flow import number_of_evaluations
from tl_glp.prior import GenerativePrior
from tl_glp.config import PriorConfig


def timeit(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, sync: Callable[[], None] = lambda: None) -> float:
    """Median wall time of ``fn`` in seconds over ``repeats`` runs, after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_rate(device: torch.device, dtype: torch.dtype, m: int, k: int, n: int, repeats: int = 7) -> float:
    """Measured FLOP/s of one ``[m, k] @ [k, n]`` product (the machine's reference rate)."""
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    seconds = timeit(lambda: a @ b, repeats=repeats, warmup=2, sync=_sync(device))
    return 2 * m * k * n / seconds


def train_step_flops(prior: GenerativePrior, batch: int) -> int:
    """Matrix-multiply FLOPs of one forward + backward: per Linear 2*B*in*out forward, the same
    for the weight gradient, and the same for the input gradient except where the input needs
    none (``in_proj`` reads data, ``time_embed.0``/``layer_embed.0`` read a fixed embedding)."""
    no_input_grad = {"in_proj", "time_embed.0", "layer_embed.0"}
    total = 0
    for name, module in prior.named_modules():
        if isinstance(module, nn.Linear):
            per = 2 * batch * module.in_features * module.out_features
            total += per * (2 if name in no_input_grad else 3)
    return total


def bench_prior(
    d_input: int = 512,
    n_blocks: int = 3,
    batch: int = 1024,
    device: str | None = None,
    repeats: int = 5,
) -> dict[str, float]:
    """Training-step FLOP rate vs the machine's matmul rate, plus sample/project throughput."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    use_bf16 = dev.type == "cuda"
    prior = GenerativePrior(PriorConfig(d_input=d_input, n_blocks=n_blocks)).to(dev)
    opt = torch.optim.AdamW(prior.parameters(), lr=1e-4, fused=dev.type == "cuda")
    acts = torch.randn(batch, d_input, device=dev)
    sync = _sync(dev)

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = prior.loss(acts)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step_s = timeit(step, repeats=repeats, warmup=2, sync=sync)
    d_hidden, d_mlp = prior.cfg.d_hidden, prior.cfg.d_mlp
    ref_dtype = torch.bfloat16 if use_bf16 else torch.float32
    ref_rate = matmul_rate(dev, ref_dtype, batch, d_hidden, d_mlp)  # the step's dominant shape
    flops = train_step_flops(prior, batch)
    achieved = flops / step_s

    prior.eval()
    n_sample = batch
    sample_s = {s: timeit(lambda s=s: prior.sample(n_sample, num_steps=20, solver=s), repeats=3, sync=sync) for s in ("euler", "heun")}
    project_s = timeit(lambda: prior.project(acts), repeats=3, sync=sync)
    out = {
        "step_seconds": step_s,
        "samples_per_s": batch / step_s,
        "achieved_tflops": achieved / 1e12,
        "matmul_tflops": ref_rate / 1e12,
        "fraction_of_matmul_rate": achieved / ref_rate,
        "sample_euler20_acts_per_s": n_sample / sample_s["euler"],
        "sample_heun20_acts_per_s": n_sample / sample_s["heun"],
        "project_t0.5_euler20_acts_per_s": batch / project_s,
        "nfe_sample_euler20": number_of_evaluations(20, "euler"),
        "nfe_sample_heun20": number_of_evaluations(20, "heun"),
        "nfe_project_t0.5_euler20": number_of_evaluations(10, "euler"),
    }
    print(f"bench prior: d_input={d_input} n_blocks={n_blocks} batch={batch} device={dev} "
          f"dtype={'bf16 autocast' if use_bf16 else 'fp32'} threads={torch.get_num_threads()}")
    _print_table(out)
    return out


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _print_table(rows: dict[str, float]) -> None:
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {shown}")
