"""Masked softmax that is safe on rows with nothing to attend to.

Shapes use the symbols of ``docs/shapes.md`` (``B``, ``Nq``, ``Nk``).
"""

from __future__ import annotations

import torch

from ._checks import (
    check_mask,
    check_tensor,
    check_valid_lens,
    hidden_values_reason,
    shape_str,
)
from ._dtypes import LOW_PRECISION
from .masks import combine_masks, prefix_mask

__all__ = ["masked_softmax", "softmax_with_mask"]


def masked_softmax(X: torch.Tensor, valid_lens: torch.Tensor | None = None, *,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the last axis of ``X``, ignoring masked key positions.

    Shapes:
        X:          ``(B, ..., Nq, Nk)`` attention scores.
        valid_lens: ``(B,)`` valid keys per sequence, or ``(B, Nq)`` per query
                    (the two forms of d2l's ``masked_softmax``). Key ``j`` of
                    a row counts iff ``j < valid_len``.
        mask:       boolean, broadcastable to ``X.shape``; **True = may attend**.
        returns:    weights of ``X``'s shape and dtype.

    Where a row has at least one valid key the result equals d2l's
    ``masked_softmax`` (which fills masked scores with ``-1e6``): masked keys
    get weight exactly 0 and the rest sum to 1. Where a row has **no** valid key
    (``valid_len == 0``, a fully masked row, or a row whose every valid score
    is ``-inf``) d2l returns uniform weights over the padding and
    ``torch.nn.MultiheadAttention`` (like ``torch.softmax`` on ``-inf`` scores)
    returns NaN; attnkit returns all zeros, and the gradient through such a row
    is zero, never NaN. A NaN or ``+inf`` score is not "nothing to attend to":
    its row stays NaN. Meta tensors give meta weights of the same shape.

    Masked scores are set to ``-inf`` (no magic constants). fp16/bf16 inputs
    are computed in float32 and returned in the input dtype.

    Raises:
        TypeError: ``valid_lens`` not integer, ``mask`` not boolean.
        ValueError: shapes that do not match, or ``valid_lens`` outside ``[0, Nk]``.
    """
    check_tensor("X", X, min_ndim=2)
    if valid_lens is not None and X.ndim < 3:
        raise ValueError(
            f"X must have at least 3 dims (B, Nq, Nk) when valid_lens is given; "
            f"got {shape_str(X.shape)}"
        )
    num_queries, num_keys = X.shape[-2], X.shape[-1]
    vl = None
    if valid_lens is not None:
        vl = check_valid_lens(valid_lens, X.shape[0], num_queries, num_keys, X.device)
    mask = check_mask(mask, tuple(X.shape), X.device)
    if vl is not None:
        lens = vl[:, None] if vl.ndim == 1 else vl  # (B, 1) or (B, Nq)
        lens = lens.reshape(lens.shape[0], *([1] * (X.ndim - 3)), lens.shape[1])  # (B,1..,Nq|1)
        mask = combine_masks(prefix_mask(lens, num_keys), mask)  # (B, 1.., Nq|1, Nk)
    return softmax_with_mask(X, mask)


def softmax_with_mask(X: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The unchecked core of :func:`masked_softmax` (mask already validated).

    Uses ``torch.softmax`` on scores filled with ``-inf`` at masked positions,
    so rows with a valid key match d2l bit for bit. A row with nothing to
    attend to (every key masked, or every valid score ``-inf``) would be NaN
    there (``-inf - -inf``); such rows are softmaxed over zeros instead (so
    neither the value nor the gradient sees the NaN) and zeroed after it.
    NaN or ``+inf`` scores stay NaN: they are not rows without keys.
    """
    dtype = X.dtype
    x = X.float() if dtype in LOW_PRECISION else X
    if mask is not None:
        x = x.masked_fill(~mask, float("-inf"))  # (..., Nq, Nk)
    if x.shape[-1] == 0:
        return torch.softmax(x, dim=-1).to(dtype)  # (..., Nq, 0)
    if x.device.type == "cpu" and hidden_values_reason(x) is None:
        # On the CPU a look at the result costs no device sync: rows without a key
        # are rare, and they show as NaN in every column, so column 0 finds them.
        weights = torch.softmax(x, dim=-1)
        if not bool(weights[..., :1].isnan().any()):
            return weights.to(dtype)
        del weights  # recomputed below; freed first, so the peak stays that of one pass
    # Elsewhere (and when the CPU found a NaN row, and where a value read would break a
    # transform or be fixed into a trace) the rows are found without
    # reading anything back: their largest score is -inf. Each step rebinds x, so
    # no more than two score-sized buffers of this function are alive at once.
    row_has_key = x.amax(dim=-1, keepdim=True) != float("-inf")  # (..., Nq, 1)
    x = torch.where(row_has_key, x, 0.0)  # empty rows: finite scores
    x = torch.softmax(x, dim=-1)
    return (x * row_has_key).to(dtype)  # empty rows -> 0
