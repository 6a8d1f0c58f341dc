"""Held-out activations for the studies: the same split in the demo and the scaling study.

Rows come in document order. The last quarter of the documents (at least ``n_held`` rows) is never
trained on; ``n_held`` rows are drawn at random from it (rows of one document share its topic and
sentiment, so drawing from many documents keeps the held-out moments from being noisy) and cut into
two random halves (not by document: a classifier could tell documents apart). That rule has a version,
:data:`HELD_OUT_VERSION`; :func:`held_out_rule` describes the rule a study uses, so that a resumed
study folder made under another rule is refused rather than mixed. The FD lower bound uses
real rows of *other* documents (:func:`other_document_rows`): what a prior that had learned the data
exactly would score; the two held-out halves can share documents, which pulls their distance down.

Example:
    >>> import torch
    >>> rows = torch.arange(100.0)[:, None]
    >>> split = held_out_split(rows, n_held=10, seed=0)
    >>> len(split.train), len(split.held_a), len(split.held_b), bool(split.held_all.min() >= 75)
    (75, 5, 5, True)
    >>> other_document_rows(split.train, 4, seed=1).shape
    torch.Size([4, 1])
    >>> held_out_rule(10, seed=0)
    {'split': 'tl_glp.studies.splits.held_out_split', 'version': 1, 'held_out_rows': 10, 'seed': 0}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor


class HeldOutSplit(NamedTuple):
    """Training rows (the first documents) and two random halves of the held-out rows."""

    train: Tensor
    held_a: Tensor
    held_b: Tensor

    @property
    def held_all(self) -> Tensor:
        """Both halves, ``held_a`` first."""
        return torch.cat([self.held_a, self.held_b])


def held_out_split(rows: Tensor, n_held: int, seed: int) -> HeldOutSplit:
    """Keep the last quarter of ``rows`` (at least ``n_held``) out of training and draw ``n_held`` of them, in two halves."""
    if n_held < 2 or n_held > len(rows):
        raise ValueError(f"n_held must be in [2, {len(rows)}] (the rows available), got {n_held}.")
    n_pool = max(n_held, len(rows) // 4)
    train, pool = rows[:-n_pool], rows[-n_pool:]
    perm = torch.randperm(n_pool, generator=torch.Generator().manual_seed(seed))[:n_held]
    return HeldOutSplit(train, pool[perm[: n_held // 2]], pool[perm[n_held // 2 :]])


HELD_OUT_VERSION = 1
"""Version of the rule :func:`held_out_split` follows (1: pool = the last quarter of the rows, at least
``n_held``; ``n_held`` drawn from it by ``torch.randperm`` seeded with ``seed``; the first ``n_held // 2``
drawn are half A). Bump it whenever the function would hold out other rows for the same inputs: study
folders record it and refuse to resume under another version."""


def held_out_rule(n_held: int, seed: int, split: Callable[..., HeldOutSplit] | None = None) -> dict[str, Any]:
    """How a study chooses its held-out rows, as JSON for its fingerprint: the split function (default
    :func:`held_out_split`), the version of its rule, and its parameters (the rows asked for and the seed;
    how many there are follows from the data, which the study fingerprints separately)."""
    split = split or held_out_split
    version = HELD_OUT_VERSION if split is held_out_split else getattr(split, "version", None)
    return {
        "split": f"{split.__module__}.{split.__qualname__}",
        "version": version,
        "held_out_rows": n_held,
        "seed": seed,
    }


def other_document_rows(train_rows: Tensor, n: int, seed: int) -> Tensor:
    """``n`` training rows drawn at random: real rows of other documents than the held-out ones (the FD lower bound)."""
    return train_rows[torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(seed))[:n]]
