"""The testbed language model: a tiny ``HookedTransformer`` trained on the synthetic language.

The default configuration ships with the package (``weights/model.safetensors`` and
``weights/manifest.json``, written by ``tl-glp testbed build``, see :mod:`tl_glp.studies.testbed.build`),
so loading it trains nothing. Any other configuration is trained from scratch, deterministically
for its seed (one thread, deterministic algorithms), cached on disk (safetensors + JSON) and
rebuilt when the cache is missing or unreadable.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from tl_glp.core import _io
from tl_glp.studies.testbed.language import Document, Language
from tl_glp.studies.testbed.tokenizer import build_tokenizer

TESTBED_VERSION = 3
MODEL_NAME = "tl-glp-testbed"
SHIPPED_DIR = Path(__file__).parent / "weights"
"""Where the package keeps the trained weights of the default configuration and their manifest."""
BUILD_THREADS = 1
"""Threads used while training: fixed, so the weights do not depend on the machine's core count."""


@dataclass
class LMConfig:
    """Size and training budget of the testbed model."""

    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    n_ctx: int = 64
    train_docs: int = 20_000
    """Distinct training documents (sampled once, reused across epochs)."""
    steps: int = 3000
    batch_size: int = 32
    lr: float = 2e-3
    seed: int = 0
    eval_docs: int = 1000

    def key(self) -> str:
        return f"v{TESTBED_VERSION}-" + "-".join(f"{v}" for v in asdict(self).values())


@contextmanager
def deterministic(threads: int = BUILD_THREADS) -> Iterator[None]:
    """Run the body with ``threads`` torch threads and deterministic algorithms, then restore both."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


default_cache_dir = _io.default_cache_dir  # ``$TL_GLP_CACHE`` or ``~/.cache/tl_glp``; one definition, in the core


def build_model(cfg: LMConfig, tokenizer: Any) -> Any:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    hooked_cfg = HookedTransformerConfig(
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        d_head=cfg.d_model // cfg.n_heads,
        n_heads=cfg.n_heads,
        d_mlp=cfg.d_mlp,
        n_ctx=cfg.n_ctx,
        d_vocab=tokenizer.vocab_size,
        act_fn="gelu",
        normalization_type="LN",
        seed=cfg.seed,
        model_name=MODEL_NAME,
        default_prepend_bos=True,
        positional_embedding_type="standard",
    )
    return HookedTransformer(hooked_cfg, tokenizer=tokenizer)


def encode_documents(docs: list[Document], tokenizer: Any, n_ctx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token ids ``[n, n_ctx]`` (BOS + words, truncated) and the mask of real tokens."""
    tokens = torch.full((len(docs), n_ctx), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(docs), n_ctx, dtype=torch.bool)
    vocab = tokenizer.get_vocab()
    for i, doc in enumerate(docs):
        ids = [tokenizer.bos_token_id] + [vocab[w] for w in doc.words][: n_ctx - 1]
        tokens[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = True
    return tokens, mask


def pack_documents(docs: list[Document], tokenizer: Any, n_ctx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training rows of exactly ``n_ctx`` tokens with no padding: ``BOS doc BOS doc ...``, every row
    starting with a whole document at position 0 (as prompts do). The mask drops BOS targets."""
    vocab = tokenizer.get_vocab()
    bos = tokenizer.bos_token_id
    rows, row = [], []
    for doc in docs:
        ids = [bos] + [vocab[w] for w in doc.words]
        if row and len(row) + len(ids) > n_ctx:
            rows.append((row + ids)[:n_ctx])
            row = []
        row = row + ids
    tokens = torch.tensor(rows, dtype=torch.long)
    return tokens, tokens != bos


def lm_loss(model: Any, tokens: torch.Tensor, mask: torch.Tensor, batch_size: int = 256) -> float:
    """Mean next-token cross-entropy (nats) over the real (non-BOS, non-pad) target tokens."""
    total, count = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(tokens), batch_size):
            t, m = tokens[i : i + batch_size], mask[i : i + batch_size]
            logits = model(t)
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), t[:, 1:].flatten(), reduction="none")
            target_mask = m[:, 1:].flatten()
            total += float(loss[target_mask].sum())
            count += int(target_mask.sum())
    return total / count


def entropy_floor(docs: list[Document], n_ctx: int) -> float:
    """The generator's mean per-word entropy given the latent variables (nats): a lower bound on
    any model's loss, which has to infer the latents from the words."""
    lps = [lp for d in docs for lp in d.logprobs[: n_ctx - 1]]
    return -sum(lps) / len(lps)


def train_lm(cfg: LMConfig, language: Language, progress: bool = True) -> tuple[Any, dict[str, float]]:
    """Train the testbed model from scratch; returns the model and its metrics.

    Deterministic: one thread and deterministic algorithms inside (see :func:`deterministic`), so
    the same config, torch version and CPU give bit-identical weights.
    """
    with deterministic():
        return _train(cfg, language, progress)


def _train(cfg: LMConfig, language: Language, progress: bool) -> tuple[Any, dict[str, float]]:
    torch.manual_seed(cfg.seed)
    tokenizer = build_tokenizer(language.vocabulary)
    model = build_model(cfg, tokenizer)
    docs = list(language.documents(cfg.train_docs, seed=cfg.seed))
    tokens, mask = pack_documents(docs, tokenizer, cfg.n_ctx)
    eval_docs = list(language.documents(cfg.eval_docs, seed=cfg.seed + 10_000))
    eval_tokens, eval_mask = encode_documents(eval_docs, tokenizer, cfg.n_ctx)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    g = torch.Generator().manual_seed(cfg.seed)
    warmup = max(1, cfg.steps // 20)
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(cfg.steps), disable=not progress, desc="testbed LM", unit="step")
    for step in bar:
        lr = cfg.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(tokens), (cfg.batch_size,), generator=g)
        t, m = tokens[idx], mask[idx]
        logits = model(t)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), t[:, 1:].flatten(), reduction="none")
        loss = (loss * m[:, 1:].flatten()).sum() / m[:, 1:].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    metrics = {
        "lm_loss": lm_loss(model, eval_tokens, eval_mask),
        "entropy_floor": entropy_floor(eval_docs, cfg.n_ctx),
        "train_seconds": time.perf_counter() - start,
        "steps": cfg.steps,
        "train_tokens": cfg.steps * cfg.batch_size * cfg.n_ctx,
    }
    return model, metrics


