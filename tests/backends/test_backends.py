"""One suite for every backend: the same cases, against a float64 oracle.

Tolerances are relative to the error of the ``reference`` backend run in the
same precision (flash-attn's rule, ``tests/kernels/_reference.py``): a backend's max
error against the float64 reference is at most 2× the reference's own error plus a
small floor (3× for gradients). Sizes are distinct odd numbers per axis (B=3, H=2,
Nq=7, Nk=11, Dq=5, Dv=3…) so that a transposed axis cannot pass.
"""

from __future__ import annotations

import ast
import copy
import functools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import attnkit
from attnkit.backends import AUTO_ORDER, get_backend, register_backend
from attnkit.backends.chunked import ChunkedBackend, _blocks
from attnkit.backends.sdpa import _plan
from attnkit.functional import make_call
from attnkit.kernels import cpu_additive
from attnkit.scores import Additive, Bilinear, Distance, Dot, ScaledDot
from tests.backends._seeds import case_seed
from tests.kernels._reference import check_against_baseline, max_err, within_bound


class _ChunkedTorchOps(ChunkedBackend):
    """``chunked`` evaluating additive blocks with PyTorch ops instead of its compiled
    kernel: registered here so that every suite runs both implementations."""

    name = "chunked-torch-ops"


register_backend(_ChunkedTorchOps(additive="torch"))
BACKENDS = ["reference", "sdpa", "chunked", "chunked-torch-ops"]
#: (backend, score) pairs a backend refuses, with the words of its reason: not generated
#: by the suites below; ``test_unserved_pairs_are_refused_with_the_reason`` checks them.
UNSERVED = {("sdpa", "additive"): "as_dot"}
LOW = (torch.bfloat16, torch.float16)
#: Error floors per dtype (absolute, on O(1) outputs): a few units in the last place.
FLOOR = {torch.float32: 2e-6, torch.bfloat16: 4e-3, torch.float16: 5e-4}


def make_score(name: str, dq: int, dk: int):
    torch.manual_seed(1)
    return {
        "dot": lambda: Dot(),
        "scaled_dot": lambda: ScaledDot(),
        "distance": lambda: Distance(1.7),
        "bilinear": lambda: Bilinear(dq, dk, scaled=True),
        "additive": lambda: Additive(6, dq, dk),
    }[name]()


# name -> (B, H | None, Nq, Nk, Dq, Dv, extra kwargs builder)
CASES = {
    "plain": (3, 2, 7, 11, {}),
    "valid_lens_1d_with_empty": (3, 2, 7, 11, {"valid_lens": [0, 4, 11]}),
    "valid_lens_2d": (3, 2, 7, 11, {"valid_lens": "2d"}),
    "causal_top_left": (3, 2, 7, 11, {"causal": "top_left", "valid_lens": [5, 1, 11]}),
    "causal_bottom_right": (3, 2, 7, 11, {"causal": "bottom_right"}),
    "causal_bottom_right_nq_gt_nk": (3, 2, 13, 5, {"causal": "bottom_right",
                                                   "valid_lens": [5, 2, 0]}),
    "causal_2d": (3, 2, 11, 11, {"causal": True, "valid_lens": "2d"}),
    "mask_with_empty_row": (3, 2, 7, 11, {"mask": "random"}),
    "query_padding": (3, 2, 7, 11, {"valid_lens": [3, 11, 6], "query_valid_lens": [2, 7, 0]}),
    "no_heads": (3, None, 7, 13, {"valid_lens": [13, 1, 8]}),
    "one_query": (3, 2, 1, 11, {"causal": "bottom_right", "valid_lens": [2, 11, 5]}),
    # a decoding step: one query per sequence (sdpa's single-call path)
    "one_query_all_keys": (3, 2, 1, 11, {"causal": "bottom_right"}),
    "one_query_with_empty": (3, 2, 1, 11, {"valid_lens": [0, 11, 5]}),
    "one_query_padded": (3, 2, 1, 11, {"valid_lens": [4, 11, 5], "query_valid_lens": [1, 0, 1]}),
    "one_query_no_heads": (4, None, 1, 9, {"valid_lens": [9, 1, 3, 9]}),
}
SCORES = ["dot", "scaled_dot", "distance", "bilinear", "additive"]


