"""The ``twingrad`` command: ``verify``, ``train`` and ``bench``.

Each subcommand lives in its own module with ``add_arguments(parser)`` and
``run(args) -> exit code``; this file only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "verify": ("twingrad.verify", "check hand-derived gradients against autograd twins and central differences"),
    "train": ("twingrad.train", "train a FullyConnectedNet with Solver (digits by default, or CIFAR-10 from disk)"),
    "bench": ("twingrad.bench", "side-by-side timings: hand vs autograd twin vs PyTorch vs JAX vs the matmul floor"),
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="twingrad", description="Learn and verify backpropagation in numpy.")
    parser.add_argument("--version", action="version",
                        version=f"twingrad {__version__} (Python {sys.version.split()[0]}, numpy {_numpy_version()})")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(module=module_name)
        importlib.import_module(module_name).add_arguments(sub)
    return parser


def _numpy_version() -> str:
    import numpy

    return numpy.__version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return importlib.import_module(args.module).run(args)
    except KeyboardInterrupt:  # Ctrl-C is an answer, not a crash: no traceback
        print(f"twingrad {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
