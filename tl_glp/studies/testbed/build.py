"""Build the testbed model that ships with the package: train, measure, write weights + manifest.

``tl-glp testbed build --seed 0 --out tl_glp/studies/testbed/weights`` is the exact command that produced
the shipped files; :func:`build` is what it runs. Training is deterministic (one thread,
deterministic algorithms, fixed seeds), so the same torch version on the same kind of CPU
rebuilds bit-identical weights; the manifest records the sha256 of the weights, the config, the
seed, the versions, the training metrics and the quality numbers of :mod:`tl_glp.studies.testbed.quality`.

Example (a tiny config for a few seconds; the shipped build takes about a quarter of an hour):
    >>> import tempfile
    >>> from tl_glp.studies.testbed.lm import LMConfig
    >>> tiny = LMConfig(n_layers=3, d_model=32, n_heads=2, d_mlp=64, n_ctx=32, train_docs=100, steps=3, batch_size=4, eval_docs=10)
    >>> manifest = build(tempfile.mkdtemp(), config=tiny, measure=False, progress=False)
    >>> manifest["command"].startswith("tl-glp testbed build --seed 0 --out ")
    True
    >>> len(manifest["sha256"]), manifest["config"]["steps"]
    (64, 3)
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from tl_glp.core import _io
from tl_glp.studies.testbed import Testbed
from tl_glp.studies.testbed.language import Language
from tl_glp.studies.testbed.lm import BUILD_THREADS, TESTBED_VERSION, LMConfig, train_lm
from tl_glp.studies.testbed.quality import measure_quality

QUALITY_DOCS = 600
"""Held-out documents the manifest's next-word quality numbers are measured on."""


def build_command(seed: int, steps: int | None, out: str | Path) -> str:
    """The ``tl-glp testbed build`` command line that reproduces a build."""
    return f"tl-glp testbed build --seed {seed}" + (f" --steps {steps}" if steps is not None else "") + f" --out {out}"


def build(
    out: str | Path,
    seed: int = 0,
    steps: int | None = None,
    config: LMConfig | None = None,
    measure: bool = True,
    quality_docs: int = QUALITY_DOCS,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the testbed model and write ``out/model.safetensors`` and ``out/manifest.json``.

    Args:
        out: the folder to write (created if needed); each file is written atomically, the weights
            first, so a manifest always describes the weights beside it (its sha256 says so).
        seed, steps: override the seed and the step count of ``config`` (default :class:`LMConfig`).
        measure: also measure the quality numbers (needs a model with a ``blocks.2`` residual).
        quality_docs: held-out documents for the next-word quality numbers.

    Returns the manifest.
    """
    cfg = replace(config or LMConfig(), seed=seed, **({"steps": steps} if steps is not None else {}))
    language = Language()
    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    start = time.perf_counter()
    model, metrics = train_lm(cfg, language, progress=progress)
    out = Path(out)
    weights = out / "model.safetensors"
    _io.write_tensors(weights, model.state_dict())
    manifest: dict[str, Any] = {
        "testbed_version": TESTBED_VERSION,
        "command": build_command(seed, steps, out),
        "seed": seed,
        "config": asdict(cfg),
        "sha256": _io.sha256_file(weights),
        "size_bytes": weights.stat().st_size,
        "dtype": "float32",
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "machine": platform.machine(),
        "determinism": f"torch.use_deterministic_algorithms(True), {BUILD_THREADS} torch thread(s), fixed seeds: the same torch "
        "version on the same kind of CPU rebuilds bit-identical weights",
        "metrics": metrics,
        "build_seconds": None,
        "load_average_at_start": load_at_start,
        "cpu_count": os.cpu_count(),
        "quality": None,
    }
    if measure:
        manifest["quality"] = measure_quality(Testbed(model, language, metrics, cfg), n_docs=quality_docs, oracle=True)
    manifest["build_seconds"] = time.perf_counter() - start
    _io.write_json(out / "manifest.json", manifest)
    return manifest
