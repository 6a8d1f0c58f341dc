"""``tl-glp bench ...``: speed figures measured side by side in one run (never timed tests).

Each benchmark prints a small table of medians and the ratio its target is stated in. Run
``tl-glp bench --help`` for the list.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from tl_glp.activations.collect import collect_activations
from tl_glp.activations.sources import as_source
from tl_glp.activations.store import StoreWriter
from tl_glp.core.config import PriorConfig
from tl_glp.core.flow import number_of_evaluations, projection_grid
from tl_glp.core.prior import GenerativePrior
from tl_glp.core.projection import ProjectionConfig
from tl_glp.interpret import top_activations
from tl_glp.manifold.adaptive import AdaptiveProjector, OffManifold
from tl_glp.probing import MetaNeurons, load_dataset, probe_1d, sae_probes_datasets
from tl_glp.steering.hooks import steer
from tl_glp.studies.reporting import print_figures
from tl_glp.studies.scaling import ScalingSettings
from tl_glp.studies.scaling.entry import run_named_study
from tl_glp.training import TrainConfig, train


def timeit(
    fn: Callable[[], object], repeats: int = 5, warmup: int = 1, sync: Callable[[], None] = lambda: None
) -> float:
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


FLOPS_COUNTED = (
    "matrix products of the nn.Linear layers only (elementwise ops, norms and the optimizer are not counted): "
    "forward 2*B*in*out per Linear; backward 2x forward (weight gradient + input gradient), so forward + "
    "backward = 3x forward, except in_proj, time_embed.0 and layer_embed.0, whose inputs need no gradient (2x)"
)
"""How :func:`train_step_flops` counts, printed beside every achieved-TFLOP/s figure."""


def train_step_flops(prior: GenerativePrior, batch: int) -> int:
    """Matrix-multiply FLOPs of one forward + backward (:data:`FLOPS_COUNTED`): per Linear 2*B*in*out
    forward, the same for the weight gradient, and the same for the input gradient (3x forward in all)
    except where the input needs none (``in_proj`` reads data, ``time_embed.0``/``layer_embed.0`` read a
    fixed embedding: 2x forward).

    Example (one Linear 8 -> 16 on 4 rows: 2*4*8*16 = 1024 forward FLOPs):
        >>> from tl_glp.core.config import PriorConfig
        >>> prior = GenerativePrior(PriorConfig(d_input=8, n_blocks=1, d_hidden=16, d_mlp=32))
        >>> forward = sum(2 * 4 * m.in_features * m.out_features for m in prior.modules() if isinstance(m, nn.Linear))
        >>> 2 * forward < train_step_flops(prior, 4) < 3 * forward
        True
    """
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
    sample_s = {
        s: timeit(lambda s=s: prior.sample(n_sample, num_steps=20, solver=s), repeats=3, sync=sync)
        for s in ("euler", "heun")
    }
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
    print(
        f"bench prior: d_input={d_input} n_blocks={n_blocks} batch={batch} device={dev} "
        f"dtype={'bf16 autocast' if use_bf16 else 'fp32'} threads={torch.get_num_threads()}"
    )
    print_figures(out)
    return out


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


# --------------------------------------------------------------------------- collection
def bench_model(d_model: int = 256, n_layers: int = 4, d_vocab: int = 2000, seed: int = 0):
    """A tiny-but-not-trivial random HookedTransformer for benchmarks (no download)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=d_model,
        d_head=32,
        n_heads=d_model // 32,
        d_mlp=4 * d_model,
        n_ctx=256,
        d_vocab=d_vocab,
        act_fn="gelu",
        normalization_type="LN",
        seed=seed,
        model_name=f"bench-{n_layers}l-{d_model}d",
    )
    return HookedTransformer(cfg).eval()


