"""attnkit.d2l §11.6–11.7 against the book's computation restated in tests/d2l_reference.py.

Distinct sizes (B=3, S=7, T=5, d=18, d_ff=22, V=19), float64, dropout off (eval mode,
or dropout 0 where the book's training-mode causal lengths are tested).
"""

import pytest
import torch

from attnkit import d2l
from tests.d2l.conftest import materialize, params
from tests.d2l_reference import (
    book_addnorm,
    book_decoder,
    book_decoder_block,
    book_encoder,
    book_encoder_block,
    book_ffn,
    book_positional_table,
)

TIGHT = dict(rtol=1e-10, atol=1e-11)
B, S, T, D, FFN, V, H, BLKS = 3, 7, 5, 18, 22, 19, 3, 2  # the book's table needs an even d
SRC_LENS = torch.tensor([7, 2, 4])


def test_positional_encoding_table_is_the_books():
    pos_encoding = d2l.PositionalEncoding(32, 0)
    X = pos_encoding(torch.zeros((1, 60, 32)))
    P = pos_encoding.P[:, :X.shape[1], :]
    assert pos_encoding.P.shape == (1, 1000, 32) and pos_encoding.P.dtype == torch.float32
    torch.testing.assert_close(X, P)
    # the exact table rounded to float32; the book's own float32 arithmetic is within
    # a few float32 ulps of the angle (up to 999 rad), i.e. ~1e-4
    exact = book_positional_table(1000, 32, torch.float64).float()
    torch.testing.assert_close(pos_encoding.P, exact, rtol=0, atol=1e-6)
    torch.testing.assert_close(pos_encoding.P, book_positional_table(1000, 32), rtol=0,
                               atol=2e-4)


def test_position_wise_ffn_books_example_and_values(gen):
    ffn = d2l.PositionWiseFFN(4, 8)
    ffn.eval()
    assert ffn(torch.ones((2, 3, 4)))[0].shape == (3, 8)  # the book's (3, 8), not (3, 4)
    X = torch.randn(B, S, D, generator=gen, dtype=torch.float64)
    ffn = materialize(d2l.PositionWiseFFN(FFN, 9), X)
    assert ffn.dense1.weight.shape == (FFN, D) and ffn.dense2.weight.shape == (9, FFN)
    torch.testing.assert_close(ffn(X), book_ffn(params(ffn), X), **TIGHT)


def test_add_norm_books_example_and_values(gen):
    add_norm = d2l.AddNorm(4, 0.5)
    shape = (2, 3, 4)
    d2l.check_shape(add_norm(torch.ones(shape), torch.ones(shape)), shape)
    X, Y = (torch.randn(B, S, D, generator=gen, dtype=torch.float64) for _ in range(2))
    add_norm = d2l.AddNorm(D, 0.5).double().eval()
    torch.testing.assert_close(add_norm(X, Y), book_addnorm(params(add_norm), X, Y), **TIGHT)
    # a shape, as nn.LayerNorm takes
    assert d2l.AddNorm([S, D], 0.0).double()(X, Y).shape == X.shape


def test_encoder_block_books_example_and_values_with_padding(gen):
    X, valid_lens = torch.ones((2, 100, 24)), torch.tensor([3, 2])
    encoder_blk = d2l.TransformerEncoderBlock(24, 48, 8, 0.5)
    encoder_blk.eval()
    d2l.check_shape(encoder_blk(X, valid_lens), X.shape)
    X = torch.randn(B, S, D, generator=gen, dtype=torch.float64, requires_grad=True)
    blk = materialize(d2l.TransformerEncoderBlock(D, FFN, H, 0.3, True), X, SRC_LENS).eval()
    p = params(blk)
    out = blk(X, SRC_LENS)
    book_out, book_w = book_encoder_block(p, X, SRC_LENS, H)
    torch.testing.assert_close(out, book_out, **TIGHT)  # padded positions too, as the book
    torch.testing.assert_close(blk.attention.attention.attention_weights, book_w, **TIGHT)
    ours = torch.autograd.grad(out.square().sum(), X)[0]
    torch.testing.assert_close(ours, torch.autograd.grad(book_out.square().sum(), X)[0],
                               **TIGHT)


def _encoder(gen):
    src = torch.randint(0, V, (B, S), generator=gen)
    encoder = d2l.TransformerEncoder(V, D, FFN, H, BLKS, 0.2)
    return materialize(encoder, src, SRC_LENS).eval(), src


def test_encoder_books_example_and_values(gen):
    valid_lens = torch.tensor([3, 2])
    encoder = d2l.TransformerEncoder(200, 24, 48, 8, 2, 0.5)
    d2l.check_shape(encoder(torch.ones((2, 100), dtype=torch.long), valid_lens), (2, 100, 24))
    assert [w.shape for w in encoder.attention_weights] == [(16, 100, 100)] * 2
    encoder, src = _encoder(gen)
    out = encoder(src, SRC_LENS)
    book_out, book_w = book_encoder(params(encoder), src, SRC_LENS, H, BLKS,
                                    encoder.pos_encoding.P)
    torch.testing.assert_close(out, book_out, **TIGHT)
    for ours, book in zip(encoder.attention_weights, book_w):
        torch.testing.assert_close(ours, book, **TIGHT)
    shape = (BLKS, H, -1, S)  # the book's reshape for its heatmaps
    assert torch.cat(encoder.attention_weights, 0).reshape(shape).shape == (BLKS, H, B * S, S)


