import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit import masked_softmax
from tests.d2l_reference import book_masked_softmax


def test_book_examples_are_identical_to_d2l():
    torch.manual_seed(0)
    X = torch.rand(2, 2, 4)
    for vl in (torch.tensor([2, 3]), torch.tensor([[1, 3], [2, 4]])):
        got = masked_softmax(X, vl)
        assert torch.equal(got, book_masked_softmax(X, vl))  # bit for bit


def test_book_1d_example_hand_values():
    X = torch.tensor([[[0.0, 1.0, 5.0, 5.0]]])
    got = masked_softmax(X, torch.tensor([2]))
    e = torch.tensor([1.0, torch.e])
    torch.testing.assert_close(got[0, 0, :2], e / e.sum())
    assert got[0, 0, 2:].tolist() == [0.0, 0.0]


def test_no_valid_lens_is_plain_softmax():
    X = torch.randn(3, 5, 7)
    assert torch.equal(masked_softmax(X), torch.softmax(X, -1))


def test_empty_rows_are_zero_where_d2l_is_uniform():
    X = torch.randn(2, 3, 5)
    vl = torch.tensor([0, 2])
    got = masked_softmax(X, vl)
    assert torch.equal(got[0], torch.zeros(3, 5))
    book = book_masked_softmax(X, vl)
    torch.testing.assert_close(book[0], torch.full((3, 5), 0.2))  # the book's uniform rows
    assert torch.equal(got[1], book[1])


def test_fully_masked_row_by_mask_is_zero_and_gradients_finite():
    X = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 4, 6, dtype=torch.bool)
    mask[0, 1] = False
    mask[1, :, 3:] = False
    w = masked_softmax(X, mask=mask)
    assert torch.equal(w[0, 1], torch.zeros(6, dtype=torch.float64))
    (w * torch.randn_like(w)).sum().backward()
    assert torch.isfinite(X.grad).all()
    assert torch.equal(X.grad[0, 1], torch.zeros(6, dtype=torch.float64))
    assert torch.equal(X.grad[1, :, 3:], torch.zeros(4, 3, dtype=torch.float64))


def test_gradcheck_with_empty_rows_1d_and_2d():
    X = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    for vl in (torch.tensor([0, 3]), torch.tensor([[0, 5, 2], [1, 0, 4]])):
        assert torch.autograd.gradcheck(lambda x, vl=vl: masked_softmax(x, vl), (X,))


def test_valid_lens_and_mask_combine():
    X = torch.randn(1, 2, 4)
    mask = torch.tensor([[True, False, True, True]])
    got = masked_softmax(X, torch.tensor([3]), mask=mask)
    assert got[0, :, 1].tolist() == [0.0, 0.0] and got[0, :, 3].tolist() == [0.0, 0.0]
    torch.testing.assert_close(got.sum(-1), torch.ones(1, 2))


def test_extra_leading_dims_broadcast_valid_lens():
    X = torch.randn(2, 3, 4, 5)  # (B, H, Nq, Nk)
    got = masked_softmax(X, torch.tensor([2, 5]))
    assert torch.equal(got[0, ..., 2:], torch.zeros(3, 4, 3))
    for h in range(3):
        assert torch.equal(got[:, h], masked_softmax(X[:, h], torch.tensor([2, 5])))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_accumulates_in_float32_and_keeps_dtype(dtype):
    X = (torch.randn(3, 5, 257) * 4)
    vl = torch.tensor([0, 100, 257])
    got = masked_softmax(X.to(dtype), vl)
    assert got.dtype == dtype
    assert torch.isfinite(got).all()
    want = masked_softmax(X.to(dtype).float(), vl).to(dtype)
    assert torch.equal(got, want)


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 3), nq=st.integers(1, 5), nk=st.integers(1, 9), data=st.data())
def test_property_rows_sum_to_one_over_valid_keys_zero_beyond(b, nq, nk, data):
    vl = torch.tensor(data.draw(st.lists(st.integers(0, nk), min_size=b, max_size=b)))
    X = torch.randn(b, nq, nk) * 3
    w = masked_softmax(X, vl)
    for i in range(b):
        n = int(vl[i])
        assert torch.equal(w[i, :, n:], torch.zeros(nq, nk - n))
        want = torch.ones(nq) if n else torch.zeros(nq)
        torch.testing.assert_close(w[i].sum(-1), want)
