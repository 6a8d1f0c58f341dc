"""The README and the documentation pages stay true: their code runs, their tables come from run files,
the site's generated parts cover the package.

Convention (docs/writing-docs.md): every fenced ``python`` block of ``README.md`` and ``docs/**/*.md``
runs, in order, one namespace per page, in a scratch folder; a block that cannot run offline (or takes
minutes) says so on the line just above it with ``<!-- not run: REASON -->``. Shell blocks (``bash``,
``sh``, ``console``) are never run here, so each needs that line. ``text`` blocks are output or pictures,
not code. A page whose blocks take over ~20 s on 2 cores carries ``<!-- docs-test: slow -->``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_hooks"))

CODE = {"python", "py", "bash", "sh", "shell", "console"}
SHELL = {"bash", "sh", "shell", "console"}
NOT_RUN = re.compile(r"^<!--\s*not run:(.*?)-->\s*$")
SLOW = "<!-- docs-test: slow -->"


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    not_run: str | None  # the reason, when marked


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page`` (also indented ones, e.g. inside an admonition), with their marks."""
    lines = page.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        stripped = lines[i].lstrip()
        if stripped.startswith("```"):
            indent = len(lines[i]) - len(stripped)
            lang = stripped[3:].strip().split(" ")[0].lower()
            start, i = i, i + 1
            while i < len(lines) and not lines[i].lstrip().startswith("```"):
                i += 1
            code = "\n".join(line[indent:] for line in lines[start + 1 : i])
            prev = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            mark = NOT_RUN.match(prev)
            found.append(Block(page, start + 1, lang, code, mark.group(1).strip() if mark else None))
        i += 1
    return found


def runnable_pages() -> list[Path]:
    return [p for p in pages() if any(b.lang in {"python", "py"} and b.not_run is None for b in blocks(p))]


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_every_code_block_runs_or_says_why_not():
    problems = []
    for page in pages():
        for b in blocks(page):
            where = f"{page_id(page)}:{b.line}"
            if b.lang not in CODE:
                continue
            if b.not_run is not None and not b.not_run:
                problems.append(f"{where}: `<!-- not run: -->` needs a reason")
            if b.lang in SHELL and b.not_run is None:
                problems.append(f"{where}: shell blocks are not run by the tests; mark it `<!-- not run: REASON -->`")
    assert not problems, "\n".join(problems)


def test_the_block_parser_reads_marks_and_indented_fences(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "text\n\n<!-- not run: needs the Hub -->\n```python\nx = 1\n```\n\n```python\ny = 2\n```\n"
        "!!! note\n    ```bash\n    echo hi\n    ```\n```text\nout\n```\n"
    )
    got = [(b.line, b.lang, b.code, b.not_run) for b in blocks(page)]
    assert got == [
        (4, "python", "x = 1", "needs the Hub"),
        (8, "python", "y = 2", None),
        (12, "bash", "echo hi", None),
        (15, "text", "out", None),
    ]


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(p, id=page_id(p), marks=[pytest.mark.slow] if SLOW in p.read_text().splitlines() else [])
        for p in runnable_pages()
    ],
)
def test_page_code_runs(page, testbed, tmp_path, monkeypatch):
    """Every unmarked python block of the page, in order, in one namespace, in a scratch folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "__docs__"}
    for b in blocks(page):
        if b.lang in {"python", "py"} and b.not_run is None:
            exec(compile(b.code, f"{page_id(page)}:{b.line}", "exec"), namespace)


def test_readme_quickstart_is_short_and_defines_what_it_uses():
    readme = ROOT / "README.md"
    runnable = [b for b in blocks(readme) if b.lang == "python" and b.not_run is None]
    assert runnable, "the README's quickstart must be a runnable python block"
    quickstart = runnable[0].code
    assert len(quickstart.splitlines()) <= 20
    assert "direction =" in quickstart and "tl_glp.steer" in quickstart


def test_the_docs_quickstart_is_the_readmes():
    """Getting started shows the README's quickstart without running it twice: the two must not drift."""
    readme = [b for b in blocks(ROOT / "README.md") if b.lang == "python" and b.not_run is None][0].code
    assert readme in [b.code for b in blocks(DOCS / "getting-started.md") if b.lang == "python"]


