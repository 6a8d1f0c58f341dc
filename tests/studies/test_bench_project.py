"""``tl-glp bench project`` at tiny sizes on the testbed: its tables hold what they say, and ``out``
writes them for ``docs/gen_results.py``."""

import json

import pytest

from tl_glp.cli import main
from tl_glp.studies.bench.manifold import bench_project


@pytest.mark.slow  # about 50 s on 2 cores: the testbed's 2000 training documents are collected
def test_bench_project_writes_its_tables_and_the_reference_agrees_with_itself(tmp_path, capsys):
    out = tmp_path / "project"
    result = bench_project(
        methods=("reference", "euler:2"),
        prior_steps=5,
        n_eval_docs=6,
        n_prompts=2,
        strengths=(0.5,),
        out=out,
    )
    table = result["projection"].set_index("method")
    # the reference is 20 Euler steps from t 0.5: 10 evaluations; euler:2 two; nothing differs from itself
    assert table.loc["reference", "evals"] == 10 and table.loc["euler:2", "evals"] == 2
    assert table.loc["reference", "dist_to_ref_rel"] == 0 and table.loc["euler:2", "dist_to_ref_rel"] > 0
    assert table.loc["reference", "paired_diff_vs_ref"] == 0
    assert (table.ci_lo <= table.delta_lm_loss).all() and (table.delta_lm_loss <= table.ci_hi).all()
    assert list(table.index) == ["reference", "euler:2", "adaptive(fpr=0.1)"]
    steering = result["steering"]
    assert {"reference", "euler:2", "adaptive", "plain", "none"} <= set(steering.option)
    assert steering.loc[steering.option == "euler:2", "nll_minus_ref_ci"].notna().all()
    written = {p.name for p in out.iterdir()}
    assert written == {"projection.csv", "steering.csv", "numbers.json"}  # no temp file left behind
    numbers = json.loads((out / "numbers.json").read_text())
    assert numbers["prompts"] == 2 and numbers["strengths"] == [0.5] and numbers["seconds"] > 0
    assert "wrote" in capsys.readouterr().out


def test_bench_project_takes_an_out_folder(capsys):
    assert main(["bench", "project", "--help"]) == 0
    assert "--out" in capsys.readouterr().out
