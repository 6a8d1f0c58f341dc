"""How a tl-glp prior lies on disk: ``cfg.json`` + ``model.safetensors`` in one folder, written atomically.

The weights are written first and the config last, so a folder with a ``cfg.json`` always holds a
whole model. Nothing is pickled. :meth:`~tl_glp.GenerativePrior.save_pretrained` and
:meth:`~tl_glp.GenerativePrior.from_pretrained` call these.

Example:
    >>> import tempfile, torch
    >>> folder = save_prior(tempfile.mkdtemp(), {"d_input": 4}, {"w": torch.ones(2)})
    >>> cfg, state, _ = read_prior(folder)
    >>> cfg["d_input"], cfg["tl_glp_format_version"], state["w"].tolist()
    (4, 2, [1.0, 1.0])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from tl_glp.core import _io

CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 2
"""2: the statistics are saved as ``normalizer.mean``/``normalizer.var`` (1: ``mean``/``var``; still read)."""


def save_prior(path: str | Path, cfg: dict[str, Any], state: dict[str, Tensor]) -> Path:
    """Write ``state`` then ``cfg`` (with the format version) into folder ``path``; returns the folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _io.write_tensors(path / WEIGHTS_FILE, state, metadata={"format": "tl-glp"})
    _io.write_json(path / CONFIG_FILE, {**cfg, "tl_glp_format_version": FORMAT_VERSION})
    return path


def read_prior(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor], Path]:
    """``(config dict, state dict, weights path)`` of a folder written by :func:`save_prior`."""
    path = Path(path)
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{path} holds no {CONFIG_FILE}: it is not a saved tl-glp prior (nor a published GLP "
            "folder with config.yaml). Check the path, or the checkpoint name."
        )
    return _io.read_json(path / CONFIG_FILE), _io.read_tensors(path / WEIGHTS_FILE), path / WEIGHTS_FILE
