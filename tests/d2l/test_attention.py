"""attnkit.d2l §11.3 and §11.5 against the book's computation restated in tests/d2l_reference.py.

Sizes are distinct odd numbers per axis (B=3, Nq=5, Nk=7, Dq=11, Dk=13, Dv=17) so
that a transposed axis cannot pass; float64 throughout, so tolerances are tight.
"""

import pytest
import torch

from attnkit import d2l
from tests.d2l.conftest import materialize, params
from tests.d2l_reference import (
    book_additive_attention,
    book_dot_attention,
    book_masked_softmax,
    book_multihead,
)

TIGHT = dict(rtol=1e-10, atol=1e-12)
B, NQ, NK, DQ, DK, DV = 3, 5, 7, 11, 13, 17
LENS_1D = torch.tensor([7, 0, 3])  # sequence 1 has no valid key
LENS_2D = torch.tensor([[1, 2, 3, 4, 7], [0, 7, 1, 0, 5], [6, 6, 6, 6, 6]])


def valid_rows(valid_lens):
    """(B, Nq, 1) True where a query row has at least one valid key."""
    vl = valid_lens[:, None].expand(B, NQ) if valid_lens.ndim == 1 else valid_lens
    return (vl > 0)[..., None]


def test_masked_softmax_on_the_books_examples():
    X = torch.rand(2, 2, 4, dtype=torch.float64)
    for vl in (torch.tensor([2, 3]), torch.tensor([[1, 3], [2, 4]])):
        torch.testing.assert_close(d2l.masked_softmax(X, vl), book_masked_softmax(X, vl),
                                   **TIGHT)
    torch.testing.assert_close(d2l.masked_softmax(X, None), torch.softmax(X, -1))


def test_masked_softmax_empty_row_is_zero_where_the_book_is_uniform():
    X = torch.rand(2, 2, 4, dtype=torch.float64)
    vl = torch.tensor([0, 4])
    ours, book = d2l.masked_softmax(X, vl), book_masked_softmax(X, vl)
    assert torch.equal(ours[0], torch.zeros(2, 4))
    torch.testing.assert_close(book[0], torch.full((2, 4), 0.25, dtype=torch.float64))
    torch.testing.assert_close(ours[1], book[1], **TIGHT)


def test_masked_softmax_takes_float_and_too_long_valid_lens_as_the_book_does():
    X = torch.rand(2, 3, 4, dtype=torch.float64)
    for vl in (torch.tensor([2.0, 3.0]), torch.tensor([1.5, 9.0]),  # keys j < 1.5; all keys
               torch.tensor([[0.5, 2.0, 3.7], [4.0, 1.0, 2.2]], dtype=torch.float64),
               torch.tensor([2, 9])):  # an integer beyond Nk: every key, as in the book
        torch.testing.assert_close(d2l.masked_softmax(X, vl), book_masked_softmax(X, vl),
                                   **TIGHT)
    keys, values = torch.rand(2, 4, 3), torch.rand(2, 4, 5)
    attention = d2l.DotProductAttention(0.0)
    attention(torch.rand(2, 3, 3), keys, values, torch.tensor([1.5, 3.0]))
    assert attention.attention_weights[0, :, 2:].eq(0).all()
    assert attention.attention_weights[0, :, :2].gt(0).all()
    with pytest.raises(ValueError, match="valid_lens must be numbers of valid keys; got NaN"):
        d2l.masked_softmax(X, torch.tensor([float("nan"), 1.0]))


def test_dot_product_attention_books_example_shapes_and_weights():
    queries, keys = torch.normal(0, 1, (2, 1, 2)), torch.normal(0, 1, (2, 10, 2))
    values, valid_lens = torch.normal(0, 1, (2, 10, 4)), torch.tensor([2, 6])
    attention = d2l.DotProductAttention(dropout=0.5)
    attention.eval()
    out = attention(queries, keys, values, valid_lens)
    d2l.check_shape(out, (2, 1, 4))
    w = attention.attention_weights.reshape((1, 1, 2, 10))  # the book's heatmap line
    expected_out, expected_w = book_dot_attention(queries, keys, values, valid_lens)
    torch.testing.assert_close(out, expected_out)
    torch.testing.assert_close(w, expected_w.reshape(1, 1, 2, 10))


