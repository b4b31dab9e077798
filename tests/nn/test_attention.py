import pytest
import torch

from attnkit import attention
from attnkit.nn import (
    AdditiveAttention,
    AttentionPooling,
    BilinearAttention,
    DistanceAttention,
    DotProductAttention,
)
from attnkit.scores import Distance

torch.manual_seed(0)
queries = torch.normal(0, 1, (2, 1, 2))
keys = torch.normal(0, 1, (2, 10, 2))
values = torch.normal(0, 1, (2, 10, 4))
valid_lens = torch.tensor([2, 6])


def test_dot_product_attention_book_example():
    attn = DotProductAttention(dropout=0.5)
    attn.eval()
    out = attn(queries, keys, values, valid_lens)
    assert out.shape == (2, 1, 4)
    torch.testing.assert_close(out, attention(queries, keys, values, valid_lens=valid_lens))
    with pytest.raises(RuntimeError, match=r"attention_weights were not kept: .*keep_weights=True"):
        attn.attention_weights  # nothing stored by default, and reading it says so


def test_unscaled_dot_product_attention():
    attn = DotProductAttention(0.0, scaled=False)
    torch.testing.assert_close(attn(queries, keys, values, valid_lens),
                               attention(queries, keys, values, score="dot",
                                         valid_lens=valid_lens))


def test_additive_attention_book_example_lazy_sizes():
    q20 = torch.normal(0, 1, (2, 1, 20))
    attn = AdditiveAttention(num_hiddens=8, dropout=0.1)
    attn.eval()
    out = attn(q20, keys, values, valid_lens)
    assert out.shape == (2, 1, 4)
    assert attn.W_q.weight.shape == (8, 20) and attn.W_k.weight.shape == (8, 2)
    assert attn.w_v.weight.shape == (1, 8)


def test_keep_weights_fills_attention_weights():
    attn = AdditiveAttention(8, 0.0, query_size=2, key_size=2, keep_weights=True)
    out = attn(queries, keys, values, valid_lens)
    w = attn.attention_weights
    assert w.shape == (2, 1, 10) and not w.requires_grad
    torch.testing.assert_close(out, w @ values)
    assert torch.equal(w[0, :, 2:], torch.zeros(1, 8))


def test_bilinear_attention_different_sizes():
    q5 = torch.randn(2, 3, 5)
    attn = BilinearAttention(5, 2, dropout=0.0, keep_weights=True)
    out = attn(q5, keys, values, valid_lens)
    assert out.shape == (2, 3, 4)
    torch.testing.assert_close(attn.attention_weights.sum(-1), torch.ones(2, 3))


def test_distance_attention_prefers_nearest_key():
    k = torch.tensor([[[0.0, 0.0], [5.0, 5.0], [1.0, 1.0]]])
    v = torch.eye(3)[None]
    q = torch.tensor([[[0.9, 1.1]]])
    attn = DistanceAttention(0.0, sigma=0.5, keep_weights=True)
    attn(q, k, v)
    assert attn.attention_weights.argmax().item() == 2


def test_dropout_only_in_training_mode():
    attn = DotProductAttention(dropout=0.5)
    torch.manual_seed(1)
    train_out = attn(queries, keys, values, valid_lens)
    attn.eval()
    eval_out = attn(queries, keys, values, valid_lens)
    assert not torch.allclose(train_out, eval_out)
    torch.testing.assert_close(eval_out, attn(queries, keys, values, valid_lens))


def test_modules_take_mask_causal_and_leading_dims():
    q = torch.randn(2, 3, 4, 6)  # (B, H, Nq, D)
    k = torch.randn(2, 3, 4, 6)
    v = torch.randn(2, 3, 4, 5)
    attn = DotProductAttention(0.0, keep_weights=True)
    out = attn(q, k, v, torch.tensor([3, 4]), causal=True)
    assert out.shape == (2, 3, 4, 5)
    w = attn.attention_weights
    assert torch.equal(w.triu(1), torch.zeros_like(w))


def test_backend_passed_down_and_gradients_reach_parameters():
    attn = AdditiveAttention(8, 0.0, query_size=2, key_size=2, backend="reference")
    attn(queries, keys, values, valid_lens).sum().backward()
    for name, p in attn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match=r"backend must be one of 'auto', "):
        DotProductAttention(0.0, backend="nope")(queries, keys, values)


def test_module_argument_errors():
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\); got 1.5"):
        DotProductAttention(1.5)
    with pytest.raises(TypeError, match=r"score must be an attnkit.scores.Score; got str"):
        AttentionPooling("dot")
    assert isinstance(DistanceAttention(0.0).score, Distance)
