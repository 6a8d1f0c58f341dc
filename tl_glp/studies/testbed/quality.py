"""How well the testbed model represents the latents the demo steers and probes.

:func:`measure_quality` scores a model on fresh held-out documents in three ways:

1. **Next-word AUCs.** At every *slot* whose next word the grammar draws from a latent-dependent
   word class, the model's own next-word distribution gives a score, and ROC-AUC measures how
   well that score separates the documents' latent values:

   - ``sentiment``: slots whose next word may be a sentiment adjective (after a copula, after a
     determiner, after the "not" of a judgement). Score ``log P(POSITIVE) - log P(NEGATIVE)``;
     label: the document's current sentiment. After "not" the grammar draws the *opposite*
     polarity ("was not happy" in a negative document), so there the score is negated: it still
     reads "how positive the model believes the document is".
   - ``tense``: verb/copula slots (those whose next word may be a copula). Score
     ``log P(past forms) - log P(present forms)`` (present forms include the plural base form).
   - ``topic``: noun and verb slots (whose next word may be a topic-specific noun or verb). One
     versus rest per topic: score ``log P(topic's words) - log P(other topics' words)``, label
     ``topic == t``. ``topic`` is the *minimum* over the topics (the bar must hold for each);
     ``topic_mean`` and ``topic_<name>`` are reported too.

2. **Probe AUCs**: an L2 logistic regression on the last-token residual at
   :data:`~tl_glp.studies.testbed.MIDDLE_HOOK` for each probing dataset of
   :func:`~tl_glp.studies.testbed.datasets.build_datasets`, trained on 70% and scored on the held-out 30%.

3. **Loss**: the model's next-word loss, the generator's entropy given the latents (a loose
   floor: the generator knows the latents) and the Bayes-optimal loss of :func:`oracle_logprobs`
   (the tight floor: a model that knows the grammar and infers the latents from the words).

The same AUC code scores any next-word distribution, so the ceilings are exact: the Bayes oracle's
AUCs are the best any model can reach on this language, and the generator with its true latents
scores 1.

Example:
    >>> from tl_glp.studies.testbed.language import Language
    >>> lang = Language()
    >>> docs = list(lang.documents(60, seed=5))
    >>> oracle = next_word_aucs(lang, docs, [oracle_logprobs(lang, d) for d in docs])
    >>> truth = next_word_aucs(lang, docs, [true_logprobs(lang, d) for d in docs])
    >>> oracle["sentiment"] > 0.9, truth["sentiment"]
    (True, 1.0)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tl_glp.probing.extract import last_token_activations
from tl_glp.studies.testbed import MIDDLE_HOOK
from tl_glp.studies.testbed import language as _language
from tl_glp.studies.testbed.datasets import build_datasets
from tl_glp.studies.testbed.language import (
    END,
    NEGATIVE,
    NOUNS,
    POSITIVE,
    SHARED_VERBS,
    TOPICS,
    VERBS,
    Document,
    Language,
)
from tl_glp.studies.testbed.lm import encode_documents
from tl_glp.training.metrics import roc_auc

BARS = {"sentiment": 0.9, "tense": 0.9, "topic": 0.9, "probe": 0.95}
"""The quality bars of the testbed: next-word AUCs >= 0.9 and middle-layer probe AUCs >= 0.95."""

COPULAS = ("was", "were", "is", "are")
PAST = ("was", "were", "did") + tuple(v[2] for vs in list(VERBS.values()) + [SHARED_VERBS] for v in vs)
PRESENT = ("is", "are", "does", "do") + tuple(
    f for vs in list(VERBS.values()) + [SHARED_VERBS] for v in vs for f in v[:2]
)


def topic_words(topic: str) -> tuple[str, ...]:
    """The nouns and verb forms that only ``topic`` uses."""
    return tuple(NOUNS[topic]) + tuple(NOUNS[topic].values()) + tuple(f for v in VERBS[topic] for f in v)


# ---------------------------------------------------------------------------------- distributions
def _sentences(doc: Document) -> list[tuple[int, int]]:
    """``(start, end)`` word spans of the sentences of ``doc`` (end exclusive, "." included)."""
    spans, start = [], 0
    for i, w in enumerate(doc.words):
        if w == END:
            spans.append((start, i + 1))
            start = i + 1
    if start < len(doc.words):
        spans.append((start, len(doc.words)))
    return spans


def _forced(
    language: Language, state: dict[str, str], last_number: str | None, words: Sequence[str]
) -> list[dict[str, float]]:
    """The distributions the grammar draws each of ``words`` from, given the latents in ``state``.

    Stops early (a shorter list) at the first word the grammar cannot produce under ``state``."""
    steps = language._sentence(state, last_number)
    dist = next(steps)
    out = [dist]
    for w in words[:-1]:
        if w not in dist:
            return out
        try:
            dist = steps.send(w)
        except StopIteration:
            return out
        out.append(dist)
    return out


def _vector(dist: dict[str, float], index: dict[str, int]) -> np.ndarray:
    v = np.zeros(len(index))
    for w, p in dist.items():
        v[index[w]] = p
    return v


def true_distributions(language: Language, doc: Document) -> list[dict[str, float]]:
    """For every word of ``doc``, the distribution the generator drew it from (true latents known)."""
    out: list[dict[str, float]] = []
    last_number = None
    for start, end in _sentences(doc):
        state = {k: doc.latents[k][start] for k in ("topic", "sentiment", "tense")}
        out += _forced(language, state, last_number, doc.words[start:end])
        last_number = doc.latents["number"][start]
    return out


def true_logprobs(language: Language, doc: Document) -> np.ndarray:
    """``[n_words, vocab]`` next-word log-probabilities of the generator given the true latents."""
    index = {w: i for i, w in enumerate(language.vocabulary)}
    with np.errstate(divide="ignore"):
        return np.log(np.stack([_vector(d, index) for d in true_distributions(language, doc)]))


def _hypotheses(language: Language) -> tuple[list[tuple[str, str, str, int, int | None]], np.ndarray]:
    """Every document-level latent setting ``(topic, first sentiment, tense, n_sentences, flip_at)``
    with its prior probability, as :meth:`Language.sample` draws them."""
    hyps, prior = [], []
    n_range = range(language.min_sentences, language.max_sentences + 1)
    for topic in TOPICS:
        for s0 in ("positive", "negative"):
            for tense in ("past", "present"):
                for n in n_range:
                    flips = (
                        [(None, 1.0 - _language.P_FLIP)] + [(k, _language.P_FLIP / (n - 1)) for k in range(1, n)]
                        if n > 1
                        else [(None, 1.0)]
                    )
                    for flip, p in flips:
                        hyps.append((topic, s0, tense, n, flip))
                        prior.append(p / (len(TOPICS) * 4 * len(n_range)))
    return hyps, np.array(prior)


def oracle_logprobs(language: Language, doc: Document) -> np.ndarray:
    """``[n_words, vocab]`` Bayes-optimal next-word log-probabilities: the grammar is known, the
    latents are not; each word's distribution averages the grammar's over the posterior of the
    document-level latents given the words before it."""
    index = {w: i for i, w in enumerate(language.vocabulary)}
    hyps, prior = _hypotheses(language)
    combos = [(t, s, te) for t in TOPICS for s in ("positive", "negative") for te in ("past", "present")]
    combo_of = {c: i for i, c in enumerate(combos)}
    flip = {"positive": "negative", "negative": "positive"}
    log_post = np.log(prior)  # log P(h, words so far), updated word by word
    rows: list[np.ndarray] = []
    last_number = None
    for j, (start, end) in enumerate(_sentences(doc)):
        words = doc.words[start:end]
        alive = np.array([h[3] > j for h in hyps])  # a hypothesis with fewer sentences cannot continue
        log_post = np.where(alive, log_post, -np.inf)
        sentiment_now = [h[1] if h[4] is None or j < h[4] else flip[h[1]] for h in hyps]
        combo_idx = np.array([combo_of[(h[0], s, h[2])] for h, s in zip(hyps, sentiment_now)])
        # next-word distributions of each latent combination for this sentence: [combo, word, vocab]
        dists = np.zeros((len(combos), len(words), len(index)))
        for c, (t, s, te) in enumerate(combos):
            for k, d in enumerate(_forced(language, {"topic": t, "sentiment": s, "tense": te}, last_number, words)):
                dists[c, k] = _vector(d, index)
        for k, w in enumerate(words):
            weights = np.exp(log_post - log_post.max())
            mix = np.bincount(combo_idx, weights=weights, minlength=len(combos)) @ dists[:, k] / weights.sum()
            with np.errstate(divide="ignore"):
                rows.append(np.log(mix))
                log_post = log_post + np.log(dists[combo_idx, k, index[w]])
        last_number = doc.latents["number"][start]
    return np.stack(rows)


def model_logprobs(model: Any, docs: Sequence[Document], batch_size: int = 64) -> list[np.ndarray]:
    """``[n_words, vocab]`` per document: the model's next-word log-probabilities over the
    language's words (the words that fit in its context; special tokens dropped)."""

    tokenizer = model.tokenizer
    n_ctx = model.cfg.n_ctx
    vocab = tokenizer.get_vocab()
    words = [w for w in vocab if w not in tokenizer.all_special_tokens]
    ids = torch.tensor([vocab[w] for w in sorted(words, key=vocab.get)])
    out = []
    with torch.inference_mode():
        for b in range(0, len(docs), batch_size):
            chunk = list(docs[b : b + batch_size])
            tokens, _ = encode_documents(chunk, tokenizer, n_ctx)
            logp = model(tokens).float().log_softmax(-1)[..., ids]  # position i predicts word i
            for i, doc in enumerate(chunk):
                out.append(logp[i, : min(len(doc.words), n_ctx - 1)].double().numpy())
    return out


