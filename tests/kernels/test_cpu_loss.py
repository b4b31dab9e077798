"""The compiled passes of the label-smoothed loss (``attnkit/kernels/loss_cpu.c``) against
the torch-op path of :mod:`attnkit.train.loss` (the oracle): values and gradients for
float32 and bfloat16 logits, odd vocabulary sizes, rows with values that are not finite,
rows of a wider matrix, and bad arguments."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnkit.kernels import cpu_loss
from attnkit.train import loss as loss_module
from attnkit.train.loss import smoothed_loss

BUILT = cpu_loss.status()
needs_lib = pytest.mark.skipif(BUILT.lib is None, reason=f"no compiled kernel: {BUILT.detail}")
INF, NAN = float("inf"), float("nan")


def _loss_and_grad(logits, target, epsilon, *, kernel: bool, monkeypatch, g=None):
    if not kernel:
        monkeypatch.setattr(loss_module.cpu_loss, "usable", lambda _logits: False)
    x = logits.detach().clone().requires_grad_()
    loss, nll, n = smoothed_loss(x, target, epsilon=epsilon)
    (grad,) = torch.autograd.grad(loss * (1.0 if g is None else g), x)
    monkeypatch.undo()
    return loss.detach(), nll, n, grad


@needs_lib
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("V", [1, 7, 16, 33, 6000])
def test_kernel_equals_the_torch_path_values_and_gradients(dtype, V, monkeypatch):
    g = torch.Generator().manual_seed(V)
    n = 29
    logits = (4 * torch.randn(n, V, generator=g)).to(dtype)
    target = torch.randint(0, V, (n,), generator=g)
    target[::5] = 0  # padding rows: no loss, no gradient
    assert cpu_loss.usable(logits)
    got = _loss_and_grad(logits, target, 0.1, kernel=True, monkeypatch=monkeypatch, g=1 / 97)
    want = _loss_and_grad(logits, target, 0.1, kernel=False, monkeypatch=monkeypatch, g=1 / 97)
    torch.testing.assert_close(got[0], want[0], rtol=2e-6, atol=2e-5)
    torch.testing.assert_close(got[1], want[1], rtol=2e-6, atol=2e-5)
    assert got[2] == want[2] == int((target != 0).sum())
    assert got[3].dtype == dtype
    # bfloat16: the same float32 value may round to neighbouring bfloat16 numbers
    tol = dict(rtol=1e-5, atol=5e-8) if dtype == torch.float32 else dict(rtol=8e-3, atol=1e-9)
    torch.testing.assert_close(got[3], want[3], **tol)
    assert (got[3][target == 0] == 0).all()
    ref = F.cross_entropy(logits.double(), target, label_smoothing=0.1, ignore_index=0,
                          reduction="sum")
    torch.testing.assert_close(got[0].double(), ref, rtol=1e-5, atol=1e-4)


@needs_lib
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rows_with_values_that_are_not_finite_are_the_torch_paths(dtype, monkeypatch):
    """+inf, -inf, NaN, a row of -inf only and a row that overflows a float32 sum: those
    rows' losses and gradients are the torch path's (NaN where it has NaN), the rest too."""
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(8, 40, generator=g)
    logits[1, 3] = INF
    logits[2, 5] = -INF
    logits[3, 7] = NAN
    logits[4] = -INF
    logits[5, :20] = 3e38  # finite (in bfloat16 too), its sum is not
    logits = logits.to(dtype)
    target = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8])
    got = _loss_and_grad(logits, target, 0.1, kernel=True, monkeypatch=monkeypatch)
    want = _loss_and_grad(logits, target, 0.1, kernel=False, monkeypatch=monkeypatch)
    for a, b in ((got[0], want[0]), (got[1], want[1]), (got[3], want[3])):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert torch.isfinite(got[3][[0, 6, 7]]).all()


@needs_lib
def test_rows_of_a_wider_matrix_are_read_in_place():
    """Logits that are the first V columns of a wider matrix (row stride > V)."""
    g = torch.Generator().manual_seed(5)
    wide = torch.randn(6, 50, generator=g)
    view = wide[:, :37]
    assert cpu_loss.usable(view) and not view.is_contiguous()
    top, sumexp, total = cpu_loss.row_stats(view)
    torch.testing.assert_close(top, view.max(-1).values, rtol=0, atol=0)
    torch.testing.assert_close(top + sumexp.log(), torch.logsumexp(view, -1))
    torch.testing.assert_close(total, view.sum(-1))
    lse, target = torch.logsumexp(view, -1), torch.randint(0, 37, (6,), generator=g)
    out = torch.full((6, 60), 7.0)[:, :37]
    rows = torch.rand(6, generator=g)
    cpu_loss.gradient(view, target, lse, rows, 0.2, out)
    want = (torch.softmax(view, -1) - 0.2 / 37 - 0.8 * F.one_hot(target, 37)) * rows[:, None]
    torch.testing.assert_close(out, want)
    assert (out.as_strided((6, 23), (60, 1), 37) == 7.0).all()  # beyond V: untouched


@needs_lib
def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match=r"logits must be a 2-D float32 or bfloat16 CPU tensor"
                                         r".*got \(3,\) torch.float32"):
        cpu_loss.row_stats(torch.zeros(3))
    with pytest.raises(ValueError, match=r"logits must be .*got \(2, 3\) torch.float64"):
        cpu_loss.row_stats(torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"logits must be .*got list"):
        cpu_loss.row_stats([[1.0]])
    x = torch.zeros(2, 3)
    good = dict(target=torch.zeros(2, dtype=torch.int64), lse=torch.zeros(2),
                grad_rows=torch.ones(2), epsilon=0.1, out=torch.empty(2, 3))
    with pytest.raises(ValueError, match=r"out must be torch.float32 \(2, 3\) with contiguous "
                                         r"rows; got torch.bfloat16"):
        cpu_loss.gradient(x, **{**good, "out": torch.empty(2, 3, dtype=torch.bfloat16)})
    with pytest.raises(ValueError, match=r"target must be a contiguous torch.int64 tensor of "
                                         r"shape \(2,\); got torch.int32 \(2,\)"):
        cpu_loss.gradient(x, **{**good, "target": torch.zeros(2, dtype=torch.int32)})
    with pytest.raises(ValueError, match=r"lse must be a contiguous torch.float32 tensor of "
                                         r"shape \(2,\); got torch.float32 \(3,\)"):
        cpu_loss.gradient(x, **{**good, "lse": torch.zeros(3)})
