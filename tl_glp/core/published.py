"""Import of the authors' published GLP checkpoints (glp-method.md section 8).

A published prior is a folder (or Hugging Face repo, e.g. ``generative-latent-prior/glp-llama8b-d6``)
holding ``config.yaml``, ``final.safetensors`` (intermediates in ``checkpoints/epoch_K.safetensors``)
and ``rep_statistics.pt``. The import maps their weight names onto ours, reads the statistics with
``torch.load(weights_only=True)`` (never executing a pickle), and records provenance: the hooked
``model.layers.{L}`` output is TransformerLens's ``blocks.{L}.hook_resid_post`` in the unprocessed
(Hugging Face) residual basis.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml

from tl_glp.core import _io
from tl_glp.core.config import PriorConfig

PUBLISHED_CONFIG = "config.yaml"
PUBLISHED_STATS = "rep_statistics.pt"
PUBLISHED_ORG = "generative-latent-prior"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_published_dir(path: Path) -> bool:
    """True for a folder in the published layout (``config.yaml`` and no tl-glp ``cfg.json``)."""
    return (path / PUBLISHED_CONFIG).is_file() and not (path / "cfg.json").is_file()


def resolve_location(path_or_hub_id: str | Path, checkpoint: str | int = "final") -> Path:
    """A local folder for ``path_or_hub_id``, downloading from the Hugging Face Hub if it is a repo id."""
    path = Path(path_or_hub_id).expanduser()
    if path.exists():
        if not path.is_dir():
            raise NotADirectoryError(f"{path} is a file; from_pretrained expects the folder that holds the prior.")
        return path
    text = str(path_or_hub_id)
    if not _HUB_ID.match(text):
        raise FileNotFoundError(
            f"No folder at {text!r}, and it is not a Hugging Face repo id of the form 'owner/name'."
        )
    return _download(text, checkpoint)


def _download(repo_id: str, checkpoint: str | int) -> Path:
    from huggingface_hub import snapshot_download

    wanted = ["*.json", "*.yaml", PUBLISHED_STATS, "model.safetensors", "final.safetensors"]
    if checkpoint != "final":
        wanted += [f"checkpoints/{_epoch_name(checkpoint)}.safetensors", f"checkpoints/{checkpoint}/*"]
    try:
        return Path(snapshot_download(repo_id=repo_id, allow_patterns=wanted))
    except Exception as err:
        raise OSError(
            f"Could not download {repo_id!r} from the Hugging Face Hub ({type(err).__name__}: {err}). "
            "Check the repo id and your network, or pass a local folder instead."
        ) from err


def _epoch_name(checkpoint: str | int) -> str:
    if isinstance(checkpoint, int) or str(checkpoint).isdigit():
        return f"epoch_{int(checkpoint)}"
    return str(checkpoint)


def _read_yaml(path: Path) -> dict[str, Any]:
    cfg_path = path / PUBLISHED_CONFIG
    try:
        raw = yaml.safe_load(cfg_path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{cfg_path} is not valid YAML ({err}).") from err
    return raw if isinstance(raw, dict) else {}


def read_published_config(path: Path) -> PriorConfig:
    """The :class:`PriorConfig` described by a published ``config.yaml``."""
    cfg_path = path / PUBLISHED_CONFIG
    raw = _read_yaml(path)
    glp = raw.get("glp_kwargs") or {}
    den = glp.get("denoiser_config")
    if not den or "d_input" not in den:
        raise ValueError(f"{cfg_path} has no glp_kwargs.denoiser_config.d_input: not a published GLP config.")
    trace = glp.get("tracedict_config") or {}
    layers = trace.get("layers") or []
    site = "hook_resid_pre" if trace.get("retain") == "input" else "hook_resid_post"
    d_input = int(den["d_input"])
    return PriorConfig(
        d_input=d_input,
        d_hidden=int(den.get("d_model") or 2 * d_input),
        d_mlp=int(den.get("d_mlp") or 4 * d_input),
        n_blocks=int(den["n_layers"]),
        n_llm_layers=den.get("multi_layer_n_layers"),
        hook_names=[f"blocks.{int(layer)}.{site}" for layer in layers],
        model_name=raw.get("model_name"),
        model_processing="unprocessed",
    )


def convert_state_dict(published: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename published weight keys to ours (``model.layers.{i}`` -> ``blocks.{i}``, ``model.ln`` -> ``ln_final``)."""
    out = {}
    for key, value in published.items():
        name = key.removeprefix("model.")
        name = re.sub(r"^layers\.(\d+)\.", r"blocks.\1.", name)
        name = re.sub(r"^ln\.", "ln_final.", name)
        out[name] = value
    return out


