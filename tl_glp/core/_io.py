"""Atomic file writes: write a temporary file beside the target, flush it to disk, rename it.

A reader never sees half a file: after a crash at any moment the target holds either its old
content or its new content. Nothing here pickles.

The finished file has the permissions a plain ``open(path, "w")`` would give it: the mode of the file it
replaces, or ``0o666`` minus the process umask for a new file (``0o644`` under the usual umask 022), not
the owner-only ``0o600`` of a temporary file.

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> old = os.umask(0o022)
>>> write_json(os.path.join(folder, "a.json"), {"x": 1})
>>> oct(os.stat(os.path.join(folder, "a.json")).st_mode & 0o777)
'0o644'
>>> _ = os.umask(old)
>>> import shutil; shutil.rmtree(folder)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it for longer than two system calls."""
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def _final_mode(target: Path) -> int:
    """The permission bits ``open(target, "w")`` would leave: the existing file's, else 0o666 minus the umask."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~current_umask()


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``target``'s folder; on success rename it onto ``target``.

    On an exception the temporary file is removed and ``target`` is untouched. The renamed file gets the
    permissions a plain ``open(target, "w")`` would give it (see the module docstring).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, _final_mode(target))
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(target: str | os.PathLike, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, with an error that names the file if it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Expected a JSON file at {path}, but there is none.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}). Was the file truncated or edited?") from err


def write_tensors(
    target: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Atomically write tensors to a safetensors file (contiguous CPU copies)."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(target) as tmp:
        save_file(cpu, str(tmp), metadata=metadata)


def read_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file, naming the file in the error if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Expected a safetensors file at {path}, but there is none.")
    try:
        return load_file(str(path), device=str(device))
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(
            f"Could not read {path} as safetensors ({err}). The file is corrupt or not a "
            "safetensors file; re-save or re-download it."
        ) from err


def default_cache_dir() -> Path:
    """Where tl-glp keeps what it builds once and reuses: ``$TL_GLP_CACHE``, else ``~/.cache/tl_glp``.

    The testbed model and the converted real models (``models/``) live here.

    >>> import os
    >>> old = os.environ.get("TL_GLP_CACHE")
    >>> os.environ["TL_GLP_CACHE"] = "/data/cache"
    >>> str(default_cache_dir())
    '/data/cache'
    >>> _ = os.environ.pop("TL_GLP_CACHE") if old is None else os.environ.update(TL_GLP_CACHE=old)
    """
    return Path(os.environ.get("TL_GLP_CACHE", Path.home() / ".cache" / "tl_glp"))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
