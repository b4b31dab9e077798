"""Bad input raises at the boundary with a message naming argument, expectation and value."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attnkit import attention, attention_weights, masked_softmax
from attnkit.scores import Bilinear

q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)


@pytest.mark.parametrize("kwargs,exc,pattern", [
    (dict(queries=torch.randn(3, 3, 4)), ValueError,
     r"broadcastable\) leading batch dims .*queries \(3, 3, 4\), keys \(2, 5, 4\)"),
    (dict(keys=torch.randn(2, 5, 7)), ValueError,
     r"score 'scaled_dot' needs queries and keys of the same size \(Dq == Dk\); got Dq=4, Dk=7"),
    (dict(values=torch.randn(2, 4, 6)), ValueError,
     r"keys and values must have the same number of positions Nk .* keys \(2, 5, 4\) and "
     r"values \(2, 4, 6\)"),
    (dict(queries=torch.randn(3, 4)), ValueError,
     r"queries must have at least 3 dims \(B, \.\.\., N, D\); got shape \(3, 4\)"),
    (dict(queries=[1.0]), TypeError, r"queries must be a torch.Tensor; got list"),
    (dict(keys=torch.ones(2, 5, 4, dtype=torch.long)), TypeError,
     r"keys must have a floating dtype; got torch.int64"),
    (dict(values=torch.randn(2, 5, 6, dtype=torch.float64)), TypeError,
     r"must share one dtype; got torch.float32, torch.float32, torch.float64"),
    (dict(valid_lens=torch.tensor([1, 2, 3])), ValueError,
     r"valid_lens must have shape \(B,\) or \(B, Nq\) = \(2,\) or \(2, 3\); got \(3\)"),
    (dict(valid_lens=torch.tensor([[1, 2], [3, 4]])), ValueError,
     r"valid_lens must have shape .* got \(2, 2\)"),
    (dict(valid_lens=torch.tensor([1.0, 2.0])), TypeError,
     r"valid_lens must have an integer dtype .*got torch.float32"),
    (dict(valid_lens=torch.tensor([-1, 2])), ValueError,
     r"valid_lens values must lie in \[0, Nk\] = \[0, 5\]; got min -1, max 2"),
    (dict(valid_lens=torch.tensor([1, 6])), ValueError,
     r"valid_lens values must lie in \[0, Nk\] = \[0, 5\]; got min 1, max 6"),
    (dict(mask=torch.ones(2, 3, 4, dtype=torch.bool)), ValueError,
     r"mask must be broadcastable to \(\*batch, Nq, Nk\) = \(2, 3, 5\); got \(2, 3, 4\)"),
    (dict(mask=torch.ones(2, 3, 5)), TypeError,
     r"mask must have dtype torch.bool \(True = may attend\); got torch.float32"),
    (dict(dropout_p=1.0), ValueError, r"dropout_p must be a number in \[0, 1\); got 1.0"),
    (dict(dropout_p=-0.1), ValueError, r"dropout_p must be a number in \[0, 1\); got -0.1"),
    (dict(causal="upper"), ValueError, r"causal must be False, True .*got 'upper'"),
    (dict(score=Bilinear(4, 3)), ValueError,
     r"score 'bilinear' has M of shape \(4, 3\) = \(Dq, Dk\); got queries with Dq=4 and keys "
     r"with Dk=4"),
])
def test_attention_errors(kwargs, exc, pattern):
    args = dict(queries=q, keys=k, values=v)
    args.update(kwargs)
    qq, kk, vv = args.pop("queries"), args.pop("keys"), args.pop("values")
    with pytest.raises(exc, match=pattern):
        attention(qq, kk, vv, **args)


def test_devices_must_match():
    meta_k = torch.randn(2, 5, 4, device="meta")
    with pytest.raises(ValueError, match=r"keys must be on the same device as queries \(cpu\); "
                                         r"got meta"):
        attention(q, meta_k, v)
    with pytest.raises(ValueError, match=r"valid_lens must be on the same device as queries"):
        attention(q, k, v, valid_lens=torch.tensor([1, 2], device="meta"))


def test_attention_weights_and_masked_softmax_validate_too():
    with pytest.raises(ValueError, match=r"valid_lens values must lie in \[0, Nk\] = \[0, 5\]"):
        attention_weights(q, k, valid_lens=torch.tensor([9, 1]))
    with pytest.raises(ValueError, match=r"X must have at least 3 dims \(B, Nq, Nk\) when "
                                         r"valid_lens is given; got \(3, 5\)"):
        masked_softmax(torch.randn(3, 5), torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match=r"X must have a floating dtype; got torch.int64"):
        masked_softmax(torch.ones(2, 3, 4, dtype=torch.long))


@given(st.lists(st.lists(st.integers(0, 3), max_size=4).map(tuple), min_size=1, max_size=3))
def test_broadcast_shapes_agrees_with_torch(shapes):
    from attnkit._checks import broadcast_shapes

    try:
        want = tuple(torch.broadcast_shapes(*shapes))
    except RuntimeError:
        with pytest.raises(RuntimeError):
            broadcast_shapes(*shapes)
        return
    assert broadcast_shapes(*shapes) == want
