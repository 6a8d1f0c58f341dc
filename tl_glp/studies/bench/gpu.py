"""``tl-glp bench gpu``: every GPU figure of issue 19 in one offline run (at most ~8 minutes on one GPU).

Models are random-weight, built from :class:`transformer_lens.HookedTransformerConfig` of the shapes of
Llama-3.2-1B (all 16 layers, hooked at layer 7) and Llama-3.1-8B (hooked at layer 15; only its first
16 of 32 layers are built, since every figure here stops at the hooked layer, except steering, which
runs on the 1B shape). Priors have the published glp-llama1b-d6 (d_input 2048, 6 blocks) and
glp-llama8b-d6 (d_input 4096, 6 blocks) shapes. Nothing is downloaded.

Sections (each a dict in the JSON; a section that fails records its error and the run goes on):

- ``train``: one optimisation step of each prior shape under bf16 autocast (float32 on CPU): samples/s,
  achieved TFLOP/s (FLOPs counted as :data:`~tl_glp.studies.bench.basic.FLOPS_COUNTED` says: forward +
  backward = 3x forward for the matrix products) and its share of a bf16 (CPU: float32) matrix-product rate
  measured in the same run on the step's dominant shape, and of the GPU's dense bf16 peak from its data
  sheet where known (MFU); the step's memory, estimated before it runs (:func:`train_step_memory`; the
  batch is halved until the estimate fits in 90% of the GPU) and measured (peak allocated); on the 1B shape
  also the compiled step (``TrainConfig.compile``) and the recompilations during its timed steps (0 expected).
- ``collect``: :func:`~tl_glp.activations.collect.collect_activations` tokens/s vs a bare forward to the layer.
- ``streaming``: streaming training samples/s (the training loop, after the stream's warm-up) vs
  collect-then-train and vs the serial bound ``1 / (1/forward + 1/train)`` (rows/s); the host
  synchronisations :func:`~tl_glp.train` made (CUDA's sync debug mode), which must not grow with its steps.
- ``steer``: generation ms/token with no hook, plain steering, prior-guided (reference, ``euler:4``) and the
  compiled projection (:meth:`~tl_glp.core.prior.GenerativePrior.compile_projection`), plus the
  projection alone per token, compiled vs eager; the graphs compiled and the recompilations while timing.

- ``ddp``: on a machine with 2 or more GPUs, one process per GPU (up to 8) with NCCL, as ``torchrun
  --nproc-per-node N`` would start them: the device each rank computed on, samples/s of distributed training
  from memory, whether every rank ends with the same weights, and a stream whose documents run out on one
  rank first (every rank must stop at the same step with ``StreamExhausted``, none left waiting).

Every section also reports ``peak_gib``, the most GPU memory it had allocated (``torch.cuda.max_memory_allocated``),
next to the GPU's total (``device_memory_gib``), and ``section_seconds`` against the 8-minute target.
- ``probe_topk``: meta-neuron extraction rows/s, 1-D probing seconds per dataset on all meta-neurons, and
  top-activation tokens/s vs a bare forward plus one denoiser evaluation per token.

``tiny=True`` runs every branch with tiny shapes on the CPU (the test suite does), and is the CPU
benchmark of the compiled projection: ``steer.ms_project_compiled`` vs ``steer.ms_project_eager``.

Run on a GPU machine::

    tl-glp bench gpu --out bench_gpu.json
    python -c "from tl_glp.studies.bench.gpu import bench_gpu; bench_gpu(out='bench_gpu.json')"
"""

from __future__ import annotations

import gc
import math
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch

from tl_glp.activations.collect import collect_activations
from tl_glp.activations.streaming import StreamingActivations
from tl_glp.core import _io
from tl_glp.core._dist import rank_device
from tl_glp.core.config import PriorConfig
from tl_glp.core.flow import draw_noise_and_times
from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig
from tl_glp.interpret import top_activations
from tl_glp.probing import MetaNeurons, probe_1d
from tl_glp.steering.hooks import steer
from tl_glp.studies.bench.basic import FLOPS_COUNTED, matmul_rate, train_step_flops
from tl_glp.training import TrainConfig, train

BUDGET_S = 450.0
"""Sections still to run are skipped once a run has used this many seconds (the target is 8 minutes)."""

MEMORY_SHARE = 0.9
"""The training step's estimated peak must fit in this share of the GPU's memory (else the batch is halved)."""

PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.4),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # the SXM part ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
    ("L40S", 362.1),
)
"""Dense bf16 tensor-core peaks from NVIDIA's data sheets (TFLOP/s, no sparsity), matched by device-name
substring in this order; the denominator of the MFU figure."""

LLAMA_SHAPES: dict[str, dict[str, int]] = {
    "llama1b": {
        "d_model": 2048,
        "n_layers": 16,
        "n_heads": 32,
        "n_kv": 8,
        "d_head": 64,
        "d_mlp": 8192,
        "vocab": 128256,
        "layer": 7,
        "build_layers": 16,
        "n_blocks": 6,
    },
    "llama8b": {
        "d_model": 4096,
        "n_layers": 32,
        "n_heads": 32,
        "n_kv": 8,
        "d_head": 128,
        "d_mlp": 14336,
        "vocab": 128256,
        "layer": 15,
        "build_layers": 16,
        "n_blocks": 6,
    },
}
"""The two Llama shapes (Hugging Face configs of Llama-3.2-1B and Llama-3.1-8B), the hooked layer and the prior depth."""

TINY_SHAPES: dict[str, dict[str, int]] = {
    "llama1b": {
        "d_model": 64,
        "n_layers": 3,
        "n_heads": 4,
        "n_kv": 2,
        "d_head": 16,
        "d_mlp": 128,
        "vocab": 512,
        "layer": 1,
        "build_layers": 3,
        "n_blocks": 2,
    },
    "llama8b": {
        "d_model": 96,
        "n_layers": 3,
        "n_heads": 4,
        "n_kv": 2,
        "d_head": 24,
        "d_mlp": 192,
        "vocab": 512,
        "layer": 1,
        "build_layers": 2,
        "n_blocks": 2,
    },
}


