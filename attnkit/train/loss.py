"""Label-smoothed cross-entropy ("Attention Is All You Need" §5.4), fused.

With smoothing ``ε`` over ``V`` classes, the target distribution puts
``1 − ε`` on the reference token and spreads ``ε`` uniformly over the
vocabulary (the convention of ``F.cross_entropy(label_smoothing=ε)``), so
the loss of one position with logits ``x`` and reference ``y`` is ::

    ℓ = (1 − ε)·(lse(x) − x_y) + ε·(lse(x) − mean(x)),   lse(x) = log Σ_v exp(x_v)

and its gradient is ``softmax(x) − (1 − ε)·onehot(y) − ε/V``.

:class:`_SmoothedNLL` computes both directly: the forward keeps only
``lse`` per row, and the backward writes the gradient into one new
``(n, V)`` tensor. The composition ``log_softmax → gather → mean`` that
autograd would differentiate allocates three or four tensors of that size
(the log-probabilities, their gradient, the zero-filled gradient of the
gather, the sum of the two), and for a vocabulary of thousands these are
the largest tensors of a training step: allocating and first touching them
cost as much as a layer's matrix products. Float32 and bfloat16 logits on the CPU
are walked once per direction by compiled code (:mod:`attnkit.kernels.cpu_loss`:
bfloat16 read as it is and its gradient written in bfloat16, where torch ops would make
float32 copies); elsewhere, and for rows with values that are not finite, torch ops walk
the logits in blocks of rows small enough to stay in the cache
(:data:`_BLOCK_ELEMENTS`), so the several passes over a row cost about one pass over
memory.
"""

from __future__ import annotations

import torch

from .._values import check_probability
from ..data.tokenizer import PAD_ID
from ..kernels import cpu_loss

__all__ = ["smoothed_loss"]


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


#: float32 elements of the logits one block of rows holds (256 KiB): the loss walks the
#: ``(n, V)`` logits in blocks of rows, so each block's passes (max, exp, sum; in backward
#: exp, subtract, scale) find it in the cache and no temporary of the full size is made
_BLOCK_ELEMENTS = 1 << 16