# ---------------------------------------------------------------------------------- scores
def _lse(logp: np.ndarray, cols: list[int]) -> float:
    return float(np.logaddexp.reduce(logp[cols]))


def next_word_aucs(language: Language, docs: Sequence[Document], logprobs: Sequence[np.ndarray]) -> dict[str, float]:
    """ROC-AUCs of the latents from next-word distributions at their slots (see the module doc).

    ``logprobs[d]`` is ``[n, vocab]`` (``n <= len(docs[d].words)``; row ``i`` predicts word ``i``),
    columns in the order of ``language.vocabulary``."""
    col = {w: i for i, w in enumerate(language.vocabulary)}
    cols = lambda ws: [col[w] for w in ws]  # noqa: E731
    pos, neg, past, present = cols(POSITIVE), cols(NEGATIVE), cols(PAST), cols(PRESENT)
    own = {t: cols(topic_words(t)) for t in TOPICS}
    rest = {t: [c for u in TOPICS if u != t for c in own[u]] for t in TOPICS}
    sentiment_adjs, topical, copulas = (
        set(POSITIVE + NEGATIVE),
        {w for t in TOPICS for w in topic_words(t)},
        set(COPULAS),
    )
    rows: dict[str, list[tuple[bool, float]]] = {"sentiment": [], "tense": [], **{f"topic_{t}": [] for t in TOPICS}}
    for doc, logp in zip(docs, logprobs):
        for i, dist in enumerate(true_distributions(language, doc)[: len(logp)]):
            lp = logp[i]
            if sentiment_adjs & dist.keys():
                sign = -1.0 if i > 0 and doc.words[i - 1] == "not" else 1.0  # "not" + the opposite polarity
                rows["sentiment"].append(
                    (doc.latents["sentiment"][i] == "positive", sign * (_lse(lp, pos) - _lse(lp, neg)))
                )
            if copulas & dist.keys():
                rows["tense"].append((doc.latents["tense"][i] == "past", _lse(lp, past) - _lse(lp, present)))
            if topical & dist.keys():
                for t in TOPICS:
                    rows[f"topic_{t}"].append((doc.latents["topic"][i] == t, _lse(lp, own[t]) - _lse(lp, rest[t])))
    out = {}
    for name, pairs in rows.items():
        labels, scores = zip(*pairs)
        scores = np.nan_to_num(np.array(scores), nan=0.0, posinf=1e9, neginf=-1e9)
        out[name] = roc_auc(np.array(labels), scores)
    topics = [out[f"topic_{t}"] for t in TOPICS]
    out["topic"], out["topic_mean"] = min(topics), float(np.mean(topics))
    return out