def llama_like_model(shape: dict[str, int], device: torch.device, dtype: torch.dtype, seed: int = 0) -> Any:
    """A random-weight ``HookedTransformer`` with a Llama architecture (grouped-query attention, RMSNorm,
    rotary, gated SiLU MLP) of ``shape``, built with ``shape["build_layers"]`` layers directly on ``device``."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=shape["build_layers"],
        d_model=shape["d_model"],
        d_head=shape["d_head"],
        n_heads=shape["n_heads"],
        n_key_value_heads=shape["n_kv"],
        d_mlp=shape["d_mlp"],
        d_vocab=shape["vocab"],
        n_ctx=1024,
        act_fn="silu",
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=shape["d_head"],
        rotary_base=500000,
        gated_mlp=True,
        final_rms=True,
        original_architecture="LlamaForCausalLM",
        dtype=dtype,
        device=str(device),
        seed=seed,
        model_name=f"random-llama-{shape['d_model']}d-{shape['build_layers']}l",
    )
    with torch.device(device) if device.type == "cuda" else nullcontext():
        model = HookedTransformer(cfg)
    return model.eval()


def prior_of_shape(shape: dict[str, int], device: torch.device, hook: str | None = None) -> GenerativePrior:
    """A random prior of the published shape for ``shape`` (d_hidden 2d, d_mlp 4d), built on ``device``,
    with non-identity blocks (init zeroes ``down_proj``) and unit statistics."""
    cfg = PriorConfig(d_input=shape["d_model"], n_blocks=shape["n_blocks"], hook_names=[hook] if hook else [])
    with torch.device(device) if device.type == "cuda" else nullcontext():
        prior = GenerativePrior(cfg)
    with torch.no_grad():
        for block in prior.blocks:
            block.down_proj.weight.normal_(0.0, 0.5 / block.down_proj.in_features**0.5)
    return prior.to(device)


def bench_gpu(
    tiny: bool = False, out: str | None = None, device: str | None = None, *, compile_backend: str = "inductor"
) -> dict:
    """Measure every GPU figure (module docstring) and return them; with ``out``, also write them as JSON
    (atomically). ``tiny``: tiny shapes, meant for the CPU (seconds to a minute, plus compile time).
    ``compile_backend``: ``torch.compile`` backend of the compiled variants (``"eager"`` only traces: the
    test suite uses it to stay fast)."""
    dev = rank_device(device)  # "cuda" -> "cuda:0": an index for TransformerLens and the memory counters
    shapes = TINY_SHAPES if tiny else LLAMA_SHAPES
    start = time.perf_counter()
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "tiny": tiny,
        "autocast": "bf16" if dev.type == "cuda" else "none (float32)",
        "compile_backend": compile_backend,
        "device_memory_gib": torch.cuda.get_device_properties(dev).total_memory / 2**30 if dev.type == "cuda" else None,
        "flops_counted": FLOPS_COUNTED,
        "budget_s": BUDGET_S,
        "models": "random weights; llama8b built with its first {} of {} layers".format(
            shapes["llama8b"]["build_layers"], shapes["llama8b"]["n_layers"]
        ),
    }
    sections: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("train", lambda: _train_section(shapes, dev, tiny, compile_backend)),
        ("collect", lambda: _collect_section(shapes, dev, tiny)),
        ("streaming", lambda: _streaming_section(shapes["llama1b"], dev, tiny, result.get("train", {}))),
        ("steer", lambda: _steer_section(shapes["llama1b"], dev, tiny, compile_backend)),
        ("probe_topk", lambda: _probe_section(shapes["llama1b"], dev, tiny)),
        ("ddp", lambda: _ddp_section(dev)),
    ]
    for name, run in sections:
        if time.perf_counter() - start > BUDGET_S:
            result[name] = {"skipped": f"time budget of {BUDGET_S:.0f} s used up"}
            continue
        tick = time.perf_counter()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        try:
            result[name] = run()
        except Exception as err:  # one section's failure must not lose the others' figures
            result[name] = {"error": f"{type(err).__name__}: {err}"}
        result[name]["section_seconds"] = time.perf_counter() - tick
        if dev.type == "cuda":
            result[name]["peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
        _free(dev)
        _print_section(name, result[name])
        if out is not None:
            _io.write_json(out, result)  # after every section: a run cut short keeps what it measured
    result["total_seconds"] = time.perf_counter() - start
    if out is not None:
        _io.write_json(out, result)
    print(
        f"bench gpu: {result['device']}, torch {result['torch']}, {result['total_seconds']:.0f} s"
        + (f", JSON in {out}" if out else "")
    )
    return result


# --------------------------------------------------------------------------- (a) training step
def _train_section(shapes: dict[str, dict[str, int]], dev: torch.device, tiny: bool, backend: str) -> dict[str, Any]:
    out: dict[str, Any] = {"flops_counted": FLOPS_COUNTED}
    use_bf16 = dev.type == "cuda"
    ref_dtype = torch.bfloat16 if use_bf16 else torch.float32
    spec_peak = peak_bf16_tflops(dev)
    for key, shape in shapes.items():
        name = f"glp-{key}-d{shape['n_blocks']}"
        batch = 128 if tiny else 4096
        cfg = PriorConfig(d_input=shape["d_model"], n_blocks=shape["n_blocks"])
        estimate = train_step_memory(cfg, batch, bf16=use_bf16)
        if dev.type == "cuda":  # halve the batch until the step fits (it never has to on an 80 GB GPU)
            capacity = MEMORY_SHARE * torch.cuda.get_device_properties(dev).total_memory / 2**30
            while estimate["total_gib"] > capacity and batch > 256:
                batch //= 2
                estimate = train_step_memory(cfg, batch, bf16=use_bf16)
        out.update({f"{name}_estimated_{k}": v for k, v in estimate.items()})
        out[f"{name}_batch"] = batch
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        prior = prior_of_shape(shape, dev).train()
        opt = torch.optim.AdamW(prior.parameters(), lr=1e-5, fused=dev.type == "cuda")
        acts = torch.randn(batch, shape["d_model"], device=dev)
        gen = torch.Generator(device=dev).manual_seed(0)

        def step(
            loss_fn: Callable[..., torch.Tensor],
            prior: GenerativePrior = prior,
            opt: Any = opt,
            acts: torch.Tensor = acts,
            gen: torch.Generator = gen,
            d: int = shape["d_model"],
            batch: int = batch,
        ) -> None:
            eps, t = draw_noise_and_times(batch, d, gen, dev)
            z0 = prior.normalizer.normalize(acts)  # as the trainer: outside autocast, float32, no input checks
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = loss_fn(z0, eps, t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
            opt.step()

        reps = 2 if tiny else 5
        step_s = _median_time(lambda step=step, p=prior: step(p.flow_loss), dev, reps, warmup=1 if tiny else 2)
        if dev.type == "cuda":
            out[f"{name}_peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
        flops = train_step_flops(prior, batch)
        rate = matmul_rate(dev, ref_dtype, batch, prior.cfg.d_hidden, prior.cfg.d_mlp)
        out[f"{name}_params_m"] = sum(p.numel() for p in prior.parameters()) / 1e6
        out[f"{name}_step_ms"] = 1e3 * step_s
        out[f"{name}_samples_per_s"] = batch / step_s
        out[f"{name}_achieved_tflops"] = flops / step_s / 1e12
        out[f"{name}_matmul_tflops"] = rate / 1e12
        out[f"{name}_share_of_matmul_rate"] = flops / step_s / rate
        if spec_peak is not None:
            out[f"{name}_mfu_vs_spec_bf16_peak"] = flops / step_s / (spec_peak * 1e12)
        if key == "llama1b":
            compiled = torch.compile(prior.flow_loss, backend=backend)
            t0 = time.perf_counter()
            step(compiled)
            _sync(dev)
            out[f"{name}_compile_s"] = time.perf_counter() - t0
            graphs = _graphs_compiled()
            c_s = _median_time(lambda step=step, compiled=compiled: step(compiled), dev, reps, warmup=1)
            out[f"{name}_compiled_recompiles_while_timed"] = float(_graphs_compiled() - graphs)
            out[f"{name}_compiled_samples_per_s"] = batch / c_s
            out[f"{name}_ratio_compiled_vs_eager"] = step_s / c_s
        step = prior = opt = acts = None  # type: ignore[assignment]  # free this shape before the next
        _free(dev)
    if spec_peak is not None:
        out["spec_bf16_peak_tflops"] = spec_peak
    return out


def peak_bf16_tflops(dev: torch.device) -> float | None:
    """The GPU's dense bf16 peak from :data:`PEAK_BF16_TFLOPS`, or None (CPU, or a GPU not in the table)."""
    if dev.type != "cuda":
        return None
    name = torch.cuda.get_device_name(dev)
    return next((peak for part, peak in PEAK_BF16_TFLOPS if part in name), None)


