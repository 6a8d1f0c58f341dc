"""``tl-glp``: thin command-line front end; every subcommand parses arguments and calls the library."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

Command = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command]] = {}


def command(name: str, configure: Callable[[argparse.ArgumentParser], None]) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        _COMMANDS[name] = (configure, fn)
        return fn

    return register


# --------------------------------------------------------------------------- bench
def _bench_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="what", required=True, metavar="{prior,collect,train,steer,probe,interpret,score,project}")
    prior = sub.add_parser("prior", help="training-step FLOP rate vs matmul rate; sample/project throughput")
    prior.add_argument("--d-input", type=int, default=512, help="activation width (default 512; Llama-8B: 4096)")
    prior.add_argument("--n-blocks", type=int, default=3, help="denoiser blocks (default 3)")
    prior.add_argument("--batch", type=int, default=1024, help="training batch (default 1024)")
    prior.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    for name, help_text in [
        ("collect", "collection tokens/s vs a bare forward pass; peak RSS for 1M vs 4M rows"),
        ("train", "training samples/s from a disk store vs an in-memory tensor; --study DIR / --scaling: share of a scaling study's time outside training steps"),
        ("steer", "per-token generation time: no hook, plain steering, prior-guided steering"),
        ("probe", "torch 1-D probe backend vs the sklearn reference on sae-probes datasets"),
        ("interpret", "top-activation documents/s for meta-neurons vs a bare forward pass plus one denoiser evaluation per token"),
        ("score", "activations/s of log_prob (exact, Hutchinson) and denoising_score at widths 128 and 2048"),
        ("project", "projection options on the testbed: evaluations, distance to reference, delta LM loss, steering"),
    ]:
        extra = sub.add_parser(name, help=help_text)
        extra.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
        if name == "train":
            extra.add_argument("--study", default=None, help="also report the share of wall time outside training steps of this finished scaling study (its timing.json)")
            extra.add_argument("--scaling", action="store_true", help="also run a --quick scaling study on the testbed and report that share")


@command("bench", _bench_args)
def _bench(args: argparse.Namespace) -> int:
    """Speed benchmarks: print medians and the ratios the targets are stated in."""
    from tl_glp.studies import bench

    if args.what == "prior":
        bench.bench_prior(args.d_input, args.n_blocks, args.batch, args.device)
        return 0
    runner = getattr(bench, f"bench_{args.what}", None)
    if runner is None:
        print(f"bench {args.what} is not available in this version.", file=sys.stderr)
        return 2
    if args.what == "train":
        runner(quick=args.quick, study=args.study, scaling=args.scaling)
    else:
        runner(quick=args.quick)
    return 0


# --------------------------------------------------------------------------- collect
def _load_model(args: argparse.Namespace):
    """The offline testbed model, or a TransformerLens / Hugging Face model by name."""
    if args.model == "testbed":
        from tl_glp.studies.testbed import load

        return load().model
    from tl_glp.core import _compat

    return _compat.load_model(args.model, processed=args.processed, device=args.device, bridge=args.bridge)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="testbed", help="TransformerLens/Hugging Face model id (e.g. gpt2, meta-llama/Llama-3.2-1B), a local model folder (save_pretrained layout), or 'testbed' (offline tiny model; default)")
    p.add_argument("--processed", action="store_true", help="fold LayerNorm and centre weights (HookedTransformer.from_pretrained); default: unprocessed, the basis of the published priors")
    p.add_argument("--bridge", action="store_true", help="load through TransformerBridge instead of HookedTransformer")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def _collect_args(p: argparse.ArgumentParser) -> None:
    _model_args(p)
    p.add_argument("--hook", action="append", required=True, help="hook name to collect, e.g. blocks.6.hook_resid_post; repeat for several (multi-layer priors)")
    p.add_argument("--out", required=True, help="store folder; re-running the same command resumes after the last whole shard")
    p.add_argument("--dataset", default=None, help="Hugging Face dataset id to stream texts from (e.g. HuggingFaceFW/fineweb); default for --model testbed: its own language")
    p.add_argument("--dataset-config", default=None, help="dataset configuration name (e.g. sample-10BT)")
    p.add_argument("--split", default="train", help="dataset split (default train)")
    p.add_argument("--column", default="text", help="text column (default text)")
    p.add_argument("--text-file", default=None, help="a local text file, one document per line, instead of --dataset")
    p.add_argument("--context-size", type=int, default=128, help="tokens per document, BOS included; longer ones are truncated (default 128)")
    p.add_argument("--batch-size", type=int, default=32, help="documents per forward pass (default 32)")
    p.add_argument("--max-tokens", type=int, default=None, help="stop after this many activation rows")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32", help="storage dtype (default float32)")
    p.add_argument("--shard-rows", type=int, default=65536, help="rows per shard (default 65536)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


@command("collect", _collect_args)
def _collect(args: argparse.Namespace) -> int:
    """Collect activations from a model into an on-disk ActivationStore (resumable)."""
    from tl_glp.activations.collect import HFText, collect_activations

    model = _load_model(args)
    if args.text_file:
        with open(args.text_file) as f:
            data = [line.strip() for line in f if line.strip()]
    elif args.dataset:
        data = HFText(args.dataset, name=args.dataset_config, split=args.split, column=args.column)
    elif args.model == "testbed":
        from tl_glp.studies.testbed import load

        language = load().language  # its own documents: ~28 tokens each, so this many always suffice
        data = (doc.text for doc in language.documents(max(1, (args.max_tokens or 200_000) // 10), seed=1))
    else:
        print("Pass --dataset or --text-file for a model other than the testbed.", file=sys.stderr)
        return 2
    store = collect_activations(model, data, args.hook, out=args.out, context_size=args.context_size, batch_size=args.batch_size,
                                max_tokens=args.max_tokens, dtype=args.dtype, shard_rows=args.shard_rows, progress=not args.no_progress)
    print(f"{args.out}: {len(store)} rows x {store.n_hooks} hook(s) x {store.d_input} dims in {store.n_shards} shards")
    return 0


# --------------------------------------------------------------------------- train
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--activations", required=True, help="an ActivationStore folder written by tl-glp collect")
    p.add_argument("--out", required=True, help="run folder: checkpoints, metrics.jsonl, loss.png and the final prior; re-running resumes")
    p.add_argument("--n-blocks", type=int, default=3, help="denoiser blocks (published: 3, 6, 12, 24; default 3)")
    p.add_argument("--d-hidden", type=int, default=None, help="denoiser width (default 2 x d_input)")
    p.add_argument("--d-mlp", type=int, default=None, help="meta-neurons per block (default 4 x d_input)")
    p.add_argument("--n-llm-layers", type=int, default=None, help="the LLM's layer count, for a multi-layer prior over a multi-hook store")
    p.add_argument("--batch-size", type=int, default=4096, help="global batch (default 4096, the paper's)")
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (default 5e-5, the paper's; small models like 1e-3)")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps (default: one pass over the data)")
    p.add_argument("--warmup-frac", type=float, default=0.01, help="share of steps for linear warmup (default 0.01)")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="steps between resumable checkpoints (default 1000)")
    p.add_argument("--eval-every", type=int, default=500, help="steps between validation loss / Frechet distance (default 500; 0 = never)")
    p.add_argument("--seed", type=int, default=0, help="seed of data order and noise (default 0)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available; torchrun sets one per process)")
    p.add_argument("--wandb-project", default=None, help="also log to this Weights & Biases project")
    p.add_argument("--no-resume", action="store_true", help="start over even if --out holds checkpoints")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


@command("train", _train_args)
def _train(args: argparse.Namespace) -> int:
    """Train a GenerativePrior on a store (also under torchrun --nproc_per_node N for DDP)."""
    from pathlib import Path

    from tl_glp.activations.store import ActivationStore
    from tl_glp.core.prior import GenerativePrior
    from tl_glp.training.config import TrainConfig
    from tl_glp.training.trainer import train
    from tl_glp.training import distributed

    distributed.init_from_env()
    store = ActivationStore.open(args.activations)
    out = Path(args.out)
    if (out / "cfg.json").exists() and not args.no_resume:
        prior = GenerativePrior.from_pretrained(out)
    else:
        prior = GenerativePrior.from_activations(store, n_blocks=args.n_blocks, d_hidden=args.d_hidden, d_mlp=args.d_mlp, n_llm_layers=args.n_llm_layers)
    cfg = TrainConfig(batch_size=args.batch_size, lr=args.lr, max_steps=args.max_steps, warmup_frac=args.warmup_frac, checkpoint_every=args.checkpoint_every,
                      eval_every=args.eval_every, seed=args.seed, device=args.device, wandb_project=args.wandb_project, progress=not args.no_progress)
    result = train(prior, store, cfg, out_dir=out, resume=not args.no_resume)
    if distributed.rank() == 0:
        print(f"trained {result.steps} steps (resumed from {result.resumed_from}); final loss {result.final_loss:.4f}; prior saved to {out}")
    return 0


# --------------------------------------------------------------------------- steer
def _steer_args(p: argparse.ArgumentParser) -> None:
    _model_args(p)
    p.add_argument("--prior", required=True, help="a saved prior folder, a published GLP folder, or a Hugging Face repo id")
    p.add_argument("--prompt", action="append", required=True, help="prompt to continue; repeat for several")
    p.add_argument("--direction", default=None, help="a .safetensors file with a 'direction' tensor [d_model]")
    p.add_argument("--positive", action="append", default=[], help="text for a difference-of-means direction (positive side); repeat")
    p.add_argument("--negative", action="append", default=[], help="text for a difference-of-means direction (negative side); repeat")
    p.add_argument("--r", type=float, action="append", default=None, help="strength as a multiple of the activation norm; repeat (default 0.5 1 2)")
    p.add_argument("--hook", default=None, help="hook to steer at (default: the prior's own)")
    p.add_argument("--max-new-tokens", type=int, default=20, help="tokens to generate (default 20)")
    p.add_argument("--seed", type=int, default=0, help="sampling and projection seed (default 0)")
    p.add_argument("--csv", default=None, help="also write the full table (with scores) to this CSV")


@command("steer", _steer_args)
def _steer(args: argparse.Namespace) -> int:
    """Side-by-side continuations: unsteered, plain steering and prior-guided steering."""
    from tl_glp.core.prior import GenerativePrior
    from tl_glp.core._io import read_tensors
    from tl_glp.steering import diff_of_means, steering_sweep

    model = _load_model(args)
    from tl_glp.core._tokens import model_device

    prior = GenerativePrior.from_pretrained(args.prior, device=args.device or model_device(model))
    hook = args.hook or prior.cfg.hook_name
    if args.direction:
        direction = read_tensors(args.direction)["direction"]
    elif args.positive and args.negative:
        direction = diff_of_means(model, args.positive, args.negative, hook)
    else:
        print("Give --direction FILE, or --positive and --negative texts.", file=sys.stderr)
        return 2
    df = steering_sweep(model, direction, args.prompt, prior=prior, strengths=args.r or [0.5, 1.0, 2.0], hook_name=hook,
                        max_new_tokens=args.max_new_tokens, seed=args.seed, progress=False)
    for prompt, part in df.groupby("prompt", sort=False):
        print(f"\n=== {prompt!r}")
        for _, row in part.iterrows():
            print(f"  {row['method']:>5}  r={row['r']:<4g} nll={row['nll']:.2f} concept={row['concept']:+.2f}  {row['continuation']!r}")
    if args.csv:
        df.to_csv(args.csv, index=False)
    return 0


# --------------------------------------------------------------------------- probe
def _probe_args(p: argparse.ArgumentParser) -> None:
    _model_args(p)
    p.add_argument("--prior", default=None, help="prior folder / published folder / hub id (needed for the 'meta' source)")
    p.add_argument("--hook", default=None, help="hook to probe (default: the prior's)")
    p.add_argument("--source", action="append", default=None, help="feature source: meta, raw, mlp, pca, random, sae; repeat (default: meta raw mlp)")
    p.add_argument("--sae", default=None, help="SAE for the 'sae' source: a local SAE-Lens folder or RELEASE:SAE_ID (e.g. gpt2-small-res-jb:blocks.8.hook_resid_pre)")
    p.add_argument("--dataset", action="append", default=None, help="SAE-Probes dataset name or CSV with prompt,target; repeat; 'all' for the 113 (default for --model testbed: its concept datasets)")
    p.add_argument("--method", choices=["1d", "ksparse"], default="1d", help="1-D probing (default) or SAE-Probes' k-sparse protocol")
    p.add_argument("--backend", choices=["torch", "sklearn"], default="torch", help="1-D probe backend (default torch, batched)")
    p.add_argument("--top-k", type=int, default=512, help="candidate features per dataset (default 512)")
    p.add_argument("--no-controls", action="store_true", help="skip the shuffled-label controls")
    p.add_argument("--out", default="probe_out", help="folder for probing.csv, summary.csv and probing.png (default probe_out)")
    p.add_argument("--cache-dir", default=None, help="cache last-token activations here")


@command("probe", _probe_args)
def _probe(args: argparse.Namespace) -> int:
    """1-D (or k-sparse) probing of meta-neurons vs SAE features, raw and MLP neurons, with CIs."""
    from pathlib import Path

    from tl_glp.core.prior import GenerativePrior
    from tl_glp.probing import SAEFeatures, run_probing
    from tl_glp.saes import load_sae

    model = _load_model(args)
    from tl_glp.core._tokens import model_device

    prior = GenerativePrior.from_pretrained(args.prior, device=args.device or model_device(model)) if args.prior else None
    sources: list = []
    for name in args.source or ["meta", "raw", "mlp"]:
        sources.append(SAEFeatures(load_sae(args.sae, args.device or str(model_device(model)))) if name == "sae" else name)
    datasets = args.dataset or (["all"] if args.model != "testbed" else None)
    if datasets is None:
        from tl_glp.studies.testbed import load

        datasets = list(load().datasets.values())
    elif datasets == ["all"]:
        datasets = "all"
    results = run_probing(model, prior, sources, datasets, hook_name=args.hook, method=args.method, backend=args.backend, top_k=args.top_k,
                          controls=not args.no_controls, cache_dir=args.cache_dir)
    out = Path(args.out)
    results.to_csv(out / "probing.csv")
    summary = results.summary()
    summary.to_csv(out / "summary.csv", index=False)
    results.plot(out / "probing.png")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nwrote {out / 'probing.csv'}, {out / 'summary.csv'}, {out / 'probing.png'}")
    return 0


# --------------------------------------------------------------------------- demo
def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="output folder for report.md and figures (default demo_out)")
    p.add_argument("--quick", action="store_true", help="reduced sizes (a smoke run of every step, ~1 minute once the testbed is cached)")
    p.add_argument("--model", default="testbed", help="'testbed' (offline, default), a Hugging Face model id such as gpt2, or a local model folder (save_pretrained layout)")
    p.add_argument("--hook", default=None, help="hook to model (default: the middle block's hook_resid_post)")
    p.add_argument("--sae", default=None, help="a pretrained SAE (folder or RELEASE:SAE_ID) instead of training one with SAE-Lens")
    p.add_argument("--dataset", action="append", default=None, help="for real models: HF text dataset for activations, sae-probes names, or CSV files (prompt,target) for probing; repeat. With CSVs and no HF dataset, the CSV prompts are the corpus (offline)")
    p.add_argument("--device", default=None, help="cpu or cuda")
    p.add_argument("--bridge", action="store_true", help="load --model through TransformerBridge instead of HookedTransformer (always on TransformerLens 4)")
    p.add_argument("--n-docs", type=int, default=None, help="documents whose activations train the prior (default 6000; --quick 500)")
    p.add_argument("--prior-steps", type=int, default=None, help="prior training steps (default: DemoSettings.prior_steps; --quick 60)")
    p.add_argument("--seed", type=int, default=None, help="seed of the data order, prior, SAE, noise and bootstraps (default 0; the testbed model stays the shipped one)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override any DemoSettings field, e.g. --set eval_samples=200 --set c2st_steps=50; repeat")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


@command("demo", _demo_args)
def _demo(args: argparse.Namespace) -> int:
    """The whole pipeline end to end (testbed, activations, prior, steering, probing) with a report."""
    from dataclasses import replace

    from tl_glp.studies.demo import DemoSettings, run_demo

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    sizes = {"n_docs": args.n_docs, "prior_steps": args.prior_steps, "seed": args.seed}
    settings = DemoSettings.from_overrides(replace(settings, **{k: v for k, v in sizes.items() if v is not None}), args.set)
    run_demo(args.out, model_name=args.model, hook=args.hook, sae=args.sae, datasets=args.dataset, device=args.device, progress=not args.quiet,
             settings=settings, bridge=args.bridge)
    return 0


# --------------------------------------------------------------------------- interpret
def _interpret_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="interpret_out", help="output folder: dashboards per source, monosemanticity table and figure (default interpret_out)")
    p.add_argument("--prior", default=None, help="a saved prior folder for the testbed's middle hook (default: train one, as the demo does)")
    p.add_argument("--sae", default=None, help="an SAE-Lens SAE folder (default: train a TopK SAE with SAE-Lens on the same activations)")
    p.add_argument("--docs", type=int, default=1000, help="documents for top activations (default 1000)")
    p.add_argument("--gt-docs", type=int, default=400, help="held-out documents for the ground-truth score (default 400)")
    p.add_argument("--k", type=int, default=20, help="top contexts kept per feature and tail (default 20)")
    p.add_argument("--pages", type=int, default=50, help="feature pages per source (default 50)")
    p.add_argument("--prior-steps", type=int, default=1000, help="training steps when no --prior is given (default 1000)")
    p.add_argument("--quick", action="store_true", help="reduced sizes (a smoke run)")
    p.add_argument("--device", default=None, help="cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


@command("interpret", _interpret_args)
def _interpret(args: argparse.Namespace) -> int:
    """Look inside the prior on the testbed: dashboards and ground-truth monosemanticity for meta-neurons, an SAE, raw and MLP neurons."""
    from tl_glp.core.prior import GenerativePrior
    from tl_glp.training.config import TrainConfig
    from tl_glp.activations.collect import collect_activations
    from tl_glp.training.trainer import train
    from tl_glp.studies.interpret_run import run_interpret
    from tl_glp.probing import MetaNeurons, MLPNeurons, RawActivations, SAEFeatures
    from tl_glp.saes import load_sae, train_sae
    from tl_glp.studies.testbed import MIDDLE_HOOK, load

    progress = not args.quiet
    docs, gt_docs, steps = (300, 150, 150) if args.quick else (args.docs, args.gt_docs, args.prior_steps)
    testbed = load(progress=progress)
    model, hook = testbed.model, MIDDLE_HOOK
    acts = None
    if args.prior is None or args.sae is None:
        acts = collect_activations(model, testbed.language.sample_texts(300 if args.quick else 3000, seed=1), hook, progress=progress)
    if args.prior:
        prior = GenerativePrior.from_pretrained(args.prior, device=args.device)
    else:
        prior = GenerativePrior.from_activations(acts, n_blocks=3)
        train(prior, acts, TrainConfig(batch_size=512, lr=2e-3, max_steps=steps, eval_every=0, progress=progress, device=args.device))
    prior.eval()
    sae = load_sae(args.sae, args.device) if args.sae else train_sae(acts, d_sae=256 if args.quick else 1024, k=16, steps=steps, device=args.device or "cpu")
    sources = {"meta": MetaNeurons(prior), "sae": SAEFeatures(sae), "raw": RawActivations(), "mlp": MLPNeurons()}
    texts = testbed.language.sample_texts(docs, seed=20)
    held_out = list(testbed.language.documents(gt_docs, seed=21))
    out = run_interpret(model, sources, texts, hook, args.out, documents=held_out, k=args.k, pages=args.pages, progress=progress)
    print(out.markdown)
    print(f"wrote {out.out_dir / 'index.html'} ({out.numbers['interpret_seconds']:.0f} s)")
    return 0


# --------------------------------------------------------------------------- scaling
def _scaling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="scaling_out", help="study folder (default scaling_out); re-running the same command resumes there")
    p.add_argument("--quick", action="store_true", help="reduced ladder and sizes (within 5 minutes on 2 CPU cores on the testbed)")
    p.add_argument("--depths", default=None, help="comma-separated denoiser depths, e.g. 1,2,3,6 (default 1,2,3,6; --quick 1,2,3)")
    p.add_argument("--model", default="testbed", help="'testbed' (offline, default), a Hugging Face model id, or a local model folder")
    p.add_argument("--hook", default=None, help="hook to model (default: the testbed's middle hook, or the middle block's hook_resid_post)")
    p.add_argument("--dataset", action="append", default=None, help="for real models, as in `tl-glp demo`: an HF text dataset for activations, sae-probes names or CSVs (prompt,target) for probing; repeat")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--bridge", action="store_true", help="load --model through TransformerBridge")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split, training, noise and bootstraps (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override any ScalingSettings field, e.g. --set max_samples=200000; repeat")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


@command("scaling", _scaling_args)
def _scaling(args: argparse.Namespace) -> int:
    """The scaling study: a ladder of priors over compute, every checkpoint evaluated, L(C) fitted, report.md."""
    from dataclasses import fields, replace

    from tl_glp.studies.scaling import ScalingSettings

    settings = replace(ScalingSettings.quick() if args.quick else ScalingSettings(), seed=args.seed)
    if args.depths:
        settings = replace(settings, depths=tuple(int(d) for d in args.depths.split(",") if d.strip()))
    types = {f.name: type(getattr(settings, f.name)) for f in fields(settings)}
    for item in args.set:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            print(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(types)}.", file=sys.stderr)
            return 2
        parse = (lambda v: tuple(float(x) for x in v.split(",") if x.strip())) if types[key] is tuple else types[key]
        if key == "depths":
            parse = lambda v: tuple(int(x) for x in v.split(",") if x.strip())  # noqa: E731
        settings = replace(settings, **{key: parse(value)})
    from tl_glp.studies.scaling.entry import run_named_study

    result = run_named_study(args.out, settings, model=args.model, hook=args.hook, dataset=args.dataset, device=args.device,
                             bridge=args.bridge, quick=args.quick, progress=not args.quiet)
    print(f"wrote {result.out_dir / 'report.md'}, {result.out_dir / 'scaling.csv'}, loss_vs_compute.png, downstream_vs_loss.png")
    return 0


# --------------------------------------------------------------------------- testbed
def _testbed_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="what", required=True, metavar="{build,quality}")
    build = sub.add_parser("build", help="train the testbed model deterministically; write model.safetensors + manifest.json; print its quality")
    build.add_argument("--seed", type=int, default=0, help="training seed (default 0, the shipped model's)")
    build.add_argument("--steps", type=int, default=None, help="training steps (default: the LMConfig default, as shipped)")
    build.add_argument("--out", default="testbed_build", help="output folder (default testbed_build; the shipped files live in tl_glp/studies/testbed/weights)")
    build.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    quality = sub.add_parser("quality", help="measure the testbed model (shipped, or --seed's) against the quality bars")
    quality.add_argument("--seed", type=int, default=0, help="which testbed to load (default 0: the shipped model)")
    quality.add_argument("--docs", type=int, default=600, help="held-out documents for the next-word AUCs and the loss (default 600)")
    quality.add_argument("--oracle", action="store_true", help="also the Bayes-optimal ceilings and loss")
    quality.add_argument("--no-progress", action="store_true", help="hide the progress bar (when a model has to be trained)")


@command("testbed", _testbed_args)
def _testbed(args: argparse.Namespace) -> int:
    """The offline testbed model: build it (train + manifest) or measure its quality."""
    from tl_glp.studies.testbed.quality import format_quality

    if args.what == "build":
        from tl_glp.studies.testbed.build import build

        manifest = build(args.out, seed=args.seed, steps=args.steps, progress=not args.no_progress)
        print(format_quality(manifest["quality"]))
        print(f"\nwrote {args.out}/model.safetensors ({manifest['size_bytes']} bytes, sha256 {manifest['sha256'][:12]}...) and manifest.json in {manifest['build_seconds']:.0f} s")
        return 0 if manifest["quality"]["passes"] else 1
    from tl_glp.studies.testbed import load
    from tl_glp.studies.testbed.quality import measure_quality

    quality = measure_quality(load(seed=args.seed, progress=not args.no_progress), n_docs=args.docs, oracle=args.oracle)
    print(format_quality(quality))
    return 0 if quality["passes"] else 1


# --------------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tl-glp", description="Generative latent priors for TransformerLens.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (configure, fn) in _COMMANDS.items():
        doc = (fn.__doc__ or "").strip().splitlines()
        p = sub.add_parser(name, help=doc[0] if doc else None, description=fn.__doc__)
        configure(p)
        p.set_defaults(_run=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
