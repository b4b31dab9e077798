"""The worker threads the backends share calls out to: one pool, kept and made anew after a
fork, balanced runs, and the caller's inference mode in every worker."""

from __future__ import annotations

import torch

import attnkit
from attnkit.backends.chunked import ChunkedBackend
from attnkit.functional import make_call
from tests.backends._cases import make_score


def test_the_worker_pool_is_kept_and_made_anew_after_fork(monkeypatch):
    from attnkit.backends import _workers

    pool = _workers.pool(2)
    assert _workers.pool(2) is pool and _workers.pool(1) is pool
    monkeypatch.setattr(_workers.os, "getpid", lambda: -1)  # as in a forked child
    assert _workers.pool(2) is not pool


def test_balance_gives_the_largest_pieces_to_the_least_loaded_runs():
    from attnkit.backends._workers import balance

    assert balance([5, 1, 4, 2, 3], 2) == [[0, 1, 3], [2, 4]]  # loads 8 and 7
    runs = balance([826, 291, 576, 632, 722, 575, 278, 762], 2)
    loads = [sum([826, 291, 576, 632, 722, 575, 278, 762][i] for i in r) for r in runs]
    assert sorted(i for r in runs for i in r) == list(range(8))  # each piece once
    assert abs(loads[0] - loads[1]) <= 278  # within the smallest piece
    assert balance([1.0], 4) == [[0]] and balance([], 3) == []


def test_worker_threads_serve_calls_made_under_inference_mode(monkeypatch):
    """Inference mode is per thread: workers take the caller's, or they could not write
    into the output made under it (a decoder runs under ``torch.inference_mode``)."""
    from attnkit.backends import sdpa

    monkeypatch.setattr(sdpa, "_WORKERS_MIN_FLOPS", 0)
    monkeypatch.setattr(sdpa, "_CALL_OVERHEAD_FLOPS", 0.0)
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(5, 2, n, 6, generator=g) for n in (17, 23, 23))
    lens = torch.tensor([23, 0, 9, 1, 17])
    additive = make_score("additive", 6, 6)
    chunked = ChunkedBackend(max_block_bytes=2048)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        want = [attnkit.attention(q, k, v, valid_lens=lens, backend="sdpa"),
                chunked.forward(make_call(q, k, v, score=additive, valid_lens=lens))]
        with torch.inference_mode():
            got = [attnkit.attention(q, k, v, valid_lens=lens, backend="sdpa"),
                   chunked.forward(make_call(q, k, v, score=additive, valid_lens=lens))]
    finally:
        torch.set_num_threads(before)
    for a, b in zip(got, want):
        assert a.is_inference()
        torch.testing.assert_close(a, b.detach(), atol=1e-6, rtol=1e-6)
