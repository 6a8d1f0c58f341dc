"""Offline text corpora, split into prior-training and evaluation documents that share no text.

The corpus that needs no network is the texts of the 113 SAE-Probes datasets, read at run time
from the installed ``sae-probes`` package (they carry third-party licences: never copied here).
Users with the Hugging Face Hub stream any corpus with :class:`tl_glp.HFText` instead.

A split is only as good as its separation: the same sentence under two datasets, or a headline
with one word changed, would put evaluation text into training. :func:`split_documents`
therefore groups the documents first and splits the groups:

1. **Exact duplicates**: texts equal after normalisation (Unicode case folding, runs of whitespace
   made one space, ends stripped).
2. **Near duplicates**: Jaccard similarity of the sets of character ``shingle``-grams (bytes of
   the normalised UTF-8 text) at least ``threshold`` (0.8), computed exactly. MinHash only decides
   which pairs to compute: one permutation, 128 bins densified by rotation; locality-sensitive
   hashing with 25 bands of 5 bins proposes candidate pairs (at Jaccard 0.8 a pair is proposed with
   probability ``1 - (1 - 0.8**5)**25 > 0.9999`` for long texts), and every candidate whose
   estimate is within :data:`SLACK` of the threshold is checked on its shingle sets. Groups are
   the connected components of the near-duplicate pairs (union-find), so a group can chain texts.
3. One document per group is kept (the first in input order); the groups are shuffled with
   ``seed`` and the first ``eval_fraction`` of them become the evaluation documents.

So no evaluation document equals, or is a near duplicate of, a training document, and neither
side holds two such documents. Everything is deterministic given ``seed`` (hashes are fixed
functions of the bytes, never Python's salted ``hash``), and vectorised with numpy: the whole
SAE-Probes corpus (334k texts, 222k distinct) splits in well under a minute on one core.

Example:
    >>> texts = ["The cat sat on the mat.", "the  cat sat on the MAT.", "A dog barked at night.",
    ...          "The cat sat on the mat!", "Completely different words here."]
    >>> split = split_documents(texts, eval_fraction=0.5, seed=0)
    >>> len(split.train) + len(split.eval), split.stats["exact_duplicates"], split.stats["near_duplicates"]
    (3, 1, 1)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

NUM_BINS = 128
"""MinHash bins (one-permutation hashing): the signature length."""
BANDS, ROWS = 25, 5
"""LSH: ``BANDS`` bands of ``ROWS`` bins (125 of the 128)."""
SLACK = 0.25
"""Candidates whose MinHash estimate is within this of the threshold get their Jaccard similarity computed exactly."""
_MAX = np.uint64(np.iinfo(np.uint64).max)
_VALUE_BITS = 50  # a bin's value: 50 bits, so rotation offsets (up to 128 * 2**50) fit in 64 bits
_CHUNK_BYTES = 1 << 22  # documents hashed together (bounds the temporary arrays to ~100 MB)


@dataclass
class CorpusSplit:
    """Prior-training and evaluation documents that share no text, and how they were obtained.

    ``train_index`` / ``eval_index`` are each document's index in the input texts; ``train_source``
    / ``eval_source`` the name of the dataset it came from (where known). ``stats`` counts the
    input texts, the exact and near duplicates removed, the groups, the settings and the seconds taken.
    """

    train: list[str]
    eval: list[str]
    train_index: np.ndarray
    eval_index: np.ndarray
    train_source: list[str] = field(default_factory=list)
    eval_source: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def normalize(text: str) -> str:
    """Case-folded, whitespace runs made one space, ends stripped: the form exact duplicates are judged in.

    >>> normalize("  The\\tCAT  sat ")
    'the cat sat'
    """
    return " ".join(text.casefold().split())


def duplicate_groups(
    texts: Sequence[str], *, threshold: float = 0.8, shingle: int = 5, progress: bool = False
) -> tuple[np.ndarray, dict[str, Any]]:
    """A group label per text (``[n]`` int64, the smallest index in the group): texts in one group are
    exact or near duplicates of each other (directly or through a chain); and counts of what was found.

    Args:
        texts: the documents.
        threshold: the Jaccard similarity (of character ``shingle``-gram sets) from which two texts
            are near duplicates; ``1.0`` or more: exact duplicates only.
        shingle: characters (UTF-8 bytes) per shingle, 1 to 8.
        progress: show a tqdm bar over the chunks of distinct texts.

    >>> duplicate_groups(["a b c d e f g", "A  B C D E F G", "x y z", "a b c d e f g h"])[0].tolist()
    [0, 0, 2, 0]
    """
    if not 1 <= shingle <= 8:
        raise ValueError(f"shingle must be 1 to 8 characters (bytes), got {shingle}.")
    n = len(texts)
    first: dict[str, int] = {}
    exact = np.empty(n, dtype=np.int64)
    for i, text in enumerate(texts):
        exact[i] = first.setdefault(normalize(text), i)
    distinct = np.array(list(first.values()), dtype=np.int64)  # increasing: first occurrences in order
    counts = {"texts": n, "distinct": len(distinct), "exact_duplicates": n - len(distinct)}
    if threshold > 1.0 or len(distinct) < 2:
        return exact, counts | {"near_duplicates": 0}
    encoded = [t.encode("utf-8").ljust(shingle) for t in first]  # dicts keep insertion order: as distinct
    sig = minhash_signatures(encoded, shingle=shingle, progress=progress)
    a, b = _candidate_pairs(sig)
    similar = _verify(encoded, sig, a, b, threshold, shingle)
    root = _union_find(len(distinct), a[similar], b[similar])
    near = distinct[root]  # each distinct text's group: its root's index in the input
    labels = near[np.searchsorted(distinct, exact)]
    counts["near_duplicates"] = int(len(distinct) - len(np.unique(root)))
    counts["candidate_pairs"], counts["similar_pairs"] = int(len(a)), int(similar.sum())
    return labels, counts


def minhash_signatures(encoded: Sequence[bytes], *, shingle: int = 5, progress: bool = False) -> np.ndarray:
    """MinHash signatures ``[n, NUM_BINS]`` (uint64) of byte strings (each at least ``shingle`` long):
    one permutation (a 64-bit mix of each shingle; its top 7 bits choose the bin, the next 50 are the
    value), empty bins filled by rotation from the next non-empty bin (plus ``2**50`` per step), so
    ``mean(sig[a] == sig[b])`` estimates the Jaccard similarity of the two shingle sets."""
    from tqdm.auto import tqdm

    sig = np.empty((len(encoded), NUM_BINS), dtype=np.uint64)
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    bounds = _chunks(lengths, _CHUNK_BYTES)
    for lo, hi in tqdm(list(zip(bounds[:-1], bounds[1:])), disable=not progress, desc="minhash", unit="chunk"):
        sig[lo:hi] = _signatures(encoded[lo:hi], lengths[lo:hi], shingle)
    return sig


def _chunks(lengths: np.ndarray, budget: int) -> list[int]:
    """Boundaries ``[0, ..., n]`` of runs of documents of about ``budget`` bytes together."""
    ends = np.cumsum(lengths)
    cuts = np.searchsorted(ends, np.arange(budget, int(ends[-1]) if len(ends) else 0, budget), side="right")
    return sorted({0, *[int(c) for c in cuts if 0 < c < len(lengths)], len(lengths)})


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fixed bijection of uint64 that spreads every input bit over the output."""
    x = x ^ (x >> np.uint64(30))
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _signatures(encoded: Sequence[bytes], lengths: np.ndarray, shingle: int) -> np.ndarray:
    n_docs = len(encoded)
    raw = b"".join(encoded) + bytes(8)
    n_pos = len(raw) - 8
    # the 8-byte little-endian word starting at every byte (an overlapping view), cut to `shingle` bytes
    words = np.ndarray((n_pos,), dtype="<u8", buffer=raw, strides=(1,))
    valid = np.ones(n_pos, dtype=bool)
    ends = np.cumsum(lengths)
    for tail in range(1, shingle):  # the last shingle - 1 positions of a document start no whole shingle
        valid[ends - tail] = False
    grams = words[valid] & np.uint64((1 << (8 * shingle)) - 1)
    h = _mix(grams + np.uint64(0x9E3779B97F4A7C15))
    doc = np.repeat(np.arange(n_docs), lengths - shingle + 1)
    bins = (h >> np.uint64(64 - 7)).astype(np.int64)
    value = (h >> np.uint64(7)) & np.uint64((1 << _VALUE_BITS) - 1)
    sig = np.full(n_docs * NUM_BINS, _MAX, dtype=np.uint64)
    np.minimum.at(sig, doc * NUM_BINS + bins, value)
    return _densify(sig.reshape(n_docs, NUM_BINS))


