"""measure_quality is right: exact ceilings, a planted perfect model, a random model, position alignment."""

import numpy as np
import pytest
import torch

from tl_glp.studies.testbed.language import Language
from tl_glp.studies.testbed.quality import (
    BARS,
    mean_nll,
    model_logprobs,
    next_word_aucs,
    oracle_logprobs,
    true_logprobs,
)
from tl_glp.studies.testbed.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def language():
    return Language()


@pytest.fixture(scope="module")
def docs(language):
    return list(language.documents(150, seed=31))


def test_the_generator_with_its_true_latents_separates_every_latent_perfectly(language, docs):
    aucs = next_word_aucs(language, docs, [true_logprobs(language, d) for d in docs])
    assert all(v == 1.0 for v in aucs.values()), aucs


def test_the_bayes_oracle_clears_the_bars_and_sits_between_truth_and_chance(language, docs):
    truth = [true_logprobs(language, d) for d in docs]
    oracle = [oracle_logprobs(language, d) for d in docs]
    for row in oracle:  # proper next-word distributions
        assert np.allclose(np.exp(row).sum(-1), 1.0)
    aucs = next_word_aucs(language, docs, oracle)
    assert all(aucs[k] >= BARS[k] + 0.03 for k in ("sentiment", "tense", "topic")), aucs
    assert all(v < 1.0 for v in aucs.values())
    # the oracle does not know the latents, so its loss lies above the generator's entropy given them
    assert mean_nll(docs, truth, language) < mean_nll(docs, oracle, language) < mean_nll(docs, truth, language) + 0.3
    # the generator's recorded log-probabilities are the true distributions'
    col = {w: i for i, w in enumerate(language.vocabulary)}
    assert np.allclose(
        [t[i, col[w]] for d, t in zip(docs, truth) for i, w in enumerate(d.words)],
        [lp for d in docs for lp in d.logprobs],
    )


def test_a_random_model_scores_chance(language, docs):
    rng = np.random.default_rng(0)
    noise = [rng.normal(size=(len(d.words), len(language.vocabulary))) for d in docs]
    aucs = next_word_aucs(language, docs, noise)
    assert all(abs(v - 0.5) < 0.08 for k, v in aucs.items() if k != "topic"), aucs


class _Cheat(torch.nn.Module):
    """A planted 'model' whose logits at position k name token k + 1: it reads the answer."""

    def __init__(self, tokenizer, n_ctx: int = 64):
        super().__init__()
        self.tokenizer, self.cfg = tokenizer, type("Cfg", (), {"n_ctx": n_ctx})()

    def forward(self, tokens):
        logits = torch.full((*tokens.shape, self.tokenizer.vocab_size), -30.0)
        logits[:, :-1].scatter_(-1, tokens[:, 1:, None], 30.0)
        return logits


def test_model_logprobs_align_position_i_with_word_i(language, docs):
    cheat = _Cheat(build_tokenizer(language.vocabulary))
    logps = model_logprobs(cheat, docs[:20], batch_size=7)
    assert [len(lp) for lp in logps] == [min(len(d.words), 63) for d in docs[:20]]
    assert mean_nll(docs[:20], logps, language) < 1e-6
    col = {w: i for i, w in enumerate(language.vocabulary)}
    assert all(list(lp.argmax(-1)) == [col[w] for w in d.words[: len(lp)]] for d, lp in zip(docs, logps))