def bench_collect(quick: bool = False) -> dict[str, float]:
    """Collection tokens/s vs a bare forward pass to the same layer, and peak RSS of disk collection."""
    import subprocess
    import sys
    import tempfile

    model = bench_model()
    hook = "blocks.1.hook_resid_post"
    n_docs, seq, batch = (64, 128, 32) if quick else (256, 128, 32)
    tokens = torch.randint(10, 2000, (n_docs, seq), generator=torch.Generator().manual_seed(0))

    def bare() -> None:
        with torch.inference_mode():
            for i in range(0, n_docs, batch):
                model(tokens[i : i + batch], stop_at_layer=2)

    def collect_mem() -> None:
        collect_activations(model, tokens, hook, batch_size=batch, context_size=seq, progress=False)

    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1000))

        def collect_disk() -> None:
            collect_activations(
                model,
                tokens,
                hook,
                out=f"{tmp}/{next(counter)}",
                batch_size=batch,
                context_size=seq,
                shard_rows=8192,
                progress=False,
            )

        t_bare = timeit(bare, repeats=3)
        t_mem = timeit(collect_mem, repeats=3)
        t_disk = timeit(collect_disk, repeats=3)
    n_tok = n_docs * seq
    out = {
        "bare_forward_tok_per_s": n_tok / t_bare,
        "collect_memory_tok_per_s": n_tok / t_mem,
        "collect_disk_tok_per_s": n_tok / t_disk,
        "ratio_memory_vs_bare": t_bare / t_mem,
        "ratio_disk_vs_bare": t_bare / t_disk,
    }
    rows = [250_000, 1_000_000] if quick else [1_000_000, 4_000_000]
    for n in rows:
        code = (
            "import resource, tempfile, torch; from tl_glp.studies.bench import bench_model; from tl_glp.activations.collect import collect_activations\n"
            "m = bench_model(d_model=64, n_layers=2, d_vocab=500)\n"
            f"toks = torch.randint(10, 500, ({n} // 128, 128))\n"
            "with tempfile.TemporaryDirectory() as d:\n"
            "    s = collect_activations(m, toks, 'blocks.0.hook_resid_post', out=d, batch_size=64, context_size=128, shard_rows=65536, progress=False)\n"
            "    assert len(s) == toks.numel()\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        out[f"peak_rss_mb_{n // 1000}k_rows_to_disk"] = int(done.stdout.split()[-1]) / 1024
    print(
        f"bench collect: model {model.cfg.model_name}, hook {hook}, {n_docs} docs x {seq} tokens, batch {batch}; RSS runs: d_model 64"
    )
    print_figures(out)
    return out


# --------------------------------------------------------------------------- training input pipeline
def bench_train(quick: bool = False, study: str | None = None, scaling: bool = False) -> dict[str, float]:
    """Training samples/s reading batches from a disk store vs from an in-memory tensor; with
    ``study`` (a finished scaling study's folder) or ``scaling`` (run a quick one), also the share of
    a scaling study's wall time spent outside training steps (:func:`bench_scaling_overhead`)."""
    import tempfile

    d, rows, batch = 256, (65_536 if quick else 262_144), 1024
    steps = 10 if quick else 30
    data = torch.randn(rows, d)
    cfg = TrainConfig(
        batch_size=batch, lr=1e-4, max_steps=steps, eval_every=0, progress=False, log_every=steps, val_fraction=0.0
    )
    with tempfile.TemporaryDirectory() as tmp:
        writer = StoreWriter(tmp, d_input=d, hook_names=["blocks.0.hook_resid_post"], shard_rows=65_536)
        for chunk in data.split(65_536):
            writer.add(chunk[:, None], torch.zeros(len(chunk)))
        store = writer.close()

        in_memory = as_source(data, hook_names=["blocks.0.hook_resid_post"])

        def run(source: object) -> float:
            prior = GenerativePrior(PriorConfig(d_input=d, n_blocks=2, hook_names=["blocks.0.hook_resid_post"]))
            prior.fit_normalizer(store)
            result = train(prior, source, cfg)
            return result.metrics[-1]["samples_per_s"]  # the training loop alone, setup excluded

        memory, disk = [], []
        for _ in range(3):  # interleaved, so drift hits both alike
            memory.append(run(in_memory))
            disk.append(run(store))
    out = {"memory_samples_per_s": statistics.median(memory), "disk_samples_per_s": statistics.median(disk)}
    out["ratio_disk_vs_memory"] = out["disk_samples_per_s"] / out["memory_samples_per_s"]
    print(
        f"bench train: d_input={d}, n_blocks=2, batch={batch}, {rows} rows, {steps} steps, median of 3 interleaved runs"
    )
    print_figures(out)
    if study is not None or scaling:
        out.update(bench_scaling_overhead(study))
    return out


def bench_scaling_overhead(study: str | None = None) -> dict[str, float]:
    """Share of a scaling study's wall time spent outside training steps (target: under 30% at
    default settings), read from its ``timing.json``. Without ``study``, runs a ``--quick`` testbed
    study in a temporary folder first (a few minutes)."""
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        if study is None:
            study = str(Path(tmp) / "study")
            run_named_study(study, ScalingSettings.quick(), quick=True, progress=False)
        path = Path(study) / "timing.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist: pass the folder of a scaling study (tl-glp scaling --out DIR)."
            )
        timing = json.loads(path.read_text())
    seconds = timing["seconds"]
    wall = timing["wall_seconds"]
    print(f"\nscaling study {study}: {wall:.0f} s of wall time over its invocations")
    rows = {f"{k}_s": v for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])}
    rows["share_outside_training_steps"] = timing["share_outside_training_steps"]
    print_figures(rows)
    verdict = "within" if timing["share_outside_training_steps"] < 0.3 else "above"
    print(
        f"share outside training steps {100 * timing['share_outside_training_steps']:.1f}%: {verdict} the 30% target (stated for default settings)"
    )
    return rows