def served(backends, score_names):
    """The (backend, score_name) grid without the pairs in ``UNSERVED``."""
    return [pytest.param(b, s, id=f"{b}-{s}") for b in backends for s in score_names
            if (b, s) not in UNSERVED and (b != "chunked-torch-ops" or s == "additive")]


def make_inputs(case: str, dtype, score_name: str, requires_grad=True):
    B, H, Nq, Nk, kw = CASES[case]
    dq = 5
    dk = 7 if score_name in ("bilinear", "additive") else dq
    lead = (B,) if H is None else (B, H)
    g = torch.Generator().manual_seed(case_seed(case))
    q = torch.randn(*lead, Nq, dq, generator=g)
    k = torch.randn(*lead, Nk, dk, generator=g)
    v = torch.randn(*lead, Nk, 3, generator=g)
    kw = dict(kw)
    if kw.get("valid_lens") == "2d":
        kw["valid_lens"] = torch.randint(0, Nk + 1, (B, Nq), generator=g)
        kw["valid_lens"][0, 1] = 0  # an empty row
    elif "valid_lens" in kw:
        kw["valid_lens"] = torch.tensor(kw["valid_lens"])
    if "query_valid_lens" in kw:
        kw["query_valid_lens"] = torch.tensor(kw["query_valid_lens"])
    if kw.get("mask") == "random":
        mask = torch.rand(B, 1, Nq, Nk, generator=g) > 0.4
        mask[1, 0, 2] = False  # a fully masked row
        kw["mask"] = mask
    tensors = [t.to(dtype).requires_grad_(requires_grad) for t in (q, k, v)]
    return tensors, kw


def run(backend, tensors, kw, score, weights=None):
    """Output and gradients (q, k, v, score params) of ``sum(out * weights)``."""
    q, k, v = tensors
    out = attnkit.attention(q, k, v, score=score, backend=backend, **kw)
    if weights is None:
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    params = [p for p in score.parameters()]
    grads = torch.autograd.grad((out * weights.to(out.dtype)).sum(), [q, k, v, *params])
    return out, grads, weights


@functools.cache
def oracle_and_reference(case, dtype, score_name):
    """(float64 truth, reference in ``dtype``, inputs, kwargs, score in ``dtype``); cached."""
    score = make_score(score_name, 5, 7 if score_name in ("bilinear", "additive") else 5)
    tensors, kw = make_inputs(case, dtype, score_name)
    score_lp = copy.deepcopy(score).to(dtype)
    score64 = copy.deepcopy(score_lp).double()
    tensors64 = [t.detach().double().requires_grad_() for t in tensors]
    ref = run("reference", tensors, kw, score_lp)
    truth = run("reference", tensors64, kw, score64, weights=ref[2])
    return truth, ref, tensors, kw, score_lp


def serves(backend, tensors, kw, score):
    q, k, v = tensors
    try:
        attnkit.choose_backend(q, k, v, score=score, backend=backend, **kw)
    except ValueError as e:
        return str(e)
    return None


@pytest.mark.parametrize("backend,score_name", served(BACKENDS, SCORES))
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16],
                         ids=["fp32", "bf16"])
def test_matches_float64_oracle(backend, score_name, case, dtype):
    truth, ref, tensors, kw, score = oracle_and_reference(case, dtype, score_name)
    assert serves(backend, tensors, kw, score) is None
    got = run(backend, tensors, kw, score, weights=ref[2])
    assert got[0].dtype == dtype
    names = ["q", "k", "v"] + [n for n, _ in score.named_parameters()]
    check_against_baseline(got[:2], ref[:2], truth[:2], floor=FLOOR[dtype],
                           grad_floor=3 * FLOOR[dtype], names=names)


