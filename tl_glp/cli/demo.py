"""``tl-glp demo``: the whole pipeline end to end with a report; every DemoSettings field is a flag."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from tl_glp.cli._run import Flat, Quiet
from tl_glp.studies.demo.settings import DemoSettings


@dataclass
class DemoArgs:
    """Sizes are flags (--prior-steps 300); --set FIELD=VALUE works too. --quick starts from the reduced sizes
    (a smoke run of every step; --help --quick shows them), --full from the full-size run behind the README's
    tables (--help --full shows them); flags given beside either still win. Without either, a real --model starts
    from the real-model sizes (DemoSettings.real(): 23-31 minutes for SmolLM2-135M on 2 idle CPU cores)."""

    out: str = "demo_out"
    """Output folder for report.md and figures."""
    quick: bool = False
    """Reduced sizes (a smoke run of every step, ~1 minute once the testbed is cached)."""
    full: bool = False
    """The full-size run behind the README's tables (DemoSettings.full(): 5000 prior steps, 10,000 samples per
    side; 12-35 minutes on 2 CPU cores, against about 4 for the default)."""
    model: str = "testbed"
    """'testbed' (offline), a Hugging Face model id such as gpt2, or a local model folder (save_pretrained layout)."""
    hook: str | None = None
    """Hook to model (None: the middle block's hook_resid_post)."""
    sae: str | None = None
    """A pretrained SAE (folder or RELEASE:SAE_ID) instead of training one with SAE-Lens."""
    dataset: tuple[str, ...] = ()
    """For real models: HF text dataset for activations, sae-probes names, or CSV files (prompt,target) for probing;
    repeat. With CSVs and no HF dataset, the CSV prompts are the corpus (offline)."""
    device: str | None = None
    """cpu or cuda (None: cuda if available)."""
    bridge: bool = False
    """Load --model through TransformerBridge instead of HookedTransformer (always on TransformerLens 4)."""
    settings: Annotated[DemoSettings, Flat] = field(default_factory=DemoSettings)
    quiet: Quiet = False
    """Hide the progress bars."""

    @classmethod
    def quick_defaults(cls) -> DemoArgs:
        return cls(settings=DemoSettings.quick())  # quick stays False here: --quick, present in argv, sets it

    @classmethod
    def full_defaults(cls) -> DemoArgs:
        return cls(settings=DemoSettings.full())  # the same for --full

    @classmethod
    def argv_defaults(cls, argv: list[str]) -> DemoArgs | None:
        """Without --quick or --full: a real model (--model other than testbed) starts from DemoSettings.real()."""
        model = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--model"), None)
        model = model or next((a.split("=", 1)[1] for a in argv if a.startswith("--model=")), None)
        return cls(settings=DemoSettings.real()) if model not in (None, "testbed") else None


def demo(args: DemoArgs) -> int:
    from tl_glp.studies.demo.run import run_demo  # here, not at the top: --help needs only the settings

    run_demo(
        args.out,
        model_name=args.model,
        hook=args.hook,
        sae=args.sae,
        datasets=list(args.dataset) or None,
        device=args.device,
        progress=not args.quiet,
        settings=args.settings,
        bridge=args.bridge,
    )
    return 0
