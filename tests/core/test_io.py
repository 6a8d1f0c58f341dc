"""Atomic writes end with the permissions a plain ``open(path, "w")`` gives: the umask's, not 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest
import torch

from tl_glp.core import _io
from tl_glp.core._plot import pyplot, save_figure
from tl_glp.core.prior import GenerativePrior
from tl_glp.training.config import TrainConfig
from tl_glp.training.trainer import train


@pytest.fixture
def umask():
    """Set a umask for one test and restore the caller's afterwards (even if the test fails)."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(saved)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def plain_open_mode(folder: Path) -> int:
    """What ``open(..., "w")`` gives under the current umask: the independent reference."""
    probe = folder / "plain.txt"
    with open(probe, "w") as f:
        f.write("x")
    m = mode(probe)
    probe.unlink()
    return m


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_every_atomic_writer_matches_plain_open(tmp_path, umask, mask):
    umask(mask)
    expected = plain_open_mode(tmp_path)
    assert expected == 0o666 & ~mask
    _io.write_json(tmp_path / "a.json", {"x": 1})
    _io.write_tensors(tmp_path / "t.safetensors", {"w": torch.ones(2)})
    with _io.atomic_path(tmp_path / "table.csv") as tmp:
        pd.DataFrame({"a": [1, 2]}).to_csv(tmp, index=False)
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    save_figure(fig, tmp_path / "fig.png")
    for name in ["a.json", "t.safetensors", "table.csv", "fig.png"]:
        assert mode(tmp_path / name) == expected, (name, oct(mode(tmp_path / name)), oct(expected))
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"


def test_replacing_a_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "shared.json"
    target.write_text("{}")
    os.chmod(target, 0o664)
    _io.write_json(target, {"y": 2})
    assert mode(target) == 0o664 and _io.read_json(target) == {"y": 2}


def test_prior_checkpoints_and_metrics_are_world_readable_under_umask_022(tmp_path, umask):
    umask(0o022)
    torch.manual_seed(0)
    acts = torch.randn(256, 8)
    prior = GenerativePrior.from_activations(acts, n_blocks=1, d_hidden=16, d_mlp=32)
    prior.save_pretrained(tmp_path / "prior")
    run = tmp_path / "run"
    train(
        prior,
        acts,
        TrainConfig(batch_size=64, max_steps=4, checkpoint_every=2, eval_every=0, progress=False),
        out_dir=run,
    )
    files = [p for p in (tmp_path / "prior").rglob("*") if p.is_file()] + [p for p in run.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"cfg.json", "model.safetensors", "metrics.jsonl"} <= names, names
    assert any("checkpoints" in p.parts for p in files)
    wrong = {str(p.relative_to(tmp_path)): oct(mode(p)) for p in files if mode(p) != 0o644}
    assert not wrong, f"files not 0644 under umask 022: {wrong}"
