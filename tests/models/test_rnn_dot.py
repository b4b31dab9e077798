"""The RNN seq2seq with a dot-product score: built from its config, the score it says,
step decoding equal to the full forward, its size known before building, no export.

Sizes are distinct per axis: B=3, S=11, T=7, E=5, d=13, L=2, V_src=29, V_tgt=23.
"""

import math
import pickle

import pytest
import torch

from attnkit.export.ctranslate2 import check_exportable
from attnkit.models import build_model
from attnkit.models.rnn_dot import RNNDotSeq2Seq, rnn_dot_small
from attnkit.models.sizes import decoding_memory, model_size
from attnkit.nn import capture_attention

from .test_bahdanau import stepwise

B, S, T, E, HID, L, VS, VT = 3, 11, 7, 5, 13, 2, 29, 23
TIGHT = dict(rtol=1e-10, atol=1e-10)
SCORES = ["dot", "scaled_dot", "bilinear"]


def _model(score):
    torch.manual_seed(0)
    config = rnn_dot_small(VS, VT, score=score, embed_size=E, num_hiddens=HID,
                           num_encoder_layers=L, num_decoder_layers=L, dropout=0.0)
    return build_model(config).double().eval()


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(1, VS, (B, S), generator=g), torch.randint(1, VT, (B, T), generator=g),
            torch.tensor([S, 4, 1]))


@pytest.mark.parametrize("score", SCORES)
def test_the_config_builds_the_model_with_its_score(score):
    model = _model(score)
    assert isinstance(model, RNNDotSeq2Seq)
    attention = model.decoder.attention
    assert type(attention).__name__ == ("BilinearAttention" if score == "bilinear"
                                        else "DotProductAttention")
    assert type(attention.score).__name__ == {"dot": "Dot", "scaled_dot": "ScaledDot",
                                              "bilinear": "Bilinear"}[score]
    assert len(model.encoder.rnn.all_weights) == len(model.decoder.rnn.all_weights) == L


@pytest.mark.parametrize("score", SCORES)
def test_forward_shapes_and_only_valid(score):
    model = _model(score)
    src, tgt, vl = _batch()
    assert model(src, tgt, vl).shape == (B, T, VT)
    tgt_vl = torch.tensor([T, 3, 1])
    packed = model(src, tgt, vl, tgt_vl, only_valid=True)
    assert packed.shape == (T + 3 + 1, VT)


@pytest.mark.parametrize("score", SCORES)
def test_step_decoding_equals_the_full_forward(score):
    model = _model(score)
    src, tgt, vl = _batch()
    full = model(src, tgt, vl)
    torch.testing.assert_close(stepwise(model, src, tgt, vl), full, **TIGHT)
    # beam search reorders the state: row i of the reordered state decodes as row order[i]
    order = torch.tensor([2, 0, 0])
    state = model.reorder_state(model.init_state(model.encode(src, vl), vl), order)
    logits, _ = model.decode_step(tgt[order, :1], state)
    torch.testing.assert_close(logits, full[order, :1], **TIGHT)


@pytest.mark.parametrize("score", ["dot", "scaled_dot"])
def test_the_first_step_attends_by_the_dot_product_of_the_states(score):
    """The first query is the encoder's final top-layer state s; the weights are
    softmax(s·h_j (/√d)) over the valid encoder states h_j."""
    model = _model(score)
    src, tgt, vl = _batch()
    enc_outputs, enc_state = model.encode(src, vl)
    with capture_attention(model) as weights:
        model(src, tgt[:, :1], vl)
    got = weights["decoder.attention"]  # (B, 1, S)
    s = enc_state[-1]  # (B, d)
    scores = torch.einsum("bd,bsd->bs", s, enc_outputs)
    if score == "scaled_dot":
        scores = scores / math.sqrt(HID)
    scores = scores.masked_fill(torch.arange(S) >= vl[:, None], float("-inf"))
    torch.testing.assert_close(got[:, 0], torch.softmax(scores, dim=-1), **TIGHT)


def test_an_unknown_score_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"RNNDotConfig.score must be one of .*got 'additive'"):
        rnn_dot_small(VS, score="additive")
    with pytest.raises(ValueError, match=r"score must be one of .*got 'distance'"):
        RNNDotSeq2Seq(VS, VT, score="distance")


def test_the_layers_of_encoder_and_decoder_must_be_equal():
    with pytest.raises(ValueError, match=r"RNNDotConfig.num_decoder_layers must equal "
                                         r"num_encoder_layers .*got 3 and 2"):
        rnn_dot_small(VS, num_decoder_layers=3)
    with pytest.raises(ValueError, match=r"num_decoder_layers must equal num_encoder_layers"):
        RNNDotSeq2Seq(VS, VT, num_encoder_layers=1, num_decoder_layers=2)


@pytest.mark.parametrize("score", SCORES)
def test_its_size_is_known_before_it_is_built(score):
    config = rnn_dot_small(VS, VT, score=score, embed_size=E, num_hiddens=HID,
                           num_encoder_layers=3, num_decoder_layers=3)
    model = build_model(config)
    assert model_size(config).parameters == sum(p.numel() for p in model.parameters())
    state = decoding_memory(config, rows=4, steps=10).activations
    assert decoding_memory(config, rows=8, steps=10).activations == 2 * state


def test_the_documented_parameter_count():
    def count(config):
        with torch.device("meta"):
            return sum(p.numel() for p in build_model(config).parameters())

    assert count(rnn_dot_small(1000)) == 2_544_616
    assert count(rnn_dot_small(1000, score="bilinear")) == 2_544_616 + 256 * 256
    assert "2,544,616" in rnn_dot_small.__doc__ and "65,536" in rnn_dot_small.__doc__


def test_the_model_pickles_under_its_own_name():
    model = _model("bilinear")
    again = pickle.loads(pickle.dumps(model))
    assert type(again) is RNNDotSeq2Seq and type(again).__qualname__ == "RNNDotSeq2Seq"
    src, tgt, vl = _batch()
    torch.testing.assert_close(again(src, tgt, vl), model(src, tgt, vl), **TIGHT)


def test_ctranslate2_export_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^cannot export a RNNDotConfig model to CTranslate2: "
                                         r"the RNN with dot-product attention has no "
                                         r"CTranslate2 spec \(only the Transformer has\)$"):
        check_exportable(rnn_dot_small(12))
