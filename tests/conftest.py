"""Shared fixtures: small synthetic data and tiny models, all offline and seeded."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from safetensors.torch import save_file

from tl_glp.core import _compat
from tl_glp.core.prior import GenerativePrior


def mixture(
    n: int, d: int = 16, n_modes: int = 4, spread: float = 0.3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A well-separated Gaussian mixture: returns (samples [n, d], mode centres [n_modes, d])."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.zeros(n_modes, d)
    for k in range(n_modes):
        centres[k, k % d] = 4.0 if k % 2 == 0 else -4.0
        centres[k, (k + 1) % d] = 3.0
    labels = torch.randint(0, n_modes, (n,), generator=g)
    x = centres[labels] + spread * torch.randn(n, d, generator=g) + 2.0
    return x, centres + 2.0


def near_mode_share(x: torch.Tensor, centres: torch.Tensor, radius: float) -> float:
    """Share of rows within ``radius`` of some mixture centre."""
    return float((torch.cdist(x, centres).min(-1).values < radius).float().mean())


def train_quickly(
    prior: GenerativePrior, data: torch.Tensor, steps: int = 400, lr: float = 3e-3, batch: int = 256, seed: int = 0
) -> list[float]:
    """A minimal AdamW loop (independent of tl_glp.train) used to check that learning works."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(prior.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, data.shape[0], (batch,), generator=g)
        loss = prior.loss(data[idx], generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="session")
def mixture_data() -> tuple[torch.Tensor, torch.Tensor]:
    return mixture(4096)


@pytest.fixture(scope="session")
def trained_mixture_prior(mixture_data) -> tuple[GenerativePrior, list[float]]:
    torch.manual_seed(0)
    data, _ = mixture_data
    prior = GenerativePrior.from_activations(data, n_blocks=2, d_hidden=64, d_mlp=128)
    losses = train_quickly(prior, data)
    prior.eval()
    return prior, losses


WORDS = "the a dog cat ball red small big ran chased saw was were happy sad . and not".split()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from tl_glp.studies.testbed.tokenizer import build_tokenizer

    return build_tokenizer(WORDS)


HAS_HOOKED_TRANSFORMER = _compat.has_hooked_transformer()
needs_hooked_transformer = pytest.mark.skipif(
    not HAS_HOOKED_TRANSFORMER, reason="TransformerLens 4 removed HookedTransformer"
)
"""Mark for tests about HookedTransformer itself (TL <= 3)."""


def make_tiny_model(tokenizer=None, n_layers: int = 3, d_model: int = 32, seed: int = 0):
    """A tiny random HookedTransformer (optionally with the word-level tokenizer).

    On TransformerLens 4, which has no HookedTransformer, the same sizes on a TransformerBridge
    (``boot_native``), so the core tests run there too.
    """
    if not HAS_HOOKED_TRANSFORMER:
        torch.manual_seed(seed)
        bridge = make_tiny_bridge(n_layers, d_model, tokenizer)
        bridge.cfg.model_name = "tiny-test"
        return bridge
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=d_model,
        d_head=8,
        n_heads=d_model // 8,
        d_mlp=4 * d_model,
        n_ctx=32,
        d_vocab=tokenizer.vocab_size if tokenizer is not None else 40,
        act_fn="gelu",
        normalization_type="LN",
        seed=seed,
        model_name="tiny-test",
    )
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    model.eval()
    return model


def make_tiny_bridge(n_layers: int = 3, d_model: int = 32, tokenizer=None):
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg = TransformerBridgeConfig(
        n_layers=n_layers,
        d_model=d_model,
        d_head=8,
        n_heads=d_model // 8,
        d_mlp=4 * d_model,
        n_ctx=32,
        d_vocab=tokenizer.vocab_size if tokenizer is not None else 40,
        act_fn="gelu",
        normalization_type="LN",
    )
    bridge = TransformerBridge.boot_native(cfg, tokenizer=tokenizer)
    bridge.eval()
    return bridge


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return make_tiny_model(tiny_tokenizer)


def random_sentences(n: int, seed: int = 0, length: int = 6) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, length))) for _ in range(n)]


@pytest.fixture(scope="session")
def tiny_prior_and_acts(tiny_model):
    """A prior trained (briefly) on the tiny model's blocks.1.hook_resid_post activations."""
    from tl_glp import TrainConfig, collect_activations, train

    acts = collect_activations(
        tiny_model, random_sentences(600, seed=11, length=10), "blocks.1.hook_resid_post", progress=False
    )
    torch.manual_seed(0)
    prior = GenerativePrior.from_activations(acts, n_blocks=2)
    train(prior, acts, TrainConfig(batch_size=256, lr=2e-3, max_steps=250, progress=False, eval_every=0))
    return prior, acts


@pytest.fixture(scope="session")
def testbed():
    """The offline testbed (trained once, then cached under $TL_GLP_CACHE or ~/.cache/tl_glp)."""
    from tl_glp.studies.testbed import load

    return load(progress=False)


def write_published(folder, d_input=6, n_blocks=2, n_llm_layers=None, layers=(3,), seed=0, epoch=None):
    g = torch.Generator().manual_seed(seed)
    d_model, d_mlp = 2 * d_input, 4 * d_input
    shapes = {
        "model.in_proj": (d_model, d_input),
        "model.out_proj": (d_input, d_model),
        "model.time_embed.0": (d_model, d_model),
        "model.time_embed.2": (d_model, d_model),
    }
    if n_llm_layers:
        shapes |= {"model.layer_embed.0": (d_model, d_model), "model.layer_embed.2": (d_model, d_model)}
    for i in range(n_blocks):
        shapes |= {
            f"model.layers.{i}.{k}": s
            for k, s in [
                ("up_proj", (d_mlp, d_model)),
                ("gate_proj", (d_mlp, d_model)),
                ("time_proj", (d_mlp, d_model)),
                ("down_proj", (d_model, d_mlp)),
            ]
        }
    w = {}
    for name, shape in shapes.items():
        w[f"{name}.weight"] = torch.randn(shape, generator=g) / math.sqrt(shape[1])
        w[f"{name}.bias"] = torch.randn(shape[0], generator=g) * 0.1
    for ln in ["model.ln"] + [f"model.layers.{i}.ln" for i in range(n_blocks)]:
        w[f"{ln}.weight"] = 1 + 0.1 * torch.randn(d_model, generator=g)
        w[f"{ln}.bias"] = 0.1 * torch.randn(d_model, generator=g)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "final.safetensors" if epoch is None else folder / "checkpoints" / f"epoch_{epoch}.safetensors"
    target.parent.mkdir(exist_ok=True)
    save_file(w, str(target))
    rows = (n_llm_layers,) if n_llm_layers else (1,)
    stats = {"mean": torch.randn(*rows, d_input, generator=g), "var": torch.rand(*rows, d_input, generator=g) + 0.5}
    torch.save(stats, folder / "rep_statistics.pt")  # the foreign format we import (read back with weights_only=True)
    config = {
        "model_name": "meta-llama/Llama-3.2-1B",
        "run_name": "glp-test-${glp_kwargs.denoiser_config.n_layers}",
        "glp_kwargs": {
            "normalizer_config": {"rep_statistic": "${dataset_root}/rep_statistics.pt"},
            "denoiser_config": {
                "d_input": d_input,
                "d_model": d_model,
                "d_mlp": d_mlp,
                "n_layers": n_blocks,
                "multi_layer_n_layers": n_llm_layers,
            },
            "tracedict_config": {"layer_prefix": "model.layers", "layers": list(layers), "retain": "output"},
        },
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return w, stats
