"""The only module that knows how TransformerLens versions and model classes differ.

The core uses just ``HookPoint``, ``HookedRootModule`` and ``ActivationCache`` (present in TL 3
and 4; import them from this module). Here live the differences between ``HookedTransformer`` (TL <= 3) and
``TransformerBridge`` (TL >= 3): hook-name validation (the bridge silently ignores unknown names,
so we check them ourselves), the residual basis a model uses, and layer bookkeeping.
"""

from __future__ import annotations

import difflib
import inspect
import re
from typing import Any

# The three TransformerLens names the core may use. These import paths work on TL 3 and TL 4
# (TL 4 removed ``HookedRootModule`` from ``transformer_lens.hook_points``; import it from here).
from transformer_lens import ActivationCache, HookedRootModule
from transformer_lens.hook_points import HookPoint

__all__ = ["ActivationCache", "HookedRootModule", "HookPoint"]

_LAYER = re.compile(r"^blocks\.(\d+)\.")


def is_bridge(model: Any) -> bool:
    """True for a TransformerLens ``TransformerBridge``."""
    return (
        type(model).__name__ == "TransformerBridge"
        or hasattr(model, "compatibility_mode")
        and hasattr(model, "hook_aliases")
    )


def hook_names_of(model: Any) -> list[str]:
    """Every hook name the model accepts (canonical names and, on a bridge, legacy aliases)."""
    return list(getattr(model, "hook_dict", {}).keys())


def check_hook_name(model: Any, name: str) -> str:
    """Return ``name`` if the model has such a hook; else raise with the closest valid names."""
    names = hook_names_of(model)
    if name in names:
        return name
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f" Did you mean {close}?" if close else f" Valid names include {names[:6]}."
    raise KeyError(f"{type(model).__name__} has no hook named {name!r}.{hint}")


def layer_of(hook_name: str) -> int | None:
    """The block index in ``blocks.{L}....``, or None for hooks outside the blocks."""
    match = _LAYER.match(hook_name)
    return int(match.group(1)) if match else None


def stop_layer_for(hook_names: list[str], n_layers: int) -> int | None:
    """The ``stop_at_layer`` that runs just far enough to reach every hook (None: run all)."""
    layers = [layer_of(n) for n in hook_names]
    if any(layer is None for layer in layers):
        return None
    deepest = max(layers)  # type: ignore[type-var]
    return deepest + 1 if deepest + 1 < n_layers else None


_RESID = re.compile(r"^blocks\.(\d+)\.hook_resid_(pre|post)$")


def resume_layer(model: Any, hook_name: str) -> int | None:
    """The block a forward can resume from, ``model(resid, start_at_layer=...)``, when ``resid`` holds the
    activations at ``hook_name``: ``L`` for ``blocks.L.hook_resid_pre``, ``L + 1`` for ``...hook_resid_post``.

    None where it cannot: other hooks, a ``TransformerBridge``, a model whose ``forward`` has no
    ``start_at_layer``, or shortformer positional embeddings (added inside every block).

        >>> resume_layer(object(), "blocks.3.hook_resid_post") is None  # no start_at_layer
        True
    """
    match = _RESID.match(hook_name)
    forward = getattr(model, "forward", None)
    if match is None or is_bridge(model) or forward is None:
        return None
    if "start_at_layer" not in inspect.signature(forward).parameters:
        return None
    if getattr(getattr(model, "cfg", None), "positional_embedding_type", "standard") == "shortformer":
        return None
    return int(match.group(1)) + (match.group(2) == "post")


def model_name_of(model: Any) -> str | None:
    """``model.cfg.model_name``: ``HookedTransformer`` keeps the name without the organisation
    (``Llama-3.2-1B``), a bridge what it was booted with (an id, or the path of a local folder)."""
    cfg = getattr(model, "cfg", None)
    return getattr(cfg, "model_name", None)


