"""Classes of attnkit.nn that share a name with the book's: the book's positional call
means the same thing, or fails with a message pointing to attnkit.d2l."""

import pytest
import torch

from attnkit import d2l
from attnkit.nn import (
    AdditiveAttention,
    DotProductAttention,
    MultiHeadAttention,
    PositionWiseFFN,
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoder,
    TransformerEncoderBlock,
)


def test_position_wise_ffn_positional_call_fails_pointing_to_d2l():
    with pytest.raises(TypeError, match=r"keyword arguments only.*attnkit\.d2l\.PositionWiseFFN"):
        PositionWiseFFN(4, 8)
    ffn = PositionWiseFFN(num_hiddens=4, ffn_num_hiddens=8)
    assert ffn(torch.ones(2, 3, 4)).shape == (2, 3, 4)
    assert d2l.PositionWiseFFN(4, 8)(torch.ones(2, 3, 4)).shape == (2, 3, 8)


def test_position_wise_ffn_without_its_inner_size_says_what_is_missing():
    with pytest.raises(TypeError, match=r"keyword arguments only, .*; got no ffn_num_hiddens; "
                                        r"the book's PositionWiseFFN\(ffn_num_hiddens, "
                                        r"ffn_num_outputs\) is attnkit\.d2l\.PositionWiseFFN$"):
        PositionWiseFFN(num_hiddens=4)


def test_position_wise_ffn_lazy_input_and_output_size():
    ffn = PositionWiseFFN(num_hiddens=None, ffn_num_hiddens=6, num_outputs=5)
    assert ffn(torch.ones(2, 3, 7)).shape == (2, 3, 5)
    with pytest.raises(ValueError, match="num_outputs must be given"):
        PositionWiseFFN(num_hiddens=None, ffn_num_hiddens=6)


def test_decoder_block_with_a_block_index_fails_pointing_to_d2l():
    with pytest.raises(TypeError, match=r"attnkit\.d2l\.TransformerDecoderBlock"):
        TransformerDecoderBlock(24, 48, 8, 0.5, 0)
    assert isinstance(d2l.TransformerDecoderBlock(24, 48, 8, 0.5, 0), torch.nn.Module)


def test_decoder_state_protocol_fails_pointing_to_d2l():
    decoder = TransformerDecoder(20, 8, 16, 2, 1, 0.0)
    with pytest.raises(TypeError, match=r"attnkit\.d2l\.TransformerDecoder"):
        decoder.init_state(torch.zeros(2, 3, 8), None)
    state = [torch.zeros(2, 3, 8), None, [None]]
    with pytest.raises(TypeError, match=r"got list.*attnkit\.d2l\.TransformerDecoder"):
        decoder(torch.zeros(2, 4, dtype=torch.long), state)
    blk = TransformerDecoderBlock(8, 16, 2, 0.0)
    with pytest.raises(TypeError, match=r"got list.*attnkit\.d2l\.TransformerDecoderBlock"):
        blk(torch.zeros(2, 4, 8), state)


def test_the_books_use_bias_positional_means_bias():
    assert MultiHeadAttention(12, 3, 0.0, True).W_q.bias is not None
    assert TransformerEncoderBlock(12, 16, 3, 0.0, True).attention.W_o.bias is not None
    assert TransformerEncoder(20, 12, 16, 3, 1, 0.0, True).blocks[0].attention.W_q.bias \
        is not None
    with pytest.raises(TypeError, match="bias"):
        TransformerEncoderBlock(12, 16, 3, 0.0, 1)


@pytest.mark.parametrize("make", [lambda: DotProductAttention(0.0),
                                  lambda: AdditiveAttention(4, 0.0),
                                  lambda: MultiHeadAttention(8, 2)])
def test_weights_not_kept_raise_naming_keep_weights(make):
    module = make()
    x = torch.randn(2, 3, 8)
    module(x, x, x)
    with pytest.raises(RuntimeError, match=r"were not kept: build it with keep_weights=True"):
        module.attention_weights.reshape(1, 1, 2, 3)
    assert module.kept_weights is None
    module.keep_weights = True
    module(x, x, x)
    assert module.attention_weights is module.kept_weights
