"""``TrainConfig``: every knob of :func:`tl_glp.train`, with the paper's defaults.

The defaults reproduce the published runs (AdamW, lr 5e-5, batch 4096, 1% warmup from 0.01x,
cosine decay to 0.1x, gradient clipping at 1.0, bf16 autocast on CUDA). They assume hundreds of
millions of activations. For a small model in a notebook (a few hundred thousand activations, a
prior of a few million parameters), a larger learning rate and a smaller batch learn much faster:
``TrainConfig(batch_size=512, lr=1e-3, max_steps=2000)`` is a good start.

Example:
    >>> cfg = TrainConfig(batch_size=256, lr=1e-3, max_steps=100)
    >>> cfg.replace(lr=3e-4).lr
    0.0003
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    """Settings of a training run."""

    batch_size: int = 4096
    """Global batch size (split evenly over processes under torchrun)."""

    lr: float = 5e-5
    """Peak learning rate of AdamW."""

    max_steps: int | None = None
    """Optimizer steps. ``None``: one pass over the training rows (the paper: no repeats)."""

    warmup_frac: float = 0.01
    """Share of the steps spent warming the learning rate up linearly."""

    warmup_start: float = 0.01
    """Learning-rate multiplier at step 0."""

    final_lr_frac: float = 0.1
    """Learning-rate multiplier at the last step (cosine decay from 1)."""

    weight_decay: float = 0.01
    """AdamW weight decay (PyTorch's default)."""

    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""

    grad_clip: float | None = 1.0
    """Clip the global gradient norm to this value (``None``: no clipping)."""

    checkpoint_every: int = 1000
    """Write a resumable checkpoint every this many steps (needs ``out_dir``)."""

    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep on disk (those in ``checkpoint_steps`` are never pruned)."""

    checkpoint_steps: tuple[int, ...] = ()
    """Extra steps at which a checkpoint is written and kept for good, whatever ``keep_checkpoints``
    says: e.g. geometrically spaced steps, so that a scaling study can evaluate the same run at
    several sample counts (``tl_glp.studies.scaling``). Steps beyond the run's last step are ignored."""

    eval_every: int = 500
    """Validation loss (and Frechet distance) every this many steps; 0 disables."""

    eval_times: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    """The fixed grid of times at which validation loss is reported."""

    val_fraction: float = 0.01
    """Share of the rows held out for validation (the last rows of the source)."""

    max_val_rows: int = 4096
    """Cap on validation rows."""

    fd_samples: int = 2048
    """Samples generated for the Frechet distance at each evaluation (0 disables FD)."""

    fd_num_steps: int = 20
    """Euler steps used to generate those samples."""

    log_every: int = 10
    """Write a metrics line every this many steps."""

    seed: int = 0
    """Seed of the data order, the noise and the times."""

    device: str | None = None
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` picks CUDA when available."""

    bf16: bool | None = None
    """bf16 autocast; ``None`` means on for CUDA only (bf16 matmuls are very slow on most CPUs)."""

    compile: str | None = None
    """``torch.compile`` the training step's network: ``None`` (eager, the default), ``"auto"`` (compile on
    CUDA, eager on CPU), or a mode (``"default"``, ``"reduce-overhead"``, ``"max-autotune"``...) on any
    device. The first steps compile (tens of seconds); checkpoints and the saved prior are unchanged."""

    compile_backend: str = "inductor"
    """``torch.compile`` backend for ``compile`` (``"aot_eager"`` traces without generating kernels: for debugging)."""

    pin_memory: bool | None = None
    """Copy batches into pinned host memory in the prefetch thread so host-to-device copies run
    asynchronously; ``None``: on when training on CUDA (never on CPU, where there is no copy)."""

    prefetch: int | None = None
    """Batches read ahead in a background thread (0: none). ``None``: 2 on CUDA and for on-disk stores
    (keeps reads off the critical path), 0 for in-memory and streaming sources on CPU, where the thread
    would compete with the training step for the same cores (see ``training.accel.prefetch_depth``)."""

    progress: bool = True
    """Show a tqdm bar with the loss and samples/s."""

    plot: bool = True
    """Write ``loss.png`` into ``out_dir`` at the end."""

    wandb_project: str | None = None
    """Also log to this Weights & Biases project (needs ``pip install wandb``)."""

    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes stored with the run."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "checkpoint_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"TrainConfig.max_steps must be >= 1 or None, got {self.max_steps}.")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}.")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"TrainConfig.val_fraction must be in [0, 1), got {self.val_fraction}.")
        if any(int(s) < 1 for s in self.checkpoint_steps):
            raise ValueError(f"TrainConfig.checkpoint_steps must all be >= 1, got {tuple(self.checkpoint_steps)}.")
        self.checkpoint_steps = tuple(sorted({int(s) for s in self.checkpoint_steps}))
        if self.compile is not None:
            from tl_glp.core.compiled import MODES  # torch, so read only to check a mode someone asked for

            if self.compile not in MODES:
                raise ValueError(f"TrainConfig.compile must be None or one of {MODES}, got {self.compile!r}.")
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.eval_times = tuple(self.eval_times)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
