"""Packed batches: the valid positions of a padded ``(B, N)`` batch, without the padding.

Unpadding is kept apart from the attention math, as flash-attention's
``bert_padding`` keeps ``unpad_input``/``pad_input`` apart from its kernels: a
:class:`Packed` remembers *which* positions of a padded batch are real (their
flat row indices into ``B·N``, or ``None`` when all are), so position-wise
layers (projections, the FFN, layer norms) run on the ``n_valid`` real
positions only and the result is scattered back where needed::

    packed = Packed.from_lens(valid_lens, B, N)   # valid_lens (B,): j < valid_lens[b]
    Xp = packed.pack(X)                           # (B, N, d) -> (n_valid, d)
    Yp = ffn(Xp)                                  # position-wise: (n_valid, d')
    Y = packed.unpack(Yp)                         # (B, N, d'), zeros at padding

Shapes follow ``docs/shapes.md`` (``B`` batch, ``N`` sequence length,
``n_valid`` the number of real positions).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["Packed", "select_valid"]


class Packed:
    """Which positions of a padded ``(B, N)`` batch are real, as flat row indices.

    Args:
        rows: ``(n_valid,)`` long, the indices into ``B·N`` (row-major) of the
            real positions, increasing; ``None`` = every position is real.
        batch_size, length: ``B`` and ``N``.
        lens: the ``(B,)`` lengths the rows were made from (``None`` when
            there are none); attention passes them on as ``query_valid_lens``.

    Build one with :meth:`from_lens` (prefix lengths) or :meth:`dense` (no
    padding). The order of the packed rows is that of ``X[mask]`` with
    ``mask[b, j] = j < lens[b]``, so anything packed with the same object
    lines up row for row (logits and targets, say).
    """

    __slots__ = ("rows", "batch_size", "length", "lens", "_offsets")

    def __init__(self, rows: torch.Tensor | None, batch_size: int, length: int, *,
                 lens: torch.Tensor | None = None):
        self.rows = rows
        self.batch_size, self.length = int(batch_size), int(length)
        self.lens = lens
        self._offsets: torch.Tensor | None = None

    @classmethod
    def dense(cls, batch_size: int, length: int) -> Packed:
        """Every position of a ``(B, N)`` batch is real: packing is a reshape."""
        return cls(None, batch_size, length)

    @classmethod
    def from_lens(cls, lens: torch.Tensor | None, batch_size: int, length: int) -> Packed:
        """The positions ``j < lens[b]`` of a ``(B, N)`` batch.

        Only ``(B,)`` integer ``lens`` say which positions are padding; any
        other value (``None``, per-query ``(B, Nq)`` lengths, a wrong shape
        that the attention call will reject with a clear message) gives
        :meth:`dense`. ``rows`` is ``None`` when no position is padding, and
        for meta ``lens`` (no values to select by: every position is kept, as
        an upper bound of the work, and the lengths still mask attention).
        """
        if (not isinstance(lens, torch.Tensor) or lens.ndim != 1 or lens.shape[0] != batch_size
                or lens.is_floating_point() or lens.dtype == torch.bool):
            return cls.dense(batch_size, length)
        if lens.device.type == "meta":  # no values to select by: every row, shapes only
            return cls(None, batch_size, length, lens=lens)
        keep = torch.arange(length, device=lens.device) < lens[:, None]  # (B, N)
        rows = keep.flatten().nonzero().squeeze(1)  # (n_valid,)
        if rows.numel() == batch_size * length:
            rows = None
        return cls(rows, batch_size, length, lens=lens)

    @property
    def shape(self) -> tuple[int, int]:
        """``(B, N)``, the padded shape."""
        return self.batch_size, self.length

    @property
    def all_valid(self) -> bool:
        """True when nothing is padding (``rows is None``)."""
        return self.rows is None

    @property
    def num_valid(self) -> int:
        """``n_valid``, the number of real positions."""
        return self.batch_size * self.length if self.rows is None else self.rows.numel()

    def offsets(self) -> torch.Tensor:
        """``(B + 1,)`` int64: sequence ``b``'s packed rows are
        ``offsets[b]:offsets[b + 1]`` (each sequence's real positions are a prefix, and
        rows keep their order); made once per object (every layer of an encoder reads it).
        """
        if self._offsets is None:
            B, N = self.shape
            device = None if self.lens is None else self.lens.device
            if self.rows is None or self.lens is None:
                sizes = torch.full((B,), N, dtype=torch.int64, device=device)
            else:
                sizes = self.lens.to(torch.int64).clamp(0, N)
            offsets = torch.zeros(B + 1, dtype=torch.int64, device=device)
            torch.cumsum(sizes, 0, out=offsets[1:])
            self._offsets = offsets
        return self._offsets

    def pack(self, X: torch.Tensor) -> torch.Tensor:
        """``X`` ``(B, N, ...)`` → its real positions ``(n_valid, ...)``."""
        flat = X.reshape(self.batch_size * self.length, *X.shape[2:])  # (B·N, ...)
        return flat if self.rows is None else flat.index_select(0, self.rows)

    def unpack(self, Y: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`pack`: ``(n_valid, ...)`` → ``(B, N, ...)``, zeros at padding."""
        if self.rows is None:
            return Y.view(self.batch_size, self.length, *Y.shape[1:])
        out = Y.new_zeros(self.batch_size * self.length, *Y.shape[1:])  # (B·N, ...)
        # in place: the out-of-place index_copy would copy the zeros once more
        out.index_copy_(0, self.rows, Y)
        return out.view(self.batch_size, self.length, *Y.shape[1:])

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor
              ) -> torch.Tensor:
        """``fn`` on the real positions of ``X`` ``(B, N, D)`` only; zeros elsewhere.

        For position-wise functions (linear layers, the FFN), so that padding
        costs nothing: ``(B, N, D) → (n_valid, D) → fn → (B, N, D')``.
        """
        if self.rows is None:
            return fn(X)
        return self.unpack(fn(self.pack(X)))

    def __repr__(self) -> str:
        return (f"Packed(B={self.batch_size}, N={self.length}, "
                f"n_valid={self.num_valid})")


def select_valid(X: torch.Tensor, lens: torch.Tensor | None) -> torch.Tensor:
    """The positions ``j < lens[b]`` of ``X`` ``(B, N, ...)``, row-major: ``(n_valid, ...)``.

    The order is that of ``X[mask]`` with ``mask[b, j] = j < lens[b]``, so
    logits and targets selected this way line up. ``lens=None`` keeps all.
    """
    return Packed.from_lens(lens, X.shape[0], X.shape[1]).pack(X)
