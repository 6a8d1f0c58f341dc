"""Adaptive projection never projects or counts padding (issue 24, item 3).

A hook sees only ``[batch, pos, d]``; the padding of a batch reaches it through
:mod:`tl_glp.core.padding`: a declaration (``real_tokens``, used by the right-padded delta-LM-loss
runner), or, for hooks attached with ``steer``/``patch``, the model call's attention mask.
"""

import pytest
import torch
from conftest import random_sentences

import tl_glp
from tl_glp import ProjectionConfig, projection_hook, real_tokens
from tl_glp.core import padding
from tl_glp.evaluation import document_losses
from tl_glp.manifold.adaptive import AdaptiveProjector, OffManifold, score_recorder

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _real_lengths(model, texts):
    return [model.to_tokens(t).shape[1] for t in texts]


def test_delta_lm_loss_runner_counts_only_real_tokens(tiny_model, tiny_prior_and_acts):
    """document_losses right-pads; every non-BOS real token is a candidate, no pad is."""
    prior, _ = tiny_prior_and_acts
    texts = random_sentences(6, seed=3, length=9)
    lengths = _real_lengths(tiny_model, texts)
    assert len(set(lengths)) > 1  # the batch really is padded
    everything = OffManifold(float("-inf"), within=slice(1, None))  # flags every candidate
    adaptive = AdaptiveProjector(prior, everything, ProjectionConfig(seed=0, num_steps=4))
    document_losses(tiny_model, texts, HOOK, projection_hook(prior, projector=adaptive, positions=slice(1, None)))
    real_non_bos = sum(n - 1 for n in lengths)
    assert adaptive.stats == {"candidates": real_non_bos, "projected": real_non_bos}
    nothing = AdaptiveProjector(prior, OffManifold(float("inf"), within=slice(1, None)))
    document_losses(tiny_model, texts, HOOK, projection_hook(prior, projector=nothing, positions=slice(1, None)))
    assert nothing.stats == {"candidates": real_non_bos, "projected": 0}


def _run(model, tokens, fn, mask=None):
    """The activation at HOOK after ``fn`` (a second hook records it), with ``mask`` declared."""
    seen = {}

    def grab(act, hook):
        seen["out"] = act.detach().clone()

    with real_tokens(mask), model.hooks(fwd_hooks=[(HOOK, fn), (HOOK, grab)]):
        model(tokens)
    return seen["out"]


def test_padded_batch_matches_the_unpadded_one_on_real_positions(tiny_model, tiny_prior_and_acts):
    prior, acts = tiny_prior_and_acts
    natural = acts[0 : len(acts)].reshape(len(acts), -1)
    rule = OffManifold.calibrate(prior, natural[:400], fpr=0.3)  # flags some positions, not all
    pad_id = tiny_model.tokenizer.pad_token_id
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, tiny_model.cfg.d_vocab, (3, 7), generator=g)
    tokens[:, 0] = tiny_model.tokenizer.bos_token_id
    padded = torch.cat([tokens, torch.full((3, 5), pad_id)], dim=1)
    mask = torch.arange(12)[None] < 7

    def fresh():
        return AdaptiveProjector(prior, rule, ProjectionConfig(seed=1))

    a, b = fresh(), fresh()
    steer_a = projection_hook(prior, projector=a)
    steer_b = projection_hook(prior, projector=b)
    unpadded = _run(tiny_model, tokens, steer_a)
    out = _run(tiny_model, padded, steer_b, mask)
    assert torch.allclose(out[:, :7], unpadded, atol=1e-5)
    assert a.stats == b.stats and b.stats["candidates"] == 21 and 0 < b.stats["projected"] < 21
    clean = _run(tiny_model, padded, lambda act, hook: None)
    assert torch.equal(out[:, 7:], clean[:, 7:])  # padding: neither steered nor projected


def test_steer_follows_the_attention_mask_of_the_call_and_of_generate(tiny_model, tiny_prior_and_acts):
    prior, _ = tiny_prior_and_acts
    everything = OffManifold(float("-inf"))
    adaptive = AdaptiveProjector(prior, everything, ProjectionConfig(seed=0, num_steps=2))
    tokens = torch.randint(4, tiny_model.cfg.d_vocab, (2, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    with tl_glp.steer(tiny_model, torch.zeros(32), 0.0, prior=prior, projector=adaptive, hook_name=HOOK):
        tiny_model(tokens, attention_mask=mask)
        assert adaptive.stats["candidates"] == 9
        # generate left-pads a batch of prompts and passes TransformerLens's mask to every block
        prompts = ["the dog", "a big red ball ran"]
        lengths = _real_lengths(tiny_model, prompts)
        before = adaptive.stats["candidates"]
        tiny_model.generate(prompts, max_new_tokens=3, do_sample=False, verbose=False, stop_at_eos=False)
    assert adaptive.stats["candidates"] - before == sum(lengths) + 2 * (3 - 1)
    assert padding._FOLLOWERS.get(tiny_model) is None  # the follower came off with the hook
    tiny_model(tokens, attention_mask=mask)
    assert adaptive.stats["candidates"] - before == sum(lengths) + 4  # detached: nothing more counted


def test_last_is_each_rows_last_real_token_and_recorders_skip_padding(tiny_model, tiny_prior_and_acts):
    prior, _ = tiny_prior_and_acts
    tokens = torch.randint(4, tiny_model.cfg.d_vocab, (2, 6), generator=torch.Generator().manual_seed(2))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    direction = torch.eye(32)[0]
    out = _run(tiny_model, tokens, tl_glp.steering_hook(direction, 3.0, positions="last"), mask)
    clean = _run(tiny_model, tokens, lambda act, hook: None)
    edited = (out - clean).norm(dim=-1) > 1e-4
    assert edited.tolist() == [[False] * 5 + [True], [False, False, False, True, False, False]]
    rec = score_recorder(prior)
    _run(tiny_model, tokens, rec, mask)
    assert torch.isnan(rec.records[0]).tolist() == (mask == 0).tolist()


def test_padding_rules():
    class Tok:
        pad_token_id, bos_token_id, eos_token_id, padding_side = 0, 1, 2, "right"

    tokens = torch.tensor([[1, 5, 0, 0], [1, 0, 5, 0]])  # a pad id inside a row is a real token
    assert padding.padding_from_tokens(tokens, Tok()).tolist() == [[1, 1, 0, 0], [1, 1, 1, 0]]
    Tok.padding_side = "left"
    assert padding.padding_from_tokens(torch.tensor([[0, 0, 1, 5]]), Tok()).tolist() == [[0, 0, 1, 1]]
    Tok.eos_token_id = 0  # GPT-2: pad is eos: cannot tell, so no guess
    assert padding.padding_from_tokens(tokens, Tok()) is None
    real = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 1, 1]]).bool()
    assert padding.last_real(real).int().tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 1]]
    with real_tokens(torch.tensor([[1, 0]])):
        cpu = torch.device("cpu")
        assert padding.real_token_mask(1, 4, cpu).tolist() == [[True, False, True, True]]  # generated after: real
        assert padding.real_token_mask(2, 2, cpu).tolist() == [[True, False]] * 2  # one row: every row
    with real_tokens(torch.tensor([[1, 0], [1, 1]])):
        assert padding.real_token_mask(3, 2, cpu) is None  # another batch size: unknown
        with real_tokens(None):
            assert padding.real_token_mask(1, 2, cpu) is None
    with pytest.raises(ValueError, match=r"\[batch, pos\]"):
        with real_tokens(torch.ones(1, 2, 3)):
            pass
