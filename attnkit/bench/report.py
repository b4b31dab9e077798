"""What every benchmark suite returns, and writing it into BENCHMARKS.md.

Each suite of :mod:`attnkit.bench` has one entry point, its ``measure`` module's
``run(**options) -> result``, that measures and writes nothing. Its result
follows :class:`SuiteResult`: ``summary()`` gives the lines printed to the
terminal, ``markdown(command)`` the suite's section of ``BENCHMARKS.md``, and
``markers`` the two comment lines that delimit that section. :func:`record`
puts the section in a file, replacing only that suite's earlier section.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Protocol

__all__ = ["SuiteResult", "record", "section_markers", "write_marked"]


class SuiteResult(Protocol):
    """The result of one suite's ``run(...)``."""

    #: ``(start, end)``: the comment lines around the suite's section of BENCHMARKS.md
    markers: ClassVar[tuple[str, str]]

    def summary(self) -> list[str]:
        """The lines printed to the terminal after a run."""
        ...

    def markdown(self, command: str) -> str:
        """The suite's section of BENCHMARKS.md; ``command`` is the command line
        recorded in it (the one that reproduces the run)."""
        ...


def section_markers(section: str) -> tuple[str, str]:
    """The two comment lines around the section ``section`` of BENCHMARKS.md (a suite's
    ``START, END``): one spelling for every suite, so :func:`record` finds each."""
    return f"<!-- bench:{section}:start -->", f"<!-- bench:{section}:end -->"


def where_line(machine: dict) -> str:
    """The line every section carries: what the figures depend on."""
    return (f"- Where: {machine['cpu']}, ISA {machine['isa']}, native bf16: "
            f"{machine['bf16_native']}, {machine['cores']} cores, {machine['threads']} torch "
            f"threads, load average {machine['load_avg_1min']} before the run, torch "
            f"{machine['torch']}")


def record(result: SuiteResult, path: str | os.PathLike, command: str,
           machine: dict | None = None) -> Path:
    """Write ``result``'s section into ``path`` between its markers; return the path.

    ``machine`` (:func:`attnkit.runtime.machine`, taken before the run) is recorded
    under the section's heading: CPU, ISA level, native bf16, threads, load.
    """
    start, end = result.markers
    section = result.markdown(command)
    if machine is not None:
        head, _, rest = section.partition("\n")
        section = f"{head}\n\n{where_line(machine)}\n{rest}"
    write_marked(path, start, end, section)
    return Path(path)


def write_marked(path: str | os.PathLike, start: str, end: str, section: str) -> None:
    """Replace the text between ``start`` and ``end`` in ``path``; append the
    section (creating the file) when the markers are absent. Re-runs replace
    only their own section."""
    path = Path(path)
    block = f"{start}\n{section.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text and text.index(start) < text.index(end):
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
