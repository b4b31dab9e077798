"""Timing several ways of doing the same work on a shared machine: in turns, medians.

One timing of each way, one after the other, measures the machine's load as much as the
ways: on a machine shared with other processes, the same call moves by a quarter from
one minute to the next. :func:`alternated` times each way ``rounds`` times, the ways
taking turns (in reverse order every other round, so that none always runs first), and
keeps the median of each.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Timed", "alternated"]


@dataclass(frozen=True)
class Timed:
    seconds: float  # the median of the rounds
    spread: tuple[float, float]  # the fastest and the slowest round
    result: Any  # what the last round returned


def alternated(ways: dict[str, Callable[[], Any]], rounds: int) -> dict[str, Timed]:
    """Each of ``ways`` (name -> a call without arguments) timed ``rounds`` times (wall
    clock), the ways taking turns; by name, in the order given."""
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"rounds must be a positive int; got {rounds!r}")
    times: dict[str, list[float]] = {name: [] for name in ways}
    results: dict[str, Any] = {}
    order = list(ways)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            results[name] = ways[name]()
            times[name].append(time.perf_counter() - start)
    return {name: Timed(statistics.median(times[name]), (min(times[name]), max(times[name])),
                        results[name]) for name in order}
