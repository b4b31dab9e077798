"""The compiled CPU kernel for additive scores (``attnkit/kernels/additive_cpu.c``).

The oracle is the formula in float64; the tolerance is the error of the same formula
evaluated by PyTorch in float32, times 2 (3 for gradients), plus a floor (the rule of
``tests/kernels/_reference.py``); for scores the floor is what the kernel's tanh may add,
``Σ|w| · TANH_MAX_REL_ERR``, and that bound on tanh is tested on its own. Sizes are
distinct odd numbers per axis.
"""

from __future__ import annotations

import pytest
import torch

from attnkit.kernels import cpu_additive
from tests.kernels._reference import max_err, within_bound

BUILT = cpu_additive.status()
needs_lib = pytest.mark.skipif(BUILT.lib is None, reason=f"no compiled kernel: {BUILT.detail}")


def formula(q, k, w):
    """``Σ_f w[f] tanh(q[b, i, f] + k[b, j, f])`` ``(b, Nq, Nk)`` in the inputs' dtype."""
    return (torch.tanh(q[:, :, None, :] + k[:, None, :, :]) * w).sum(-1)


def make(b, nq, nk, h, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    q, k = (scale * torch.randn(b, n, h, generator=g) for n in (nq, nk))
    return q, k, torch.randn(h, generator=g)


@needs_lib
@pytest.mark.parametrize("h", [1, 5, 59])
@pytest.mark.parametrize("scale", [0.3, 3.0], ids=["small", "saturating"])
def test_scores_match_the_float64_formula(h, scale):
    q, k, w = make(3, 7, 13, h, scale=scale)
    truth = formula(q.double(), k.double(), w.double())
    base = max_err(formula(q, k, w), truth)
    out = torch.full((3, 7, 13), float("nan"))
    got = cpu_additive.additive_scores(q, k.transpose(1, 2).contiguous(), w, out)
    assert got is out
    tanh_floor = w.abs().sum().item() * cpu_additive.TANH_MAX_REL_ERR
    within_bound("scores", max_err(out, truth), base, factor=2, floor=2e-6 + tanh_floor)


@needs_lib
def test_scores_on_strided_views_write_only_their_block():
    """A block of a larger slab: keys [4, 11) of a transposed key tensor, written into
    columns [4, 11) of a score slab; nothing outside the block changes."""
    q, k, w = make(5, 9, 17, 6, seed=1)
    kt = k.transpose(1, 2).contiguous()  # (5, 6, 17)
    slab = torch.full((5, 9, 17), -7.0)
    cpu_additive.additive_scores(q[1:4, 2:8], kt[1:4, :, 4:11], w, slab[1:4, 2:8, 4:11])
    truth = formula(q[1:4, 2:8].double(), k[1:4, 4:11].double(), w.double())
    within_bound("block", max_err(slab[1:4, 2:8, 4:11], truth), 0.0, factor=2, floor=2e-6)
    outside = torch.ones_like(slab, dtype=torch.bool)
    outside[1:4, 2:8, 4:11] = False
    assert (slab[outside] == -7.0).all()


@needs_lib
@pytest.mark.parametrize("h", [1, 5, 59])
def test_gradients_match_float64_autograd_and_accumulate(h):
    q, k, w = make(3, 7, 13, h, seed=2, scale=1.5)
    ds = torch.randn(3, 7, 13, generator=torch.Generator().manual_seed(9))
    q64, k64, w64 = (t.double().requires_grad_() for t in (q, k, w))
    truth = torch.autograd.grad((formula(q64, k64, w64) * ds.double()).sum(), [q64, k64, w64])
    q32, k32, w32 = (t.clone().requires_grad_() for t in (q, k, w))
    base = torch.autograd.grad((formula(q32, k32, w32) * ds).sum(), [q32, k32, w32])
    start = [torch.randn(3, 7, h), torch.randn(3, h, 13), torch.randn(h)]  # added to
    dq, dkt, dw = (t.clone() for t in start)
    cpu_additive.additive_grads(q, k.transpose(1, 2).contiguous(), w, ds, dq, dkt, dw)
    got = [dq - start[0], (dkt - start[1]).transpose(1, 2), dw - start[2]]
    for name, g, t, b in zip(("dq", "dk", "dw"), got, truth, base):
        within_bound(name, max_err(g, t), max_err(b, t), factor=3, floor=2e-5)


@needs_lib
def test_tanh_is_accurate_saturates_and_propagates_nan():
    """h = 1, w = 1, keys 0: the score is tanh(q) itself, over [-20, 20] and the edges."""
    grid = torch.linspace(-20, 20, 400001)
    tiny = torch.logspace(-30, 1.3, 2001)
    x = torch.cat([grid, tiny, -tiny, torch.tensor([0.0, float("inf"), -float("inf"),
                                                    float("nan")])])
    out = torch.empty(1, 1, x.numel())  # keys along the vectorized loop, and one by one:
    cpu_additive.additive_scores(torch.zeros(1, 1, 1), x.reshape(1, 1, -1), torch.ones(1), out)
    one = torch.empty(1, x.numel(), 1)
    cpu_additive.additive_scores(x.reshape(1, -1, 1), torch.zeros(1, 1, 1), torch.ones(1), one)
    truth = torch.tanh(x.double())
    for got in (out.reshape(-1), one.reshape(-1)):
        finite = x.isfinite()
        rel = (got[finite].double() - truth[finite]).abs() / truth[finite].abs().clamp_min(1e-38)
        assert rel.max() <= cpu_additive.TANH_MAX_REL_ERR, f"tanh relative error {rel.max():.3g}"
        assert got[-4] == 0 and got[-1].isnan()
        assert abs(got[-3] - 1) <= 1.2e-7 and abs(got[-2] + 1) <= 1.2e-7
        assert (got[:-1].sign() == x[:-1].sign()).all()
        assert got[:-1].abs().le(1 + cpu_additive.TANH_MAX_REL_ERR).all()


@needs_lib
def test_bad_arguments_name_the_argument():
    q, k, w = make(2, 3, 4, 5)
    kt, out = k.transpose(1, 2).contiguous(), torch.empty(2, 3, 4)
    with pytest.raises(ValueError, match=r"q must be a float32 CPU tensor; got torch.float64"):
        cpu_additive.additive_scores(q.double(), kt, w, out)
    with pytest.raises(ValueError, match=r"w must have shape \(5,\); got \(4,\)"):
        cpu_additive.additive_scores(q, kt, w[:4], out)
    with pytest.raises(ValueError, match=r"kt must be contiguous in its last dimension"):
        cpu_additive.additive_scores(q, k.transpose(1, 2), w, out)
    with pytest.raises(ValueError, match=r"out must have shape \(2, 3, 4\); got \(2, 4, 3\)"):
        cpu_additive.additive_scores(q, kt, w, out.transpose(1, 2))
    with pytest.raises(ValueError, match=r"dkt must have shape \(2, 5, 4\)"):
        cpu_additive.additive_grads(q, kt, w, out, torch.zeros(2, 3, 5), torch.zeros(2, 4, 5),
                                    torch.zeros(5))
