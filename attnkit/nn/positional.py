"""Positional information for attention: absolute encodings, rotary, and ALiBi.

Self-attention is permutation equivariant, so the order of the tokens has to be
put in from outside. Four ways, each usable alone:

* :class:`PositionalEncoding` — the fixed sinusoids of "Attention Is All You
  Need" §3.5 (d2l §11.6.3), added to the (scaled) token embeddings.
* :class:`LearnedPositionalEmbedding` — a learned vector per absolute position
  (the alternative the paper tried in §3.5 and Table 3 row (E)).
* :class:`RotaryEmbedding` — RoPE (Su et al., "RoFormer", 2021): queries and
  keys of every head are rotated by an angle proportional to their position, so
  ``q_mᵀ k_n`` depends on ``m − n`` only.
* :class:`ALiBi` / :class:`ALiBiScore` — "Attention with Linear Biases" (Press
  et al., 2022): no embedding at all, a per-head linear penalty on the distance
  added to the attention scores.

Every encoding takes a start position (``offset``) so that incremental decoding
(one new token at a time, with a key/value cache) sees the same positions as a
full forward pass.

Shapes use the symbols of ``docs/shapes.md``: ``B`` batch, ``N`` sequence
length, ``d`` model size (``num_hiddens``), ``H`` heads, ``Dh`` head size,
``Nq``/``Nk`` queries/keys. ``max_len`` is the number of positions an
encoding covers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import broadcast_shapes, check_is_tensor, shape_str
from .._values import (
    check_finite,
    check_nonnegative_int,
    check_positive_int,
    check_probability,
)
from ..scores import DotForm, Score
from .dropout import Dropout

__all__ = [
    "ALiBi",
    "ALiBiScore",
    "LearnedPositionalEmbedding",
    "PositionalEncoding",
    "RotaryEmbedding",
    "alibi_slopes",
    "sinusoidal_table",
]


def _check_offset(offset, length: int, max_len: int | None) -> int:
    check_nonnegative_int("offset (the start position)", offset)
    if max_len is not None and offset + length > max_len:
        raise ValueError(
            f"positions offset + N = {offset} + {length} = {offset + length} exceed "
            f"max_len={max_len}; build the module with a larger max_len"
        )
    return offset


def _check_sequence(X, num_hiddens: int) -> None:
    check_is_tensor("X", X, "a torch.Tensor (B, N, d)")
    if X.ndim != 3 or X.shape[-1] != num_hiddens:
        raise ValueError(
            f"X must have shape (B, N, d) with d = num_hiddens = {num_hiddens}; "
            f"got {shape_str(X.shape)}"
        )


def sinusoidal_table(max_len: int, num_hiddens: int) -> torch.Tensor:
    """The paper's table ``P`` of shape ``(max_len, d)``, in float64.

    ``P[pos, 2i] = sin(pos / 10000^(2i/d))`` and
    ``P[pos, 2i+1] = cos(pos / 10000^(2i/d))`` ("Attention Is All You Need"
    §3.5). An odd ``d`` is allowed: the last column is a sine.
    """
    check_positive_int("max_len", max_len)
    check_positive_int("num_hiddens", num_hiddens)
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
    two_i = torch.arange(0, num_hiddens, 2, dtype=torch.float64)  # (ceil(d/2),)
    angles = pos / torch.pow(10000.0, two_i / num_hiddens)  # (max_len, ceil(d/2))
    P = torch.zeros(max_len, num_hiddens, dtype=torch.float64)
    P[:, 0::2] = torch.sin(angles)
    P[:, 1::2] = torch.cos(angles[:, : num_hiddens // 2])
    return P


class PositionalEncoding(nn.Module):
    """Sinusoidal positional encoding ("Attention Is All You Need" §3.5, d2l §11.6.3).

    ``forward(X)`` returns ``dropout(X + P[offset : offset + N])`` where
    ``P[pos, 2i] = sin(pos / 10000^(2i/d))``, ``P[pos, 2i+1] = cos(pos / 10000^(2i/d))``.
    The paper applies dropout to "the sums of the embeddings and the positional
    encodings" (§5.4), as here.

    Shapes:
        X: ``(B, N, d)``; returns ``(B, N, d)``.

    Args:
        num_hiddens: ``d``, the model size.
        dropout: dropout probability on the sum.
        max_len: number of positions in the table.

    ``offset`` (in ``forward``) is the position of ``X[:, 0]``; incremental
    decoding passes the number of tokens already decoded.

    Raises:
        ValueError: ``X`` not ``(B, N, d)``, or ``offset + N > max_len``.
    """

    def __init__(self, num_hiddens: int, dropout: float, max_len: int = 1000):
        super().__init__()
        self.num_hiddens = check_positive_int("num_hiddens", num_hiddens)
        self.max_len = check_positive_int("max_len", max_len)
        self.dropout = Dropout(check_probability("dropout", dropout))
        # Not in the state dict: it is a function of (max_len, d), not a parameter. Kept in
        # float64 (exact for float64 models); each call casts its slice to X's dtype.
        P = sinusoidal_table(max_len, num_hiddens)
        self.register_buffer("P", P.unsqueeze(0), persistent=False)  # (1, max_len, d)

    def forward(self, X: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _check_sequence(X, self.num_hiddens)
        n = X.shape[1]
        offset = _check_offset(offset, n, self.max_len)
        P = self.P[:, offset:offset + n].to(X.dtype)  # (1, N, d)
        return self.dropout(X + P)  # (B, N, d)

    def extra_repr(self) -> str:
        return f"num_hiddens={self.num_hiddens}, max_len={self.max_len}"


class LearnedPositionalEmbedding(nn.Module):
    """Learned absolute positional embedding ("Attention Is All You Need" §3.5, Table 3 (E)).

    One trained vector per position, added to ``X``:
    ``dropout(X + E[offset : offset + N])``. Initialized ``N(0, 0.02²)``.

    Shapes:
        X: ``(B, N, d)``; returns ``(B, N, d)``.

    Raises:
        ValueError: ``X`` not ``(B, N, d)``, or ``offset + N > max_len``.
    """

    def __init__(self, num_hiddens: int, dropout: float = 0.0, max_len: int = 1000):
        super().__init__()
        self.num_hiddens = check_positive_int("num_hiddens", num_hiddens)
        self.max_len = check_positive_int("max_len", max_len)
        self.embedding = nn.Embedding(max_len, num_hiddens)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.dropout = Dropout(check_probability("dropout", dropout))

    def forward(self, X: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _check_sequence(X, self.num_hiddens)
        n = X.shape[1]
        offset = _check_offset(offset, n, self.max_len)
        positions = torch.arange(offset, offset + n, device=X.device)  # (N,)
        return self.dropout(X + self.embedding(positions).to(X.dtype))  # (B, N, d)

    def extra_repr(self) -> str:
        return f"num_hiddens={self.num_hiddens}, max_len={self.max_len}"


class RotaryEmbedding(nn.Module):
    """Rotary position embedding, RoPE (Su et al., "RoFormer", 2021, eq. 13–15).

    Each pair of features ``(x[2i], x[2i+1])`` of a query or key at position
    ``m`` is rotated by the angle ``m·θ_i`` with ``θ_i = base^(−2i/Dh)``
    (the paper's interleaved pairs). Rotations preserve norms, and
    ``⟨R_m q, R_n k⟩ = ⟨q, R_{n−m} k⟩``, so dot-product scores depend on the
    relative position ``n − m`` only. It is applied to the queries and keys of
    every head, after their projections and before the scores
    (see :class:`attnkit.nn.MultiHeadAttention`'s ``rotary`` argument); values
    are not rotated. Angles are computed in float32 (float64 for float64
    inputs) and the result is returned in the input dtype.

    Shapes:
        x: ``(..., N, Dh)`` (e.g. ``(B, H, N, Dh)``); returns the same shape.

    Args:
        head_dim: ``Dh``, even.
        base: the ``10000`` of the angle frequencies.

    Raises:
        ValueError: odd ``head_dim``, ``x`` whose last dim is not ``head_dim``,
            negative ``offset``.
    """

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        check_positive_int("head_dim", head_dim)
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings; got {head_dim}")
        self.head_dim, self.base = head_dim, check_finite("base", base, above=1)
        # cos and sin of the angles of positions [0, n), per (device, dtype): a decoding
        # step rotates one position, and computing its angles anew costs more than that
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def angles(self, num_positions: int, offset: int = 0, *, device=None,
               dtype=torch.float32) -> torch.Tensor:
        """``m·θ_i`` for ``m = offset … offset + N − 1``: ``(N, Dh/2)``."""
        i = torch.arange(0, self.head_dim, 2, device=device, dtype=torch.float64)  # (Dh/2,)
        theta = self.base ** (-i / self.head_dim)  # (Dh/2,)
        m = torch.arange(offset, offset + num_positions, device=device, dtype=torch.float64)
        return (m[:, None] * theta[None, :]).to(dtype)  # (N, Dh/2)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[-1] != self.head_dim:
            got = shape_str(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (..., N, Dh) with Dh = {self.head_dim}; got {got}")
        offset = _check_offset(offset, x.shape[-2], None)
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        cos, sin = self._cos_sin(offset + x.shape[-2], x.device, work)
        cos, sin = cos[offset:offset + x.shape[-2]], sin[offset:offset + x.shape[-2]]
        pairs = x.to(work).unflatten(-1, (-1, 2))  # (..., N, Dh/2, 2)
        even, odd = pairs[..., 0], pairs[..., 1]  # (..., N, Dh/2)
        rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
        return rotated.flatten(-2).to(x.dtype)  # (..., N, Dh)

    def _cos_sin(self, length: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos`` and ``sin`` of :meth:`angles` for positions ``[0, n)``, ``n >= length``
        (kept and doubled when too short; each position's values are those
        :meth:`angles` gives it at any offset): ``(n, Dh/2)`` each."""
        key = (str(device), dtype)
        table = self._tables.get(key)
        if table is None or table[0].shape[0] < length:
            ang = self.angles(max(2 * length, 64), device=device, dtype=dtype)  # (n, Dh/2)
            table = self._tables[key] = (torch.cos(ang), torch.sin(ang))
        return table

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base:g}"


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """Head slopes ``m_n`` of ALiBi (Press et al., 2022, §3), float64 ``(H,)``.

    For ``H`` a power of two, the geometric sequence starting at
    ``2^(−8/H)`` with that same ratio: ``m_n = 2^(−8n/H)``, ``n = 1 … H``
    (8 heads: 1/2, 1/4, …, 1/256). Otherwise, as in the authors' code: the
    slopes of the closest smaller power of two ``P``, followed by every other
    slope of ``2P`` heads until there are ``H``.
    """
    check_positive_int("num_heads", num_heads)

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    p = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = power_of_two(p)
    if p < num_heads:
        slopes += power_of_two(2 * p)[0::2][: num_heads - p]
    return torch.tensor(slopes, dtype=torch.float64)


class ALiBi(nn.Module):
    """Attention with Linear Biases (Press et al., 2022): the additive bias per head.

    ``bias[n, i, j] = m_n · (j − i')`` with ``i' = i + Nk − Nq`` the absolute
    position of query ``i`` when the queries are the *last* ``Nq`` of the
    ``Nk`` positions (bottom-right alignment, as in decoding with a cache).
    On the causal keys ``j ≤ i'`` it is ``−m_n·(distance)``, the paper's
    penalty. ``symmetric=True`` gives ``−m_n·|j − i'|`` for bidirectional
    (encoder) self-attention, where a one-sided bias would favour later keys.

    Slopes: :func:`alibi_slopes`.

    Shapes:
        ``bias(Nq, Nk)`` returns ``(H, Nq, Nk)`` in float32 (or ``dtype``).
    """

    def __init__(self, num_heads: int, *, symmetric: bool = False):
        super().__init__()
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.symmetric = bool(symmetric)
        # float64, so that a float64 model gets exact slopes (.float() casts it like weights)
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def distances(self, num_queries: int, num_keys: int, device=None) -> torch.Tensor:
        """``j − i'`` (or ``−|j − i'|`` if symmetric): ``(Nq, Nk)`` int64."""
        i = torch.arange(num_queries, device=device)[:, None] + (num_keys - num_queries)
        j = torch.arange(num_keys, device=device)[None, :]
        d = j - i  # (Nq, Nk)
        return -d.abs() if self.symmetric else d

    def bias(self, num_queries: int, num_keys: int, *, dtype=torch.float32) -> torch.Tensor:
        d = self.distances(num_queries, num_keys, device=self.slopes.device)  # (Nq, Nk)
        return (self.slopes[:, None, None] * d).to(dtype)  # (H, Nq, Nk)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, symmetric={self.symmetric}"


class ALiBiScore(Score):
    """Scaled dot-product score plus the ALiBi bias: ``qᵀk/√Dh + m_n·(j − i')``.

    A :class:`attnkit.scores.Score` to pass as ``score=`` to
    :class:`attnkit.nn.MultiHeadAttention` (which then applies it per head).
    The head index is read from the score's leading dims: heads on dim ``-3``
    (``(B, H, Nq, Nk)``), split as ``(Hkv, G)`` on dims ``-4, -3`` (the
    grouped-query layout of ``MultiHeadAttention``, head ``n = kv·G + g``), or
    those dims flattened row-major into one (head = flat index mod ``H``).
    Query positions are bottom-right aligned (see :class:`ALiBi`), so a decoding
    step with a key/value cache gets the same bias as the full pass.

    Backends: the one-sided form is also a dot form (:meth:`as_dot`): for a
    fixed query ``−m_n·i'`` is constant and cancels in the softmax, leaving a
    key bias ``m_n·j``, so the fused ``sdpa`` backend runs it (float32/float64
    only: in fp16/bf16 a bias that grows with ``j`` would round away the
    differences between nearby keys). Everything else runs on ``reference``.
    A blocked backend (``chunked``) would evaluate the score on slices of
    queries and keys, where positions and heads are no longer those of the
    sequence; see :attr:`needs_whole_rows`.

    Raises:
        ValueError: scores whose head dims do not match ``num_heads``.
    """

    name = "alibi"
    #: The bias depends on absolute row positions (and the head of each row), so the
    #: score must see whole ``(…, Nq, Nk)`` matrices, never blocks of rows or keys.
    #: :class:`attnkit.nn.MultiHeadAttention` therefore runs it on ``sdpa`` (through
    #: :meth:`as_dot`, computed on the whole call) or ``reference`` only.
    needs_whole_rows = True

    def __init__(self, num_heads: int, *, symmetric: bool = False, scale: float | None = None):
        super().__init__()
        self.alibi = ALiBi(num_heads, symmetric=symmetric)
        self.scale = scale

    @property
    def num_heads(self) -> int:
        return self.alibi.num_heads

    def _per_head(self, lead: tuple[int, ...], per_head: torch.Tensor) -> torch.Tensor:
        """``per_head`` ``(H, *rest)`` laid out to broadcast against ``(*lead, *rest)``.

        Heads must be the innermost leading dims: ``(…, H)``, ``(…, Hkv, G)`` or those
        flattened row-major into one dim (as a backend may do), so that the head of a
        flat batch index ``n`` is ``n mod H``.
        """
        H, rest = self.num_heads, tuple(per_head.shape[1:])
        if len(lead) >= 1 and lead[-1] == H:
            return per_head  # (H, *rest)
        if len(lead) >= 2 and lead[-2] * lead[-1] == H:
            return per_head.view(lead[-2], lead[-1], *rest)  # (Hkv, G, *rest)
        total = math.prod(lead)
        if total == 0 or total % H:
            raise ValueError(
                f"score 'alibi' has {H} head slopes; the scores' leading dims "
                f"{shape_str(lead)} must end with H={H} (B, H, Nq, Nk), with (Hkv, G) where "
                f"Hkv·G={H}, or be those flattened (a multiple of {H})"
            )
        return per_head.repeat(total // H, *([1] * len(rest))).view(*lead, *rest)

    def _scale(self, head_dim: int) -> float:
        return self.scale if self.scale is not None else 1.0 / math.sqrt(head_dim)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        scores = (queries @ keys.transpose(-1, -2)) * self._scale(queries.shape[-1])
        lead = tuple(scores.shape[:-2])
        nq, nk = scores.shape[-2:]
        bias = self.alibi.bias(nq, nk, dtype=scores.dtype).to(scores.device)  # (H, Nq, Nk)
        return scores + self._per_head(lead, bias)  # (..., Nq, Nk)

    def as_dot(self, queries, keys):
        # The key bias m_n·j grows with the position: in fp16/bf16 it would round away
        # the differences between nearby keys, so low precision takes the generic path.
        if self.alibi.symmetric or keys.dtype not in (torch.float32, torch.float64):
            return None
        lead = broadcast_shapes(queries.shape[:-2], keys.shape[:-2])
        nk = keys.shape[-2]
        j = torch.arange(nk, device=keys.device, dtype=keys.dtype)  # (Nk,)
        per_head = self.alibi.slopes.to(keys.device, keys.dtype)[:, None] * j  # (H, Nk)
        key_bias = self._per_head(lead, per_head).expand(*lead, nk)  # (..., Nk)
        return DotForm(queries, keys, self._scale(queries.shape[-1]), key_bias)

    def extra_repr(self) -> str:
        return "" if self.scale is None else f"scale={self.scale}"
