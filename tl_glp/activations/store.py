"""``ActivationStore``: activations on disk in fixed-size, memory-mappable shards.

Layout of a store folder::

    manifest.json        provenance, dtype, shards (rows, checksum, row and document ranges),
                         running float64 mean/var per hook, resume position, completeness
    shard_00000.bin      raw little-endian array [rows, n_hooks, d_input] in the store's dtype
    shard_00001.bin      ...

Every shard is written to a temporary file and renamed; the manifest is rewritten the same way
after each shard. A collection killed at any moment therefore leaves a store that opens and
holds only whole shards, and re-running the same collection resumes after the last one.

Example:
    >>> import tempfile, torch
    >>> path = tempfile.mkdtemp()
    >>> writer = StoreWriter(path, d_input=4, hook_names=["blocks.0.hook_resid_post"], shard_rows=3)
    >>> writer.add(torch.randn(7, 1, 4), doc_ids=torch.tensor([0, 0, 0, 1, 1, 2, 2]))
    >>> store = writer.close()
    >>> len(store), store.n_shards, store[2:4].shape
    (7, 3, torch.Size([2, 4]))
"""

from __future__ import annotations

import errno
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tl_glp.activations.sources import ActivationSource, _check_finite
from tl_glp.core import _io
from tl_glp.core.stats import RunningStats

MANIFEST = "manifest.json"
STORE_FORMAT = "tl-glp-activation-store"
_DTYPES: dict[str, tuple[torch.dtype, Any]] = {
    "float32": (torch.float32, np.float32),
    "float16": (torch.float16, np.float16),
    "bfloat16": (torch.bfloat16, np.uint16),  # numpy has no bf16: stored as raw 16-bit words
}


class StoreError(OSError):
    """A store could not be written or read; the message says what is wrong and what to do."""


class ActivationStore(ActivationSource):
    """Read side of a store: ``len``, ``store[i]``, ``store[a:b]``, statistics, shuffled batches.

    Shards are memory-mapped lazily; nothing loads the whole store into RAM.
    """

    def __init__(self, path: str | os.PathLike, manifest: dict[str, Any]) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self.d_input = int(manifest["d_input"])
        self.hook_names = list(manifest["hook_names"])
        self.model_name = manifest.get("model_name")
        self.model_processing = manifest.get("model_processing", "unknown")
        self.dtype = manifest["dtype"]
        self.shards = manifest["shards"]
        self._offsets = np.cumsum([0] + [s["rows"] for s in self.shards])
        stats = [RunningStats.from_state_dict(s) for s in manifest["stats"]]
        self.mean = torch.stack([s.mean for s in stats])
        self.var = torch.stack([s.var for s in stats])
        self._maps: dict[int, np.memmap] = {}

    @classmethod
    def open(cls, path: str | os.PathLike, check_sizes: bool = True) -> ActivationStore:
        """Open a store folder; checks every shard's size against the manifest (cheap)."""
        path = Path(path)
        manifest = _read_manifest(path)
        if manifest is None:
            raise FileNotFoundError(f"No activation store at {path} (no {MANIFEST}). Collect one with tl_glp.collect_activations(..., out=path).")
        store = cls(path, manifest)
        if check_sizes:
            for i, shard in enumerate(store.shards):
                file = path / shard["file"]
                expected = shard["rows"] * store.n_hooks * store.d_input * _itemsize(store.dtype)
                actual = file.stat().st_size if file.exists() else -1
                if actual != expected:
                    raise StoreError(f"Shard {i} ({file}) is {'missing' if actual < 0 else f'{actual} bytes, expected {expected}'}: the store is corrupted. Delete the shard and its manifest entry, or re-collect.")
        return store

    def verify(self) -> None:
        """Recompute every shard's CRC-32 and raise :class:`StoreError` naming the first bad one."""
        for i, shard in enumerate(self.shards):
            data = (self.path / shard["file"]).read_bytes()
            if zlib.crc32(data) != shard["crc32"]:
                raise StoreError(f"Shard {i} ({self.path / shard['file']}) fails its checksum: the file is corrupted; re-collect it.")

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def n_shards(self) -> int:
        return len(self.shards)

    @property
    def complete(self) -> bool:
        """True once the collection that wrote this store finished."""
        return bool(self.manifest.get("complete"))

    def shard(self, i: int) -> np.memmap:
        if i not in self._maps:
            rows = self.shards[i]["rows"]
            self._maps[i] = np.memmap(self.path / self.shards[i]["file"], dtype=_DTYPES[self.dtype][1], mode="r", shape=(rows, self.n_hooks, self.d_input))
        return self._maps[i]

    def read_rows(self, rows: np.ndarray) -> Tensor:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for a store of {len(self)} rows")
        out = torch.empty(len(rows), self.n_hooks, self.d_input, dtype=torch.float32)
        shard_ids = np.searchsorted(self._offsets, rows, side="right") - 1
        for sid in np.unique(shard_ids):
            mask = shard_ids == sid
            local = rows[mask] - self._offsets[sid]
            block = torch.from_numpy(np.ascontiguousarray(self.shard(int(sid))[local]))
            if self.dtype == "bfloat16":
                block = block.view(torch.bfloat16)
            out[torch.from_numpy(mask)] = block.to(torch.float32)
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "path": str(self.path), "dtype": self.dtype, "shards": self.n_shards, "complete": self.complete}


