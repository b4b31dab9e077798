"""The Python API names the caller's arguments, in the caller's shapes, or gives the
documented result.

Each test feeds one kind of bad (or awkward) input to a public function or module
and matches the message: the argument's own name (``num_keys``, ``queries``…),
what was expected, and what was given, never a symbol or a shape that only
exists inside attnkit (a folded ``(B, H, N, Dh)``) and never torch's own error.
"""

import pytest
import torch

import attnkit
from attnkit import attention, masked_softmax
from attnkit.masks import key_padding_mask, valid_lens_mask

NEG_INF = float("-inf")


# --- mask builders name their own arguments ---------------------------------------------

@pytest.mark.parametrize("num_keys", [-1, 2.5, True, None])
def test_key_padding_mask_names_num_keys_and_the_value_given(num_keys):
    with pytest.raises(ValueError, match=rf"num_keys must be a non-negative int; "
                                         rf"got {num_keys!r}"):
        key_padding_mask(torch.tensor([1, 2]), num_keys=num_keys)


def test_key_padding_mask_range_is_stated_in_num_keys():
    with pytest.raises(ValueError, match=r"valid_lens values must lie in \[0, num_keys\] = "
                                         r"\[0, 5\]; got min 1, max 6"):
        key_padding_mask(torch.tensor([1, 6]), 5)


def test_valid_lens_mask_names_num_queries_and_num_keys():
    with pytest.raises(ValueError, match=r"num_queries must be a non-negative int; got -3"):
        valid_lens_mask(torch.tensor([1]), -3, 4)
    with pytest.raises(ValueError, match=r"num_keys must be a non-negative int; got -1"):
        valid_lens_mask(torch.tensor([1]), 3, -1)


def test_mask_builders_accept_lists_of_lengths():
    assert key_padding_mask([1, 2], 3).tolist() == [[True, False, False], [True, True, False]]
    assert valid_lens_mask([[0, 2]], 2, 2).tolist() == [[[False, False], [True, True]]]


# --- a 0-d valid_lens is told the shapes accepted, and that it is a scalar ------------

def test_zero_d_valid_lens_in_attention_says_scalar_and_the_accepted_shapes():
    q, k = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match=r"valid_lens must have shape \(B,\) or \(B, Nq\) = "
                                         r"\(2,\) or \(2, 3\); got a 0-d tensor \(a scalar\)"):
        attention(q, k, k, valid_lens=torch.tensor(2))


def test_zero_d_valid_lens_in_masked_softmax():
    with pytest.raises(ValueError, match=r"valid_lens must have shape \(B,\) or \(B, Nq\) = "
                                         r"\(2,\) or \(2, 3\); got a 0-d tensor \(a scalar\)"):
        masked_softmax(torch.randn(2, 3, 4), torch.tensor(2))


def test_zero_d_valid_lens_in_the_mask_builders_shows_no_made_up_batch():
    # B comes from valid_lens itself: a scalar has none, and the message says B, not -1
    with pytest.raises(ValueError, match=r"valid_lens must have shape \(B,\) or \(B, Nq\) = "
                                         r"\(B,\) or \(B, 3\); got a 0-d tensor \(a scalar\)"):
        valid_lens_mask(torch.tensor(2), 3, 4)
    with pytest.raises(ValueError, match=r"valid_lens must have shape \(B,\); "
                                         r"got a 0-d tensor \(a scalar\)"):
        key_padding_mask(torch.tensor(2), 4)
    with pytest.raises(ValueError, match=r"valid_lens must have shape \(B,\); got \(2, 3\)"):
        key_padding_mask(torch.ones(2, 3, dtype=torch.long), 4)


def test_python_int_valid_lens_is_called_a_scalar():
    q, k = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    with pytest.raises(TypeError, match=r"valid_lens must be an integer tensor of shape "
                                        r"\(B,\) or \(B, Nq\); got int 2 \(a scalar\)"):
        attention(q, k, k, valid_lens=2)


# --- rows whose valid scores are all -inf: the documented zeros, finite gradients ------