@pytest.mark.parametrize("backend,score_name", served(["sdpa", "chunked", "chunked-torch-ops"],
                                                      ["scaled_dot", "additive"]))
def test_fp16(backend, score_name):
    truth, ref, tensors, kw, score = oracle_and_reference("valid_lens_2d", torch.float16,
                                                          score_name)
    assert serves(backend, tensors, kw, score) is None
    got = run(backend, tensors, kw, score, weights=ref[2])
    assert got[0].dtype == torch.float16
    check_against_baseline(got[:2], ref[:2], truth[:2], floor=FLOOR[torch.float16],
                           grad_floor=3 * FLOOR[torch.float16])


@pytest.mark.parametrize("backend,score_name",
                         served(BACKENDS, ["scaled_dot", "additive", "distance"]))
def test_empty_rows_are_zero_with_finite_gradients(backend, score_name):
    score = make_score(score_name, 5, 5)
    q, k, v = (torch.randn(2, 3, n, 5, requires_grad=True) for n in (4, 6, 6))
    vl = torch.tensor([[0, 2, 0, 6], [6, 0, 1, 3]])
    assert serves(backend, (q, k, v), {"valid_lens": vl}, score) is None
    out = attnkit.attention(q, k, v, score=score, valid_lens=vl, backend=backend)
    assert (out[0, :, 0] == 0).all() and (out[0, :, 2] == 0).all() and (out[1, :, 1] == 0).all()
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


@pytest.mark.parametrize("backend,score_name", served(BACKENDS, ["scaled_dot", "additive"]))
def test_dropout_statistics_and_backward_consistency(backend, score_name):
    """Kept fraction ≈ 1 − p, kept weights scaled by 1/(1 − p), same mask in backward."""
    p, B, Nq, Nk = 0.3, 2, 64, 50
    score = make_score(score_name, 4, 4)
    torch.nn.init.zeros_(score.w_v.weight) if score_name == "additive" else None
    q = torch.zeros(B, Nq, 4, requires_grad=True)  # equal scores: weights 1/L
    k = torch.randn(B, Nk, 4, requires_grad=True)
    v = torch.eye(Nk).expand(B, Nk, Nk).clone().requires_grad_()  # output = dropped weights
    lens = torch.tensor([Nk, 40])
    assert serves(backend, (q, k, v), {"valid_lens": lens}, score) is None
    torch.manual_seed(0)
    out = attnkit.attention(q, k, v, score=score, valid_lens=lens, dropout_p=p, backend=backend)
    for b, L in enumerate(lens.tolist()):
        w = out[b, :, :L].detach()
        kept = (w != 0).float().mean().item()
        n = w.numel()
        assert abs(kept - (1 - p)) < 4 * math.sqrt(p * (1 - p) / n), kept
        torch.testing.assert_close(w[w != 0], torch.full_like(w[w != 0], 1 / (L * (1 - p))))
        assert (out[b, :, L:] == 0).all()
    grad_out = torch.randn(out.shape)
    (dv,) = torch.autograd.grad((out * grad_out).sum(), [v])
    # out = P_drop @ I, so dL/dV = P_dropᵀ @ grad_out with the very same mask
    torch.testing.assert_close(dv, out.detach().transpose(1, 2) @ grad_out)


@pytest.mark.parametrize("backend,score_name",
                         served(BACKENDS, ["scaled_dot", "bilinear", "distance", "additive"]))
def test_autocast_bf16(backend, score_name):
    score = make_score(score_name, 5, 5)
    q, k, v = (torch.randn(3, 2, n, 5) for n in (7, 9, 9))
    vl = torch.tensor([9, 0, 4])
    assert serves(backend, (q, k, v), {"valid_lens": vl}, score) is None
    truth = attnkit.attention(q.double(), k.double(), v.double(), valid_lens=vl,
                              score=copy.deepcopy(score).double(), backend="reference")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = attnkit.attention(q, k, v, score=score, valid_lens=vl, backend="reference")
        got = attnkit.attention(q, k, v, score=score, valid_lens=vl, backend=backend)
    assert got.dtype == ref.dtype
    within_bound("output", max_err(got, truth), max_err(ref, truth), factor=2,
                 floor=FLOOR[torch.bfloat16])


