"""``bench_gpu``: every branch runs on CPU with tiny shapes and writes finite figures as JSON."""

import json
import math

import pytest
import torch

from tl_glp.studies.bench import gpu

SECTIONS = ("train", "collect", "streaming", "steer", "probe_topk", "ddp")


def _numbers(section):
    return {k: v for k, v in section.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@pytest.mark.slow
def test_tiny_run_covers_every_branch_with_finite_figures(tmp_path, capsys):
    out = tmp_path / "bench_gpu.json"
    result = gpu.bench_gpu(tiny=True, out=str(out), device="cpu", compile_backend="eager")
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    for name in SECTIONS:
        assert "error" not in result[name] and "skipped" not in result[name], (name, result[name])
        numbers = _numbers(result[name])
        assert numbers and all(math.isfinite(v) for v in numbers.values()), (name, numbers)
    train = result["train"]
    for prior in ("glp-llama1b-d2", "glp-llama8b-d2"):
        assert train[f"{prior}_samples_per_s"] > 0 and 0 < train[f"{prior}_matmul_tflops"]
    assert train["glp-llama1b-d2_compiled_samples_per_s"] > 0
    assert train["glp-llama1b-d2_compiled_recompiles_while_timed"] == 0  # the compiled step compiles once
    assert result["flops_counted"] == train["flops_counted"] and "3x forward" in train["flops_counted"]
    for prior in ("glp-llama1b-d2", "glp-llama8b-d2"):  # float32 parameter, gradient and two AdamW moments
        states = train[f"{prior}_estimated_states_gib"] * 2**30
        assert states == pytest.approx(16 * train[f"{prior}_params_m"] * 1e6, rel=1e-3)  # + statistics, step counts
        assert train[f"{prior}_estimated_total_gib"] > train[f"{prior}_estimated_states_gib"]
    assert {"llama1b_ratio_collect_vs_bare", "llama8b_ratio_collect_vs_bare"} <= set(result["collect"])
    stream = result["streaming"]
    bound = 1 / (1 / stream["forward_rows_per_s"] + 1 / stream["train_rows_per_s"])
    assert stream["serial_bound_rows_per_s"] == pytest.approx(bound)
    assert stream["streaming_rows_per_s"] > 0 and stream["streaming_warmup_s"] >= 0
    assert stream["ratio_streaming_vs_serial_bound"] == pytest.approx(
        stream["streaming_rows_per_s"] / stream["serial_bound_rows_per_s"]
    )
    steer = result["steer"]
    for key in (
        "no_hook",
        "plain",
        "prior_reference",
        "prior_euler4",
        "prior_reference_compiled",
        "prior_euler4_compiled",
    ):
        assert steer[f"ms_per_token_{key}"] > 0
    assert steer["compiled_calls"] > 0 and steer["compiled_fallbacks"] == 0  # the compiled variants really ran compiled
    assert steer["compiled_graphs"] == 2 and steer["recompiles_while_timed"] == 0  # one graph per schedule, reused
    assert stream["train_steps"] >= 1 and "host_syncs_in_train" not in stream  # counted on CUDA only
    assert result["probe_topk"]["n_meta_neurons"] == 2 * 4 * 64
    assert "2 or more GPUs" in result["ddp"]["note"]  # one device: the several-GPU section says so and runs nothing
    assert "[bench gpu] steer" in capsys.readouterr().out


def test_a_failing_section_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "_train_section", lambda *a: {"x": 1.0})
    monkeypatch.setattr(gpu, "_collect_section", lambda *a: (_ for _ in ()).throw(RuntimeError("out of memory")))
    monkeypatch.setattr(gpu, "_streaming_section", lambda *a: {"y": 2.0})
    monkeypatch.setattr(gpu, "_steer_section", lambda *a: {"z": 3.0})
    monkeypatch.setattr(gpu, "_probe_section", lambda *a: {"w": 4.0})
    out = tmp_path / "b.json"
    result = gpu.bench_gpu(tiny=True, out=str(out), device="cpu")
    assert result["collect"]["error"] == "RuntimeError: out of memory"
    assert [result[k][v] for k, v in (("train", "x"), ("streaming", "y"), ("steer", "z"), ("probe_topk", "w"))] == [
        1.0,
        2.0,
        3.0,
        4.0,
    ]
    assert json.loads(out.read_text())["collect"]["error"].startswith("RuntimeError")


