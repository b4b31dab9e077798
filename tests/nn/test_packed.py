"""Packed batches: pack, unpack, apply and select the real positions of a padded batch."""

from __future__ import annotations

import torch
from torch import nn

from attnkit.nn import Packed, select_valid

TIGHT = dict(rtol=1e-12, atol=1e-12)


def test_apply_computes_valid_positions_only():
    lens = torch.tensor([2, 0, 4])
    packed = Packed.from_lens(lens, 3, 4)
    rows = packed.rows
    torch.testing.assert_close(rows, torch.tensor([0, 1, 8, 9, 10, 11]))
    assert Packed.from_lens(torch.tensor([4, 4, 4]), 3, 4).rows is None  # nothing to skip
    assert Packed.from_lens(torch.tensor([[1, 2]]), 1, 2).rows is None  # per-query lens: not rows
    lin = nn.Linear(5, 3).double()
    X = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    out = packed.apply(lin, X)
    keep = torch.arange(4) < lens[:, None]  # (B, N)
    torch.testing.assert_close(out[keep], lin(X)[keep], **TIGHT)
    assert torch.all(out[~keep] == 0)
    out.sum().backward()
    assert torch.all(X.grad[~keep] == 0)
    torch.testing.assert_close(X.grad[keep], lin.weight.sum(0).expand(6, 5), **TIGHT)


def test_pack_and_unpack_are_inverse_on_valid_positions_with_any_trailing_dims():
    lens = torch.tensor([3, 1])
    packed = Packed.from_lens(lens, 2, 5)
    assert (packed.shape, packed.num_valid, packed.all_valid) == ((2, 5), 4, False)
    assert packed.lens is lens
    X = torch.randn(2, 5, 3, 7)
    Xp = packed.pack(X)  # (n_valid, 3, 7)
    keep = torch.arange(5) < lens[:, None]
    torch.testing.assert_close(Xp, X[keep], rtol=0, atol=0)
    back = packed.unpack(Xp)
    torch.testing.assert_close(back[keep], X[keep], rtol=0, atol=0)
    assert back.shape == X.shape and torch.all(back[~keep] == 0)


def test_dense_packing_is_a_reshape():
    packed = Packed.dense(2, 3)
    assert packed.all_valid and packed.num_valid == 6 and packed.lens is None
    X = torch.randn(2, 3, 4)
    assert packed.pack(X).shape == (6, 4)
    torch.testing.assert_close(packed.unpack(packed.pack(X)), X, rtol=0, atol=0)
    assert Packed.from_lens(None, 2, 3).all_valid
    assert "n_valid=6" in repr(packed)


def test_select_valid_is_row_major_mask_selection():
    X = torch.arange(2 * 4 * 3).reshape(2, 4, 3)
    lens = torch.tensor([1, 3])
    want = X[torch.arange(4) < lens[:, None]]
    torch.testing.assert_close(select_valid(X, lens), want, rtol=0, atol=0)
    torch.testing.assert_close(select_valid(X, None), X.reshape(8, 3), rtol=0, atol=0)
