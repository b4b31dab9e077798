"""The ``attnkit`` command line.

Every subcommand is a module ``attnkit.commands.NAME`` with two functions:

* ``add_cli_arguments(parser: argparse.ArgumentParser) -> None`` adds its options;
* ``run_cli(args: argparse.Namespace) -> int`` runs it and returns the exit code.

Only the chosen command's module is imported, and command modules import
PyTorch inside ``run_cli``, so ``attnkit --help`` and ``attnkit CMD --help``
stay fast. :func:`main` is the one error boundary: a user or environment
error (a bad value, a missing or unreadable file, ...) becomes one line on
stderr, ``attnkit CMD: error: <message>``, and exit code 2; Ctrl-C exits 130.

Standard output closed by its reader (``attnkit translate ... | head -1``) ends the
command quietly, as SIGPIPE ends a GNU tool: nothing on stderr, exit code 141
(128 + SIGPIPE, what a shell reports for such a tool). Text that the output's
encoding cannot represent (``PYTHONIOENCODING=ascii``) is one line saying how to
choose UTF-8.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
from collections.abc import Sequence

from ._values import closest

__all__ = ["COMMANDS", "EXIT_CLOSED_PIPE", "EXIT_INTERRUPTED", "EXIT_USAGE", "build_parser",
           "main"]

EXIT_USAGE = 2  # a user or environment error (argparse's code for usage errors, too)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE, as shells report a tool whose reader went away

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


def _innermost_parser(parser: argparse.ArgumentParser, argv: Sequence[str]
                      ) -> argparse.ArgumentParser:
    """The parser of the (sub)command ``argv`` names: ``attnkit export ctranslate2``'s for
    ``export ctranslate2 ...``, the top-level one when it names none."""
    for word in argv:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if word.startswith("-") or not actions or word not in actions[0].choices:
            continue
        parser = actions[0].choices[word]
    return parser


def _hint(word: str, parser: argparse.ArgumentParser) -> str | None:
    """``did you mean --beam-size?`` for the option of ``parser`` closest to ``word``."""
    if not word.startswith("-"):
        return None
    close = closest(word.split("=")[0], parser._option_string_actions, cutoff=0.75)
    return f"did you mean {close}?" if close else None


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """``argv`` parsed; an unknown option is reported by the (sub)command's parser, with
    its usage line and the closest of its options."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        owner = _innermost_parser(parser, argv)
        hints = [h for h in (_hint(word, owner) for word in extras) if h]
        owner.error(f"unrecognized arguments: {' '.join(extras)}"
                    + (f" ({'; '.join(hints)})" if hints else ""))
    return args


def _run(argv: list[str]) -> int:
    """``attnkit ARGV`` inside the error boundary (see the module doc)."""
    prog = "attnkit"
    try:
        command = _chosen_command(argv)
        parser = build_parser(command)
        args = _parse(parser, argv)
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
    except BrokenPipeError:
        raise  # the reader is gone: main ends quietly
    except UnicodeEncodeError as exc:
        print(f"{prog}: error: the output's encoding ({exc.encoding}) cannot represent "
              f"{exc.object[exc.start:exc.end]!a}; set PYTHONIOENCODING=utf-8 or a UTF-8 "
              "locale (e.g. LANG=C.UTF-8)", file=sys.stderr)
        return EXIT_USAGE
    except USER_ERRORS as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE


def _drop_stdout() -> None:
    """Point standard output at ``os.devnull``, so that what is still buffered for a
    closed pipe is not flushed there again (and reported) when Python exits."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a file descriptor (a caller's stream): nothing is flushed at exit
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``attnkit ARGV``; return the exit code (``--help`` and usage errors exit)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            return _run(argv)
        finally:  # a closed pipe is found here, not when Python exits (--help too)
            sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_CLOSED_PIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
