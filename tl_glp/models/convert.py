"""Convert a GGUF once into a plain Hugging Face model folder in the cache, and reuse it after.

transformers reads a GGUF with ``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)`` (it needs
the ``gguf`` package) and dequantises every tensor to float32. The model it returns refuses
``save_pretrained`` ("quantized with gguf and is not serializable"), so :func:`convert_gguf` builds a
plain model of the same class from its config (without the ``quantization_config``), loads the state dict
into it, and saves that (safetensors) with the tokenizer transformers built from the GGUF's metadata.

The folder is written under a temporary name and renamed into place, and its manifest
(``tl_glp_model.json``) is written last, so a folder with a manifest is complete. The manifest records
the GGUF's SHA-256: the next call with the same file returns the folder at once (it hashes the GGUF,
about 0.3 s per 100 MB), and a GGUF whose bytes changed is converted again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tl_glp.core import _io
from tl_glp.models.registry import models_dir

MANIFEST = "tl_glp_model.json"
"""The manifest's file name inside a converted folder."""
FORMAT = 1
"""The manifest's format version; a folder written by another format is converted again."""


def hf_dir(cache_dir: str | Path | None = None) -> Path:
    """``<cache>/models/hf``: one converted folder per model."""
    return models_dir(cache_dir) / "hf"


def converted_folder(gguf: str | Path, *, name: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """Where :func:`convert_gguf` puts the conversion of ``gguf``: ``hf/<name>`` for a registered model,
    else ``hf/local-<hash of the GGUF's absolute path>/<file stem>`` (so the folder, and the loaded model's
    ``cfg.model_name``, is named after the file).

    >>> converted_folder("/m/SmolLM2.gguf", name="smollm2-135m", cache_dir="/c").as_posix()
    '/c/models/hf/smollm2-135m'
    >>> converted_folder("/m/SmolLM2.gguf", cache_dir="/c").name
    'SmolLM2'
    """
    if name is not None:
        return hf_dir(cache_dir) / name
    path = Path(gguf).expanduser().resolve()
    key = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    return hf_dir(cache_dir) / f"local-{key}" / path.stem


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of a converted folder, or None when there is none (not converted, or not by us)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        return _io.read_json(path)
    except ValueError:
        return None


def require_gguf_package() -> None:
    """Raise an ``ImportError`` that says how to install ``gguf`` if it is missing (transformers needs it)."""
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(
            "Reading a GGUF file needs the gguf package: pip install gguf (or pip install 'tl-glp[real]')."
        )


def convert_gguf(
    gguf: str | Path,
    *,
    name: str | None = None,
    cache_dir: str | Path | None = None,
    sha256: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """The Hugging Face model folder converted from ``gguf`` (float32 safetensors + tokenizer), made once.

    Args:
        gguf: the ``.gguf`` file.
        name: a registered model's name (the folder is ``<cache>/models/hf/<name>``); None for a local file.
        cache_dir: tl-glp's cache root (default ``$TL_GLP_CACHE`` or ``~/.cache/tl_glp``).
        sha256: the GGUF's SHA-256 when the caller has just computed it (else it is computed here).
        force: convert again even when the folder is up to date.
        progress: show transformers' progress bars while it dequantises.

    Returns the folder; ``tl_glp.core._compat.load_model(str(folder))`` loads it as a TransformerLens model.
    """
    gguf = Path(gguf).expanduser()
    if not gguf.is_file():
        raise FileNotFoundError(f"No GGUF file at {gguf}.")
    digest = sha256 or _io.sha256_file(gguf)
    target = converted_folder(gguf, name=name, cache_dir=cache_dir)
    manifest = read_manifest(target)
    if not force and manifest and manifest.get("gguf_sha256") == digest and manifest.get("format") == FORMAT:
        return target
    if target.exists() and manifest is None:
        raise FileExistsError(
            f"{target} exists but has no {MANIFEST}, so tl-glp did not write it; move it away and try again."
        )
    require_gguf_package()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    started = time.perf_counter()
    try:
        _write_plain_model(gguf, tmp, progress)
        import transformers

        _io.write_json(
            tmp / MANIFEST,
            {
                "format": FORMAT,
                "name": name,
                "gguf_file": gguf.name,
                "gguf_path": str(gguf.resolve()),
                "gguf_sha256": digest,
                "gguf_bytes": gguf.stat().st_size,
                "dtype": "float32",
                "transformers": transformers.__version__,
                "convert_seconds": round(time.perf_counter() - started, 2),
            },
        )
        _replace_dir(tmp, target, digest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_plain_model(gguf: Path, out: Path, progress: bool) -> None:
    """Dequantise ``gguf`` with transformers and save it as a plain (serialisable) model + tokenizer in ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _progress_bars(progress):
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config_dict = loaded.config.to_dict()
    for key in ("quantization_config", "_model_name_or_path"):  # GGUF bookkeeping, not part of the model
        config_dict.pop(key, None)
    config = type(loaded.config).from_dict(config_dict)
    plain = type(loaded)(config).to(torch.float32).eval()
    plain.load_state_dict(loaded.state_dict(), strict=True)
    del loaded
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _replace_dir(tmp: Path, target: Path, digest: str) -> None:
    """Rename ``tmp`` onto ``target``; an older ``target`` is moved aside first and then removed."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.old"
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        finished = read_manifest(target)  # another process finished the same conversion first
        if not (finished and finished.get("gguf_sha256") == digest):
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _progress_bars(show: bool) -> Iterator[None]:
    """transformers' progress bars on or off for the body, then as they were."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if show else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()
