"""``attnkit bench SUITE``: run a benchmark suite; ``--record`` writes it to BENCHMARKS.md.

The suites declare themselves (:mod:`attnkit.bench`: one package each, listed in
``SUITES``, each with a :class:`attnkit.bench._suite.Suite`): this command
builds one subcommand per declaration, with its help line and its flags, and
adds ``--record`` to every one; ``attnkit bench SUITE --help`` for the options
of each. Nothing here is particular to a suite.

Every suite prints its summary; only ``--record [FILE]`` writes its section
of FILE (default ``BENCHMARKS.md``), with the command line that produced it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..bench import declared
from ..bench._suite import Flag

DEFAULT_RECORD = "BENCHMARKS.md"


def _value_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` as argparse's ``type``: a suite's own parser's ValueError becomes the
    error message (int and float keep argparse's "invalid int value: 'x'")."""
    if parse in (int, float, str):
        return parse

    def value(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    value.__name__ = parse.__name__
    return value


def _add_flag(p: argparse.ArgumentParser, flag: Flag) -> None:
    if flag.switch:
        p.add_argument(flag.name, action="store_true", help=flag.help)
    else:
        p.add_argument(flag.name, type=_value_type(flag.type), default=flag.default,
                       required=flag.required, metavar=flag.metavar, help=flag.help)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="suite", metavar="SUITE", required=True)
    for name, suite in declared().items():
        p = sub.add_parser(name, help=suite.help, description=suite.help)
        for flag in suite.flags:
            _add_flag(p, flag)
        p.add_argument("--record", nargs="?", const=DEFAULT_RECORD, default=None,
                       metavar="FILE", help="write the results into FILE's section for "
                                            f"this suite (default FILE: {DEFAULT_RECORD})")
        p.set_defaults(_prog=p.prog, _run_kwargs=suite.arguments)


def run_cli(args: argparse.Namespace) -> int:
    from ..bench.report import record
    from ..runtime import machine, pinned_threads

    suite = declared()[args.suite]
    before = machine()  # the load average before the run
    with pinned_threads():  # the backends' workers run as under the other commands
        result = suite.run(**args._run_kwargs(args))
    for line in result.summary():
        print(line)
    if args.record is None:
        print(f"(not recorded; --record writes it to {DEFAULT_RECORD})")
        return 0
    command = getattr(args, "command_line", None) or f"attnkit bench {args.suite}"
    print(f"wrote {record(result, args.record, command, machine=before)}")
    return 0
