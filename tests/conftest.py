"""Shared fixtures: small synthetic data and tiny models, all offline and seeded."""

from __future__ import annotations

import math

import pytest
import torch
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


def authors_config_yaml(
    *,
    d_input: int,
    d_model: int,
    d_mlp: int,
    n_layers: int,
    layers,
    multi_layer_n_layers: int | None = None,
    model_name: str = "meta-llama/Llama-3.2-1B",
    resolved: bool = False,
) -> str:
    """``config.yaml`` exactly as the authors' ``glp_train.py`` writes it (their configs, merged into their
    ``TrainConfig`` dataclass, then ``OmegaConf.save``): every ``TrainConfig`` field first in declaration
    order, then the YAML's own keys, comments dropped, interpolations left in place.

    Single-layer: ``configs/train_llama1b_static.yaml``. Multi-layer (``multi_layer_n_layers`` set):
    ``configs/train_llama1b_dynamic_multilayer.yaml``. ``resolved=True``: a newer ``glp_train.py``
    that saves with ``resolve=True`` (single-layer only); OmegaConf then writes the ``Path``-typed
    ``output_path`` with a Python tag. With the real sizes (2048, 4096, 8192, 3, [7]) the text is
    byte-identical to OmegaConf 2.4's output (checked when this was written; OmegaConf is not a
    dependency, so the test suite cannot rerun that check).
    """
    multi = multi_layer_n_layers is not None
    layer_lines = "".join(f"    - {int(layer)}\n" for layer in layers)
    run_name = (
        "glp-llama1b-d${glp_kwargs.denoiser_config.n_layers}-dynamic_multilayer-1B"
        if multi
        else "glp-llama1b-d${glp_kwargs.denoiser_config.n_layers}_static-1M"
    )
    if multi:
        data = (
            "train_dataset:\n"
            + "".join(f"- ${{dataset_root}}/layer_{int(layer):02d}\n" for layer in layers)
            + "rep_statistic: ${dataset_root}/rep_statistics.pt\n"
        )
    else:
        data = "train_dataset: ${save_root}/data/llama1b-layer07-fineweb-1M\nrep_statistic: ${train_dataset}/rep_statistics.pt\n"
    text = (
        f"model_name: {model_name}\n"
        "glp_kwargs:\n"
        "  normalizer_config:\n"
        "    rep_statistic: ${rep_statistic}\n"
        "  denoiser_config:\n"
        f"    d_input: {d_input}\n"
        f"    d_model: {d_model}\n"
        f"    d_mlp: {d_mlp}\n"
        f"    n_layers: {n_layers}\n"
        f"    multi_layer_n_layers: {multi_layer_n_layers if multi else 'null'}\n"
        "  tracedict_config:\n"
        "    layer_prefix: model.layers\n"
        "    layers:\n"
        f"{layer_lines}"
        "    retain: output\n"
        "shuffle: true\n"
        f"{data}"
        f"dynamic_dataset: {'true' if multi else 'false'}\n"
        "use_bf16: true\n"
        "num_epochs: 1\n"
        f"epoch_size: {1000000000 if multi else 'null'}\n"
        "batch_size: 4096\n"
        "learning_rate: 5.0e-05\n"
        "lr_scheduler:\n"
        "  scheduler_cls: cosine_scheduler_with_warmup\n"
        "  warmup_ratio: 0.01\n"
        "  initial_factor: 0.01\n"
        "  final_factor: 0.1\n"
        "gradient_accumulation_steps: 1\n"
        "gradient_clipping_threshold: 1.0\n"
        "log_every_n_steps: 10\n"
        f"save_every_n_steps: {7812 if multi else 'null'}\n"
        "save_epochs:\n"
        "- 1\n"
        "save_opt_state: true\n"
        "output_path: ${save_root}/runs/${run_name}\n"
        "wandb_enabled: true\n"
        "wandb_entity: null\n"
        "wandb_project: glp\n"
        "wandb_run_name: ${run_name}\n"
        "save_root: .\n"
        f"run_name: {run_name}\n"
        + ("dataset_root: ${save_root}/data/llama1b-multi-dynamic-fineweb-1B\n" if multi else "")
    )
    if resolved:
        if multi:
            raise ValueError("resolved=True is only written for the single-layer config")
        name = f"glp-llama1b-d{n_layers}_static-1M"
        stats = "./data/llama1b-layer07-fineweb-1M/rep_statistics.pt"
        text = (
            text.replace("${rep_statistic}", stats)
            .replace("${save_root}/data/llama1b-layer07-fineweb-1M\n", "./data/llama1b-layer07-fineweb-1M\n")
            .replace("${train_dataset}/rep_statistics.pt", stats)
            .replace(
                "output_path: ${save_root}/runs/${run_name}\n",
                f"output_path: !!python/object/apply:pathlib.PosixPath\n- runs/{name}\n",
            )
            .replace("${run_name}", name)
            .replace(run_name, name)
        )
    return text


