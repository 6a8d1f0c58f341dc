"""``tl-glp bench streaming --quick --out DIR``: its figures are consistent with each other, and the folder it
writes is what ``docs/gen_results.py`` renders."""

import json
import sys
from pathlib import Path

import pytest

from tl_glp.cli import main

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.slow  # about a minute on 2 cores: six process spawns and two fresh processes for peak RSS
def test_bench_streaming_writes_figures_that_hold_together(tmp_path, monkeypatch, capsys):
    out = tmp_path / "stream"
    assert main(["bench", "streaming", "--quick", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"numbers.json"}  # no temp file left behind
    numbers = json.loads((out / "numbers.json").read_text())
    f = numbers["figures"]
    # the serial bound is the harmonic combination of the two parts, and every ratio is its two rates' ratio
    bound = 1 / (1 / f["forward_rows_per_s"] + 1 / f["train_rows_per_s"])
    assert f["serial_bound_rows_per_s"] == pytest.approx(bound)
    assert f["ratio_stream_vs_bound"] == pytest.approx(f["stream_rows_per_s"] / bound)
    assert f["ratio_stream_vs_collect_then_train"] == pytest.approx(
        f["stream_rows_per_s"] / f["collect_then_train_rows_per_s"]
    )
    assert f["ratio_train_2rank_vs_1"] == pytest.approx(f["train_2rank_rows_per_s"] / f["train_1rank_rows_per_s"])
    assert f["rss_ratio_long_vs_short"] == pytest.approx(
        f["stream_peak_rss_mb_400k_rows"] / f["stream_peak_rss_mb_100k_rows"]
    )
    assert numbers["rows"] == 8 * 1024 and numbers["seconds"] > 0 and "wrote" in capsys.readouterr().out

    sys.path.insert(0, str(DOCS))
    import gen_results

    monkeypatch.setattr(gen_results, "RESULTS", tmp_path)
    (out / "run.json").write_text(
        json.dumps({"command": "c", "seed": 0, "sizes": "s", "commit": "0" * 7, "machine": "m"})
    )
    text = gen_results.regenerate("<!-- generated: streaming_bench stream -->\n<!-- end generated -->")
    assert f"**{f['stream_rows_per_s']:,.0f}**" in text and "at 100k rows" in text and "at 400k rows" in text


def test_bench_streaming_takes_an_out_folder(capsys):
    assert main(["bench", "streaming", "--help"]) == 0
    assert "--out" in capsys.readouterr().out