def train_step_memory(cfg: PriorConfig, batch: int, bf16: bool = True) -> dict[str, float]:
    """Peak memory (GiB) of one training step of a prior of ``cfg`` on ``batch`` rows, by kind, estimated
    without allocating anything: two steps run on fake tensors (``FakeTensorMode``) under PyTorch's
    ``MemTracker``, on the CPU with bf16 autocast when ``bf16`` (the CUDA step's dtypes). Parameters,
    gradients and AdamW's two moments are 16 bytes per parameter (float32); activations include autocast's
    bf16 copies of the weights. The CUDA context and the allocator's fragmentation come on top.

    Example (4 bytes each for parameters and gradients, 8 for the optimizer):
        >>> est = train_step_memory(PriorConfig(d_input=8, n_blocks=1), batch=16)
        >>> n = sum(p.numel() for p in GenerativePrior(PriorConfig(d_input=8, n_blocks=1)).parameters())
        >>> round(est["states_gib"] * 2**30 / n)
        16
    """
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    with FakeTensorMode():
        prior = GenerativePrior(cfg).train()
        opt = torch.optim.AdamW(prior.parameters(), lr=1e-5, fused=True)  # keeps the step count a tensor
        acts = torch.randn(batch, cfg.d_input)
        tracker = MemTracker()
        tracker.track_external(prior, opt)
        with tracker:
            for _ in range(2):  # the second step holds the optimizer state the first one created
                eps, t = torch.randn(batch, cfg.d_input), torch.rand(batch)
                z0 = prior.normalizer.normalize(acts)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = prior.flow_loss(z0, eps, t)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
                opt.step()
                tracker.reset_mod_stats()
        peak = next(iter(tracker.get_tracker_snapshot("peak").values()))
    by_kind = {getattr(k, "name", str(k)): v / 2**30 for k, v in peak.items()}
    states = sum(by_kind.get(k, 0.0) for k in ("PARAM", "GRAD", "OPT", "BUFFER"))
    return {
        "states_gib": states,
        "activations_gib": by_kind.get("ACT", 0.0) + by_kind.get("TEMP", 0.0),
        "total_gib": by_kind["Total"],
    }