def write_published(
    folder,
    d_input=6,
    n_blocks=2,
    n_llm_layers=None,
    layers=(3,),
    seed=0,
    epoch=None,
    model_name="meta-llama/Llama-3.2-1B",
    resolved=False,
):
    """A run folder as the authors' ``glp_train.py`` leaves it, at tiny sizes; returns (weights, statistics).

    What their code writes: ``config.yaml`` (:func:`authors_config_yaml`); ``final.safetensors``, the
    denoiser's ``state_dict`` (``model.`` prefix); ``rep_statistics.pt``, their ``Normalizer``'s
    buffers (``torch.save({"mean": self.mean, "var": self.var})``: ``[d_input]`` for one layer,
    ``[n_layers, d_input]`` stacked for several); ``optimizer_state.pt`` and ``scheduler_state.pt``
    (``save_opt_state: true``), pickles this package must never open. ``epoch=K`` also writes
    ``checkpoints/epoch_K.safetensors`` and ``checkpoints/rep_statistics.pt`` (their
    ``save_epochs``), and perturbs ``final`` so the two checkpoints differ.
    """
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
                ("down_proj", (d_model, d_mlp)),
                ("gate_proj", (d_mlp, d_model)),
                ("time_proj", (d_mlp, d_model)),
            ]
        }
    w = {}
    for name, shape in shapes.items():
        w[f"{name}.weight"] = torch.randn(shape, generator=g) / math.sqrt(shape[1])
        w[f"{name}.bias"] = torch.randn(shape[0], generator=g) * 0.1
    for ln in ["model.ln"] + [f"model.layers.{i}.ln" for i in range(n_blocks)]:
        w[f"{ln}.weight"] = 1 + 0.1 * torch.randn(d_model, generator=g)
        w[f"{ln}.bias"] = 0.1 * torch.randn(d_model, generator=g)
    rows = (n_llm_layers,) if n_llm_layers else ()
    normalizer = torch.nn.Module()  # their Normalizer: mean and var registered as buffers, saved as such
    normalizer.mean = torch.nn.Buffer(torch.randn(*rows, d_input, generator=g))
    normalizer.var = torch.nn.Buffer(torch.rand(*rows, d_input, generator=g) + 0.5)
    stats = {"mean": normalizer.mean, "var": normalizer.var}
    folder.mkdir(parents=True, exist_ok=True)
    targets = [(folder, "final", w)]
    if epoch is not None:
        final = {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in w.items()}
        targets = [(folder / "checkpoints", f"epoch_{epoch}", w), (folder, "final", final)]
    for where, name, weights in targets:
        where.mkdir(parents=True, exist_ok=True)
        save_file(weights, str(where / f"{name}.safetensors"))
        torch.save(
            stats, where / "rep_statistics.pt"
        )  # the foreign format we import (read back with weights_only=True)
    for pickle_name in ("optimizer_state.pt", "scheduler_state.pt"):
        torch.save({"state": {}, "param_groups": [{"lr": 5e-5, "betas": (0.9, 0.999)}]}, folder / pickle_name)
    config = authors_config_yaml(
        d_input=d_input,
        d_model=d_model,
        d_mlp=d_mlp,
        n_layers=n_blocks,
        layers=layers,
        multi_layer_n_layers=n_llm_layers,
        model_name=model_name,
        resolved=resolved,
    )
    (folder / "config.yaml").write_text(config)
    return w, {k: v.detach().clone() for k, v in stats.items()}
