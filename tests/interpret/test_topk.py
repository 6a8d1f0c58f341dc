"""Streaming top-k: equal to a brute-force sort, independent of batch size, reloadable, signed."""

import torch

from tests.conftest import random_sentences
from tl_glp.interpret import TopActivations, top_activations
from tl_glp.interpret.features import flat_token_features
from tl_glp.interpret.topk import brute_force_top, decode_keys, histogram_edges, order_keys
from tl_glp.probing import MetaNeurons, MLPNeurons, RawActivations

HOOK = "blocks.1.hook_resid_post"


class Rounded(RawActivations):
    """Raw dimensions rounded to a coarse grid: many exact ties."""

    name = "rounded"

    def features(self, acts, hook_name):
        return (acts[hook_name] * 2).round() / 2


def test_keys_order_values_then_earlier_position():
    values = torch.tensor([1.0, -2.0, 1.0, -0.0, 0.0, float("inf"), -3.5])
    position = torch.arange(7)
    keys = order_keys(values, position)
    order = torch.argsort(keys, descending=True).tolist()
    assert order == [5, 0, 2, 3, 4, 1, 6]  # -0.0 and 0.0 tie: the earlier one first
    back, pos = decode_keys(keys)
    assert torch.equal(back, values) and torch.equal(pos, position)
    assert decode_keys(order_keys(torch.tensor([float("nan")]), torch.tensor([3])))[1].item() == -1


def test_equals_brute_force_with_ties_and_any_batch_size(tiny_model):
    texts = random_sentences(23, seed=3, length=8)
    src = Rounded()
    feats, doc, pos = flat_token_features(tiny_model, src, texts, HOOK)
    assert len(torch.unique(feats[:, 0])) < len(feats) / 2  # ties are common
    want_v, want_d, want_p = brute_force_top(feats, doc, pos, k=7)
    results = [
        top_activations(
            tiny_model, src, texts, hook_name=HOOK, k=7, batch_size=bs, histogram_sample=1.0, progress=False
        )
        for bs in (1, 4, 23)
    ]
    for res in results:
        assert torch.equal(res.top.doc, want_d) and torch.equal(res.top.pos, want_p)
        assert torch.equal(res.top.values, want_v)
    # bottom tail = top of the negated features
    neg_v, neg_d, neg_p = brute_force_top(-feats, doc, pos, k=7)
    assert torch.equal(results[0].bottom.doc, neg_d) and torch.equal(results[0].bottom.values, -neg_v)
    for a, b in zip(results, results[1:]):
        assert (
            torch.equal(a.histogram, b.histogram)
            and torch.allclose(a.mean, b.mean)
            and torch.equal(a.density, b.density)
        )
        assert torch.equal(a.random_doc, b.random_doc) and torch.equal(a.random_pos, b.random_pos)
        assert torch.equal(a.top.context.nan_to_num(-99), b.top.context.nan_to_num(-99))
    res = results[0]
    assert res.n_tokens == len(feats) and int(res.histogram[0].sum()) == len(feats)
    edges = histogram_edges().float()
    for f in (0, 5):  # every count in its bin
        want = torch.histogram(feats[:, f].clamp(edges[0], edges[-1] / 2), bins=edges).hist
        assert torch.equal(res.histogram[f].float(), want)
    sampled = top_activations(tiny_model, src, texts, hook_name=HOOK, k=7, batch_size=5, progress=False)
    assert (
        0 < sampled.settings["histogram_tokens"] < len(feats)
        and int(sampled.histogram[3].sum()) == sampled.settings["histogram_tokens"]
    )
    assert torch.allclose(res.density, (feats > 0).float().mean(0))
    # the context window holds the feature's own activation at the example token
    left = res.context[0]
    assert torch.equal(res.top.context[:, 0, left], res.top.values[:, 0])


def test_fewer_tokens_than_k_and_unsigned(tiny_model):
    res = top_activations(tiny_model, MLPNeurons(), ["the dog ran"], hook_name=HOOK, k=10, progress=False)
    assert res.bottom is None and not res.signed
    assert (res.top.doc[:, :3] == 0).all() and (res.top.doc[:, 3:] == -1).all()
    assert torch.isnan(res.top.values[:, 3:]).all()
    ex = res.examples(5)
    assert len(ex) == 3 and ex[0].value == res.top.values[5, 0].item()
    assert ex[0].tokens[ex[0].center] in "the dog ran".split()


