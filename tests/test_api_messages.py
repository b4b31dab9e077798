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
    assert str(attnkit.explain_backend(q, k, v, **kwargs)).startswith("auto -> reference")


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
                                         r"tensors carry no data: only 'reference' runs there"):
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


# --- multi-head attention speaks of what the caller passed, not folded head shapes ----

def _mha(**kwargs):
    torch.manual_seed(0)
    return attnkit.nn.MultiHeadAttention(8, 2, **kwargs)


def test_mha_batch_mismatch_shows_the_callers_shapes():
    q, kv = torch.randn(2, 5, 8), torch.randn(3, 4, 8)
    with pytest.raises(ValueError, match=r"keys and values must have the batch size of queries, "
                                         r"B = 2 \(or 1, shared by every query sequence\); "
                                         r"got queries \(2, 5, 8\), keys \(3, 4, 8\) and "
                                         r"values \(3, 4, 8\)$"):
        _mha()(q, kv, kv)


def test_mha_keys_shared_by_every_query_sequence_still_work():
    mha = _mha()
    q, kv = torch.randn(2, 5, 8), torch.randn(1, 4, 8)
    torch.testing.assert_close(mha(q, kv, kv), mha(q, kv.expand(2, 4, 8), kv.expand(2, 4, 8)))


@pytest.mark.parametrize("num_kv_heads,mask_shape", [
    (None, (2, 5, 3)), (None, (2, 2, 5, 3)), (None, (2, 3, 5, 4)), (None, (3, 5, 4)),
    (1, (2, 2, 5, 3)),
])
def test_mha_mask_mismatch_shows_the_callers_shapes(num_kv_heads, mask_shape):
    mha = _mha(num_kv_heads=num_kv_heads)
    q, kv = torch.randn(2, 5, 8), torch.randn(2, 4, 8)
    given = ", ".join(map(str, mask_shape))
    with pytest.raises(ValueError, match=rf"mask must be broadcastable to \(B, Nq, Nk\) = "
                                         rf"\(2, 5, 4\) \(the same for every head\) or, 4-D, "
                                         rf"to \(B, H, Nq, Nk\) = \(2, 2, 5, 4\); "
                                         rf"got \({given}\)$"):
        mha(q, kv, kv, mask=torch.ones(mask_shape, dtype=torch.bool))


def test_gqa_mask_mismatch_shows_h_not_the_group_layout():
    mha = attnkit.nn.MultiHeadAttention(8, 4, num_kv_heads=2)
    q, kv = torch.randn(2, 5, 8), torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match=r"\(B, H, Nq, Nk\) = \(2, 4, 5, 4\); "
                                         r"got \(2, 4, 5, 3\)$"):
        mha(q, kv, kv, mask=torch.ones(2, 4, 5, 3, dtype=torch.bool))


def _cached_mha(batch, tokens):
    """A small MultiHeadAttention and a KV cache holding ``tokens`` keys of ``batch`` rows."""
    mha, cache = _mha(), attnkit.nn.KVCache()
    x = torch.randn(batch, tokens, 8)
    mha(x, x, x, kv_cache=cache, causal="bottom_right")
    return mha, cache


def test_mha_mask_counts_the_cached_keys():
    mha, cache = _cached_mha(2, 3)
    step = torch.randn(2, 1, 8)
    with pytest.raises(ValueError, match=r"\(B, Nq, Nk\) = \(2, 1, 4\) .* got \(2, 1, 3\)$"):
        mha(step, step, step, kv_cache=cache, mask=torch.ones(2, 1, 3, dtype=torch.bool))
    assert len(cache) == 3  # the refused call left the cache as it was
    out = mha(step, step, step, kv_cache=cache, mask=torch.ones(2, 1, 4, dtype=torch.bool))
    assert out.shape == (2, 1, 8)


def test_mha_mask_dtype_and_valid_lens_in_the_callers_terms():
    mha = _mha()
    q, kv = torch.randn(2, 5, 8), torch.randn(2, 4, 8)
    with pytest.raises(TypeError, match=r"mask must have dtype torch.bool \(True = may attend\); "
                                        r"got torch.float32"):
        mha(q, kv, kv, mask=torch.ones(2, 5, 4))
    with pytest.raises(ValueError, match=r"valid_lens must have shape \(B,\) or \(B, Nq\) = "
                                         r"\(2,\) or \(2, 5\); got \(3\)"):
        mha(q, kv, kv, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"valid_lens values must lie in \[0, Nk\] = \[0, 4\]"):
        mha(q, kv, kv, torch.tensor([1, 9]))


def test_mha_cache_of_another_batch_is_named():
    mha, cache = _cached_mha(3, 1)
    x2 = torch.randn(2, 1, 8)
    with pytest.raises(ValueError, match=r"kv_cache \(KVCache\(\)\) holds keys of B = 3 "
                                         r"sequences; got queries of B = 2"):
        mha(x2, x2, x2, kv_cache=cache, causal="bottom_right")
    cache.reorder(torch.tensor([0, 2]))  # the surviving rows: now it serves B = 2
    assert mha(x2, x2, x2, kv_cache=cache, causal="bottom_right").shape == (2, 1, 8)