def short_model_name(name: str) -> str:
    """The model part of a model name, lower-cased: no organisation, no folder.

    Handles Hub ids (``meta-llama/Llama-3.2-1B``), TransformerLens names (``Llama-3.2-1B``), local
    folders (``/models/Llama-3.2-1B/``) and Hugging Face cache snapshots
    (``.../models--meta-llama--Llama-3.2-1B/snapshots/<hash>``).

    >>> short_model_name("meta-llama/Llama-3.2-1B"), short_model_name("/models/Llama-3.2-1B/")
    ('llama-3.2-1b', 'llama-3.2-1b')
    """
    parts = [p for p in str(name).replace("\\", "/").split("/") if p]
    if not parts:
        return ""
    for i, part in enumerate(parts[:-1]):  # a Hugging Face cache folder names the repo before /snapshots/
        if part.startswith("models--") and parts[i + 1] == "snapshots":
            return part.split("--")[-1].lower()
    return parts[-1].lower()


def same_model(a: str | None, b: str | None) -> bool:
    """Whether two model names mean the same model, ignoring organisation prefix, folder and case.

    >>> same_model("meta-llama/Llama-3.2-1B", "Llama-3.2-1B")
    True
    >>> same_model("meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.1-8B")
    False
    """
    if not a or not b:
        return False
    return short_model_name(a) == short_model_name(b)


def model_processing(model: Any) -> str:
    """``"processed"`` (folded LayerNorm / centred weights) or ``"unprocessed"`` for a TL model.

    ``HookedTransformer.from_pretrained`` folds LayerNorm into the next weights and marks it with
    a ``*Pre`` normalisation type; a bridge records ``_weights_processed``.
    """
    if is_bridge(model):
        return "processed" if getattr(model, "_weights_processed", False) else "unprocessed"
    cfg = getattr(model, "cfg", None)
    norm = str(getattr(cfg, "normalization_type", "") or "")
    if norm.endswith("Pre"):
        return "processed"
    return "unprocessed" if cfg is not None else "unknown"


_RESIDUAL_HOOKS = {
    "hook_resid_pre",
    "hook_resid_mid",
    "hook_resid_post",
    "hook_in",
    "hook_out",
    "hook_attn_out",
    "hook_mlp_out",
}
_SUBLAYER_D_MODEL = {("attn", "hook_in"), ("attn", "hook_out"), ("mlp", "hook_in"), ("mlp", "hook_out")}
_MLP_NEURON_HOOKS = {"hook_pre", "hook_post", "hook_pre_linear"}


def hook_width(model: Any, name: str) -> int | None:
    """The last-dimension width of the activations at hook ``name``, from the model's config, or
    None where the name's shape does not tell (attention internals, a bridge's nested
    ``mlp.out.hook_in``...). Read without running the model, so no other attached hook fires.

    ``d_model``: ``hook_embed``, ``hook_pos_embed``, ``blocks.L.hook_resid_*|hook_in|hook_out|hook_attn_out|hook_mlp_out``,
    ``blocks.L.{attn,mlp}.hook_{in,out}``, any ``*.hook_normalized``; ``d_mlp``: ``blocks.L.mlp.hook_{pre,post,pre_linear}``.

    >>> from types import SimpleNamespace as NS
    >>> m = NS(cfg=NS(d_model=32, d_mlp=128))
    >>> hook_width(m, "blocks.1.hook_resid_post"), hook_width(m, "blocks.0.mlp.hook_post"), hook_width(m, "blocks.0.mlp.out.hook_in")
    (32, 128, None)
    """
    cfg = getattr(model, "cfg", None)
    parts = name.split(".")
    if parts[:1] == ["blocks"] and len(parts) > 2:
        parts = parts[2:]  # drop "blocks.L"
    key = None
    if len(parts) == 1 and (parts[0] in _RESIDUAL_HOOKS or parts[0] in ("hook_embed", "hook_pos_embed")):
        key = "d_model"
    elif len(parts) == 2 and (
        tuple(parts) in _SUBLAYER_D_MODEL or (parts[0].startswith("ln") and parts[1] == "hook_normalized")
    ):
        key = "d_model"
    elif len(parts) == 2 and parts[0] == "mlp" and parts[1] in _MLP_NEURON_HOOKS:
        key = "d_mlp"
    width = getattr(cfg, key, None) if key else None
    return int(width) if isinstance(width, int) and width > 0 else None


