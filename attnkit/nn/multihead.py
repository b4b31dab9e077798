"""Multi-head attention ("Attention Is All You Need" §3.2.2, Figure 2 right; d2l §11.5).

``MultiHead(Q, K, V) = Concat(head_1, …, head_H) W_o`` with
``head_h = Attention(Q W_q^h, K W_k^h, V W_v^h)``. The ``H`` projections of
each kind are one ``nn.Linear`` whose output is split into heads, and all heads
run as one batched call of :func:`attnkit.attention` on ``(B, H, N, Dh)``.

Shapes use the symbols of ``docs/shapes.md`` (``B``, ``H``, ``Hkv``, ``G``,
``Nq``, ``Nk``, ``d``, ``Dh``, ``n_valid``).

Grouped-query attention (GQA, Ainslie et al., 2023) and multi-query attention
(MQA, Shazeer, 2019, ``num_kv_heads=1``) project keys and values to
``Hkv < H`` heads; query head ``n`` uses key/value head ``n // G`` (the
grouping of ``repeat_interleave(G, dim=1)``). Instead of copying the key/value
heads, the queries are viewed as ``(B, Hkv, G, Nq, Dh)`` and the keys/values as
``(B, Hkv, 1, Nk, Dh)``; :func:`attnkit.attention` broadcasts the extra leading
dims, so nothing is repeated in memory.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import (
    broadcast_shapes,
    check_bool_mask,
    check_is_tensor,
    check_module_dtype,
    check_query_valid_lens,
    check_valid_lens,
    shape_str,
)
from .._values import check_divisible, check_positive_int, check_probability
from ..backends import check_backend_name
from ..functional import attention
from ..kernels import cpu_step
from ..scores import DotForm, Score, make_score
from .attention import KeptWeights
from .packed import Packed, select_valid  # noqa: F401  (select_valid: also importable here)
from .positional import RotaryEmbedding

__all__ = ["KVCache", "KeyMask", "MultiHeadAttention", "fused_step_linear", "fused_weights",
           "step_linear"]

#: Backends whose computation :meth:`MultiHeadAttention.step` runs itself, as one SDPA
#: call, for scores with a dot-product form (``auto`` gives such scores to ``sdpa``).
_FUSED_STEP_BACKENDS = ("auto", "sdpa")


class KVCache:
    """Projected keys and values of the positions seen so far, for one attention module.

    Two kinds:

    * ``KVCache()`` (self-attention while decoding): each call of
      :class:`MultiHeadAttention` appends the new keys/values along the
      sequence axis and attends over all of them.
    * ``KVCache(static=True)`` (cross-attention over encoder outputs): the
      first call projects the keys/values and stores them; later calls reuse
      them and ignore their ``keys``/``values`` arguments.

    Tensors are stored after projection (and rotary embedding), before any
    grouped-query broadcast: ``keys``/``values`` are ``(B, Hkv, N, Dh)``.
    Outside autograd a growing cache keeps them in buffers with room for more
    positions (``keys``/``values`` are views of them): a step writes its new key and
    value into the room and copies nothing else, until the room is full or a
    :meth:`reorder` selects rows (then one copy into new buffers, twice as long as
    the cache). A step never writes where an earlier view reaches, so a tensor read
    from ``keys``, ``values`` or :meth:`update` keeps its content.

    A reader that takes keys by row (:meth:`MultiHeadAttention.step` with the compiled
    step kernel) appends with :meth:`update_by_rows` instead: a :meth:`reorder` then
    copies nothing either; the cache keeps, per row and position, which buffer row
    holds it (a beam takes its history from its parent's row), and is gathered into
    plain rows only when read otherwise (``keys``, ``values``, :meth:`update`) or when
    its room is full.

    ``fused`` is free for the module that fills the cache to keep what does not
    change during one decoding (:meth:`MultiHeadAttention.step` keeps its
    ``[W_q; W_k; W_v]`` product there, :func:`fused_step_linear`).
    """

    def __init__(self, *, static: bool = False):
        self.static = bool(static)
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None
        self._order: torch.Tensor | None = None  # a row selection not yet applied
        self._room: tuple[torch.Tensor, torch.Tensor] | None = None  # buffers the views are of
        # (B, N) int64: the buffer row of each row's position j (update_by_rows); when set,
        # _keys/_values are views of all the buffers' rows and _order is None
        self._src: torch.Tensor | None = None
        self.fused: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def keys(self) -> torch.Tensor | None:
        self._apply_order()
        return self._keys

    @property
    def values(self) -> torch.Tensor | None:
        self._apply_order()
        return self._values

    def __len__(self) -> int:
        return 0 if self._keys is None else int(self._keys.shape[-2])

    @property
    def filled(self) -> bool:
        return self._keys is not None

    @property
    def batch_size(self) -> int | None:
        """``B`` of the cached keys (after a pending :meth:`reorder`); ``None`` if empty."""
        if self._keys is None:
            return None
        if self._src is not None:
            return int(self._src.shape[0])
        return int(self._order.shape[0] if self._order is not None else self._keys.shape[0])

    def check_batch(self, batch_size: int, query_name: str = "queries") -> None:
        """Raise ``ValueError`` unless this cache can serve ``batch_size`` sequences: a
        growing cache holds exactly ``B`` of them; a static one ``B`` or 1 (shared)."""
        held = self.batch_size
        if held is None or held == batch_size or (self.static and held == 1):
            return
        kind = "KVCache(static=True)" if self.static else "KVCache()"
        raise ValueError(
            f"kv_cache ({kind}) holds keys of B = {held} sequences; got {query_name} of "
            f"B = {batch_size}. A cache serves the batch it was filled with: start a new "
            f"{kind} for another, or select its rows with kv_cache.reorder(indices)"
        )

    def update(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store (static) or append (self-attention) ``(B, Hkv, n, Dh)``; return all.

        A pending :meth:`reorder` is applied while appending, in the same copy.

        Raises:
            ValueError: a growing cache given keys of another batch than it holds.
        """
        if not self.static:
            self.check_batch(keys.shape[0], "keys")
        self._gather()
        if self._keys is None or self.static:
            self._keys, self._values, self._order, self._room = keys, values, None, None
        elif torch.is_grad_enabled() and any(t.requires_grad for t in (
                self._keys, self._values, keys, values)):  # autograd sees each copy
            old_k, old_v = self._keys, self._values
            if self._order is not None:
                old_k, old_v = old_k.index_select(0, self._order), old_v.index_select(0,
                                                                                    self._order)
            self._keys, self._values = torch.cat((old_k, keys), -2), torch.cat((old_v, values), -2)
            self._order, self._room = None, None
        else:
            self._append(keys, values)
        return self._keys, self._values

    def _append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Write ``(B, Hkv, n, Dh)`` after the ``N`` cached positions, into the buffers'
        room; new buffers (room for ``2·(N + n)`` positions, the rows of a pending
        :meth:`reorder` copied into them) when there is no room or rows are selected."""
        N, n = self._keys.shape[-2], keys.shape[-2]
        room = self._room
        if self._order is not None or room is None or room[0].shape[-2] < N + n \
                or room[0].dtype != keys.dtype or room[1].dtype != values.dtype:
            room = (_moved(self._keys, keys, self._order), _moved(self._values, values,
                                                                   self._order))
            self._order, self._room = None, room
        room[0][:, :, N:N + n] = keys
        room[1][:, :, N:N + n] = values
        self._keys, self._values = room[0][:, :, :N + n], room[1][:, :, :N + n]

    def update_by_rows(self, keys: torch.Tensor, values: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`update` for a reader that takes each key from a row it is told:
        ``(K, V, rows)`` with ``K``, ``V`` ``(R, Hkv, N, Dh)`` and ``rows`` ``(B, N)`` int64,
        key ``j`` of sequence ``b`` in row ``rows[b, j]`` (``rows`` ``None``: in row ``b``,
        ``R = B``). Selected rows (:meth:`reorder`) are not copied: the new keys go into
        rows ``0 … B - 1`` at the new positions, where no row's history is, and the table
        says where each row's history lies. The same tensors as :meth:`update` where a
        static cache, autograd or a first call leaves nothing to share.

        Raises:
            ValueError: a growing cache given keys of another batch than it holds.
        """
        if not self.static:
            self.check_batch(keys.shape[0], "keys")
        if self._keys is None or self.static or (torch.is_grad_enabled() and any(
                t.requires_grad for t in (self._keys, self._values, keys, values))):
            return (*self.update(keys, values), None)
        if self._src is None and self._order is None:
            self._append(keys, values)
            return self._keys, self._values, None
        B, n, N = keys.shape[0], keys.shape[-2], self._keys.shape[-2]
        room = self._room
        if self._src is None:  # a pending selection of the cache's rows
            if room is None:
                room = (_moved(self._keys, self._keys[:, :, :0], None),
                        _moved(self._values, self._values[:, :, :0], None))
                self._room = room
            src = self._order[:, None].expand(B, N)
        else:
            src = self._src
        if room[0].shape[0] < B or room[0].shape[-2] < N + n \
                or room[0].dtype != keys.dtype or room[1].dtype != values.dtype:
            self._src, self._order = src, None
            self._gather()  # plain rows, as many as the new batch
            self._append(keys, values)
            return self._keys, self._values, None
        room[0][:B, :, N:N + n] = keys
        room[1][:B, :, N:N + n] = values
        new = torch.arange(B, device=keys.device)[:, None].expand(B, n)
        self._src = torch.cat((src, new), 1)
        self._order = None
        self._keys, self._values = room[0][:, :, :N + n], room[1][:, :, :N + n]
        return self._keys, self._values, self._src

    def reorder(self, indices: torch.Tensor) -> None:
        """Select batch rows ``indices`` (``(B',)`` long), e.g. surviving beams.

        A growing cache defers the selection to the next :meth:`update` (or read),
        which copies the selected rows and the new keys at once; one filled by
        :meth:`update_by_rows` selects rows of its table and copies nothing.
        """
        if self._keys is None:
            return
        if self._src is not None:
            self._src = self._src.index_select(0, indices)
        elif self.static:
            self._keys = self._keys.index_select(0, indices)
            self._values = self._values.index_select(0, indices)
        else:
            self._order = indices if self._order is None else self._order.index_select(0,
                                                                                       indices)

    def _gather(self) -> None:
        """Plain rows from the table of :meth:`update_by_rows`: row ``b``'s keys gathered
        from the buffer rows its table names, into new buffers (room for ``2·N``)."""
        if self._src is None:
            return
        src, N = self._src, self._keys.shape[-2]
        at = torch.arange(N, device=src.device)
        gathered = []
        for buf in (self._keys, self._values):  # (R, Hkv, N, D) views
            out = buf.new_empty(src.shape[0], buf.shape[1], 2 * N, buf.shape[3])
            out[:, :, :N] = buf.transpose(1, 2)[src, at].transpose(1, 2)
            gathered.append(out)
        self._room = (gathered[0], gathered[1])
        self._keys, self._values = gathered[0][:, :, :N], gathered[1][:, :, :N]
        self._src, self._order = None, None

    def _apply_order(self) -> None:
        self._gather()
        if self._order is not None:
            self._keys = self._keys.index_select(0, self._order)
            self._values = self._values.index_select(0, self._order)
            self._order, self._room = None, None

    def __repr__(self) -> str:
        return f"KVCache(static={self.static}, length={len(self)})"


def _moved(old: torch.Tensor, new: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
    """A buffer ``(B, H, 2·(N + n), D)`` (``B``, ``n``, ``D`` of ``new``) whose first ``N``
    positions hold ``old[order]`` (``old`` when ``order`` is ``None``): one copy."""
    B, H, N, D = new.shape[0], old.shape[1], old.shape[2], new.shape[3]
    out = new.new_empty(B, H, 2 * (N + new.shape[2]), D)
    if order is None:
        out[:, :, :N] = old
    else:
        torch.index_select(old, 0, order, out=out[:, :, :N])
    return out


class KeyMask(NamedTuple):
    """Which keys each sequence of a decoding step may attend: its first ``valid_lens[b]``.

    Built once per decoding (:meth:`from_lens`, which checks the lengths) and passed to
    every :meth:`MultiHeadAttention.step` of its cross-attention: ``attend``
    ``(B, 1, 1, Nk)`` boolean, the mask of one SDPA call; a sequence without keys
    attends all of them there and ``rows`` ``(B, 1, 1, 1)`` (``None`` when every
    sequence has a key) zeroes its output, as the ``sdpa`` backend does.
    """

    valid_lens: torch.Tensor
    attend: torch.Tensor
    rows: torch.Tensor | None

    @classmethod
    def from_lens(cls, valid_lens: torch.Tensor, num_keys: int) -> KeyMask:
        """The mask of ``(B,)`` ``valid_lens`` over ``num_keys`` keys.

        Raises:
            TypeError, ValueError: ``valid_lens`` not ``(B,)`` integers in ``[0, Nk]``.
        """
        valid_lens = check_valid_lens(valid_lens, None, None, num_keys, None)
        attend = torch.arange(num_keys, device=valid_lens.device) < valid_lens[:, None]
        has_keys = valid_lens > 0  # (B,)
        rows = None
        if not bool(has_keys.all()):
            attend, rows = attend | ~has_keys[:, None], has_keys.view(-1, 1, 1, 1)
        return cls(valid_lens, attend[:, None, None, :], rows)  # (B, 1, 1, Nk)

    def index_select(self, indices: torch.Tensor) -> KeyMask:
        """The mask of batch rows ``indices`` (``(B',)`` long)."""
        rows = None if self.rows is None else self.rows.index_select(0, indices)
        return KeyMask(self.valid_lens.index_select(0, indices),
                       self.attend.index_select(0, indices), rows)


def fused_weights(*linears: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[W_1; W_2; …]`` and ``[b_1; b_2; …]``: several linear layers of the same input
    size as one."""
    bias = None if linears[0].bias is None else torch.cat([lin.bias for lin in linears])
    return torch.cat([lin.weight for lin in linears]), bias


def step_linear(layer: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """``layer(X)`` in a decoding step: a plain ``nn.Linear`` as one ``F.linear`` (no module
    call), any other layer (an int8 one of :mod:`attnkit.decode.precision`) by calling it,
    so that it runs in its own arithmetic (through its ``step_forward`` where its class
    has one: the same computation without the module call)."""
    if type(layer) is nn.Linear:
        return F.linear(X, layer.weight, layer.bias)
    step = getattr(type(layer), "step_forward", None)
    return layer(X) if step is None else step(layer, X)


def fused_step_linear(*linears: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Several layers of the same input as one product, made once per decoding: layers of
    a type that fuses itself (a classmethod ``fused``, as int8 layers have) give one layer
    of that type; plain ``nn.Linear`` layers one ``F.linear`` of their weights stacked."""
    kind = type(linears[0])
    if kind is not nn.Linear and hasattr(kind, "fused") and all(
            type(lin) is kind for lin in linears):
        fused = kind.fused(*linears)
        return getattr(fused, "step_forward", fused)
    weight, bias = fused_weights(*linears)
    return functools.partial(F.linear, weight=weight, bias=bias)


def _fused_linear(X: torch.Tensor, linears: tuple[nn.Linear, ...]) -> torch.Tensor:
    """``X`` through several linear layers of the same input size as one product:
    ``X [W_1; W_2; …]ᵀ + [b_1; b_2; …]``, outputs side by side on the last axis."""
    return F.linear(X, *fused_weights(*linears))


class MultiHeadAttention(KeptWeights, nn.Module):
    """Multi-head attention, "Attention Is All You Need" §3.2.2 and Figure 2 (right).

    ``forward(queries, keys, values, valid_lens=None)`` as in d2l §11.5, plus
    keyword-only ``mask``, ``causal`` and ``kv_cache``.

    Shapes:
        queries: ``(B, Nq, query_size)``; keys: ``(B, Nk, key_size)``;
        values: ``(B, Nk, value_size)`` (the sizes default to ``num_hiddens``).
        valid_lens: ``(B,)`` or ``(B, Nq)`` integer: keys ``j >= valid_len``
        are ignored, in every head.
        mask: boolean, **True = may attend**, broadcastable to ``(B, Nq, Nk)``
        (the same for every head) or 4-D, broadcastable to ``(B, H, Nq, Nk)``.
        returns: ``(B, Nq, num_hiddens)``.
        ``.attention_weights`` (when ``keep_weights``): ``(B, H, Nq, Nk)``.

    Args:
        num_hiddens: ``d``, output size and total size of the query heads;
            divisible by ``num_heads``.
        num_heads: ``H``.
        dropout: dropout on the attention weights (training mode only).
        num_kv_heads: ``Hkv`` key/value heads (``None`` = ``H``); must divide
            ``H``. ``1`` is multi-query attention.
        bias: biases in the four projections (the book: ``False``; the paper's
            and ``torch.nn.MultiheadAttention``'s: ``True``). The fourth
            positional argument, as in the book's ``MultiHeadAttention(num_hiddens,
            num_heads, dropout, bias)``.
        score: scoring function applied per head to ``(B, H, Nq, Dh)`` queries
            and keys: a name of :data:`attnkit.scores.SCORE_NAMES`, built for
            size ``Dh`` by :func:`attnkit.scores.make_score` —
            ``"dot"``, ``"scaled_dot"`` (default, ``1/√Dh``),
            ``"distance"`` (a Gaussian kernel on each head's ``Dh`` features),
            ``"additive"`` (``Additive(Dh, Dh, Dh)``: hidden size ``h = Dh``,
            its ``W_q, W_k, w_v`` shared by all heads), ``"bilinear"``
            (``Bilinear(Dh, Dh)``, one ``M`` shared by all heads), or any
            :class:`attnkit.scores.Score` instance (registered as a submodule,
            applied to every head, so its parameters are shared by the heads;
            a head-aware score such as :class:`attnkit.nn.ALiBiScore` reads
            the head index from the leading dims).
        backend: passed to :func:`attnkit.attention` (``"auto"`` by default).
            A score with ``needs_whole_rows`` (:class:`attnkit.nn.ALiBiScore`)
            accepts ``"auto"`` (= ``"sdpa"`` when it serves the call, else
            ``"reference"``), ``"sdpa"`` or ``"reference"``.
        keep_weights: store the weights of the last call in
            ``.attention_weights``, from ``attnkit.attention(...,
            return_weights=True)`` (the materialized path; weights before
            dropout).
        query_size, key_size, value_size: input feature sizes (default ``d``).
        rotary: a :class:`attnkit.nn.RotaryEmbedding` of size ``Dh`` applied to
            the projected queries and keys; their positions start at the
            length of ``kv_cache`` (0 without one).

    ``query_valid_lens`` (``(B,)``, optional) marks queries ``i >= query_valid_lens[b]``
    as padding: they are not projected, their attention rows are zero, fast
    backends skip them, and their output rows are zero. Likewise keys beyond
    ``(B,)``-shaped ``valid_lens`` are not projected (they are masked anyway).
    The Transformer blocks pass the sequence lengths, so a padded batch costs
    about what its real tokens cost.

    With a non-static ``kv_cache`` the new keys/values are appended to it and
    the queries attend over all cached positions; pass
    ``causal="bottom_right"`` so that new query ``i`` sees the cached keys and
    the new keys up to itself (``True``/``"top_left"`` would align query 0
    with key 0). ``valid_lens`` and ``mask`` then refer to all ``Nk`` keys.

    Raises:
        ValueError: sizes that do not divide, inputs of the wrong shape, or
            a mask with more than 4 dims.
    """

    def __init__(self, num_hiddens: int, num_heads: int, dropout: float = 0.0,
                 bias: bool = False, *, num_kv_heads: int | None = None,
                 score: str | Score = "scaled_dot", backend: str = "auto",
                 keep_weights: bool = False, query_size: int | None = None,
                 key_size: int | None = None, value_size: int | None = None,
                 rotary: RotaryEmbedding | None = None):
        super().__init__()
        check_positive_int("num_hiddens", num_hiddens)
        check_positive_int("num_heads", num_heads)
        check_divisible("num_hiddens", num_hiddens, "num_heads", num_heads)
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        check_positive_int("num_kv_heads", num_kv_heads)
        check_divisible("num_heads", num_heads, "num_kv_heads", num_kv_heads)
        self.num_hiddens, self.num_heads, self.num_kv_heads = num_hiddens, num_heads, num_kv_heads
        self.head_dim = num_hiddens // num_heads
        query_size = check_positive_int("query_size", query_size, allow_none=True) or num_hiddens
        key_size = check_positive_int("key_size", key_size, allow_none=True) or num_hiddens
        value_size = check_positive_int("value_size", value_size, allow_none=True) or num_hiddens
        kv_hiddens = num_kv_heads * self.head_dim
        self.W_q = nn.Linear(query_size, num_hiddens, bias=bias)
        self.W_k = nn.Linear(key_size, kv_hiddens, bias=bias)
        self.W_v = nn.Linear(value_size, kv_hiddens, bias=bias)
        self.W_o = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.score = make_score(score, self.head_dim)  # shared by all heads
        self.score.check_sizes(self.head_dim, self.head_dim)
        if rotary is not None:
            if not isinstance(rotary, RotaryEmbedding):
                raise TypeError(
                    f"rotary must be an attnkit.nn.RotaryEmbedding or None; "
                    f"got {type(rotary).__name__}"
                )
            if rotary.head_dim != self.head_dim:
                raise ValueError(
                    f"rotary.head_dim must equal num_hiddens // num_heads = {self.head_dim}; "
                    f"got {rotary.head_dim}"
                )
        self.rotary = rotary
        self.dropout = check_probability("dropout", dropout)
        self.backend = check_backend_name(backend)
        self.keep_weights = keep_weights
        self.attention_weights = None

    def check_inputs(self, queries: torch.Tensor, keys: torch.Tensor | None = None,
                     values: torch.Tensor | None = None, *, query_name: str = "queries",
                     owner: str = "MultiHeadAttention") -> None:
        """Raise unless the inputs fit this module: ``(B, N, size)`` with the sizes of
        ``W_q``/``W_k``/``W_v``, keys and values of the same ``(B, Nk)`` (``B`` that of
        the queries, or 1: one key sequence for every query sequence), in the dtype
        of the parameters (unless under ``torch.autocast``).

        ``keys``/``values`` ``None``: only the queries are checked (self-attention
        on the queries, or keys/values taken from a cache). :meth:`forward` calls
        this; code that runs :meth:`forward_rows` directly calls it first, passing
        the name its caller knows the queries by (``query_name="X"``) and its own
        (``owner``) for the messages.

        Raises:
            TypeError: an input that is not a tensor, or of another dtype than
                the parameters.
            ValueError: an input of the wrong shape.
        """
        pairs = [(query_name, queries, self.W_q)]
        if keys is not None:
            pairs += [("keys", keys, self.W_k), ("values", values, self.W_v)]
        for name, x, lin in pairs:
            check_is_tensor(name, x)
            if x.ndim != 3 or x.shape[-1] != lin.in_features:
                raise ValueError(
                    f"{name} must have shape (B, N, {lin.in_features}); got {shape_str(x.shape)}"
                )
        if keys is not None and keys.shape[:2] != values.shape[:2]:
            raise ValueError(
                "keys and values must have the same (B, Nk); got keys "
                f"{shape_str(keys.shape)} and values {shape_str(values.shape)}"
            )
        if keys is not None and keys.shape[0] not in (queries.shape[0], 1):
            raise ValueError(
                f"keys and values must have the batch size of {query_name}, "
                f"B = {queries.shape[0]} (or 1, shared by every query sequence); got "
                f"{query_name} {shape_str(queries.shape)}, keys {shape_str(keys.shape)} and values "
                f"{shape_str(values.shape)}"
            )
        check_module_dtype(owner, self.W_q.weight.dtype, **{query_name: queries},
                           keys=keys, values=values)

    def check_mask(self, mask, batch_size: int, num_queries: int, num_keys: int) -> None:
        """Raise unless ``mask`` is boolean and broadcastable to ``(B, Nq, Nk)`` or, 4-D,
        to ``(B, H, Nq, Nk)``: the caller's shapes (``Nk`` counts cached keys too)."""
        if mask is None:
            return
        check_bool_mask(mask)
        if mask.ndim > 4:
            raise ValueError(
                f"mask must have at most 4 dims, (B, Nq, Nk) or (B, H, Nq, Nk); "
                f"got {shape_str(mask.shape)}"
            )
        three = (batch_size, num_queries, num_keys)
        target = three if mask.ndim <= 3 else (batch_size, self.num_heads, *three[1:])
        try:
            fits = broadcast_shapes(mask.shape, target) == target
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"mask must be broadcastable to (B, Nq, Nk) = {shape_str(three)} (the same for "
                f"every head) or, 4-D, to (B, H, Nq, Nk) = "
                f"{shape_str((batch_size, self.num_heads, *three[1:]))}; "
                f"got {shape_str(mask.shape)}"
            )

    def _group_mask(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        """The user's mask (checked by :meth:`check_mask`), broadcastable to the head
        layout of the core call."""
        if mask is None:
            return None
        if mask.ndim < 4:
            mask = mask.unsqueeze(-3) if mask.ndim == 3 else mask  # (B, 1, Nq, Nk) or (Nq, Nk)
        G = self.num_heads // self.num_kv_heads
        if G == 1 or mask.ndim < 3:
            return mask
        if mask.shape[-3] == 1:
            return mask.unsqueeze(-3)  # (B, 1, 1, Nq, Nk)
        return mask.unflatten(1, (self.num_kv_heads, G))  # (B, Hkv, G, Nq, Nk)

    def train(self, mode: bool = True) -> MultiHeadAttention:
        """``nn.Module.train``; also drops the fused projections kept for inference
        (:meth:`_projection`): a weight written without a new version (a fused optimizer
        step, a write through ``.data``) is so never read stale after the usual switch
        between training and evaluation."""
        _PROJECTIONS.pop(self, None)
        return super().train(mode)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                valid_lens: torch.Tensor | None = None, *, mask: torch.Tensor | None = None,
                causal: bool | str = False, kv_cache: KVCache | None = None,
                query_valid_lens: torch.Tensor | None = None) -> torch.Tensor:
        reuse = kv_cache is not None and kv_cache.static and kv_cache.filled
        self.check_inputs(queries, None if reuse else keys, None if reuse else values)
        B, Nq, _ = queries.shape
        if kv_cache is not None:
            kv_cache.check_batch(B)
        query_valid_lens = check_query_valid_lens(query_valid_lens, B, Nq, queries.device)
        packed = Packed.from_lens(query_valid_lens, B, Nq)  # padded queries are not computed
        # self-attention over the same positions: keys are needed where queries are
        same = keys is queries and values is queries and (
            packed.all_valid or valid_lens is query_valid_lens)
        kv = {} if same else dict(keys=keys, values=values)
        out = self.forward_rows(packed.pack(queries), packed, valid_lens=valid_lens, mask=mask,
                                causal=causal, kv_cache=kv_cache, **kv)  # (n_valid, d)
        return packed.unpack(out)  # (B, Nq, d), padded queries zero

    def forward_rows(self, queries: torch.Tensor, packed: Packed, *,
                     keys: torch.Tensor | None = None, values: torch.Tensor | None = None,
                     valid_lens: torch.Tensor | None = None,
                     mask: torch.Tensor | None = None, causal: bool | str = False,
                     kv_cache: KVCache | None = None) -> torch.Tensor:
        """:meth:`forward` on packed queries: the real positions of a ``(B, Nq)`` batch.

        ``queries`` ``(n_valid, query_size)`` are ``packed.pack`` of the padded
        queries; ``packed.lens`` (if any) are the ``query_valid_lens``;
        returns ``(n_valid, d)``. ``keys``/``values`` ``None`` means
        self-attention over the same positions: queries, keys and values are
        then projected by one matrix product (``[W_q; W_k; W_v]``), so the
        keys at padded query positions must be masked too (``valid_lens`` is
        ``packed.lens``, or nothing is padding). The Transformer blocks keep
        their hidden states packed like this, so padding is neither computed
        nor gathered and scattered per sublayer. Inputs are not validated here
        (:meth:`check_inputs` does that), and as a direct method call it runs
        no forward hooks of this module.
        """
        start = 0 if kv_cache is None or kv_cache.static else len(kv_cache)  # first position
        self.check_mask(mask, *packed.shape, self._num_keys(keys, packed, kv_cache))
        if keys is None and not (kv_cache is not None and kv_cache.static and kv_cache.filled):
            qkv = self._projection(self.W_q, self.W_k, self.W_v)(queries)  # (n_valid, ·)
            if kv_cache is None and mask is None and valid_lens is packed.lens:
                out = self._packed_attend(qkv, packed, causal)
                if out is not None:
                    return self.W_o(out)  # (n_valid, d)
            q, k, v = self._self_qkv(qkv, packed, kv_cache, start)
        else:
            q = self._heads(packed.unpack(self.W_q(queries)), self.num_heads, start)
            k, v = self._keys_values(keys, values, valid_lens, kv_cache, start)
        kvh, G = self.num_kv_heads, self.num_heads // self.num_kv_heads
        if G > 1:  # grouped-query: broadcast each key/value head over its G query heads
            q = q.unflatten(1, (kvh, G))  # (B, Hkv, G, Nq, Dh)
            k, v = k.unsqueeze(2), v.unsqueeze(2)  # (B, Hkv, 1, Nk, Dh)
        out = self._attend(q, k, v, valid_lens, self._group_mask(mask), causal,
                           packed.lens)  # (B, H, Nq, Dh) or (B, Hkv, G, Nq, Dh)
        B, Nq = packed.shape
        out = out.reshape(B, self.num_heads, Nq, self.head_dim).transpose(1, 2)  # (B,Nq,H,Dh)
        return self.W_o(packed.pack(out.reshape(B, Nq, self.num_hiddens)))  # (n_valid, d)

    def step(self, x: torch.Tensor, kv_cache: KVCache, *, memory: torch.Tensor | None = None,
             key_mask: KeyMask | None = None, rows_per_source: int = 1) -> torch.Tensor:
        """One decoding step: one query per sequence, ``x`` ``(B, query_size)`` → ``(B, d)``.

        Self-attention (a growing ``kv_cache``): the query's key and value (one
        product ``[W_q; W_k; W_v]``, rotated at position ``len(kv_cache)`` with
        RoPE) are appended, and it attends over every cached position. Cross-attention
        (a static ``kv_cache``): the keys and values of ``memory`` ``(B, S, key_size)``
        are projected into the cache at the first step (``memory`` is ignored after);
        ``key_mask`` says which of them each sequence may attend. With
        ``rows_per_source = G > 1`` (the ``G`` beams of each sentence) each run of ``G``
        consecutive rows of ``x`` shares one source: ``memory``, ``key_mask`` and the cache
        hold ``B / G`` sources, whose keys are projected once and attended by their ``G``
        queries as one product (``G`` queries a call, not one), the same arithmetic as
        the rows repeated.

        :meth:`forward` of the same query (``causal="bottom_right"``) computes the
        same. This skips what does not change during a decoding: nothing is checked
        (the caller checks the inputs once: :meth:`check_inputs`, :meth:`KeyMask.from_lens`)
        or packed, the fused projection is made once (kept in ``kv_cache.fused``),
        and a score with a dot-product form (:meth:`Score.as_dot`) on the
        ``auto``/``sdpa`` backends is one call: of the compiled step kernel for float32
        on the CPU without a key bias (:mod:`attnkit.kernels.cpu_step`), else of SDPA,
        the ``sdpa`` backend's computation without its planning. Other scores and
        backends, kept weights and dropout (training mode) go through
        :func:`attnkit.attention`, as in :meth:`forward`.
        """
        B = x.shape[0]
        G = rows_per_source if kv_cache.static else 1
        if kv_cache.static:
            q = self._heads(step_linear(self.W_q, x).view(B, 1, -1),
                            self.num_heads, 0)  # (B, H, 1, Dh), as forward's with the cache
            if G > 1:  # each source's G queries side by side: (B / G, H, G, Dh)
                q = q.reshape(B // G, G, self.num_heads, self.head_dim).transpose(1, 2)
            if not kv_cache.filled:
                lens = None if key_mask is None else key_mask.valid_lens
                self._keys_values(memory, memory, lens, kv_cache, 0)
            k, v = kv_cache.keys, kv_cache.values  # (B / G, Hkv, S, Dh)
        else:
            q, k, v, rows = self._step_qkv(x, kv_cache)
            key_mask = None
        out = self._step_attend(q, k, v, key_mask, kv_cache.static,
                                None if kv_cache.static else rows)  # (B / G, H, G, Dh)
        if G > 1:
            out = out.transpose(1, 2)  # (B / G, G, H, Dh): the rows' order
            if self.keep_weights:  # kept per row, as without sources shared: (B, H, 1, S)
                w = self.attention_weights  # (B / G, H, G, S)
                self.attention_weights = w.transpose(1, 2).reshape(B, self.num_heads, 1, -1)
        return step_linear(self.W_o, out.reshape(B, self.num_hiddens))

    def _step_qkv(self, x: torch.Tensor, kv_cache: KVCache):
        """:meth:`step`'s self-attention q ``(B, H, 1, Dh)`` and all keys and values
        ``(B, Hkv, N, Dh)``, the new ones appended to ``kv_cache``, and ``None``; or, where
        the compiled step kernel will read them (:meth:`_reads_by_rows`), the cache's
        buffers ``(R, Hkv, N, Dh)`` and the row of each key (:meth:`KVCache.update_by_rows`)."""
        if kv_cache.fused is None:
            kv_cache.fused = self._step_projection()
        B, width = x.shape[0], self.head_dim * self.num_kv_heads
        qkv = kv_cache.fused(x).view(B, 1, -1)  # (B, 1, d + 2·Hkv·Dh)
        q, k, v = qkv.split([self.num_hiddens, width, width], -1)
        start = len(kv_cache)  # the position of this step
        q = self._heads(q, self.num_heads, start)  # (B, H, 1, Dh)
        k, v = self._heads(k, self.num_kv_heads, start), self._heads(v, self.num_kv_heads)
        if self._reads_by_rows(q, k, v):
            return q, *kv_cache.update_by_rows(k, v)
        return q, *kv_cache.update(k, v), None  # (B, Hkv, N, Dh)

    def _reads_by_rows(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
        """Whether :meth:`_step_attend` gives these queries, keys and values to the compiled
        step kernel (:func:`_compiled_step`): the one-call path of :meth:`step` with a dot
        form that keeps the keys as they are and adds no key bias, on tensors the
        kernel takes."""
        if not (self.backend in _FUSED_STEP_BACKENDS and not self.keep_weights
                and not (self.training and self.dropout > 0) and cpu_step.usable(q, k, v)):
            return False
        form = self.score.as_dot(q, k)
        return form is not None and form.key_bias is None and form.keys is k

    def _step_projection(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The decoding step's ``[W_q; W_k; W_v]`` product (:meth:`_projection`)."""
        return self._projection(self.W_q, self.W_k, self.W_v)

    def _projection(self, *layers: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        """:func:`fused_step_linear` of ``layers`` (of this module), made once and kept
        while the layers and their weights stay the same (the same objects, their
        tensors not changed in place since: ``_version``; and no ``train()``/``eval()``
        since), so that every decoding or
        inference call does not stack (or, int8, quantize) the weights anew. With
        gradients on, the product of the weights stacked at each call (autograd sees
        the weights)."""
        tensors = [t for lin in layers for t in (lin.weight, lin.bias) if t is not None]
        if torch.is_grad_enabled() or any(t.is_inference() for t in tensors):
            # (inference tensors, made under torch.inference_mode, keep no version: a
            # change in place could not be seen)
            return functools.partial(_fused_linear, linears=layers)
        names = tuple(id(lin) for lin in layers)
        kept = _PROJECTIONS.setdefault(self, {}).get(names)
        if kept is None or not (
                all(ref() is lin for ref, lin in zip(kept[0], layers, strict=True))
                and len(kept[1]) == len(tensors)
                and all(ref() is t and version == t._version
                        for (ref, version), t in zip(kept[1], tensors, strict=True))):
            kept = (tuple(weakref.ref(lin) for lin in layers),
                    [(weakref.ref(t), t._version) for t in tensors],
                    fused_step_linear(*layers))
            _PROJECTIONS[self][names] = kept
        return kept[2]

    def _step_attend(self, q, k, v, key_mask: KeyMask | None, cross: bool,
                     key_rows: torch.Tensor | None = None) -> torch.Tensor:
        """The attention of :meth:`step` for queries ``(B, H, Nq, Dh)`` (``Nq``: 1, or a
        source's rows): ``(B, H, Nq, Dh)``. ``key_rows``: each key's row of ``k`` and
        ``v`` (:meth:`_step_qkv`), for the compiled kernel."""
        G = self.num_heads // self.num_kv_heads
        if G > 1:  # grouped-query: the layout of forward_rows, keys not repeated
            q, k = q.unflatten(1, (self.num_kv_heads, G)), k.unsqueeze(2)
        form = None
        if (self.backend in _FUSED_STEP_BACKENDS and not self.keep_weights
                and not (self.training and self.dropout > 0)):
            form = self.score.as_dot(q, k)
        if form is not None:
            return _fused_step(form, v, key_mask, self.num_heads, key_rows)
        valid = None if key_mask is None else key_mask.valid_lens
        out = self._attend(q, k, v if G == 1 else v.unsqueeze(2), valid, None,
                           False if cross else "bottom_right", None)
        return out.reshape(q.shape[0], self.num_heads, q.shape[-2], self.head_dim)

    @staticmethod
    def _num_keys(keys, packed: Packed, kv_cache: KVCache | None) -> int:
        """``Nk`` of the coming call (cached keys included), before any cache is updated."""
        new = packed.shape[1] if keys is None else keys.shape[1]
        if kv_cache is None or not kv_cache.filled:
            return new
        return len(kv_cache) if kv_cache.static else len(kv_cache) + new

    def _packed_attend(self, qkv: torch.Tensor, packed: Packed, causal: bool | str
                       ) -> torch.Tensor | None:
        """Self-attention of packed rows with nothing padded: the projected rows ``qkv``
        ``(n_valid, d + 2·Hkv·Dh)`` (keys masked by ``packed``'s lengths) into
        ``(n_valid, d)`` by the compiled kernel (:func:`attnkit.kernels.cpu_step.
        packed_attention`), where it computes this module's attention: float32 on the CPU
        outside autograd (an encoder at inference), a dot form that keeps the keys and
        adds no key bias (scaled dot, dot, bilinear), no rotary positions, no dropout, no
        weights kept. ``None`` elsewhere.

        SDPA on the padded batch pays a fixed cost per (sequence, head) block and the
        padding's copies; the kernel reads the rows where they are (BENCHMARKS.md,
        "Decoding with the encoder's packed attention")."""
        if (self.backend not in _FUSED_STEP_BACKENDS or self.keep_weights
                or self.rotary is not None or (self.training and self.dropout > 0)
                or causal not in (False, True, "top_left", "bottom_right")
                or not cpu_step.usable(qkv)):
            return None
        n, Dh = qkv.shape[0], self.head_dim
        q, k, v = qkv.split([self.num_hiddens, Dh * self.num_kv_heads,
                             Dh * self.num_kv_heads], -1)
        H, Hkv = self.num_heads, self.num_kv_heads  # named: n may be 0 (nothing to infer from)
        q4, k4 = q.view(1, n, H, Dh).transpose(1, 2), k.view(1, n, Hkv, Dh).transpose(1, 2)
        form = self.score.as_dot(q4, k4)
        if form is None or form.key_bias is not None or form.keys is not k4:
            return None
        out = cpu_step.packed_attention(form.queries[0].transpose(0, 1), k.view(n, Hkv, Dh),
                                        v.view(n, Hkv, Dh), packed.offsets(), form.scale,
                                        causal=causal is not False)
        return out.view(n, self.num_hiddens)

    def _self_qkv(self, qkv, packed: Packed, kv_cache, start):
        """Self-attention: q, k, v from the rows' product by ``[W_q; W_k; W_v]`` (k, v
        appended to a cache): ``(B, H, Nq, Dh)``, ``(B, Hkv, Nk, Dh)``, ``(B, Hkv, Nk, Dh)``."""
        kvh = self.num_kv_heads
        qkv = packed.unpack(qkv)  # (B, Nq, ·)
        q, k, v = qkv.split([self.num_hiddens, self.head_dim * kvh, self.head_dim * kvh], -1)
        q = self._heads(q, self.num_heads, start)  # (B, H, Nq, Dh)
        k, v = self._heads(k, kvh, start), self._heads(v, kvh)  # (B, Hkv, Nq, Dh)
        if kv_cache is not None:
            k, v = kv_cache.update(k, v)  # (B, Hkv, Nk_total, Dh)
        return q, k, v

    def _keys_values(self, keys, values, valid_lens, kv_cache, start):
        """Projected keys and values ``(B, Hkv, Nk, Dh)`` (appended to a growing cache,
        or taken from a filled static one)."""
        if kv_cache is not None and kv_cache.static and kv_cache.filled:
            return kv_cache.keys, kv_cache.values  # (B, Hkv, Nk, Dh)
        B, Nk, _ = keys.shape
        # Keys beyond (B,) valid_lens are masked, so they are not projected either
        # (unless appended to a cache, where valid_lens also counts the cached keys).
        growing = kv_cache is not None and not kv_cache.static
        kv_packed = Packed.dense(B, Nk) if growing else Packed.from_lens(valid_lens, B, Nk)
        width = self.head_dim * self.num_kv_heads
        if keys is values and self.W_k.in_features == self.W_v.in_features:
            kv = self._projection(self.W_k, self.W_v)(kv_packed.pack(keys))  # (n, 2·width)
            k, v = kv_packed.unpack(kv).split([width, width], -1)  # (B, Nk, width) each
        else:
            k = kv_packed.apply(self.W_k, keys)  # (B, Nk, width)
            v = kv_packed.apply(self.W_v, values)  # (B, Nk, width)
        k, v = self._heads(k, self.num_kv_heads, start), self._heads(v, self.num_kv_heads)
        if kv_cache is not None:
            k, v = kv_cache.update(k, v)  # (B, Hkv, Nk_total, Dh)
        return k, v

    def _heads(self, Y: torch.Tensor, heads: int, rotate_from: int | None = None
               ) -> torch.Tensor:
        """``(B, N, heads·Dh)`` → ``(B, heads, N, Dh)`` (a view), rotated if RoPE."""
        B, N, _ = Y.shape
        Y = Y.view(B, N, heads, self.head_dim).transpose(1, 2)  # (B, heads, N, Dh)
        if self.rotary is not None and rotate_from is not None:
            Y = self.rotary(Y, rotate_from)
        return Y

    def _attend(self, q, k, v, valid_lens, mask, causal, query_valid_lens) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        args = dict(score=self.score, valid_lens=valid_lens, mask=mask, causal=causal,
                    dropout_p=p, query_valid_lens=query_valid_lens, backend=self.backend)
        if not self.keep_weights:
            return attention(q, k, v, **args)  # (B, H, Nq, Dh) or (B, Hkv, G, Nq, Dh)
        out, weights = attention(q, k, v, return_weights=True, **args)
        B, Nq, Nk = q.shape[0], q.shape[-2], k.shape[-2]
        self.attention_weights = weights.detach().reshape(B, self.num_heads, Nq, Nk)
        return out  # (B, H, Nq, Dh) or (B, Hkv, G, Nq, Dh)

    def extra_repr(self) -> str:
        return (f"num_hiddens={self.num_hiddens}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.num_kv_heads}, dropout={self.dropout}, "
                f"backend={self.backend!r}, keep_weights={self.keep_weights}")


#: each module's fused projections (:meth:`MultiHeadAttention._projection`) with what
#: they were made from; beside the module, not in it: a copy or a pickle of a module
#: does not carry them
_PROJECTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fused_step(form: DotForm, values: torch.Tensor, key_mask: KeyMask | None,
                num_heads: int, key_rows: torch.Tensor | None = None) -> torch.Tensor:
    """The queries of a step in a dot-product ``form`` (``(B, H, Nq, Dq)`` or, for
    grouped-query heads, ``(B, Hkv, G, Nq, Dq)`` against keys ``(B, Hkv, 1, Nk, Dk)``;
    ``Nq``: one per sequence, or a source's rows) as one call of the compiled step kernel
    where it takes them (:func:`_compiled_step`), else as one SDPA call: the ``sdpa``
    backend's call without its planning (its grouped-query keys are not repeated:
    ``enable_gqa``); ``(B, H, Nq, Dv)``."""
    B, Nk = values.shape[0], values.shape[-2]
    q, k = form.queries, form.keys
    if form.key_bias is None and (key_rows is not None or cpu_step.usable(q, k, values)):
        return _compiled_step(q, k, values, key_mask, form.scale, num_heads, key_rows)
    if q.ndim == 5:  # grouped-query layout: back to SDPA's, keys not repeated
        q = q.reshape(B, num_heads, q.shape[-2], q.shape[-1])  # (B, H, Nq, Dq)
        k = k.reshape(B, -1, Nk, k.shape[-1])  # (B, Hkv, Nk, Dk)
    mask = None if key_mask is None else key_mask.attend  # (B, 1, 1, Nk)
    if form.key_bias is not None:
        lead = form.queries.shape[:-2]
        bias = form.key_bias.to(q.dtype).expand(*lead, Nk).reshape(B, num_heads, 1, Nk)
        mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
    out = F.scaled_dot_product_attention(q, k, values, attn_mask=mask, scale=form.scale,
                                         enable_gqa=k.shape[1] != num_heads)
    if key_mask is not None and key_mask.rows is not None:
        out = out * key_mask.rows.to(out.dtype)  # sequences without keys: zeros
    return out  # (B, H, Nq, Dv)


def _compiled_step(q: torch.Tensor, k: torch.Tensor, values: torch.Tensor,
                   key_mask: KeyMask | None, scale: float, num_heads: int,
                   key_rows: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`_fused_step` by the compiled kernel (:mod:`attnkit.kernels.cpu_step`): the
    same attention, a sequence without keys given zeros by the kernel itself;
    ``(B, H, Nq, Dv)``. On the calling thread whatever torch's thread count: sharing the
    sequences out to worker threads measured slower (0.92-0.94x on two threads,
    BENCHMARKS.md, "Decoding with the compiled step")."""
    B, Nq = q.shape[0], q.shape[-2]
    if q.ndim == 5:  # grouped-query: the G·Nq queries of a kv head as its rows
        q, k = q.reshape(B, q.shape[1], -1, q.shape[-1]), k[:, :, 0]
    lens = None
    if key_mask is not None:
        lens = key_mask.valid_lens
        lens = lens if lens.dtype == torch.int64 and lens.is_contiguous() else \
            lens.to(torch.int64).contiguous()
    out = cpu_step.step_attention(q, k, values, lens, scale,
                                  key_rows=key_rows)  # (B, Hkv, R, Dv)
    return out.view(B, num_heads, Nq, out.shape[-1])
