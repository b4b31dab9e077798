"""Attention scoring (d2l §11.3) and multi-head attention (§11.5), the book's API.

Shapes use the symbols of ``docs/shapes.md``: ``B`` batch, ``H`` heads,
``Nq``/``Nk`` queries/keys, ``Dq``/``Dk``/``Dv`` feature sizes, ``d`` =
``num_hiddens``, ``Dh`` = ``d // H``.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import nn as ak
from .._values import check_divisible, check_positive_int
from ..softmax import masked_softmax as _masked_softmax
from .framework import Module

__all__ = [
    "AdditiveAttention", "DotProductAttention", "MultiHeadAttention", "book_valid_lens",
    "masked_softmax",
]


def book_valid_lens(valid_lens: torch.Tensor | None, num_keys: int) -> torch.Tensor | None:
    """Valid lengths as the book reads them, in attnkit's integer form.

    The book keeps key ``j`` where ``j < valid_len`` for any number type: a
    float length ``2.5`` keeps keys 0, 1, 2 (its ceiling), and a length beyond
    ``Nk`` keeps them all. Integers are clamped to ``[0, Nk]``, floats become
    their ``ceil`` clamped to ``[0, Nk]``. A NaN length keeps no key in any
    sense and is refused.
    """
    if not isinstance(valid_lens, torch.Tensor):
        return valid_lens
    if valid_lens.is_floating_point():
        if torch.isnan(valid_lens).any():
            raise ValueError(f"valid_lens must be numbers of valid keys; got NaN in "
                             f"{valid_lens.tolist() if valid_lens.numel() <= 8 else 'it'}")
        valid_lens = valid_lens.clamp(0, num_keys).ceil().long()
    elif valid_lens.dtype != torch.bool:
        valid_lens = valid_lens.clamp(0, num_keys)
    return valid_lens


def masked_softmax(X: torch.Tensor, valid_lens: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last axis of ``X`` ``(B, Nq, Nk)`` keeping keys ``j < valid_len``.

    ``valid_lens``: ``None``, ``(B,)`` (per sequence) or ``(B, Nq)`` (per query),
    integer or float as in the book (see :func:`book_valid_lens`). Equal to the
    book's wherever a row has a valid key; a row with none is all zeros (the
    book's is uniform). This is :func:`attnkit.masked_softmax`.
    """
    return _masked_softmax(X, book_valid_lens(valid_lens, X.shape[-1]))


class DotProductAttention(ak.DotProductAttention):
    """Scaled dot-product attention (d2l §11.3.3): ``softmax(QKᵀ/√d) V``.

    ``DotProductAttention(dropout)``; ``forward(queries (B, Nq, d), keys (B, Nk, d),
    values (B, Nk, Dv), valid_lens=None)`` → ``(B, Nq, Dv)``. Like the book's, it
    always stores ``.attention_weights`` ``(B, Nq, Nk)`` (before dropout).
    :class:`attnkit.nn.DotProductAttention` with ``keep_weights=True``.
    """

    def __init__(self, dropout: float, *, backend: str = "auto"):
        super().__init__(dropout, backend=backend, keep_weights=True)

    def forward(self, queries, keys, values, valid_lens=None, **kwargs):
        return super().forward(queries, keys, values,
                               book_valid_lens(valid_lens, keys.shape[-2]), **kwargs)


class AdditiveAttention(ak.AdditiveAttention):
    """Additive attention (d2l §11.3.4): score ``w_vᵀ tanh(W_q q + W_k k)``.

    ``AdditiveAttention(num_hiddens, dropout)``: ``W_q``, ``W_k`` are lazy
    (input sizes inferred on the first call, as the book's ``nn.LazyLinear``),
    ``w_v`` maps ``num_hiddens`` to 1; ``.attention_weights`` ``(B, Nq, Nk)``
    is always stored. :class:`attnkit.nn.AdditiveAttention` with
    ``keep_weights=True``.
    """

    def __init__(self, num_hiddens: int, dropout: float, *, backend: str = "auto"):
        super().__init__(num_hiddens, dropout, backend=backend, keep_weights=True)

    def forward(self, queries, keys, values, valid_lens=None, **kwargs):
        return super().forward(queries, keys, values,
                               book_valid_lens(valid_lens, keys.shape[-2]), **kwargs)


