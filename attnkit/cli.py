"""The ``attnkit`` command line.

Every subcommand is a module ``attnkit.commands.NAME`` with two functions:

* ``add_cli_arguments(parser: argparse.ArgumentParser) -> None`` adds its options;
* ``run_cli(args: argparse.Namespace) -> int`` runs it and returns the exit code.

Only the chosen command's module is imported, and command modules import
PyTorch inside ``run_cli``, so ``attnkit --help`` and ``attnkit CMD --help``
stay fast. :func:`main` is the one error boundary: a user or environment
error (a bad value, a missing or unreadable file, ...) becomes one line on
stderr, ``attnkit CMD: error: <message>``, and exit code 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "EXIT_INTERRUPTED", "EXIT_USAGE", "build_parser", "main"]

EXIT_USAGE = 2  # a user or environment error (argparse's code for usage errors, too)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C

# name -> (module, one-line help); the module is imported only when its command is chosen
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("attnkit.commands.demo", "the main job on its embedded default (no external data)"),
    "tour": ("attnkit.commands.tour", "the five scoring functions on the book's toy example"),
    "cost": ("attnkit.commands.cost",
             "FLOPs, memory traffic and peak memory of each scoring function"),
    "plot": ("attnkit.commands.plot",
             "draw a figure of the texts (masks, scores, 1/sqrt(d), ...)"),
    "train": ("attnkit.commands.train", "train a translation model (Transformer or Bahdanau)"),
    "translate": ("attnkit.commands.translate", "translate sentences with a checkpoint"),
    "evaluate": ("attnkit.commands.evaluate", "BLEU / chrF of a checkpoint on a test set"),
    "average": ("attnkit.commands.average", "average the last k checkpoints"),
    "explore": ("attnkit.commands.explore", "write an interactive HTML attention explorer"),
    "export": ("attnkit.commands.export", "export a run to another engine (ctranslate2)"),
    "bench": ("attnkit.commands.bench",
              "benchmark suites against PyTorch's kernels (--record writes BENCHMARKS.md)"),
}

# what the boundary reports as one line: bad values, files and the environment
USER_ERRORS = (ValueError, TypeError, OSError, UnicodeDecodeError, MemoryError)


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The command named in ``argv``: its first word that is not an option."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command's name and help; the options of ``command`` only."""
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="attnkit",
        description="Attention mechanisms and the Transformer: scoring functions, masks, "
                    "fast backends, models, training and pictures.")
    parser.add_argument("--version", action="version", version=f"attnkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_prog=p.prog)
        if name == command:
            importlib.import_module(module).add_cli_arguments(p)
    return parser


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (an OSError names its file)."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror  # OSError(errno, message): the message alone
    else:
        text = str(exc).strip() or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``attnkit ARGV``; return the exit code (``--help`` and usage errors exit)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "attnkit"
    try:
        command = _chosen_command(argv)
        parser = build_parser(command)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        prog = args._prog  # "attnkit bench gpu" for a nested command
        args.command_line = shlex.join(["attnkit", *argv])  # as typed, for records
        module = importlib.import_module(COMMANDS[args.command][0])
        return int(module.run_cli(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
