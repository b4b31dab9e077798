"""Positional encodings against their papers' formulas, hand-checked values and invariances."""

import math

import pytest
import torch

from attnkit import attention_weights
from attnkit.nn import (
    ALiBi,
    ALiBiScore,
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    PositionalEncoding,
    RotaryEmbedding,
    alibi_slopes,
)

TIGHT = dict(rtol=1e-12, atol=1e-12)


# ---- sinusoidal -------------------------------------------------------------------------

@pytest.mark.parametrize("d", [12, 7])
@pytest.mark.parametrize("pos", [0, 1, 3, 57, 999])
def test_sinusoid_matches_the_paper_formula(pos, d):
    pe = PositionalEncoding(d, 0.0, max_len=1000).double()
    P = pe(torch.zeros(1, 1000, d, dtype=torch.float64))[0]  # (max_len, d)
    for i in range((d + 1) // 2):  # PE(pos, 2i) = sin(pos / 10000^(2i/d))
        angle = pos / 10000 ** (2 * i / d)
        assert P[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-12)
        if 2 * i + 1 < d:  # PE(pos, 2i+1) = cos(pos / 10000^(2i/d))
            assert P[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-12)


def test_sinusoid_hand_values():
    P = PositionalEncoding(4, 0.0).double().P[0]  # (max_len, 4)
    torch.testing.assert_close(P[0], torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64))
    # pos 2, d=4: frequencies 1 and 1/100
    expected = torch.tensor([math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)],
                            dtype=torch.float64)
    torch.testing.assert_close(P[2], expected, **TIGHT)


def test_sinusoid_offset_continues_the_sequence():
    pe = PositionalEncoding(6, 0.0, max_len=50).double()
    X = torch.randn(3, 11, 6, dtype=torch.float64)
    full = pe(X)
    torch.testing.assert_close(pe(X[:, 4:9], offset=4), full[:, 4:9], **TIGHT)
    torch.testing.assert_close(full - X, pe.P[:, :11].expand(3, 11, 6), **TIGHT)
    assert "P" not in pe.state_dict()  # a function of (max_len, d), not saved


def test_sinusoid_validation():
    pe = PositionalEncoding(6, 0.0, max_len=10)
    with pytest.raises(ValueError, match=r"offset \+ N = 8 \+ 3 = 11 exceed max_len=10"):
        pe(torch.zeros(1, 3, 6), offset=8)
    with pytest.raises(ValueError, match=r"X must have shape \(B, N, d\) with d = .* = 6"):
        pe(torch.zeros(1, 3, 5))
    with pytest.raises(ValueError,
                       match=r"offset \(the start position\) must be a non-negative int; got -1"):
        pe(torch.zeros(1, 3, 6), offset=-1)
    with pytest.raises(ValueError, match="dropout must be a number in"):
        PositionalEncoding(6, 1.5)


# ---- learned ----------------------------------------------------------------------------

def test_learned_embedding_adds_rows_of_its_table_and_learns():
    pe = LearnedPositionalEmbedding(5, 0.0, max_len=13).double()
    X = torch.randn(2, 4, 5, dtype=torch.float64)
    out = pe(X, offset=7)
    torch.testing.assert_close(out - X, pe.embedding.weight[7:11].expand(2, 4, 5), **TIGHT)
    out.sum().backward()
    grad = pe.embedding.weight.grad
    assert torch.all(grad[7:11] == 2) and torch.all(grad[:7] == 0) and torch.all(grad[11:] == 0)
    with pytest.raises(ValueError, match="exceed max_len=13"):
        pe(X, offset=10)


# ---- rotary -----------------------------------------------------------------------------

def test_rope_hand_values():
    rope = RotaryEmbedding(2)  # one pair, θ_0 = 1: position m rotates by m radians
    x = torch.tensor([[1.0, 0.0]] * 4, dtype=torch.float64)  # (N=4, 2)
    out = rope(x)
    expected = torch.tensor([[math.cos(m), math.sin(m)] for m in range(4)], dtype=torch.float64)
    torch.testing.assert_close(out, expected, **TIGHT)
    # second pair of a 4-dim head turns with θ_1 = 10000^(-2/4) = 1/100
    out4 = RotaryEmbedding(4)(torch.tensor([[0.0, 0.0, 0.0, 1.0]] * 3, dtype=torch.float64))
    torch.testing.assert_close(out4[2, 2:], torch.tensor([-math.sin(0.02), math.cos(0.02)],
                                                         dtype=torch.float64), **TIGHT)


