"""``tl-glp bench``: speed and quality benchmarks that print medians and the ratios their targets are stated in."""

from tl_glp.studies.bench.basic import (
    bench_collect,
    bench_interpret,
    bench_model,
    bench_prior,
    bench_probe,
    bench_scaling_overhead,
    bench_steer,
    bench_train,
    matmul_rate,
    timeit,
    train_step_flops,
)
from tl_glp.studies.bench.gpu import bench_gpu
from tl_glp.studies.bench.manifold import bench_project, bench_score

__all__ = [
    "bench_collect",
    "bench_gpu",
    "bench_interpret",
    "bench_model",
    "bench_prior",
    "bench_probe",
    "bench_project",
    "bench_scaling_overhead",
    "bench_score",
    "bench_steer",
    "bench_train",
    "matmul_rate",
    "timeit",
    "train_step_flops",
]
