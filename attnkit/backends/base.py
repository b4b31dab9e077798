"""What every backend receives and must provide.

A backend computes ``softmax(mask(a(Q, K))) V`` for one validated
:class:`AttentionCall`, with exactly the semantics of the ``reference``
backend (same masks, zero rows where nothing may be attended, dropout on the
weights). A backend that cannot serve a call says why in
:meth:`Backend.unsupported_reason`; it is never asked to serve it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import hidden_values_reason
from ..masks import causal_lengths, combine_masks, prefix_mask
from ..scores import Score

__all__ = ["AttentionCall", "Backend", "first_order_only", "second_order_error",
           "values_reason", "zero_output"]


@dataclass
class AttentionCall:
    """One validated attention call.

    Shapes: queries ``(*batch, Nq, Dq)``, keys ``(*batch, Nk, Dk)``, values
    ``(*batch, Nk, Dv)`` (batch dims broadcast); ``valid_lens`` ``None``,
    ``(B,)`` or ``(B, Nq)`` with ``B = batch[0]``; ``mask`` boolean,
    broadcastable to ``(*batch, Nq, Nk)``, True = may attend; ``causal`` is
    ``None``, ``"top_left"`` or ``"bottom_right"``; ``query_valid_lens``
    ``None`` or ``(B,)``: query rows ``i >= query_valid_lens[b]`` are padding
    and their output rows are zero. Symbols: ``docs/shapes.md``.

    ``valid_lens``, ``causal`` and ``query_valid_lens`` meet in one place,
    :meth:`prefix_lengths`, which every backend uses.
    """

    queries: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor | None
    score: Score
    valid_lens: torch.Tensor | None
    mask: torch.Tensor | None
    causal: str | None
    dropout_p: float
    batch_shape: tuple[int, ...]
    query_valid_lens: torch.Tensor | None = None

    @property
    def num_queries(self) -> int:
        return self.queries.shape[-2]

    @property
    def num_keys(self) -> int:
        return self.keys.shape[-2]

    @property
    def is_empty(self) -> bool:
        """Nothing to compute: no key (``Nk = 0``: every row has nothing to attend
        to) or an empty output (``B``, a batch dim, ``Nq`` or ``Dv`` is 0)."""
        dv = 1 if self.values is None else self.values.shape[-1]
        out_dims = (*self.batch_shape, self.num_queries, dv)
        return self.num_keys == 0 or 0 in out_dims

    @property
    def needs_grad(self) -> bool:
        tensors = [self.queries, self.keys, self.values, *self.score.parameters()]
        return torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in tensors)

    def prefix_lengths(self, *, fold: bool = False) -> torch.Tensor:
        """``e[b, i]``: query ``i`` of sequence ``b`` may attend keys ``[0, e)``; ``(B, Nq)`` long.

        ``valid_lens``, ``causal`` and ``query_valid_lens`` are all prefix
        masks, so together they are one length per query row::

            e[b, i] = min(valid_len[b(, i)], causal limit of row i)   (0 for padded queries)

        The user's ``mask`` is not included. ``fold=True`` repeats the rows
        for the dims after ``B`` folded into the batch: ``(B·P, Nq)`` with
        ``P = prod(batch_shape[1:])``, the layout of a ``(B·P, Nq, D)`` view.
        """
        B, Nq, Nk = self.batch_shape[0], self.num_queries, self.num_keys
        device = self.queries.device
        if self.valid_lens is None:
            e = torch.full((B, Nq), Nk, dtype=torch.long, device=device)
        elif self.valid_lens.ndim == 1:
            e = self.valid_lens.long()[:, None].expand(B, Nq)
        else:
            e = self.valid_lens.long()
        if self.causal is not None:
            e = torch.minimum(e, causal_lengths(Nq, Nk, align=self.causal, device=device))
        if self.query_valid_lens is not None:  # padded queries see nothing
            e = e * prefix_mask(self.query_valid_lens, Nq)  # (B, Nq)
        if fold:
            e = e.repeat_interleave(math.prod(self.batch_shape[1:]), dim=0)  # (B·P, Nq)
        return e

    def _per_batch(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, Nq, ...)`` → ``(B, 1.., Nq, ...)``: broadcastable over ``batch_shape``."""
        extra = [1] * (len(self.batch_shape) - 1)
        return x.reshape(x.shape[0], *extra, *x.shape[1:])

    def query_valid_mask(self) -> torch.Tensor | None:
        """``query_valid_lens`` as a mask of shape ``(B, 1.., Nq, 1)`` (True = real query)."""
        if self.query_valid_lens is None:
            return None
        rows = prefix_mask(self.query_valid_lens, self.num_queries)  # (B, Nq)
        return self._per_batch(rows[..., None])

    def full_mask(self) -> torch.Tensor | None:
        """The prefix lengths (valid_lens, causal, query_valid_lens) and the user's mask
        combined (AND): broadcastable to ``(*batch, Nq, Nk)``, True = may attend."""
        if self.valid_lens is None and self.causal is None and self.query_valid_lens is None:
            return self.mask
        prefix = prefix_mask(self.prefix_lengths(), self.num_keys)  # (B, Nq, Nk)
        return combine_masks(self._per_batch(prefix), self.mask)