def shipped_manifest(folder: Path = SHIPPED_DIR) -> dict[str, Any] | None:
    """The manifest of the shipped weights, or None when the package carries none."""
    path = folder / "manifest.json"
    return _io.read_json(path) if path.is_file() and (folder / "model.safetensors").is_file() else None


def load_shipped(cfg: LMConfig, language: Language, folder: Path = SHIPPED_DIR) -> tuple[Any, dict[str, float]] | None:
    """The shipped model when ``cfg`` is the configuration it was built with, else None.

    Raises if the shipped files exist but do not match their manifest (a damaged install)."""
    manifest = shipped_manifest(folder)
    if manifest is None or manifest.get("testbed_version") != TESTBED_VERSION or manifest.get("config") != asdict(cfg):
        return None
    weights = folder / "model.safetensors"
    if _io.sha256_file(weights) != manifest["sha256"]:
        raise ValueError(
            f"{weights} does not match the sha256 in {folder / 'manifest.json'}; reinstall tl-glp or rebuild with: {manifest['command']}"
        )
    model = build_model(cfg, build_tokenizer(language.vocabulary))
    model.load_state_dict(_io.read_tensors(weights))
    model.eval()
    return model, manifest["metrics"]


def load_or_train(
    cfg: LMConfig, language: Language, cache_dir: Path | None = None, retrain: bool = False, progress: bool = True
) -> tuple[Any, dict[str, float]]:
    """The shipped model when ``cfg`` is the shipped configuration, else the cached model for
    ``cfg``, training (and caching) it if missing or unreadable. ``retrain`` ignores both."""
    if not retrain:
        shipped = load_shipped(cfg, language)
        if shipped is not None:
            return shipped
    folder = (cache_dir or default_cache_dir()) / "testbed" / cfg.key()
    weights, info = folder / "model.safetensors", folder / "testbed.json"
    tokenizer = build_tokenizer(language.vocabulary)
    if not retrain and weights.is_file() and info.is_file():
        try:
            model = build_model(cfg, tokenizer)
            model.load_state_dict(_io.read_tensors(weights))
            model.eval()
            return model, json.loads(info.read_text())["metrics"]
        except (ValueError, RuntimeError, KeyError, json.JSONDecodeError):
            pass  # unreadable cache: rebuild it below
    model, metrics = train_lm(cfg, language, progress=progress)
    _io.write_tensors(weights, model.state_dict())
    _io.write_json(info, {"config": asdict(cfg), "metrics": metrics, "version": TESTBED_VERSION})
    return model, metrics
