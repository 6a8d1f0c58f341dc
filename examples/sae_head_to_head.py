# %% [markdown]
# # Meta-neurons vs SAE features (SAE-Lens), raw and MLP neurons, on the same probing datasets
#
# Offline this uses the testbed and an SAE trained with SAE-Lens on the very same activations. On a
# real model, swap in `SAE.from_pretrained(...)` and the SAE-Probes datasets (see the bottom cell).

# %%
import os
from pathlib import Path

import torch

import tl_glp
from tl_glp.probing import MetaNeurons, MLPNeurons, PCAFeatures, RawActivations, SAEFeatures, load_dataset
from tl_glp.saes import train_sae
from tl_glp.studies.testbed import MIDDLE_HOOK, load

SMALL = os.environ.get("TL_GLP_EXAMPLE_BUDGET") == "small"
OUT = Path(os.environ.get("TL_GLP_EXAMPLE_OUT", "examples_out"))  # figures go here (git ignores it)
torch.manual_seed(0)
testbed = load()
model = testbed.model
acts = tl_glp.collect_activations(model, testbed.language.sample_texts(300 if SMALL else 4000, seed=1), MIDDLE_HOOK)
prior = tl_glp.GenerativePrior.from_activations(acts, n_blocks=3)
tl_glp.train(prior, acts, tl_glp.TrainConfig(batch_size=256, lr=2e-3, max_steps=40 if SMALL else 1000, eval_every=0))
sae = train_sae(acts, d_sae=256 if SMALL else 1024, k=16, steps=40 if SMALL else 1000)

# %% Same activations, same splits, five feature sources, with label-shuffled controls
datasets = [load_dataset(frame, name=name) for name, frame in testbed.datasets.items()]
results = tl_glp.run_probing(
    model,
    prior,
    [MetaNeurons(prior), SAEFeatures(sae), RawActivations(), MLPNeurons(), PCAFeatures(64)],
    datasets,
    top_k=64 if SMALL else 512,
)
print(results.summary())
print(results.wins())
print("figure:", results.plot(OUT / "probing.png", a="meta", b="sae"))

# %% The same harness SAE researchers use: meta-neurons behind the SAE duck type
from tl_glp.probing import MetaNeuronSAE  # noqa: E402 (a notebook cell's import)

sae_like = MetaNeuronSAE(prior)
print(sae_like.cfg.d_in, sae_like.cfg.d_sae, sae_like.cfg.hook_name)
# sae_probes.run_sae_evals(sae_like, model_name=..., hook_name=MIDDLE_HOOK, reg_type="l1", setting="normal")

# %% On a real model (needs the Hugging Face Hub; a GPU for anything large):
# from sae_lens import SAE
# from transformer_lens import HookedTransformer
# model = HookedTransformer.from_pretrained_no_processing("gpt2")
# sae = SAE.from_pretrained("gpt2-small-res-jb", "blocks.8.hook_resid_pre")
# results = tl_glp.run_probing(model, prior, ["meta", "raw", "mlp", SAEFeatures(sae)], "all", hook_name="blocks.8.hook_resid_pre")
