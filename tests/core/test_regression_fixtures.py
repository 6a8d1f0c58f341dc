"""Numbers unchanged by the restructure: outputs saved at fixed seeds on v0.2 (before anything moved).

``fixtures/outputs_v02.safetensors`` holds, for a 2-block prior on seeded random data, ``project``
(reference, and t=0.3 heun:2), ``sample``, ``encode``, ``loss``, ``log_prob``, one call of a seeded
steering hook, and the tokens of a prior-guided greedy generation on the shipped testbed. They were
bit-identical after the move on the machine that made them; the tolerance here only absorbs another
CPU's floating-point kernels. The generation's tokens are the one intended change: v0.2 re-seeded
the projection noise at every forward call, and a seeded hook now draws fresh noise per call from
one generator (as the reference does), so the tokens stored are the new ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tl_glp
from tl_glp import GenerativePrior, ProjectionConfig
from tl_glp.activations.collect import collect_activations
from tl_glp.manifold import log_prob
from tl_glp.steering import steering_hook

FIXTURES = load_file(str(Path(__file__).parent / "fixtures" / "outputs_v02.safetensors"))


@pytest.fixture(scope="module")
def outputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(512, 16, generator=g) * 2 + 0.5
    torch.manual_seed(1)
    prior = GenerativePrior.from_activations(acts, n_blocks=2).eval()
    out = {
        "project": prior.project(acts[:32], generator=torch.Generator().manual_seed(3)),
        "project_t03_heun": prior.project(
            acts[:32], t_start=0.3, schedule="heun:2", generator=torch.Generator().manual_seed(3)
        ),
        "sample": prior.sample(16, generator=torch.Generator().manual_seed(4)),
        "encode": prior.encode(acts[:32]),
        "loss": prior.loss(acts[:64], generator=torch.Generator().manual_seed(5)).detach().reshape(1),
        "log_prob": log_prob(prior, acts[:4]).log_prob.detach(),
    }
    return out


@pytest.mark.parametrize("name", ["project", "project_t03_heun", "sample", "encode", "loss", "log_prob"])
def test_prior_outputs_match_v02(outputs, name):
    torch.testing.assert_close(outputs[name], FIXTURES[name], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(
    not tl_glp.core._compat.has_hooked_transformer(), reason="the shipped testbed is a HookedTransformer (TL <= 3)"
)
def test_steering_outputs_match_v02():
    from tl_glp.studies.testbed import load

    tb = load()
    hook = "blocks.2.hook_resid_post"
    acts = collect_activations(
        tb.model, tb.language.sample_texts(200), hook, packing=False, progress=False
    )  # as in v0.2
    acts = acts.data.reshape(-1, acts.d_input)
    torch.manual_seed(2)
    prior = GenerativePrior.from_activations(acts, n_blocks=1).eval()
    direction = torch.randn(acts.shape[-1], generator=torch.Generator().manual_seed(7))
    direction = direction / direction.norm()
    fn = steering_hook(direction, 0.5, prior=prior, relative=True, projection=ProjectionConfig(seed=0))
    torch.testing.assert_close(
        fn(acts[:6].reshape(2, 3, -1).clone(), hook=None), FIXTURES["hook_one_call"], rtol=1e-5, atol=1e-5
    )
    with tl_glp.steer(
        tb.model,
        direction,
        0.5,
        prior=prior,
        relative=True,
        positions="last",
        projection=ProjectionConfig(seed=0),
        hook_name=hook,
    ):
        tokens = tb.model.generate(
            ["the dog", "a cat"],
            max_new_tokens=8,
            do_sample=False,
            verbose=False,
            stop_at_eos=False,
            return_type="tokens",
        )
    assert torch.equal(tokens.cpu(), FIXTURES["steer_tokens"])
