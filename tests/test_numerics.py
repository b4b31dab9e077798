"""Half precision on the materialized paths: scores in float32, never inf/NaN where the
fused path is finite.

Inputs of large magnitude (entries ~200, D = 16) make ``q·k`` overflow fp16's 65504 when
multiplied in fp16; a small score scale brings the logits back to O(1), so the weights
are a real distribution worth comparing. The oracle is float64 on the same (fp16-exact)
inputs; the tolerance follows the error-relative rule of the backend tests
(``tests/kernels/_reference.py``): the output and gradients against the fused ``sdpa``
backend in fp16, the weights against the oracle's own weights rounded to fp16.
"""

from __future__ import annotations

import copy

import pytest
import torch

import attnkit
from attnkit.scores import Additive, Bilinear, Distance, ScaledDot
from tests.kernels._reference import OUTPUT_FACTOR, check_against_baseline, max_err, within_bound

FLOOR = 5e-4  # fp16: a few units in the last place of O(1) values
SCALE = 200.0  # input magnitude: q·k ~ 200² · √16 · N(0, 1) overflows fp16


def large_scores():
    torch.manual_seed(0)
    bilinear = Bilinear(16, 16)
    with torch.no_grad():
        bilinear.M.mul_(1e-4)  # logits O(1) from inputs O(200)
    return {
        "scaled_dot": ScaledDot(scale=1e-5),
        "dot_default_scale": ScaledDot(),  # logits O(1e4): one-hot rows, still finite
        "distance": Distance(sigma=400.0),
        "bilinear": bilinear,
        "additive": Additive(8, 16, 16),
    }


def large_inputs():
    g = torch.Generator().manual_seed(5)
    q = (SCALE * torch.randn(3, 2, 7, 16, generator=g)).half()  # (B, H, Nq, D)
    k = (SCALE * torch.randn(3, 2, 11, 16, generator=g)).half()  # (B, H, Nk, D)
    v = torch.randn(3, 2, 11, 5, generator=g).half()  # (B, H, Nk, Dv)
    return q, k, v


def run(q, k, v, score, **kw):
    """Output, weights and gradients of ``sum(out * r)`` for a fixed random ``r``."""
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    out, w = attnkit.attention(q, k, v, score=score, return_weights=True, **kw)
    r = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).to(out.dtype)
    grads = torch.autograd.grad((out * r).sum(), [q, k, v])
    return out, w, grads


def test_fp16_product_of_these_inputs_overflows():
    q, k, _ = large_inputs()
    assert not torch.isfinite(q @ k.transpose(-1, -2)).all()  # the case being tested


@pytest.mark.parametrize("name", list(large_scores()))
@pytest.mark.parametrize("valid_lens", [None, "with_empty_row"])
def test_weights_and_reference_are_finite_and_match_float64(name, valid_lens):
    score = large_scores()[name].half()
    q, k, v = large_inputs()
    kw = {} if valid_lens is None else {"valid_lens": torch.tensor([11, 0, 4])}
    out, w, grads = run(q, k, v, score, **kw)
    out64, w64, grads64 = run(q.double(), k.double(), v.double(),
                              copy.deepcopy(score).double(), **kw)
    assert out.dtype == w.dtype == torch.float16
    assert torch.isfinite(w).all() and torch.isfinite(out).all()
    # weights: no worse than twice the rounding of the exact weights to fp16
    within_bound("weights", max_err(w, w64), max_err(w64.half(), w64), factor=OUTPUT_FACTOR,
                 floor=FLOOR)
    assert torch.equal(attnkit.attention_weights(q, k, score=score, **kw), w)
    if name == "additive":  # no fused dot form; compare against chunked
        fused = run(q, k, v, score, backend="chunked", **kw)
    else:
        fused = run(q, k, v, score, backend="sdpa", **kw)
    ref_out = attnkit.attention(q, k, v, score=score, backend="reference", **kw)
    assert torch.equal(ref_out, out)  # one materialized computation
    check_against_baseline((out, grads), (fused[0], fused[2]), (out64, grads64), floor=FLOOR,
                           grad_floor=3 * FLOOR, names=["q", "k", "v"])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_masked_softmax_of_half_scores_is_computed_in_float32(dtype):
    x = torch.tensor([[[60000.0, 59990.0, -60000.0]]]).to(dtype)  # (1, 1, 3)
    w = attnkit.masked_softmax(x, torch.tensor([2]))
    assert w.dtype == dtype and torch.isfinite(w).all() and w[0, 0, 2] == 0
    expected = torch.softmax(x.double()[..., :2], -1)
    assert max_err(w[..., :2], expected) <= 2 * max_err(expected.to(dtype), expected) + 1e-3