def test_masked_softmax_row_of_minus_inf_scores_is_zero_not_nan():
    X = torch.tensor([[[1.0, 2.0, 3.0], [NEG_INF, NEG_INF, 5.0], [NEG_INF, 0.0, NEG_INF]]])
    w = masked_softmax(X, torch.tensor([2]))  # row 1: its two valid scores are -inf
    assert torch.equal(w[0, 1], torch.zeros(3))
    torch.testing.assert_close(w[0, 0, :2].sum(), torch.tensor(1.0))
    assert w[0, 2].tolist() == [0.0, 1.0, 0.0]  # one finite valid key: all its weight


@pytest.mark.parametrize("how", ["no mask", "mask", "valid_lens"])
def test_masked_softmax_minus_inf_rows_have_zero_finite_gradients(how):
    X = torch.randn(2, 3, 4, dtype=torch.float64)
    X[0, 1] = NEG_INF  # every score of the row
    X[1, 2, :2] = NEG_INF  # the row's valid keys (with valid_lens [4, 2]), not the others
    X.requires_grad_(True)
    kwargs = {"no mask": {}, "mask": dict(mask=torch.ones(2, 3, 4, dtype=torch.bool)),
              "valid_lens": dict(valid_lens=torch.tensor([4, 2]))}[how]
    w = masked_softmax(X, **kwargs)
    assert torch.equal(w[0, 1], torch.zeros(4, dtype=torch.float64))
    if how == "valid_lens":
        assert torch.equal(w[1, 2], torch.zeros(4, dtype=torch.float64))
    assert not w.isnan().any()
    (w * torch.randn_like(w)).sum().backward()
    assert X.grad.isfinite().all()
    assert torch.equal(X.grad[0, 1], torch.zeros(4, dtype=torch.float64))


