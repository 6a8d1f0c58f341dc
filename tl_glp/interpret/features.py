"""Per-token features of any :class:`~tl_glp.probing.sources.FeatureSource`, streamed over a corpus.

Probing reads one activation per prompt; interpretation needs every token. :func:`token_batches`
tokenises documents (right padding, truncated to ``context_size``), runs the model once per batch
up to the deepest hook the source needs, and maps the real (non-special) positions through the
source. Meta-neurons get special care: the noise they are read under is drawn **per document**
from a seed derived from ``(source.seed, document index)``, so a document's meta-neurons do not
depend on which batch it lands in, and a second pass over the corpus reproduces the first exactly.

Example:
    >>> import torch
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> from tl_glp.probing import RawActivations
    >>> model = HookedTransformer(HookedTransformerConfig(n_layers=1, d_model=8, d_head=4, n_heads=2,
    ...     d_mlp=16, n_ctx=8, d_vocab=12, act_fn="gelu"))
    >>> tokens = torch.randint(0, 12, (5, 6), generator=torch.Generator().manual_seed(0))
    >>> batches = list(token_batches(model, RawActivations(), tokens, "blocks.0.hook_resid_post", batch_size=2))
    >>> batches[0].rows.shape, batches[0].features.shape, sum(len(b.doc_ids) for b in batches)
    (torch.Size([12, 8]), torch.Size([2, 6, 8]), 5)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from tl_glp.core import _compat
from tl_glp.core.flow import add_noise
from tl_glp.core.prior import GenerativePrior
from tl_glp.probing.sources import FeatureSource, MetaNeurons, MLPNeurons, RandomProjection, RawActivations, SAEFeatures

_SEED_MIX = 1_000_003


@dataclass
class TokenBatch:
    """One batch of documents: tokens, which positions are real, and the features of the real ones.

    ``rows`` holds one row per real (``valid``) position, document-major in position order;
    :attr:`features` lays them out as ``[batch, seq, n_features]`` with NaN elsewhere.
    """

    doc_ids: Int[Tensor, " batch"]
    tokens: Int[Tensor, "batch seq"]
    valid: Bool[Tensor, "batch seq"]
    rows: Float[Tensor, "n_valid n_features"]

    @property
    def features(self) -> Float[Tensor, "batch seq n_features"]:
        feats = torch.full((*self.tokens.shape, self.rows.shape[-1]), float("nan"), device=self.rows.device)
        feats[self.valid.to(self.rows.device)] = self.rows
        return feats


def resolve_source(source: FeatureSource | str, prior: GenerativePrior | None = None) -> FeatureSource:
    """A :class:`FeatureSource` from an instance or a short name (``meta``, ``raw``, ``mlp``, ``random``)."""
    if isinstance(source, FeatureSource):
        return source
    if source == "meta":
        if prior is None:
            raise ValueError("The 'meta' source needs a prior: pass prior=... or MetaNeurons(prior).")
        return MetaNeurons(prior)
    named = {"raw": RawActivations, "mlp": MLPNeurons, "random": RandomProjection}
    if source not in named:
        raise ValueError(
            f"Unknown feature source {source!r}: use 'meta', 'raw', 'mlp', 'random' or a FeatureSource instance."
        )
    return named[source]()


def is_signed(source: FeatureSource) -> bool:
    """Whether a source's units take both signs meaningfully (so both tails are worth tracking).

    SAE latents and MLP neurons (after a ReLU/GELU) are one-sided; raw dimensions, meta-neurons
    (``silu(gate) * up`` is signed), PCA and random projections are signed.
    """
    return not isinstance(source, (SAEFeatures, MLPNeurons))


def tokenize(model: Any, texts: Sequence[str] | Tensor, context_size: int = 128) -> list[Tensor]:
    """Token ids per document (BOS as the model adds it), truncated to ``context_size``."""
    if isinstance(texts, Tensor):
        if texts.ndim != 2:
            raise ValueError(f"A token tensor must be [n_docs, seq], got shape {tuple(texts.shape)}.")
        return [row[:context_size].cpu() for row in texts]
    if isinstance(texts, str):
        raise TypeError("texts must be a list of documents, not one string; wrap it in a list.")
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"Document {i} is a {type(text).__name__}, not a string.")
        out.append(model.to_tokens(text, truncate=True)[0, :context_size].cpu())
    if not out:
        raise ValueError("The corpus holds no documents.")
    return out


def special_ids(model: Any) -> set[int]:
    """The tokenizer's special token ids (BOS, EOS, padding): their positions carry no feature."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return set()
    return {int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None}


def document_seed(seed: int, doc: int) -> int:
    """The noise seed of document ``doc`` for a meta-neuron source with base ``seed``."""
    return (int(seed) * _SEED_MIX + int(doc)) % (2**63 - 1)


