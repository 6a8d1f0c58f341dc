"""Thin helpers over ``torch.distributed``: everything works unchanged in a single process.

Under ``torchrun --nproc_per_node N``, call :func:`init_from_env` once (the CLI does) and
:func:`tl_glp.train` splits each global batch over the N processes with DistributedDataParallel.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as torch_dist


def is_distributed() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def world_size() -> int:
    return torch_dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return torch_dist.get_rank() if is_distributed() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


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


def barrier() -> None:
    if is_distributed():
        torch_dist.barrier()
