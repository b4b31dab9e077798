"""The worker threads the backends share calls out to: one pool, kept and made anew after a
fork, balanced runs, and the caller's inference mode in every worker."""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.backends.chunked import ChunkedBackend
from attnkit.functional import make_call
from attnkit.runtime import pinned_threads
from attnkit.scores import Score
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
        with pinned_threads():  # the workers run only where pinning is allowed
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


class _WatchingScore(Score):
    """A custom score (so ``chunked`` evaluates it block by block) that records, while the
    call runs, torch's thread setting as this thread sees it and as a thread started now
    inherits it (the process-wide value)."""

    name = "watching"

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[int, int]] = []

    def forward(self, queries, keys):
        import threading

        fresh = []
        t = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
        t.start()
        t.join()
        self.seen.append((torch.get_num_threads(), fresh[0]))
        return queries @ keys.transpose(-1, -2)


@pytest.fixture
def thread_setters(monkeypatch):
    """Torch's thread setting at 2 for the test (the caller's back after), and the list
    of every ``torch.set_num_threads`` call made meanwhile (each still made)."""
    before, real = torch.get_num_threads(), torch.set_num_threads
    real(2)
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n))[1])
    yield calls
    monkeypatch.undo()
    real(before)


def _chunked_forward_backward(score: Score) -> torch.Tensor:
    """Forward and backward of a ``chunked`` call of many small blocks (workers would share
    them); the queries, which hold their gradient."""
    q = torch.randn(5, 2, 40, 6, requires_grad=True)
    out = ChunkedBackend(max_block_bytes=2048).forward(
        make_call(q, q, q, score=score, valid_lens=torch.tensor([40, 0, 9, 1, 17])))
    out.sum().backward()
    return q


def test_a_library_call_leaves_torchs_thread_setting_alone_throughout(thread_setters,
                                                                       monkeypatch):
    """Outside ``pinned_threads``, ``chunked`` (forward and backward, blocks that workers
    would share) and ``sdpa`` (groups that workers would share) never change torch's
    process-wide thread setting: a score evaluated during the call, and a thread started
    in it, see the caller's setting; nothing calls ``torch.set_num_threads``."""
    from attnkit.backends import sdpa

    monkeypatch.setattr(sdpa, "_WORKERS_MIN_FLOPS", 0)
    monkeypatch.setattr(sdpa, "_CALL_OVERHEAD_FLOPS", 0.0)
    monkeypatch.setattr(sdpa, "_MOVE_FLOPS_PER_ELEMENT", 0.0)
    score = _WatchingScore()
    q = _chunked_forward_backward(score)
    attnkit.attention(q, q, q, valid_lens=torch.tensor([40, 0, 9, 1, 17]),
                      backend="sdpa").sum().backward()
    assert score.seen and set(score.seen) == {(2, 2)}
    assert thread_setters == [] and torch.get_num_threads() == 2


def test_pinned_threads_lets_the_backends_pin_and_gives_the_setting_back(thread_setters):
    """Inside ``pinned_threads`` the blocks go to worker threads with torch's setting at 1
    during the call (what the commands enter), and the caller's setting is back after."""
    score = _WatchingScore()
    with pinned_threads():
        _chunked_forward_backward(score)
    assert {fresh for _, fresh in score.seen} == {1} and 1 in thread_setters
    assert torch.get_num_threads() == 2