class StoreWriter:
    """Write side: buffer rows, cut whole shards, keep statistics and the resume position.

    Opening a folder that already holds a store with the same ``fingerprint`` resumes it:
    :attr:`resume_doc` and :attr:`resume_rows_of_doc` say where the collection should pick up.
    A different fingerprint is refused rather than silently mixed.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        d_input: int,
        hook_names: list[str],
        dtype: str = "float32",
        shard_rows: int = 65536,
        model_name: str | None = None,
        model_processing: str = "unknown",
        fingerprint: dict[str, Any] | None = None,
    ) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {list(_DTYPES)}, got {dtype!r}.")
        if shard_rows < 1:
            raise ValueError(f"shard_rows must be >= 1, got {shard_rows}.")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.fingerprint = {"d_input": d_input, "hook_names": list(hook_names), "dtype": dtype, "shard_rows": shard_rows, "model_name": model_name, **(fingerprint or {})}
        existing = _read_manifest(self.path)
        if existing is not None:
            if existing.get("fingerprint") != self.fingerprint:
                raise StoreError(
                    f"{self.path} already holds a store collected with other settings "
                    f"({existing.get('fingerprint')} vs {self.fingerprint}). Use another out= folder or delete it."
                )
            self.manifest = existing
        else:
            self.manifest = {
                "format": STORE_FORMAT,
                "version": 1,
                "d_input": d_input,
                "hook_names": list(hook_names),
                "model_name": model_name,
                "model_processing": model_processing,
                "dtype": dtype,
                "shard_rows": shard_rows,
                "rows": 0,
                "shards": [],
                "stats": [RunningStats(d_input).state_dict() for _ in hook_names],
                "resume": {"doc": 0, "rows_of_doc": 0},
                "complete": False,
                "fingerprint": self.fingerprint,
            }
            _io.write_json(self.path / MANIFEST, self.manifest)
        self._stats = [RunningStats.from_state_dict(s) for s in self.manifest["stats"]]
        self._buf: list[Tensor] = []
        self._buf_docs: list[Tensor] = []
        self._buffered = 0
        self.d_input, self.n_hooks, self.dtype, self.shard_rows = d_input, len(hook_names), dtype, shard_rows

    # -- where to resume
    @property
    def complete(self) -> bool:
        return bool(self.manifest["complete"])

    @property
    def rows_written(self) -> int:
        return int(self.manifest["rows"])

    @property
    def resume_doc(self) -> int:
        """Index of the first document not wholly stored."""
        return int(self.manifest["resume"]["doc"])

    @property
    def resume_rows_of_doc(self) -> int:
        """Rows of :attr:`resume_doc` already stored (to be dropped when it is recomputed)."""
        return int(self.manifest["resume"]["rows_of_doc"])

    # -- writing
    def add(self, acts: Tensor, doc_ids: Tensor) -> None:
        """Append rows ``[n, n_hooks, d_input]`` with the document index of each row."""
        if acts.ndim != 3 or acts.shape[1:] != (self.n_hooks, self.d_input):
            raise ValueError(f"expected rows of shape [n, {self.n_hooks}, {self.d_input}], got {tuple(acts.shape)}")
        if acts.shape[0] == 0:
            return
        try:
            _check_finite(acts, where="the collected activations")
        except ValueError as err:
            shard = self.manifest["rows"] // self.shard_rows + (self._buffered // self.shard_rows)
            raise ValueError(f"{err} (rows of the batch going into shard {shard}, at store row {self.rows_written + self._buffered})") from None
        self._buf.append(acts.detach().to("cpu", _DTYPES[self.dtype][0]))
        self._buf_docs.append(doc_ids.detach().to("cpu", torch.long))
        self._buffered += acts.shape[0]
        while self._buffered >= self.shard_rows:
            self._flush(self.shard_rows)

    def close(self) -> ActivationStore:
        """Write the last (possibly short) shard, mark the store complete, and open it."""
        if self._buffered:
            self._flush(self._buffered)
        self.manifest["complete"] = True
        _io.write_json(self.path / MANIFEST, self.manifest)
        return ActivationStore.open(self.path)

    def _flush(self, n: int) -> None:
        data, docs = torch.cat(self._buf), torch.cat(self._buf_docs)
        rows, rest = data[:n], data[n:]
        row_docs, rest_docs = docs[:n], docs[n:]
        index = len(self.manifest["shards"])
        name = f"shard_{index:05d}.bin"
        raw = rows.contiguous().view(torch.int16).numpy().tobytes() if self.dtype == "bfloat16" else rows.contiguous().numpy().tobytes()
        try:
            _write_shard_bytes(self.path / name, raw)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreError(errno.ENOSPC, f"The disk filled up while writing shard {index} of {self.path}. The store is still valid with its {index} whole shards ({self.rows_written} rows); free some space and re-run the same collection to resume.") from err
            raise
        for h, stats in enumerate(self._stats):
            stats.update(rows[:, h].to(torch.float32))
        last_doc = int(row_docs[-1])
        prev = self.manifest["resume"]
        of_last = int((row_docs == last_doc).sum()) + (prev["rows_of_doc"] if prev["doc"] == last_doc else 0)
        start = self.manifest["rows"]
        self.manifest["shards"].append({"file": name, "rows": n, "crc32": zlib.crc32(raw), "row_start": start, "first_doc": int(row_docs[0]), "last_doc": last_doc})
        self.manifest["rows"] = start + n
        self.manifest["stats"] = [s.state_dict() for s in self._stats]
        self.manifest["resume"] = {"doc": last_doc, "rows_of_doc": of_last}
        _io.write_json(self.path / MANIFEST, self.manifest)
        self._buf, self._buf_docs = ([rest], [rest_docs]) if rest.shape[0] else ([], [])
        self._buffered = rest.shape[0]


def merge_rank_stores(path: str | os.PathLike, parts: list[str | os.PathLike]) -> ActivationStore:
    """Write one ``manifest.json`` at ``path`` over the complete stores in ``parts`` (sub-folders
    of ``path``, e.g. one per torchrun rank): their shards in order, statistics merged exactly.

    The merge is Chan et al.'s parallel update of (count, mean, M2) in float64
    (:meth:`RunningStats.merge`), so the merged mean and variance equal those of one pass over
    every row, up to float64 rounding. The shards stay where they are; the manifest names them
    by their path relative to ``path``.
    """
    path = Path(path)
    manifests = []
    for part in parts:
        manifest = _read_manifest(Path(part))
        if manifest is None or not manifest.get("complete"):
            raise StoreError(f"{part} holds no complete store: every rank must finish its collection before the merge.")
        manifests.append((Path(part), manifest))
    first = manifests[0][1]
    for part, manifest in manifests[1:]:
        if manifest["fingerprint"] != first["fingerprint"]:
            raise StoreError(f"{part} was collected with other settings than {manifests[0][0]}; they cannot form one store.")
    stats = [RunningStats.from_state_dict(s) for s in first["stats"]]
    shards, rows = [], 0
    for i, (part, manifest) in enumerate(manifests):
        if i > 0:
            for own, other in zip(stats, manifest["stats"]):
                own.merge(RunningStats.from_state_dict(other))
        rel = os.path.relpath(part, path)
        for shard in manifest["shards"]:
            shards.append({**shard, "file": f"{rel}/{shard['file']}", "row_start": rows})
            rows += shard["rows"]
    merged = {
        **{k: v for k, v in first.items() if k not in ("shards", "stats", "rows", "resume")},
        "rows": rows,
        "shards": shards,
        "stats": [s.state_dict() for s in stats],
        "parts": [os.path.relpath(p, path) for p, _ in manifests],
        "complete": True,
    }
    _io.write_json(path / MANIFEST, merged)
    return ActivationStore.open(path)


def _write_shard_bytes(path: Path, raw: bytes) -> None:
    """Atomically write one shard (a seam the tests use to simulate a full disk)."""
    with _io.atomic_path(path) as tmp:
        tmp.write_bytes(raw)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    if not (path / MANIFEST).is_file():
        return None
    manifest = _io.read_json(path / MANIFEST)
    if manifest.get("format") != STORE_FORMAT:
        raise StoreError(f"{path / MANIFEST} is not a tl-glp activation store manifest.")
    return manifest


def _itemsize(dtype: str) -> int:
    return torch.empty(0, dtype=_DTYPES[dtype][0]).element_size()
