"""``tl-glp bench packing`` on a tiny model: every figure is there, and packing wastes no position where padding does."""

import pytest
from conftest import random_sentences

from tl_glp.cli import main
from tl_glp.studies.bench.packing import bench_packing


def test_bench_packing_reports_side_by_side_rates(tiny_model, capsys):
    texts = random_sentences(600, seed=21, length=12)
    out = bench_packing(tiny_model, texts, context_size=32, forward_batch=4, batch_size=32, batches=3, rounds=1)
    keys = {"forward_tokens_per_s", "packed_rows_per_s", "padded_rows_per_s", "ratio_packed", "ratio_padded"}
    assert keys <= set(out) and all(out[k] > 0 for k in keys)
    assert 0.8 < out["packed_real_token_share"] < 1 and out["padded_real_token_share"] < out["packed_real_token_share"]
    assert 0 < out["padded_real_token_share"] < 0.9  # short sentences padded to the batch's longest
    assert "ratio_packed" in capsys.readouterr().out
    with pytest.raises(ValueError, match="more texts"):
        bench_packing(tiny_model, texts[:20], context_size=32, forward_batch=4, batch_size=32, batches=40, rounds=1)


def test_bench_packing_is_a_command_with_a_model_option(capsys):
    assert main(["bench", "packing", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--model" in text and "--texts" in text and "--rounds" in text
