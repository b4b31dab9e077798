"""The compiled CPU dropout (``attnkit/kernels/dropout_cpu.c``): the rule, the gradients
(first and second order), determinism under ``torch.manual_seed`` and bad arguments. The
keep rate, its four 16-bit lanes and the scale are tested through
:func:`attnkit.nn.dropout.dropout` (tests/nn/test_dropout.py), which takes this kernel
for float32 and bfloat16 CPU tensors."""

from __future__ import annotations

import pytest
import torch

from attnkit.kernels import cpu_dropout

BUILT = cpu_dropout.status()
needs_lib = pytest.mark.skipif(BUILT.lib is None, reason=f"no compiled kernel: {BUILT.detail}")
THRESHOLD = 6554  # round(0.1 · 2^16)
SCALE = 65536 / (65536 - THRESHOLD)


@needs_lib
def test_gradient_is_the_mask_times_the_scale_and_second_order_follows():
    torch.manual_seed(2)
    x = torch.randn(37, 11, requires_grad=True)  # 407 elements: not a multiple of four
    y = cpu_dropout.dropout(x, THRESHOLD, SCALE)
    kept = y != 0
    assert 0.8 < kept.float().mean() < 0.97
    torch.testing.assert_close(y[kept], x.detach()[kept] * SCALE)
    g = torch.randn(37, 11)
    (gx,) = torch.autograd.grad(y, x, g, create_graph=True)
    torch.testing.assert_close(gx, g * kept * SCALE)
    # the backward is linear in g with the same mask: d(gx · w)/dg = w · mask · scale
    w = torch.randn(37, 11)
    g2 = g.clone().requires_grad_()
    y2 = cpu_dropout.dropout(x, THRESHOLD, SCALE)
    (gx2,) = torch.autograd.grad(y2, x, g2, create_graph=True)
    (gg,) = torch.autograd.grad((gx2 * w).sum(), g2)
    torch.testing.assert_close(gg, w * (y2 != 0) * SCALE)


@needs_lib
def test_the_seed_comes_from_torchs_generator_and_no_grad_keeps_no_mask():
    x = torch.randn(5, 1001)
    torch.manual_seed(7)
    a = cpu_dropout.dropout(x, THRESHOLD, SCALE)
    torch.manual_seed(7)
    b = cpu_dropout.dropout(x, THRESHOLD, SCALE)
    assert torch.equal(a, b) and not torch.equal(cpu_dropout.dropout(x, THRESHOLD, SCALE), a)
    state = torch.get_rng_state()
    c = cpu_dropout.dropout(x.t(), THRESHOLD, SCALE)  # a transposed view: read in its order
    torch.set_rng_state(state)
    assert torch.equal(cpu_dropout.dropout(x.t().contiguous(), THRESHOLD, SCALE), c)
    with torch.no_grad():
        assert cpu_dropout.dropout(x, THRESHOLD, SCALE).grad_fn is None


@needs_lib
def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match=r"x must be a float32 or bfloat16 CPU tensor; got "
                                         r"torch.float64"):
        cpu_dropout.dropout(torch.zeros(3, dtype=torch.float64), THRESHOLD, SCALE)
    with pytest.raises(ValueError, match=r"x must be a float32 or bfloat16 CPU tensor; got list"):
        cpu_dropout.dropout([1.0], THRESHOLD, SCALE)
    for bad in (0, 65536):
        with pytest.raises(ValueError, match=rf"threshold must be in \[1, 65536\); got {bad}"):
            cpu_dropout.dropout(torch.zeros(3), bad, SCALE)


@needs_lib
@pytest.mark.parametrize("n", [1, 31, 32, 407, 4096 + 5])
def test_bfloat16_gets_the_float32_mask_and_torchs_bfloat16_values(n):
    """The same seed drops the same elements of a bfloat16 tensor as of a float32 one of its
    size; kept values and gradients are torch's bfloat16 ``x * scale`` (rounded once), NaN
    and infinities included, and the gradient is bfloat16."""
    g = torch.Generator().manual_seed(n)
    x = (10 * torch.randn(n, generator=g)).bfloat16()
    if n > 3:
        x[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    torch.manual_seed(11)
    y32 = cpu_dropout.dropout(x.float(), THRESHOLD, SCALE)
    torch.manual_seed(11)
    xb = x.clone().requires_grad_()
    yb = cpu_dropout.dropout(xb, THRESHOLD, SCALE)
    kept = y32 != 0  # (a kept NaN is NaN, not 0)
    assert yb.dtype == torch.bfloat16 and torch.equal(yb != 0, kept)
    want = torch.where(kept, x * SCALE, torch.zeros((), dtype=torch.bfloat16))
    torch.testing.assert_close(yb.detach(), want, rtol=0, atol=0, equal_nan=True)
    gy = torch.randn(n, generator=g).bfloat16()
    (gx,) = torch.autograd.grad(yb, xb, gy)
    assert gx.dtype == torch.bfloat16
    torch.testing.assert_close(gx, torch.where(kept, gy * SCALE, torch.zeros_like(gy)),
                               rtol=0, atol=0)
