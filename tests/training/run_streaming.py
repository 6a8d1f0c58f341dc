"""Helper process for the streaming resume tests (not a test module): one deterministic streaming run.

``python run_streaming.py OUT_DIR DELAY [MAX_STEPS]``; under ``torchrun`` every rank streams its share.
Each batch the stream hands out is appended to ``OUT_DIR/batches_rank{r}_pid{pid}.jsonl`` as
``[[doc, pos, hook], ...]`` (written by the reader thread, so it may run ahead of training).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import WORDS, make_tiny_model, random_sentences  # noqa: E402

from tl_glp import GenerativePrior, TrainConfig, train  # noqa: E402
from tl_glp.activations.streaming import StreamingActivations  # noqa: E402
from tl_glp.studies.testbed.tokenizer import build_tokenizer  # noqa: E402

HOOK = "blocks.1.hook_resid_post"


class LoggedStream(StreamingActivations):
    """Writes down every batch it hands out, and sleeps a little per batch so a test can kill the run."""

    delay = 0.0
    log: Path | None = None

    def iter_batches(self, batch_size, **kwargs):
        for batch, state in super().iter_batches(batch_size, **kwargs):
            time.sleep(self.delay)
            if self.log is not None:
                with open(self.log, "a") as f:
                    f.write(json.dumps(torch.stack([batch.doc, batch.pos, batch.hook_idx], 1).tolist()) + "\n")
            yield batch, state


def make_stream(model=None) -> LoggedStream:
    model = model or make_tiny_model(build_tokenizer(WORDS))
    return LoggedStream(
        model,
        random_sentences(3000, seed=5, length=10),
        HOOK,
        buffer_rows=512,
        warmup_rows=1024,
        val_rows=256,
        forward_batch=16,
    )


def make_cfg(max_steps: int = 60) -> TrainConfig:
    return TrainConfig(
        batch_size=64,
        lr=1e-3,
        max_steps=max_steps,
        checkpoint_every=10,
        eval_every=20,
        fd_samples=32,
        log_every=5,
        progress=False,
        plot=False,
        prefetch=2,
    )


def main(out_dir: str, delay: float, max_steps: int = 60) -> None:
    torch.set_num_threads(1)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        torch.distributed.init_process_group("gloo")
    rank = int(os.environ.get("RANK", "0"))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    stream = make_stream()
    LoggedStream.delay = delay
    LoggedStream.log = Path(out_dir) / f"batches_rank{rank}_pid{os.getpid()}.jsonl"
    prior = GenerativePrior.from_activations(stream, n_blocks=2, d_hidden=32, d_mlp=64)
    train(prior, stream, make_cfg(max_steps), out_dir=out_dir)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), *(int(a) for a in sys.argv[3:]))
