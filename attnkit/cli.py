"""The ``attnkit`` command line.

Each subcommand lives in its own module, which provides
``add_cli_arguments(parser)`` and ``run_cli(args) -> int``; modules are
imported only when their command runs, so ``attnkit --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("attnkit.demo", "the main job on its embedded default (no external data)"),
    "tour": ("attnkit.tour_cli", "the five scoring functions on the book's toy example"),
    "cost": ("attnkit.cost", "FLOPs, memory traffic and peak memory of each scoring function"),
    "plot": ("attnkit.plot_cli", "draw a figure of the texts (masks, scores, 1/sqrt(d), ...)"),
    "train": ("attnkit.commands.train", "train a translation model (Transformer or Bahdanau)"),
    "translate": ("attnkit.commands.translate", "translate sentences with a checkpoint"),
    "evaluate": ("attnkit.commands.evaluate", "BLEU / chrF of a checkpoint on a test set"),
    "average": ("attnkit.commands.average", "average the last k checkpoints"),
    "explore": ("attnkit.commands.explore", "write an interactive HTML attention explorer"),
    "bench": ("attnkit.bench_cli", "benchmarks against PyTorch's kernels, into BENCHMARKS.md"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnkit",
        description="Attention mechanisms and the Transformer: scoring functions, masks, "
                    "fast backends, models, training and pictures.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"attnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_cli_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    module = importlib.import_module(args._module)
    try:
        return int(module.run_cli(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"attnkit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