@pytest.mark.parametrize("backend,score_name", list(UNSERVED))
def test_unserved_pairs_are_refused_with_the_reason(backend, score_name):
    """The pairs left out of the grids above are refused, for the stated reason, on every
    case: leaving them out hides no failure."""
    for case in CASES:
        _, _, tensors, kw, score = oracle_and_reference(case, torch.float32, score_name)
        why = serves(backend, tensors, kw, score)
        assert why is not None and UNSERVED[backend, score_name] in why, (case, why)


def test_case_seeds_do_not_depend_on_the_hash_salt():
    """Inputs are the same in every process: interpreters with different PYTHONHASHSEED
    give every case the same seed (and would not, seeded with ``hash``)."""
    code = ("from tests.backends._seeds import case_seed; "
            f"print([(hash(c), case_seed(c)) for c in {list(CASES)!r}])")
    root = Path(__file__).resolve().parents[2]
    outputs = []
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt}
        done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                              capture_output=True, text=True, timeout=60, check=True)
        outputs.append(ast.literal_eval(done.stdout))
    (hashes1, seeds1), (hashes2, seeds2) = (zip(*pairs) for pairs in outputs)
    assert hashes1 != hashes2  # the salt did change: the check below can fail
    assert seeds1 == seeds2 and len(set(seeds1)) == len(CASES)
    # and the inputs are drawn from that seed
    (q, _, _), _ = make_inputs("plain", torch.float32, "dot", requires_grad=False)
    g = torch.Generator().manual_seed(case_seed("plain"))
    assert torch.equal(q, torch.randn(q.shape, generator=g))


def test_broadcast_batch_dims():
    q = torch.randn(3, 1, 7, 5)  # one query set shared by the heads
    k, v = torch.randn(3, 2, 11, 5), torch.randn(1, 2, 11, 3)
    vl = torch.tensor([4, 11, 0])
    ref = attnkit.attention(q, k, v, valid_lens=vl, backend="reference")
    for backend in ("sdpa", "chunked"):
        torch.testing.assert_close(attnkit.attention(q, k, v, valid_lens=vl, backend=backend),
                                   ref, atol=1e-5, rtol=1e-5)


def test_float64_is_exact_on_every_backend():
    score = Additive(4, 5, 5).double()
    q, k, v = (torch.randn(2, n, 5, dtype=torch.float64) for n in (6, 8, 8))
    ref = attnkit.attention(q, k, v, score=score, valid_lens=torch.tensor([3, 8]),
                            backend="reference")
    got = attnkit.attention(q, k, v, score=score, valid_lens=torch.tensor([3, 8]),
                            backend="chunked")
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=1e-12)


# ------------------------------------------------------------------ auto rules


def test_auto_order_and_reasons():
    assert AUTO_ORDER.index("sdpa") < AUTO_ORDER.index("chunked") < AUTO_ORDER.index("reference")
    q = k = v = torch.randn(2, 4, 5)
    assert attnkit.choose_backend(q, k, v).name == "sdpa"
    assert attnkit.choose_backend(q, k, v, score="distance").name == "sdpa"
    small = attnkit.choose_backend(q, k, v, score=Additive(3, 5, 5))  # 2·4·4·3 terms
    assert small.name == "reference"
    assert "as_dot" in small.passed_over["sdpa"]
    assert "not sdpa" in str(small)
    assert small.passed_over["chunked"] == ("a small additive call (96 query-key-feature "
                                            "terms, under 2,000,000): reference is faster "
                                            "there")
    # the rule's edge: 8·64·64·61 = 1,998,848 terms go to reference, 8·64·64·62 to chunked
    x = torch.randn(8, 64, 5)
    assert attnkit.choose_backend(x, x, x, score=Additive(61, 5, 5)).name == "reference"
    big = attnkit.choose_backend(x, x, x, score=Additive(62, 5, 5))
    assert big.name == "chunked" and "as_dot" in big.passed_over["sdpa"]
    with pytest.raises(ValueError, match="backend='sdpa' cannot serve this call: score 'additive'"):
        attnkit.attention(q, k, v, score=Additive(3, 5, 5), backend="sdpa")