def test_masked_softmax_minus_inf_rows_in_half_precision():
    X = torch.full((1, 2, 3), NEG_INF, dtype=torch.float16)
    X[0, 0, 0] = 1.0
    w = masked_softmax(X)
    assert w.dtype == torch.float16
    assert w.tolist() == [[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]


def test_nan_scores_stay_nan():
    # a NaN is not "nothing to attend to": it is not hidden behind zeros
    X = torch.tensor([[[float("nan"), 1.0], [0.0, 1.0]]])
    w = masked_softmax(X)
    assert w[0, 0].isnan().all() and w[0, 1].isfinite().all()


class _GatedKeys(attnkit.scores.Score):
    """``q·k``, or ``-inf`` for keys whose feature 0 is negative: a score that itself
    rules keys out (as a learned gate or a hard constraint would)."""

    name = "gated_keys"

    def _gate(self, keys):
        return torch.where(keys[..., 0] < 0, NEG_INF, 0.0).to(keys.dtype)  # (..., Nk)

    def forward(self, queries, keys):
        return queries @ keys.transpose(-1, -2) + self._gate(keys)[..., None, :]

    def as_dot(self, queries, keys):
        return attnkit.scores.DotForm(queries, keys, 1.0, self._gate(keys))


def _gated_inputs():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    k[..., 0] = k[..., 0].abs()
    k[0, :, 0] = -1.0  # every key of sequence 0 is ruled out by the score
    k[1, 3:, 0] = -1.0  # sequence 1: keys 3, 4 ruled out
    return q, k, v


def _backends_for_cpu():
    import os
    names = ["reference", "sdpa", "chunked"]
    return names + (["triton"] if os.environ.get("TRITON_INTERPRET") == "1" else [])


@pytest.mark.parametrize("backend", _backends_for_cpu())
@pytest.mark.parametrize("kwargs", [{}, dict(valid_lens=torch.tensor([5, 3])),
                                    dict(causal=True)], ids=["plain", "valid_lens", "causal"])
def test_attention_rows_whose_valid_scores_are_all_minus_inf_give_zeros(backend, kwargs):
    q, k, v = (t.requires_grad_(True) for t in _gated_inputs())
    out = attention(q, k, v, score=_GatedKeys(), backend=backend, **kwargs)
    ref = attention(q.detach(), k.detach(), v.detach(), score=_GatedKeys(),
                    backend="reference", **kwargs)
    assert torch.equal(out[0], torch.zeros(3, 6))  # nothing to attend to: zero rows
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    out.sum().backward()
    for t in (q, k, v):
        assert t.grad.isfinite().all()


def test_attention_weights_of_minus_inf_rows_are_zero():
    q, k, _ = _gated_inputs()
    w = attnkit.attention_weights(q, k, score=_GatedKeys())
    assert torch.equal(w[0], torch.zeros(3, 5))
    torch.testing.assert_close(w[1].sum(-1), torch.ones(3))
    assert torch.equal(w[1, :, 3:], torch.zeros(3, 2))


# --- meta tensors: shapes propagate (auto picks the reference), named refusals --------

META = torch.device("meta")


def _meta_qkv(dtype=torch.float32):
    return (torch.empty(2, 3, 5, 4, device=META, dtype=dtype),
            torch.empty(2, 3, 7, 4, device=META, dtype=dtype),
            torch.empty(2, 3, 7, 6, device=META, dtype=dtype))


@pytest.mark.parametrize("kwargs", [
    {}, dict(valid_lens=torch.tensor([3, 7], device=META)),
    dict(valid_lens=torch.ones(2, 5, dtype=torch.long, device=META)),
    dict(causal="bottom_right"), dict(mask=torch.ones(2, 1, 5, 7, dtype=torch.bool, device=META)),
    dict(query_valid_lens=torch.tensor([5, 2], device=META)),
    dict(score=attnkit.scores.Additive(8, 4, 4).to(META)),
], ids=["plain", "valid_lens", "valid_lens_2d", "causal", "mask", "query_valid_lens", "additive"])
def test_attention_on_meta_tensors_propagates_shapes(kwargs):
    q, k, v = _meta_qkv()
    out = attention(q, k, v, **kwargs)
    assert out.device.type == "meta" and out.shape == (2, 3, 5, 6)
    assert str(attnkit.choose_backend(q, k, v, **kwargs)).startswith("auto -> reference")


def test_attention_on_meta_half_weights_and_backward():
    q, k, v = _meta_qkv(torch.float16)
    out, w = attention(q, k, v, return_weights=True)
    assert (out.shape, out.dtype, w.shape) == ((2, 3, 5, 6), torch.float16, (2, 3, 5, 7))
    q = q.float().requires_grad_(True)
    lens = torch.tensor([1, 7], device=META)
    attention(q, k.float(), v.float(), valid_lens=lens).sum().backward()
    assert q.grad.shape == q.shape and q.grad.device.type == "meta"


@pytest.mark.parametrize("backend", ["sdpa", "chunked"])
def test_fast_backends_refuse_meta_naming_the_reason(backend):
    q, k, v = _meta_qkv()
    with pytest.raises(ValueError, match=rf"backend='{backend}' cannot serve this call: meta "
                                         r"tensors carry no data \(only 'reference' "
                                         r"propagates their shapes\)"):
        attention(q, k, v, backend=backend)


def test_masked_softmax_and_modules_on_meta():
    w = masked_softmax(torch.empty(2, 5, 7, device=META), torch.tensor([3, 7], device=META))
    assert w.shape == (2, 5, 7) and w.device.type == "meta"
    mha = attnkit.nn.MultiHeadAttention(8, 2).to(META)
    x = torch.empty(2, 5, 8, device=META)
    assert mha(x, x, x, torch.tensor([5, 2], device=META)).shape == (2, 5, 8)
    blk = attnkit.nn.TransformerEncoderBlock(8, 16, 2, 0.0).to(META)
    assert blk(x, torch.tensor([5, 2], device=META)).shape == (2, 5, 8)


def test_a_transformer_built_on_meta_runs_forward():
    from attnkit.models import TransformerConfig, build_model

    cfg = TransformerConfig(src_vocab_size=50, tgt_vocab_size=40, num_hiddens=16, num_heads=2,
                            ffn_num_hiddens=32, num_encoder_layers=2, num_decoder_layers=2)
    with META:
        model = build_model(cfg)
    src = torch.zeros(3, 7, dtype=torch.long, device=META)
    tgt = torch.zeros(3, 6, dtype=torch.long, device=META)
    lens = torch.tensor([7, 3, 5], device=META)
    logits = model(src, tgt, lens, lens.clamp(max=6))
    assert logits.shape == (3, 6, 40) and logits.device.type == "meta"