# --------------------------------------------------------------------------- (b) collection
def _collect_section(shapes: dict[str, dict[str, int]], dev: torch.device, tiny: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n_docs, seq, batch = (8, 32, 4) if tiny else (128, 512, 32)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    for key, shape in shapes.items():
        model = llama_like_model(shape, dev, dtype)
        hook = f"blocks.{shape['layer']}.hook_resid_post"
        tokens = torch.randint(10, shape["vocab"], (n_docs, seq), generator=torch.Generator().manual_seed(0))

        def bare(model: Any = model, tokens: torch.Tensor = tokens, layer: int = shape["layer"]) -> None:
            with torch.inference_mode():
                for i in range(0, n_docs, batch):
                    model(tokens[i : i + batch].to(dev), stop_at_layer=layer + 1)

        def collect(model: Any = model, tokens: torch.Tensor = tokens, hook: str = hook) -> None:
            collect_activations(model, tokens, hook, batch_size=batch, context_size=seq, progress=False)

        reps = 1 if tiny else 3
        t_bare = _median_time(bare, dev, reps)
        t_collect = _median_time(collect, dev, reps)
        n_tok = n_docs * seq
        out[f"{key}_bare_forward_tok_per_s"] = n_tok / t_bare
        out[f"{key}_collect_tok_per_s"] = n_tok / t_collect
        out[f"{key}_ratio_collect_vs_bare"] = t_bare / t_collect
        del model
        _free(dev)
    out["tokens"] = n_docs * seq
    return out


# --------------------------------------------------------------------------- (c) streaming
def _streaming_section(
    shape: dict[str, int], dev: torch.device, tiny: bool, train_figures: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n_docs, seq, batch = (12, 32, 64) if tiny else (72, 512, 4096)  # a few documents more than the steps use
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model = llama_like_model(shape, dev, dtype)
    hook = f"blocks.{shape['layer']}.hook_resid_post"
    tokens = torch.randint(10, shape["vocab"], (n_docs, seq), generator=torch.Generator().manual_seed(1))
    steps = (n_docs - 8) * seq // batch
    cfg = TrainConfig(
        batch_size=batch,
        lr=1e-5,
        max_steps=steps,
        eval_every=0,
        progress=False,
        val_fraction=0.0,
        log_every=steps,
        plot=False,
    )

    tick = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, n_docs, 8):
            model(tokens[i : i + 8].to(dev), stop_at_layer=shape["layer"] + 1)
    _sync(dev)
    forward_rows_s = n_docs * seq / (time.perf_counter() - tick)

    tick = time.perf_counter()
    source = collect_activations(model, tokens, hook, batch_size=8, context_size=seq, progress=False)
    collect_s = time.perf_counter() - tick
    prior = prior_of_shape(shape, dev, hook)
    prior.fit_normalizer(source)
    tick = time.perf_counter()
    with _host_syncs(dev) as syncs:
        result = train(prior, source, cfg)
    train_s = time.perf_counter() - tick
    if dev.type == "cuda":  # CUDA's sync debug mode; nothing synchronises on the CPU
        out["host_syncs_in_train"] = float(syncs[0])
    out["train_steps"] = float(steps)
    train_rows_s = result.metrics[-1]["samples_per_s"]
    rows = steps * batch
    out["forward_rows_per_s"] = forward_rows_s
    out["train_rows_per_s"] = train_rows_s
    out["serial_bound_rows_per_s"] = 1.0 / (1.0 / forward_rows_s + 1.0 / train_rows_s)
    out["collect_then_train_rows_per_s"] = rows / (collect_s + train_s)
    if "glp-llama1b-d6_samples_per_s" in train_figures:  # the same prior shape, timed alone in section (a)
        out["train_rows_per_s_section_a"] = train_figures["glp-llama1b-d6_samples_per_s"]
    stream = StreamingActivations(
        model,
        tokens,
        hook,
        context_size=seq,
        forward_batch=8,
        buffer_rows=4 * batch,
        warmup_rows=batch,
        val_rows=0,
    )
    tick = time.perf_counter()
    _ = stream.validation  # the one-off warm-up (normaliser statistics), timed on its own
    out["streaming_warmup_s"] = time.perf_counter() - tick
    prior = prior_of_shape(shape, dev, hook)
    tick = time.perf_counter()
    streamed = train(prior, stream, cfg)
    out["streaming_wall_rows_per_s"] = rows / (time.perf_counter() - tick)
    out["streaming_rows_per_s"] = streamed.metrics[-1]["samples_per_s"]
    out["ratio_streaming_vs_serial_bound"] = out["streaming_rows_per_s"] / out["serial_bound_rows_per_s"]
    out["ratio_streaming_vs_collect_then_train"] = out["streaming_rows_per_s"] / out["collect_then_train_rows_per_s"]
    return out


# --------------------------------------------------------------------------- (d) steering
def _steer_section(shape: dict[str, int], dev: torch.device, tiny: bool, backend: str) -> dict[str, Any]:
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model = llama_like_model(shape, dev, dtype)
    hook = f"blocks.{shape['layer']}.hook_resid_post"
    prior = prior_of_shape(shape, dev, hook).to(dtype).eval()
    batch, prompt_len, new = (2, 8, 3) if tiny else (1, 32, 32)
    tokens = torch.randint(10, shape["vocab"], (batch, prompt_len), generator=torch.Generator().manual_seed(0)).to(dev)
    direction = torch.randn(shape["d_model"])
    direction = (direction / direction.norm()).to(dev)
    mode = "reduce-overhead" if dev.type == "cuda" else "default"
    compiled = prior.compile_projection(mode, backend=backend).compiled_projection
    prior.compiled_projection = None

    def generate() -> None:
        model.generate(
            tokens, max_new_tokens=new, do_sample=False, stop_at_eos=False, verbose=False, use_past_kv_cache=True
        )

    def steered(projection: ProjectionConfig | None, use_compiled: bool = False) -> Callable[[], None]:
        def run() -> None:
            prior.compiled_projection = compiled if use_compiled else None
            kwargs = {"prior": prior, "projection": projection} if projection is not None else {}
            with steer(model, direction, 4.0, hook_name=hook, positions="last", **kwargs):
                generate()
            prior.compiled_projection = None

        return run

    ref, euler4 = ProjectionConfig(seed=0), ProjectionConfig(seed=0, schedule="euler:4")
    runners = {
        "no_hook": generate,
        "plain": steered(None),
        "prior_reference": steered(ref),
        "prior_euler4": steered(euler4),
        "prior_reference_compiled": steered(ref, True),
        "prior_euler4_compiled": steered(euler4, True),
    }
    tick = time.perf_counter()
    for fn in runners.values():
        fn()  # warm-up (and compilation of the compiled variants)
    _sync(dev)
    warmup_s = time.perf_counter() - tick
    graphs = _graphs_compiled()
    reps = 2 if tiny else 5
    samples: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(reps):  # interleaved, so drift hits all alike
        for key, fn in runners.items():
            samples[key].append(_time_once(fn, dev) / new)
    recompiles = _graphs_compiled() - graphs  # 0: one graph per grid, compiled in the warm-up and reused
    med = {k: statistics.median(v) for k, v in samples.items()}
    out: dict[str, Any] = {f"ms_per_token_{k}": 1e3 * v for k, v in med.items()}
    out["ratio_reference_vs_plain"] = med["prior_reference"] / med["plain"]
    out["ratio_compiled_reference_vs_reference"] = med["prior_reference_compiled"] / med["prior_reference"]
    out["ratio_compiled_euler4_vs_euler4"] = med["prior_euler4_compiled"] / med["prior_euler4"]

    x = torch.randn(batch, shape["d_model"], device=dev, dtype=dtype)  # the projection alone, one token's rows

    def project(use_compiled: bool) -> Callable[[], None]:
        def run() -> None:
            prior.compiled_projection = compiled if use_compiled else None
            prior.project(x, ref)
            prior.compiled_projection = None

        return run

    eager_s, fast_s = _interleaved([project(False), project(True)], dev, reps=7 if tiny else 20)
    out["compiled_graphs"] = float(len(compiled._compiled))
    out["recompiles_while_timed"] = float(recompiles)
    out["ms_project_eager"] = 1e3 * eager_s
    out["ms_project_compiled"] = 1e3 * fast_s
    out["ratio_project_eager_vs_compiled"] = eager_s / fast_s
    out["compile_mode"] = mode
    out["warmup_and_compile_s"] = warmup_s
    out["compiled_calls"] = float(compiled.calls)
    out["compiled_fallbacks"] = float(compiled.fallbacks)
    out["setting"] = (
        f"batch {batch}, prompt {prompt_len}, {new} new tokens, greedy, KV cache, positions='last', alpha 4, prior {prior.cfg.n_blocks} blocks in {str(dtype).split('.')[-1]}"
    )
    return out


# --------------------------------------------------------------------------- (e) probing and top activations
def _probe_section(shape: dict[str, int], dev: torch.device, tiny: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    hook = f"blocks.{shape['layer']}.hook_resid_post"
    prior = prior_of_shape(shape, dev, hook).eval()
    n_rows = 128 if tiny else 2048
    acts = torch.randn(n_rows, shape["d_model"], device=dev)
    enc_s = _median_time(lambda: prior.encode(acts, batch_size=1024), dev, 3)
    out["encode_rows_per_s"] = n_rows / enc_s
    out["n_meta_neurons"] = float(prior.n_features)

    n_train, n_test = (128, 64) if tiny else (1024, 400)
    g = torch.Generator().manual_seed(0)
    y = (torch.arange(n_train + n_test) % 2).to(dev)
    feats = prior.encode(torch.randn(n_train + n_test, shape["d_model"], generator=g).to(dev)).float()
    feats[:, 0] += 0.5 * y.to(dev)  # one informative feature
    tr, te = slice(0, n_train), slice(n_train, None)
    probe_s = _median_time(lambda: probe_1d(feats[tr], y[tr], feats[te], y[te], top_k=512), dev, 2, warmup=1)
    feats = None  # type: ignore[assignment]
    out["probe_1d_s_per_dataset"] = probe_s
    out["probe_1d_setting"] = (
        f"{n_train} train / {n_test} test rows, {prior.n_features} candidates, top 512 cross-validated"
    )
    _free(dev)

    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model = llama_like_model(shape, dev, dtype)
    n_docs, seq, batch = (4, 16, 4) if tiny else (64, 256, 16)
    tokens = torch.randint(10, shape["vocab"], (n_docs, seq), generator=torch.Generator().manual_seed(2))
    times = torch.full((batch * seq,), 0.1, device=dev)

    def bare() -> None:
        with torch.inference_mode():
            for i in range(0, n_docs, batch):
                _, cache = model.run_with_cache(
                    tokens[i : i + batch].to(dev), names_filter=[hook], stop_at_layer=shape["layer"] + 1
                )
                z = prior.normalize(cache[hook].reshape(-1, shape["d_model"]).float())
                prior.velocity(z, times[: z.shape[0]])

    def topk() -> None:
        top_activations(
            model,
            MetaNeurons(prior, batch_size=batch * seq),
            tokens,
            hook_name=hook,
            k=20,
            batch_size=batch,
            context_size=seq,
            progress=False,
        )

    t_bare, t_topk = _interleaved([bare, topk], dev, reps=1 if tiny else 3)
    out["bare_forward_plus_denoiser_tok_per_s"] = n_docs * seq / t_bare
    out["top_activations_tok_per_s"] = n_docs * seq / t_topk
    out["ratio_top_activations_vs_bare"] = t_bare / t_topk
    return out


# --------------------------------------------------------------------------- (f) several GPUs
def _ddp_section(dev: torch.device, processes: int | None = None) -> dict[str, Any]:
    """One process per GPU, up to 8 (``processes`` on the CPU: that many gloo processes, for the tests)."""
    import json
    import socket
    import tempfile
    from pathlib import Path

    import torch.multiprocessing as mp

    gpus = torch.cuda.device_count() if dev.type == "cuda" else 0
    world = processes or min(gpus, 8)
    if world < 2:
        return {"gpus": float(gpus), "note": "needs 2 or more GPUs; nothing run"}
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_ddp_worker, args=(world, tmp, port, dev.type), nprocs=world, join=True)
        ranks = [json.loads((Path(tmp) / f"rank{r}.json").read_text()) for r in range(world)]
    first = ranks[0]
    return {
        "processes": float(world),
        "backend": first["backend"],
        "rank_devices": " ".join(r["device"] for r in ranks),
        "ranks_on_their_own_gpu": float(all(r["device"] == f"cuda:{i}" for i, r in enumerate(ranks))),
        "weights_equal_across_ranks": float(len({r["checksum"] for r in ranks}) == 1),
        "ddp_samples_per_s": first["samples_per_s"],
        # the ranks vote each step (a collective): all raising it means all stopped at the same step, none hung
        "stream_end_same_step_on_all_ranks": float(all(r["stream_end"].startswith("StreamExhausted") for r in ranks)),
        "stream_end_rank0": first["stream_end"],
    }


def _ddp_worker(rank: int, world: int, folder: str, port: int, device_type: str) -> None:
    """One rank of :func:`_ddp_section` (a top-level function, so ``mp.spawn`` can start it)."""
    import json
    import os
    from pathlib import Path

    import torch.distributed as torch_dist

    from tl_glp.training import distributed

    os.environ.update({"LOCAL_RANK": str(rank), "RANK": str(rank), "WORLD_SIZE": str(world)})
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1 if device_type == "cpu" else torch.get_num_threads())
    distributed.init_from_env(device_type, timeout_s=120.0)  # a hang fails the section in 2 minutes, not 10
    out: dict[str, Any] = {"backend": torch_dist.get_backend()}
    try:
        dev = distributed.rank_device(device_type)
        shape = TINY_SHAPES["llama1b"]
        width, local, steps = (512, 1024, 30) if dev.type == "cuda" else (16, 32, 4)  # the CPU: the tests' sizes
        data = torch.randn(65536, width, generator=torch.Generator().manual_seed(0))
        prior = GenerativePrior.from_activations(data, n_blocks=3)
        cfg = TrainConfig(batch_size=local * world, lr=1e-4, max_steps=steps, eval_every=0, progress=False)
        result = train(prior, data, cfg.replace(val_fraction=0.0, log_every=steps))
        out["device"] = str(prior.mean.device)
        out["samples_per_s"] = result.steps * cfg.batch_size / result.seconds["steps"]  # global rows/s
        out["checksum"] = round(float(sum(p.detach().double().sum() for p in prior.parameters())), 6)
        model = llama_like_model(shape, dev, torch.bfloat16 if dev.type == "cuda" else torch.float32)
        tokens = torch.randint(10, shape["vocab"], (4 + 8 * world + 1, 32), generator=torch.Generator().manual_seed(3))
        stream = StreamingActivations(
            model, tokens, f"blocks.{shape['layer']}.hook_resid_post", context_size=32, forward_batch=4,
            buffer_rows=64, warmup_rows=64, val_rows=64,
        )  # fmt: skip
        # 8 training documents per rank and one more on rank 0: rank 0 has 2 more batches of 16 rows than the others
        streamed = GenerativePrior.from_activations(stream, n_blocks=1)
        try:
            train(streamed, stream, TrainConfig(batch_size=16 * world, max_steps=10_000, eval_every=0, progress=False))
            out["stream_end"] = "finished"
        except Exception as err:  # noqa: BLE001  (what each rank saw is the figure)
            out["stream_end"] = f"{type(err).__name__}: {err}"[:300]
    finally:
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(out))
        torch_dist.destroy_process_group()