def _densify(sig: np.ndarray) -> np.ndarray:
    """Fill each empty bin from the next non-empty one to its right (circularly), plus ``2**50`` per step."""
    empty = sig == _MAX
    if not empty.any():
        return sig
    n, k = sig.shape
    doubled = np.concatenate([sig, sig], axis=1).ravel()  # row r's bins twice: the wrap-around stays in the row
    flat = np.where(doubled != _MAX, np.arange(2 * n * k), 2 * n * k)
    nxt = np.minimum.accumulate(flat[::-1])[::-1].reshape(n, 2 * k)[:, :k]  # next non-empty position at or after
    steps = nxt - (2 * k * np.arange(n)[:, None] + np.arange(k))
    return doubled[nxt] + steps.astype(np.uint64) * np.uint64(1 << _VALUE_BITS)


def _candidate_pairs(
    sig: np.ndarray, bands: int = BANDS, rows: int = ROWS, all_pairs_up_to: int = 24
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(a < b)`` of rows that agree on every bin of at least one band (each pair once).

    In a bucket of up to ``all_pairs_up_to`` rows every pair is a candidate; in a larger one (a
    template many texts share) each row is paired with the bucket's first row and with its
    neighbour, which keeps the work linear and still links the bucket through union-find.
    """
    n = sig.shape[0]
    pairs: list[np.ndarray] = []
    for band in range(bands):
        key = np.zeros(n, dtype=np.uint64)
        for j in range(band * rows, (band + 1) * rows):
            key = _mix(key ^ sig[:, j])
        order = np.argsort(key, kind="stable")
        sk = key[order]
        edge = np.flatnonzero(np.diff(sk) != 0) + 1
        starts = np.concatenate([[0], edge])
        sizes = np.diff(np.concatenate([starts, [n]]))
        for size in np.unique(sizes[sizes > 1]):
            members = order[starts[sizes == size][:, None] + np.arange(size)]  # [groups, size]
            if size <= all_pairs_up_to:
                i, j = np.triu_indices(int(size), 1)
                pairs.append(np.stack([members[:, i].ravel(), members[:, j].ravel()], 1))
            else:
                lead = np.repeat(members[:, :1], size - 1, axis=1).ravel()
                pairs.append(np.stack([lead, members[:, 1:].ravel()], 1))
                pairs.append(np.stack([members[:, :-1].ravel(), members[:, 1:].ravel()], 1))
    if not pairs:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    both = np.concatenate(pairs)
    lo, hi = both.min(1), both.max(1)
    unique = np.unique(lo * n + hi)
    return unique // n, unique % n


def _verify(
    encoded: Sequence[bytes],
    sig: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    threshold: float,
    shingle: int,
    chunk: int = 1 << 18,
) -> np.ndarray:
    """Whether each candidate pair's Jaccard similarity reaches ``threshold``: computed exactly from
    the shingle sets for every pair whose MinHash estimate (share of equal bins) is at least
    ``threshold - SLACK``; pairs estimated lower are rejected without it."""
    estimate = np.empty(len(a))
    for s in range(0, len(a), chunk):
        estimate[s : s + chunk] = (sig[a[s : s + chunk]] == sig[b[s : s + chunk]]).mean(1)
    check = np.flatnonzero(estimate >= threshold - SLACK)
    sets: dict[int, set[bytes]] = {}

    def shingles(i: int) -> set[bytes]:
        if i not in sets:
            text = encoded[i]
            sets[i] = {text[j : j + shingle] for j in range(len(text) - shingle + 1)}
        return sets[i]

    out = np.zeros(len(a), dtype=bool)
    for i in check:
        x, y = shingles(int(a[i])), shingles(int(b[i]))
        common = len(x & y)
        out[i] = common >= threshold * (len(x) + len(y) - common)
    return out


def _union_find(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest index of each element's connected component under the edges ``(a, b)``."""
    parent = np.arange(n)
    while True:
        while True:  # pointer jumping: every element points at its current root
            nxt = parent[parent]
            if np.array_equal(nxt, parent):
                break
            parent = nxt
        ra, rb = parent[a], parent[b]
        differ = ra != rb
        if not differ.any():
            return parent
        lo, hi = np.minimum(ra[differ], rb[differ]), np.maximum(ra[differ], rb[differ])
        np.minimum.at(parent, hi, lo)


def split_documents(
    texts: Sequence[str],
    *,
    eval_fraction: float = 0.1,
    seed: int = 0,
    threshold: float = 0.8,
    shingle: int = 5,
    sources: Sequence[str] | None = None,
    by: Literal["document", "source"] = "document",
    shuffle: bool = True,
    progress: bool = False,
) -> CorpusSplit:
    """Split ``texts`` into training and evaluation documents with no exact or near duplicate across
    (or within) the two sides; see the module docstring for the rules.

    Args:
        texts: the documents.
        eval_fraction: the share of duplicate groups (``by="document"``) or of documents
            (``by="source"``, approximately: whole sources are drawn until it is reached) held out.
        seed: decides which groups (or sources) are held out and the order of each side.
        threshold: Jaccard similarity of character-shingle sets from which texts are near duplicates.
        shingle: characters per shingle (1-8).
        sources: the dataset each text came from (recorded in the result; needed for ``by="source"``).
        by: ``"document"`` splits the groups at random; ``"source"`` holds out whole sources (every
            dataset is on one side), and a group with members on both sides keeps only a training one.
        shuffle: return each side in a seeded random order (a stream reads documents in order);
            ``False`` keeps the input order.
        progress: show a bar while hashing.
    """
    if not 0.0 <= eval_fraction <= 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1], got {eval_fraction}.")
    if sources is not None and len(sources) != len(texts):
        raise ValueError(f"{len(sources)} sources for {len(texts)} texts: give one source per text.")
    if by == "source" and sources is None:
        raise ValueError('by="source" needs sources= (the dataset of each text).')
    if by not in ("document", "source"):
        raise ValueError(f'by must be "document" or "source", got {by!r}.')
    tick = time.perf_counter()
    nonempty = np.array([i for i, t in enumerate(texts) if t.strip()], dtype=np.int64)
    labels, stats = duplicate_groups(
        [texts[i] for i in nonempty], threshold=threshold, shingle=shingle, progress=progress
    )
    labels = nonempty[labels]  # as indices into texts
    rng = np.random.default_rng(seed)
    if by == "document":
        groups = np.unique(labels)  # each group's first member (in input order) is its representative
        held = groups[rng.permutation(len(groups))[: int(round(eval_fraction * len(groups)))]]
        train_idx, eval_idx = np.setdiff1d(groups, held), np.sort(held)
    else:
        assert sources is not None
        names = sorted(set(sources))
        src = np.array([names.index(s) for s in sources])[nonempty]
        order = rng.permutation(len(names))
        sizes = np.bincount(src, minlength=len(names))
        cum = np.cumsum(sizes[order])
        held_sources = order[: int(np.searchsorted(cum, eval_fraction * len(nonempty))) + (eval_fraction > 0)]
        is_eval = np.isin(src, held_sources) if eval_fraction > 0 else np.zeros(len(src), dtype=bool)
        train_idx = _first_per_group(nonempty[~is_eval], labels[~is_eval])
        eval_groups = np.setdiff1d(labels[is_eval], labels[~is_eval])  # groups with no training member
        in_eval = is_eval & np.isin(labels, eval_groups)
        eval_idx = _first_per_group(nonempty[in_eval], labels[in_eval])
    if shuffle:
        train_idx, eval_idx = train_idx[rng.permutation(len(train_idx))], eval_idx[rng.permutation(len(eval_idx))]
    stats |= {
        "groups": int(len(np.unique(labels))),
        "empty": int(len(texts) - len(nonempty)),
        "train": int(len(train_idx)),
        "eval": int(len(eval_idx)),
        "threshold": threshold,
        "shingle": shingle,
        "by": by,
        "seed": seed,
        "eval_fraction": eval_fraction,
        "seconds": time.perf_counter() - tick,
    }
    return CorpusSplit(
        [texts[i] for i in train_idx],
        [texts[i] for i in eval_idx],
        train_idx,
        eval_idx,
        [sources[i] for i in train_idx] if sources is not None else [],
        [sources[i] for i in eval_idx] if sources is not None else [],
        stats,
    )


