"""capture_attention: names, shapes, values, and that the default path is left untouched."""

import pytest
import torch

from attnkit import attention_weights
from attnkit.models import BahdanauSeq2Seq, Transformer
from attnkit.nn import MultiHeadAttention, capture_attention
from attnkit.viz.explorer import records_from_captures

B, S, T, V = 2, 7, 5, 23


def _model():
    torch.manual_seed(0)
    return Transformer(V, V, num_hiddens=12, num_heads=3, ffn_num_hiddens=13,
                       num_encoder_layers=2, num_decoder_layers=3, dropout=0.0).double().eval()


def _batch():
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, V, (B, S), generator=g), torch.randint(0, V, (B, T), generator=g),
            torch.tensor([S, 4]))


def test_captures_every_layer_by_name_with_head_shapes():
    model = _model()
    src, tgt, vl = _batch()
    with capture_attention(model) as weights:
        logits = model(src, tgt, vl)
    expected = {f"encoder.blocks.{i}.attention": (B, 3, S, S) for i in range(2)}
    for i in range(3):
        expected[f"decoder.blocks.{i}.self_attention"] = (B, 3, T, T)
        expected[f"decoder.blocks.{i}.cross_attention"] = (B, 3, T, S)
    assert {k: tuple(w.shape) for k, w in weights.items()} == expected
    # the default (no capture) path gives the same logits
    torch.testing.assert_close(model(src, tgt, vl), logits, rtol=1e-12, atol=1e-12)
    # decoder self-attention is causal; cross-attention ignores padded source keys
    dec = weights["decoder.blocks.1.self_attention"]
    assert torch.all(dec.triu(1) == 0)
    cross = weights["decoder.blocks.2.cross_attention"]
    assert torch.all(cross[1, :, :, 4:] == 0)
    torch.testing.assert_close(cross.sum(-1), torch.ones(B, 3, T, dtype=torch.float64))
    # padded source queries are padding: their rows are zero
    assert torch.all(weights["encoder.blocks.0.attention"][1, :, 4:] == 0)
    records = records_from_captures(weights)  # the explorer accepts every name
    assert [(r.kind, r.layer) for r in records][:3] == [("encoder_self", 0),
                                                          ("encoder_self", 1),
                                                          ("decoder_self", 0)]


def test_captured_weights_equal_recomputed_weights():
    """Encoder layer 0 weights = softmax of the scaled scores of its own projections."""
    model = _model()
    src, tgt, vl = _batch()
    with capture_attention(model) as weights:
        model.encode(src, vl)
    mha = model.encoder.blocks[0].attention
    X = model.encoder.embed(src)  # (B, S, d): the block's input
    q = mha.W_q(X).view(B, S, 3, 4).transpose(1, 2)  # (B, H, S, Dh)
    k = mha.W_k(X).view(B, S, 3, 4).transpose(1, 2)
    expected = attention_weights(q, k, valid_lens=vl)  # (B, H, S, S)
    expected[1, :, 4:] = 0  # padded query rows
    torch.testing.assert_close(weights["encoder.blocks.0.attention"], expected,
                               rtol=1e-12, atol=1e-12)


def test_flags_and_hooks_are_restored_even_on_error():
    model = _model()
    model.decoder.blocks[0].cross_attention.keep_weights = True
    src, tgt, vl = _batch()
    with pytest.raises(RuntimeError, match="boom"):
        with capture_attention(model):
            model(src, tgt, vl)
            raise RuntimeError("boom")
    for name, m in model.named_modules():
        assert not m._forward_hooks, name
        if isinstance(m, MultiHeadAttention):
            kept = name == "decoder.blocks.0.cross_attention"
            assert m.keep_weights is kept
            assert (m.kept_weights is not None) is kept


def test_bahdanau_decoder_attention_is_captured_for_all_steps():
    torch.manual_seed(0)
    model = BahdanauSeq2Seq(V, V, embed_size=6, num_hiddens=8, num_encoder_layers=2,
                            dropout=0.0).double().eval()
    src, tgt, vl = _batch()
    with capture_attention(model) as weights:
        model(src, tgt, vl)
    assert list(weights) == ["decoder.attention"]
    w = weights["decoder.attention"]
    assert w.shape == (B, T, S)
    assert torch.all(w[1, :, 4:] == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, T, dtype=torch.float64))
    (record,) = records_from_captures(weights)
    assert record.kind == "cross" and record.shape == (1, T, S)


def test_rejects_non_modules():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        with capture_attention("model"):
            pass
