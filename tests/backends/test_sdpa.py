"""The sdpa backend: how it plans a call into groups by length, shares them out to worker
threads, and writes every part of its outputs and gradients."""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.backends.sdpa import _plan
from attnkit.functional import make_call
from attnkit.runtime import pinned_threads
from tests.backends._cases import FLOOR, oracle_and_reference, run
from tests.kernels._reference import check_against_baseline


def test_sdpa_plan_groups_by_length_and_detects_causal():
    q = torch.randn(4, 2, 8, 5)
    call = make_call(q, q, q, valid_lens=torch.tensor([8, 3, 8, 0]))
    groups = _plan(call, call.prefix_lengths(), work_per_qk=1e9)
    kinds = {(g.kind, g.K): g.index for g in groups}
    assert kinds == {("dense", 8): [0, 2], ("dense", 3): [1], ("empty", 0): [3]}
    call = make_call(q, q, q, causal=True, query_valid_lens=torch.tensor([8, 5, 8, 8]))
    groups = _plan(call, call.prefix_lengths(), work_per_qk=1e9)
    assert {g.kind for g in groups} == {"causal"}
    # many tiny distinct lengths: one masked call is cheaper than many calls
    call = make_call(torch.randn(16, 4, 3), torch.randn(16, 6, 3), torch.randn(16, 6, 3),
                     valid_lens=torch.arange(16) % 6 + 1)
    groups = _plan(call, call.prefix_lengths(), work_per_qk=1.0)
    assert [g.kind for g in groups] == ["masked"]
    # reordering the batch into groups has a price: when it outweighs the padding
    # saved, one masked call wins; groups that are already contiguous pay nothing
    lens = torch.tensor([8, 3, 8, 3])
    call = make_call(q, q, q, valid_lens=lens, query_valid_lens=lens)
    assert len(_plan(call, call.prefix_lengths(), work_per_qk=1e9)) == 2
    assert len(_plan(call, call.prefix_lengths(), work_per_qk=1e9, move_per_seq=1e12)) == 1
    lens = torch.tensor([8, 8, 3, 3])
    call = make_call(q, q, q, valid_lens=lens, query_valid_lens=lens)
    assert len(_plan(call, call.prefix_lengths(), work_per_qk=1e9, move_per_seq=1e12)) == 2