@pytest.mark.parametrize("valid_lens", [LENS_1D, LENS_2D, None], ids=["1d", "2d", "none"])
def test_dot_product_attention_values_and_gradients(valid_lens, gen):
    q = torch.randn(B, NQ, DK, generator=gen, dtype=torch.float64, requires_grad=True)
    k = torch.randn(B, NK, DK, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(B, NK, DV, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(B, NQ, DV, generator=gen, dtype=torch.float64)
    attention = d2l.DotProductAttention(0.3).eval()
    out = attention(q, k, v, valid_lens)
    book_out, book_w = book_dot_attention(q, k, v, valid_lens)
    rows = torch.ones(B, NQ, 1, dtype=torch.bool) if valid_lens is None else valid_rows(
        valid_lens)
    torch.testing.assert_close(out * rows, book_out * rows, **TIGHT)
    torch.testing.assert_close(attention.attention_weights * rows, book_w * rows, **TIGHT)
    assert torch.equal(out * ~rows, torch.zeros_like(out))  # empty rows: zero, not uniform
    ours = torch.autograd.grad((out * rows * g).sum(), (q, k, v))
    book = torch.autograd.grad((book_out * rows * g).sum(), (q, k, v))
    for a, b in zip(ours, book):
        torch.testing.assert_close(a, b, **TIGHT)


def test_additive_attention_books_example_lazy_sizes():
    keys, values = torch.normal(0, 1, (2, 10, 2)), torch.normal(0, 1, (2, 10, 4))
    queries, valid_lens = torch.normal(0, 1, (2, 1, 20)), torch.tensor([2, 6])
    attention = d2l.AdditiveAttention(num_hiddens=8, dropout=0.1)
    attention.eval()
    d2l.check_shape(attention(queries, keys, values, valid_lens), (2, 1, 4))
    assert attention.W_q.weight.shape == (8, 20) and attention.W_k.weight.shape == (8, 2)
    assert attention.w_v.weight.shape == (1, 8)
    assert attention.attention_weights.reshape((1, 1, 2, 10)).shape == (1, 1, 2, 10)


@pytest.mark.parametrize("valid_lens", [LENS_1D, LENS_2D], ids=["1d", "2d"])
def test_additive_attention_values_and_gradients(valid_lens, gen):
    q = torch.randn(B, NQ, DQ, generator=gen, dtype=torch.float64)
    k = torch.randn(B, NK, DK, generator=gen, dtype=torch.float64)
    v = torch.randn(B, NK, DV, generator=gen, dtype=torch.float64)
    attention = materialize(d2l.AdditiveAttention(19, 0.2), q, k, v, valid_lens).eval()
    p = params(attention)
    rows = valid_rows(valid_lens)
    out = attention(q, k, v, valid_lens)
    book_out, book_w = book_additive_attention(p, q, k, v, valid_lens, "score.")
    torch.testing.assert_close(out * rows, book_out * rows, **TIGHT)
    torch.testing.assert_close(attention.attention_weights * rows, book_w * rows, **TIGHT)
    (out * rows).sum().backward()
    ref = {n: t.requires_grad_() for n, t in p.items()}
    (book_additive_attention(ref, q, k, v, valid_lens, "score.")[0] * rows).sum().backward()
    for name, param in attention.named_parameters():
        torch.testing.assert_close(param.grad, ref[name].grad, **TIGHT)


def test_multihead_attention_books_example():
    num_hiddens, num_heads = 100, 5
    attention = d2l.MultiHeadAttention(num_hiddens, num_heads, 0.5)
    batch_size, num_queries, num_kvpairs = 2, 4, 6
    valid_lens = torch.tensor([3, 2])
    X = torch.ones((batch_size, num_queries, num_hiddens))
    Y = torch.ones((batch_size, num_kvpairs, num_hiddens))
    d2l.check_shape(attention(X, Y, Y, valid_lens), (batch_size, num_queries, num_hiddens))
    assert attention.attention.attention_weights.shape == (10, 4, 6)


@pytest.mark.parametrize("num_heads", [1, 3, 5])
@pytest.mark.parametrize("valid_lens", [LENS_1D, LENS_2D], ids=["1d", "2d"])
def test_multihead_attention_values_weights_and_gradients(num_heads, valid_lens, gen):
    q = torch.randn(B, NQ, DQ, generator=gen, dtype=torch.float64)
    k = torch.randn(B, NK, DK, generator=gen, dtype=torch.float64)
    v = torch.randn(B, NK, DV, generator=gen, dtype=torch.float64)
    mha = materialize(d2l.MultiHeadAttention(15, num_heads, 0.1, bias=True), q, k, v,
                      valid_lens).eval()
    p = params(mha)
    rows = valid_rows(valid_lens)
    out = mha(q, k, v, valid_lens)
    book_out, book_w = book_multihead(p, q, k, v, valid_lens, num_heads)
    # an empty row has zero weights: its output is W_o's bias, where the book's is not
    torch.testing.assert_close(out * rows, book_out * rows, **TIGHT)
    w_rows = rows.repeat_interleave(num_heads, dim=0)  # (B·H, Nq, 1)
    torch.testing.assert_close(mha.attention.attention_weights * w_rows, book_w * w_rows,
                               **TIGHT)
    (out * rows).sum().backward()
    ref = {n: t.requires_grad_() for n, t in p.items()}
    (book_multihead(ref, q, k, v, valid_lens, num_heads)[0] * rows).sum().backward()
    for name, param in mha.named_parameters():
        torch.testing.assert_close(param.grad, ref[name].grad, **TIGHT)


def test_transpose_qkv_and_transpose_output_are_inverse_and_head_major():
    mha = d2l.MultiHeadAttention(12, 3, 0.0)
    X = torch.arange(2 * 5 * 12, dtype=torch.float32).reshape(2, 5, 12)
    heads = mha.transpose_qkv(X)
    assert heads.shape == (6, 5, 4)
    torch.testing.assert_close(heads[1 * 3 + 2], X[1, :, 8:12])  # row b·H + h
    torch.testing.assert_close(mha.transpose_output(heads), X)
