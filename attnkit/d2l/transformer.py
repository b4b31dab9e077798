"""Positional encoding (d2l §11.6) and the Transformer (§11.7), the book's API.

The blocks are the book's composition of attnkit modules: a padded position
is computed like any other (as in the book), unlike
:class:`attnkit.nn.TransformerEncoderBlock`, which skips padding.

Shapes use the symbols of ``docs/shapes.md``: ``B`` batch, ``N`` length,
``S``/``T`` source/target length, ``d`` = ``num_hiddens``, ``V`` vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .. import nn as ak
from .attention import MultiHeadAttention
from .seq2seq import AttentionDecoder, Encoder

__all__ = [
    "AddNorm",
    "PositionWiseFFN",
    "PositionalEncoding",
    "TransformerDecoder",
    "TransformerDecoderBlock",
    "TransformerEncoder",
    "TransformerEncoderBlock",
]


class PositionalEncoding(ak.PositionalEncoding):
    """Sinusoidal positional encoding (d2l §11.6.3): ``dropout(X + P[:, :N])``.

    ``PositionalEncoding(num_hiddens, dropout, max_len=1000)``; ``.P`` is the
    float32 table ``(1, max_len, num_hiddens)``, as in the book.
    """

    def __init__(self, num_hiddens: int, dropout: float, max_len: int = 1000):
        super().__init__(num_hiddens, dropout, max_len)
        self.P = self.P.float()  # (1, max_len, d), the book's dtype


class PositionWiseFFN(ak.PositionWiseFFN):
    """Position-wise FFN (d2l §11.7.2): ``dense2(relu(dense1(X)))``.

    ``PositionWiseFFN(ffn_num_hiddens, ffn_num_outputs)``: the *inner* size
    and the *output* size, the input size is inferred on the first call;
    ``(B, N, any)`` → ``(B, N, ffn_num_outputs)``. (In
    :class:`attnkit.nn.PositionWiseFFN`, keyword-only, ``num_hiddens`` is the
    model size.)
    """

    def __init__(self, ffn_num_hiddens: int, ffn_num_outputs: int):
        super().__init__(num_hiddens=None, ffn_num_hiddens=ffn_num_hiddens,
                         num_outputs=ffn_num_outputs)


class AddNorm(ak.AddNorm):
    """Residual connection then layer normalization (d2l §11.7.3): ``LN(dropout(Y) + X)``.

    ``AddNorm(norm_shape, dropout)``; ``norm_shape`` is an int (the last dim)
    or a shape, as ``nn.LayerNorm`` takes.
    """

    def __init__(self, norm_shape: int | Sequence[int], dropout: float):
        shape = (norm_shape,) if isinstance(norm_shape, int) else tuple(norm_shape)
        super().__init__(shape[-1], dropout)
        if len(shape) > 1:
            self.ln = nn.LayerNorm(shape)


class TransformerEncoderBlock(nn.Module):
    """One encoder block (d2l §11.7.4): self-attention, AddNorm, FFN, AddNorm.

    ``TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout,
    use_bias=False)``; ``forward(X (B, N, d), valid_lens)`` → ``(B, N, d)``.
    """

    def __init__(self, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 dropout: float, use_bias: bool = False):
        super().__init__()
        self.attention = MultiHeadAttention(num_hiddens, num_heads, dropout, use_bias)
        self.addnorm1 = AddNorm(num_hiddens, dropout)
        self.ffn = PositionWiseFFN(ffn_num_hiddens, num_hiddens)
        self.addnorm2 = AddNorm(num_hiddens, dropout)

    def forward(self, X: torch.Tensor, valid_lens: torch.Tensor | None) -> torch.Tensor:
        Y = self.addnorm1(X, self.attention(X, X, X, valid_lens))  # (B, N, d)
        return self.addnorm2(Y, self.ffn(Y))  # (B, N, d)


def _embed(vocab_size: int, num_hiddens: int, dropout: float):
    """The book's token embedding (N(0, 1) init) and sinusoidal positional encoding."""
    return nn.Embedding(vocab_size, num_hiddens), PositionalEncoding(num_hiddens, dropout)


def _stack(num_blks: int, make) -> nn.Sequential:
    """``block0 … block{n-1}`` as the book names them; ``make(i)`` builds block ``i``."""
    blks = nn.Sequential()
    for i in range(num_blks):
        blks.add_module(f"block{i}", make(i))
    return blks


