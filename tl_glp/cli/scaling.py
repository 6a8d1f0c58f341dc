"""``tl-glp scaling``: the scaling study; every ScalingSettings field is a flag."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from tl_glp.cli._run import Flat, Quiet
from tl_glp.studies.scaling.settings import ScalingSettings


@dataclass
class ScalingArgs:
    """A ladder of priors over compute, every checkpoint evaluated, L(C) fitted, report.md. Re-running the same
    command resumes in --out. Sizes are flags (--depths 1 2 3, or 1,2,3); --set FIELD=VALUE works too. --quick
    starts from the reduced ladder (--help --quick shows it); flags given beside it still win."""

    out: str = "scaling_out"
    """Study folder."""
    quick: bool = False
    """Reduced ladder and sizes (within 5 minutes on 2 CPU cores on the testbed)."""
    model: str = "testbed"
    """'testbed' (offline), a Hugging Face model id, or a local model folder."""
    hook: str | None = None
    """Hook to model (None: the testbed's middle hook, or the middle block's hook_resid_post)."""
    dataset: tuple[str, ...] = ()
    """For real models, as in `tl-glp demo`: an HF text dataset for activations, sae-probes names or CSVs
    (prompt,target) for probing; repeat."""
    device: str | None = None
    """cpu or cuda (None: cuda if available)."""
    bridge: bool = False
    """Load --model through TransformerBridge."""
    settings: Annotated[ScalingSettings, Flat] = field(default_factory=ScalingSettings)
    quiet: Quiet = False
    """Hide the progress bars."""

    @classmethod
    def quick_defaults(cls) -> ScalingArgs:
        return cls(settings=ScalingSettings.quick())  # quick stays False here: --quick, present in argv, sets it


def scaling(args: ScalingArgs) -> int:
    from tl_glp.studies.scaling.entry import run_named_study  # here, not at the top: --help needs only the settings

    result = run_named_study(
        args.out,
        args.settings,
        model=args.model,
        hook=args.hook,
        dataset=list(args.dataset) or None,
        device=args.device,
        bridge=args.bridge,
        quick=args.quick,
        progress=not args.quiet,
    )
    print(
        f"wrote {result.out_dir / 'report.md'}, {result.out_dir / 'scaling.csv'}, loss_vs_compute.png, downstream_vs_loss.png"
    )
    return 0
