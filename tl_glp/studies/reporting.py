"""Tables and figures lists for the studies' reports: one way to write a number, a markdown table, a text table.

The demo, the scaling study, ``tl-glp interpret`` and the benchmarks all print through these, so a
number reads the same everywhere: NaN as ``n/a``, small values (|x| < 0.1) with four decimals, others
with three.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"source": ["meta", "raw"], "auc": [0.8912, float("nan")]})
    >>> print(markdown_table(frame))
    | source | auc |
    |---|---|
    | meta | 0.891 |
    | raw | n/a |
    >>> fmt(0.01234), fmt(12.5), fmt(3)
    ('0.0123', '12.500', '3')
    >>> print_figures({"samples_per_s": 1234.5678, "ratio": 0.91})
      samples_per_s  1235
      ratio          0.91
"""

from __future__ import annotations

import math
import re
import shutil
import textwrap
from collections.abc import Mapping
from typing import Any


def fmt(value: Any) -> str:
    """A table cell: NaN as ``n/a``, floats with 4 decimals below 0.1 in magnitude and 3 otherwise."""
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4f}" if 0 < abs(value) < 0.1 else f"{value:.3f}"  # small deltas keep their digits
    return str(value)


def markdown_table(frame: Any) -> str:
    """A pandas DataFrame as a GitHub markdown table (cells through :func:`fmt`; ``|`` in a cell becomes ``/``)."""
    cols = [str(c) for c in frame.columns]
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        rows.append("| " + " | ".join(fmt(v).replace("|", "/") for v in row) + " |")
    return "\n".join(rows)


def terminal_width(fallback: int = 100) -> int:
    """Columns of the terminal (``COLUMNS`` when set), ``fallback`` when output is not a terminal;
    never below 20."""
    return max(20, shutil.get_terminal_size((fallback, 24)).columns)


def text_table(frame: Any, width: int | None = None) -> str:
    """A pandas DataFrame as aligned plain text, floats through :func:`fmt` (for terminal summaries).

    With ``width``, every line fits in it: the table as it is where it fits; else its text columns
    (the widest first) wrap onto more lines; and where even that cannot fit (too many columns for
    the width), each row becomes a block of ``column: value`` lines. Numbers are never cut.

    Example:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"comparison": ["meta-neurons minus raw activations, per dataset"],
        ...                       "estimate": [0.0123], "verdict": ["no clear difference (the CI holds 0)"]})
        >>> print(text_table(frame, width=50))
        comparison           estimate  verdict
        meta-neurons minus     0.0123  no clear difference
        raw activations,               (the CI holds 0)
        per dataset
        >>> print(text_table(frame, width=30))
        comparison: meta-neurons minus
          raw activations, per dataset
        estimate: 0.0123
        verdict: no clear difference
          (the CI holds 0)
    """
    wide = frame.to_string(index=False, formatters={c: fmt for c in frame.columns if frame[c].dtype.kind == "f"})
    if width is None or max((len(line) for line in wide.splitlines()), default=0) <= width:
        return wide
    headers = [str(c) for c in frame.columns]
    cells = [[fmt(v) for v in row] for row in frame.itertuples(index=False)]
    numeric = [frame[c].dtype.kind in "biuf" for c in frame.columns]
    widths = [max([len(h), *(len(r[j]) for r in cells)]) for j, h in enumerate(headers)]
    # how narrow a column may get: a number whole, a header broken only at spaces and underscores,
    # text broken only between words (and not below _MIN_TEXT); narrower than that, rows become blocks
    floor = []
    for j, header in enumerate(headers):
        pieces = re.findall(r"[^_\s]*_|[^_\s]+", header)
        if numeric[j]:
            floor.append(max(len(p) for p in [*pieces, *(r[j] for r in cells)]))
        else:
            words = [len(w) for r in cells for w in r[j].split()]
            floor.append(min(widths[j], max([_MIN_TEXT, *words, *(len(p) for p in pieces)])))
    while sum(widths) + _GAP * (len(widths) - 1) > width:
        shrinkable = [j for j in range(len(widths)) if widths[j] > floor[j]]
        if not shrinkable:
            return _records(headers, cells, width)
        widest = max(shrinkable, key=lambda j: widths[j])
        widths[widest] -= 1
    lines = []
    for row in [headers, *cells]:
        pieces = [_wrap(text, widths[j], row is headers) for j, text in enumerate(row)]
        for k in range(max(len(p) for p in pieces)):
            parts = []
            for j, p in enumerate(pieces):
                text = p[k] if k < len(p) else ""
                parts.append(text.rjust(widths[j]) if numeric[j] and row is not headers else text.ljust(widths[j]))
            lines.append((" " * _GAP).join(parts).rstrip())
    return "\n".join(lines)


_GAP = 2
"""Spaces between the columns of a wrapped :func:`text_table`."""
_MIN_TEXT = 10
"""The narrowest a text column of a wrapped :func:`text_table` gets (its header may keep it wider)."""


def _wrap(text: str, width: int, header: bool = False) -> list[str]:
    """``text`` in lines of at most ``width``; a header also breaks after an underscore (``n_`` ``datasets``)."""
    if not header:
        return textwrap.wrap(text, width, break_on_hyphens=False) or [""]
    tokens = []  # (piece, whether a space separates it from the previous one)
    for word in text.split():
        for i, token in enumerate(re.findall(r"[^_]*_|[^_]+", word)):
            tokens += [(token[k : k + width], i == 0 and k == 0) for k in range(0, len(token), width)]
    lines: list[str] = []
    for token, spaced in tokens:
        joined = (lines[-1] + " " + token if spaced else lines[-1] + token) if lines else token
        if lines and len(joined) <= width:
            lines[-1] = joined
        else:
            lines.append(token)
    return lines or [""]


def _records(headers: list[str], cells: list[list[str]], width: int) -> str:
    """Each row as ``column: value`` lines, values wrapped under a two-space indent, rows apart."""
    blocks = []
    for row in cells:
        lines = []
        for header, text in zip(headers, row):
            lines += textwrap.wrap(f"{header}: {text}", width, subsequent_indent="  ", break_on_hyphens=False) or [
                f"{header}:"[:width]
            ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def fit_text(text: str, width: int, indent: str = "  ") -> str:
    """``text`` wrapped to ``width`` columns (continuation lines indented), never breaking inside
    ``[...]`` (a CI stays on one line).

    >>> print(fit_text("prior 33.412 [31.215, 35.609] | lower bound 3.6 [2.1, 5.1]", 32))
    prior 33.412 [31.215, 35.609] |
      lower bound 3.6 [2.1, 5.1]
    """
    protected = re.sub(r"\[[^\]]*\]", lambda m: m.group(0).replace(" ", _KEEP), text)
    lines = textwrap.wrap(protected, width, subsequent_indent=indent, break_on_hyphens=False) or [""]
    return "\n".join(line.replace(_KEEP, " ") for line in lines)


_KEEP = "\u00a0"
"""A space :func:`fit_text` does not break at (textwrap breaks only at ASCII whitespace)."""


def print_figures(rows: Mapping[str, Any]) -> None:
    """Print ``name  value`` lines, names aligned, floats with 4 significant digits (benchmark output)."""
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {shown}")
