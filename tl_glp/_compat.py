"""The only module that knows how TransformerLens versions and model classes differ.

The core uses just ``HookPoint``, ``HookedRootModule`` and ``ActivationCache`` (present in TL 3
and 4). Here live the differences between ``HookedTransformer`` (TL <= 3) and
``TransformerBridge`` (TL >= 3): hook-name validation (the bridge silently ignores unknown names,
so we check them ourselves), the residual basis a model uses, and layer bookkeeping.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

_LAYER = re.compile(r"^blocks\.(\d+)\.")


def is_bridge(model: Any) -> bool:
    """True for a TransformerLens ``TransformerBridge``."""
    return type(model).__name__ == "TransformerBridge" or hasattr(model, "compatibility_mode") and hasattr(model, "hook_aliases")


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


def model_name_of(model: Any) -> str | None:
    cfg = getattr(model, "cfg", None)
    return getattr(cfg, "model_name", None)


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


_MODEL_WIDTH_SUFFIXES = (
    "hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_in", "hook_out", "hook_embed",
    "hook_pos_embed", "hook_attn_out", "hook_mlp_out", "hook_normalized", "hook_result",
)
_MLP_WIDTH_SUFFIXES = ("mlp.hook_pre", "mlp.hook_post", "mlp.hook_pre_linear")


def hook_width(model: Any, name: str) -> int | None:
    """The last-dimension width of the activations at hook ``name``, from the model's config
    (``d_mlp`` for MLP neurons, ``d_model`` for residual-like hooks), or None where the name does
    not tell (attention internals, unusual hooks): read without running the model, so no other
    attached hook fires."""
    cfg = getattr(model, "cfg", None)
    if name.endswith(_MLP_WIDTH_SUFFIXES):
        width = getattr(cfg, "d_mlp", None)
    elif name.endswith(_MODEL_WIDTH_SUFFIXES) and ".attn.hook_result" not in name:
        width = getattr(cfg, "d_model", None)
    else:
        width = None
    return int(width) if isinstance(width, int) and width > 0 else None


def mlp_post_hook(hook_name: str) -> str:
    """The MLP-neuron hook (``blocks.{L}.mlp.hook_post``) of the block a hook name belongs to."""
    layer = layer_of(hook_name)
    if layer is None:
        raise ValueError(f"Cannot tell which block {hook_name!r} belongs to; pass the MLP hook name explicitly.")
    return f"blocks.{layer}.mlp.hook_post"


def load_model(name: str, *, processed: bool = False, device: str | None = None, bridge: bool = False) -> Any:
    """Load a Hugging Face / TransformerLens model by name (needs the Hub).

    Unprocessed residuals (``from_pretrained_no_processing``, or a bridge without compatibility
    processing) are the default because the published priors model that basis.
    """
    if bridge:
        from transformer_lens.model_bridge import TransformerBridge

        model = TransformerBridge.boot_transformers(name, device=device)
        if processed:
            model.enable_compatibility_mode()
        return model
    from transformer_lens import HookedTransformer

    loader = HookedTransformer.from_pretrained if processed else HookedTransformer.from_pretrained_no_processing
    return loader(name, device=device)


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