def test_generated_results_match_the_run_files():
    """Every table between `<!-- generated: ... -->` markers is what docs/gen_results.py renders now."""
    out = subprocess.run(
        [sys.executable, str(DOCS / "gen_results.py"), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_page_is_in_the_nav():
    import yaml

    cfg = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def walk(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from walk(value)

    import mkdocs_hooks

    in_nav = set(walk(mkdocs_hooks.on_config(cfg)["nav"]))  # with the API reference's entries the hook adds
    generated = {f"api/{page}.md" for page in mkdocs_hooks.api_pages()}
    assert generated <= in_nav
    in_nav -= generated
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if not p.relative_to(DOCS).parts[0].startswith("_")}
    on_disk -= {p for p in on_disk if p.startswith("results/")}  # the run folders' notes, excluded from the site
    assert on_disk - in_nav == set(), f"pages missing from mkdocs.yml's nav: {sorted(on_disk - in_nav)}"
    assert in_nav - on_disk == set(), f"nav entries without a page: {sorted(in_nav - on_disk)}"


def test_api_reference_covers_every_public_module():
    import mkdocs_hooks

    listed = [m for modules in mkdocs_hooks.api_pages().values() for m in modules]
    assert len(listed) == len(set(listed))
    for expected in ["tl_glp.core.prior", "tl_glp.steering.projectors", "tl_glp.studies.demo.settings"]:
        assert expected in listed
    assert not [m for m in listed if m.startswith("tl_glp.cli") or "._" in m]
    assert list(mkdocs_hooks.api_pages())[0] == "tl_glp.core"  # the layers, bottom up


def test_cli_reference_holds_every_commands_help():
    import mkdocs_hooks

    from tl_glp.cli import COMMANDS

    text = mkdocs_hooks.cli_reference()
    for name in COMMANDS:
        assert f"## `tl-glp {name}`" in text
    assert "usage: tl-glp demo" in text and "--prior-steps" in text
    assert "\x1b[" not in text, "no terminal colour codes in the page"


def test_docstring_doctests_become_fenced_blocks():
    from griffe_doctests import fence_doctests

    text = "Sum.\n\nExample:\n    >>> [1] + [2]\n    [1, 2]\n\nSee :class:`~tl_glp.GenerativePrior`."
    assert fence_doctests(text) == (
        "Sum.\n\nExample:\n    ```pycon\n    >>> [1] + [2]\n    [1, 2]\n    ```\n\nSee `tl_glp.GenerativePrior`."
    )


def fake_run(folder: Path, seed: int = 0, delta: float = 0.0123) -> Path:
    """A run folder with the files the demo writes, holding numbers this test chose."""
    import json

    import pandas as pd

    folder.mkdir(parents=True)
    n = {
        "seed": seed,
        "eval_samples": 100,
        "seconds": 61.0,
        "lm_eval_docs": 5,
        "lm_eval_tokens": 50,
        **{
            f"fd_{k}": v
            for k, v in {"prior": 30.0, "lower_bound": 3.0, "held_out_halves": 5.0, "gaussian": 6.0}.items()
        },
        **{
            f"fd_{k}_at_n": v
            for k, v in {"prior": 50.0, "lower_bound": 19.0, "held_out_halves": 20.0, "gaussian": 22.0}.items()
        },
        "c2st_auc_prior": 0.55,
        "c2st_auc_held_out": 0.5,
        "c2st_auc_gaussian": 1.0,
        "delta_lm_loss_prior": delta,
        "delta_lm_loss_prior_ci": [delta - 0.001, delta + 0.001],
        "delta_lm_loss_sae": 0.0,
        "delta_lm_loss_sae_ci": [-0.001, 0.001],
        "delta_lm_loss_prior_minus_sae": delta,
        "delta_lm_loss_prior_minus_sae_ci": [delta - 0.001, delta + 0.001],
        "map_gain_grammatical_prior_last": {"gain": -0.5, "ci": [-0.7, -0.3], "reason": ""},
        "map_gain_nll_prior_last": {"gain": -2.0, "ci": [-3.0, -1.0], "reason": ""},
        "map_plain_breaks_at": [1.5, 2.0],
    }
    (folder / "numbers.json").write_text(json.dumps(n))
    rows = [("d1", "meta", 0.9), ("d1", "raw", 0.8), ("d2", "meta", 0.8), ("d2", "raw", 0.6)]
    pd.DataFrame(
        [{"dataset": d, "source": s, "feature": 0, "val_auc": a, "test_auc": a, "control": False} for d, s, a in rows]
    ).to_csv(folder / "probing.csv", index=False)
    pd.DataFrame({"condition": ["random"], "r": [0.1], "log_prob": [0.9], "denoising": [0.7]}).to_csv(
        folder / "off_manifold.csv", index=False
    )
    info = {"command": "tl-glp demo", "seed": seed, "sizes": "default sizes", "commit": "abcdef0123", "machine": "m"}
    (folder / "run.json").write_text(json.dumps(info))
    return folder


def test_gen_results_renders_what_the_files_hold_and_notices_a_stale_table(tmp_path, monkeypatch):
    import json

    sys.path.insert(0, str(DOCS))
    import gen_results

    monkeypatch.setattr(gen_results, "RESULTS", tmp_path)
    fake_run(tmp_path / "run-a")
    page = "intro\n<!-- generated: verdicts run-a -->\nold text\n<!-- end generated -->\nafter\n"
    new = gen_results.regenerate(page)
    assert new.startswith("intro\n<!-- generated: verdicts run-a -->\n") and new.endswith(
        "<!-- end generated -->\nafter\n"
    )
    assert "+0.0123 [+0.0113, +0.0133]" in new  # delta LM loss prior - SAE, as the file holds it
    assert "the prior costs more LM loss than the SAE" in new  # the demo's own verdict rule
    # paired over the two datasets: differences 0.1 and 0.2, Student-t CI with 1 degree of freedom
    assert "| 1-D probing: meta-neurons - raw (test AUC) | +0.150 [-0.485, +0.785] | no clear difference" in new
    assert "commit abcdef0" in new
    assert gen_results.regenerate(new) == new  # idempotent: --check passes on a fresh page
    fake_run(tmp_path / "run-b", seed=1, delta=0.5)
    both = gen_results.regenerate("<!-- generated: demo_table run-a,run-b -->\n<!-- end generated -->")
    assert "| figure | seed 0, default sizes | seed 1, default sizes |" in both and "+0.5000" in both
    assert "30.0 / 3.0 / 5.0 / 6.0" in both and "N 100: 50.0 / 19.0 / 20.0 / 22.0" in both
    m = gen_results.regenerate("<!-- generated: steering_map run-a -->\n<!-- end generated -->")
    assert "| prior | last | -0.50 [-0.70, -0.30] | -2.00 [-3.00, -1.00] |" in m and "r in {1.5, 2}" in m
    assert "runs below / above plain" not in m  # one run: nothing to tally
    n_b = json.loads((tmp_path / "run-b" / "numbers.json").read_text())
    n_b["map_gain_grammatical_prior_last"] = {"gain": 0.1, "ci": [-0.1, 0.3], "reason": ""}  # holds 0 in run b
    (tmp_path / "run-b" / "numbers.json").write_text(json.dumps(n_b))
    two = gen_results.regenerate("<!-- generated: steering_map run-a,run-b -->\n<!-- end generated -->")
    assert "| grammatical: runs below / above plain | NLL: runs below / above plain |" in two
    assert "| +0.10 [-0.10, +0.30] |" in two and "| 1 / 0 of 2 | 2 / 0 of 2 |" in two
    import pandas as pd

    pd.DataFrame({"condition": ["random"], "r": [0.1], "log_prob": [0.8], "denoising": [0.7]}).to_csv(
        tmp_path / "run-b" / "off_manifold.csv", index=False
    )
    off = gen_results.regenerate("<!-- generated: off_manifold run-a,run-b -->\n<!-- end generated -->")
    assert "| random | 0.1 | **0.850 (0.800-0.900)** | 0.700 |" in off  # mean (min-max), best in bold
    example = "```text\n<!-- generated: RENDERER RUN -->\nx\n<!-- end generated -->\n```\n"
    assert gen_results.regenerate(example + page) == example + new  # a marker inside a code block is an example
    with pytest.raises(SystemExit, match="unknown renderer"):
        gen_results.regenerate("<!-- generated: nope run-a -->\n<!-- end generated -->")


def test_gen_results_renders_a_real_model_run_beside_the_paper_and_a_maps_diagnosis(tmp_path, monkeypatch):
    import json

    import pandas as pd

    sys.path.insert(0, str(DOCS))
    import gen_results

    monkeypatch.setattr(gen_results, "RESULTS", tmp_path)
    run = fake_run(tmp_path / "real")
    n = json.loads((run / "numbers.json").read_text())
    check = {"steers": False, "best_r": 0.25, "shift": 0.2, "ci_low": -0.01, "ci_high": 0.4, "per_r": {"0.25": {}}}
    n |= {
        **{
            f"fd_robust_{k}": v
            for k, v in {"prior": 13.0, "lower_bound": 10.0, "held_out_halves": 9.0, "gaussian": 27.0}.items()
        },
        **{
            f"fd_norm_{k}": v
            for k, v in {"prior": 1.0, "lower_bound": 2.0, "held_out_halves": 3.0, "gaussian": 4.0}.items()
        },
        "sae_fraction_variance_unexplained": 0.5,
        "direction_check": check,
        "direction_choice": {
            "hook": "blocks.10.hook_resid_post",
            "target": "negative",
            "shift": 0.3,
            "ci_low": 0.1,
            "ci_high": 0.5,
            "best_r": 0.15,
        },
        "steering_gain_nll_judge": {"gain": -0.4, "ci_low": -0.9, "ci_high": -0.1},
        "steering_gain_distinct_2": {"gain": 0.0, "ci_low": -0.02, "ci_high": 0.01},
        "map_gain_nll_judge_prior_all": {"gain": -1.0, "ci": [-1.5, -0.5], "reason": ""},
        "map_gain_distinct_2_prior_all": {"gain": 0.1, "ci": [0.0, 0.2], "reason": ""},
    }
    (run / "numbers.json").write_text(json.dumps(n))
    info = json.loads((run / "run.json").read_text()) | {"sizes": "--quick", "settings": {"sae_k": 16, "sae_steps": 60}}
    (run / "run.json").write_text(json.dumps(info))
    text = gen_results.regenerate("<!-- generated: real_vs_paper real -->\n<!-- end generated -->")
    assert "| figure | seed 0, --quick | paper (Llama) |" in text
    assert "2.6x (50 / 19; N 100)" in text and "1.3x; 2.7x" in text  # FD ratios to the floor, raw and robust
    assert gen_results.times(5638 / 134007) == "0.042x" and gen_results.times(69.7) == "69.7x"  # never "0.0x"
    assert "16, 60; 0.500" in text and "+0.012 [+0.011, +0.013]" in text and "+0.051 (Llama-8B)" in text
    assert "+0.200 [-0.010, +0.400] at r 0.25 (does not steer)" in text and "-0.400 [-0.900, -0.100]" in text
    assert "| meta - raw, paired over datasets | +0.150 [-0.485, +0.785] |" in text
    assert (
        "| steering direction chosen | layer 10 towards negative (calibration: +0.300 [+0.100, +0.500] at r 0.15) |"
        in text
    )
    table = gen_results.regenerate("<!-- generated: demo_table real -->\n<!-- end generated -->")
    assert "| FD robust prior / lower / halves / Gaussian | 13.0 / 10.0 / 9.0 / 27.0 |" in table
    assert "steer gain (judge NLL) | -0.400 [-0.900, -0.100]" in table and "does not steer" in table
    m = gen_results.regenerate("<!-- generated: steering_map real -->\n<!-- end generated -->")
    assert "judge NLL (sign flipped), seed 0" in m and "distinct-2, seed 0" in m  # nll_judge is not read as nll
    assert "does not move the concept" not in m  # no steering_map.csv, no map_direction_check: nothing to say
    # the map's own direction check, read from its steering_map.csv: plain minus unsteered per prompt
    unsteered, steered = [0.1, -0.2, 0.0, 0.3], [0.2, -0.3, 0.1, 0.3]  # shifts +0.1, -0.1, +0.1, 0: mean +0.025
    pd.DataFrame(
        [{"prompt": f"p{i}", "method": "none", "r": 0.0, "concept": c} for i, c in enumerate(unsteered)]
        + [{"prompt": f"p{i}", "method": "plain", "r": 0.5, "concept": c} for i, c in enumerate(steered)]
    ).to_csv(run / "steering_map.csv", index=False)
    m = gen_results.regenerate("<!-- generated: steering_map real -->\n<!-- end generated -->")
    assert "- Seed 0: on the map's prompts plain steering does not move the concept (+0.025 [" in m
    text = gen_results.regenerate("<!-- generated: real_vs_paper real -->\n<!-- end generated -->")
    assert "| head to head: plain's VADER shift on the map's own prompts | +0.025 [" in text
    assert "at r 0.5 (does not steer) |" in text
    assert "| prior | all | - | - | -1.00 [-1.50, -0.50] | +0.10 [+0.00, +0.20] |" in m
    # a map's diagnosis: means per projector at the smallest and largest r, the range over runs
    for seed, moved in ((0, 0.2), (1, 0.4)):
        folder = tmp_path / f"map{seed}"
        folder.mkdir()
        (folder / "run.json").write_text(json.dumps(info | {"seed": seed}))
        pd.DataFrame(
            [
                {
                    "projector": p,
                    "r": r,
                    "moved": moved * r if p == "prior" else 0.0,
                    "kept": 1.0,
                    "kl": 0.1,
                    "evaluations": 10.0 if p == "prior" else float("nan"),
                }
                for p in ("plain", "prior")
                for r in (0.5, 1.0, 2.0)
            ]
        ).to_csv(folder / gen_results.DIAGNOSIS_MEANS, index=False)
    d = gen_results.regenerate("<!-- generated: map_diagnosis map0,map1 -->\n<!-- end generated -->")
    assert "| prior | 0.5 | 0.15 (0.1-0.2) | 1 | 0.1 | - | 10 | - |" in d and "| prior | 2 | 0.6 (0.4-0.8) |" in d
    assert "| plain | 1 |" not in d  # only the smallest and the largest strength


def new_run(tmp_path, monkeypatch, name: str, command: str):
    """``docs/gen_results.py`` reading its runs from ``tmp_path``, and an empty run folder ``name`` there
    with its run.json."""
    import json

    sys.path.insert(0, str(DOCS))
    import gen_results

    monkeypatch.setattr(gen_results, "RESULTS", tmp_path)
    run = tmp_path / name
    run.mkdir()
    info = {"command": command, "seed": 0, "sizes": "default", "commit": "abcdef0", "machine": "m"}
    (run / "run.json").write_text(json.dumps(info))
    return gen_results, run


def test_gen_results_renders_a_scaling_study_from_its_files(tmp_path, monkeypatch):
    import json

    import pandas as pd

    gen_results, run = new_run(tmp_path, monkeypatch, "scale", "tl-glp scaling")
    pd.DataFrame(
        {
            "depth": [1, 1, 2],
            "samples": [100, 200, 200],
            "val_loss": [0.9, 0.7, 0.6],
            "fd_prior": [30.0, 20.0, 12.0],
            "c2st_prior": [0.8, 0.7, 0.65],
            "delta_lm_loss_prior": [0.3, 0.2, 0.1],
            "probe_auc_meta": [0.7, 0.75, 0.8],
            "steer_gain": [-0.1, float("nan"), -0.3],
        }
    ).to_csv(run / "scaling.csv", index=False)
    corr = {"rho": 0.5, "ci_low": 0.1, "ci_high": 0.9, "n": 3, "missing": 0}
    summary = {
        "fit": {
            "E": 0.4,
            "A": 2.0,
            "alpha": 0.5,
            "E_ci": [0.35, 0.45],
            "A_ci": [1, 3],
            "alpha_ci": [0.4, 0.6],
            "n_points": 3,
            "rmse_log": 0.01,
        },
        "fit_error": "",
        "correlations": {"fd_prior": corr, "steer_gain": corr | {"rho": float("nan")}},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    refs = {
        "fd_lower_bound": 4.2,
        "fd_gaussian": 300.0,
        "c2st_held_out": 0.5,
        "c2st_gaussian": 0.99,
        "probe_auc_raw": 0.8,
        "sae_k8": {"k": 8, "d_sae": 256, "delta_lm_loss": 0.25, "fvu": 0.1},
    }
    (run / "references.json").write_text(json.dumps(refs))
    timing = {
        "seconds": {"train_steps": 750.0, "evaluate": 250.0},
        "wall_seconds": 1000.0,
        "share_outside_training_steps": 0.25,
    }
    (run / "timing.json").write_text(json.dumps(timing))
    text = gen_results.regenerate("<!-- generated: scaling_summary scale -->\n<!-- end generated -->")
    assert "alpha = 0.500 [0.400, 0.600], E = 0.400 [0.350, 0.450]" in text and "on the 3 compute-efficient" in text
    assert "validation loss 0.900 to 0.600 over 3 checkpoints (depths 1, 2)" in text
    # range over checkpoints, the value at the lowest loss (depth 2), the references, rho
    assert "| 12 to 30 | 12 | lower bound 4.2, Gaussian 300 | +0.50 [+0.10, +0.90] (3 checkpoints) |" in text
    assert "SAE k=8/256: +0.2500" in text and "raw neurons 0.8" in text
    assert "| -0.3 to -0.1 | -0.3 | 0 (plain steering) | n/a |" in text  # NaN gain left out, NaN rho is n/a
    assert (
        "Wall time 1000 s (16.7 minutes, summed over invocations) on m; 25.0% of it outside training steps "
        "(train_steps 750 s, evaluate 250 s)" in text
    )
    summary["fit"], summary["fit_error"] = None, "fewer than 3 frontier points"
    (run / "summary.json").write_text(json.dumps(summary))
    text = gen_results.regenerate("<!-- generated: scaling_summary scale -->\n<!-- end generated -->")
    assert "No power law fitted (fewer than 3 frontier points)" in text


def test_gen_results_renders_the_projection_options_bench(tmp_path, monkeypatch):
    import json

    import pandas as pd

    gen_results, run = new_run(tmp_path, monkeypatch, "project", "tl-glp bench project")
    numbers = {
        "hook": "blocks.2.hook_resid_post",
        "prior": "trained 1000 steps on 2000 docs",
        "activations": 1000,
        "eval_docs": 150,
        "prompts": 16,
        "strengths": [0.5, 1.0],
        "fpr": 0.1,
        "seed": 0,
        "threads": 2,
        "seconds": 321.0,
    }
    (run / "numbers.json").write_text(json.dumps(numbers))
    nan = float("nan")
    pd.DataFrame(
        [
            ["reference", 10, 0.0, 0.0206, 0.0137, 0.0275, 0.0, 0.0, 0.0],
            ["euler:4", 4, 0.12, 0.0207, 0.0138, 0.0276, 0.0001, -0.0005, 0.0004],
            ["adaptive(fpr=0.1)", 4.1, nan, 0.003, 0.0008, 0.0053, -0.0176, -0.0243, -0.0107],
        ],
        columns=[
            "method",
            "evals",
            "dist_to_ref_rel",
            "delta_lm_loss",
            "ci_lo",
            "ci_hi",
            "paired_diff_vs_ref",
            "paired_lo",
            "paired_hi",
        ],
    ).to_csv(run / "projection.csv", index=False)
    pd.DataFrame(
        [
            ["reference", 0.5, 0.3, "[0.200, 0.400]", 2.0, "[1.800, 2.200]", 0.1, nan, nan],
            ["euler:4", 0.5, 0.31, "[0.210, 0.410]", 2.1, "[1.900, 2.300]", 0.1, "[-0.003, 0.000]", "[-0.010, 0.020]"],
            ["none", 0.0, 0.1, "[0.000, 0.200]", 1.5, "[1.400, 1.600]", 0.05, nan, nan],
        ],
        columns=[
            "option",
            "r",
            "concept",
            "concept_ci",
            "nll",
            "nll_ci",
            "score_denoising",
            "nll_minus_ref_ci",
            "concept_minus_ref_ci",
        ],
    ).to_csv(run / "steering.csv", index=False)
    text = gen_results.regenerate("<!-- generated: projection_options project -->\n<!-- end generated -->")
    assert "| reference | 10 | 0.00 | 0.0206 [0.0137, 0.0275] | - |" in text
    assert "| euler:4 | 4 | 0.12 | 0.0207 [0.0138, 0.0276] | +0.0001 [-0.0005, +0.0004] |" in text
    assert "| adaptive(fpr=0.1) | 4.1 | - | 0.0030 [0.0008, 0.0053] | -0.0176 [-0.0243, -0.0107] |" in text
    assert "| euler:4 | 0.5 | 0.310 [0.210, 0.410] | 2.100 [1.900, 2.300] | [-0.010, 0.020] | [-0.003, 0.000] |" in text
    assert "| reference | 0.5 | 0.300 [0.200, 0.400] | 2.000 [1.800, 2.200] | - | - |" in text
    assert "| none |" not in text and "16 prompts x r in [0.5, 1.0]" in text and "321 s in all" in text


def test_gen_results_renders_probing_per_source_from_probing_csv(tmp_path, monkeypatch):
    import json

    import pandas as pd

    gen_results, run = new_run(tmp_path, monkeypatch, "probe", "tl-glp demo")
    (run / "numbers.json").write_text(json.dumps({"seed": 0}))
    aucs = {"meta": [0.9, 0.7, 0.8], "raw": [0.8, 0.75, 0.6]}  # meta minus raw: +0.1, -0.05, +0.2
    rows = [
        {
            "dataset": f"d{i}",
            "source": s,
            "control": c,
            "n_features": 4,
            "feature": 0,
            "val_auc": a,
            "test_auc": a,
            "C": 1.0,
        }
        for s, values in aucs.items()
        for i, auc in enumerate(values)
        for c, a in ((False, auc), (True, 0.5))
    ]
    pd.DataFrame(rows).to_csv(run / "probing.csv", index=False)
    text = gen_results.regenerate("<!-- generated: probing_sources probe -->\n<!-- end generated -->")
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert lines["| meta"].startswith("| meta | 0.800 [") and "| 0.500 | - | - |" in lines["| meta"]
    assert lines["| raw"].startswith("| raw | 0.717 [") and "| 0.500 | +0.083 [" in lines["| raw"]
    assert lines["| raw"].endswith("| 2 / 1 |")  # meta beats raw on d0 and d2, loses on d1
    assert "3 datasets" in text


def test_gen_results_renders_the_streaming_bench(tmp_path, monkeypatch):
    import json

    gen_results, run = new_run(tmp_path, monkeypatch, "stream", "tl-glp bench streaming")
    figures = {
        "forward_rows_per_s": 48265.2,
        "train_rows_per_s": 14154.0,
        "serial_bound_rows_per_s": 10945.0,
        "stream_rows_per_s": 10183.0,
        "collect_then_train_rows_per_s": 10743.0,
        "ratio_stream_vs_bound": 0.9304,
        "ratio_stream_vs_collect_then_train": 0.948,
        "stream_warmup_s": 0.081,
        "collect_1rank_tok_per_s": 42720.0,
        "collect_2rank_tok_per_s": 45580.0,
        "train_1rank_rows_per_s": 11500.0,
        "train_2rank_rows_per_s": 12420.0,
        "ratio_collect_2rank_vs_1": 1.067,
        "ratio_train_2rank_vs_1": 1.08,
        "stream_peak_rss_mb_4000k_rows": 895.0,
        "stream_peak_rss_mb_1000k_rows": 894.0,
        "rss_ratio_long_vs_short": 1.001,
    }
    numbers = {"figures": figures, "model": "random 2-layer d_model 128", "hook": "blocks.1.hook_resid_post"}
    numbers |= {"rows": 65536, "batch": 1024, "prior_blocks": 2, "repeats": 3, "threads": 2, "seconds": 300.4}
    (run / "numbers.json").write_text(json.dumps(numbers))
    text = gen_results.regenerate("<!-- generated: streaming_bench stream -->\n<!-- end generated -->")
    assert "| forward alone (the stream's row iterator) | 48,265 |  |" in text
    assert (
        "| **streaming** (`train(prior, StreamingActivations(...))`) | **10,183** | **0.93x the bound**, 0.95x" in text
    )
    assert "65,536 rows, batch 1024, a 2-block prior" in text and "300 s in all" in text and "0.08 s" in text
    assert "45,580 vs 42,720 tokens/s (1.07x)" in text and "12,420 vs 11,500 rows/s (1.08x)" in text
    assert "894 MB at 1M rows, 895 MB at 4M rows (ratio 1.00)" in text  # sorted by corpus length
    assert "from `docs/results/stream/` (`tl-glp bench streaming`, seed 0, default, commit abcdef0)" in text


def test_gen_results_renders_the_testbed_quality(tmp_path, monkeypatch):
    import json

    gen_results, run = new_run(tmp_path, monkeypatch, "quality", "tl-glp testbed quality --oracle")
    quality = {"auc_sentiment": 0.9504, "auc_tense": 0.8, "probe_sentiment": 0.99951, "lm_loss": 1.6834}
    quality |= {"entropy_floor": 1.5631, "bayes_loss": 1.6741, "oracle_auc_sentiment": 0.953, "passes": 0.0}
    quality["quality_seconds"] = 30.6  # a timing, not a measure: left out of the table
    bars = {"sentiment": 0.9, "tense": 0.9, "topic": 0.9, "probe": 0.95}
    numbers = {"quality": quality, "bars": bars, "seed": 0, "docs": 600, "oracle": True, "seconds": 80.2}
    (run / "numbers.json").write_text(json.dumps(numbers))
    text = gen_results.regenerate("<!-- generated: testbed_quality quality -->\n<!-- end generated -->")
    assert "| `auc_sentiment` | 0.950 | >= 0.90 | 0.953 |" in text
    assert "| `auc_tense` | 0.800 | >= 0.90 | - |" in text and "| `probe_sentiment` | 1.000 | >= 0.95 | - |" in text
    assert "Every bar met: **no**" in text and "600 held-out documents; 80 s" in text
    assert "loss 1.683 nats per word against 1.674 for the Bayes-optimal" in text and "1.563 for the generator" in text
    assert "lm_loss" not in text.split("|", 1)[1] and "oracle_" not in text and "passes" not in text
    assert "quality_seconds" not in text


def heading_anchors(page: Path) -> set[str]:
    """The anchors MkDocs gives ``page``'s headings: lowercase, punctuation dropped, spaces to hyphens."""
    anchors, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            text = line.lstrip("#").strip().replace("`", "")
            anchors.add(re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower()))
    return anchors


def test_the_readmes_links_into_the_docs_reach_a_page_and_a_heading():
    """mkdocs build --strict checks the links between pages of the site; the README sits outside it, so its
    links (``docs/page.md#heading``) are checked here."""
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#([^)\s]+))?\)", (ROOT / "README.md").read_text())
    assert len(links) >= 5
    for path, anchor in links:
        target = ROOT / path
        assert target.exists(), f"README links to {path}, which does not exist"
        if anchor:
            assert anchor in heading_anchors(target), f"README links to {path}#{anchor}: no such heading there"


def test_heading_anchors_follow_mkdocs(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "# Title\n\n## On SmolLM2, all 113 datasets\n```\n## not a heading\n```\n### Streaming and `torchrun`\n"
    )
    assert heading_anchors(page) == {"title", "on-smollm2-all-113-datasets", "streaming-and-torchrun"}
