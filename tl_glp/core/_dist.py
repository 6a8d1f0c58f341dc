"""The few ``torch.distributed`` facts every layer needs: is this a torchrun process, which rank,
how many; a barrier; gathering small JSON-able objects. Outside torchrun everything degrades to a
single process (rank 0 of 1), so callers need no branches.

Example:
    >>> world_size(), rank(), gather_objects({"doc": 3})
    (1, 0, [{'doc': 3}])
"""

from __future__ import annotations

import os
from typing import Any

import torch.distributed as torch_dist


def is_distributed() -> bool:
    """True when a process group is initialised (e.g. under ``torchrun`` after ``init_process_group``)."""
    return torch_dist.is_available() and torch_dist.is_initialized()


def world_size() -> int:
    return torch_dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return torch_dist.get_rank() if is_distributed() else 0


def local_rank() -> int:
    """This process's index on its node (``LOCAL_RANK`` set by torchrun; 0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def barrier() -> None:
    if is_distributed():
        torch_dist.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (small, picklable by torch's collective; JSON-like data only), in rank order."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    torch_dist.all_gather_object(out, obj)
    return out
