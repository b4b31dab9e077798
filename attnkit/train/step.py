"""One training step, the same wherever a step is taken or timed.

The trainer, its validation loss and every benchmark that times training use
these functions, so a benchmark measures the step that training runs:

* the model is asked for logits at the valid target positions only
  (``only_valid=True``: ``(n_valid, V)``, no padded rows through the output layer);
* the loss is the fused label-smoothed cross entropy of :mod:`attnkit.train.loss`,
  summed over those positions, with its NLL part and the token count;
* a step divides the summed loss by the tokens it covers before ``backward``.

A step whose loss or gradient norm is not finite is never applied:
:func:`step_fault` names what went wrong and the trainer stops there with
:class:`TrainingDiverged`, keeping its last finite checkpoint.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch

from ..nn import select_valid
from .loss import smoothed_loss

__all__ = ["TrainingDiverged", "batch_loss", "lr_fault", "step_fault", "training_step",
           "valid_targets"]

#: the largest step an optimizer can add to float32 weights (its scalar must fit float32)
_FLOAT32_MAX = torch.finfo(torch.float32).max


class TrainingDiverged(ValueError):
    """Training met a loss, gradient norm or weight that is not finite and stopped there;
    the message names the step, the quantity, what to change, and the last finite
    checkpoint (a user error: the command line reports it as one line)."""


def step_fault(loss: float, grad_norm: float) -> str | None:
    """Why an optimizer step must not be taken, or ``None``: its summed ``loss`` or its
    gradient norm is NaN or infinite."""
    if not math.isfinite(loss):
        return f"the loss is {loss}"
    if not math.isfinite(grad_norm):
        return f"the gradient norm is {grad_norm}"
    return None


def lr_fault(lr: float, beta1: float) -> str | None:
    """Why learning rate ``lr`` cannot be applied, or ``None``: Adam's first step adds up
    to ``lr / (1 - beta1)`` to float32 weights, and a scalar beyond float32 overflows."""
    if lr / max(1.0 - beta1, 1e-12) > _FLOAT32_MAX:
        return f"the learning rate is {lr:.3g}, beyond what float32 weights can take"
    return None


def valid_targets(batch) -> torch.Tensor:
    """Target ids ``(n_valid,)`` at the positions ``t < tgt_valid_lens[b]``, in the
    order of the ``only_valid=True`` logits of the models."""
    return select_valid(batch.tgt_out, batch.tgt_valid_lens)


def batch_loss(model: torch.nn.Module, batch, *, epsilon: float,
               autocast: Callable[[], contextlib.AbstractContextManager] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(loss_sum, nll_sum, tokens)`` of ``model`` on ``batch`` (a padded
    :class:`attnkit.data.batching.Batch`), label smoothing ``epsilon``.

    ``autocast`` (e.g. bf16 autocast) wraps the forward only; the loss is computed
    from the logits in float32 by :func:`attnkit.train.loss.smoothed_loss`.
    """
    with autocast() if autocast is not None else contextlib.nullcontext():
        logits = model(batch.src, batch.tgt_in, batch.src_valid_lens, batch.tgt_valid_lens,
                       only_valid=True)  # (n_valid, V)
    return smoothed_loss(logits, valid_targets(batch), epsilon=epsilon)


def training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch, *,
                  epsilon: float = 0.1) -> int:
    """Forward, per-token loss, backward and one ``optimizer`` step on ``batch``;
    returns the target tokens it trained on."""
    model.train()
    loss, _, n = batch_loss(model, batch, epsilon=epsilon)
    (loss / max(1, n)).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return n