def mlp_post_hook(hook_name: str) -> str:
    """The MLP-neuron hook (``blocks.{L}.mlp.hook_post``) of the block a hook name belongs to."""
    layer = layer_of(hook_name)
    if layer is None:
        raise ValueError(f"Cannot tell which block {hook_name!r} belongs to; pass the MLP hook name explicitly.")
    return f"blocks.{layer}.mlp.hook_post"


def has_hooked_transformer() -> bool:
    """True where TransformerLens still ships ``HookedTransformer`` (TL <= 3; TL 4 removed it)."""
    try:
        from transformer_lens import HookedTransformer  # noqa: F401
    except ImportError:
        return False
    return True


def load_model(
    name: str,
    *,
    processed: bool = False,
    device: str | None = None,
    bridge: bool = False,
    dtype: Any = None,
    official_name: str | None = None,
) -> Any:
    """A TransformerLens model from a Hub id (needs the Hub) or a local Hugging Face model folder.

    Unprocessed residuals (``from_pretrained_no_processing``, or a bridge without compatibility
    processing) are the default because the published priors model that basis.

    Routes:
      - ``bridge=True``, or TransformerLens 4 (no ``HookedTransformer``):
        ``TransformerBridge.boot_transformers(name)``; works for Hub ids and local folders alike.
        Its ``cfg.model_name`` is the id or folder path as given.
      - a Hub id: ``HookedTransformer.from_pretrained_no_processing`` (``from_pretrained`` when
        ``processed``).
      - a local folder (``config.json`` + weights, as ``save_pretrained`` writes them):
        :func:`hooked_transformer_from_folder`, because ``HookedTransformer.from_pretrained*``
        accepts only the official names it knows (TL 3.9: a path raises "not found").
        ``official_name`` (e.g. ``google/gemma-3-270m``) builds the config from that official name
        instead of the folder's ``config.json`` (TL 3.9 knows Gemma 3 only by name); the bridge ignores it.
    """
    import torch

    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    local = _is_model_folder(name)
    if bridge or not has_hooked_transformer():
        from transformer_lens.model_bridge import TransformerBridge

        kwargs = {"dtype": dtype} if dtype is not None else {}
        model = TransformerBridge.boot_transformers(name, device=device, **kwargs)
        if processed:
            model.enable_compatibility_mode()
        return model
    if local:
        return hooked_transformer_from_folder(
            name, processed=processed, device=device, dtype=dtype, official_name=official_name
        )
    from transformer_lens import HookedTransformer

    loader = HookedTransformer.from_pretrained if processed else HookedTransformer.from_pretrained_no_processing
    return loader(name, device=device, **({"dtype": dtype} if dtype is not None else {}))


def _is_model_folder(name: str) -> bool:
    from pathlib import Path

    path = Path(name).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{name} exists but holds no config.json: pass a folder written by a Hugging Face model's save_pretrained."
        )
    return path.is_dir()