def test_query_valid_lens_validation():
    q = torch.randn(2, 4, 5)
    with pytest.raises(ValueError, match=r"query_valid_lens values must lie in \[0, Nq\]"):
        attnkit.attention(q, q, q, query_valid_lens=torch.tensor([1, 5]))
    with pytest.raises(TypeError, match="query_valid_lens must have an integer dtype"):
        attnkit.attention(q, q, q, query_valid_lens=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"query_valid_lens must have shape \(B,\) = \(2,\)"):
        attnkit.attention(q, q, q, query_valid_lens=torch.tensor([[1, 2]]))
    w = attnkit.attention_weights(q, q, query_valid_lens=torch.tensor([1, 4]))
    assert (w[0, 1:] == 0).all() and torch.allclose(w[0, 0].sum(), torch.tensor(1.0))


# --------------------------------------------------------- planning and budget


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
    """With torch's threads > 1 the blocks are shared out to worker threads (one intra-op
    thread each); outputs and every gradient equal a single worker's, and the
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


def test_chunked_says_how_it_evaluates_additive_blocks():
    """The compiled kernel serves float32 (and low-precision) calls on the CPU; float64
    and ``additive='torch'`` use torch ops; ``additive='compiled'`` refuses what it cannot
    serve, with the reason; the choice is part of ``choose_backend``'s answer."""
    q = torch.randn(2, 3, 4)
    score = Additive(5, 4, 4)
    call32, call64 = make_call(q, q, q, score=score), make_call(*[q.double()] * 3, score=score)
    auto = ChunkedBackend()
    if cpu_additive.status().lib is not None:
        assert auto.additive_choice(call32) == ("compiled", cpu_additive.status().detail)
        assert "how: additive blocks by the compiled kernel" in str(
            attnkit.choose_backend(q, q, q, score=score, backend="chunked"))
    way, why = auto.additive_choice(call64)
    assert way == "torch" and why.startswith("float64 inputs")
    assert ChunkedBackend(additive="torch").additive_choice(call32)[0] == "torch"
    assert ChunkedBackend(additive="compiled").unsupported_reason(call64) == (
        "additive='compiled' cannot serve it: " + why)
    assert ChunkedBackend(additive="compiled").unsupported_reason(
        make_call(q, q, q, score=ScaledDot())) is None  # other scores: not its business
    assert "how" not in str(attnkit.choose_backend(q, q, q))
    with pytest.raises(ValueError, match=r"additive must be one of 'auto', 'compiled', "
                                         r"'torch'; got 'fast'"):
        ChunkedBackend(additive="fast")


def test_chunked_additive_without_the_compiled_kernel_says_why_and_still_serves():
    """A process with ``ATTNKIT_CPU_KERNELS=off`` (as where no compiler exists): torch
    ops, the reason in ``choose_backend``, and the reference's result."""
    code = (
        "import torch, attnkit\nfrom attnkit.scores import Additive\n"
        "torch.manual_seed(0); q = torch.randn(2, 5, 4); s = Additive(6, 4, 4)\n"
        "print(attnkit.choose_backend(q, q, q, score=s, backend='chunked'))\n"
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
        assert _workers(big, q, groups, work) == 2
        assert _workers(big, q, groups[:1], work) == 1  # one group: nothing to share
        assert _workers(big, q, groups, 1e-6) == 1  # too little work
        dropped = make_call(q, q, q, valid_lens=torch.tensor([600, 300]), dropout_p=0.1)
        assert _workers(dropped, q, groups, work) == 1  # dropout: the generator's order
    finally:
        torch.set_num_threads(before)


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