def _row_blocks(n: int, V: int) -> range:
    """Start rows of the blocks of :data:`_BLOCK_ELEMENTS` (at least one row each)."""
    return range(0, n, max(1, _BLOCK_ELEMENTS // max(1, V)))


def _block_stats(x: torch.Tensor, lse: torch.Tensor, mean: torch.Tensor) -> None:
    """``lse`` and ``mean`` of the rows of ``x`` ``(rows, V)`` (at least float32), written
    into the given ``(rows,)`` tensors."""
    torch.logsumexp(x, -1, out=lse)
    torch.mean(x, -1, out=mean)


def _block_gradient(x: torch.Tensor, lse: torch.Tensor, eps: float, out: torch.Tensor) -> None:
    """``softmax(x) − ε/V`` of the rows of ``x`` ``(rows, V)``, written into ``out``."""
    g = torch.sub(x, lse.unsqueeze(-1), out=out)
    g.exp_().sub_(eps / x.shape[-1])


class _SmoothedNLL(torch.autograd.Function):
    """Per-row ``(loss, nll)`` of logits ``(n, V)`` and targets ``(n,)``.

    Float32 and bfloat16 logits on the CPU go through the compiled passes of
    :mod:`attnkit.kernels.cpu_loss` (bfloat16 read as it is, its gradient written in
    bfloat16); other logits, and any row with a value that is not finite, through torch
    ops on blocks of rows."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, epsilon: float):
        n, V = logits.shape
        dtype = torch.promote_types(logits.dtype, torch.float32)
        if n and cpu_loss.usable(logits):
            top, sumexp, total = cpu_loss.row_stats(logits)
            lse, mean = top + sumexp.log(), total / V
            for i in torch.nonzero(~torch.isfinite(total)).flatten().tolist():
                _block_stats(_at_least_fp32(logits[i:i + 1]), lse[i:i + 1], mean[i:i + 1])
        else:
            lse, mean = logits.new_empty(n, dtype=dtype), logits.new_empty(n, dtype=dtype)
            blocks = _row_blocks(n, V)
            for i in blocks:
                rows = slice(i, i + blocks.step)
                _block_stats(_at_least_fp32(logits[rows]), lse[rows], mean[rows])
        picked = _at_least_fp32(logits.gather(-1, target.unsqueeze(-1)).squeeze(-1))  # (n,)
        nll = lse - picked  # (n,)
        loss = (1 - epsilon) * nll + epsilon * (lse - mean)  # (n,)
        ctx.save_for_backward(logits, target, lse)
        ctx.epsilon = epsilon
        ctx.mark_non_differentiable(nll)
        return loss, nll

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, _grad_nll: torch.Tensor):
        logits, target, lse = ctx.saved_tensors
        eps, (n, V) = ctx.epsilon, logits.shape
        if n and cpu_loss.usable(logits) and lse.dtype == torch.float32:
            grad = torch.empty_like(logits)  # (n, V), the logits' dtype
            cpu_loss.gradient(logits, target, lse, grad_loss.float().contiguous(), eps, grad)
            for i in torch.nonzero(~torch.isfinite(lse)).flatten().tolist():
                row = torch.empty(1, V, dtype=lse.dtype)
                _block_gradient(_at_least_fp32(logits[i:i + 1]), lse[i:i + 1], eps, row)
                row[0, target[i]] += eps - 1
                grad[i] = (row[0] * grad_loss[i]).to(grad.dtype)
            return grad, None, None
        grad = torch.empty_like(logits, dtype=lse.dtype)  # (n, V)
        blocks = _row_blocks(n, V)
        for i in blocks:
            rows = slice(i, i + blocks.step)
            _block_gradient(logits[rows], lse[rows], eps, grad[rows])
        grad.scatter_add_(-1, target.unsqueeze(-1),
                          torch.full_like(lse, eps - 1).unsqueeze(-1))  # − (1 − ε) at y
        grad.mul_(grad_loss.unsqueeze(-1))
        return grad.to(logits.dtype), None, None


def smoothed_loss(logits: torch.Tensor, target: torch.Tensor, *, epsilon: float,
                  pad_id: int = PAD_ID) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Summed label-smoothed loss, summed NLL and token count over non-pad targets.

    logits ``(..., V)``, target ``(...)`` integer: ``(B, T, V)`` and ``(B, T)``,
    or the valid positions only, ``(n, V)`` and ``(n,)`` (the ``only_valid=True``
    logits of the models and :func:`attnkit.train.step.valid_targets`).
    Targets equal to ``pad_id`` contribute nothing. Equals
    ``F.cross_entropy(..., label_smoothing=epsilon, ignore_index=pad_id,
    reduction="sum")`` (and its gradient), computed in float32 (float64 stays).

    Raises:
        ValueError: shapes that do not match, or ``epsilon`` outside ``[0, 1)``.
    """
    if logits.ndim < 1 or tuple(target.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"target must have the shape of logits without its last dim; got logits "
            f"{tuple(logits.shape)} and target {tuple(target.shape)}"
        )
    check_probability("epsilon", epsilon)
    V = logits.shape[-1]
    keep = target != pad_id  # (...)
    flat_target = target.reshape(-1).long()
    loss_rows, nll_rows = _SmoothedNLL.apply(logits.reshape(-1, V), flat_target,
                                             float(epsilon))  # (N,), (N,)
    keep_rows = keep.reshape(-1)  # pad rows: no loss, no gradient
    zero = loss_rows.new_zeros(())
    loss = torch.where(keep_rows, loss_rows, zero).sum()
    return loss, torch.where(keep_rows, nll_rows, zero).sum().detach(), int(keep.sum())
