"""``tl-glp train``: a GenerativePrior trained on an ActivationStore; every TrainConfig field is a flag."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from tl_glp.activations.store import ActivationStore
from tl_glp.cli._run import Flat, default_of
from tl_glp.core.prior import GenerativePrior
from tl_glp.training import distributed
from tl_glp.training.config import TrainConfig
from tl_glp.training.trainer import train as train_prior


@dataclass
class TrainArgs:
    """Re-running the same command resumes from the newest checkpoint in --out."""

    activations: str
    """An ActivationStore folder written by tl-glp collect."""
    out: str
    """Run folder: checkpoints, metrics.jsonl, loss.png and the final prior."""
    n_blocks: int = default_of(GenerativePrior.from_activations, "n_blocks")
    """Denoiser blocks (published priors: 3, 6, 12, 24)."""
    d_hidden: int | None = None
    """Denoiser width (None: PriorConfig's default, 2 x d_input)."""
    d_mlp: int | None = None
    """Meta-neurons per block (None: PriorConfig's default, 4 x d_input)."""
    n_llm_layers: int | None = None
    """The LLM's layer count, for a multi-layer prior over a multi-hook store."""
    no_resume: bool = False
    """Start over even if --out holds checkpoints."""
    config: Annotated[TrainConfig, Flat] = field(default_factory=TrainConfig)
    quiet: bool = False
    """Hide the progress bars (the same as --no-progress)."""


def train(args: TrainArgs) -> int:
    distributed.init_from_env()
    store = ActivationStore.open(args.activations)
    out = Path(args.out)
    if (out / "cfg.json").exists() and not args.no_resume:
        prior = GenerativePrior.from_pretrained(out)
    else:
        sizes = {"d_hidden": args.d_hidden, "d_mlp": args.d_mlp, "n_llm_layers": args.n_llm_layers}
        prior = GenerativePrior.from_activations(
            store, n_blocks=args.n_blocks, **{k: v for k, v in sizes.items() if v is not None}
        )
    cfg = args.config.replace(progress=args.config.progress and not args.quiet)
    result = train_prior(prior, store, cfg, out_dir=out, resume=not args.no_resume)
    if distributed.rank() == 0:
        print(
            f"trained {result.steps} steps (resumed from {result.resumed_from}); final loss {result.final_loss:.4f}; prior saved to {out}"
        )
    return 0
