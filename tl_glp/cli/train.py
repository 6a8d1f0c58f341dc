"""``tl-glp train``: a GenerativePrior trained on an ActivationStore, or streamed from a model while it reads
text (``--stream.hook``); every TrainConfig field is a flag."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from tl_glp.cli._run import Flat, ModelArgs, default_of, fail, load_model
from tl_glp.training.config import TrainConfig

if TYPE_CHECKING:
    from tl_glp.activations.store import ActivationStore
    from tl_glp.activations.streaming import StreamingActivations

STREAMING = "tl_glp.activations.streaming:StreamingActivations"


@dataclass
class StreamArgs:
    """Streaming mode: the model runs over the text as training consumes it (no store on disk)."""

    hook: tuple[str, ...] = ()
    """Hook(s) to stream from, e.g. blocks.7.hook_resid_post; naming one turns streaming on (leave --activations out)."""
    model: str = "testbed"
    """TransformerLens/Hugging Face model id, a local model folder, or 'testbed' (offline; its own language)."""
    dataset: str | None = None
    """Hugging Face text dataset id (e.g. HuggingFaceFW/fineweb); 'sae-probes': the offline corpus (the training
    side of tl_glp.corpora.sae_probes_corpus)."""
    dataset_config: str | None = None
    """Dataset configuration name (e.g. sample-10BT)."""
    text_file: str | None = None
    """A local text file, one document per line, instead of --stream.dataset."""
    context_size: int = default_of(STREAMING, "context_size")
    """Tokens per forward sequence, BOS included."""
    forward_batch: int = default_of(STREAMING, "forward_batch")
    """Sequences (packed windows, or documents) per forward pass of the model."""
    packing: bool = default_of(STREAMING, "packing")
    """Pack the documents into full BOS-opened windows (--stream.no-packing: one right-padded document each)."""
    buffer_rows: int = default_of(STREAMING, "buffer_rows")
    """Rows of the shuffle buffer."""
    warmup_rows: int = default_of(STREAMING, "warmup_rows")
    """Rows whose statistics fit the normaliser (recorded in the prior's config)."""
    val_rows: int = default_of(STREAMING, "val_rows")
    """Validation rows, taken from the first documents."""


@dataclass
class TrainArgs:
    """Re-running the same command resumes from the newest checkpoint in --out. Under torchrun every rank
    reads its own share (a store's slice of each batch, or every world_size-th document of a stream)."""

    out: str
    """Run folder: checkpoints, metrics.jsonl, loss.png and the final prior."""
    activations: str | None = None
    """An ActivationStore folder written by tl-glp collect (or stream with --stream.hook)."""
    stream: StreamArgs = field(default_factory=StreamArgs)
    n_blocks: int = default_of("tl_glp.core.prior:GenerativePrior.from_activations", "n_blocks")
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


def _source(args: TrainArgs) -> ActivationStore | StreamingActivations:
    from tl_glp.activations.collect import HFText
    from tl_glp.activations.store import ActivationStore
    from tl_glp.activations.streaming import StreamingActivations

    st = args.stream
    if not st.hook:
        return ActivationStore.open(args.activations)  # type: ignore[arg-type]
    model = load_model(ModelArgs(model=st.model, device=args.config.device), progress=not args.quiet)
    if st.text_file:
        with open(st.text_file) as f:
            data = [line.strip() for line in f if line.strip()]
    elif st.dataset == "sae-probes":
        from tl_glp.corpora import sae_probes_corpus

        data = sae_probes_corpus(progress=not args.quiet).train
    elif st.dataset:
        data = HFText(st.dataset, name=st.dataset_config)
    elif st.model == "testbed":
        from tl_glp.studies.testbed import load

        language = load(progress=False).language
        data = lambda: (doc.text for doc in language.documents(10**9, seed=1))  # noqa: E731  (read again on resume)
    else:
        raise ValueError("pass --stream.dataset NAME or --stream.text-file FILE for a model other than the testbed")
    return StreamingActivations(
        model,
        data,
        list(st.hook),
        context_size=st.context_size,
        forward_batch=st.forward_batch,
        buffer_rows=st.buffer_rows,
        warmup_rows=st.warmup_rows,
        val_rows=st.val_rows,
        packing=st.packing,
    )


def train(args: TrainArgs) -> int:
    from tl_glp.core.prior import GenerativePrior  # here, not at the top: --help needs only the defaults
    from tl_glp.training import distributed
    from tl_glp.training.trainer import train as train_prior

    if bool(args.activations) == bool(args.stream.hook):
        return fail(
            "tl-glp train: pass either --activations STORE or --stream.hook NAME (streaming), not both or neither."
        )
    distributed.init_from_env(args.config.device)
    try:
        store = _source(args)
    except ValueError as err:
        return fail(f"tl-glp train: {err}")
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