def _first_per_group(index: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The first ``index`` (in input order) of each label."""
    if len(index) == 0:
        return index
    order = np.argsort(index, kind="stable")
    _, first = np.unique(labels[order], return_index=True)
    return np.sort(index[order][first])


# --------------------------------------------------------------------------- SAE-Probes
def sae_probes_texts(datasets: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """The prompts of the SAE-Probes datasets (all 113 by default) and each one's dataset name, read
    from the installed ``sae-probes`` package (``pip install 'tl-glp[probes]'``)."""
    try:
        from sae_probes.utils_data import get_numbered_binary_tags, read_numbered_dataset_df
    except ImportError as err:
        raise ImportError(
            "The offline corpus is the SAE-Probes texts: pip install 'tl-glp[probes]' (or pip install sae-probes)."
        ) from err
    names = list(get_numbered_binary_tags())
    chosen = names if datasets is None else list(datasets)
    unknown = [d for d in chosen if d not in names]
    if unknown:
        raise KeyError(
            f"Unknown SAE-Probes dataset(s) {unknown[:5]}; e.g. {names[:3]} (tl_glp.probing.SAE_PROBES_DATASETS)."
        )
    texts: list[str] = []
    sources: list[str] = []
    for name in chosen:
        prompts = [str(p) for p in read_numbered_dataset_df(name)["prompt"].dropna()]
        texts += prompts
        sources += [name] * len(prompts)
    return texts, sources


def sae_probes_corpus(
    *,
    eval_fraction: float = 0.1,
    seed: int = 0,
    threshold: float = 0.8,
    by: Literal["document", "source"] = "document",
    datasets: Sequence[str] | None = None,
    progress: bool = False,
) -> CorpusSplit:
    """The offline corpus: the SAE-Probes texts split by :func:`split_documents` into prior-training and
    evaluation documents with no exact or near duplicate across the split (``by="source"`` holds out
    whole datasets instead of documents)."""
    texts, sources = sae_probes_texts(datasets)
    return split_documents(
        texts, eval_fraction=eval_fraction, seed=seed, threshold=threshold, sources=sources, by=by, progress=progress
    )


__all__ = [
    "CorpusSplit",
    "duplicate_groups",
    "minhash_signatures",
    "normalize",
    "sae_probes_corpus",
    "sae_probes_texts",
    "split_documents",
]