# --------------------------------------------------------------------------- steering
def bench_steer(quick: bool = False) -> dict[str, float]:
    """Per-generated-token time: no hook, plain steering, prior-guided steering, and the denoiser alone."""

    model = bench_model()
    hook = "blocks.1.hook_resid_post"
    d = model.cfg.d_model
    prior = GenerativePrior(
        PriorConfig(
            d_input=d, n_blocks=3, hook_names=[hook], model_name=model.cfg.model_name, model_processing="unprocessed"
        )
    ).eval()
    batch, prompt_len, new = (4, 16, 8) if quick else (8, 16, 32)
    tokens = torch.randint(10, 2000, (batch, prompt_len), generator=torch.Generator().manual_seed(0))
    direction = torch.randn(d)
    direction /= direction.norm()

    def generate() -> None:
        model.generate(
            tokens, max_new_tokens=new, do_sample=False, stop_at_eos=False, verbose=False, use_past_kv_cache=True
        )

    def plain() -> None:
        with steer(model, direction, 4.0, hook_name=hook, positions="last"):
            generate()

    def guided() -> None:
        with steer(
            model, direction, 4.0, prior=prior, hook_name=hook, positions="last", projection=ProjectionConfig(seed=0)
        ):
            generate()

    def fast(method: str) -> Callable[[], None]:
        def run() -> None:
            with steer(
                model,
                direction,
                4.0,
                prior=prior,
                hook_name=hook,
                positions="last",
                projection=ProjectionConfig(seed=0, schedule=method),
            ):
                generate()

        return run

    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=[hook])
    natural = cache[hook][:, 1:].reshape(-1, d)
    rule = OffManifold.calibrate(prior, natural, fpr=0.1, within="last")
    adaptive_stats: dict[str, int] = {}

    def adaptive() -> None:
        projector = AdaptiveProjector(prior, rule, ProjectionConfig(seed=0))
        with steer(model, direction, 4.0, prior=prior, projector=projector, hook_name=hook, positions=rule.within):
            generate()
        adaptive_stats.update(projector.stats)

    n_evals = len(projection_grid(20, 0.5)) - 1
    x = torch.randn(batch, d)
    times_t = torch.full((batch,), 0.3)

    def denoiser_only() -> None:  # the network evaluations one generation needs (one projection per forward call)
        with torch.no_grad():
            for _ in range(new * n_evals):
                prior.velocity(x, times_t)

    reps = 3 if quick else 7
    runners = [
        ("none", generate),
        ("plain", plain),
        ("prior", guided),
        ("denoiser", denoiser_only),
        ("prior_heun2", fast("heun:2")),
        ("prior_one_step", fast("one_step")),
        ("prior_adaptive", adaptive),
    ]
    samples: dict[str, list[float]] = {key: [] for key, _ in runners}
    for _, fn in runners:
        fn()  # warm-up
    for _ in range(reps):  # interleaved so that drift hits all alike
        for key, fn in runners:
            start = time.perf_counter()
            fn()
            samples[key].append((time.perf_counter() - start) / new)
    med = {k: statistics.median(v) for k, v in samples.items()}
    out = {
        "ms_per_token_no_hook": 1e3 * med["none"],
        "ms_per_token_plain": 1e3 * med["plain"],
        "ms_per_token_prior_guided": 1e3 * med["prior"],
        "ms_per_token_denoiser_evals_alone": 1e3 * med["denoiser"],
        "ratio_plain_vs_no_hook": med["plain"] / med["none"],
        "ratio_prior_vs_no_hook_plus_denoiser": med["prior"] / (med["none"] + med["denoiser"]),
        "denoiser_evals_per_projection_euler20_t0.5": n_evals,
        "denoiser_evals_per_projection_heun20_t0.5": number_of_evaluations(n_evals, "heun"),
        "ms_per_token_prior_heun2": 1e3 * med["prior_heun2"],
        "ms_per_token_prior_one_step": 1e3 * med["prior_one_step"],
        "ms_per_token_prior_adaptive_fpr0.1": 1e3 * med["prior_adaptive"],
        "ratio_prior_vs_plain": med["prior"] / med["plain"],
        "ratio_heun2_vs_plain": med["prior_heun2"] / med["plain"],
        "ratio_one_step_vs_plain": med["prior_one_step"] / med["plain"],
        "ratio_adaptive_vs_plain": med["prior_adaptive"] / med["plain"],
        "evals_per_token_heun2": 4,
        "evals_per_token_one_step": 1,
        "evals_per_token_adaptive": 1
        + n_evals * adaptive_stats.get("projected", 0) / max(1, adaptive_stats.get("candidates", 1)),
        "adaptive_share_projected": adaptive_stats.get("projected", 0) / max(1, adaptive_stats.get("candidates", 1)),
    }
    print(
        f"bench steer: model {model.cfg.model_name}, hook {hook}, batch {batch}, prompt {prompt_len} tokens, {new} new tokens (KV cache, greedy), "
        f"prior d_input={d} n_blocks=3, positions='last', median of {reps} interleaved runs"
    )
    print_figures(out)
    return out