def hooked_transformer_from_folder(
    path: str,
    *,
    processed: bool = False,
    device: str | None = None,
    dtype: Any = None,
    hf_model: Any = None,
    tokenizer: Any = None,
    official_name: str | None = None,
) -> Any:
    """A ``HookedTransformer`` (TL 3) from a local Hugging Face model folder, without the Hub.

    ``HookedTransformer.from_pretrained_no_processing(path)`` refuses paths in TL 3.9 (it first
    maps the name to an official one). ``from_pretrained_no_processing("meta-llama/Llama-3.2-1B",
    hf_model=..., tokenizer=...)`` does work offline, but only for weights of exactly that
    architecture (TL builds the config from the official name, not from ``hf_model``). This
    helper builds the config from the folder's ``config.json`` with TransformerLens's own
    converter, loads the weights with TL's converter, and applies the processing
    (fold LayerNorm, centre weights) only if ``processed``. ``cfg.model_name`` is the folder name.

    TL's converter decides the architecture of a path that contains ``llama`` from the name alone
    and then fails, so it is handed a copy of ``config.json`` in a neutral temporary folder.

    Some families TL 3.9 builds only from an official name: ``config.json`` of a Gemma 3 model raises
    "Gemma3ForCausalLM is not currently supported". ``official_name`` (``google/gemma-3-270m``) takes
    the config from that name (TL's own table, no download) and the weights still from the folder; the
    widths must agree with the folder's model, else a ``ValueError`` says which differ.
    """
    import shutil
    import tempfile
    from pathlib import Path

    import torch
    import transformer_lens.loading_from_pretrained as loading
    from transformer_lens import HookedTransformer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(path).expanduser()
    dtype = dtype or torch.float32
    if official_name is not None:
        cfg = loading.get_pretrained_model_config(official_name, device=device, dtype=dtype, fold_ln=processed)
    else:
        with tempfile.TemporaryDirectory(prefix="tlglp-cfg-") as tmp:
            shutil.copy(folder / "config.json", Path(tmp) / "config.json")
            cfg = loading.get_pretrained_model_config(tmp, device=device, dtype=dtype, fold_ln=processed)
    cfg.model_name = folder.resolve().name
    hf_model = hf_model if hf_model is not None else AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    if official_name is not None:
        _check_widths(cfg, hf_model.config, official_name, folder)
    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(folder)
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=True)
    state = loading.get_pretrained_state_dict(official_name or str(folder), cfg, hf_model=hf_model, dtype=dtype)
    model.load_and_process_state_dict(
        state,
        fold_ln=processed,
        center_writing_weights=processed,
        center_unembed=processed,
        fold_value_biases=processed,
        refactor_factored_attn_matrices=False,
    )
    model.eval()
    return model


def _check_widths(cfg: Any, hf_config: Any, official_name: str, folder: Any) -> None:
    """Raise if the TransformerLens config of ``official_name`` does not fit the folder's model."""
    text = getattr(hf_config, "get_text_config", lambda: hf_config)()
    pairs = {
        "d_model": (cfg.d_model, getattr(text, "hidden_size", None)),
        "n_layers": (cfg.n_layers, getattr(text, "num_hidden_layers", None)),
        "d_vocab": (cfg.d_vocab, getattr(text, "vocab_size", None)),
        "d_mlp": (cfg.d_mlp, getattr(text, "intermediate_size", None)),
    }
    wrong = {k: v for k, v in pairs.items() if v[1] is not None and v[0] != v[1]}
    if wrong:
        detail = ", ".join(f"{k} {a} vs {b}" for k, (a, b) in wrong.items())
        raise ValueError(f"{official_name}'s TransformerLens config does not fit the model in {folder}: {detail}.")


def attach_hook(model: Any, name: str, fn: Any) -> Any:
    """Attach a forward hook at ``name`` and return what :func:`detach_hook` needs to remove
    exactly it (TransformerLens's ``add_hook`` returns nothing, so we find our handle by identity)."""
    check_hook_name(model, name)
    hook_point = model.hook_dict[name]
    before = list(hook_point.fwd_hooks)
    hook_point.add_hook(fn, dir="fwd")
    added = [h for h in hook_point.fwd_hooks if not any(h is b for b in before)]
    return hook_point, added


def detach_hook(token: Any) -> None:
    """Remove the hooks :func:`attach_hook` added, and only those; safe to call twice."""
    hook_point, handles = token
    for handle in handles:
        handle.hook.remove()
        hook_point.fwd_hooks = [h for h in hook_point.fwd_hooks if h is not handle]
    handles.clear()
