"""Thin helpers over ``torch.distributed``: everything works unchanged in a single process.

Under ``torchrun --nproc_per_node N``, call :func:`init_from_env` once (the CLI does) and
:func:`tl_glp.train` splits each global batch over the N processes with DistributedDataParallel.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as torch_dist

from tl_glp.core._dist import barrier, gather_objects, is_distributed, local_rank, rank, rank_device, world_size

__all__ = [
    "barrier",
    "flags_of_all_ranks",
    "cpu_group",
    "gather_objects",
    "init_from_env",
    "is_distributed",
    "local_rank",
    "mean_across",
    "rank",
    "rank_device",
    "world_size",
]


def init_from_env(device: str | torch.device | None = None, timeout_s: float | None = None) -> bool:
    """Initialise the process group from torchrun's environment. Returns True when running distributed.

    ``device`` is what the run will compute on (``TrainConfig.device``; ``None``: CUDA when available).
    The backend is NCCL when that is CUDA (this process then uses GPU ``LOCAL_RANK``) and gloo otherwise
    (NCCL cannot reduce CPU tensors). ``timeout_s``: how long a collective may wait for the other ranks
    (``None``: PyTorch's default, 10 minutes for NCCL). A no-op outside torchrun or when already initialised.
    """
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_distributed()
    dev = rank_device(device)
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if dev.index is None or dev.index >= count:
            raise ValueError(
                f"This process (LOCAL_RANK={local_rank()}) would use {dev}, but the node has {count} GPU(s): "
                "start at most one process per GPU (torchrun --nproc-per-node <= the number of GPUs)."
            )
        torch.cuda.set_device(dev)
    timeout = {} if timeout_s is None else {"timeout": datetime.timedelta(seconds=timeout_s)}
    torch_dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", **timeout)
    return True


def mean_across(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over all processes (itself in a single process)."""
    if not is_distributed():
        return value
    value = value.detach().clone().float()
    torch_dist.all_reduce(value)
    return value / world_size()


def cpu_group() -> Any:
    """A process group that reduces CPU tensors: the default one when its backend is gloo, else a new gloo
    group over all ranks (collective: every rank must call it). ``None`` outside torchrun."""
    if not is_distributed():
        return None
    if torch_dist.get_backend() == "gloo":
        return torch_dist.group.WORLD
    return torch_dist.new_group(backend="gloo")


def flags_of_all_ranks(flag: bool, group: Any = None) -> list[bool]:
    """Every rank's ``flag``, in rank order, through a CPU all-reduce on ``group`` (:func:`cpu_group`).

    No GPU synchronisation: the trainer asks this every step of a streamed run ("do you have a batch?")
    so that all ranks stop at the same step instead of some waiting forever in a gradient all-reduce.
    """
    if not is_distributed():
        return [bool(flag)]
    votes = torch.zeros(world_size(), dtype=torch.int32)
    votes[rank()] = int(bool(flag))
    torch_dist.all_reduce(votes, group=group)
    return [bool(v) for v in votes.tolist()]