def test_rope_preserves_norms():
    rope = RotaryEmbedding(10)
    x = torch.randn(3, 2, 17, 10, dtype=torch.float64)  # (B, H, N, Dh)
    torch.testing.assert_close(rope(x, offset=5).norm(dim=-1), x.norm(dim=-1), **TIGHT)


def test_rope_scores_depend_on_relative_position_only():
    rope = RotaryEmbedding(8)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, generator=g, dtype=torch.float64), torch.randn(8, generator=g,
                                                                          dtype=torch.float64)

    def score(m, n):  # query at position m, key at position n
        return rope(q[None], offset=m)[0] @ rope(k[None], offset=n)[0]

    for shift in (0, 1, 5, 100):
        assert score(3 + shift, 1 + shift).item() == pytest.approx(score(3, 1).item(), abs=1e-12)
        assert score(1 + shift, 6 + shift).item() == pytest.approx(score(1, 6).item(), abs=1e-12)
    assert score(3, 1).item() != pytest.approx(score(1, 3).item(), abs=1e-6)


def test_rope_offset_and_dtype():
    rope = RotaryEmbedding(6)
    x = torch.randn(2, 9, 6, dtype=torch.float64)
    torch.testing.assert_close(rope(x[:, 5:], offset=5), rope(x)[:, 5:], **TIGHT)
    low = rope(x.bfloat16())
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.double(), rope(x), rtol=2e-2, atol=2e-2)
    with pytest.raises(ValueError, match="head_dim must be even"):
        RotaryEmbedding(5)
    with pytest.raises(ValueError, match=r"x must have shape \(..., N, Dh\) with Dh = 6"):
        rope(torch.zeros(3, 4))


def test_rope_keeps_its_angles_and_rotates_as_if_computed_anew():
    """The cos/sin kept per position (grown past the first table) rotate exactly as the
    angles computed for the call itself: bit for bit, at any offset."""
    rope = RotaryEmbedding(6)
    x = torch.randn(2, 3, 6)
    first = rope(x, offset=0)  # keeps a table of the first 64 positions
    for offset in (5, 63, 200):
        ang = rope.angles(3, offset)  # (3, Dh/2), float32
        pairs = x.unflatten(-1, (-1, 2))
        even, odd = pairs[..., 0], pairs[..., 1]
        want = torch.stack((even * ang.cos() - odd * ang.sin(),
                            even * ang.sin() + odd * ang.cos()), -1).flatten(-2)
        assert torch.equal(rope(x, offset=offset), want)
    assert torch.equal(rope(x, offset=0), first)


# ---- ALiBi ------------------------------------------------------------------------------

def test_alibi_slopes_follow_the_paper():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -k for k in range(1, 9)],
                                                             dtype=torch.float64))
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2.0 ** -k for k in (2, 4, 6, 8)],
                                                             dtype=torch.float64))
    # not a power of two: the 4-head slopes, then every other slope of 8 heads
    six = [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3]
    torch.testing.assert_close(alibi_slopes(6), torch.tensor(six, dtype=torch.float64))


def test_alibi_bias_hand_values():
    alibi = ALiBi(2)  # slopes 1/16, 1/256
    bias = alibi.bias(3, 3)
    expected0 = torch.tensor([[0.0, 1, 2], [-1, 0, 1], [-2, -1, 0]]) / 16  # m·(j − i)
    torch.testing.assert_close(bias[0], expected0)
    torch.testing.assert_close(bias[1], expected0 * 16 / 256)
    # one new query after two cached positions is position 2 (bottom-right)
    torch.testing.assert_close(alibi.bias(1, 3)[0], torch.tensor([[-2.0, -1, 0]]) / 16)
    sym = ALiBi(2, symmetric=True).bias(2, 3)[0]
    torch.testing.assert_close(sym, -torch.tensor([[1.0, 0, 1], [2, 1, 0]]) / 16)