def test_encoder_block_names_x():
    blk = attnkit.nn.TransformerEncoderBlock(8, 16, 2, 0.0)
    with pytest.raises(ValueError, match=r"X must have shape \(B, N, 8\); got \(2, 5, 6\)"):
        blk(torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match=r"mask must be broadcastable to \(B, Nq, Nk\) = "
                                         r"\(2, 5, 5\)"):
        blk(torch.randn(2, 5, 8), mask=torch.ones(2, 5, 4, dtype=torch.bool))


# --- an input in another dtype than the module's parameters ----------------------------

def _dtype_message(name, given, module, params, cast_module, cast_input):
    return (rf"{name} has dtype torch\.{given} but the parameters of {module} are "
            rf"torch\.{params}; cast the module to the input's dtype \(module\.{cast_module}\(\)\)"
            rf", or the input to the module's \({name}\.{cast_input}\(\)\), or run under "
            rf"torch\.autocast")


@pytest.mark.parametrize("arg", ["queries", "keys", "values"])
def test_fp16_input_to_an_fp32_mha_is_named(arg):
    mha = _mha()
    inputs = dict(queries=torch.randn(2, 5, 8), keys=torch.randn(2, 4, 8),
                  values=torch.randn(2, 4, 8))
    inputs[arg] = inputs[arg].half()
    with pytest.raises(TypeError, match=_dtype_message(arg, "float16", "MultiHeadAttention",
                                                       "float32", "half", "float")):
        mha(*inputs.values())


def test_fp32_input_to_a_half_mha_and_the_fix_it_names():
    mha = _mha().to(torch.bfloat16)
    x = torch.randn(2, 5, 8)
    with pytest.raises(TypeError, match=_dtype_message("queries", "float32", "MultiHeadAttention",
                                                       "bfloat16", "float", "bfloat16")):
        mha(x, x, x)
    assert mha(x.bfloat16(), x.bfloat16(), x.bfloat16()).dtype == torch.bfloat16  # the fix


def test_under_autocast_mixed_dtypes_are_torchs_business():
    mha, x = _mha(), torch.randn(2, 5, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert mha(x, x, x).dtype == torch.bfloat16


def test_ffn_blocks_and_decoders_name_the_input_and_the_module():
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    ffn = attnkit.nn.PositionWiseFFN(num_hiddens=8, ffn_num_hiddens=16)
    with pytest.raises(TypeError, match=_dtype_message("X", "float64", "PositionWiseFFN",
                                                       "float32", "double", "float")):
        ffn(x)
    lazy = attnkit.nn.PositionWiseFFN(ffn_num_hiddens=16, num_outputs=8)
    with pytest.raises(TypeError, match=r"X has dtype torch\.float16 but the parameters of "
                                        r"PositionWiseFFN are torch\.float32"):
        lazy(x.half())
    enc = attnkit.nn.TransformerEncoderBlock(8, 16, 2, 0.0)
    with pytest.raises(TypeError, match=r"X has dtype torch\.float64 but the parameters of "
                                        r"TransformerEncoderBlock are torch\.float32"):
        enc(x)
    dec = attnkit.nn.TransformerDecoderBlock(8, 16, 2, 0.0)
    with pytest.raises(TypeError, match=_dtype_message("enc_outputs", "float64",
                                                       "TransformerDecoderBlock", "float32",
                                                       "double", "float")):
        dec(x.float(), x)
    stack = attnkit.nn.TransformerDecoder(10, 8, 16, 2, 1, 0.0)
    with pytest.raises(TypeError, match=r"enc_outputs has dtype torch\.float16 but the "
                                        r"parameters of TransformerDecoder are torch\.float32"):
        stack(torch.zeros(2, 3, dtype=torch.long), x.half())


def test_bahdanau_decoder_names_the_state_it_was_given():
    from attnkit.models import BahdanauSeq2Seq

    model = BahdanauSeq2Seq(10, 10, embed_size=4, num_hiddens=8,
                            num_encoder_layers=1, num_decoder_layers=1)
    src = torch.zeros(2, 3, dtype=torch.long)
    state = model.init_state(model.encode(src))
    state.enc_outputs = state.enc_outputs.half()
    with pytest.raises(TypeError, match=r"state\.enc_outputs has dtype torch\.float16 but the "
                                        r"parameters of AttentionDecoder are torch\.float32"):
        model.decode_step(src, state)


def test_attention_modules_compute_in_the_inputs_dtype():
    # no check here on purpose: the scores cast their parameters to the input's dtype, so
    # an fp32 AdditiveAttention serves fp16 inputs (what the Bahdanau decoder relies on)
    x = torch.randn(2, 5, 8)
    for module in (attnkit.nn.AdditiveAttention(4, query_size=8, key_size=8),
                   attnkit.nn.BilinearAttention(8, 8), attnkit.nn.DotProductAttention()):
        out = module(x.half(), x.half(), x.half())
        assert out.dtype == torch.float16
        torch.testing.assert_close(out.float(), module(x, x, x), atol=2e-2, rtol=2e-2)
