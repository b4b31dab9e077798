"""What every backend receives and must provide.

A backend computes ``softmax(mask(a(Q, K))) V`` for one validated
:class:`AttentionCall`, with exactly the semantics of the ``reference``
backend (same masks, zero rows where nothing may be attended, dropout on the
weights). A backend that cannot serve a call says why in
:meth:`Backend.unsupported_reason`; it is never asked to serve it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..masks import causal_mask, combine_masks
from ..scores import Score

__all__ = ["AttentionCall", "Backend"]


@dataclass
class AttentionCall:
    """One validated attention call.

    Shapes: queries ``(*batch, Nq, Dq)``, keys ``(*batch, Nk, Dk)``, values
    ``(*batch, Nk, Dv)`` (batch dims broadcast); ``valid_lens`` ``None``,
    ``(B,)`` or ``(B, Nq)`` with ``B = batch[0]``; ``mask`` boolean,
    broadcastable to ``(*batch, Nq, Nk)``, True = may attend; ``causal`` is
    ``None``, ``"top_left"`` or ``"bottom_right"``; ``query_valid_lens``
    ``None`` or ``(B,)``: query rows ``i >= query_valid_lens[b]`` are padding
    and their output rows are zero.
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
    def needs_grad(self) -> bool:
        tensors = [self.queries, self.keys, self.values, *self.score.parameters()]
        return torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in tensors)

    def valid_lens_mask(self) -> torch.Tensor | None:
        """``valid_lens`` as a mask of shape ``(B, 1.., Nq|1, Nk)``."""
        if self.valid_lens is None:
            return None
        vl = self.valid_lens
        lens = vl[:, None] if vl.ndim == 1 else vl  # (B, 1) or (B, Nq)
        extra = [1] * (len(self.batch_shape) - 1)
        lens = lens.reshape(lens.shape[0], *extra, lens.shape[1], 1)
        positions = torch.arange(self.num_keys, device=vl.device)  # (Nk,)
        return positions < lens

    def query_valid_mask(self) -> torch.Tensor | None:
        """``query_valid_lens`` as a mask of shape ``(B, 1.., Nq, 1)`` (True = real query)."""
        if self.query_valid_lens is None:
            return None
        qvl = self.query_valid_lens
        extra = [1] * (len(self.batch_shape) - 1)
        positions = torch.arange(self.num_queries, device=qvl.device)  # (Nq,)
        rows = positions < qvl[:, None]  # (B, Nq)
        return rows.reshape(rows.shape[0], *extra, self.num_queries, 1)

    def full_mask(self) -> torch.Tensor | None:
        """valid_lens, query_valid_lens, the user's mask and the causal mask combined (AND)."""
        causal = None
        if self.causal is not None:
            causal = causal_mask(self.num_queries, self.num_keys, align=self.causal,
                                 device=self.queries.device)
        return combine_masks(self.valid_lens_mask(), self.query_valid_mask(), self.mask, causal)


class Backend:
    """Base class; subclasses set ``name`` and implement the two methods."""

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

    def forward(self, call: AttentionCall) -> torch.Tensor:
        """Attention output ``(*batch, Nq, Dv)`` in the dtype of the queries."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<attnkit backend {self.name!r}>"
