# %% [markdown]
# # tl-glp quickstart: collect, train, sample, steer, probe — offline, on the testbed
#
# Runs on a laptop CPU in a couple of minutes (the testbed model trains once, then is cached).
# Set `TL_GLP_EXAMPLE_BUDGET=small` for a smoke run.

# %%
import os

import torch

import tl_glp
from tl_glp.studies.testbed import MIDDLE_HOOK, load

SMALL = os.environ.get("TL_GLP_EXAMPLE_BUDGET") == "small"
testbed = load()  # a tiny HookedTransformer trained on a synthetic language with known latents
model = testbed.model
print(model.generate("the dog", max_new_tokens=10, verbose=False))

# %% Collect residual-stream activations at the middle layer (BOS and padding dropped)
texts = testbed.language.sample_texts(300 if SMALL else 3000, seed=1)
acts = tl_glp.collect_activations(model, texts, MIDDLE_HOOK)
print(len(acts), "activations of width", acts.d_input)

# %% Train a prior (small-model settings: bigger lr, smaller batch than the paper's)
prior = tl_glp.GenerativePrior.from_activations(acts, n_blocks=3)
result = tl_glp.train(
    prior, acts, tl_glp.TrainConfig(batch_size=256, lr=2e-3, max_steps=40 if SMALL else 800, eval_every=0)
)
print("final loss", round(result.final_loss, 3))

# %% Sample new activations and pull an edited one back onto the manifold
samples = prior.sample(8)
edited = acts[0:4] + 3 * torch.randn(4, acts.d_input)
projected = prior.project(edited, t_start=0.5)
print(samples.shape, projected.shape)

# %% Steer with the prior as a TransformerLens hook
positive = [d.text for d in testbed.language.documents(200, seed=2) if set(d.latents["sentiment"]) == {"positive"}]
negative = [d.text for d in testbed.language.documents(200, seed=2) if set(d.latents["sentiment"]) == {"negative"}]
direction = tl_glp.diff_of_means(model, positive, negative, MIDDLE_HOOK)
with tl_glp.steer(
    model, direction, 1.0, prior=prior, relative=True, positions="last", projection=tl_glp.ProjectionConfig(seed=0)
):
    print(model.generate("the cat", max_new_tokens=12, verbose=False))

# %% Probe meta-neurons against raw residual dimensions on the testbed's concept datasets
from tl_glp.probing import load_dataset

datasets = [load_dataset(frame, name=name) for name, frame in list(testbed.datasets.items())[: 2 if SMALL else 6]]
results = tl_glp.run_probing(model, prior, ["meta", "raw"], datasets, top_k=64 if SMALL else 512)
print(results.summary())
