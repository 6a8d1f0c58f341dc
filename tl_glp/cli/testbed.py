"""``tl-glp testbed build|quality``: the offline testbed model."""

from __future__ import annotations

from dataclasses import dataclass

from tl_glp.cli._run import Quiet, default_of


@dataclass
class BuildArgs:
    """Exits 1 when the built model misses a quality bar."""

    seed: int = default_of("tl_glp.studies.testbed.build:build", "seed")
    """Training seed (0: the shipped model's)."""
    steps: int | None = default_of("tl_glp.studies.testbed.build:build", "steps")
    """Training steps (None: the LMConfig default, as shipped)."""
    out: str = "testbed_build"
    """Output folder (the shipped files live in tl_glp/studies/testbed/weights)."""
    quiet: Quiet = False
    """Hide the progress bars."""


def build(args: BuildArgs) -> int:
    from tl_glp.studies.testbed.build import build as build_testbed  # here: --help needs only the defaults
    from tl_glp.studies.testbed.quality import format_quality

    manifest = build_testbed(args.out, seed=args.seed, steps=args.steps, progress=not args.quiet)
    print(format_quality(manifest["quality"]))
    print(
        f"\nwrote {args.out}/model.safetensors ({manifest['size_bytes']} bytes, sha256 {manifest['sha256'][:12]}...) and manifest.json "
        f"in {manifest['build_seconds']:.0f} s"
    )
    return 0 if manifest["quality"]["passes"] else 1


@dataclass
class QualityArgs:
    """Exits 1 when the model misses a quality bar."""

    seed: int = default_of("tl_glp.studies.testbed:load", "seed")
    """Which testbed to load (0: the shipped model; another seed is trained on first use and cached)."""
    docs: int = 600
    """Held-out documents for the next-word AUCs and the loss."""
    oracle: bool = False
    """Also the Bayes-optimal ceilings and loss."""
    quiet: Quiet = False
    """Hide the progress bars (when a model has to be trained)."""
    out: str | None = None
    """Also write numbers.json here: the measures, the bars and the settings (for docs/gen_results.py --add-run)."""


def quality(args: QualityArgs) -> int:
    import time
    from pathlib import Path

    from tl_glp.core._io import write_json
    from tl_glp.studies.testbed import load
    from tl_glp.studies.testbed.quality import BARS, format_quality, measure_quality

    clock = time.perf_counter()
    result = measure_quality(load(seed=args.seed, progress=not args.quiet), n_docs=args.docs, oracle=args.oracle)
    print(format_quality(result))
    if args.out is not None:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        settings = {"seed": args.seed, "docs": args.docs, "oracle": args.oracle}
        write_json(
            folder / "numbers.json",
            {"quality": result, "bars": BARS, **settings, "seconds": time.perf_counter() - clock},
        )
        print(f"wrote {folder / 'numbers.json'}")
    return 0 if result["passes"] else 1
