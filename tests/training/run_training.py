"""Helper process for the resume and DDP tests (not a test module): one deterministic training run."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import mixture  # noqa: E402

from tl_glp import GenerativePrior, InMemoryActivations, TrainConfig, train  # noqa: E402


class SlowActivations(InMemoryActivations):
    """Reads sleep a little, so a test has time to kill the run between checkpoints."""

    delay = 0.0

    def read_rows(self, rows: np.ndarray) -> torch.Tensor:
        time.sleep(self.delay)
        return super().read_rows(rows)


def make_run(seed: int = 0):
    torch.manual_seed(seed)
    data, _ = mixture(4096, d=8, seed=seed)
    source = SlowActivations(data[:, None], ["blocks.0.hook_resid_post"])
    prior = GenerativePrior.from_activations(source, n_blocks=2, d_hidden=32, d_mlp=64)
    cfg = TrainConfig(
        batch_size=64,
        lr=1e-3,
        max_steps=60,
        checkpoint_every=10,
        eval_every=20,
        fd_samples=64,
        log_every=5,
        progress=False,
        plot=False,
    )
    return prior, source, cfg


def main(out_dir: str, delay: float) -> None:
    torch.set_num_threads(1)
    prior, source, cfg = make_run()
    SlowActivations.delay = delay
    train(prior, source, cfg, out_dir=out_dir)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