def test_meta_neurons_reproducible_and_reload(tiny_model, tiny_prior_and_acts, tmp_path):
    prior, _ = tiny_prior_and_acts
    texts = random_sentences(12, seed=5, length=8)
    a = top_activations(tiny_model, MetaNeurons(prior), texts, k=4, batch_size=5, progress=False)
    again = top_activations(tiny_model, MetaNeurons(prior), texts, k=4, batch_size=5, progress=False)
    b = top_activations(tiny_model, "meta", texts, prior=prior, k=4, batch_size=12, progress=False)
    assert a.signed and a.n_features == prior.n_features and a.hook_name == HOOK
    assert torch.equal(a.top.values, again.top.values) and torch.equal(
        a.bottom.pos, again.bottom.pos
    )  # a second pass: bit-identical
    # another batch size: the same noise per document, so the same examples (values up to matmul rounding)
    assert (
        torch.equal(a.top.doc, b.top.doc)
        and torch.equal(a.top.pos, b.top.pos)
        and torch.equal(a.bottom.doc, b.bottom.doc)
    )
    torch.testing.assert_close(a.top.values, b.top.values, rtol=1e-5, atol=1e-5)
    other_seed = top_activations(tiny_model, MetaNeurons(prior, seed=1), texts, k=4, batch_size=5, progress=False)
    assert not torch.allclose(other_seed.top.values, a.top.values)
    a.explanations[3] = "nouns"
    a.scores[3] = {"balanced_accuracy": 0.75}
    back = TopActivations.load(a.save(tmp_path / "res"))
    for name in ("values", "doc", "pos"):
        assert torch.equal(getattr(back.top, name), getattr(a.top, name))
        assert torch.equal(getattr(back.bottom, name), getattr(a.bottom, name))
    assert torch.equal(back.histogram, a.histogram) and torch.equal(
        back.random_values.nan_to_num(), a.random_values.nan_to_num()
    )
    assert back.doc_tokens == a.doc_tokens and back.vocab == a.vocab and back.token_sep == " "
    assert back.explanations == {3: "nouns"} and back.scores[3]["balanced_accuracy"] == 0.75
    assert [e.tokens for e in back.examples(2, "bottom")] == [e.tokens for e in a.examples(2, "bottom")]
    assert type(back) is TopActivations and callable(back.to_html)  # loaded with its views


def test_the_records_are_importable_from_where_they_were():
    import tl_glp.interpret as interpret
    from tl_glp.interpret import topk, types

    assert topk.Example is types.Example is interpret.Example and topk.Tail is types.Tail is interpret.Tail
    assert topk.TopActivations is interpret.TopActivations and issubclass(topk.TopActivations, types.TopActivationsData)


def test_errors(tiny_model):
    import pytest

    with pytest.raises(ValueError, match="hook_name"):
        top_activations(tiny_model, RawActivations(), ["the dog"], progress=False)
    with pytest.raises(ValueError, match="k must be"):
        top_activations(tiny_model, RawActivations(), ["the dog"], hook_name=HOOK, k=0, progress=False)
    with pytest.raises(TypeError, match="one string"):
        top_activations(tiny_model, RawActivations(), "the dog", hook_name=HOOK, progress=False)


def test_chunk_preselection_equals_a_full_sort_with_ties_nan_and_partial_chunks():
    """The merge's chunked pre-selection (taken when a batch has many more rows than k chunks)
    keeps exactly the keys a full sort of everything seen keeps, on both tails."""
    from tl_glp.interpret.topk import _CHUNK, _TailBuffer

    gen = torch.Generator().manual_seed(0)
    k, n_feat = 3, 7
    sizes = [
        2 * (2 * k + 1) * _CHUNK + 5,
        9,
        40 * _CHUNK,
        3 * _CHUNK + 1,
    ]  # fast path, tiny batch, exact multiple, partial chunk
    batches, offset = [], 0
    for n in sizes:
        x = torch.randn(n_feat, n, generator=gen)
        x[1] = (x[1] * 2).round()  # heavy ties, also at the chunk boundary
        x[2] = 1.0  # all equal
        x[3, torch.randint(0, n, (3,), generator=gen)] = float("nan")
        x[4] = torch.where(x[4] > 1, x[4], torch.zeros_like(x[4]))  # sparse, ReLU-like
        batches.append((x, torch.arange(offset, offset + n)))
        offset += n
    for largest in (True, False):
        buf = _TailBuffer(n_feat, k, 1, largest, torch.device("cpu"))
        for x, position in batches:
            windows = torch.arange(x.shape[1])[:, None]  # window = the token itself
            buf.merge(slice(0, n_feat), x.contiguous(), position, windows)
        every = torch.cat([x for x, _ in batches], dim=1)
        keys = order_keys(every if largest else -every, torch.cat([p for _, p in batches])[None])
        want = torch.topk(keys, k, dim=1).values
        assert torch.equal(buf.keys, want), largest
        values, _ = decode_keys(buf.keys)
        assert torch.equal(buf.context[..., 0].nan_to_num(-99), (values if largest else -values).nan_to_num(-99))
