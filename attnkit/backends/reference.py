"""The reference backend: the book's computation, made safe.

Scores are materialized ``(*batch, Nq, Nk)`` (for additive attention the
``(*batch, Nq, Nk, h)`` features too), masked with ``-inf``, normalized by
:func:`attnkit.softmax_with_mask`, dropped out, and multiplied by the values.
Every other backend is tested against this one.

Precision: for fp16/bf16 inputs the scores, the softmax and the weighted sum
run in float32 (queries and keys are upcast *before* the score, so a large
``q·k`` that overflows fp16's 65504 stays finite, as in the fused kernels);
weights and outputs come back in the input dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._dtypes import LOW_PRECISION
from ..softmax import softmax_with_mask
from .base import AttentionCall, Backend


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype scores and softmax are computed in: float32 for fp16/bf16, else ``dtype``."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def to_input_dtype(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` back in the input ``dtype`` where :func:`compute_dtype` upcast it (fp16/bf16);
    otherwise as computed (under ``torch.autocast`` that is the autocast dtype)."""
    return x.to(dtype) if dtype in LOW_PRECISION else x


def float_weights(call: AttentionCall) -> torch.Tensor:
    """Attention weights ``(*batch, Nq, Nk)`` in :func:`compute_dtype` (no dropout)."""
    dtype = compute_dtype(call.queries.dtype)
    q, k = call.queries.to(dtype), call.keys.to(dtype)  # no copy unless half
    scores = call.score(q, k)  # (*batch, Nq, Nk)
    return softmax_with_mask(scores, call.full_mask())


def reference_weights(call: AttentionCall) -> torch.Tensor:
    """Attention weights ``(*batch, Nq, Nk)`` in the dtype of the queries (no dropout)."""
    return to_input_dtype(float_weights(call), call.queries.dtype)


def weighted_values(call: AttentionCall, weights: torch.Tensor) -> torch.Tensor:
    """``dropout(weights) @ values`` ``(*batch, Nq, Dv)``, in the dtype of the values.

    ``weights`` from :func:`float_weights`; the product runs in their dtype.
    """
    if call.dropout_p > 0:
        weights = F.dropout(weights, call.dropout_p, training=True)
    out = weights @ call.values.to(weights.dtype)  # (*batch, Nq, Dv)
    return to_input_dtype(out, call.values.dtype)


class ReferenceBackend(Backend):
    name = "reference"
    handles_query_valid_lens = True  # through call.full_mask()

    def unsupported_reason(self, call: AttentionCall) -> str | None:
        return None

    def forward(self, call: AttentionCall) -> torch.Tensor:
        return weighted_values(call, float_weights(call))  # (*batch, Nq, Dv)
