"""attnkit.nn.Dropout: the keep rate, the scale, gradients, determinism, and the edge cases."""

import pytest
import torch
from torch import nn

from attnkit.nn import Dropout
from attnkit.nn.dropout import dropout


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_keep_rate_scale_and_unbiased_mean(p):
    torch.manual_seed(0)
    x = torch.ones(1_000_003)  # odd size: not a multiple of the four uniforms per draw
    y = dropout(x, p)
    kept = y != 0
    p_rounded = round(p * 65536) / 65536
    assert abs(p_rounded - p) <= 2 ** -17
    frac = kept.double().mean().item()
    sd = (p * (1 - p) / x.numel()) ** 0.5
    assert abs((1 - frac) - p) < 5 * sd  # drop rate is p (5 standard deviations)
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p_rounded)))
    # pattern has no period of four (each of the four 16-bit lanes is used)
    lanes = kept[: 4 * (x.numel() // 4)].view(-1, 4).double().mean(0)
    assert (lanes - (1 - p)).abs().max() < 5 * 2 * sd


def test_gradient_is_the_mask_times_the_scale_and_dtypes_are_kept():
    torch.manual_seed(1)
    x = torch.randn(7, 13, dtype=torch.float64, requires_grad=True)
    y = dropout(x, 0.25)
    (g,) = torch.autograd.grad(y.sum(), x)
    scale = 1 / (1 - round(0.25 * 65536) / 65536)
    torch.testing.assert_close(g, (y != 0).double() * scale)
    torch.testing.assert_close(y, x.detach() * g)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        assert dropout(torch.randn(5, 3).to(dtype), 0.1).dtype == dtype
    assert dropout(x.detach().t(), 0.5).shape == (13, 7)  # non-contiguous input


def test_seeded_module_eval_mode_and_edge_probabilities():
    m = Dropout(0.2)
    assert isinstance(m, nn.Dropout) and m.p == 0.2
    x = torch.randn(4, 9)
    torch.manual_seed(5)
    a = m(x)
    torch.manual_seed(5)
    assert torch.equal(m(x), a)  # torch.manual_seed reproduces the mask
    assert not torch.equal(m(x), a)
    m.eval()
    assert m(x) is x
    assert dropout(x, 0.0) is x and dropout(x, 0.5, training=False) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    assert dropout(x, 1e-7) is x  # rounds to no drop at all


@pytest.mark.parametrize("p", [float("nan"), -0.1, 1.5])
def test_a_probability_outside_0_1_is_refused_naming_it(p):
    with pytest.raises(ValueError, match=r"dropout probability p must be in \[0, 1\]; got "):
        dropout(torch.ones(3), p)


def test_a_probability_within_2_to_the_minus_17_of_0_or_1():
    """0.999995 rounds to 2^16 of 2^16 levels (every element dropped: torch's own dropout,
    not a division by zero); 1e-6 rounds to none (the input, unchanged)."""
    x = torch.ones(1000)
    for dtype in (torch.float32, torch.bfloat16):
        y = dropout(x.to(dtype), 0.999995)
        assert y.dtype == dtype and int((y != 0).sum()) <= 2
        assert torch.equal(dropout(x.to(dtype), 1e-6), x.to(dtype))
