"""The few ``torch.distributed`` facts every layer needs: is this a torchrun process, which rank,
how many, which device; a barrier; gathering small JSON-able objects. Outside torchrun everything
degrades to a single process (rank 0 of 1), so callers need no branches.

Example:
    >>> world_size(), rank(), gather_objects({"doc": 3})
    (1, 0, [{'doc': 3}])
    >>> rank_device("cpu"), rank_device("cuda:2")
    (device(type='cpu'), device(type='cuda', index=2))
"""

from __future__ import annotations

import os
from typing import Any

import torch
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


def rank_device(requested: str | torch.device | None = None) -> torch.device:
    """The device this process computes on, always with an index when it is CUDA.

    ``None``: CUDA when available, else the CPU. A CUDA device without an index (``"cuda"``) becomes
    ``cuda:LOCAL_RANK`` under torchrun (each process its own GPU) and the current CUDA device otherwise.
    An index matters: TransformerLens places a model given ``"cuda"`` on ``cuda:0`` (its block placement
    reads ``device.index or 0``), so under ``torchrun --nproc-per-node 8`` all eight processes would load
    their model onto GPU 0; and DistributedDataParallel needs ``device_ids=[index]``.
    """
    if requested is None:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda" and device.index is None:
        if "LOCAL_RANK" in os.environ:
            index = local_rank()
        else:
            index = torch.cuda.current_device() if torch.cuda.is_available() else 0
        device = torch.device("cuda", index)
    return device


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
