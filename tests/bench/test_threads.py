"""The threads suite: its rows per thread setting, its target, and the caller's thread count
given back."""

from __future__ import annotations

import pytest
import torch

from ..conftest import START_THREADS


@pytest.mark.slow
def test_threads_suite_restores_threads(three_threads):
    from attnkit.bench.threads.measure import run

    r = run(rounds=1, max_tokens=200, num_batches=1)
    assert [row["threads_idle"] for row in r.rows][:2] == [1, START_THREADS]
    assert torch.get_num_threads() == START_THREADS


def test_threads_suite_renders_its_target():
    from attnkit.bench.threads.measure import ThreadsResult

    rows = [dict(setting=s, threads_idle=ti, threads_loaded=tl, idle=i, loaded=lo,
                 ratio=lo / i) for s, ti, tl, i, lo in (("1", 1, 1, 100.0, 95.0),
                                                        ("2", 2, 2, 160.0, 40.0),
                                                        ("auto", 2, 1, 160.0, 95.0))]
    r = ThreadsResult(rows, 3, "2026-11-30")
    assert r.auto_ratio() == 95 / 160
    assert "auto keeps 0.59x of idle (target >= 0.4): met" in r.summary()[-1]
    assert "| auto | 2 / 1 | 160 | 95 | 0.59× |" in r.markdown("attnkit bench threads")