def test_decoder_block_books_example_training_mode_is_causal(gen):
    X, valid_lens = torch.ones((2, 100, 24)), torch.tensor([3, 2])
    encoder_blk = d2l.TransformerEncoderBlock(24, 48, 8, 0.5).eval()
    decoder_blk = d2l.TransformerDecoderBlock(24, 48, 8, 0.5, 0)
    state = [encoder_blk(X, valid_lens), valid_lens, [None]]
    d2l.check_shape(decoder_blk(X, state)[0], X.shape)
    assert state[2][0] is X  # the block's cache now holds its inputs
    enc = torch.randn(B, S, D, generator=gen, dtype=torch.float64)
    Y = torch.randn(B, T, D, generator=gen, dtype=torch.float64)
    blk = materialize(d2l.TransformerDecoderBlock(D, FFN, H, 0.0, 1), Y,
                      [enc.float(), SRC_LENS, [None, None]])  # training mode, no dropout
    p = params(blk)
    out, state = blk(Y, [enc, SRC_LENS, [None, None]])
    book_out, (w1, w2) = book_decoder_block(p, Y, [enc, SRC_LENS, [None, None]], 1, H,
                                            training=True)
    torch.testing.assert_close(out, book_out, **TIGHT)
    torch.testing.assert_close(blk.attention1.attention.attention_weights, w1, **TIGHT)
    assert torch.all(w1.triu(1) == 0)  # query t sees keys 0 … t
    torch.testing.assert_close(blk.attention2.attention.attention_weights, w2, **TIGHT)


def test_decoder_init_state_forward_and_step_by_step_decoding(gen):
    encoder, src = _encoder(gen)
    decoder = d2l.TransformerDecoder(V, D, FFN, H, BLKS, 0.2)
    tgt = torch.randint(0, V, (B, T), generator=gen)
    enc_out = encoder(src, SRC_LENS)
    materialize(decoder, tgt, decoder.init_state(enc_out.float(), SRC_LENS)).eval()
    p = params(decoder)
    state = decoder.init_state(enc_out, SRC_LENS)
    assert state[2] == [None] * BLKS
    book_state = [enc_out, SRC_LENS, [None] * BLKS]
    for t in range(T):  # one token per call, as the book's predict_step
        logits, state = decoder(tgt[:, t:t + 1], state)
        book_logits, book_state, book_w = book_decoder(p, tgt[:, t:t + 1], book_state, H, BLKS,
                                                     P=decoder.pos_encoding.P)
        torch.testing.assert_close(logits, book_logits, **TIGHT)
        for kind in (0, 1):
            for ours, book in zip(decoder.attention_weights[kind], book_w[kind]):
                torch.testing.assert_close(ours, book, **TIGHT)
    assert state[2][0].shape == (B, T, D)
    assert decoder.attention_weights[1][0].shape == (B * H, 1, S)


def test_decoder_training_pass_gradients_match_the_book(gen):
    encoder, src = _encoder(gen)
    decoder = d2l.TransformerDecoder(V, D, FFN, H, BLKS, 0.0)
    tgt = torch.randint(0, V, (B, T), generator=gen)
    enc_out = encoder(src, SRC_LENS).detach()
    materialize(decoder, tgt, decoder.init_state(enc_out.float(), SRC_LENS))
    ref = {k: v.requires_grad_() for k, v in params(decoder).items()}
    logits, _ = decoder(tgt, decoder.init_state(enc_out, SRC_LENS))
    book_logits = book_decoder(ref, tgt, [enc_out, SRC_LENS, [None] * BLKS], H, BLKS,
                               training=True, P=decoder.pos_encoding.P)[0]
    torch.testing.assert_close(logits, book_logits, **TIGHT)
    logits.square().mean().backward()
    book_logits.square().mean().backward()
    for name, param in decoder.named_parameters():
        torch.testing.assert_close(param.grad, ref[name].grad, **TIGHT)


def test_encoder_decoder_predict_step(gen):
    src = torch.randint(0, V, (B, S), generator=gen)
    model = d2l.EncoderDecoder(d2l.TransformerEncoder(V, D, FFN, H, BLKS, 0.0),
                               d2l.TransformerDecoder(V, D, FFN, H, BLKS, 0.0))
    tgt = torch.zeros((B, 1), dtype=torch.long)
    assert model(src, tgt, SRC_LENS).shape == (B, 1, V)
    model.eval()
    ids, weights = model.predict_step((src, tgt, SRC_LENS, None), "cpu", 4, True)
    assert ids.shape == (B, 4) and len(weights) == 4
    assert weights[0][1][0].shape == (B * H, 1, S)


@pytest.mark.parametrize("cls", ["TransformerEncoder", "TransformerDecoder"])
def test_embeddings_keep_the_books_initialization(cls):
    torch.manual_seed(0)
    module = getattr(d2l, cls)(500, 64, 8, 4, 1, 0.0)
    assert 0.9 < float(module.embedding.weight.detach().std()) < 1.1  # N(0, 1), nn.Embedding's
