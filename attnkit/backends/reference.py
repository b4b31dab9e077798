"""The reference backend: the book's computation, made safe.

Scores are materialized ``(*batch, Nq, Nk)`` (for additive attention the
``(*batch, Nq, Nk, h)`` features too), masked with ``-inf``, normalized by
:func:`attnkit.softmax_with_mask`, dropped out, and multiplied by the values.
Every other backend is tested against this one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..softmax import softmax_with_mask
from .base import AttentionCall, Backend


def reference_weights(call: AttentionCall) -> torch.Tensor:
    """Attention weights ``(*batch, Nq, Nk)`` (no dropout)."""
    scores = call.score(call.queries, call.keys)  # (*batch, Nq, Nk)
    return softmax_with_mask(scores, call.full_mask())


class ReferenceBackend(Backend):
    name = "reference"
    handles_query_valid_lens = True  # through call.full_mask()

    def unsupported_reason(self, call: AttentionCall) -> str | None:
        return None

    def forward(self, call: AttentionCall) -> torch.Tensor:
        weights = reference_weights(call)  # (*batch, Nq, Nk)
        if call.dropout_p > 0:
            weights = F.dropout(weights, call.dropout_p, training=True)
        return weights @ call.values  # (*batch, Nq, Dv)