def values_reason(call: AttentionCall) -> str | None:
    """Why a fast backend passes on ``call`` because it cannot read the lengths' values
    (``None``: it can read them).

    The fast backends plan their work from the lengths' values (which keys each row
    needs). Meta tensors (shapes only, to estimate sizes before allocating) have no
    values; inside ``torch.func`` transforms (``vmap``, ``grad``, ``jacrev``) and under
    ``torch.jit.trace`` reading them breaks the transform or fixes the plan of the
    example inputs into the trace. Only ``reference``, whose every step is a torch op
    without a branch on values, serves these calls; ``auto`` picks it.
    """
    why = hidden_values_reason(call.queries)
    if why is None:
        tensors = (call.keys, call.values, call.valid_lens, call.mask, call.query_valid_lens,
                   *call.score.parameters())
        why = next((hidden_values_reason(t) for t in tensors
                    if t is not None and hidden_values_reason(t) is not None), None)
    return None if why is None else f"{why}: only 'reference' runs there"


def second_order_error(backend: str, why: str) -> RuntimeError:
    """The one-line refusal of a second-order gradient (a backward pass run with
    ``create_graph=True`` through ``backend``'s own backward), saying what works instead."""
    return RuntimeError(
        f"backend={backend!r} cannot differentiate its gradients (double backward, "
        f"create_graph=True): {why}; use backend=\"reference\" for second-order gradients")


class _FirstOrderOnly(torch.autograd.Function):
    """The identity, whose backward refuses to build a graph of the gradient."""

    @staticmethod
    def forward(ctx, backend: str, why: str, x):
        ctx.backend, ctx.why = backend, why
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        # grad mode is on in backward only under create_graph=True: the gradient is
        # to be differentiated again, which the backend's kernels cannot do
        if torch.is_grad_enabled():
            raise second_order_error(ctx.backend, ctx.why)
        return None, None, grad


def first_order_only(out: torch.Tensor, backend: str, why: str) -> torch.Tensor:
    """``out``, marked so that a second-order gradient through it raises
    :func:`second_order_error` instead of silently treating the backend's first-order
    gradient as a constant (which gives second-order gradients of zero)."""
    if not out.requires_grad:
        return out
    return _FirstOrderOnly.apply(backend, why, out)


class _ZeroOutput(torch.autograd.Function):
    """Zeros of a given shape whose gradient to every input is zero (not ``None``)."""

    @staticmethod
    def forward(ctx, shape, dtype, *inputs):
        ctx.save_for_backward(*inputs)
        return inputs[0].new_zeros(shape, dtype=dtype)

    @staticmethod
    def backward(ctx, grad_out):
        return (None, None, *(torch.zeros_like(t) for t in ctx.saved_tensors))


def zero_output(call: AttentionCall) -> torch.Tensor:
    """The output of an empty call (:attr:`AttentionCall.is_empty`): zeros
    ``(*batch, Nq, Dv)`` in the dtype of the values, with zero gradients for
    queries, keys, values and the score's (initialized) parameters, exactly
    what the reference computation gives; every backend returns it."""
    params = [p for p in call.score.parameters()
              if not isinstance(p, torch.nn.parameter.UninitializedParameter)]
    shape = (*call.batch_shape, call.num_queries, call.values.shape[-1])
    return _ZeroOutput.apply(shape, call.values.dtype, call.queries, call.keys, call.values,
                             *params)


class Backend:
    """Base class; subclasses set ``name`` and implement the two methods.

    :func:`attnkit.attention` never hands a backend an empty call
    (:attr:`AttentionCall.is_empty`: no key, or an empty output); it returns
    :func:`zero_output` for it, after the backend has agreed to serve the call.
    """

    name: str = ""
    #: Whether :meth:`forward` itself zeroes the rows of padded queries
    #: (``call.query_valid_lens``). When False, :func:`attnkit.attention`
    #: zeroes them on the backend's output.
    handles_query_valid_lens: bool = False

    def unsupported_reason(self, call: AttentionCall) -> str | None:
        """``None`` if this backend can serve ``call``, else a short reason."""
        raise NotImplementedError

    def auto_reason(self, call: AttentionCall) -> str | None:
        """Why ``auto`` should pass over this backend for a call it could serve
        (``None``: it may pick it). Explicit requests ignore this."""
        return None

    def describe(self, call: AttentionCall) -> str | None:
        """How this backend would serve ``call``, where it has more than one way (``None``:
        one way); :class:`BackendChoice` shows it."""
        return None

    def forward(self, call: AttentionCall) -> torch.Tensor:
        """Attention output ``(*batch, Nq, Dv)`` in the dtype of the queries."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<attnkit backend {self.name!r}>"
