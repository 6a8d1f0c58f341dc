"""``tl-glp steer``: side-by-side continuations, unsteered, plain and prior-guided, at several strengths."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from tl_glp.cli._run import Flat, ModelArgs, Quiet, default_of, fail, load_model
from tl_glp.core.projection import ProjectionConfig

SWEEP = "tl_glp.steering.sweep:steering_sweep"


@dataclass
class SteerArgs:
    """The direction comes from --direction FILE, or from --positive and --negative texts (difference of means)."""

    prior: str
    """A saved prior folder, a published GLP folder, or a Hugging Face repo id."""
    prompt: tuple[str, ...]
    """Prompt to continue; repeat for several."""
    model: Annotated[ModelArgs, Flat] = field(default_factory=ModelArgs)
    direction: str | None = None
    """A .safetensors file with a 'direction' tensor [d_model]."""
    positive: tuple[str, ...] = ()
    """Text for a difference-of-means direction (positive side); repeat."""
    negative: tuple[str, ...] = ()
    """Text for a difference-of-means direction (negative side); repeat."""
    r: tuple[float, ...] = (0.5, 1.0, 2.0)
    """Strengths as multiples of the activation norm (--r 0.5 1 2, or 0.5,1,2)."""
    hook: str | None = None
    """Hook to steer at (None: the prior's own)."""
    positions: Literal["last", "all"] = default_of(SWEEP, "positions")
    """Positions edited: 'last' (the last prompt token, then every generated one) or 'all'."""
    max_new_tokens: int = default_of(SWEEP, "max_new_tokens")
    """Tokens to generate."""
    seed: int = default_of(SWEEP, "seed")
    """Seed of the sampling and of the projection noise (each strength and batch of prompts gets its own)."""
    projection: ProjectionConfig = field(kw_only=True)  # no instance here: its fields' own defaults fill it
    """How prior-guided steering projects the steered activation back onto the manifold (its label names the rows)."""
    csv: str | None = None
    """Also write the full table (with scores) to this CSV."""
    quiet: Quiet = False
    """Hide the progress bars."""


def steer(args: SteerArgs) -> int:
    from tl_glp.core._io import read_tensors  # here, not at the top: --help needs only the defaults
    from tl_glp.core._tokens import model_device
    from tl_glp.core.prior import GenerativePrior
    from tl_glp.steering import diff_of_means, steering_sweep

    if not args.direction and not (args.positive and args.negative):
        return fail("tl-glp steer: give --direction FILE, or --positive and --negative texts.")
    model = load_model(args.model, progress=not args.quiet)
    prior = GenerativePrior.from_pretrained(args.prior, device=args.model.device or model_device(model))
    hook = args.hook or prior.cfg.hook_name
    if args.direction:
        direction = read_tensors(args.direction)["direction"]
    else:
        direction = diff_of_means(model, list(args.positive), list(args.negative), hook)
    df = steering_sweep(
        model,
        direction,
        list(args.prompt),
        prior=prior,
        strengths=list(args.r),
        hook_name=hook,
        methods=("plain", args.projection),
        positions=args.positions,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        progress=not args.quiet,
    )
    width = max(len(m) for m in df["method"])
    for prompt, part in df.groupby("prompt", sort=False):
        print(f"\n=== {prompt!r}")
        for _, row in part.iterrows():
            print(
                f"  {row['method']:>{width}}  r={row['r']:<4g} nll={row['nll']:.2f} concept={row['concept']:+.2f}  {row['continuation']!r}"
            )
    if args.csv:
        df.to_csv(args.csv, index=False)
    return 0
