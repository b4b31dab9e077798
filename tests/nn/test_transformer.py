"""Transformer blocks against torch.nn.TransformerEncoderLayer / DecoderLayer with copied weights.

Sizes are distinct per axis: B=2, S=11, T=7, d=15 (H=3, Dh=5), d_ff=13.
"""

import pytest
import torch
from torch import nn

from attnkit.nn import (
    AddNorm,
    MultiHeadAttention,
    PositionWiseFFN,
    TransformerDecoderBlock,
    TransformerEncoderBlock,
)

B, S, T, D, H, FFN = 2, 11, 7, 15, 3, 13
TIGHT = dict(rtol=1e-10, atol=1e-10)


def _copy_attention(mha: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    wq, wk, wv = ref.in_proj_weight.chunk(3)
    bq, bk, bv = ref.in_proj_bias.chunk(3)
    for lin, w, b in ((mha.W_q, wq, bq), (mha.W_k, wk, bk), (mha.W_v, wv, bv),
                      (mha.W_o, ref.out_proj.weight, ref.out_proj.bias)):
        lin.weight.copy_(w)
        lin.bias.copy_(b)


def _copy_linear(dst: nn.Module, src: nn.Module) -> None:
    dst.weight.copy_(src.weight)
    dst.bias.copy_(src.bias)


def _randomize(module: nn.Module) -> None:
    """Non-trivial biases and norms, so that copying every tensor is checked."""
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim == 1:
                p.normal_(mean=1.0 if p.shape[0] == D else 0.0, std=0.3)


@torch.no_grad()
def _encoder_pair(norm_first: bool):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(D, H, FFN, dropout=0.0, activation="relu",
                                     batch_first=True, norm_first=norm_first).double().eval()
    _randomize(ref)
    blk = TransformerEncoderBlock(D, FFN, H, 0.0, bias=True, pre_norm=norm_first).double().eval()
    _copy_attention(blk.attention, ref.self_attn)
    _copy_linear(blk.ffn.dense1, ref.linear1)
    _copy_linear(blk.ffn.dense2, ref.linear2)
    _copy_linear(blk.addnorm1.ln, ref.norm1)
    _copy_linear(blk.addnorm2.ln, ref.norm2)
    return blk, ref


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_encoder_block_matches_torch_encoder_layer(norm_first):
    blk, ref = _encoder_pair(norm_first)
    X = torch.randn(B, S, D, dtype=torch.float64)
    valid_lens = torch.tensor([S, 6])
    padding = torch.arange(S)[None, :] >= valid_lens[:, None]  # torch: True = padding
    with torch.no_grad():
        expected = ref(X, src_key_padding_mask=padding)
        unpadded = ref(X)
        ours = blk(X, valid_lens)
        torch.testing.assert_close(blk(X), unpadded, **TIGHT)
    # valid positions must agree (torch's fast path may zero padded rows; attnkit skips them)
    for b in range(B):
        n = int(valid_lens[b])
        torch.testing.assert_close(ours[b, :n], expected[b, :n], **TIGHT)
    assert torch.all(ours[1, 6:] == 0)  # padded positions are skipped, left at zero


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_decoder_block_matches_torch_decoder_layer(norm_first):
    torch.manual_seed(1)
    ref = nn.TransformerDecoderLayer(D, H, FFN, dropout=0.0, activation="relu",
                                     batch_first=True, norm_first=norm_first).double().eval()
    _randomize(ref)
    blk = TransformerDecoderBlock(D, FFN, H, 0.0, bias=True, pre_norm=norm_first).double().eval()
    with torch.no_grad():
        _copy_attention(blk.self_attention, ref.self_attn)
        _copy_attention(blk.cross_attention, ref.multihead_attn)
        _copy_linear(blk.ffn.dense1, ref.linear1)
        _copy_linear(blk.ffn.dense2, ref.linear2)
        for i, norm in enumerate((ref.norm1, ref.norm2, ref.norm3), start=1):
            _copy_linear(getattr(blk, f"addnorm{i}").ln, norm)
    X = torch.randn(B, T, D, dtype=torch.float64)
    memory = torch.randn(B, S, D, dtype=torch.float64)
    src_valid_lens = torch.tensor([4, S])
    causal_blocked = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)  # torch: True = blocked
    memory_padding = torch.arange(S)[None, :] >= src_valid_lens[:, None]
    with torch.no_grad():
        expected = ref(X, memory, tgt_mask=causal_blocked, memory_key_padding_mask=memory_padding)
        torch.testing.assert_close(blk(X, memory, src_valid_lens), expected, **TIGHT)