class TransformerEncoder(Encoder):
    """The Transformer encoder (d2l §11.7.4): embedding·√d + positions, ``num_blks`` blocks.

    ``TransformerEncoder(vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
    num_blks, dropout, use_bias=False)``; ``forward(X (B, S) ids, valid_lens (B,))``
    → ``(B, S, d)``. After a call, ``attention_weights[i]`` holds block ``i``'s
    weights ``(B·H, S, S)``. The embedding keeps ``nn.Embedding``'s N(0, 1)
    initialization, as in the book.
    """

    def __init__(self, vocab_size: int, num_hiddens: int, ffn_num_hiddens: int,
                 num_heads: int, num_blks: int, dropout: float, use_bias: bool = False):
        super().__init__()
        self.num_hiddens = num_hiddens
        self.embedding, self.pos_encoding = _embed(vocab_size, num_hiddens, dropout)
        self.blks = _stack(num_blks, lambda i: TransformerEncoderBlock(
            num_hiddens, ffn_num_hiddens, num_heads, dropout, use_bias))
        self.attention_weights: list[torch.Tensor | None] = [None] * num_blks

    def forward(self, X: torch.Tensor, valid_lens: torch.Tensor | None,
                *args) -> torch.Tensor:
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens))  # (B, S, d)
        self.attention_weights = [None] * len(self.blks)
        for i, blk in enumerate(self.blks):
            X = blk(X, valid_lens)  # (B, S, d)
            self.attention_weights[i] = blk.attention.attention.attention_weights
        return X


class TransformerDecoderBlock(nn.Module):
    """Decoder block ``i`` (d2l §11.7.5): masked self-attention, cross-attention, FFN.

    ``TransformerDecoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout, i)``;
    ``forward(X (B, T, d), state) -> (Y (B, T, d), state)`` with the book's
    ``state = [enc_outputs (B, S, d), enc_valid_lens (B,), cache]``: ``cache[i]``
    holds this block's decoder inputs so far ``(B, t, d)`` (the keys and values of
    its self-attention); each call appends ``X`` to it.

    In training mode query ``t`` sees the targets ``0 … t`` (valid lengths
    ``1 … T``); in eval mode it sees the whole cache, which is causal when, as
    in the book's ``predict_step``, one token is fed per call.
    """

    def __init__(self, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 dropout: float, i: int):
        super().__init__()
        self.i = i
        self.attention1 = MultiHeadAttention(num_hiddens, num_heads, dropout)
        self.addnorm1 = AddNorm(num_hiddens, dropout)
        self.attention2 = MultiHeadAttention(num_hiddens, num_heads, dropout)
        self.addnorm2 = AddNorm(num_hiddens, dropout)
        self.ffn = PositionWiseFFN(ffn_num_hiddens, num_hiddens)
        self.addnorm3 = AddNorm(num_hiddens, dropout)

    def forward(self, X: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        enc_outputs, enc_valid_lens, cache = state[0], state[1], state[2]
        key_values = X if cache[self.i] is None else torch.cat((cache[self.i], X), dim=1)
        cache[self.i] = key_values  # (B, t, d): every decoder input so far
        dec_valid_lens = None
        if self.training:  # query t sees keys 0 … t
            B, T, _ = X.shape
            dec_valid_lens = torch.arange(1, T + 1, device=X.device).repeat(B, 1)  # (B, T)
        Y = self.addnorm1(X, self.attention1(X, key_values, key_values, dec_valid_lens))
        Z = self.addnorm2(Y, self.attention2(Y, enc_outputs, enc_outputs, enc_valid_lens))
        return self.addnorm3(Z, self.ffn(Z)), state  # (B, T, d)


class TransformerDecoder(AttentionDecoder):
    """The Transformer decoder (d2l §11.7.5), with the book's state protocol.

    ``TransformerDecoder(vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
    num_blks, dropout)``; ``state = init_state(enc_outputs, enc_valid_lens)``,
    then ``forward(X (B, T) ids, state) -> (logits (B, T, V), state)``.
    ``attention_weights`` is ``[self-attention weights per block,
    cross-attention weights per block]``, each ``(B·H, T, ·)``.

    As in the book, positions restart at 0 on every call: feeding one token
    per call (the book's ``predict_step``) gives every token position 0's
    encoding. :class:`attnkit.models.Transformer` decodes with positions
    and a key/value cache.
    """

    def __init__(self, vocab_size: int, num_hiddens: int, ffn_num_hiddens: int,
                 num_heads: int, num_blks: int, dropout: float):
        super().__init__()
        self.num_hiddens, self.num_blks = num_hiddens, num_blks
        self.embedding, self.pos_encoding = _embed(vocab_size, num_hiddens, dropout)
        self.blks = _stack(num_blks, lambda i: TransformerDecoderBlock(
            num_hiddens, ffn_num_hiddens, num_heads, dropout, i))
        self.dense = nn.LazyLinear(vocab_size)
        self._attention_weights: list = [[None] * num_blks for _ in range(2)]

    def init_state(self, enc_outputs: torch.Tensor, enc_valid_lens: torch.Tensor | None,
                   *args) -> list:
        return [enc_outputs, enc_valid_lens, [None] * self.num_blks]

    def forward(self, X: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens))  # (B, T, d)
        self._attention_weights = [[None] * len(self.blks) for _ in range(2)]
        for i, blk in enumerate(self.blks):
            X, state = blk(X, state)  # (B, T, d)
            self._attention_weights[0][i] = blk.attention1.attention.attention_weights
            self._attention_weights[1][i] = blk.attention2.attention.attention_weights
        return self.dense(X), state  # (B, T, V)

    @property
    def attention_weights(self) -> list:
        return self._attention_weights
