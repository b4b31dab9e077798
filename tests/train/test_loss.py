"""The label-smoothed loss and its fused kernel against torch's cross entropy: values,
gradients (gradcheck) and the errors it raises."""

import pytest
import torch
import torch.nn.functional as F

from attnkit.train.loss import smoothed_loss


def test_smoothed_loss_equals_torch_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g)
    target = torch.randint(1, 11, (3, 5), generator=g)
    target[0, 3:] = 0
    loss, nll, n = smoothed_loss(logits, target, epsilon=0.1)
    want = F.cross_entropy(logits.reshape(-1, 11), target.reshape(-1), label_smoothing=0.1,
                           ignore_index=0, reduction="sum")
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(nll, F.cross_entropy(logits.reshape(-1, 11), target.reshape(-1),
                                                    ignore_index=0, reduction="sum"))
    assert n == int((target != 0).sum())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.35])
def test_fused_smoothed_loss_matches_cross_entropy_forward_and_gradient(dtype, epsilon):
    g = torch.Generator().manual_seed(1)
    logits = (3 * torch.randn(4, 6, 13, generator=g, dtype=torch.float64)).to(dtype)
    target = torch.randint(1, 13, (4, 6), generator=g)
    target[1, 2:] = 0  # padding
    target[3] = 0  # a row of nothing but padding
    x = logits.detach().requires_grad_()
    loss, nll, n = smoothed_loss(x, target, epsilon=epsilon)
    (grad,) = torch.autograd.grad(loss, x)
    y = logits.detach().double().requires_grad_()
    want = F.cross_entropy(y.reshape(-1, 13), target.reshape(-1), label_smoothing=epsilon,
                           ignore_index=0, reduction="sum")
    (want_grad,) = torch.autograd.grad(want, y)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss.double(), want, **tol)
    grad_tol = tol if dtype != torch.bfloat16 else dict(rtol=1e-2, atol=4e-3)
    assert grad.dtype == dtype
    torch.testing.assert_close(grad.double(), want_grad, **grad_tol)
    assert (grad[3] == 0).all() and (grad[1, 2:] == 0).all()  # padding gets no gradient
    assert n == int((target != 0).sum())
    # the packed form (valid rows only) gives the same loss and the same gradients there
    keep = target != 0
    xp = logits.detach()[keep].requires_grad_()
    loss_p, nll_p, n_p = smoothed_loss(xp, target[keep], epsilon=epsilon)
    (grad_p,) = torch.autograd.grad(loss_p, xp)
    torch.testing.assert_close(loss_p, loss, **tol)
    torch.testing.assert_close(nll_p, nll, **tol)
    torch.testing.assert_close(grad_p, grad[keep], rtol=0, atol=0)
    assert n_p == n


def test_fused_smoothed_loss_gradcheck_and_errors():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1, 0, 6, 3, 2])
    assert torch.autograd.gradcheck(lambda x: smoothed_loss(x, target, epsilon=0.2)[0],
                                    (logits,))
    with pytest.raises(ValueError, match=r"target must have the shape of logits"):
        smoothed_loss(logits, target[:4], epsilon=0.1)
    with pytest.raises(ValueError, match=r"epsilon must be a number in \[0, 1\); got 1.5"):
        smoothed_loss(logits, target, epsilon=1.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [0, 1, 40])
def test_the_loss_walks_a_large_vocabulary_in_blocks_of_rows_with_the_same_answer(dtype, rows):
    """5,000 classes: blocks of 13 rows (the last of 40 rows holds one), and no rows."""
    from attnkit.train import loss as loss_module

    V = 5000
    assert len(loss_module._row_blocks(40, V)) == 4
    g = torch.Generator().manual_seed(3)
    logits = (4 * torch.randn(rows, V, generator=g, dtype=torch.float64)).to(dtype)
    target = torch.randint(1, V, (rows,), generator=g)
    target[::7] = 0
    x = logits.detach().requires_grad_()
    loss, nll, n = smoothed_loss(x, target, epsilon=0.1)
    (grad,) = torch.autograd.grad(loss, x)
    y = logits.detach().double().requires_grad_()
    want = F.cross_entropy(y, target, label_smoothing=0.1, ignore_index=0, reduction="sum")
    (want_grad,) = torch.autograd.grad(want, y)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-2, atol=4e-3)
    torch.testing.assert_close(loss.double(), want, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grad.double(), want_grad, **tol)
    assert grad.shape == (rows, V) and n == int((target != 0).sum())