# --------------------------------------------------------------------------- probing
def _byte_features(model, prompts: list[str], max_bytes: int = 32, batch: int = 256) -> torch.Tensor:
    """512 features per prompt from a byte-level random model: its 256 MLP neurons at layer 0
    plus 256 random projections of its layer-0 residual, at the last byte."""
    proj = torch.randn(model.cfg.d_model, 256, generator=torch.Generator().manual_seed(0))
    out = []
    with torch.inference_mode():
        for i in range(0, len(prompts), batch):
            rows = [torch.tensor(list(p.encode()[-max_bytes:]) or [32]) for p in prompts[i : i + batch]]
            lengths = torch.tensor([len(r) for r in rows])
            tokens = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
            for j, r in enumerate(rows):
                tokens[j, : len(r)] = r
            _, cache = model.run_with_cache(
                tokens, names_filter=["blocks.0.hook_resid_post", "blocks.0.mlp.hook_post"], stop_at_layer=1
            )
            last = torch.arange(len(rows)), lengths - 1
            out.append(
                torch.cat(
                    [cache["blocks.0.mlp.hook_post"][last], cache["blocks.0.hook_resid_post"][last] @ proj], dim=1
                )
            )
    return torch.cat(out)


def bench_probe(quick: bool = False) -> dict[str, float]:
    """Torch 1-D probe backend vs the sklearn reference (StandardScaler + LogisticRegressionCV per
    candidate, unshuffled StratifiedKFold(5)) on the same 512 candidates of sae-probes datasets;
    torch time per dataset is the median of 3 warm runs."""

    model = bench_model(d_model=64, n_layers=2, d_vocab=256)
    names = sae_probes_datasets()
    sizes = sorted((len(load_dataset(n)), n) for n in names)
    parity = [n for _, n in sizes[: (1 if quick else 3)]]
    rows = {}
    t_sk, t_torch, diffs = [], [], []
    for name in parity:
        ds = load_dataset(name)
        X = _byte_features(model, ds.prompts)
        y = torch.from_numpy(ds.labels)
        tr, te = torch.from_numpy(ds.train_idx), torch.from_numpy(ds.test_idx)
        a = probe_1d(X[tr], y[tr], X[te], y[te], top_k=512, backend="torch")  # warm-up (first-call imports)
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            a = probe_1d(X[tr], y[tr], X[te], y[te], top_k=512, backend="torch")
            runs.append(time.perf_counter() - start)
        t_torch.append(statistics.median(runs))
        start = time.perf_counter()
        b = probe_1d(X[tr], y[tr], X[te], y[te], top_k=512, backend="sklearn")
        t_sk.append(time.perf_counter() - start)
        diffs.append(abs(a.test_auc - b.test_auc))
        print(
            f"  {name}: n={len(ds)} torch {t_torch[-1]:.2f}s sklearn {t_sk[-1]:.1f}s  test AUC torch {a.test_auc:.4f} sklearn {b.test_auc:.4f}  features {a.feature}/{b.feature}"
        )
    rows["sklearn_s_per_dataset"] = statistics.median(t_sk)
    rows["torch_s_per_dataset"] = statistics.median(t_torch)
    rows["speedup"] = rows["sklearn_s_per_dataset"] / rows["torch_s_per_dataset"]
    rows["max_abs_test_auc_diff"] = max(diffs)
    rows["mean_abs_test_auc_diff"] = float(sum(diffs) / len(diffs))
    every = names[:10] if quick else names
    extract_s, probe_s = 0.0, 0.0
    for name in every:
        ds = load_dataset(name)
        start = time.perf_counter()
        X = _byte_features(model, ds.prompts)
        extract_s += time.perf_counter() - start
        y = torch.from_numpy(ds.labels)
        tr, te = torch.from_numpy(ds.train_idx), torch.from_numpy(ds.test_idx)
        start = time.perf_counter()
        probe_1d(X[tr], y[tr], X[te], y[te], top_k=512, backend="torch")
        probe_s += time.perf_counter() - start
    rows[f"torch_probe_s_all_{len(every)}_datasets"] = probe_s
    rows[f"feature_extraction_s_all_{len(every)}_datasets"] = extract_s
    print(
        f"bench probe: 512 candidates (256 MLP neurons + 256 random residual projections of a byte-level random model), "
        f"parity on {parity}, threads={torch.get_num_threads()}"
    )
    print_figures(rows)
    return rows


