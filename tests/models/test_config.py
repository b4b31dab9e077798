"""Configs and builders: the documented parameter counts, by formula and by the paper."""

import dataclasses

import pytest
import torch

from attnkit.models import (
    BahdanauConfig,
    BahdanauSeq2Seq,
    Transformer,
    TransformerConfig,
    bahdanau_small,
    build_model,
    count_parameters,
    transformer_base,
    transformer_small,
    transformer_tiny,
)


def _count(config) -> int:
    with torch.device("meta"):  # shapes only: no memory, no init cost
        return count_parameters(build_model(config))


def _stack_count(d: int, ffn: int, n_enc: int, n_dec: int) -> int:
    """Parameters of the encoder and decoder layers (biases everywhere)."""
    attention = 4 * (d * d + d)  # W_q, W_k, W_v, W_o
    ffn_params = d * ffn + ffn + ffn * d + d
    norm = 2 * d
    return n_enc * (attention + ffn_params + 2 * norm) + n_dec * (2 * attention + ffn_params
                                                                  + 3 * norm)


@pytest.mark.parametrize("builder, d, ffn, n, vocab, separate, shared", [
    (transformer_tiny, 64, 128, 2, 1000, 360_424, 232_424),
    (transformer_small, 256, 1024, 3, 10_000, 13_219_600, 8_099_600),
    (transformer_base, 512, 2048, 6, 37_000, 101_007_496, 63_119_496),
])
def test_documented_parameter_counts(builder, d, ffn, n, vocab, separate, shared):
    stack = _stack_count(d, ffn, n, n)
    # separate: src and tgt embeddings, output weight (V·d each) and output bias (V)
    assert _count(builder(vocab)) == separate == stack + 3 * d * vocab + vocab
    tied = builder(vocab, share_embeddings=True, tie_output=True)
    assert _count(tied) == shared == stack + d * vocab + vocab
    assert str(f"{separate:,}") in builder.__doc__ or vocab == 37_000
    assert str(f"{shared:,}") in builder.__doc__


def test_base_is_the_papers_base_model():
    c = transformer_base(37_000, share_embeddings=True, tie_output=True)
    assert (c.num_hiddens, c.num_heads, c.ffn_num_hiddens) == (512, 8, 2048)
    assert (c.num_encoder_layers, c.num_decoder_layers, c.dropout) == (6, 6, 0.1)
    assert c.positional == "sinusoidal" and not c.pre_norm
    # the paper reports 65M parameters for base (Table 3)
    assert 60e6 < _count(c) < 66e6


def test_bahdanau_count_and_builder():
    assert _count(bahdanau_small(1000)) == 2_675_944
    config = bahdanau_small(29, 23, num_hiddens=13, embed_size=5,
                            num_encoder_layers=1, num_decoder_layers=1)
    model = build_model(config)
    assert isinstance(model, BahdanauSeq2Seq)
    E, h, V = 5, 13, 23
    gru = lambda i: 3 * (i * h + h * h + 2 * h)  # noqa: E731  one GRU layer
    expected = (29 * E + gru(E)  # encoder
                + 2 * h * h + h  # attention W_q, W_k (h×h), w_v (h)
                + V * E + gru(E + h) + h * V + V)  # decoder embedding, GRU, dense
    assert count_parameters(model) == expected


def test_build_model_follows_every_field():
    config = transformer_tiny(29, 23, num_kv_heads=2, positional="rope", pre_norm=True,
                              dropout=0.0, activation="gelu")
    model = build_model(config)
    assert isinstance(model, Transformer)
    blk = model.decoder.blocks[1]
    assert blk.self_attention.num_kv_heads == 2 and blk.self_attention.rotary is not None
    assert blk.addnorm1.pre_norm and isinstance(blk.ffn.activation, torch.nn.GELU)
    assert len(model.encoder.blocks) == 2 and model.output.out_features == 23
    assert count_parameters(model, trainable_only=True) == count_parameters(model)


def test_configs_are_frozen_keyword_only_and_validated():
    config = transformer_tiny(100)
    assert config.tgt_vocab_size == 100
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_heads = 2
    with pytest.raises(TypeError):
        TransformerConfig(100, 100)  # keyword-only
    with pytest.raises(ValueError, match="TransformerConfig.num_hiddens must be divisible by "
                                         "num_heads = 5; got 64"):
        transformer_tiny(100, num_heads=5)
    with pytest.raises(ValueError, match="TransformerConfig.positional must be one of"):
        transformer_tiny(100, positional="xpos")
    with pytest.raises(ValueError, match="TransformerConfig.share_embeddings needs"):
        transformer_tiny(100, 50, share_embeddings=True)
    with pytest.raises(ValueError, match=r"TransformerConfig.dropout must be a number in \[0, 1\)"):
        transformer_small(100, dropout=1.0)
    with pytest.raises(ValueError, match="BahdanauConfig.num_encoder_layers must be a positive "
                                         "int"):
        BahdanauConfig(src_vocab_size=10, tgt_vocab_size=10, num_encoder_layers=0)
    with pytest.raises(TypeError, match="config must be a model config, one of "
                                        "TransformerConfig, BahdanauConfig.*; got dict"):
        build_model({"num_hiddens": 8})
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        count_parameters(config)
