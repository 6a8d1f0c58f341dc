"""The sizes of a scaling study (:class:`ScalingSettings`), apart from the study itself so that
``tl-glp scaling --help`` reads them without loading torch.

>>> ScalingSettings.quick().max_samples < ScalingSettings().max_samples
True
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class ScalingSettings:
    """Sizes of a scaling study. The defaults finish within 30 minutes on 2 CPU cores on the testbed."""

    depths: tuple[int, ...] = (1, 2, 3, 6)
    """Denoiser depths (``n_blocks``) of the ladder, one training run each."""
    max_samples: int = 1_572_864
    """Training samples (rows seen, repeats included) of the longest checkpoint of every run."""
    n_checkpoints: int = 5
    """Checkpoints per run, at ``max_samples / ratio^k`` samples, k = n_checkpoints-1 .. 0."""
    checkpoint_ratio: float = 2.0
    """Ratio between consecutive checkpoints' sample counts (geometric spacing)."""
    batch_size: int = 512
    """Training batch size."""
    lr: float = 1e-3
    """Learning rate, constant after warmup (so every checkpoint is a model trained at that rate)."""
    warmup_steps: int = 50
    """Linear warmup steps (from 0.01x)."""
    n_docs: int = 12000
    """Documents whose activations form the training and held-out sets."""
    held_out_rows: int = 8192
    """Held-out activation rows, drawn at random from the last quarter of the documents (never trained
    on), in two random halves."""
    fd_samples: int = 4096
    """Generated samples per checkpoint for FD-infinity (fit over a quarter, half and all of them)."""
    fd_num_steps: int = 20
    """Euler steps used to generate them."""
    c2st_samples: int = 2048
    """Rows per side of the classifier two-sample test."""
    c2st_steps: int = 300
    """Training steps of that classifier."""
    projection_rows: int = 512
    """Held-out rows whose relative move under projection (t=0.5) is reported."""
    lm_eval_docs: int = 64
    """Documents (not used for activations) on which delta LM loss is measured."""
    d_sae: int = 1024
    """Latents of the reference SAEs."""
    sae_k_fractions: tuple[float, ...] = (0.01, 0.03, 0.1)
    """Active share of ``d_sae`` of each reference TopK SAE (k = fraction * d_sae)."""
    sae_steps: int = 1000
    """Training steps of each SAE (batch 512)."""
    probe_top_k: int = 128
    """Candidate meta-neurons cross-validated per probing dataset (ranked by mean difference)."""
    strengths: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0)
    """Steering strengths r (times the activation norm)."""
    new_tokens: int = 10
    """Tokens generated per steered continuation."""
    n_boot: int = 1000
    """Bootstrap resamples for every CI."""
    seed: int = 0
    """Seed of the data split, the training order, the noise and every bootstrap."""

    def __post_init__(self) -> None:
        self.depths = tuple(int(d) for d in self.depths)
        self.strengths = tuple(float(r) for r in self.strengths)
        self.sae_k_fractions = tuple(float(f) for f in self.sae_k_fractions)
        if not self.depths or min(self.depths) < 1:
            raise ValueError(f"ScalingSettings.depths must be positive block counts, got {self.depths}.")
        if self.n_checkpoints < 1 or self.checkpoint_ratio <= 1:
            raise ValueError(
                f"ScalingSettings needs n_checkpoints >= 1 and checkpoint_ratio > 1, got {self.n_checkpoints}, {self.checkpoint_ratio}."
            )
        if self.max_samples < self.batch_size:
            raise ValueError(
                f"ScalingSettings.max_samples ({self.max_samples}) must be at least one batch ({self.batch_size})."
            )

    @classmethod
    def quick(cls) -> ScalingSettings:
        """The ``--quick`` study: within 5 minutes on 2 CPU cores on the testbed."""
        return cls(
            depths=(1, 2, 3),
            max_samples=98_304,
            n_checkpoints=3,
            n_docs=3000,
            held_out_rows=4096,
            fd_samples=2048,
            c2st_samples=1024,
            c2st_steps=150,
            projection_rows=256,
            lm_eval_docs=40,
            d_sae=256,
            sae_steps=300,
            probe_top_k=64,
            strengths=(0.1, 0.5, 1.0, 2.0),
            new_tokens=8,
            n_boot=300,
        )

    def checkpoint_steps(self) -> list[int]:
        """Optimizer steps of the checkpoints (distinct, increasing, the last = max_samples / batch)."""
        last = self.max_samples // self.batch_size
        steps = {max(1, round(last / self.checkpoint_ratio**k)) for k in range(self.n_checkpoints)}
        return sorted(steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScalingSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known})