# --------------------------------------------------------------------------- interpretation
def bench_interpret(quick: bool = False) -> dict[str, float]:
    """Top-activation throughput (documents/s) for meta-neurons vs the work it cannot avoid: a bare
    forward pass to the hook plus one denoiser evaluation per token."""

    model = bench_model()
    hook = "blocks.1.hook_resid_post"
    d = model.cfg.d_model
    prior = GenerativePrior(PriorConfig(d_input=d, n_blocks=3, hook_names=[hook])).eval()
    n_docs, seq, batch, k = (64, 128, 32, 20) if quick else (256, 128, 32, 20)
    tokens = torch.randint(10, 2000, (n_docs, seq), generator=torch.Generator().manual_seed(0))
    times = torch.full((batch * seq,), 0.1)

    def bare() -> None:
        with torch.inference_mode():
            for i in range(0, n_docs, batch):
                _, cache = model.run_with_cache(tokens[i : i + batch], names_filter=[hook], stop_at_layer=2)
                z = prior.normalize(cache[hook].reshape(-1, d))
                prior.velocity(z, times[: z.shape[0]])

    def topk() -> None:
        # one denoiser call per batch of documents, as in the bare loop (MetaNeurons' batch_size is rows per call)
        top_activations(
            model,
            MetaNeurons(prior, batch_size=batch * seq),
            tokens,
            hook_name=hook,
            k=k,
            batch_size=batch,
            context_size=seq,
            progress=False,
        )

    reps = 3 if quick else 5
    bare()
    topk()  # warm-up
    samples: dict[str, list[float]] = {"bare": [], "topk": []}
    for _ in range(reps):  # interleaved so that drift hits both alike
        for key, fn in (("bare", bare), ("topk", topk)):
            start = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - start)
    med = {key: statistics.median(v) for key, v in samples.items()}
    out = {
        "bare_forward_plus_denoiser_docs_per_s": n_docs / med["bare"],
        "top_activations_meta_docs_per_s": n_docs / med["topk"],
        "ratio_top_activations_vs_bare": med["bare"] / med["topk"],
        "n_features": float(prior.n_features),
    }
    print(
        f"bench interpret: model {model.cfg.model_name}, hook {hook}, {n_docs} docs x {seq} tokens, batch {batch}, prior d_input={d} n_blocks=3 "
        f"({prior.n_features} meta-neurons, both tails, k={k}), threads={torch.get_num_threads()}, median of {reps} interleaved runs"
    )
    print_figures(out)
    return out
