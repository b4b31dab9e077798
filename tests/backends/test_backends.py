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
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import attnkit
from attnkit.backends import AUTO_ORDER, BUILT_IN, register_backend
from attnkit.backends.chunked import ChunkedBackend
from attnkit.functional import make_call
from attnkit.scores import Additive
from tests.backends._cases import (
    CASES,
    FLOOR,
    make_inputs,
    make_score,
    oracle_and_reference,
    run,
)
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


SCORES = ["dot", "scaled_dot", "distance", "bilinear", "additive"]


def served(backends, score_names):
    """The (backend, score_name) grid without the pairs in ``UNSERVED``."""
    return [pytest.param(b, s, id=f"{b}-{s}") for b in backends for s in score_names
            if (b, s) not in UNSERVED and (b != "chunked-torch-ops" or s == "additive")]


def serves(backend, tensors, kw, score):
    q, k, v = tensors
    try:
        attnkit.explain_backend(q, k, v, score=score, backend=backend, **kw)
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
    # the order is stated once, with the backends; a registered one is inserted into it
    assert [b.name for b in BUILT_IN] == ["triton", "sdpa", "chunked", "reference"]
    assert AUTO_ORDER[:1] == ["triton"] and AUTO_ORDER[-3:] == ["sdpa", "chunked", "reference"]
    q = k = v = torch.randn(2, 4, 5)
    assert attnkit.explain_backend(q, k, v).name == "sdpa"
    assert attnkit.explain_backend(q, k, v, score="distance").name == "sdpa"
    small = attnkit.explain_backend(q, k, v, score=Additive(3, 5, 5))  # 2·4·4·3 terms
    assert small.name == "reference"
    assert "as_dot" in small.passed_over["sdpa"]
    assert "not sdpa" in str(small)
    assert small.passed_over["chunked"] == ("a small additive call (96 query-key-feature "
                                            "terms, under 2,000,000): reference is faster "
                                            "there")
    # the rule's edge: 8·64·64·61 = 1,998,848 terms go to reference, 8·64·64·62 to chunked
    x = torch.randn(8, 64, 5)
    assert attnkit.explain_backend(x, x, x, score=Additive(61, 5, 5)).name == "reference"
    big = attnkit.explain_backend(x, x, x, score=Additive(62, 5, 5))
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


def test_explain_choice_is_a_deprecated_name_of_explain_backend():
    from attnkit.backends import explain_backend, explain_choice

    call = make_call(*(torch.randn(2, 3, 4) for _ in range(3)))
    with pytest.warns(DeprecationWarning, match=r"^attnkit.backends.explain_choice is "
                                                r"deprecated: it is now called "
                                                r"attnkit.backends.explain_backend$"):
        assert explain_choice(call) == explain_backend(call)
