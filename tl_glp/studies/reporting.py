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


def text_table(frame: Any) -> str:
    """A pandas DataFrame as aligned plain text, floats through :func:`fmt` (for terminal summaries)."""
    return frame.to_string(index=False, formatters={c: fmt for c in frame.columns if frame[c].dtype.kind == "f"})


def print_figures(rows: Mapping[str, Any]) -> None:
    """Print ``name  value`` lines, names aligned, floats with 4 significant digits (benchmark output)."""
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {shown}")