def mean_nll(docs: Sequence[Document], logprobs: Sequence[np.ndarray], language: Language) -> float:
    """Mean negative log-likelihood (nats) of the documents' words under ``logprobs``."""
    col = {w: i for i, w in enumerate(language.vocabulary)}
    total = [-lp[i, col[w]] for doc, lp in zip(docs, logprobs) for i, w in enumerate(doc.words[: len(lp)])]
    return float(np.mean(total))


def probe_aucs(
    model: Any, datasets: dict[str, Any], hook: str, seed: int = 0, train_share: float = 0.7, l2: float = 1e-3
) -> dict[str, float]:
    """Held-out ROC-AUC of an L2 logistic regression on ``hook``'s last-token activations, per
    dataset (``DataFrame(prompt, target)`` with targets ``yes``/``no``)."""

    out = {}
    for name, frame in datasets.items():
        x = last_token_activations(model, list(frame["prompt"]), [hook])[hook].double()
        y = torch.tensor((frame["target"] == "yes").to_numpy(), dtype=torch.float64)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        cut = int(train_share * len(y))
        tr, te = perm[:cut], perm[cut:]
        mu, sd = x[tr].mean(0), x[tr].std(0).clamp_min(1e-6)
        xs = (x - mu) / sd
        w = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            logits = xs[tr] @ w[:-1] + w[-1]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[tr]) + l2 * w[:-1].square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            out[name] = roc_auc(y[te].numpy(), (xs[te] @ w[:-1] + w[-1]).numpy())
    return out


