"""Transformer building blocks ("Attention Is All You Need" §3, Figure 1; d2l §11.7).

Figure 1 of the paper, bottom up:

* :class:`PositionWiseFFN` — "Feed-Forward" box (§3.3): ``max(0, xW_1 + b_1)W_2 + b_2``;
* :class:`AddNorm` — "Add & Norm" box (§5.4): ``LayerNorm(x + Dropout(Sublayer(x)))``;
* :class:`TransformerEncoderBlock` — the left column, one of N layers (§3.1);
* :class:`TransformerDecoderBlock` — the right column, one of N layers (§3.1),
  with masked self-attention, encoder–decoder (cross) attention and the FFN;
* :class:`TransformerEncoder` / :class:`TransformerDecoder` — input embedding
  (scaled by ``√d_model``, §3.4), positional encoding (§3.5) and the stack.

Shapes use the symbols of ``docs/shapes.md``: ``B`` batch, ``S`` source
length, ``T`` target length, ``d`` = ``num_hiddens`` (the paper's
``d_model``), ``V`` vocabulary size, ``n_valid`` real (unpadded) positions.
``src_valid_lens`` ``(B,)`` are the valid source positions, i.e. the valid
keys of the decoder's cross-attention; ``num_blks`` (the book's name) is the
number of blocks of one stack.

Post-LN (the paper's arrangement) is the default; ``pre_norm=True`` gives the
pre-LN arrangement (Xiong et al., 2020: ``x + Dropout(Sublayer(LayerNorm(x)))``,
with a final LayerNorm after the stack), which trains without warm-up.

Names are fixed so that :func:`attnkit.nn.capture_attention` can key the
weights of every layer: ``blocks.{i}.attention`` in the encoder,
``blocks.{i}.self_attention`` and ``blocks.{i}.cross_attention`` in the decoder.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import _names
from .._checks import check_module_dtype, check_token_ids, shape_str
from .._values import check_choice, check_positive_int, check_probability
from ..scores import Score
from .dropout import Dropout
from .multihead import KeyMask, KVCache, MultiHeadAttention, step_linear
from .packed import Packed
from .positional import (
    ALiBiScore,
    LearnedPositionalEmbedding,
    PositionalEncoding,
    RotaryEmbedding,
)

__all__ = [
    "ACTIVATIONS",
    "POSITIONAL_KINDS",
    "AddNorm",
    "PositionWiseFFN",
    "TransformerDecoder",
    "TransformerDecoderBlock",
    "TransformerEncoder",
    "TransformerEncoderBlock",
]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}

#: Accepted names of ``activation=`` (an ``nn.Module`` is accepted too).
ACTIVATIONS: tuple[str, ...] = _names.ACTIVATIONS
if tuple(_ACTIVATIONS) != ACTIVATIONS:  # pragma: no cover - caught by any import
    raise RuntimeError("_ACTIVATIONS and attnkit._names.ACTIVATIONS disagree")

#: Accepted values of ``positional=``: additive absolute encodings ("sinusoidal",
#: "learned") or relative ones applied inside attention ("rope", "alibi").
POSITIONAL_KINDS = _names.POSITIONAL_KINDS


def _book_class(cls: str, call: str) -> str:
    """The one pointer from a class here to the book's class of the same name, which
    takes the book's ``call``: attnkit.d2l sits above attnkit.nn, so the book's
    conventions are explained in the docstrings there, and named here only."""
    return f"the book's {cls}{call} is attnkit.d2l.{cls}"


class PositionWiseFFN(nn.Module):
    """Position-wise feed-forward network ("Attention Is All You Need" §3.3, d2l §11.7.2).

    ``FFN(x) = dense2(dropout(activation(dense1(x))))``, the same two-layer MLP
    at every position: ``d → ffn_num_hiddens → d`` (the paper: 512 → 2048 → 512,
    ReLU). The inner dropout is the one ``torch.nn.TransformerEncoderLayer`` has.

    Arguments are keyword-only: the book's ``PositionWiseFFN(4, 8)`` means
    *inner size 4, output size 8*, the opposite order of these names, so a
    positional call raises ``TypeError`` pointing to
    :class:`attnkit.d2l.PositionWiseFFN` (which is this class with
    ``num_hiddens=None, num_outputs=ffn_num_outputs``) instead of silently
    computing something else.

    Shapes:
        X: ``(B, N, d)``; returns ``(B, N, d)`` (``(B, N, num_outputs)`` when
        ``num_outputs`` is given).

    Args:
        num_hiddens: ``d``, the input size (and the output size unless
            ``num_outputs``); ``None`` infers it from the first input (lazy).
        ffn_num_hiddens: the inner size ``d_ff``.
        num_outputs: output size, default ``num_hiddens``.
        activation: ``"relu"`` (the paper), ``"gelu"``, or an ``nn.Module``.

    Raises:
        TypeError: positional arguments, or an activation of the wrong type.
        ValueError: sizes that are not positive ints, an unknown activation.
    """

    def __init__(self, *args, num_hiddens: int | None = None,
                 ffn_num_hiddens: int | None = None, dropout: float = 0.0,
                 activation: str | nn.Module = "relu", num_outputs: int | None = None):
        super().__init__()
        if args or ffn_num_hiddens is None:
            given = f"positional arguments {args}" if args else "no ffn_num_hiddens"
            raise TypeError(
                "PositionWiseFFN takes keyword arguments only, PositionWiseFFN(num_hiddens=d, "
                f"ffn_num_hiddens=d_ff); got {given}; "
                + _book_class("PositionWiseFFN", "(ffn_num_hiddens, ffn_num_outputs)"))
        check_positive_int("ffn_num_hiddens", ffn_num_hiddens)
        check_positive_int("num_hiddens", num_hiddens, allow_none=True)
        if num_hiddens is None and num_outputs is None:
            raise ValueError("num_outputs must be given when num_hiddens is None (lazy input)")
        num_outputs = num_hiddens if num_outputs is None else num_outputs
        check_positive_int("num_outputs", num_outputs)
        self.dense1 = (nn.LazyLinear(ffn_num_hiddens) if num_hiddens is None
                       else nn.Linear(num_hiddens, ffn_num_hiddens))
        self.activation = _activation(activation)
        self.dropout = Dropout(check_probability("dropout", dropout))
        self.dense2 = nn.Linear(ffn_num_hiddens, num_outputs)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        check_module_dtype("PositionWiseFFN", self.dense2.weight.dtype, X=X)  # dense1 may be lazy
        return self.dense2(self.dropout(self.activation(self.dense1(X))))  # (B, N, d)

    def step(self, X: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` at inference on checked inputs (a decoding step): no dropout,
        no dtype check, the two products without module calls."""
        return step_linear(self.dense2, self.activation(step_linear(self.dense1, X)))


