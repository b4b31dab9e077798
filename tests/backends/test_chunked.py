"""The chunked backend: blocks within a memory budget, split for worker threads, and the
compiled kernel or torch ops for additive blocks, with the reason for the choice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import attnkit
from attnkit.backends import get_backend
from attnkit.backends.chunked import ChunkedBackend, _blocks
from attnkit.functional import make_call
from attnkit.kernels import cpu_additive
from attnkit.runtime import pinned_threads
from attnkit.scores import Additive, ScaledDot
from tests.backends._cases import make_score


def test_chunked_blocks_respect_budget_and_skip_padding():
    e = torch.tensor([[5] * 6, [0] * 6, [2, 2, 2, 0, 0, 0]])
    blocks = _blocks(e, pair_bytes=4 * 8, budget=4 * 8 * 6)
    assert all((b.b1 - b.b0) * (b.q1 - b.q0) * min(b.bk, b.K) <= 6 for b in blocks)
    assert all(b.b0 != 1 for b in blocks)  # the empty sequence is skipped
    assert max(b.K for b in blocks if b.b0 == 2) == 2


def test_chunked_splits_calls_for_the_threads_only_when_the_work_fills_the_blocks():
    from attnkit.backends.chunked import MIN_TERMS_PER_BLOCK, SPLIT_BLOCKS, _min_blocks

    e = torch.full((8, 64), 64)  # 8 sequences × 64 queries × 64 keys
    assert _min_blocks(e, width=64) == 1  # 2.1 M terms: one block's worth
    assert _min_blocks(e, width=64 * 8) == SPLIT_BLOCKS
    assert _min_blocks(e, width=3 * MIN_TERMS_PER_BLOCK // (8 * 64 * 64) + 1) == 3
    assert _min_blocks(torch.zeros(0, 5, dtype=torch.long), width=64) == 1
    whole = _blocks(e, pair_bytes=256, budget=2**40)
    assert len(whole) == 1
    split = _blocks(e, pair_bytes=256, budget=2**40, min_blocks=6)
    assert len(split) >= 6
    cover = torch.zeros(8, 64, dtype=torch.long)
    for b in split:
        cover[b.b0:b.b1, b.q0:b.q1] += 1
    assert (cover == 1).all()  # every (sequence, query) row once
    one_seq = _blocks(torch.full((1, 5), 3), pair_bytes=256, budget=2**40, min_blocks=8)
    assert len(one_seq) == 5  # down to one query per block, no further


@pytest.mark.parametrize("additive", ["compiled", "torch"])
def test_chunked_small_budget_matches_and_bounds_memory(additive):
    if additive == "compiled" and cpu_additive.status().lib is None:
        pytest.skip(cpu_additive.status().detail)
    score = Additive(8, 5, 5)
    q, k, v = (torch.randn(2, n, 5, requires_grad=True) for n in (9, 13, 13))
    call = make_call(q, k, v, score=score, valid_lens=torch.tensor([13, 6]))
    small = ChunkedBackend(max_block_bytes=1024, additive=additive)
    assert small.additive_choice(call)[0] == additive
    ref = get_backend("reference").forward(call)
    out = small.forward(call)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    g_small = torch.autograd.grad(out.sum(), [q, k, v, score.W_q.weight, score.w_v.weight])
    g_ref = torch.autograd.grad(ref.sum(), [q, k, v, score.W_q.weight, score.w_v.weight])
    for a, b in zip(g_small, g_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="max_block_bytes must be an int >= 1024"):
        ChunkedBackend(max_block_bytes=10)


@pytest.mark.parametrize("score_name,dtype", [("additive", torch.float64),
                                              ("bilinear", torch.float64),
                                              ("additive", torch.float32)])
@pytest.mark.parametrize("dropout_p", [0.0, 0.3])
def test_chunked_workers_share_the_blocks_and_change_nothing(score_name, dtype, dropout_p):
    """Inside ``pinned_threads`` with torch's threads > 1 the blocks are shared out to worker
    threads (one intra-op thread each); outputs and every gradient equal a single worker's, and the
    reference's (dropout: the same masks, drawn per block). float64 runs the torch-op
    blocks (equal to 1e-12); float32 additive runs the compiled kernel, whose per-worker
    key gradients are summed in another order than one worker's (equal to float32
    rounding), and two runs with three workers agree bit for bit."""
    from attnkit.backends import chunked

    score = make_score(score_name, 6, 6).to(dtype)
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(5, 2, n, 6, generator=g, dtype=dtype).requires_grad_()
               for n in (17, 23, 23))
    call = make_call(q, k, v, score=score, valid_lens=torch.tensor([23, 0, 9, 1, 17]),
                     dropout_p=dropout_p)
    backend = ChunkedBackend(max_block_bytes=2048)
    expect = "compiled" if dtype == torch.float32 and score_name == "additive" else "torch"
    if expect == "compiled" and cpu_additive.status().lib is None:
        pytest.skip(cpu_additive.status().detail)
    if score_name == "additive":
        assert backend.additive_choice(call)[0] == expect
    params = [q, k, v, *score.parameters()]
    before, runs = torch.get_num_threads(), []
    seen = []
    real_split = chunked._split

    def spy(blocks, n):
        seen.append((len(blocks), n))
        return real_split(blocks, n)

    try:
        chunked._split = spy
        with pinned_threads():
            for threads in (1, 3, 3):
                torch.set_num_threads(threads)
                torch.manual_seed(11)  # the dropout seed
                out = backend.forward(call)
                w = torch.randn(out.shape, generator=torch.Generator().manual_seed(5),
                                dtype=out.dtype)
                runs.append((out, torch.autograd.grad((out * w).sum(), params)))
    finally:
        chunked._split = real_split
        torch.set_num_threads(before)
    assert seen[0][1] == 1 and seen[-1][1] == 3 and seen[-1][0] > 3  # really split
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    (o1, g1), (o3, g3), (o3b, g3b) = runs
    torch.testing.assert_close(o3, o1, atol=tol, rtol=tol)
    for a, b, c in zip(g3, g1, g3b):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
        assert torch.equal(a, c)  # the same order of sums every run
    if dropout_p == 0:
        ref = get_backend("reference").forward(call)
        torch.testing.assert_close(o3, ref, atol=1e-10 if dtype == torch.float64 else 2e-6,
                                   rtol=1e-10 if dtype == torch.float64 else 2e-6)


def test_chunked_split_keeps_every_block_once_in_order():
    from attnkit.backends.chunked import _Block, _split

    blocks = [_Block(b, b + 1, 0, 4, K, 4) for b, K in enumerate([9, 1, 1, 1, 9, 2, 0, 5])]
    for n in (1, 2, 3, 8, 20):
        runs = _split(blocks, n)
        flat = [i for run in runs for i, _ in run]
        assert flat == list(range(len(blocks))) and 1 <= len(runs) <= n
    assert _split([], 3) == []


def test_chunked_restores_thread_count():
    before = torch.get_num_threads()
    q = torch.randn(2, 5, 4, requires_grad=True)
    out = attnkit.attention(q, q, q, score=Additive(3, 4, 4), backend="chunked")
    assert torch.get_num_threads() == before
    out.sum().backward()
    assert torch.get_num_threads() == before and torch.isfinite(q.grad).all()
    with pytest.raises(ValueError, match="intra_op_threads must be a positive int; got 0"):
        ChunkedBackend(intra_op_threads=0)


def test_chunked_says_how_it_evaluates_additive_blocks():
    """The compiled kernel serves float32 (and low-precision) calls on the CPU; float64
    and ``additive='torch'`` use torch ops; ``additive='compiled'`` refuses what it cannot
    serve, with the reason; the choice is part of ``explain_backend``'s answer."""
    q = torch.randn(2, 3, 4)
    score = Additive(5, 4, 4)
    call32, call64 = make_call(q, q, q, score=score), make_call(*[q.double()] * 3, score=score)
    auto = ChunkedBackend()
    if cpu_additive.status().lib is not None:
        assert auto.additive_choice(call32) == ("compiled", cpu_additive.status().detail)
        assert "how: additive blocks by the compiled kernel" in str(
            attnkit.explain_backend(q, q, q, score=score, backend="chunked"))
    way, why = auto.additive_choice(call64)
    assert way == "torch" and why.startswith("float64 inputs")
    assert ChunkedBackend(additive="torch").additive_choice(call32)[0] == "torch"
    assert ChunkedBackend(additive="compiled").unsupported_reason(call64) == (
        "additive='compiled' cannot serve it: " + why)
    assert ChunkedBackend(additive="compiled").unsupported_reason(
        make_call(q, q, q, score=ScaledDot())) is None  # other scores: not its business
    assert "how" not in str(attnkit.explain_backend(q, q, q))
    with pytest.raises(ValueError, match=r"additive must be one of 'auto', 'compiled', "
                                         r"'torch'; got 'fast'"):
        ChunkedBackend(additive="fast")


def test_chunked_additive_without_the_compiled_kernel_says_why_and_still_serves():
    """A process with ``ATTNKIT_CPU_KERNELS=off`` (as where no compiler exists): torch
    ops, the reason in ``explain_backend``, and the reference's result."""
    code = (
        "import torch, attnkit\nfrom attnkit.scores import Additive\n"
        "torch.manual_seed(0); q = torch.randn(2, 5, 4); s = Additive(6, 4, 4)\n"
        "print(attnkit.explain_backend(q, q, q, score=s, backend='chunked'))\n"
        "a = attnkit.attention(q, q, q, score=s, backend='chunked')\n"
        "b = attnkit.attention(q, q, q, score=s, backend='reference')\n"
        "print('max diff', float((a - b).abs().max()))\n")
    env = {**os.environ, "ATTNKIT_CPU_KERNELS": "off",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "how: additive blocks by torch ops (turned off by ATTNKIT_CPU_KERNELS=off)" in \
        done.stdout
    assert float(done.stdout.split("max diff")[1]) < 1e-6
