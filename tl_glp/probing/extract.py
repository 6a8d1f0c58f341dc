"""One activation per prompt, at the last real token, for each hook a feature source needs.

Prompts are run in batches with ``stop_at_layer`` just past the deepest hook. Each keeps up to
the model's context (at most 1024 tokens, as SAE-Probes); a longer one keeps its BOS and its end.
Right padding (the default) needs no attention mask because causal attention never lets a real
token see a pad, and the last real token sits at ``length - 1``; left padding
(``padding_side="left"``) passes an explicit attention mask and takes the last position. Results can be cached on disk (safetensors),
keyed by model, hooks and the dataset's prompts, so another feature source reuses them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from tl_glp.core import _compat, _io
from tl_glp.core._tokens import context_limit, model_device, pad_right


@torch.inference_mode()
def last_token_activations(
    model: Any,
    prompts: Sequence[str],
    hook_names: Sequence[str],
    *,
    batch_size: int = 32,
    context_size: int | None = None,
    padding_side: str = "right",
    cache_dir: str | Path | None = None,
    cache_key: str = "",
    progress: bool = False,
) -> dict[str, Float[Tensor, "n_prompts d"]]:
    """``{hook: [n_prompts, d]}`` float32 activations at each prompt's last real token.

    Args:
        model: a TransformerLens model (``to_tokens``, ``run_with_cache``).
        prompts: the texts; each is tokenised on its own with the model's BOS rule.
        hook_names: the hooks to read (the model runs only up to the deepest one).
        context_size: the most tokens kept per prompt (default: the model's context, at most
            1024, :func:`tl_glp.core._tokens.context_limit`). A longer prompt keeps its first token (BOS)
            and its last ``context_size - 1`` tokens, as SAE-Probes truncates on the left: the
            probed token is always the prompt's own last token.
        padding_side: ``"right"`` (no mask needed) or ``"left"`` (an explicit attention mask).
        cache_dir, cache_key: cache the result on disk (safetensors) under a key made of the
            model, hooks, context and prompts.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> from tl_glp.studies.testbed.tokenizer import build_tokenizer
        >>> tok = build_tokenizer("the dog ran".split())
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, d_head=4, n_heads=2, d_mlp=16, n_ctx=6, d_vocab=tok.vocab_size, act_fn="relu")
        >>> model = HookedTransformer(cfg, tokenizer=tok)
        >>> acts = last_token_activations(model, ["the dog", "the dog ran " * 5], ["blocks.0.hook_resid_post"])
        >>> acts["blocks.0.hook_resid_post"].shape    # the second prompt keeps BOS + its last 5 tokens
        torch.Size([2, 8])
    """
    names = list(hook_names)
    for name in names:
        _compat.check_hook_name(model, name)
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}.")
    limit = context_limit(model) if context_size is None else context_limit(model, cap=context_size)
    path = _cache_path(cache_dir, model, names, prompts, limit, cache_key)
    if path is not None and path.is_file():
        return _io.read_tensors(path)
    stop = _compat.stop_layer_for(names, model.cfg.n_layers)
    device = model_device(model)
    out: dict[str, list[Tensor]] = {n: [] for n in names}
    for start in tqdm(range(0, len(prompts), batch_size), disable=not progress, desc="activations", leave=False):
        rows = [prompt_tokens(model, p, limit) for p in prompts[start : start + batch_size]]
        if padding_side == "right":  # causal attention: no real token sees the pads after it
            tokens, lengths = pad_right(rows)
            _, cache = model.run_with_cache(tokens.to(device), names_filter=names, stop_at_layer=stop)
            last = lengths - 1
        else:
            tokens, mask = _pad_left(rows)
            _, cache = model.run_with_cache(
                tokens.to(device), names_filter=names, stop_at_layer=stop, attention_mask=mask.to(device)
            )
            last = torch.full((len(rows),), tokens.shape[1] - 1)
        for n in names:
            acts = cache[n]
            out[n].append(acts[torch.arange(len(rows)), last.to(acts.device)].float().cpu())
    result = {n: torch.cat(v) for n, v in out.items()}
    if path is not None:
        _io.write_tensors(path, result)
    return result


def prompt_tokens(model: Any, text: str, limit: int) -> Int[Tensor, " seq"]:
    """``text``'s tokens (with the model's BOS rule), at most ``limit`` of them: a longer prompt
    keeps its first token and its last ``limit - 1`` (SAE-Probes' left truncation keeps the end,
    where the probed token is)."""
    row = model.to_tokens(text, truncate=False)[0].cpu()
    if len(row) <= limit:
        return row
    return torch.cat([row[:1], row[len(row) - (limit - 1) :]]) if limit > 1 else row[-1:]


def _pad_left(rows: list[Tensor]) -> tuple[Int[Tensor, "batch seq"], Int[Tensor, "batch seq"]]:
    """Left-padded tokens and their attention mask (1 on real tokens)."""
    width = max(len(r) for r in rows)
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, width - len(r) :] = r
        mask[i, width - len(r) :] = 1
    return tokens, mask


def _cache_path(
    cache_dir: str | Path | None, model: Any, names: list[str], prompts: Sequence[str], context_size: int, key: str
) -> Path | None:
    if cache_dir is None:
        return None
    digest = hashlib.sha256()
    meta = {
        "model": _compat.model_name_of(model),
        "processing": _compat.model_processing(model),
        "hooks": names,
        "context": context_size,
        "key": key,
    }
    digest.update(json.dumps(meta, sort_keys=True).encode())
    for p in prompts:
        digest.update(p.encode())
        digest.update(b"\0")
    safe_model = str(meta["model"] or "model").replace("/", "__")
    return Path(cache_dir) / f"{safe_model}-{digest.hexdigest()[:20]}.safetensors"
