# %% [markdown]
# # A published prior on Llama-3.2-1B: load, check, steer, probe
#
# Needs the Hugging Face Hub (Llama-3.2-1B is gated: accept its licence and `huggingface-cli login`)
# and preferably a GPU. The published prior `generative-latent-prior/glp-llama1b-d6` models
# `model.layers.7` outputs, i.e. `blocks.7.hook_resid_post` in the *unprocessed* basis, so the
# model is loaded with `from_pretrained_no_processing`.
#
# The functions below take any model and prior, so the test suite runs them offline on the testbed.

# %%
from __future__ import annotations

import sys

import torch

import tl_glp

PRIOR_ID = "generative-latent-prior/glp-llama1b-d6"
MODEL_ID = "meta-llama/Llama-3.2-1B"


def pick_device() -> str:
    """The best device this machine has: a CUDA GPU, Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def hub_unreachable(err: BaseException) -> bool:
    """Whether ``err`` means the Hub (or the gated model) could not be reached: no network, offline mode,
    a missing licence acceptance or login. Those surface as ``OSError`` (transformers, requests) or as
    errors of huggingface_hub / httpx; anything else is a real bug and keeps its traceback."""
    while err is not None:
        if isinstance(err, OSError) or type(err).__module__.split(".")[0] in {
            "huggingface_hub",
            "httpx",
            "requests",
            "urllib3",
        }:
            return True
        err = err.__cause__ or err.__context__
    return False


def load_model_and_prior(device: str | None = None):
    """The real thing: downloads the model and the published prior (``device``: default :func:`pick_device`)."""
    from transformer_lens import HookedTransformer

    device = device or pick_device()

    dtype = torch.float32 if device == "cpu" else torch.bfloat16  # bf16 matmuls are very slow on most CPUs
    model = HookedTransformer.from_pretrained_no_processing(MODEL_ID, device=device, dtype=dtype)
    prior = tl_glp.GenerativePrior.from_pretrained(PRIOR_ID, device=device)
    return model, prior


def check_prior_on_model(model, prior, texts: list[str]) -> dict[str, float]:
    """Frechet distance of generated vs real activations, and the delta LM loss of the projection."""
    from tl_glp.evaluation import delta_lm_loss

    hook = prior.cfg.hook_name
    acts = tl_glp.collect_activations(model, texts, hook, progress=False)
    real = acts[0 : len(acts)].to(prior.mean.device)
    fake = prior.sample(len(real), num_steps=20)
    delta = delta_lm_loss(
        model, texts, hook, tl_glp.projection_hook(prior, tl_glp.ProjectionConfig(seed=0), positions=slice(1, None))
    )
    return {"fd": tl_glp.frechet_distance(fake, real), "delta_lm_loss": delta.delta, "act_norm": prior.act_norm}


def steer_with_prior(
    model, prior, prompt: str, positive: list[str], negative: list[str], r: float = 1.0, max_new_tokens: int = 30
) -> dict[str, str]:
    """Plain vs prior-guided continuations of one prompt."""
    hook = prior.cfg.hook_name
    direction = tl_glp.diff_of_means(model, positive, negative, hook)
    out = {"none": model.generate(prompt, max_new_tokens=max_new_tokens, verbose=False, do_sample=False)}
    with tl_glp.steer(model, direction, r, relative=True, act_norm=prior.act_norm, hook_name=hook, positions="last"):
        out["plain"] = model.generate(prompt, max_new_tokens=max_new_tokens, verbose=False, do_sample=False)
    with tl_glp.steer(
        model, direction, r, prior=prior, relative=True, positions="last", projection=tl_glp.ProjectionConfig(seed=0)
    ):
        out["prior"] = model.generate(prompt, max_new_tokens=max_new_tokens, verbose=False, do_sample=False)
    return out


# %%
if __name__ == "__main__":
    try:
        model, prior = load_model_and_prior()
    except Exception as err:
        if not hub_unreachable(err):
            raise
        first_line = (str(err).strip().splitlines() or [""])[0][:160]
        sys.exit(
            f"This example needs the Hugging Face Hub and access to {MODEL_ID} (accept its licence on the Hub, then "
            f"`huggingface-cli login`); it could not load it: {type(err).__name__}: {first_line}"
        )
    print(prior.cfg)  # act_norm should be about 5.2 for this prior
    texts = ["The quick brown fox jumps over the lazy dog.", "In 1969, the first humans walked on the Moon."] * 8
    print(check_prior_on_model(model, prior, texts))
    print(
        steer_with_prior(
            model, prior, "I think the weather today", ["I love this, it is wonderful!"], ["I hate this, it is awful!"]
        )
    )
    results = tl_glp.run_probing(model, prior, ["meta", "raw", "mlp"], ["5_hist_fig_ismale", "6_hist_fig_isamerican"])
    print(results.summary())
