"""``tl-glp``: thin command-line front end; every subcommand parses arguments and calls the library."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

Command = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command]] = {}


def command(name: str, configure: Callable[[argparse.ArgumentParser], None]) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        _COMMANDS[name] = (configure, fn)
        return fn

    return register


# --------------------------------------------------------------------------- bench
def _bench_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="what", required=True, metavar="{prior,collect,train,steer,probe}")
    prior = sub.add_parser("prior", help="training-step FLOP rate vs matmul rate; sample/project throughput")
    prior.add_argument("--d-input", type=int, default=512, help="activation width (default 512; Llama-8B: 4096)")
    prior.add_argument("--n-blocks", type=int, default=3, help="denoiser blocks (default 3)")
    prior.add_argument("--batch", type=int, default=1024, help="training batch (default 1024)")
    prior.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    for name, help_text in [
        ("collect", "collection tokens/s vs a bare forward pass; peak RSS for 1M vs 4M rows"),
        ("train", "training samples/s from a disk store vs an in-memory tensor"),
        ("steer", "per-token generation time: no hook, plain steering, prior-guided steering"),
        ("probe", "torch 1-D probe backend vs the sklearn reference on sae-probes datasets"),
    ]:
        extra = sub.add_parser(name, help=help_text)
        extra.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")


@command("bench", _bench_args)
def _bench(args: argparse.Namespace) -> int:
    """Speed benchmarks: print medians and the ratios the targets are stated in."""
    from tl_glp import bench

    if args.what == "prior":
        bench.bench_prior(args.d_input, args.n_blocks, args.batch, args.device)
        return 0
    runner = getattr(bench, f"bench_{args.what}", None)
    if runner is None:
        print(f"bench {args.what} is not available in this version.", file=sys.stderr)
        return 2
    runner(quick=args.quick)
    return 0


# --------------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tl-glp", description="Generative latent priors for TransformerLens.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (configure, fn) in _COMMANDS.items():
        doc = (fn.__doc__ or "").strip().splitlines()
        p = sub.add_parser(name, help=doc[0] if doc else None, description=fn.__doc__)
        configure(p)
        p.set_defaults(_run=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