def _activation(activation: str | nn.Module) -> nn.Module:
    if isinstance(activation, nn.Module):
        return activation
    return _ACTIVATIONS[check_choice("activation", activation, tuple(_ACTIVATIONS),
                                     alternative="an nn.Module")]()


class AddNorm(nn.Module):
    """Residual connection and layer normalization, "Add & Norm" of Figure 1 (§5.4).

    Post-LN (default, the paper): ``forward(X, Y) = LayerNorm(X + Dropout(Y))``
    with ``Y = Sublayer(X)`` (d2l §11.7.2). Pre-LN (``pre_norm=True``):
    ``forward(X, Y) = X + Dropout(Y)`` with ``Y = Sublayer(LayerNorm(X))``.
    :meth:`residual` does either given the sublayer as a function, so a block
    is written once for both arrangements.

    Shapes:
        X, Y: ``(B, N, d)``; returns ``(B, N, d)``.
    """

    def __init__(self, num_hiddens: int, dropout: float, *, pre_norm: bool = False,
                 eps: float = 1e-5):
        super().__init__()
        check_positive_int("num_hiddens", num_hiddens)
        self.dropout = Dropout(check_probability("dropout", dropout))
        self.ln = nn.LayerNorm(num_hiddens, eps=eps)
        self.pre_norm = bool(pre_norm)

    def forward(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        if X.shape != Y.shape:
            raise ValueError(
                f"X and Y must have the same shape (B, N, d); got X {shape_str(X.shape)} "
                f"and Y {shape_str(Y.shape)}"
            )
        if self.pre_norm:
            return X + self.dropout(Y)
        return self.ln(X + self.dropout(Y))

    def residual(self, X: torch.Tensor, sublayer: Callable[[torch.Tensor], torch.Tensor]
                 ) -> torch.Tensor:
        """``self(X, sublayer(X))`` post-LN, ``self(X, sublayer(LayerNorm(X)))`` pre-LN."""
        return self(X, sublayer(self.ln(X) if self.pre_norm else X))

    def step(self, X: torch.Tensor, sublayer: Callable[[torch.Tensor], torch.Tensor]
             ) -> torch.Tensor:
        """:meth:`residual` at inference on checked shapes (a decoding step): no dropout,
        no shape check, the layer norm without a module call."""
        if self.pre_norm:
            return X + sublayer(self._norm(X))
        return self._norm(X + sublayer(X))

    def _norm(self, X: torch.Tensor) -> torch.Tensor:
        ln = self.ln
        return F.layer_norm(X, ln.normalized_shape, ln.weight, ln.bias, ln.eps)

    def extra_repr(self) -> str:
        return f"pre_norm={self.pre_norm}"


def _own(score: str | Score) -> str | Score:
    """A private copy of a Score instance, so that no two attention modules share one."""
    return copy.deepcopy(score) if isinstance(score, Score) else score


def _self_attention_score(positional: str, num_heads: int, score: str | Score,
                          *, symmetric: bool) -> str | Score:
    _check_positional(positional)
    if positional != "alibi":
        return _own(score)
    if score != "scaled_dot":
        raise ValueError(
            f"positional='alibi' brings its own score (scaled dot + bias); got score={score!r}"
        )
    return ALiBiScore(num_heads, symmetric=symmetric)


def _rotary(positional: str, num_hiddens: int, num_heads: int) -> RotaryEmbedding | None:
    return RotaryEmbedding(num_hiddens // num_heads) if positional == "rope" else None


class TransformerEncoderBlock(nn.Module):
    """One encoder layer, the left column of Figure 1 (§3.1; d2l §11.7.4).

    ``X → AddNorm(X, MultiHeadSelfAttention(X)) → AddNorm(·, FFN(·))``.
    Source padding is masked with ``valid_lens``; with ``(B,)`` lengths the
    padded positions are also skipped as queries and in the FFN sublayer
    (outputs at valid positions are unchanged; the work scales with the real
    tokens). Outputs at padded positions are zeros.

    Shapes:
        X: ``(B, S, d)``; valid_lens: ``(B,)``; returns ``(B, S, d)``.

    Args:
        bias: biases in the attention projections; also the fifth positional
            argument, as the book's ``use_bias``.
        num_kv_heads, score, backend: as :class:`MultiHeadAttention`.
        positional: ``"rope"`` rotates queries and keys, ``"alibi"`` uses a
            symmetric :class:`ALiBiScore`; other kinds change nothing here.

    The book's ``TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads,
    dropout, use_bias)`` means the same here, but outputs at padded positions
    are zero (the book computes them); :class:`attnkit.d2l.TransformerEncoderBlock`
    has the book's values everywhere.
    """

    def __init__(self, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 dropout: float, bias: bool = False, *, num_kv_heads: int | None = None,
                 pre_norm: bool = False, score: str | Score = "scaled_dot",
                 activation: str | nn.Module = "relu", positional: str = "sinusoidal",
                 backend: str = "auto"):
        super().__init__()
        _check_bias_flag("TransformerEncoderBlock", bias)
        self.attention = MultiHeadAttention(
            num_hiddens, num_heads, dropout, num_kv_heads=num_kv_heads, bias=bias,
            score=_self_attention_score(positional, num_heads, score, symmetric=True),
            backend=backend, rotary=_rotary(positional, num_hiddens, num_heads))
        self.addnorm1 = AddNorm(num_hiddens, dropout, pre_norm=pre_norm)
        self.ffn = PositionWiseFFN(num_hiddens=num_hiddens, ffn_num_hiddens=ffn_num_hiddens,
                                   dropout=dropout, activation=activation)
        self.addnorm2 = AddNorm(num_hiddens, dropout, pre_norm=pre_norm)

    def forward(self, X: torch.Tensor, valid_lens: torch.Tensor | None = None, *,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        self.attention.check_inputs(X, query_name="X", owner="TransformerEncoderBlock")
        packed = Packed.from_lens(valid_lens, X.shape[0], X.shape[1])  # (B,) lens: skip padding
        Xp = self.forward_rows(packed.pack(X), packed, valid_lens=valid_lens, mask=mask)
        return packed.unpack(Xp)  # (B, S, d), zeros at padding

    def forward_rows(self, Xp: torch.Tensor, packed: Packed, *,
                     valid_lens: torch.Tensor | None = None,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
        """The block on packed positions ``Xp`` ``(n_valid, d)`` (``packed`` =
        ``Packed.from_lens(valid_lens, B, S)``); the encoder keeps them packed."""
        Xp = self.addnorm1.residual(Xp, lambda Zp: self.attention.forward_rows(
            Zp, packed, valid_lens=valid_lens, mask=mask))
        return self.addnorm2.residual(Xp, self.ffn)  # (n_valid, d)


class TransformerDecoderBlock(nn.Module):
    """One decoder layer, the right column of Figure 1 (§3.1, §3.2.3; d2l §11.7.5).

    1. masked (causal) multi-head self-attention over the target prefix;
    2. encoder–decoder attention: queries from the decoder, keys and values
       from the encoder outputs, source padding masked with ``src_valid_lens``;
    3. the position-wise FFN; each followed by :class:`AddNorm`.

    Incremental decoding passes ``self_cache`` (a :class:`KVCache`, appended
    to) and ``cross_cache`` (a static :class:`KVCache`: the encoder outputs
    are projected once). The causal mask is bottom-right aligned, so the new
    queries are the last positions of the cached sequence; for a full pass it
    is the usual look-ahead mask.

    Shapes:
        X: ``(B, T, d)``; enc_outputs: ``(B, S, d)``; src_valid_lens: ``(B,)``;
        tgt_valid_lens: ``(B,)`` or ``None``: padded target positions are
        skipped as keys, queries and in the FFN (the causal mask alone already
        keeps valid positions from seeing them; this saves the work);
        returns ``(B, T, d)``, zeros at padded positions.

    Not the book's block: the book's ``TransformerDecoderBlock(num_hiddens,
    ffn_num_hiddens, num_heads, dropout, i)`` takes a block index and runs
    ``forward(X, state) -> (X, state)``; that is
    :class:`attnkit.d2l.TransformerDecoderBlock`. A fifth positional argument
    here raises ``TypeError`` saying so.
    """

    def __init__(self, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 dropout: float, *args, num_kv_heads: int | None = None, bias: bool = False,
                 pre_norm: bool = False, score: str | Score = "scaled_dot",
                 activation: str | nn.Module = "relu", positional: str = "sinusoidal",
                 backend: str = "auto"):
        super().__init__()
        if args:
            raise TypeError(
                "TransformerDecoderBlock takes 4 positional arguments (num_hiddens, "
                "ffn_num_hiddens, num_heads, dropout), its options by keyword (bias=, "
                f"pre_norm=, ...); got {args} beyond them; " + _book_class(
                    "TransformerDecoderBlock", "(..., dropout, i), with a block index,"))
        self.self_attention = MultiHeadAttention(
            num_hiddens, num_heads, dropout, num_kv_heads=num_kv_heads, bias=bias,
            score=_self_attention_score(positional, num_heads, score, symmetric=False),
            backend=backend, rotary=_rotary(positional, num_hiddens, num_heads))
        self.addnorm1 = AddNorm(num_hiddens, dropout, pre_norm=pre_norm)
        cross_score = "scaled_dot" if positional == "alibi" else _own(score)
        self.cross_attention = MultiHeadAttention(
            num_hiddens, num_heads, dropout, num_kv_heads=num_kv_heads, bias=bias,
            score=cross_score, backend=backend)
        self.addnorm2 = AddNorm(num_hiddens, dropout, pre_norm=pre_norm)
        self.ffn = PositionWiseFFN(num_hiddens=num_hiddens, ffn_num_hiddens=ffn_num_hiddens,
                                   dropout=dropout, activation=activation)
        self.addnorm3 = AddNorm(num_hiddens, dropout, pre_norm=pre_norm)

    def forward(self, X: torch.Tensor, enc_outputs: torch.Tensor,
                src_valid_lens: torch.Tensor | None = None, *,
                tgt_valid_lens: torch.Tensor | None = None,
                self_cache: KVCache | None = None,
                cross_cache: KVCache | None = None) -> torch.Tensor:
        self.self_attention.check_inputs(X, query_name="X", owner="TransformerDecoderBlock")
        for cache in (self_cache, cross_cache):
            if cache is not None:
                cache.check_batch(X.shape[0], "X")
        if cross_cache is None or not cross_cache.filled:
            W_k = self.cross_attention.W_k
            _check_enc_outputs(enc_outputs, X.shape[0], W_k.in_features, dtype=W_k.weight.dtype)
        packed = _target_packing(tgt_valid_lens, X.shape[0], X.shape[1], self_cache is not None)
        Xp = self.forward_rows(packed.pack(X), packed, enc_outputs,
                               src_valid_lens=src_valid_lens, tgt_valid_lens=tgt_valid_lens,
                               self_cache=self_cache, cross_cache=cross_cache)
        return packed.unpack(Xp)  # (B, T, d), zeros at padding

    def forward_rows(self, Xp: torch.Tensor, packed: Packed, enc_outputs: torch.Tensor, *,
                     src_valid_lens: torch.Tensor | None = None,
                     tgt_valid_lens: torch.Tensor | None = None,
                     self_cache: KVCache | None = None,
                     cross_cache: KVCache | None = None) -> torch.Tensor:
        """The block on packed positions ``Xp`` ``(n_valid, d)`` (``packed`` from
        ``(B,)`` ``tgt_valid_lens`` without a cache, else dense)."""
        Xp = self.addnorm1.residual(Xp, lambda Zp: self.self_attention.forward_rows(
            Zp, packed, valid_lens=tgt_valid_lens, causal="bottom_right", kv_cache=self_cache))
        Xp = self.addnorm2.residual(Xp, lambda Zp: self.cross_attention.forward_rows(
            Zp, packed, keys=enc_outputs, values=enc_outputs, valid_lens=src_valid_lens,
            kv_cache=cross_cache))
        return self.addnorm3.residual(Xp, self.ffn)  # (n_valid, d)

    def step(self, x: torch.Tensor, self_cache: KVCache, cross_cache: KVCache,
             enc_outputs: torch.Tensor, key_mask: KeyMask | None = None, *,
             rows_per_source: int = 1) -> torch.Tensor:
        """The block on one new position per sequence, ``x`` ``(B, d)`` → ``(B, d)``, at
        inference: what :meth:`forward` computes for it with these caches, through the
        sublayers' ``step`` methods (:meth:`MultiHeadAttention.step`), which neither
        check nor pack (:meth:`TransformerDecoder.step` checks once per decoding).
        ``key_mask``: the source positions each sequence may attend (``None``: all);
        ``rows_per_source``: as :meth:`TransformerDecoder.step`'s."""
        x = self.addnorm1.step(x, lambda z: self.self_attention.step(z, self_cache))
        x = self.addnorm2.step(x, lambda z: self.cross_attention.step(
            z, cross_cache, memory=enc_outputs, key_mask=key_mask,
            rows_per_source=rows_per_source))
        return self.addnorm3.step(x, self.ffn.step)  # (B, d)


def _no_state(cls: str) -> str:
    """What a call of the book's state protocol (``init_state``, a state list) is told."""
    book = ", with init_state and" if cls == "TransformerDecoder" else ", with"
    return (f"attnkit.nn.{cls} takes no state: forward(X, enc_outputs, src_valid_lens) "
            "with tensors; " + _book_class(cls, f"{book} forward(X, state),"))


def _check_bias_flag(cls: str, bias) -> None:
    if not isinstance(bias, bool):
        raise TypeError(f"{cls}: bias (the book's use_bias) must be a bool; got {bias!r}")


def _target_packing(tgt_valid_lens, batch_size: int, length: int, cached: bool) -> Packed:
    """Target positions to compute: ``t < tgt_valid_lens[b]``; all of them with a cache
    (decoding steps are real tokens, and the cache keeps every position)."""
    if cached:
        return Packed.dense(batch_size, length)
    return Packed.from_lens(tgt_valid_lens, batch_size, length)


def _check_enc_outputs(enc_outputs, batch_size: int, size: int,
                       cls: str = "TransformerDecoderBlock",
                       dtype: torch.dtype | None = None) -> None:
    if not isinstance(enc_outputs, torch.Tensor):
        raise TypeError(
            f"enc_outputs must be a torch.Tensor; got {type(enc_outputs).__name__}. "
            + _no_state(cls))
    if enc_outputs.ndim != 3 or enc_outputs.shape[0] != batch_size or enc_outputs.shape[-1] != size:
        raise ValueError(
            f"enc_outputs must have shape (B, S, {size}) with B = {batch_size}; "
            f"got {shape_str(enc_outputs.shape)}"
        )
    if dtype is not None:
        check_module_dtype(cls, dtype, enc_outputs=enc_outputs)


def _check_positional(positional: str) -> str:
    return check_choice("positional", positional, POSITIONAL_KINDS)


def token_embedding(vocab_size: int, num_hiddens: int) -> nn.Embedding:
    """``nn.Embedding`` initialised with std ``d^-0.5``, so that ×√d gives unit variance.

    The paper multiplies embeddings by √d (§3.4) because they share weights
    with the pre-softmax projection, whose natural scale is ``d^-0.5``;
    ``nn.Embedding``'s default N(0, 1) would make the scaled embedding √d times
    larger than the positional encoding (amplitude 1) and drown the positions
    (d2l's implementation has this, and a char-level task learns slower with
    it: BENCHMARKS.md, "Figures behind choices in the code").
    """
    emb = nn.Embedding(vocab_size, num_hiddens)
    nn.init.normal_(emb.weight, mean=0.0, std=num_hiddens ** -0.5)
    return emb


class _Embed(nn.Module):
    """Token embedding × √d (§3.4) followed by the positional encoding (§3.5)."""

    def __init__(self, embedding: nn.Embedding, positional: str, dropout: float,
                 max_len: int):
        super().__init__()
        self.embedding = embedding
        d = embedding.embedding_dim
        self.scale = math.sqrt(d)
        if positional == "sinusoidal":
            self.pos_encoding: nn.Module = PositionalEncoding(d, dropout, max_len)
        elif positional == "learned":
            self.pos_encoding = LearnedPositionalEmbedding(d, dropout, max_len)
        else:  # relative kinds act inside attention: only the dropout of §5.4 stays
            self.pos_encoding = Dropout(dropout)

    def forward(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        X = self.embedding(tokens) * self.scale  # (B, N, d)
        if isinstance(self.pos_encoding, nn.Dropout):
            return self.pos_encoding(X)
        return self.pos_encoding(X, offset)  # (B, N, d)


class _TransformerStack(nn.Module):
    """What the encoder and decoder stacks share: checks, embedding + PE, N blocks of
    ``block_cls``, and the final LayerNorm of a pre-LN stack."""

    block_cls: type[nn.Module]

    def __init__(self, vocab_size: int, num_hiddens: int, ffn_num_hiddens: int,
                 num_heads: int, num_blks: int, dropout: float, bias: bool = False, *,
                 num_kv_heads: int | None = None, pre_norm: bool = False,
                 score: str | Score = "scaled_dot", activation: str | nn.Module = "relu",
                 positional: str = "sinusoidal", max_len: int = 1000,
                 embedding: nn.Embedding | None = None, backend: str = "auto"):
        super().__init__()
        check_positive_int("vocab_size", vocab_size)
        check_positive_int("num_blks", num_blks)
        _check_bias_flag(type(self).__name__, bias)
        _check_positional(positional)
        self.vocab_size, self.num_hiddens = vocab_size, num_hiddens
        if embedding is None:
            embedding = token_embedding(vocab_size, num_hiddens)
        self.embed = _Embed(embedding, positional, dropout, max_len)
        self.blocks = nn.ModuleList(
            self.block_cls(num_hiddens, ffn_num_hiddens, num_heads, dropout,
                           num_kv_heads=num_kv_heads, bias=bias, pre_norm=pre_norm,
                           score=score, activation=activation, positional=positional,
                           backend=backend)
            for _ in range(num_blks))
        self.final_norm = nn.LayerNorm(num_hiddens) if pre_norm else nn.Identity()


class TransformerEncoder(_TransformerStack):
    """The encoder stack, left half of Figure 1 (§3.1; d2l §11.7.4).

    ``tokens → Embedding·√d + PE → N × TransformerEncoderBlock (→ LayerNorm if pre-LN)``.

    Shapes:
        X: ``(B, S)`` token ids; valid_lens: ``(B,)``; returns ``(B, S, d)``.

    Args:
        embedding: an ``nn.Embedding(vocab_size, d)`` to use (e.g. shared
            with the decoder); a new one when ``None``.
        positional: one of :data:`POSITIONAL_KINDS`.
        Others: as :class:`TransformerEncoderBlock`; a Score instance is
            copied into every attention module (no parameters shared).
    """

    block_cls = TransformerEncoderBlock

    def forward(self, X: torch.Tensor, valid_lens: torch.Tensor | None = None) -> torch.Tensor:
        check_token_ids("src", X, self.vocab_size)
        packed = Packed.from_lens(valid_lens, *X.shape)  # padding is never computed
        Hp = packed.pack(self.embed(X))  # (n_valid, d)
        for blk in self.blocks:
            Hp = blk.forward_rows(Hp, packed, valid_lens=valid_lens)  # (n_valid, d)
        return packed.unpack(self.final_norm(Hp))  # (B, S, d), zeros at padding


class TransformerDecoder(_TransformerStack):
    """The decoder stack, right half of Figure 1 without the final Linear/Softmax.

    ``tokens → Embedding·√d + PE → N × TransformerDecoderBlock (→ LayerNorm if pre-LN)``;
    the output projection to the vocabulary lives in
    :class:`attnkit.models.Transformer` (so it can be tied to an embedding).

    Shapes:
        X: ``(B, T)`` token ids; enc_outputs: ``(B, S, d)``; src_valid_lens:
        ``(B,)``; returns ``(B, T, d)``.

    ``caches`` (incremental decoding): a sequence of ``(self_cache,
    cross_cache)`` pairs, one per block, and ``offset`` = the position of
    ``X[:, 0]`` (the number of tokens decoded before).
    """

    block_cls = TransformerDecoderBlock

    def init_state(self, *args, **kwargs):
        """Not here: this decoder takes ``enc_outputs`` and ``src_valid_lens`` in
        :meth:`forward`. Raises ``TypeError`` pointing to
        :class:`attnkit.d2l.TransformerDecoder`, which has the book's state protocol."""
        raise TypeError(_no_state("TransformerDecoder"))

    def forward(self, X: torch.Tensor, enc_outputs: torch.Tensor,
                src_valid_lens: torch.Tensor | None = None, *,
                tgt_valid_lens: torch.Tensor | None = None,
                caches: Sequence[tuple[KVCache, KVCache]] | None = None,
                offset: int = 0) -> torch.Tensor:
        check_token_ids("tgt", X, self.vocab_size)
        if caches is not None and len(caches) != len(self.blocks):
            raise ValueError(
                f"caches must hold one (self_cache, cross_cache) pair per block "
                f"({len(self.blocks)}); got {len(caches)}"
            )
        B, T = X.shape
        packed = _target_packing(tgt_valid_lens, B, T, caches is not None)
        Hp = packed.pack(self.embed(X, offset))  # (n_valid, d); padding is never computed
        if caches is None or not caches[0][1].filled:  # else the encoder keys are cached
            W_k = self.blocks[0].cross_attention.W_k
            _check_enc_outputs(enc_outputs, B, W_k.in_features, "TransformerDecoder",
                               W_k.weight.dtype)
        for i, blk in enumerate(self.blocks):
            self_cache, cross_cache = caches[i] if caches is not None else (None, None)
            Hp = blk.forward_rows(Hp, packed, enc_outputs, src_valid_lens=src_valid_lens,
                                  tgt_valid_lens=tgt_valid_lens, self_cache=self_cache,
                                  cross_cache=cross_cache)  # (n_valid, d)
        return packed.unpack(self.final_norm(Hp))  # (B, T, d), zeros at padding

    def step(self, tokens: torch.Tensor, caches: Sequence[tuple[KVCache, KVCache]],
             enc_outputs: torch.Tensor, key_mask: KeyMask | None = None, *,
             offset: int = 0, rows_per_source: int = 1) -> torch.Tensor:
        """One decoding step at inference: the hidden states ``(B, d)`` after one new token
        per sequence, ``tokens`` ``(B, 1)`` at position ``offset``, appending to
        ``caches`` (the encoder keys are projected into the cross caches at the first
        step); :meth:`forward` on the same token with these caches gives the same.

        The tokens and the caches' batch are checked at every step; ``enc_outputs``
        when the cross caches are empty. ``key_mask`` (built once per decoding by
        :meth:`KeyMask.from_lens`, which checks ``src_valid_lens``) is which source
        positions each sequence may attend; ``None``: all.

        ``rows_per_source = G``: each run of ``G`` consecutive rows (a sentence's beams)
        decodes the same source, so ``enc_outputs`` ``(B / G, S, d)``, ``key_mask`` and
        the cross caches hold one row per source, projected once and attended by its
        ``G`` rows together (:meth:`MultiHeadAttention.step`).

        Raises:
            RuntimeError: in training mode (a step applies no dropout).
            ValueError, TypeError: the errors of :meth:`forward`; ``rows_per_source``
                not a positive int dividing ``B``.
        """
        if self.training:
            raise RuntimeError("TransformerDecoder.step is for inference (it applies no "
                               "dropout): call .eval() first, or run forward with caches")
        check_token_ids("tgt", tokens, self.vocab_size)
        if tokens.shape[1] != 1 or len(caches) != len(self.blocks):
            raise ValueError(
                f"step takes tokens (B, 1) and one (self_cache, cross_cache) pair per block "
                f"({len(self.blocks)}); got tokens {shape_str(tokens.shape)} and "
                f"{len(caches)} pairs")
        B = tokens.shape[0]
        G = check_positive_int("rows_per_source", rows_per_source)
        if B % G:
            raise ValueError(f"rows_per_source must divide the batch of tokens, B = {B}; "
                             f"got {G}")
        for self_cache, cross_cache in caches:
            self_cache.check_batch(B, "tokens")
            cross_cache.check_batch(B // G, "tokens" if G == 1 else f"tokens ({G} per source)")
        if not caches[0][1].filled:
            W_k = self.blocks[0].cross_attention.W_k
            _check_enc_outputs(enc_outputs, B // G, W_k.in_features, "TransformerDecoder",
                               W_k.weight.dtype)
        x = self.embed(tokens, offset)[:, 0]  # (B, d)
        for blk, (self_cache, cross_cache) in zip(self.blocks, caches):
            x = blk.step(x, self_cache, cross_cache, enc_outputs, key_mask,
                         rows_per_source=G)  # (B, d)
        return self.final_norm(x)  # (B, d)
