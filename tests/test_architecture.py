"""The layers hold: import-linter's contracts pass, a planted upward import breaks them, and no module
of the package imports the top-level ``tl_glp`` (whose lazy names would hide the real import graph)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tl_glp"


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.fail(
            f"lint-imports is not installed next to {sys.executable}: pip install -e '.[dev]' installs import-linter."
        )
    env = {"PYTHONPATH": str(cwd), "PATH": str(exe.parent) + ":/usr/bin:/bin"}
    return subprocess.run([str(exe), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_import_contracts_hold():
    out = _lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_a_planted_upward_import_breaks_the_layers(tmp_path):
    """The contract bites: core importing steering, even inside a function, fails lint-imports."""
    shutil.copytree(PACKAGE, tmp_path / "tl_glp", ignore=shutil.ignore_patterns("__pycache__", "weights"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    flow = tmp_path / "tl_glp" / "core" / "flow.py"
    flow.write_text(
        flow.read_text() + "\n\ndef _planted():\n    from tl_glp.steering.hooks import steer\n\n    return steer\n"
    )
    out = _lint_imports(tmp_path)
    assert out.returncode != 0
    assert "tl_glp.core.flow -> tl_glp.steering.hooks" in out.stdout


def test_no_module_imports_the_top_level_package():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = {a.name for a in node.names} if isinstance(node, (ast.Import, ast.ImportFrom)) else set()
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "tl_glp"
                and node.level == 0
                and names != {"__version__"}
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Import) and any(a.name == "tl_glp" for a in node.names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"import from the home module instead of the top-level package: {offenders}"
    # (the CLI reads only tl_glp.__version__, which the lazy top level defines without importing anything)


def test_the_public_names_resolve_lazily():
    code = (
        "import sys, tl_glp; assert 'torch' not in sys.modules, 'import tl_glp imported torch'; "
        "names = tl_glp.__all__; [getattr(tl_glp, n) for n in names]; print(len(names))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 25


_CYCLES_SCRIPT = """
import json, sys
import grimp

graph = grimp.build_graph(sys.argv[1], exclude_type_checking_imports=False, cache_dir=None)
edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
index, low, stack, on_stack, groups = {}, {}, [], set(), []
for start in sorted(edges):  # Tarjan's strongly connected components, iteratively
    if start in index:
        continue
    work = [(start, 0)]
    while work:
        node, i = work.pop()
        if i == 0:
            index[node] = low[node] = len(index)
            stack.append(node)
            on_stack.add(node)
        if i < len(edges[node]):
            work.append((node, i + 1))
            nxt = edges[node][i]
            if nxt not in index:
                work.append((nxt, 0))
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
            continue
        if work:
            low[work[-1][0]] = min(low[work[-1][0]], low[node])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))
print(json.dumps(groups))
"""


def _import_cycles(root: Path) -> list[list[str]]:
    """Strongly connected groups (more than one module) of the import graph of the ``tl_glp`` under
    ``root``, counting the imports under ``if TYPE_CHECKING:`` too (lint-imports leaves those out,
    so a type-only back edge would pass the contracts). Run apart, so the tree at ``root`` is the
    one imported."""
    import json

    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", _CYCLES_SCRIPT, "tl_glp"], cwd=root, capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_no_import_cycles_not_even_through_type_only_imports():
    """No two modules of the package import each other, directly or around a loop, counting
    ``TYPE_CHECKING`` imports (the top activations' records once did: topk <-> dashboard/explain)."""
    assert _import_cycles(ROOT) == []


def test_a_planted_type_only_back_edge_is_a_cycle(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "tl_glp", ignore=shutil.ignore_patterns("__pycache__", "weights"))
    types = tmp_path / "tl_glp" / "interpret" / "types.py"
    types.write_text(
        types.read_text()
        + "\n\nfrom typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from tl_glp.interpret.dashboard import write_dashboards\n"
    )
    cycles = _import_cycles(tmp_path)
    assert ["tl_glp.interpret.dashboard", "tl_glp.interpret.types"] in cycles