def statistics_path(path: Path) -> Path:
    """The normaliser statistics file of the published prior in folder ``path``.

    ``config.yaml``'s ``glp_kwargs.normalizer_config.rep_statistic`` names it. The authors wrote
    paths of their own machines there (``/data/.../rep_statistics.pt`` or
    ``${dataset_root}/rep_statistics.pt``), so the file is only ever looked for *inside* the
    checkpoint folder: a relative path is taken from the folder, and any other path (absolute,
    interpolated, from another machine) by its file name in the folder. Without the setting the
    file is ``rep_statistics.pt``. Nothing outside the folder is read.

    Example (a relative setting)::

        normalizer_config: {rep_statistic: stats/rep_statistics.pt}   # -> <folder>/stats/rep_statistics.pt
    """
    folder = path.resolve()
    norm = (_read_yaml(path).get("glp_kwargs") or {}).get("normalizer_config") or {}
    setting = norm.get("rep_statistic") if isinstance(norm, dict) else None
    if not setting:
        if (path / PUBLISHED_STATS).is_file():
            return path / PUBLISHED_STATS
        raise FileNotFoundError(
            f"Published prior at {path} has no {PUBLISHED_STATS} (the normaliser statistics), "
            "and its config.yaml names no glp_kwargs.normalizer_config.rep_statistic."
        )
    setting = str(setting)
    tried = []
    as_path = Path(setting)
    if not as_path.is_absolute() and "$" not in setting:
        candidate = (path / as_path).resolve()
        if candidate.is_relative_to(folder):
            tried.append(candidate)
    if as_path.name:
        tried.append(folder / as_path.name)
    if as_path.is_absolute() and Path(setting).resolve().is_relative_to(folder):
        tried.insert(0, Path(setting).resolve())
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Published prior at {path}: config.yaml's glp_kwargs.normalizer_config.rep_statistic is {setting!r}, and no such "
        f"file is in the checkpoint folder (looked for {[str(c) for c in dict.fromkeys(tried)]}). Put the statistics file "
        f"({as_path.name or PUBLISHED_STATS}, a dict with 'mean' and 'var') into {path}, or set rep_statistic to its path "
        "relative to that folder."
    )


def read_published_statistics(path: Path, cfg: PriorConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean`` and ``var`` from the statistics file :func:`statistics_path` finds
    (``torch.load(weights_only=True)`` only: a file that needs to run code is refused)."""
    stats_path = statistics_path(path)
    try:
        stats: Any = torch.load(stats_path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"Could not read {stats_path} with torch.load(weights_only=True): {err}") from err
    if not isinstance(stats, dict) or "mean" not in stats or "var" not in stats:
        raise ValueError(f"{stats_path} must hold a dict with 'mean' and 'var' tensors.")
    shape = (cfg.d_input,) if cfg.n_llm_layers is None else (cfg.n_llm_layers, cfg.d_input)
    mean, var = (torch.as_tensor(stats[k], dtype=torch.float32) for k in ("mean", "var"))
    try:
        return mean.reshape(shape), var.reshape(shape)
    except RuntimeError as err:
        raise ValueError(f"{stats_path}: statistics of shape {tuple(mean.shape)} do not fit {shape}.") from err


class PublishedCheckpoint(NamedTuple):
    """What :func:`read_published` returns: data only; :meth:`GenerativePrior.from_pretrained` builds the prior."""

    cfg: PriorConfig
    state_dict: dict[str, torch.Tensor]
    """The denoiser's weights, renamed to this package's names."""
    statistics: tuple[torch.Tensor, torch.Tensor]
    """The normaliser's float32 ``(mean, var)``."""
    weights_path: Path


def read_published(path: Path, checkpoint: str | int = "final") -> PublishedCheckpoint:
    """The config, weights and statistics of a published folder (``final`` or ``epoch_K`` / ``K``)."""
    cfg = read_published_config(path)
    weights = (
        path / "final.safetensors"
        if checkpoint == "final"
        else path / "checkpoints" / f"{_epoch_name(checkpoint)}.safetensors"
    )
    state = convert_state_dict(_io.read_tensors(weights))
    return PublishedCheckpoint(cfg, state, read_published_statistics(path, cfg), weights)
