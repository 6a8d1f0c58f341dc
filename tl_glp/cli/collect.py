"""``tl-glp collect``: activations from a model into an on-disk ActivationStore (resumable)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from tl_glp.cli._run import Flat, ModelArgs, Quiet, default_of, fail, load_model

COLLECT = "tl_glp.activations.collect:collect_activations"


@dataclass
class CollectArgs:
    """Re-running the same command resumes after the last whole shard. Under torchrun every process collects
    every world_size-th document on its own GPU into OUT/rank_NNNNN, and rank 0 then writes one manifest over all."""

    hook: tuple[str, ...]
    """Hook name to collect, e.g. blocks.6.hook_resid_post; repeat for several (multi-layer priors)."""
    out: str
    """Store folder."""
    model: Annotated[ModelArgs, Flat] = field(default_factory=ModelArgs)
    dataset: str | None = None
    """Hugging Face dataset id to stream texts from (e.g. HuggingFaceFW/fineweb); 'sae-probes': the offline
    corpus (the training side of tl_glp.corpora.sae_probes_corpus); None with --model testbed: its own language."""
    dataset_config: str | None = None
    """Dataset configuration name (e.g. sample-10BT)."""
    split: str = "train"
    """Dataset split."""
    column: str = "text"
    """Text column."""
    text_file: str | None = None
    """A local text file, one document per line, instead of --dataset."""
    context_size: int = default_of(COLLECT, "context_size")
    """Tokens per forward sequence, BOS included (packed windows; unpacked, longer documents are truncated)."""
    batch_size: int = default_of(COLLECT, "batch_size")
    """Sequences (packed windows, or documents) per forward pass."""
    packing: bool = default_of(COLLECT, "packing")
    """Pack the documents into full BOS-opened windows (--no-packing: one right-padded document per sequence)."""
    max_tokens: int | None = default_of(COLLECT, "max_tokens")
    """Stop after this many activation rows (None: the whole dataset)."""
    dtype: Literal["float32", "float16", "bfloat16"] = default_of(COLLECT, "dtype")
    """Storage dtype."""
    shard_rows: int = default_of(COLLECT, "shard_rows")
    """Rows per shard."""
    quiet: Quiet = False
    """Hide the progress bars."""


def collect(args: CollectArgs) -> int:
    from tl_glp.activations.collect import HFText, collect_activations  # here: --help needs only the defaults
    from tl_glp.training import distributed

    distributed.init_from_env(args.model.device)  # under torchrun: each rank collects every world_size-th document
    model = load_model(args.model, progress=not args.quiet)
    if args.text_file:
        with open(args.text_file) as f:
            data = [line.strip() for line in f if line.strip()]
    elif args.dataset == "sae-probes":
        from tl_glp.corpora import sae_probes_corpus

        data = sae_probes_corpus(progress=not args.quiet).train
    elif args.dataset:
        data = HFText(args.dataset, name=args.dataset_config, split=args.split, column=args.column)
    elif args.model.model == "testbed":
        from tl_glp.studies.testbed import load

        language = load(progress=False).language  # its own documents: ~28 tokens each, so this many always suffice
        data = (doc.text for doc in language.documents(max(1, (args.max_tokens or 200_000) // 10), seed=1))
    else:
        return fail("tl-glp collect: pass --dataset NAME or --text-file FILE for a model other than the testbed.")
    store = collect_activations(
        model,
        data,
        list(args.hook),
        out=args.out,
        context_size=args.context_size,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
        dtype=args.dtype,
        shard_rows=args.shard_rows,
        packing=args.packing,
        progress=not args.quiet,
    )
    if distributed.rank() == 0:
        print(
            f"{args.out}: {len(store)} rows x {store.n_hooks} hook(s) x {store.d_input} dims in {store.n_shards} shards"
        )
    return 0
