"""Thin helpers over ``torch.distributed``: everything works unchanged in a single process.

Under ``torchrun --nproc_per_node N``, call :func:`init_from_env` once (the CLI does) and
:func:`tl_glp.train` splits each global batch over the N processes with DistributedDataParallel.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as torch_dist

from tl_glp.core._dist import barrier, gather_objects, is_distributed, local_rank, rank, world_size

__all__ = [
    "barrier",
    "gather_objects",
    "init_from_env",
    "is_distributed",
    "local_rank",
    "mean_across",
    "rank",
    "world_size",
]


def init_from_env() -> bool:
    """Initialise the process group from torchrun's environment (NCCL on CUDA, else gloo).

    Returns True when running distributed. A no-op outside torchrun or when already initialised.
    """
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_distributed()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    torch_dist.init_process_group(backend=backend)
    return True


def mean_across(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over all processes (itself in a single process)."""
    if not is_distributed():
        return value
    value = value.detach().clone().float()
    torch_dist.all_reduce(value)
    return value / world_size()
