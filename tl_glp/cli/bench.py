"""``tl-glp bench ...``: speed benchmarks that print medians and the ratios their targets are stated in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from tl_glp.cli._run import Flat, ModelArgs, default_of, load_model

BENCH_PRIOR = "tl_glp.studies.bench.basic:bench_prior"
BENCH_GPU = "tl_glp.studies.bench.gpu:bench_gpu"
BENCH_PACKING = "tl_glp.studies.bench.packing:bench_packing"


def _bench() -> Any:
    """:mod:`tl_glp.studies.bench`, imported when a benchmark runs (``--help`` needs only the defaults)."""
    from tl_glp.studies import bench

    return bench


@dataclass
class PriorArgs:
    """Sizes of the prior whose training step and sampling are timed."""

    d_input: int = default_of(BENCH_PRIOR, "d_input")
    """Activation width (Llama-3.1-8B: 4096)."""
    n_blocks: int = default_of(BENCH_PRIOR, "n_blocks")
    """Denoiser blocks."""
    batch: int = default_of(BENCH_PRIOR, "batch")
    """Training batch."""
    device: str | None = default_of(BENCH_PRIOR, "device")
    """cpu or cuda (None: cuda if available)."""


def prior(args: PriorArgs) -> int:
    _bench().bench_prior(args.d_input, args.n_blocks, args.batch, args.device)
    return 0


@dataclass
class QuickArgs:
    quick: bool = False
    """Smaller sizes, for a smoke run."""


def collect(args: QuickArgs) -> int:
    _bench().bench_collect(quick=args.quick)
    return 0


def steer(args: QuickArgs) -> int:
    _bench().bench_steer(quick=args.quick)
    return 0


def probe(args: QuickArgs) -> int:
    _bench().bench_probe(quick=args.quick)
    return 0


def interpret(args: QuickArgs) -> int:
    _bench().bench_interpret(quick=args.quick)
    return 0


def score(args: QuickArgs) -> int:
    _bench().bench_score(quick=args.quick)
    return 0


@dataclass
class ProjectArgs:
    quick: bool = False
    """Smaller sizes, for a smoke run."""
    out: str | None = None
    """Also write projection.csv, steering.csv and numbers.json here (for docs/gen_results.py --add-run)."""


def project(args: ProjectArgs) -> int:
    _bench().bench_project(quick=args.quick, out=args.out)
    return 0


@dataclass
class TrainArgs:
    quick: bool = False
    """Smaller sizes, for a smoke run."""
    study: str | None = None
    """Also report the share of wall time outside training steps of this finished scaling study (its timing.json)."""
    scaling: bool = False
    """Also run a --quick scaling study on the testbed and report that share."""


def train(args: TrainArgs) -> int:
    _bench().bench_train(quick=args.quick, study=args.study, scaling=args.scaling)
    return 0


@dataclass
class GpuArgs:
    tiny: bool = default_of(BENCH_GPU, "tiny")
    """Every branch at toy sizes on the CPU (what the test suite runs)."""
    out: str | None = default_of(BENCH_GPU, "out")
    """Write the figures as JSON here (atomically, after every section)."""
    device: str | None = default_of(BENCH_GPU, "device")
    """cuda, cuda:1 ... (None: cuda if available)."""


def gpu(args: GpuArgs) -> int:
    from tl_glp.studies.bench.gpu import bench_gpu

    bench_gpu(tiny=args.tiny, out=args.out, device=args.device)
    return 0


@dataclass
class StreamingArgs:
    quick: bool = False
    """Smaller sizes, for a smoke run."""
    out: str | None = None
    """Also write numbers.json here (for docs/gen_results.py --add-run)."""


def streaming(args: StreamingArgs) -> int:
    from tl_glp.studies.bench.streaming import bench_streaming

    bench_streaming(quick=args.quick, out=args.out)
    return 0


@dataclass
class PackingArgs:
    """Streaming rows/s, packed and padded, against the bare forward's tokens/s (interleaved rounds, medians)."""

    model: Annotated[ModelArgs, Flat] = field(default_factory=ModelArgs)
    hook: str | None = default_of(BENCH_PACKING, "hook")
    """Hook to stream (None: the middle layer's hook_resid_post, blocks.15 on SmolLM2-135M)."""
    texts: Literal["auto", "testbed", "sae-probes"] = "auto"
    """Documents: the testbed's language, or the offline corpus (SAE-Probes texts, deduplicated); auto: the
    testbed's for the testbed model, the offline corpus otherwise."""
    context_size: int = default_of(BENCH_PACKING, "context_size")
    """Tokens per forward sequence."""
    forward_batch: int = default_of(BENCH_PACKING, "forward_batch")
    """Sequences per forward pass."""
    batches: int = default_of(BENCH_PACKING, "batches")
    """Forward batches per timed measurement."""
    rounds: int = default_of(BENCH_PACKING, "rounds")
    """Interleaved rounds (the figures are medians)."""


def packing(args: PackingArgs) -> int:
    from tl_glp.studies.bench.packing import bench_packing, bench_texts

    model = load_model(args.model, progress=False)
    kind = args.texts if args.texts != "auto" else ("testbed" if args.model.model == "testbed" else "sae-probes")
    bench_packing(
        model,
        bench_texts(kind),
        hook=args.hook,
        context_size=args.context_size,
        forward_batch=args.forward_batch,
        batches=args.batches,
        rounds=args.rounds,
    )
    return 0