@torch.inference_mode()
def meta_neurons_per_document(
    source: MetaNeurons,
    acts: Float[Tensor, "n_tokens d_input"],
    doc_of_row: Int[Tensor, " n_tokens"],
    hook_name: str | None = None,
    out: Tensor | None = None,
) -> Float[Tensor, "n_tokens n_features"]:
    """Meta-neurons of ``acts`` whose noise is drawn per document (seeded by ``(source.seed, doc)``).

    Rows of one document must be contiguous and in position order. The noise of a document is
    ``torch.randn(n_rows_of_doc, d_input)`` from a generator on the prior's device seeded with
    :func:`document_seed`, so a document gets the same noise in any batch. ``out`` (a float
    buffer of at least ``n_tokens * n_features`` elements) is written into instead of a new tensor.
    The result is a transposed view of feature-major storage (``.T.is_contiguous()``).
    """
    prior = source.prior
    device = prior.mean.device
    layer = _compat.layer_of(hook_name) if (prior.cfg.is_multi_layer and hook_name) else None
    x = acts.to(device)
    z = prior.normalize(x, layer).reshape(-1, prior.cfg.d_input)
    docs, counts = torch.unique_consecutive(doc_of_row.cpu(), return_counts=True)
    eps = torch.empty_like(z)
    start = 0
    for doc, count in zip(docs.tolist(), counts.tolist()):
        gen = torch.Generator(device=device).manual_seed(document_seed(source.seed, doc))
        eps[start : start + count] = torch.randn(count, prior.cfg.d_input, generator=gen, device=device)
        start += count
    z_t = add_noise(z, eps, source.t)
    d_mlp = prior.cfg.d_mlp
    rows = None if layer is None else torch.full((z.shape[0],), layer, device=device)
    # stored feature-major ([n_features, n_tokens]) and returned as its transpose: per-feature
    # reductions (top-k, density) then read contiguous memory, with no transposed copy later
    shape = (prior.cfg.n_blocks * d_mlp, z.shape[0])
    if out is None or out.numel() < shape[0] * shape[1]:
        out = torch.empty(*shape, device=device)
    else:
        out = out.view(-1)[: shape[0] * shape[1]].view(shape)  # view: writes must land in the caller's buffer
    for begin in range(0, z_t.shape[0], source.batch_size):
        part = z_t[begin : begin + source.batch_size]
        end = begin + part.shape[0]

        def grab(act: Tensor, hook: Any, begin: int = begin, end: int = end) -> None:
            block = int(hook.name.split(".")[1])
            out[block * d_mlp : (block + 1) * d_mlp, begin:end] = act.T

        with prior.hooks(fwd_hooks=[(f"blocks.{i}.hook_neurons", grab) for i in range(prior.cfg.n_blocks)]):
            times = torch.full((part.shape[0],), float(source.t), device=device)
            prior.velocity(part, times, prior.layer_depth(None if rows is None else rows[begin:end]))
    return out.T


def source_features(
    source: FeatureSource, acts: dict[str, Tensor], hook_name: str, doc_of_row: Tensor, out: Tensor | None = None
) -> Tensor:
    """Features of flattened real-token rows: meta-neurons seeded per document, any other source as is."""
    if isinstance(source, MetaNeurons):
        return meta_neurons_per_document(source, acts[hook_name], doc_of_row, hook_name, out=out)
    with torch.inference_mode():
        return source.features(acts, hook_name)


def token_batches(
    model: Any,
    source: FeatureSource,
    texts: Sequence[str] | Tensor | Iterable[Tensor],
    hook_name: str,
    *,
    batch_size: int = 32,
    context_size: int = 128,
    skip_special_tokens: bool = True,
    keep_on_device: bool = False,
    reuse_buffer: bool = False,
) -> Iterator[TokenBatch]:
    """Yield a :class:`TokenBatch` per ``batch_size`` documents (features on the CPU unless
    ``keep_on_device``: then they stay where the source computed them). With ``reuse_buffer``
    meta-neurons are written into one buffer reused by every batch: a batch's rows are only valid
    until the next one is produced."""
    needed = source.hooks(hook_name)
    for name in needed:
        _compat.check_hook_name(model, name)
    stop = _compat.stop_layer_for(needed, model.cfg.n_layers)
    special = torch.tensor(sorted(special_ids(model) if skip_special_tokens else set()), dtype=torch.long)
    device = getattr(model.cfg, "device", None) or "cpu"
    buffer: Tensor | None = None
    docs = (
        texts
        if isinstance(texts, list) and texts and isinstance(texts[0], Tensor)
        else tokenize(model, texts, context_size)
    )  # type: ignore[arg-type]
    for first in range(0, len(docs), batch_size):
        rows = docs[first : first + batch_size]
        lengths = torch.tensor([len(r) for r in rows])
        tokens = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
        for j, r in enumerate(rows):
            tokens[j, : len(r)] = r
        valid = torch.arange(tokens.shape[1])[None] < lengths[:, None]
        if len(special):
            valid &= ~torch.isin(tokens, special)
        doc_ids = torch.arange(first, first + len(rows))
        with torch.inference_mode():
            _, cache = model.run_with_cache(tokens.to(device), names_filter=needed, stop_at_layer=stop)
            mask = valid.to(cache[needed[0]].device)
            acts = {n: cache[n][mask] for n in needed}
            del cache
        doc_of_row = doc_ids[:, None].expand_as(valid)[valid]
        flat = source_features(source, acts, hook_name, doc_of_row, out=buffer).float()
        if reuse_buffer and (buffer is None or flat.numel() > buffer.numel()):
            buffer = flat if flat.is_contiguous() else flat.T  # the storage itself (meta-neurons come feature-major)
        yield TokenBatch(doc_ids, tokens, valid, flat if keep_on_device else flat.cpu())


def flat_token_features(
    model: Any,
    source: FeatureSource,
    texts: Sequence[str] | Tensor,
    hook_name: str,
    **kwargs: Any,
) -> tuple[Float[Tensor, "n_tokens n_features"], Int[Tensor, " n_tokens"], Int[Tensor, " n_tokens"]]:
    """Every real token's features, with its document index and position: ``(features, doc, pos)``."""
    feats, docs, poss = [], [], []
    for batch in token_batches(model, source, texts, hook_name, **kwargs):
        pos = torch.arange(batch.tokens.shape[1])[None].expand_as(batch.valid)
        feats.append(batch.rows.cpu())
        docs.append(batch.doc_ids[:, None].expand_as(batch.valid)[batch.valid])
        poss.append(pos[batch.valid])
    return torch.cat(feats), torch.cat(docs), torch.cat(poss)