def test_add_norm_post_and_pre_ln_by_hand():
    torch.manual_seed(0)
    X, Y = torch.randn(B, T, D), torch.randn(B, T, D)
    post = AddNorm(D, 0.0)
    ln = nn.functional.layer_norm
    torch.testing.assert_close(post(X, Y), ln(X + Y, (D,)))
    pre = AddNorm(D, 0.0, pre_norm=True)
    double = lambda Z: 2 * Z  # noqa: E731
    torch.testing.assert_close(pre.residual(X, double), X + 2 * ln(X, (D,)))
    torch.testing.assert_close(post.residual(X, double), ln(X + 2 * X, (D,)))
    with pytest.raises(ValueError, match=r"X and Y must have the same shape .* got X \(2, 7, 15\)"):
        post(X, Y[:, :3])


def test_ffn_is_relu_mlp_applied_per_position():
    torch.manual_seed(0)
    ffn = PositionWiseFFN(num_hiddens=D, ffn_num_hiddens=FFN).double()
    X = torch.randn(B, T, D, dtype=torch.float64)
    out = ffn(X)
    # the same function at every position: evaluating one position alone gives the same row
    torch.testing.assert_close(ffn(X[:, 3:4]), out[:, 3:4], rtol=1e-12, atol=1e-12)
    h = torch.clamp(X @ ffn.dense1.weight.T + ffn.dense1.bias, min=0)  # max(0, xW1 + b1)
    torch.testing.assert_close(out, h @ ffn.dense2.weight.T + ffn.dense2.bias)
    with pytest.raises(ValueError, match=r"activation must be one of 'relu', 'gelu' or an "
                                         r"nn.Module; got 'swish'"):
        PositionWiseFFN(num_hiddens=D, ffn_num_hiddens=FFN, activation="swish")


def test_encoder_block_ignores_padded_tokens():
    torch.manual_seed(0)
    blk = TransformerEncoderBlock(D, FFN, H, 0.0).double().eval()
    X = torch.randn(B, S, D, dtype=torch.float64)
    valid_lens = torch.tensor([5, 8])
    X2 = X.clone()
    X2[0, 5:] = torch.randn(S - 5, D, dtype=torch.float64)
    X2[1, 8:] = 1e3
    a, b = blk(X, valid_lens), blk(X2, valid_lens)
    torch.testing.assert_close(a[0, :5], b[0, :5], rtol=0, atol=0)
    torch.testing.assert_close(a[1, :8], b[1, :8], rtol=0, atol=0)


def test_block_validation():
    with pytest.raises(ValueError, match="positional='alibi' brings its own score"):
        TransformerEncoderBlock(D, FFN, H, 0.0, positional="alibi", score="dot")
    with pytest.raises(ValueError, match=r"positional must be one of 'sinusoidal', "):
        TransformerDecoderBlock(D, FFN, H, 0.0, positional="xpos")
    with pytest.raises(ValueError, match="num_hiddens must be divisible by num_heads"):
        TransformerDecoderBlock(16, FFN, H, 0.0)


@pytest.mark.parametrize("pre_norm", [False, True])
@torch.no_grad()
def test_decoder_block_step_equals_forward_with_caches(pre_norm):
    """The block's step on one position per sequence (the sublayers' step methods) gives
    forward's output at that position, with caches filled the same way."""
    from attnkit.nn import KVCache
    from attnkit.nn.multihead import KeyMask

    torch.manual_seed(0)
    blk = TransformerDecoderBlock(D, FFN, H, 0.3, pre_norm=pre_norm, bias=True,
                                  activation="gelu").double().eval()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    enc = torch.randn(B, S, D, generator=g, dtype=torch.float64)
    lens = torch.tensor([S, 4])
    full = blk(x, enc, lens)
    caches, mask = (KVCache(), KVCache(static=True)), KeyMask.from_lens(lens, S)
    for t in range(T):
        torch.testing.assert_close(blk.step(x[:, t], *caches, enc, mask), full[:, t], **TIGHT)


def test_decoder_step_checks_what_it_is_given():
    from attnkit.nn import KVCache, TransformerDecoder

    dec = TransformerDecoder(23, D, FFN, H, 2, 0.0).eval()
    caches = [(KVCache(), KVCache(static=True)) for _ in range(2)]
    enc = torch.zeros(B, S, D)
    with pytest.raises(ValueError, match=r"tgt ids must lie in \[0, 23\)"):
        dec.step(torch.full((B, 1), 23), caches, enc)
    with pytest.raises(ValueError, match=r"step takes tokens \(B, 1\) and one \(self_cache, "
                                         r"cross_cache\) pair per block \(2\); got tokens "
                                         r"\(2, 3\) and 2 pairs"):
        dec.step(torch.ones(B, 3, dtype=torch.long), caches, enc)
    with pytest.raises(ValueError, match=r"enc_outputs must have shape \(B, S, 15\) with B = 2"):
        dec.step(torch.ones(B, 1, dtype=torch.long), caches, enc[:1])
    dec.step(torch.ones(B, 1, dtype=torch.long), caches, enc)
    with pytest.raises(ValueError, match=r"holds keys of B = 2 sequences; got tokens of B = 3"):
        dec.step(torch.ones(3, 1, dtype=torch.long), caches, enc)
