"""MkDocs hooks: the generated parts of the documentation site (nothing here is typed by hand).

- **API reference.** One page per part of the package (``tl_glp.core``, ``tl_glp.steering``, ...,
  one per folder under ``tl_glp.studies``), each listing every public module found on disk as a
  mkdocstrings ``::: module`` block, so a new module appears without editing anything. The pages go
  into the ``API reference`` entry of the ``nav`` in ``mkdocs.yml``.
- **The names in ``tl_glp``.** ``<!-- api-exports -->`` in ``api/index.md`` becomes a table of the
  lazily exported names (``tl_glp._EXPORTS``, read without importing), each linked to its reference.
- **CLI reference.** ``<!-- cli-reference -->`` in ``cli.md`` becomes the ``--help`` of every command
  in ``tl_glp.cli.COMMANDS``, produced by the command line itself (tyro, from the dataclasses).

Run by ``mkdocs build`` (``hooks:`` in ``mkdocs.yml``); the functions are importable on their own, and
``tests/test_docs.py`` checks them.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tl_glp"
CLI_MARKER = "<!-- cli-reference -->"
EXPORTS_MARKER = "<!-- api-exports -->"
API_NAV_TITLE = "API reference"
SKIP_PARTS = {"cli"}  # the CLI has its own, generated, reference page
# the layers, bottom up (architecture.md); a part not named here goes just before the studies
ORDER = ["core", "activations", "models", "corpora", "training", "steering", "manifold", "probing", "interpret"]


def public_modules() -> list[str]:
    """Every public module of ``tl_glp`` (no ``_private`` file or folder, nothing under ``tl_glp.cli``)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if any(p.startswith("_") and p != "__init__" for p in parts):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) > 1 and parts[1] in SKIP_PARTS:
            continue
        if len(parts) == 1:
            continue  # tl_glp itself: its names are documented where they are defined
        names.append(".".join(parts))
    return names


def api_pages() -> dict[str, list[str]]:
    """``{page name: [module, ...]}``: one page per subpackage or top-level module of ``tl_glp``,
    and one per folder under ``tl_glp.studies`` (the studies are large)."""
    pages: dict[str, list[str]] = {}
    for name in public_modules():
        parts = name.split(".")
        in_study_folder = parts[1] == "studies" and len(parts) > 2 and (PACKAGE / "studies" / parts[2]).is_dir()
        key = ".".join(parts[: 3 if in_study_folder else 2])
        pages.setdefault(key, []).append(name)

    def rank(page: str) -> tuple[int, str]:
        part = page.split(".")[1]
        return (ORDER.index(part) if part in ORDER else len(ORDER) + (part == "studies"), page)

    return {page: pages[page] for page in sorted(pages, key=rank)}


def api_page_markdown(page: str, modules: list[str]) -> str:
    lines = [f"# `{page}`", ""]
    for module in modules:
        if module == page and len(modules) > 1:
            # the package's __init__: its docstring only; its members are documented in their modules
            lines += [f"::: {module}", "    options:", "      members: false", "      show_root_heading: false", ""]
        else:
            lines += [f"::: {module}", ""]
    return "\n".join(lines)


def exports_table() -> str:
    """A Markdown table of ``tl_glp``'s public names, each linked (mkdocs-autorefs) to where it is defined."""
    import ast

    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    exports = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets)
    )
    rows = ["| name | defined in |", "|---|---|"]
    for name, module in sorted(exports.items(), key=lambda kv: kv[0].lower()):
        rows.append(f"| [`tl_glp.{name}`][{module}.{name}] | `{module}` |")
    return "\n".join(rows)


def cli_reference() -> str:
    """The ``--help`` of every ``tl-glp`` command, as Markdown (one section and one text block each)."""
    sys.path.insert(0, str(ROOT))
    os.environ["COLUMNS"] = "110"
    os.environ.setdefault("NO_COLOR", "1")
    from tl_glp.cli import COMMANDS, main

    def help_of(argv: list[str]) -> str:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
            main([*argv, "--help"])
        return "\n".join(line.rstrip() for line in buf.getvalue().strip().splitlines())

    sections = ["## `tl-glp --help`", "", "```text", help_of([]), "```", ""]
    for name in COMMANDS:
        sections += [f"## `tl-glp {name}`", "", "```text", help_of(name.split()), "```", ""]
    return "\n".join(sections)


# ---- MkDocs events -------------------------------------------------------------------------------


def on_config(config, **kwargs):
    nav = config.get("nav") or []
    for item in nav:
        if isinstance(item, dict) and API_NAV_TITLE in item:
            item[API_NAV_TITLE] = [{"Overview": "api/index.md"}] + [{page: f"api/{page}.md"} for page in api_pages()]
    return config


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    for page, modules in api_pages().items():
        files.append(File.generated(config, f"api/{page}.md", content=api_page_markdown(page, modules)))
    return files


def on_page_markdown(markdown, page, config, files, **kwargs):
    if EXPORTS_MARKER in markdown:
        markdown = markdown.replace(EXPORTS_MARKER, exports_table())
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    return markdown