def test_sdpa_backward_can_run_twice_on_a_retained_graph():
    """gradcheck and retain_graph=True differentiate the same graph more than once."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 5, 4, dtype=torch.float64, generator=g).requires_grad_()
               for _ in range(3))
    vl = torch.tensor([[0, 2, 5, 1, 3], [4, 4, 0, 5, 5], [1, 1, 1, 1, 1]])
    out = attnkit.attention(q, k, v, valid_lens=vl, causal="bottom_right", backend="sdpa")
    first = torch.autograd.grad(out.sum(), (q, k, v), retain_graph=True)
    second = torch.autograd.grad(out.sum(), (q, k, v))
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert torch.autograd.gradcheck(
        lambda q, k, v: attnkit.attention(q, k, v, valid_lens=vl, backend="sdpa"), (q, k, v))


@pytest.mark.parametrize("case", ["valid_lens_1d_with_empty", "query_padding",
                                  "causal_bottom_right_nq_gt_nk"])
def test_sdpa_groups_leave_nothing_unwritten(case, monkeypatch):
    """Planning per sequence (no call overhead, masks made costly): outputs and gradients
    are written group by group into uninitialised tensors, and every part no group
    covers (empty sequences, padded rows, keys past a group's K) must come out zero.
    Freed NaN buffers of the same sizes make a missed part show."""
    from attnkit.backends import sdpa

    monkeypatch.setattr(sdpa, "_CALL_OVERHEAD_FLOPS", 0.0)
    monkeypatch.setattr(sdpa, "_MASK_FACTOR", 1e6)
    truth, ref, tensors, kw, score = oracle_and_reference(case, torch.float32, "scaled_dot")
    q, k, v = tensors
    call = make_call(q, k, v, score=score, **kw)
    groups = sdpa._plan(call, call.prefix_lengths(), work_per_qk=1.0)
    assert len(groups) > 1  # really grouped
    for _ in range(3):
        poison = [torch.full_like(t, float("nan")) for t in (q, k, v, ref[0])]
        del poison
        out, grads, _ = run("sdpa", tensors, kw, score, weights=ref[2])
        torch.testing.assert_close(out, ref[0], atol=1e-5, rtol=1e-5)
        for g, r in zip(grads[:3], ref[1][:3]):
            torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", ["valid_lens_1d_with_empty", "valid_lens_2d", "causal_top_left",
                                  "causal_2d", "query_padding", "no_heads"])
@pytest.mark.parametrize("score_name", ["scaled_dot", "distance"])
def test_sdpa_groups_on_worker_threads_match_the_oracle(case, score_name, monkeypatch):
    """The groups shared out to worker threads (forced here: work threshold 0, groups at no
    cost, 3 torch threads): forward and every gradient meet the same rule against the
    float64 oracle as the in-order path, and the workers really ran."""
    from attnkit.backends import sdpa

    calls = []
    real = sdpa.in_workers

    def spy(runs, job, *, grad):
        calls.append(len(runs))
        return real(runs, job, grad=grad)

    monkeypatch.setattr(sdpa, "_WORKERS_MIN_FLOPS", 0)
    # the planner would put these tiny calls in one masked group: make groups free
    monkeypatch.setattr(sdpa, "_CALL_OVERHEAD_FLOPS", 0.0)
    monkeypatch.setattr(sdpa, "_MOVE_FLOPS_PER_ELEMENT", 0.0)
    monkeypatch.setattr(sdpa, "in_workers", spy)
    truth, ref, tensors, kw, score = oracle_and_reference(case, torch.float32, score_name)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with pinned_threads():
            got = run("sdpa", tensors, kw, score, weights=ref[2])
    finally:
        torch.set_num_threads(before)
    assert torch.get_num_threads() == before
    assert calls and max(calls) > 1  # forward and backward on more than one thread
    names = ["q", "k", "v"] + [n for n, _ in score.named_parameters()]
    check_against_baseline(got[:2], ref[:2], truth[:2], floor=FLOOR[torch.float32],
                           grad_floor=3 * FLOOR[torch.float32], names=names)


def test_sdpa_shares_groups_only_for_large_cpu_calls_without_dropout():
    from attnkit.backends.sdpa import _Group
    from attnkit.backends.sdpa import _worker_count as _workers

    groups = [_Group([0], 0, 1024, 600, "dense"), _Group([1], 0, 1024, 300, "dense")]
    q = torch.empty(2, 8, 1024, 64)
    big = make_call(q, q, q, valid_lens=torch.tensor([600, 300]))
    work = 2.0 * 8 * 128
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert _workers(big, q, groups, work) == 1  # not pinned: this thread, torch's threads
        with pinned_threads():
            assert _workers(big, q, groups, work) == 2
            assert _workers(big, q, groups[:1], work) == 1  # one group: nothing to share
            assert _workers(big, q, groups, 1e-6) == 1  # too little work
            dropped = make_call(q, q, q, valid_lens=torch.tensor([600, 300]), dropout_p=0.1)
            assert _workers(dropped, q, groups, work) == 1  # dropout: the generator's order
    finally:
        torch.set_num_threads(before)


# ------------------------------------- float32 and bfloat16 with dropout on the CPU: separate ops
def _by_hand(q, k, v, keep_mask, scale, causal):
    """Float32 scores and softmax, the weights in the inputs' dtype."""
    s = (q.float() @ k.float().transpose(-2, -1)) * scale
    if causal:
        s = s.masked_fill(~torch.ones(s.shape[-2:], dtype=torch.bool).tril(), float("-inf"))
    if keep_mask is not None and keep_mask.dtype == torch.bool:
        s = s.masked_fill(~keep_mask, float("-inf"))
    elif keep_mask is not None:
        s = s + keep_mask
    return torch.softmax(s, -1).to(q.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mask", ["none", "causal", "bool", "additive"])
def test_dropout_attention_is_sdpas_arithmetic_with_attnkits_dropout(mask, dtype):
    """``_sdpa`` on CPU tensors with dropout: the output is the float32 softmax of the
    float32 scores, in the inputs' dtype, dropped out by attnkit's rule (the same draws as
    the kernel called by hand with the same seed), times the values; gradients reach q, k
    and v in the inputs' dtype."""
    from attnkit.backends.sdpa import _sdpa
    from attnkit.kernels import cpu_dropout

    if not cpu_dropout.usable(torch.zeros(1, dtype=dtype)):
        pytest.skip("no compiled dropout kernel")
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(3, 2, 7, 8, generator=g).to(dtype).requires_grad_()
               for _ in range(3))
    attn = {"none": None, "causal": None,
            "bool": torch.rand(3, 1, 7, 7, generator=g) > 0.3,
            "additive": torch.randn(3, 1, 7, 7, generator=g)}[mask]
    if mask == "bool":
        attn[..., 0] = True  # every row sees a key
    torch.manual_seed(5)
    out = _sdpa(q, k, v, attn, 0.1, mask == "causal", 0.3)
    assert out.dtype == dtype and out.shape == (3, 2, 7, 8)
    w = _by_hand(q.detach(), k.detach(), v.detach(), attn, 0.3, mask == "causal")
    torch.manual_seed(5)
    dropped = cpu_dropout.dropout(w, *cpu_dropout.rule(0.1))
    torch.testing.assert_close(out.detach(), dropped @ v.detach(), rtol=0, atol=0)
    out.float().square().sum().backward()
    assert all(t.grad is not None and t.grad.dtype == dtype and
               torch.isfinite(t.grad).all() for t in (q, k, v))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_attention_through_the_backend_keeps_the_expectation(monkeypatch, dtype):
    """Through ``attnkit.attention`` (valid lengths, the sdpa backend's groups; SDPA itself
    is not called): the mean of many dropped-out outputs is the output without dropout
    (within 4 standard errors), and padded query rows stay zero."""
    from attnkit.backends import sdpa
    from attnkit.kernels import cpu_dropout

    if not cpu_dropout.usable(torch.zeros(1, dtype=dtype)):
        pytest.skip("no compiled dropout kernel")
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2, 6, 8, generator=g).to(dtype) for _ in range(3))
    lens = torch.tensor([6, 4])
    plain = attnkit.attention(q, k, v, valid_lens=lens, query_valid_lens=lens,
                              backend="sdpa").float()
    torch.manual_seed(0)

    def refused(*args, **kwargs):
        raise AssertionError("SDPA was called")

    monkeypatch.setattr(sdpa.F, "scaled_dot_product_attention", refused)
    draws = torch.stack([attnkit.attention(q, k, v, valid_lens=lens, query_valid_lens=lens,
                                           dropout_p=0.1, backend="sdpa").float()
                         for _ in range(400)])
    assert (draws[:, 1, 4:] == 0).all()
    err = draws.std(0) / 400 ** 0.5 + 0.02  # + bfloat16 rounding of the weights
    assert ((draws.mean(0) - plain).abs() <= 4 * err).all()
