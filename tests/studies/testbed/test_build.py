"""The build is deterministic and writes a manifest that describes its weights."""

from tl_glp.cli import main
from tl_glp.core import _io
from tl_glp.studies.testbed.build import build
from tl_glp.studies.testbed.lm import LMConfig

TINY = LMConfig(
    n_layers=3, d_model=32, n_heads=2, d_mlp=64, n_ctx=32, train_docs=200, steps=6, batch_size=4, eval_docs=20
)


def test_two_builds_give_bit_identical_weights(tmp_path):
    first = build(tmp_path / "a", config=TINY, seed=3, measure=False, progress=False)
    second = build(tmp_path / "b", config=TINY, seed=3, measure=False, progress=False)
    assert first["sha256"] == second["sha256"] == _io.sha256_file(tmp_path / "a" / "model.safetensors")
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    other = build(tmp_path / "c", config=TINY, seed=4, measure=False, progress=False)
    assert other["sha256"] != first["sha256"]


def test_build_measures_quality_and_records_how_to_rebuild(tmp_path):
    manifest = build(tmp_path, config=TINY, seed=1, steps=4, quality_docs=30, progress=False)
    assert manifest["command"] == f"tl-glp testbed build --seed 1 --steps 4 --out {tmp_path}"
    assert manifest["config"]["steps"] == 4 and manifest["config"]["seed"] == 1
    assert _io.read_json(tmp_path / "manifest.json") == manifest
    q = manifest["quality"]
    assert {
        "auc_sentiment",
        "auc_tense",
        "auc_topic",
        "probe_min",
        "lm_loss",
        "bayes_loss",
        "oracle_auc_sentiment",
    } <= set(q)
    assert q["passes"] == 0.0  # four steps teach nothing


def test_cli_testbed_quality_prints_the_table(capsys):
    assert main(["testbed", "quality", "--docs", "60"]) == 0
    out = capsys.readouterr().out
    assert "auc_sentiment" in out and "probe_min" in out and "all bars met" in out