def test_sections_past_the_time_budget_are_skipped_not_run(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "BUDGET_S", -1.0)
    monkeypatch.setattr(gpu, "_train_section", lambda *a: pytest.fail("must not run"))
    result = gpu.bench_gpu(tiny=True, device="cpu")
    assert all("time budget" in result[name]["skipped"] for name in SECTIONS)


def test_the_llama_shaped_model_has_the_llama_architecture():
    shape = gpu.TINY_SHAPES["llama1b"]
    model = gpu.llama_like_model(shape, torch.device("cpu"), torch.float32)
    cfg = model.cfg
    assert (cfg.n_layers, cfg.d_model, cfg.n_key_value_heads, cfg.d_mlp) == (
        shape["build_layers"],
        shape["d_model"],
        shape["n_kv"],
        shape["d_mlp"],
    )
    assert cfg.gated_mlp and cfg.normalization_type == "RMS" and cfg.positional_embedding_type == "rotary"
    tokens = torch.randint(10, shape["vocab"], (2, 5))
    _, cache = model.run_with_cache(tokens, names_filter=[f"blocks.{shape['layer']}.hook_resid_post"])
    assert cache[f"blocks.{shape['layer']}.hook_resid_post"].shape == (2, 5, shape["d_model"])
    for (
        key,
        full,
    ) in gpu.LLAMA_SHAPES.items():  # the GPU shapes: the published priors' widths, hooked layer inside the built depth
        assert (
            full["d_model"] == {"llama1b": 2048, "llama8b": 4096}[key]
            and full["layer"] < full["build_layers"] <= full["n_layers"]
        )
        assert full["n_heads"] * full["d_head"] == full["d_model"]


def test_mfu_uses_the_data_sheet_peak_of_the_gpu_it_runs_on(monkeypatch):
    names = iter(["NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H200", "NVIDIA A100-SXM4-80GB", "Tesla T4"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: next(names))
    cuda = torch.device("cuda", 0)
    assert [gpu.peak_bf16_tflops(cuda) for _ in range(5)] == [989.4, 756.0, 989.4, 312.0, None]
    assert gpu.peak_bf16_tflops(torch.device("cpu")) is None


def test_the_8b_shaped_training_step_is_estimated_to_fit_an_80_gb_gpu():
    """The largest allocation of ``bench gpu``: the glp-llama8b-d6 prior (3.4 B parameters) trained on a batch of
    4096 under bf16 autocast. Its estimate (fake tensors, nothing allocated) must leave room on an 80 GB H100
    (79.1 GiB visible) for the CUDA context and fragmentation."""
    shape = gpu.LLAMA_SHAPES["llama8b"]
    cfg = gpu.PriorConfig(d_input=shape["d_model"], n_blocks=shape["n_blocks"])
    estimate = gpu.train_step_memory(cfg, 4096)
    assert 16 * 3.4e9 / 2**30 < estimate["states_gib"] < 16 * 3.5e9 / 2**30
    assert estimate["total_gib"] < gpu.MEMORY_SHARE * 79.1


@pytest.mark.slow
def test_the_several_gpu_section_runs_its_ranks_on_two_cpu_processes():
    """The ``ddp`` section's worker, with gloo on the CPU: every rank ends with the same weights, and the stream
    whose documents run out on rank 1 first stops both ranks with StreamExhausted (none left waiting)."""
    out = gpu._ddp_section(torch.device("cpu"), processes=2)
    assert out["backend"] == "gloo" and out["processes"] == 2 and out["rank_devices"] == "cpu cpu"
    assert out["weights_equal_across_ranks"] == 1.0 and out["ddp_samples_per_s"] > 0
    assert out["stream_end_same_step_on_all_ranks"] == 1.0, out["stream_end_rank0"]
    assert "on rank(s) [1] of 2" in out["stream_end_rank0"]
