# %% [markdown]
# # Steering walk-through: plain vs prior-guided, measured against ground truth
#
# Plain additive steering pushes activations off the manifold of real ones; the prior projects the
# edited activation back (SDEdit from t=0.5). On the testbed we can score both with ground truth:
# the sentiment of the continuation, whether the grammar accepts it, and its NLL under the unsteered model.

# %%
import os
from pathlib import Path

import torch

import tl_glp
from tl_glp.studies.testbed import MIDDLE_HOOK, load

SMALL = os.environ.get("TL_GLP_EXAMPLE_BUDGET") == "small"
OUT = Path(os.environ.get("TL_GLP_EXAMPLE_OUT", "examples_out"))  # figures go here (git ignores it)
torch.manual_seed(0)  # the prior's initialisation and training: the same numbers on every run
testbed = load()
model, language = testbed.model, testbed.language
acts = tl_glp.collect_activations(model, language.sample_texts(300 if SMALL else 4000, seed=1), MIDDLE_HOOK)
prior = tl_glp.GenerativePrior.from_activations(acts, n_blocks=3)
tl_glp.train(prior, acts, tl_glp.TrainConfig(batch_size=256, lr=2e-3, max_steps=40 if SMALL else 1000, eval_every=0))

# %% A sentiment direction from the difference of means of positive and negative documents
docs = list(language.documents(300, seed=2))
direction = tl_glp.diff_of_means(
    model,
    [d.text for d in docs if set(d.latents["sentiment"]) == {"positive"}],
    [d.text for d in docs if set(d.latents["sentiment"]) == {"negative"}],
    MIDDLE_HOOK,
)

# %% One hook, two ways to attach it: a context manager, or a handle you remove yourself
# Greedy decoding and a seeded projection (one generator, seeded once per hook) make both ways print
# the same continuation: the hook is the same, only the way it is attached differs.
hook_fn = tl_glp.steering_hook(
    direction, 1.5, prior=prior, relative=True, positions="last", projection=tl_glp.ProjectionConfig(seed=0)
)
with model.hooks(fwd_hooks=[(MIDDLE_HOOK, hook_fn)]):
    via_hooks = model.generate("the dogs", max_new_tokens=10, verbose=False, do_sample=False)
handle = tl_glp.patch(
    model, direction, 1.5, prior=prior, relative=True, positions="last", projection=tl_glp.ProjectionConfig(seed=0)
)
via_patch = model.generate("the dogs", max_new_tokens=10, verbose=False, do_sample=False)
handle.remove()
print("hooks():", via_hooks)
print("patch():", via_patch)
print("same continuation:", via_hooks == via_patch)


# %% The sweep: strengths x prompts x methods, with ground-truth scorers plugged in
def concept(model, gens):
    return [language.sentiment_score(c) for c in gens.continuations]


def grammatical(model, gens):
    return [float(language.is_grammatical(p + " " + c)) for p, c in zip(gens.prompts, gens.continuations)]


concept.name, grammatical.name = "concept", "grammatical"
prompts = [" ".join(d.words[:3]) for d in language.documents(4 if SMALL else 24, seed=3)]
df = tl_glp.steering_sweep(
    model,
    direction,
    prompts,
    prior=prior,
    strengths=[1.0, 3.0] if SMALL else [0.5, 1.0, 1.5, 2.0, 3.0],
    concept=concept,
    scorers=[grammatical],
    max_new_tokens=12,
)
print(df.groupby(["method", "r"])[["concept", "grammatical", "nll"]].mean())
print("figure:", tl_glp.plot_pareto(df, OUT / "steering_pareto.png"))
