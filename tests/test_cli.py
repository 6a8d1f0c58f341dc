"""The command line: generated from the config dataclasses, light at the top, clear on bad input."""

import ast
import dataclasses
import inspect
import re
import subprocess
import sys
import textwrap
import typing

import pytest

import tl_glp
from tl_glp.cli import COMMANDS, GROUPS, command, main
from tl_glp.cli._run import default_of, parse

SHOWS_BARS = ["collect", "train", "steer", "probe", "demo", "interpret", "scaling", "testbed build", "testbed quality"]
REQUIRED = {  # the least each command needs to parse
    "collect": ["--hook", "blocks.0.hook_resid_post", "--out", "x"],
    "train": ["--activations", "a", "--out", "x"],
    "steer": ["--prior", "p", "--prompt", "the dog"],
}


def _flat(text: str) -> str:
    """Help text without rich's box characters and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def _help(name: str, capsys, *extra: str) -> str:
    capsys.readouterr()
    assert main([*name.split(), *extra, "--help"]) == 0
    return _flat(capsys.readouterr().out)


def _field_docs(cls: type) -> dict[str, str]:
    """Field docstrings read from the class source with ast: an implementation independent of tyro's."""
    docs = {}
    for klass in reversed(cls.__mro__[:-1]):
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _options(cls: type, prefix: str = "") -> list[tuple[str, type, dataclasses.Field, str | None]]:
    """(flag, owning class, field, docstring) for every option a command's dataclass generates."""
    out = []
    hints, docs = typing.get_type_hints(cls, include_extras=True), _field_docs(cls)
    for f in dataclasses.fields(cls):
        hint, flat, positional = hints[f.name], False, False
        if typing.get_origin(hint) is typing.Annotated:
            flat = any("OmitArgPrefixes" in repr(m) for m in typing.get_args(hint)[1:])
            positional = any(repr(m) == "Positional" for m in typing.get_args(hint)[1:])
            hint = typing.get_args(hint)[0]
        if dataclasses.is_dataclass(hint):
            out += _options(hint, prefix if flat else f"{prefix}{f.name}.")
        elif typing.get_origin(hint) is not dict:  # TrainConfig.extra (free-form notes) is no option
            name = (
                f"no_{f.name}" if hint is bool and f.default is True else f.name
            )  # a flag that is on by default: --no-...
            flag = None if positional else "--" + f"{prefix}{name}".replace("_", "-")  # a positional has no flag
            out.append((flag, cls, f, docs.get(f.name)))
    return out