class MultiHeadAttention(Module):
    """Multi-head attention (d2l §11.5), the book's layout.

    ``MultiHeadAttention(num_hiddens, num_heads, dropout, bias=False)``. The four
    projections ``W_q``, ``W_k``, ``W_v``, ``W_o`` are lazy linear layers to
    ``num_hiddens`` features (input sizes inferred on the first call). The heads
    run as one batch of ``B·H`` sequences through ``self.attention``, a
    :class:`DotProductAttention`, so ``self.attention.attention_weights`` is
    ``(B·H, Nq, Nk)`` with row ``b·H + h`` for head ``h`` of sequence ``b``,
    as in the book.

    ``forward(queries (B, Nq, Dq), keys (B, Nk, Dk), values (B, Nk, Dv),
    valid_lens=None)`` → ``(B, Nq, num_hiddens)``; ``valid_lens`` ``(B,)`` or
    ``(B, Nq)`` applies to every head.

    For the ``(B, H, Nq, Nk)`` layout, grouped-query heads, rotary positions
    and fused kernels, see :class:`attnkit.nn.MultiHeadAttention`.
    """

    def __init__(self, num_hiddens: int, num_heads: int, dropout: float,
                 bias: bool = False, **kwargs):
        super().__init__()
        check_positive_int("num_heads", num_heads)
        check_divisible("num_hiddens", check_positive_int("num_hiddens", num_hiddens),
                        "num_heads", num_heads)
        self.num_heads = num_heads
        self.attention = DotProductAttention(dropout, **kwargs)
        self.W_q = nn.LazyLinear(num_hiddens, bias=bias)
        self.W_k = nn.LazyLinear(num_hiddens, bias=bias)
        self.W_v = nn.LazyLinear(num_hiddens, bias=bias)
        self.W_o = nn.LazyLinear(num_hiddens, bias=bias)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                valid_lens: torch.Tensor | None = None) -> torch.Tensor:
        queries = self.transpose_qkv(self.W_q(queries))  # (B·H, Nq, Dh)
        keys = self.transpose_qkv(self.W_k(keys))  # (B·H, Nk, Dh)
        values = self.transpose_qkv(self.W_v(values))  # (B·H, Nk, Dh)
        if valid_lens is not None:  # the same lengths for every head of a sequence
            valid_lens = torch.repeat_interleave(valid_lens, self.num_heads, dim=0)
        output = self.attention(queries, keys, values, valid_lens)  # (B·H, Nq, Dh)
        return self.W_o(self.transpose_output(output))  # (B, Nq, d)

    def transpose_qkv(self, X: torch.Tensor) -> torch.Tensor:
        """Split the features into heads: ``(B, N, d)`` → ``(B·H, N, Dh)``."""
        X = X.reshape(X.shape[0], X.shape[1], self.num_heads, -1)  # (B, N, H, Dh)
        X = X.permute(0, 2, 1, 3)  # (B, H, N, Dh)
        return X.reshape(-1, X.shape[2], X.shape[3])  # (B·H, N, Dh)

    def transpose_output(self, X: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`transpose_qkv`: ``(B·H, N, Dh)`` → ``(B, N, d)``."""
        X = X.reshape(-1, self.num_heads, X.shape[1], X.shape[2])  # (B, H, N, Dh)
        X = X.permute(0, 2, 1, 3)  # (B, N, H, Dh)
        return X.reshape(X.shape[0], X.shape[1], -1)  # (B, N, d)
