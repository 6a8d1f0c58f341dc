"""A griffe extension for the API reference: make tl_glp's docstrings read well as Markdown.

The docstrings are written for ``help()`` and doctest: reST roles (``:class:`X```) and bare ``>>>``
examples in running text or under ``Example:``. Markdown would show the roles verbatim and read a
doctest's output (``[[0, 1], [2, 3]]``) as reference links. This extension rewrites the docstring
text griffe hands to mkdocstrings (the source files are untouched):

- a run of doctest lines (``>>>``, ``...`` and the output lines up to a blank line) becomes a fenced
  ``pycon`` block at the same indentation;
- ``:role:`target``` and ``:role:`~target``` become ```target```.
"""

from __future__ import annotations

import re
from typing import Any

try:
    import griffe
except ImportError:  # the `docs` extra is not installed: fence_doctests still works (tests/test_docs.py)
    griffe = None

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|obj|exc|const|ref):`~?([^`]+)`")


def fence_doctests(text: str) -> str:
    """Wrap each run of doctest lines in a ```pycon fence and turn reST roles into code spans.

    ``tests/test_docs.py`` checks it on a docstring with a doctest under ``Example:``.
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        if in_fence or not stripped.startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(stripped)]
        if out and out[-1].strip() and not out[-1].rstrip().endswith(":"):
            out.append("")  # a fence starts a block (a section title such as "Example:" already does)
        out.append(f"{indent}```pycon")
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        out.append(f"{indent}```")
        if i < len(lines) and lines[i].strip():
            out.append("")
    return _ROLE.sub(r"`\1`", "\n".join(out))


if griffe is not None:

    class DoctestFences(griffe.Extension):
        """Rewrite every docstring griffe loads with :func:`fence_doctests`."""

        def on_instance(self, *, node: Any, obj: Any, agent: Any, **kwargs: Any) -> None:
            if obj.docstring is not None:
                obj.docstring.value = fence_doctests(obj.docstring.value)