def test_alibi_score_adds_the_bias_per_head_in_both_head_layouts():
    score = ALiBiScore(4)
    q = torch.randn(2, 4, 5, 3, dtype=torch.float64)  # (B, H, Nq, Dh)
    k = torch.randn(2, 4, 7, 3, dtype=torch.float64)
    plain = q @ k.transpose(-1, -2) / math.sqrt(3)
    s = score(q, k)
    torch.testing.assert_close(s - plain, score.alibi.bias(5, 7, dtype=torch.float64)
                               .expand(2, 4, 5, 7), **TIGHT)
    # grouped layout (B, Hkv=2, G=2, Nq, Nk): head h = kv·G + g
    s5 = score(q.view(2, 2, 2, 5, 3), k.view(2, 2, 2, 7, 3))
    torch.testing.assert_close(s5.reshape(2, 4, 5, 7), s, **TIGHT)
    # flattened (B·H, Nq, Nk), as a backend may call it
    torch.testing.assert_close(score(q.reshape(8, 5, 3), k.reshape(8, 7, 3)),
                               s.reshape(8, 5, 7), **TIGHT)
    with pytest.raises(ValueError, match="score 'alibi' has 4 head slopes"):
        score(q[:, :3], k[:, :3])


def test_alibi_dot_form_gives_the_same_causal_weights():
    score = ALiBiScore(4)
    q = torch.randn(2, 4, 6, 3, dtype=torch.float64)
    k = torch.randn(2, 4, 6, 3, dtype=torch.float64)
    form = score.as_dot(q, k)
    logits = form.scale * q @ k.transpose(-1, -2) + form.key_bias[..., None, :]
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    expected = torch.softmax(logits.masked_fill(~causal, float("-inf")), -1)
    torch.testing.assert_close(attention_weights(q, k, score=score, causal=True), expected,
                               **TIGHT)
    assert ALiBiScore(4, symmetric=True).as_dot(q, k) is None
    assert score.as_dot(q.bfloat16(), k.bfloat16()) is None  # growing bias: not in bf16


@pytest.mark.parametrize("backend", ["auto", "sdpa", "reference"])
@pytest.mark.parametrize("symmetric", [False, True], ids=["causal", "symmetric"])
@pytest.mark.parametrize("num_kv_heads", [4, 2])
def test_alibi_in_multihead_attention_on_whole_row_backends(backend, symmetric, num_kv_heads):
    """auto/sdpa (through the dot form) match the reference; long rows, so a blocked
    evaluation would show."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(4 * 3, 4, num_kv_heads=num_kv_heads, backend="reference",
                             score=ALiBiScore(4, symmetric=symmetric)).double()
    x = torch.randn(2, 700, 12, dtype=torch.float64)
    causal, valid_lens = not symmetric, torch.tensor([700, 333])
    reference = mha(x, x, x, valid_lens, causal=causal)
    mha.backend = backend
    if backend == "sdpa" and symmetric:  # no dot form: sdpa says it cannot serve
        with pytest.raises(ValueError, match="backend='sdpa' cannot serve this call"):
            mha(x, x, x, valid_lens, causal=causal)
        return
    torch.testing.assert_close(mha(x, x, x, valid_lens, causal=causal), reference,
                               rtol=1e-12, atol=1e-12)


def test_alibi_refuses_blocked_backends_and_auto_passes_over_them():
    mha = MultiHeadAttention(12, 4, score=ALiBiScore(4), backend="chunked")
    x = torch.randn(2, 5, 12)
    with pytest.raises(ValueError, match=r"backend='chunked' cannot serve this call: score "
                                         r"'alibi' depends on absolute positions"):
        mha(x, x, x)
    import attnkit
    from attnkit.backends import get_backend

    q = torch.randn(2, 4, 5, 3)
    assert attnkit.explain_backend(q, q, q, score=ALiBiScore(4)).name == "sdpa"
    call = attnkit.functional.make_call(q, q, q, score=ALiBiScore(4))
    assert "depends on absolute positions" in get_backend("chunked").unsupported_reason(call)