# --------------------------------------------------------------------------- helpers
def _graphs_compiled() -> int:
    """Graphs dynamo has compiled in this process so far (a count that grows on every recompilation)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class _host_syncs:  # noqa: N801  (a context manager used like a function)
    """Counts the host-device synchronisations CUDA's sync debug mode reports inside the block (``[count]``)."""

    def __init__(self, dev: torch.device) -> None:
        self.dev, self.count = dev, [0]

    def __enter__(self) -> list[int]:
        if self.dev.type == "cuda":
            self._warnings = warnings.catch_warnings(record=True)
            self._seen = self._warnings.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        return self.count

    def __exit__(self, *exc: object) -> None:
        if self.dev.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
            self.count[0] = sum("synchroniz" in str(w.message) for w in self._seen)
            self._warnings.__exit__(*exc)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _free(dev: torch.device) -> None:
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def _time_once(fn: Callable[[], object], dev: torch.device) -> float:
    _sync(dev)
    tick = time.perf_counter()
    fn()
    _sync(dev)
    return time.perf_counter() - tick


def _median_time(fn: Callable[[], object], dev: torch.device, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(_time_once(fn, dev) for _ in range(repeats))


def _interleaved(fns: list[Callable[[], object]], dev: torch.device, reps: int) -> list[float]:
    """Median seconds of each of ``fns``, run in turn ``reps`` times after one warm-up each."""
    for fn in fns:
        fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for i, fn in enumerate(fns):
            samples[i].append(_time_once(fn, dev))
    return [statistics.median(s) for s in samples]


def _print_section(name: str, rows: dict[str, Any]) -> None:
    print(f"[bench gpu] {name}")
    width = max((len(k) for k in rows), default=0)
    for key, value in rows.items():
        shown = f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)
        print(f"  {key:<{width}}  {shown}", flush=True)