# ---------------------------------------------------------------------------------- entry point
def measure_quality(
    testbed: Any, n_docs: int = 400, seed: int = 12_345, oracle: bool = False, probe_rows: int | None = None
) -> dict[str, float]:
    """Every quality number of ``testbed`` (a :class:`~tl_glp.studies.testbed.Testbed`) on fresh documents.

    Keys: ``auc_sentiment``, ``auc_tense``, ``auc_topic`` (min over topics), ``auc_topic_mean``,
    ``auc_topic_<t>``; ``probe_<dataset>`` and ``probe_min``; ``lm_loss``, ``entropy_floor`` (given
    the latents), ``bayes_loss`` (given the words only, when ``oracle``); with ``oracle`` also the
    Bayes ceilings ``oracle_auc_*``; ``passes`` is 1.0 when every bar of :data:`BARS` holds.
    ``seed`` picks the documents (keep it away from the training seeds); ``probe_rows`` the size
    of each probing dataset (default: the testbed's own datasets).
    """

    start = time.perf_counter()
    language, model = testbed.language, testbed.model
    docs = list(language.documents(n_docs, seed=seed))
    logps = model_logprobs(model, docs)
    out = {f"auc_{k}": v for k, v in next_word_aucs(language, docs, logps).items()}
    out["lm_loss"] = mean_nll(docs, logps, language)
    out["entropy_floor"] = float(-np.mean([lp for d, l in zip(docs, logps) for lp in d.logprobs[: len(l)]]))
    if oracle:
        bayes = [oracle_logprobs(language, d)[: len(l)] for d, l in zip(docs, logps)]
        out.update({f"oracle_auc_{k}": v for k, v in next_word_aucs(language, docs, bayes).items()})
        out["bayes_loss"] = mean_nll(docs, bayes, language)
    datasets = testbed.datasets if probe_rows is None else build_datasets(language, n=probe_rows, seed=seed)
    probes = probe_aucs(model, datasets, MIDDLE_HOOK, seed=seed)
    out.update({f"probe_{k}": v for k, v in probes.items()})
    out["probe_min"] = min(probes.values())
    out["passes"] = float(
        all(out[f"auc_{k}"] >= BARS[k] for k in ("sentiment", "tense", "topic")) and out["probe_min"] >= BARS["probe"]
    )
    out["quality_seconds"] = time.perf_counter() - start
    return out


def format_quality(q: dict[str, float]) -> str:
    """A plain-text table of :func:`measure_quality`'s numbers with the bars they must meet."""
    lines = [f"{'measure':<24}{'value':>9}{'bar':>8}{'oracle':>9}"]
    for key, value in q.items():
        if key.startswith("oracle_") or key in ("passes",):
            continue
        kind = key.removeprefix("auc_").removeprefix("probe_")
        bar = BARS.get(kind) if key.startswith("auc_") else BARS["probe"] if key.startswith("probe_") else None
        oracle = q.get(f"oracle_{key}")
        lines.append(
            f"{key:<24}{value:>9.4f}{'' if bar is None else f'>={bar:.2f}':>8}{'' if oracle is None else f'{oracle:.4f}':>9}"
        )
    lines.append(f"{'all bars met':<24}{'yes' if q.get('passes') else 'NO':>9}")
    return "\n".join(lines)
