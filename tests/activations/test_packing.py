"""Packing documents into full BOS-opened windows: the windows themselves, and the rows that collection
and streaming take from them."""

import json

import pytest
import torch
from conftest import random_sentences

from tl_glp import StreamingActivations, collect_activations
from tl_glp.activations.packing import pack_documents

HOOK = "blocks.1.hook_resid_post"
BOS, SEP = 1, 1


def random_docs(n, seed, max_len=40, vocab=(5, 50)):
    """Token documents of varied length (some empty, some longer than a window), no BOS among them."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, max_len, (n,), generator=g)
    return [(i, torch.randint(*vocab, (int(k),), generator=g).tolist()) for i, k in enumerate(lengths)]


def greedy_windows(docs, ctx, bos=BOS, sep=SEP):
    """Oracle written independently of the library: the flat stream (separator before every document
    but the first, each item tagged with its document and offset) is poured into windows that open
    with BOS; a separator that would open a window is dropped."""
    flat = []
    for n, (i, toks) in enumerate(d for d in docs if d[1]):
        if n:
            flat.append((sep, -1, -1))
        flat += [(t, i, o) for o, t in enumerate(toks)]
    windows, cur = [], []
    for item in flat:
        if not cur:
            if item[1] < 0:
                continue
            cur = [(bos, -1, -1)]
        cur.append(item)
        if len(cur) == ctx:
            windows.append(cur)
            cur = []
    if cur:
        windows.append(cur)
    return windows


@pytest.mark.parametrize("ctx", [2, 3, 8, 17])
def test_windows_match_an_independent_packer_and_lose_nothing(ctx):
    docs = random_docs(60, seed=ctx)
    windows = list(pack_documents(docs, ctx, bos=BOS, separator=SEP))
    expected = greedy_windows(docs, ctx)
    assert [w.tokens.tolist() for w in windows] == [[t for t, _, _ in w] for w in expected]
    assert [w.doc.tolist() for w in windows] == [[d for _, d, _ in w] for w in expected]
    assert [w.offset.tolist() for w in windows] == [[o for _, _, o in w] for w in expected]
    # every window full but the last; exactly one BOS opening each (the others are separators between documents)
    assert all(len(w.tokens) == ctx for w in windows[:-1]) and 2 <= len(windows[-1].tokens) <= ctx
    for w in windows:
        assert w.tokens[0] == BOS and w.doc[0] == -1 and w.doc[1] >= 0
        inserted = (w.doc == -1).nonzero()[:, 0].tolist()
        for p in inserted[1:]:  # a separator: after a document's last token, before the next document
            assert w.doc[p - 1] >= 0 and (p + 1 == len(w.tokens) or w.doc[p + 1] > w.doc[p - 1])
    # no document lost: every token of every document once, in order
    by_doc = {}
    for w in windows:
        for t, d, o in zip(w.tokens.tolist(), w.doc.tolist(), w.offset.tolist()):
            if d >= 0:
                by_doc.setdefault(d, []).append((o, t))
    assert {d: [t for _, t in v] for d, v in by_doc.items()} == {i: t for i, t in docs if t}
    assert all([o for o, _ in v] == list(range(len(v))) for v in by_doc.values())


def test_full_windows_equal_sae_lens_concat_and_batch_sequences():
    """SAE-Lens's own packer (BOS opens each batch and separates sequences) gives the same full windows;
    it drops the last partial window, which packing keeps."""
    sae_lens_batching = pytest.importorskip(
        "sae_lens.tokenization_and_batching", reason="needs sae-lens (the sae extra; not installable with TL 4)"
    )
    docs = random_docs(80, seed=5, max_len=30)
    for ctx in (4, 16, 33):
        theirs = sae_lens_batching.concat_and_batch_sequences(
            (torch.tensor(t, dtype=torch.long) for _, t in docs if t),
            ctx,
            begin_batch_token_id=BOS,
            sequence_separator_token_id=SEP,
        )
        ours = [w.tokens.tolist() for w in pack_documents(docs, ctx, bos=BOS, separator=SEP)]
        theirs = [t.tolist() for t in theirs]
        assert len(ours) == len(theirs) + (len(ours[-1]) < ctx) and ours[: len(theirs)] == theirs


def test_a_window_start_rebuilds_that_window_and_every_later_one():
    docs = random_docs(50, seed=3, max_len=25)
    windows = list(pack_documents(docs, 8, bos=BOS, separator=SEP))
    assert any(w.start[1] > 0 for w in windows)  # some windows open inside a document
    for k in range(0, len(windows), 3):
        doc, offset = windows[k].start
        rest = list(pack_documents([d for d in docs if d[0] >= doc], 8, bos=BOS, separator=SEP, start=(doc, offset)))
        assert [w.tokens.tolist() for w in rest] == [w.tokens.tolist() for w in windows[k:]]
        assert [w.start for w in rest] == [w.start for w in windows[k:]]


def test_rows_skip_special_tokens_and_count_within_each_document():
    docs = [(0, [7, 3, 8]), (1, [3, 9, 9, 3, 4])]  # 3 is special
    (window,) = pack_documents(docs, 16, bos=BOS, separator=SEP, special={3})
    assert window.tokens.tolist() == [1, 7, 3, 8, 1, 3, 9, 9, 3, 4]
    assert window.row.tolist() == [-1, 0, -1, 1, -1, -1, 0, 1, -1, 2]


def forward_inputs(model, monkeypatch):
    """Record every token batch the model is run on."""
    seen, original = [], model.run_with_cache

    def spy(tokens, **kwargs):
        seen.append(tokens.clone())
        return original(tokens, **kwargs)

    monkeypatch.setattr(model, "run_with_cache", spy)
    return seen


def test_collection_runs_full_windows_and_keeps_every_document_token_once(tiny_model, monkeypatch):
    texts = random_sentences(90, seed=12, length=9) + ["the zebra ran"]  # one <unk>, never a row
    seen = forward_inputs(tiny_model, monkeypatch)
    acts = collect_activations(tiny_model, texts, HOOK, batch_size=4, progress=False)
    monkeypatch.undo()
    ctx = tiny_model.cfg.n_ctx
    batches = seen[1:]  # after the one-token probe of the hook's width
    seqs = torch.cat(batches[:-1])  # all full windows; the last batch ends with the one short window
    assert seqs.shape[1] == ctx and (seqs[:, 0] == BOS).all() and (seqs[:, 1] != BOS).all()
    assert batches[-1].shape[0] <= 4 and (batches[-1][:, 0] == BOS).all()
    # the oracle: windows built independently from TransformerLens's own tokens (BOS stripped), each run alone
    docs = [(i, tiny_model.to_tokens(t)[0, 1:].tolist()) for i, t in enumerate(texts)]
    unk = tiny_model.tokenizer.unk_token_id
    expected = []
    for window in greedy_windows(docs, ctx):
        tokens = torch.tensor([[t for t, _, _ in window]])
        _, cache = tiny_model.run_with_cache(tokens, names_filter=[HOOK])
        keep = torch.tensor([d >= 0 and t != unk for t, d, _ in window])
        expected.append(cache[HOOK][0][keep])
    expected = torch.cat(expected)
    n_words = sum(len(t.split()) for t in texts)
    assert len(acts) == len(expected) == n_words - 1  # every word once; the <unk> dropped; no BOS, no padding
    assert torch.allclose(acts[0 : len(acts)], expected, atol=1e-5)
    padded = collect_activations(tiny_model, texts, HOOK, batch_size=4, packing=False, progress=False)
    assert len(padded) == len(acts)  # the same positions, in other contexts
    first = len(texts[0].split())  # the first document opens the first window: its context is the same
    assert torch.allclose(padded[0:first], acts[0:first], atol=1e-5)
    assert not torch.allclose(padded[0 : len(acts)], acts[0 : len(acts)], atol=1e-3)


def test_packing_needs_a_tokenizer_with_bos_or_eos(tiny_model):
    from types import SimpleNamespace

    from tl_glp.activations.packing import bos_token_id

    assert bos_token_id(tiny_model) == tiny_model.tokenizer.bos_token_id
    bare = SimpleNamespace(tokenizer=SimpleNamespace(bos_token_id=None, eos_token_id=None), cfg=tiny_model.cfg)
    with pytest.raises(ValueError, match="packing=False"):
        bos_token_id(bare)
    with pytest.raises(ValueError, match="tokenizer"):
        bos_token_id(SimpleNamespace(tokenizer=None, cfg=tiny_model.cfg))


def test_streaming_and_collection_give_the_same_rows(tiny_model):
    texts = random_sentences(200, seed=13, length=12)
    stream = StreamingActivations(tiny_model, texts, HOOK, buffer_rows=64, warmup_rows=40, val_rows=30, forward_batch=4)
    collected = collect_activations(tiny_model, texts, HOOK, batch_size=4, progress=False)
    assert torch.equal(stream.validation[0:30], collected[0:30])
    val_end = stream.first_train_doc
    train_rows = collect_activations(tiny_model, texts[val_end:], HOOK, batch_size=4, progress=False)
    got = [b for b, _ in stream.iter_batches(1, seed=0)]
    doc, pos = torch.cat([b.doc for b in got]), torch.cat([b.pos for b in got])
    order = torch.argsort(doc * 1000 + pos)
    acts = torch.cat([b.acts for b in got])[order]
    assert len(acts) == len(train_rows) and torch.allclose(acts, train_rows[0 : len(train_rows)], atol=1e-6)


def test_each_rank_packs_its_own_documents_and_together_they_cover_every_token_once(tiny_model):
    texts = random_sentences(120, seed=14, length=12)
    stream = StreamingActivations(tiny_model, texts, HOOK, buffer_rows=64, warmup_rows=32, val_rows=0, forward_batch=4)
    keys, rows = [], []
    for rank in range(3):
        for chunk in stream.rows(0, rank=rank, world=3):
            assert (chunk.doc % 3 == rank).all()
            keys += list(zip(chunk.doc.tolist(), chunk.pos.tolist()))
            rows.append(chunk.rows)
    per_doc = [len(t.split()) for t in texts]
    assert sorted(keys) == [(d, p) for d, n in enumerate(per_doc) for p in range(n)]


def test_a_packed_stream_resumes_exactly_from_states_inside_documents(tiny_model):
    """Documents longer than a window: states stop inside documents, and the buffer holds rows from windows
    that opened inside one; resuming from each state continues with the same examples and values."""
    texts = [" ".join(random_sentences(8, seed=s, length=10)) for s in range(60)]  # ~40 words: > one window
    for world, rank in ((1, 0), (2, 1)):
        stream = StreamingActivations(
            tiny_model, texts, HOOK, buffer_rows=96, warmup_rows=64, val_rows=20, forward_batch=3
        )
        whole = list(stream.iter_batches(16, seed=2, rank=rank, world=world))
        states = [s for _, s in whole]
        assert any(s.next_offset > 0 for s in states) and any(s.replay and s.replay[1] > 0 for s in states)
        for k in (2, len(whole) // 2):
            state = json.loads(json.dumps(states[k].to_dict()))
            resumed = list(stream.iter_batches(16, seed=2, state=state, rank=rank, world=world))
            assert len(resumed) == len(whole) - k - 1
            for (a, _), (b, _) in zip(whole[k + 1 :], resumed):
                assert torch.equal(a.doc, b.doc) and torch.equal(a.pos, b.pos)
                assert torch.allclose(a.acts, b.acts, atol=1e-5)
    padded = StreamingActivations(tiny_model, texts, HOOK, buffer_rows=96, warmup_rows=64, val_rows=20, packing=False)
    with pytest.raises(ValueError, match="packing=True"):
        next(padded.iter_batches(16, seed=2, state=state, rank=1, world=2))
