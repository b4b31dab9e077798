"""Timing ways of doing the same work in turns (attnkit._timing)."""

import pytest

from attnkit._timing import alternated


def test_the_ways_take_turns_and_the_median_is_kept(monkeypatch):
    import attnkit._timing as timing

    clock = iter(range(1000))
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    calls = []
    durations = {"a": iter([1, 5, 2]), "b": iter([3, 3, 9])}

    def way(name):
        def call():
            calls.append(name)
            for _ in range(next(durations[name]) - 1):  # advance the fake clock
                next(clock)
            return f"{name}{len(calls)}"
        return call

    got = alternated({"a": way("a"), "b": way("b")}, 3)
    assert calls == ["a", "b", "b", "a", "a", "b"]  # none always first
    assert list(got) == ["a", "b"]
    assert (got["a"].seconds, got["a"].spread) == (2, (1, 5))
    assert (got["b"].seconds, got["b"].spread) == (3, (3, 9))
    assert got["a"].result == "a5" and got["b"].result == "b6"  # the last round's


@pytest.mark.parametrize("rounds", [0, -1, 1.5, True, "3"])
def test_rounds_must_be_a_positive_int(rounds):
    with pytest.raises(ValueError, match="rounds must be a positive int; got"):
        alternated({"a": lambda: None}, rounds)
