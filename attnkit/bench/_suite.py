"""How a benchmark suite declares itself: its help line, its flags and its entry point.

Each suite of :mod:`attnkit.bench` is a package. Its ``__init__`` imports no
torch and holds one :class:`Suite`, ``SUITE``: the one line ``attnkit bench
--help`` shows, the :class:`Flag` s of ``attnkit bench NAME`` and how the parsed
flags become the keyword arguments of the suite's ``run()``. The measurement
itself is the package's ``measure`` module, imported only when the suite runs,
so listing the suites and their options never loads PyTorch.

The declarations are plain data: :mod:`attnkit.commands.bench` turns them into
command-line options, and a test reads them to check that every suite's
options reach its ``run()``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._data_root import data_root_text
from .._values import check_choice, check_positive_int

__all__ = ["TRAINING_ROUNDS", "Flag", "Suite", "choice_list", "data_root_flag", "positive_int",
           "size_list", "thread_list", "thread_settings"]


@dataclass(frozen=True)
class Flag:
    """One option of ``attnkit bench NAME``; its parsed value is the attribute of the
    same name, dashes as underscores (``--no-flex`` -> ``parsed.no_flex``)."""

    name: str  # as typed, e.g. "--repeats"
    help: str = ""  # one line for --help; empty: the option is listed without one
    type: Callable[[str], Any] = str  # text -> value; a ValueError says what was expected
    default: Any = None  # the value when the flag is not given
    switch: bool = False  # takes no value: True when given, else False
    required: bool = False  # the suite cannot run without it
    metavar: str | None = None  # the value's name in --help (default: the flag's, upper case)
    keyword: str | None = None  # the keyword of run() it fills (default: its attribute)

    @property
    def attribute(self) -> str:
        """The name of the parsed value: ``--no-flex`` -> ``no_flex``."""
        return self.name.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Suite:
    """A suite's declaration (``SUITE`` in its package's ``__init__``)."""

    package: str  # the suite's package (its __name__); the suite's name is its last part
    help: str  # one line: what is measured against what
    flags: tuple[Flag, ...]  # the suite's own options (every suite also gets --record)
    #: parsed flags -> keyword arguments of run(); default: each flag's value, as it is
    #: parsed, under its keyword (:attr:`Flag.keyword`)
    convert: Callable[[Any], dict[str, Any]] | None = None

    def arguments(self, parsed: Any) -> dict[str, Any]:
        """The keyword arguments of the suite's ``run()`` from the parsed flags."""
        if self.convert is not None:
            return self.convert(parsed)
        return {f.keyword or f.attribute: getattr(parsed, f.attribute) for f in self.flags}

    @property
    def name(self) -> str:
        """``attnkit bench NAME``: the last part of the package name."""
        return self.package.rpartition(".")[2]

    @property
    def module(self) -> str:
        """The module that measures (imports torch): ``<package>.measure``."""
        return f"{self.package}.measure"

    def run(self, **kwargs: Any) -> Any:
        """Import the measuring module and call its ``run(**kwargs)``; returns its result
        (a :class:`attnkit.bench.report.SuiteResult`)."""
        return importlib.import_module(self.module).run(**kwargs)




def data_root_flag(absent: str) -> Flag:
    """``--data-root``: the Multi30k folder a suite reads, by default where the shipped
    configs read it; ``absent`` says what the suite does without it."""
    return Flag("--data-root", f"Multi30k folder (with raw/); default multi30k/ in "
                               f"{data_root_text()}; {absent}", metavar="DIR")


def thread_list(text: str) -> list[int]:
    """``"2,1"`` -> ``[2, 1]``: the thread counts of a ``--threads`` flag, each at least 1."""
    return _positive_ints(text)


def thread_settings(text: str) -> list[int | str]:
    """``"1,2,auto"`` -> ``[1, 2, "auto"]``: thread counts, each at least 1, or ``auto``
    (:func:`attnkit.runtime.choose_threads` picks the count when the suite runs)."""
    parts = text.split(",")
    try:
        return [p if p == "auto" else check_positive_int("", int(p)) for p in parts]
    except ValueError:  # the command line names the flag; the message, the whole list
        raise ValueError(f"expected a comma list of positive ints or auto; got {text!r}"
                         ) from None


def positive_int(text: str) -> int:
    """``"3"`` -> ``3``: a flag's count, at least 1."""
    try:
        return check_positive_int("", int(text))
    except ValueError:  # the command line names the flag
        raise ValueError(f"expected a positive int; got {text!r}") from None


#: ``--rounds`` and ``--batches`` of a suite that times rounds of training steps
#: (``run(rounds=, num_batches=)``)
TRAINING_ROUNDS: tuple[Flag, Flag] = (
    Flag("--rounds", "timed rounds (per cell where the suite has several)", type=positive_int,
         default=3),
    Flag("--batches", "training batches per round", type=positive_int, default=6,
         keyword="num_batches"),
)


def choice_list(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """A flag's parser for a comma list of ``choices`` (each checked, with did-you-mean)."""
    def parse(text: str) -> tuple[str, ...]:
        return tuple(check_choice("each", part, choices) for part in text.split(","))
    return parse


def size_list(text: str) -> list[int]:
    """``"64,128"`` -> ``[64, 128]``: the sizes of a ``--sizes`` flag, each at least 1."""
    return _positive_ints(text)


def _positive_ints(text: str) -> list[int]:
    try:
        return [check_positive_int("", int(t)) for t in text.split(",")]
    except ValueError:  # the command line names the flag; the message, the whole list
        raise ValueError(f"expected a comma list of positive ints; got {text!r}") from None
