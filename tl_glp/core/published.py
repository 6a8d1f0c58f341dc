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

from tl_glp.core import _io, _yaml_config
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
    """``config.yaml``'s data, read the way OmegaConf wrote it (interpolations still unresolved)."""
    cfg_path = path / PUBLISHED_CONFIG
    try:
        raw = _yaml_config.load_config(cfg_path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{cfg_path} is not valid YAML ({err}).") from err
    return raw if isinstance(raw, dict) else {}


def _setting(raw: dict[str, Any], key: str, cfg_path: Path) -> Any:
    """Config value ``key`` with its ``${...}`` interpolations resolved (``None`` when absent)."""
    try:
        return _yaml_config.resolve(raw, key, default=None)
    except _yaml_config.InterpolationError as err:
        raise ValueError(f"{cfg_path}: {err}") from err


def _int(value: Any, key: str, cfg_path: Path) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{cfg_path}: {key} is {value!r}, not an integer.") from None


def read_published_config(path: Path) -> PriorConfig:
    """The :class:`PriorConfig` described by a published ``config.yaml``.

    The file is the authors' training config as ``OmegaConf.save`` wrote it: every field of their
    ``TrainConfig`` plus their YAML's own keys, with ``${...}`` interpolations resolved or not. The
    fields read here are resolved within the file (a value that cannot be, such as
    ``${oc.env:...}``, is an error that names the key); all other fields are left alone.
    """
    cfg_path = path / PUBLISHED_CONFIG
    raw = _read_yaml(path)
    den = "glp_kwargs.denoiser_config"
    d_input = _setting(raw, f"{den}.d_input", cfg_path)
    n_layers = _setting(raw, f"{den}.n_layers", cfg_path)
    if d_input is None or n_layers is None:
        raise ValueError(
            f"{cfg_path} has no {den}.d_input or {den}.n_layers: not a published GLP config "
            "(the authors' glp_train.py writes both)."
        )
    d_input = _int(d_input, f"{den}.d_input", cfg_path)
    d_model, d_mlp, n_llm_layers = (
        _setting(raw, f"{den}.{k}", cfg_path) for k in ("d_model", "d_mlp", "multi_layer_n_layers")
    )
    layers = _setting(raw, "glp_kwargs.tracedict_config.layers", cfg_path) or []
    if not isinstance(layers, list):
        layers = [layers]
    retain = _setting(raw, "glp_kwargs.tracedict_config.retain", cfg_path)
    site = "hook_resid_pre" if retain == "input" else "hook_resid_post"
    model_name = _setting(raw, "model_name", cfg_path)
    return PriorConfig(
        d_input=d_input,
        d_hidden=_int(d_model, f"{den}.d_model", cfg_path) if d_model else 2 * d_input,
        d_mlp=_int(d_mlp, f"{den}.d_mlp", cfg_path) if d_mlp else 4 * d_input,
        n_blocks=_int(n_layers, f"{den}.n_layers", cfg_path),
        n_llm_layers=None if n_llm_layers is None else _int(n_llm_layers, f"{den}.multi_layer_n_layers", cfg_path),
        hook_names=[f"blocks.{_int(layer, 'glp_kwargs.tracedict_config.layers', cfg_path)}.{site}" for layer in layers],
        model_name=str(model_name) if model_name else None,
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

    The authors' ``GLP.save_pretrained`` always writes the normaliser's statistics beside the
    weights as ``rep_statistics.pt``, and their ``load_glp`` reads that file: it sets the
    config's top-level ``rep_statistic`` to ``<folder>/rep_statistics.pt`` and resolves the
    config, so ``glp_kwargs.normalizer_config.rep_statistic: ${rep_statistic}`` (what their
    training config holds) points there. This does the same: the statistics are
    ``<folder>/rep_statistics.pt`` unless ``normalizer_config.rep_statistic`` names a file that
    is inside the folder, in order of preference

    1. the setting, resolved, as a path inside the folder (relative to it, or absolute);
    2. a file of the setting's name in the folder (a path of the authors' machine, such as
       ``/data/llama1b/layer_07/stats.pt``, whose file was copied beside the weights);
    3. ``rep_statistics.pt``.

    A setting that cannot be resolved (``${oc.env:...}``) is ignored. Nothing outside the folder
    is read.

    Example (a relative setting)::

        normalizer_config: {rep_statistic: stats/rep_statistics.pt}   # -> <folder>/stats/rep_statistics.pt
    """
    folder = path.resolve()
    raw = _read_yaml(path)
    glp = raw.get("glp_kwargs")
    norm = glp.get("normalizer_config") if isinstance(glp, dict) else None
    written = norm.get("rep_statistic") if isinstance(norm, dict) else None
    try:  # as their load_glp does: the top-level rep_statistic is the folder's own file
        setting = _yaml_config.resolve(
            {**raw, "rep_statistic": PUBLISHED_STATS}, "glp_kwargs.normalizer_config.rep_statistic", default=None
        )
    except _yaml_config.InterpolationError:
        setting = None
    tried: list[Path] = []
    if isinstance(setting, str) and setting.strip():
        as_path = Path(setting.strip())
        candidate = (folder / as_path).resolve()  # an absolute as_path replaces folder
        if candidate.is_relative_to(folder):
            tried.append(candidate)
        if as_path.name:
            tried.append(folder / as_path.name)
    tried.append(folder / PUBLISHED_STATS)
    tried = list(dict.fromkeys(tried))
    for candidate in tried:
        if candidate.is_file():
            return candidate
    described = f"is {written!r}" + (f" (resolved: {setting!r})" if setting not in (None, written) else "")
    raise FileNotFoundError(
        f"Published prior at {path}: config.yaml's glp_kwargs.normalizer_config.rep_statistic {described}, and no "
        f"normaliser statistics are in the checkpoint folder (looked for {[str(c) for c in tried]}). The authors save "
        f"them as {PUBLISHED_STATS} beside the weights: put that file (a dict with 'mean' and 'var') into {path}, or "
        "set rep_statistic to its path relative to that folder."
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
