"""Resumable training checkpoints: weights, optimizer, RNG, data position; nothing pickled.

A checkpoint is a folder ``checkpoints/step_{N:08d}`` holding the prior (``cfg.json`` +
``model.safetensors``, so ``GenerativePrior.from_pretrained(run, checkpoint="step_...")`` loads
it), ``optimizer.safetensors`` (optimizer tensors and RNG states) and ``train_state.json``. It
is written as a hidden temporary folder and renamed into place, so every ``step_*`` folder is whole.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from tl_glp.core import _io
from tl_glp.core.prior import GenerativePrior

STATE_FILE = "train_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(
    run_dir: Path,
    prior: GenerativePrior,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    state: dict[str, Any],
    keep: int,
    protect: tuple[int, ...] = (),
) -> Path:
    """Write a whole checkpoint atomically and prune all but the ``keep`` newest (the steps in
    ``protect`` are never pruned)."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(state["step"])
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    prior.save_pretrained(tmp)
    opt_state = optimizer.state_dict()
    tensors = {
        f"state.{i}.{k}": v
        for i, st in opt_state["state"].items()
        for k, v in st.items()
        if isinstance(v, torch.Tensor)
    }
    tensors["rng.noise"] = generator.get_state()
    _io.write_tensors(tmp / OPTIMIZER_FILE, tensors)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in opt_state["param_groups"]]
    _io.write_json(tmp / STATE_FILE, {**state, "param_groups": groups, "generator_device": str(generator.device)})
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    protected = {checkpoint_name(s) for s in protect}
    for old in list_checkpoints(run_dir)[:-keep]:
        if old.name not in protected:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Whole checkpoints, oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith("step_") and (p / STATE_FILE).is_file())


def load_checkpoint(
    path: Path, prior: GenerativePrior, optimizer: torch.optim.Optimizer, generator: torch.Generator
) -> dict[str, Any]:
    """Restore weights, optimizer and RNG in place; return the saved training state."""
    state = _io.read_json(path / STATE_FILE)
    saved_on = torch.device(state.get("generator_device", "cpu")).type
    if saved_on != generator.device.type:
        raise ValueError(
            f"{path} was written by a run whose noise generator was on {saved_on}, but this run trains on "
            f"{generator.device.type}: CPU and CUDA draw different noise from the same seed, so it cannot continue "
            f"that run. Resume on {saved_on} (TrainConfig.device), or pass resume=False to start over."
        )
    prior.load_weights(_io.read_tensors(path / "model.safetensors", device=prior.mean.device), source=path)
    tensors = _io.read_tensors(path / OPTIMIZER_FILE)
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, idx, name = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in state.pop("param_groups")]
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    generator.set_state(tensors["rng.noise"])
    return state