def test_top_level_help_imports_neither_torch_nor_the_library():
    code = (
        "import runpy, sys\nsys.argv = ['tl-glp', '--help']\n"
        "try:\n    runpy.run_module('tl_glp.cli', run_name='__main__')\nexcept SystemExit as done:\n    assert done.code == 0, done.code\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'tyro', 'numpy', 'pandas', 'transformer_lens')]\n"
        "ours = [m for m in sys.modules if m.startswith('tl_glp.') and m != 'tl_glp.cli']\n"
        "print(heavy, ours, file=sys.stderr)\nassert not heavy and not ours\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "commands:" in done.stdout and all(name.split()[0] in done.stdout for name in COMMANDS)


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tl-glp {tl_glp.__version__}"
    done = subprocess.run([sys.executable, "-m", "tl_glp.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"tl-glp {tl_glp.__version__}"


def test_every_command_and_group_has_a_description(capsys):
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    for group, description in GROUPS.items():
        assert description and description in top
        assert main([group, "--help"]) == 0
        listing = capsys.readouterr().out
        for name, (_, sub_description) in COMMANDS.items():
            if name.startswith(group + " "):
                assert re.search(rf"^\s+{name.split()[1]}\s+{re.escape(sub_description)}$", listing, re.M)
    for name, (_, description) in COMMANDS.items():
        assert len(description) > 20
        if " " not in name:
            assert re.search(rf"^\s+{name}\s+{re.escape(description)}$", top, re.M)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_shows_every_option_with_its_docstring(name, capsys):
    text = _help(name, capsys)
    assert text.startswith(f"usage: tl-glp {name} ") and _flat(COMMANDS[name][1]) in text
    options = _options(typing.get_type_hints(command(name))["args"])
    assert options
    for flag, owner, f, doc in options:
        assert flag is None or re.search(rf"(^|[\s,]){re.escape(flag)}[\s,]", text), (
            f"{name}: {flag} missing from --help"
        )
        assert doc, f"{name}: {owner.__name__}.{f.name} has no docstring (tyro shows it as the option's help)"
        assert " ".join(doc.split()[:5]) in text, f"{name}: the docstring of {flag} is not in --help"


def test_help_shows_the_library_defaults(capsys):
    from tl_glp.core.projection import ProjectionConfig
    from tl_glp.studies.demo import DemoSettings
    from tl_glp.studies.scaling import ScalingSettings
    from tl_glp.training.config import TrainConfig

    train = _help("train", capsys)
    assert (
        f"--lr FLOAT Peak learning rate of AdamW. (default: {TrainConfig().lr})" in train
        and "(default: 5e-05)" in train
    )
    assert "--batch-size INT Global batch size" in train and f"(default: {TrainConfig().batch_size})" in train
    demo = _help("demo", capsys)
    assert re.search(
        rf"--prior-steps INT Prior training steps \(``?full\(\)``?: 5000\)\. \(default: {DemoSettings().prior_steps}\)",
        demo,
    )
    assert "DemoSettings.prior_steps" not in demo
    quick = _help("demo", capsys, "--quick")  # --quick shows the sizes it starts from
    assert re.search(
        rf"--prior-steps INT Prior training steps \(``?full\(\)``?: 5000\)\. \(default: {DemoSettings.quick().prior_steps}\)",
        quick,
    )
    scaling = _help("scaling", capsys)
    assert f"(default: {' '.join(str(d) for d in ScalingSettings().depths)})" in scaling
    steer = _help("steer", capsys)
    assert "--projection.t-start FLOAT Noise level in paper time" in steer
    assert f"(default: {ProjectionConfig().t_start})" in steer and f"(default: {ProjectionConfig().schedule})" in steer


def test_options_reach_the_library_dataclasses():
    from tl_glp.core.projection import ProjectionConfig
    from tl_glp.probing import run_probing
    from tl_glp.studies.demo import DemoSettings
    from tl_glp.studies.scaling import ScalingSettings
    from tl_glp.training.config import TrainConfig

    args = parse(
        "train",
        command("train"),
        REQUIRED["train"] + ["--lr", "1e-3", "--max-steps", "7", "--betas", "0.8", "0.9", "--no-plot"],
    )
    assert args.config == TrainConfig(lr=1e-3, max_steps=7, betas=(0.8, 0.9), plot=False)
    steer = parse(
        "steer",
        command("steer"),
        REQUIRED["steer"] + ["--projection.t-start", "0.3", "--projection.schedule", "euler:4", "--r", "0.5,1"],
    )
    assert steer.projection == ProjectionConfig(t_start=0.3, schedule="euler:4") and steer.r == (0.5, 1.0)
    assert parse("steer", command("steer"), REQUIRED["steer"] + ["--r", "0.5", "2"]).r == (0.5, 2.0)
    sets = ["eval_samples=200", "strengths=0.5,1", "prior_lr=0.01"]
    demo = parse("demo", command("demo"), [a for s in sets for a in ("--set", s)])
    assert demo.settings == DemoSettings.from_overrides(
        DemoSettings(), sets
    )  # the library's own FIELD=VALUE parser agrees
    quick = parse(
        "demo", command("demo"), ["--quick", "--prior-steps", "7", "--seed", "3"]
    )  # a flag beside --quick wins
    assert quick.quick and quick.settings == dataclasses.replace(DemoSettings.quick(), prior_steps=7, seed=3)
    full = parse("demo", command("demo"), ["--full", "--seed", "2"])  # the README's full-size run, behind a flag
    assert full.full and full.settings == dataclasses.replace(DemoSettings.full(), seed=2)
    # a real model starts from the real-model sizes; --quick and flags still win; the testbed keeps its own
    for model in (["--model", "smollm2-135m"], ["--model=some/folder"]):
        real = parse("demo", command("demo"), [*model, "--prior-steps", "9"])
        assert real.settings == dataclasses.replace(DemoSettings.real(), prior_steps=9)
    assert parse("demo", command("demo"), ["--model", "smollm2-135m", "--quick"]).settings == DemoSettings.quick()
    assert parse("demo", command("demo"), ["--model", "testbed"]).settings == DemoSettings()
    with pytest.raises(SystemExit) as exited:
        parse("demo", command("demo"), ["--quick", "--full"])
    assert exited.value.code == 2
    for depths in (["--depths", "1,2"], ["--depths", "1", "2"], ["--set", "depths=1,2"]):
        assert parse("scaling", command("scaling"), depths).settings == ScalingSettings(depths=(1, 2))
    assert parse("scaling", command("scaling"), ["--quick"]).settings == ScalingSettings.quick()
    assert parse("collect", command("collect"), ["--hook", "a", "--hook", "b", "--out", "x"]).hook == ("a", "b")
    assert parse("collect", command("collect"), REQUIRED["collect"]).packing is True  # packing is the default
    assert parse("collect", command("collect"), REQUIRED["collect"] + ["--no-packing"]).packing is False
    assert parse("train", command("train"), REQUIRED["train"] + ["--stream.no-packing"]).stream.packing is False
    # argparse-style repeats collect every value (not the last one only); text values keep their commas
    repeated = ["--prior", "p", "--prompt", "a, b", "--r", "0.5", "--prompt", "c", "--r", "-1", "--positive", "x, y"]
    steer = parse("steer", command("steer"), repeated)
    assert steer.prompt == ("a, b", "c") and steer.r == (0.5, -1.0) and steer.positive == ("x, y",)
    assert parse("probe", command("probe"), ["--source", "meta", "--source", "sae"]).source == ("meta", "sae")
    assert parse("probe", command("probe"), []).source == tuple(default_of(run_probing, "sources"))


@pytest.mark.parametrize("name", SHOWS_BARS)
def test_quiet_is_accepted_by_every_command_that_shows_bars(name):
    assert parse(name, command(name), REQUIRED.get(name, []) + ["--quiet"]).quiet is True
    assert parse(name, command(name), REQUIRED.get(name, [])).quiet is False


def test_no_progress_still_works_where_it_existed():
    for name in ("collect", "testbed build", "testbed quality"):
        assert parse(name, command(name), REQUIRED.get(name, []) + ["--no-progress"]).quiet is True
    assert parse("train", command("train"), REQUIRED["train"] + ["--no-progress"]).config.progress is False


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--activations", "a", "--out", "b", "--lr", "abc"], "--lr"),
        (["train", "--out", "b"], "--activations"),
        (
            ["steer", "--prior", "p", "--prompt", "a", "--projection.schedule", "rk4"],
            "Unknown projection schedule 'rk4'",
        ),
        (["steer", "--prior", "p", "--positive", "a"], "Missing from tl-glp steer: --prompt"),
        (["collect", "--out", "x"], "Missing from tl-glp collect: --hook"),
        (["collect", "--out", "x", "--hook"], "--hook is required"),
        (["demo", "--set", "prior_steps"], "expected FIELD=VALUE"),
        (["demo", "--set", "bogus=1"], "--bogus"),
        (["demo", "--positions", "last"], "--positions"),
        (["tesbed", "build"], "Did you mean 'testbed'?"),
        (["testbed", "qualty"], "Did you mean 'quality'?"),
        (["bench"], "commands:"),
    ],
)
def test_bad_input_says_what_was_wrong_and_exits_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in _flat(capsys.readouterr().err)


def test_steer_needs_a_direction(capsys):
    # parses, but neither --direction nor --positive/--negative: caught before any model is loaded
    assert main(["steer", "--prior", "p", "--prompt", "a", "--model", "no/such-model"]) == 2
    assert "--direction FILE, or --positive and --negative" in capsys.readouterr().err


def test_collect_train_steer_on_the_testbed(testbed, tmp_path, capsys):
    from tl_glp.activations.store import ActivationStore
    from tl_glp.core.prior import GenerativePrior

    hook = "blocks.2.hook_resid_post"
    assert (
        main(["collect", "--hook", hook, "--out", str(tmp_path / "acts"), "--max-tokens", "600", "--no-progress"]) == 0
    )
    store = ActivationStore.open(tmp_path / "acts")
    assert len(store) == 600 and store.model_name == "tl-glp-testbed"
    assert (
        main(
            [
                "train",
                "--activations",
                str(tmp_path / "acts"),
                "--out",
                str(tmp_path / "run"),
                "--n-blocks",
                "1",
                "--batch-size",
                "128",
                "--lr",
                "1e-3",
                "--max-steps",
                "4",
                "--eval-every",
                "2",
                "--checkpoint-every",
                "2",
                "--fd-samples",
                "64",
                "--quiet",
            ]
        )
        == 0
    )
    prior = GenerativePrior.from_pretrained(tmp_path / "run")
    assert prior.cfg.hook_names == [hook] and prior.cfg.model_name == "tl-glp-testbed" and prior.cfg.n_blocks == 1
    capsys.readouterr()
    assert (
        main(
            [
                "steer",
                "--prior",
                str(tmp_path / "run"),
                "--prompt",
                "the dog",
                "--positive",
                "it was happy .",
                "--negative",
                "it was sad .",
                "--r",
                "1.0",
                "--max-new-tokens",
                "3",
                "--projection.schedule",
                "euler:2",
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "plain" in out and "prior euler:2 t=0.5" in out and "none" in out


def test_console_script_runs_a_command_help():
    done = subprocess.run(
        [sys.executable, "-m", "tl_glp.cli", "bench", "prior", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--d-input" in done.stdout


def test_train_streams_from_the_testbed_and_refuses_two_sources(tmp_path, capsys):
    """``tl-glp train --stream.hook``: a prior trained while the testbed reads its own language (no store)."""
    out = tmp_path / "stream_run"
    argv = [
        "train",
        "--out",
        str(out),
        "--stream.hook",
        "blocks.2.hook_resid_post",
        "--stream.forward-batch",
        "16",
        "--stream.buffer-rows",
        "512",
        "--stream.warmup-rows",
        "512",
        "--stream.val-rows",
        "64",
        "--max-steps",
        "3",
        "--batch-size",
        "64",
        "--eval-every",
        "0",
        "--checkpoint-every",
        "3",
        "--quiet",
    ]
    assert main(argv) == 0
    prior = tl_glp.GenerativePrior.from_pretrained(out)
    assert prior.cfg.hook_names == ["blocks.2.hook_resid_post"] and "trained 3 steps" in capsys.readouterr().out
    assert (
        main(["train", "--out", str(out), "--activations", str(tmp_path), "--stream.hook", "blocks.2.hook_resid_post"])
        == 2
    )
    assert "not both" in capsys.readouterr().err
    assert main(["train", "--out", str(out)]) == 2


def test_bench_gpu_and_streaming_are_commands(capsys):
    for name in ("bench gpu", "bench streaming"):
        assert name in COMMANDS
    assert main(["bench", "gpu", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--tiny" in text and "--out" in text


def test_demo_help_loads_only_the_settings_not_the_pipeline():
    """`tl-glp demo --help` (a newcomer's first command after the README's) answers without importing
    the demo's stages, TransformerLens or SAE-Lens: the demo package loads its modules on first use."""
    code = (
        "import sys, tl_glp.cli, tl_glp.cli.demo; "
        "heavy = [m for m in ('tl_glp.studies.demo.run', 'transformer_lens', 'sae_lens') if m in sys.modules]; "
        "print(heavy); assert not heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    from tl_glp.studies import demo

    assert demo.run_demo.__module__ == "tl_glp.studies.demo.run" and "run_demo" in dir(demo)


HEAVY = ("torch", "transformer_lens", "sae_lens")

_HELP_IMPORTS = """
import contextlib, io, json, sys
from tl_glp.cli import COMMANDS, main
report = {}
for name in COMMANDS:  # one process for all: a module one command imports is charged to the first that does
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main([*name.split(), "--help"])
    report[name] = [rc, sorted(m for m in HEAVY if m in sys.modules)]
print(json.dumps(report))
"""


def test_every_command_help_loads_neither_torch_nor_transformer_lens_nor_sae_lens():
    """`tl-glp <command> --help` builds the parser from the dataclasses alone: defaults read from the
    library's source (default_of), the library itself imported only when the command runs."""
    import json

    code = f"HEAVY = {HEAVY!r}\n" + _HELP_IMPORTS
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == set(COMMANDS)
    loaded = {name: heavy for name, (rc, heavy) in report.items() if heavy}
    assert not loaded, f"--help imported {loaded}"
    assert all(rc == 0 for rc, _ in report.values())


def test_defaults_read_from_source_are_the_library_defaults():
    """Every default a command reads by name (from the source, with ast) equals the one the imported
    function, method or class declares (inspect)."""
    import importlib

    from tl_glp.cli import _run

    for name in COMMANDS:
        command(name)  # imports every command module, so every default_of has run
    assert len(_run.DEFAULT_SOURCES) >= 25
    for target, param in list(_run.DEFAULT_SOURCES):
        module, _, qualname = target.partition(":")
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        expected = inspect.signature(obj).parameters[param].default
        assert default_of(target, param) == expected and expected is not inspect.Parameter.empty, (target, param)


def test_default_of_follows_constants_and_refuses_what_it_cannot_read(tmp_path, monkeypatch):
    pkg = tmp_path / "defaults_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "consts.py").write_text("WIDTH = 4 * 128\nKS: tuple = (1, 2, -4)\n")
    (pkg / "lib.py").write_text(
        "from .consts import KS, WIDTH as W\n"
        "import os\n"
        "def f(a, b=W, *, ks=KS, mode='x', n=2**10, path=os.getcwd(), none=None): ...\n"
        "class C:\n"
        "    def __init__(self, rows=W // 2): ...\n"
        "    def method(self, steps=W + 1): ...\n"
        "class D:\n"
        "    size: int = 7\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    lib = "defaults_pkg.lib"
    assert default_of(f"{lib}:f", "b") == 512 and default_of(f"{lib}:f", "ks") == (1, 2, -4)
    assert default_of(f"{lib}:f", "mode") == "x" and default_of(f"{lib}:f", "n") == 1024
    assert default_of(f"{lib}:f", "none") is None
    assert default_of(f"{lib}:C", "rows") == 256 and default_of(f"{lib}:C.method", "steps") == 513
    assert default_of(f"{lib}:D", "size") == 7
    assert "defaults_pkg.lib" not in sys.modules  # read, never imported
    with pytest.raises(ValueError, match=r"parameter 'path'.*os.getcwd\(\).*not a literal"):
        default_of(f"{lib}:f", "path")
    with pytest.raises(ValueError, match="has no default"):
        default_of(f"{lib}:f", "a")
    with pytest.raises(ValueError, match="no parameter 'c'"):
        default_of(f"{lib}:f", "c")
    with pytest.raises(AttributeError, match="defines no 'g'"):
        default_of(f"{lib}:g", "a")
    with pytest.raises(ValueError, match="module:qualname"):
        default_of(lib, "a")


def test_testbed_quality_out_writes_the_measures_with_their_bars(tmp_path, monkeypatch, capsys):
    """`tl-glp testbed quality --out DIR` writes what it printed, the bars and the settings; the exit code
    follows the bars. The measures are stubbed here (tests/studies/testbed checks measure_quality itself)."""
    import json

    import tl_glp.studies.testbed as testbed_pkg
    from tl_glp.studies.testbed import quality as quality_mod

    measured = {"auc_sentiment": 0.95, "lm_loss": 1.68, "entropy_floor": 1.56, "passes": 0.0}
    seen = {}
    monkeypatch.setattr(testbed_pkg, "load", lambda seed, progress: seen.setdefault("seed", seed))
    monkeypatch.setattr(quality_mod, "measure_quality", lambda tb, n_docs, oracle: seen.update(docs=n_docs) or measured)
    out = tmp_path / "q"
    assert main(["testbed", "quality", "--docs", "33", "--out", str(out)]) == 1  # a bar missed: exit 1
    written = json.loads((out / "numbers.json").read_text())
    assert written["quality"] == measured and written["bars"] == quality_mod.BARS
    assert (written["docs"], written["seed"], written["oracle"]) == (33, 0, False) and seen == {"seed": 0, "docs": 33}
    assert [p.name for p in out.iterdir()] == ["numbers.json"] and "wrote" in capsys.readouterr().out
