"""One activation per prompt, at the last real token, for each hook a feature source needs.

Prompts are run in batches with ``stop_at_layer`` just past the deepest hook. Right padding (the
default) needs no attention mask because causal attention never lets a real token see a pad, and
the last real token sits at ``length - 1``; left padding (``padding_side="left"``) lets
TransformerLens build the mask and takes position ``-1``. Results can be cached on disk (safetensors),
keyed by model, hooks and the dataset's prompts, so another feature source reuses them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from tl_glp import _compat, _io


@torch.inference_mode()
def last_token_activations(
    model: Any,
    prompts: Sequence[str],
    hook_names: Sequence[str],
    *,
    batch_size: int = 32,
    context_size: int = 256,
    padding_side: str = "right",
    cache_dir: str | Path | None = None,
    cache_key: str = "",
    progress: bool = False,
) -> dict[str, Tensor]:
    """``{hook: [n_prompts, d]}`` float32 activations at each prompt's last real token."""
    names = list(hook_names)
    for name in names:
        _compat.check_hook_name(model, name)
    path = _cache_path(cache_dir, model, names, prompts, context_size, cache_key)
    if path is not None and path.is_file():
        return _io.read_tensors(path)
    stop = _compat.stop_layer_for(names, model.cfg.n_layers)
    device = getattr(model.cfg, "device", None) or "cpu"
    out: dict[str, list[Tensor]] = {n: [] for n in names}
    for start in tqdm(range(0, len(prompts), batch_size), disable=not progress, desc="activations", leave=False):
        chunk = list(prompts[start : start + batch_size])
        if padding_side == "left":
            tokens = model.to_tokens(chunk, padding_side="left")[:, -context_size:]
            _, cache = model.run_with_cache(chunk, names_filter=names, stop_at_layer=stop, padding_side="left")
            last = torch.full((len(chunk),), -1)
        elif padding_side == "right":
            rows = [model.to_tokens(p)[0, :context_size].cpu() for p in chunk]
            lengths = torch.tensor([len(r) for r in rows])
            tokens = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
            for i, r in enumerate(rows):
                tokens[i, : len(r)] = r
            _, cache = model.run_with_cache(tokens.to(device), names_filter=names, stop_at_layer=stop)
            last = lengths - 1
        else:
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}.")
        for n in names:
            acts = cache[n]
            out[n].append(acts[torch.arange(len(chunk)), last.to(acts.device)].float().cpu())
    result = {n: torch.cat(v) for n, v in out.items()}
    if path is not None:
        _io.write_tensors(path, result)
    return result


def _cache_path(cache_dir: str | Path | None, model: Any, names: list[str], prompts: Sequence[str], context_size: int, key: str) -> Path | None:
    if cache_dir is None:
        return None
    digest = hashlib.sha256()
    meta = {"model": _compat.model_name_of(model), "processing": _compat.model_processing(model), "hooks": names, "context": context_size, "key": key}
    digest.update(json.dumps(meta, sort_keys=True).encode())
    for p in prompts:
        digest.update(p.encode())
        digest.update(b"\0")
    safe_model = str(meta["model"] or "model").replace("/", "__")
    return Path(cache_dir) / f"{safe_model}-{digest.hexdigest()[:20]}.safetensors"
