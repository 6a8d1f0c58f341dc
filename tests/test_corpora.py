"""The offline corpus: a split into training and evaluation documents with no exact or near duplicate across."""

import random
import time

import numpy as np
import pytest

from tl_glp.corpora import (
    duplicate_groups,
    minhash_signatures,
    normalize,
    sae_probes_corpus,
    sae_probes_texts,
    split_documents,
)

VOCAB = [f"w{i}" for i in range(400)]


def shingles(text, k=5):
    b = normalize(text).encode().ljust(k)
    return {b[i : i + k] for i in range(len(b) - k + 1)}


def jaccard(x, y):
    a, b = shingles(x), shingles(y)
    return len(a & b) / len(a | b)


def family_corpus(n_base=120, seed=0):
    """Base sentences, and variants of some: one word changed, case/spacing changed, a word appended."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n_base):
        words = [rng.choice(VOCAB) for _ in range(rng.randint(12, 30))]
        texts.append(" ".join(words))
        kind = rng.random()
        if kind < 0.25:
            w = list(words)
            w[rng.randrange(len(w))] = rng.choice(VOCAB)
            texts.append(" ".join(w))
        elif kind < 0.45:
            texts.append("  ".join(words).upper() + " ")
        elif kind < 0.6:
            texts.append(" ".join(words + [rng.choice(VOCAB)]))
    rng.shuffle(texts)
    return texts


def components(n, edges):
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in edges:
        parent[find(a)] = find(b)
    return [find(i) for i in range(n)]


@pytest.mark.parametrize("seed", [0, 4])
def test_groups_are_the_components_of_the_brute_force_near_duplicate_graph(seed):
    texts = family_corpus(seed=seed)
    labels, stats = duplicate_groups(texts, threshold=0.8)
    n = len(texts)
    sims = {(i, j): jaccard(texts[i], texts[j]) for i in range(n) for j in range(i + 1, n)}
    near = [p for p, s in sims.items() if s >= 0.8]
    assert len(near) > 20 and any(s < 0.9 for p, s in sims.items() if s >= 0.8)  # some pairs near the threshold
    expected = components(n, near)
    assert len(set(labels.tolist())) == len(set(expected))
    assert all((labels[i] == labels[j]) == (expected[i] == expected[j]) for i, j in sims)
    assert stats["exact_duplicates"] == n - len({normalize(t) for t in texts}) > 10
    assert all(labels[i] == min(np.flatnonzero(labels == labels[i])) for i in range(n))  # label: the first member


def test_minhash_agreement_estimates_jaccard():
    texts = family_corpus(60, seed=1)
    sig = minhash_signatures([normalize(t).encode().ljust(5) for t in texts])
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, len(texts), (300, 2))
    est = (sig[pairs[:, 0]] == sig[pairs[:, 1]]).mean(1)
    true = np.array([jaccard(texts[a], texts[b]) for a, b in pairs])
    assert np.abs(est - true).mean() < 0.03 and np.abs(est - true).max() < 0.2


@pytest.mark.parametrize("by", ["document", "source"])
def test_no_text_is_shared_across_or_repeated_within_the_split(by):
    texts = family_corpus(300, seed=2)
    sources = [f"set{i % 7}" for i in range(len(texts))]
    split = split_documents(texts, eval_fraction=0.3, seed=5, sources=sources, by=by)
    assert split.train and split.eval
    both = split.train + split.eval
    assert len({normalize(t) for t in both}) == len(both)  # no exact duplicate anywhere
    worst = max(jaccard(a, b) for a in split.train for b in split.eval)
    assert worst < 0.8  # no near duplicate across
    assert [texts[i] for i in split.train_index] == split.train and [texts[i] for i in split.eval_index] == split.eval
    labels, _ = duplicate_groups(texts)
    kept = np.concatenate([split.train_index, split.eval_index])
    assert len(np.unique(labels[kept])) == len(kept)  # one document per group
    if by == "source":
        assert not set(split.train_source) & set(split.eval_source)  # whole datasets on one side
    else:
        assert len(kept) == len(set(labels))  # every group keeps one document
        assert abs(len(split.eval) / len(kept) - 0.3) < 0.01


def test_the_split_is_decided_by_the_seed():
    texts = family_corpus(200, seed=3)
    a = split_documents(texts, seed=1)
    b = split_documents(texts, seed=1)
    c = split_documents(texts, seed=2)
    assert a.train == b.train and a.eval == b.eval
    assert set(a.eval) != set(c.eval)
    ordered = split_documents(texts, seed=1, shuffle=False)
    assert set(ordered.train) == set(a.train) and list(ordered.train_index) == sorted(ordered.train_index)


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match="eval_fraction"):
        split_documents(["a"], eval_fraction=1.5)
    with pytest.raises(ValueError, match="sources="):
        split_documents(["a b c"], by="source")
    with pytest.raises(ValueError, match="one source per text"):
        split_documents(["a b c", "d e f"], sources=["x"])
    with pytest.raises(ValueError, match="shingle"):
        duplicate_groups(["a", "b"], shingle=9)


def test_sae_probes_texts_come_from_the_installed_package_and_their_duplicates_are_removed():
    pytest.importorskip("sae_probes", reason="needs sae-probes (the probes extra)")
    names = ["5_hist_fig_ismale", "6_hist_fig_isamerican"]  # the same people, labelled two ways
    texts, sources = sae_probes_texts(names)
    assert set(sources) == set(names) and len(texts) == len(sources)
    split = sae_probes_corpus(datasets=names, eval_fraction=0.2, seed=0)
    assert split.stats["exact_duplicates"] > len(texts) // 4
    norm_train = {normalize(t) for t in split.train}
    assert not norm_train & {normalize(t) for t in split.eval}
    with pytest.raises(KeyError, match="Unknown SAE-Probes"):
        sae_probes_texts(["no_such_dataset"])


@pytest.mark.slow
def test_the_whole_sae_probes_corpus_splits_in_well_under_a_minute_of_cpu():
    pytest.importorskip("sae_probes", reason="needs sae-probes (the probes extra)")
    texts, sources = sae_probes_texts()
    assert len(texts) > 300_000
    tick = time.process_time()
    split = split_documents(texts, sources=sources, eval_fraction=0.1, seed=0)
    cpu = time.process_time() - tick
    assert cpu < 45, cpu
    assert split.stats["distinct"] > 200_000 and split.stats["near_duplicates"] > 0
    assert not {normalize(t) for t in split.train} & {normalize(t) for t in split.eval}
