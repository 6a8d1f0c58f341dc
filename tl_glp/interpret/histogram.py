"""The fixed histogram every feature's activations are counted in (shared by top activations, dashboards, explanations).

Example:
    >>> edges = histogram_edges()
    >>> len(edges) == N_HIST_BINS + 1, float(edges[0]) == -float(edges[-1])
    (True, True)
"""

from __future__ import annotations

import torch
from torch import Tensor

# Histogram bins: signed log10-magnitude bins from 1e-4 to 1e4 (4 per decade) and one zero bin.
HIST_DECADES = (-4.0, 4.0)
HIST_PER_DECADE = 4
_N_MAG = int((HIST_DECADES[1] - HIST_DECADES[0]) * HIST_PER_DECADE)
N_HIST_BINS = 2 * _N_MAG + 1


def histogram_edges() -> Tensor:
    """The ``N_HIST_BINS + 1`` bin edges of every feature's histogram (symmetric, log-spaced);
    bin ``i`` holds ``edges[i] <= x < edges[i + 1]``, the outermost bins also what lies beyond."""
    mags = 10 ** torch.linspace(HIST_DECADES[0], HIST_DECADES[1], _N_MAG + 1, dtype=torch.float64)
    return torch.cat([-mags.flip(0), mags])  # the middle bin [-1e-4, 1e-4] holds the (near) zeros
