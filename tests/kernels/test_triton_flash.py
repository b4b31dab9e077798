"""Tests of the fused Triton scaled-dot attention against a float64 reference (on CPU
tensors under the Triton interpreter without a GPU: ``_setup`` comes first)."""

import pytest
import torch

from tests.kernels._setup import DEVICE, DTYPES, FLOOR, per_query_lens  # skips without triton

# isort: split

from attnkit.kernels.triton_flash import (  # noqa: E402
    flash_attention,
    flash_dropout_mask,
)
from tests.kernels._reference import (  # noqa: E402
    attend_mask,
    check_against_baseline,
    max_err,
    reference_attention,
)


def make_inputs(b, h, hkv, nq, nk, d, dv, dtype, *, bias=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, nq, d, generator=gen)
    k = torch.randn(b, hkv, nk, d, generator=gen)
    v = torch.randn(b, hkv, nk, dv, generator=gen)
    key_bias = -0.5 * torch.rand(b, nk, generator=gen) if bias else None
    do = torch.randn(b, h, nq, dv, generator=gen)
    to = dict(device=DEVICE)
    q, k, v, do = (t.to(dtype=dtype, **to) for t in (q, k, v, do))
    key_bias = key_bias.to(dtype=torch.float32, **to) if bias else None
    return q, k, v, key_bias, do


def run(fn, q, k, v, key_bias, do, dtype, **kwargs):
    """Output and gradients of fn on copies of the inputs cast to dtype."""
    leaves = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
    bias = None
    if key_bias is not None:
        bias = key_bias.detach().to(torch.float32 if dtype != torch.float64 else dtype)
        bias.requires_grad_()
        leaves.append(bias)
    out = fn(leaves[0], leaves[1], leaves[2], key_bias=bias, **kwargs)
    grads = torch.autograd.grad(out, leaves, do.to(out.dtype))
    return out, grads


def check_against_reference(q, k, v, key_bias, do, dtype, *, dropout_p=0.0, dropout_seed=0,
                            **kwargs):
    """Assert the error-relative rule against the float64 reference; return (err, bound)
    of the output."""
    out, grads = run(flash_attention, q, k, v, key_bias, do, dtype, dropout_p=dropout_p,
                     dropout_seed=dropout_seed, **kwargs)
    if dropout_p > 0:
        b, h, nq, _ = q.shape
        kwargs["dropout_p"] = dropout_p
        kwargs["dropout_mask"] = flash_dropout_mask(b, h, nq, k.shape[2], dropout_p=dropout_p,
                                                    dropout_seed=dropout_seed, device=DEVICE)
    truth = run(reference_attention, q, k, v, key_bias, do, torch.float64, **kwargs)
    low = run(reference_attention, q, k, v, key_bias, do, dtype, **kwargs)
    assert out.dtype == dtype
    names = ("dq", "dk", "dv", "dkey_bias")[: len(grads)]
    return check_against_baseline((out, grads), low, truth, floor=FLOOR[dtype], names=names)


# ------------------------------------------------------------------------------------------
# Accuracy
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [None, "top_left", "bottom_right"])
@pytest.mark.parametrize("nq,nk", [(17, 33), (33, 17)])
def test_matches_reference_with_per_query_lens_and_bias(nq, nk, causal, dtype):
    b, h, d = 2, 3, 24
    q, k, v, key_bias, do = make_inputs(b, h, h, nq, nk, d, d, dtype)
    vl = per_query_lens(b, nq, nk)
    check_against_reference(q, k, v, key_bias, do, dtype, scale=d**-0.5,
                            valid_lens=vl, causal=causal)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("h,hkv", [(6, 2), (6, 3), (3, 1)])
def test_grouped_and_multi_query_heads(h, hkv, dtype):
    b, nq, nk, d = 2, 17, 33, 24
    q, k, v, key_bias, do = make_inputs(b, h, hkv, nq, nk, d, d, dtype, seed=h * 10 + hkv)
    vl = torch.tensor([29, 7], device=DEVICE)  # (B,)
    check_against_reference(q, k, v, key_bias, do, dtype, scale=d**-0.5,
                            valid_lens=vl, causal="bottom_right")


@pytest.mark.parametrize("d,dv", [(16, 16), (59, 59), (24, 40), (256, 200)])
def test_head_sizes(d, dv):
    dtype = torch.float16
    q, k, v, key_bias, do = make_inputs(1, 2, 1, 17, 19, d, dv, dtype, seed=d)
    check_against_reference(q, k, v, key_bias, do, dtype, scale=d**-0.5, causal="top_left")


@pytest.mark.parametrize("valid_lens", [None, "per_sequence"])
def test_without_bias(valid_lens):
    dtype = torch.float32
    q, k, v, _, do = make_inputs(2, 2, 2, 21, 18, 32, 32, dtype, bias=False)
    vl = torch.tensor([18, 5], device=DEVICE) if valid_lens else None
    check_against_reference(q, k, v, None, do, dtype, scale=0.3, valid_lens=vl)


def test_non_contiguous_inputs():
    dtype = torch.float16
    b, h, n, d = 2, 3, 17, 24
    gen = torch.Generator().manual_seed(5)
    qkv = torch.randn(b, n, 3, h, d, generator=gen).to(dtype=dtype, device=DEVICE)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (B, H, N, D), strided
    assert not q.is_contiguous()
    do = torch.randn(b, h, n, d, generator=gen).to(dtype=dtype, device=DEVICE)
    check_against_reference(q, k, v, None, do, dtype, scale=d**-0.5, causal="top_left")


def test_representative_error_is_far_below_bound():
    """fp16, GQA, per-query lengths, causal bottom-right: the bound allows twice the
    plain fp16 reference's error; the kernel stays within about that error itself."""
    dtype = torch.float16
    q, k, v, key_bias, do = make_inputs(2, 6, 2, 17, 33, 24, 24, dtype, seed=7)
    err, bound = check_against_reference(
        q, k, v, key_bias, do, dtype, scale=24**-0.5,
        valid_lens=per_query_lens(2, 17, 33), causal="bottom_right",
    )
    assert err <= bound / 2, (err, bound)


# ------------------------------------------------------------------------------------------
# Empty rows, padding, skipped blocks
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_empty_rows_are_zero_with_zero_gradients(dtype):
    b, h, nq, nk, d = 2, 2, 9, 6, 16
    q, k, v, key_bias, do = make_inputs(b, h, h, nq, nk, d, d, dtype)
    vl = torch.tensor([[0, 6, 6, 6, 6, 6, 6, 6, 6], [6, 1, 0, 6, 6, 6, 6, 6, 6]], device=DEVICE)
    # bottom_right with Nq > Nk: rows i < Nq - Nk = 3 see nothing.
    out, (dq, dk, dv, db) = run(flash_attention, q, k, v, key_bias, do, dtype, scale=0.25,
                                valid_lens=vl, causal="bottom_right")
    empty = ~attend_mask(b, nq, nk, vl, "bottom_right", device=DEVICE).any(-1)  # (B, Nq)
    assert empty[0, :3].all() and empty[1, 2]
    assert (out[empty[:, None].expand(b, h, nq)] == 0).all()
    for g in (dq, dk, dv, db):
        assert torch.isfinite(g).all()
    assert (dq[empty[:, None].expand(b, h, nq)] == 0).all()


def test_all_keys_masked_gives_zero_output_and_zero_gradients():
    q, k, v, key_bias, do = make_inputs(2, 2, 2, 5, 7, 16, 16, torch.float32)
    vl = torch.zeros(2, dtype=torch.int64, device=DEVICE)
    out, grads = run(flash_attention, q, k, v, key_bias, do, torch.float32, scale=1.0,
                     valid_lens=vl)
    assert (out == 0).all()
    for g in grads:
        assert (g == 0).all()


def test_padded_keys_do_not_change_the_output():
    q, k, v, _, _ = make_inputs(2, 2, 2, 11, 20, 16, 16, torch.float32)
    vl = torch.tensor([13, 4], device=DEVICE)
    out = flash_attention(q, k, v, scale=0.25, valid_lens=vl)
    k2, v2 = k.clone(), v.clone()
    k2[0, :, 13:] = 1e4
    v2[1, :, 4:] = -1e4
    assert torch.equal(out, flash_attention(q, k2, v2, scale=0.25, valid_lens=vl))


@pytest.mark.parametrize("causal", [None, "top_left"])
def test_keys_no_query_can_see_are_never_read(causal):
    """NaN planted in keys past every valid length (or, top-left with Nk > Nq, past the
    last query's frontier) reaches neither the output nor any gradient: those key
    blocks are skipped and the partial block's loads are masked."""
    b, h, nq, nk, d = 2, 2, 16, 80, 16
    q, k, v, key_bias, do = make_inputs(b, h, h, nq, nk, d, d, torch.float32)
    vl = torch.tensor([5, 37], device=DEVICE) if causal is None else None
    first_unseen = [5, 37] if causal is None else [nq, nq]
    for i, f in enumerate(first_unseen):
        k[i, :, f:] = float("nan")
        v[i, :, f:] = float("nan")
        key_bias[i, f:] = float("nan")
    out, (dq, dk, dv, db) = run(flash_attention, q, k, v, key_bias, do, torch.float32,
                                scale=0.25, valid_lens=vl, causal=causal)
    assert torch.isfinite(out).all() and torch.isfinite(dq).all()
    for i, f in enumerate(first_unseen):
        assert torch.isfinite(dk[i, :, :f]).all() and torch.isfinite(dv[i, :, :f]).all()
        assert torch.isfinite(db[i, :f]).all()
        assert (dk[i, :, f:] == 0).all() and (dv[i, :, f:] == 0).all() and (db[i, f:] == 0).all()


def test_bias_without_grad_and_no_grad_mode():
    q, k, v, key_bias, _ = make_inputs(1, 2, 2, 9, 9, 16, 16, torch.float32)
    with torch.no_grad():
        out = flash_attention(q, k, v, scale=0.25, key_bias=key_bias)
    ref = reference_attention(q.double(), k.double(), v.double(), scale=0.25,
                              key_bias=key_bias.double())
    assert max_err(out, ref) < 1e-5
    q.requires_grad_()
    (dq,) = torch.autograd.grad(flash_attention(q, k, v, scale=0.25, key_bias=key_bias).sum(), q)
    assert torch.isfinite(dq).all()


def test_gradients_for_keys_and_values_only():
    q, k, v, _, do = make_inputs(1, 2, 1, 9, 12, 16, 16, torch.float32, bias=False)
    k.requires_grad_()
    v.requires_grad_()
    dk, dv = torch.autograd.grad(flash_attention(q, k, v, scale=0.25), (k, v), do)
    kd, vd = k.detach().double().requires_grad_(), v.detach().double().requires_grad_()
    rdk, rdv = torch.autograd.grad(reference_attention(q.double(), kd, vd, scale=0.25),
                                   (kd, vd), do.double())
    assert max_err(dk, rdk) < 1e-5 and max_err(dv, rdv) < 1e-5


def test_no_keys_gives_zero_rows():
    q, k, v, _, do = make_inputs(2, 2, 2, 5, 0, 16, 16, torch.float32, bias=False)
    q.requires_grad_()
    out = flash_attention(q, k, v, scale=0.25)
    assert out.shape == (2, 2, 5, 16) and (out == 0).all()
    (dq,) = torch.autograd.grad(out, q, do)
    assert (dq == 0).all()


# ------------------------------------------------------------------------------------------
# Dropout
# ------------------------------------------------------------------------------------------


def test_dropout_mask_keeps_the_expected_fraction():
    p = 0.3
    mask = flash_dropout_mask(1, 2, 48, 64, dropout_p=p, dropout_seed=123, device=DEVICE)
    n = mask.numel()
    kept = mask.float().mean().item()
    assert abs(kept - (1 - p)) < 5 * (p * (1 - p) / n) ** 0.5  # 5 sigma
    again = flash_dropout_mask(1, 2, 48, 64, dropout_p=p, dropout_seed=123, device=DEVICE)
    other = flash_dropout_mask(1, 2, 48, 64, dropout_p=p, dropout_seed=124, device=DEVICE)
    assert torch.equal(mask, again) and not torch.equal(mask, other)
    assert flash_dropout_mask(1, 1, 5, 7, dropout_p=0.0, dropout_seed=1, device=DEVICE).all()


def test_dropout_applies_the_documented_mask_and_scaling():
    """With one-hot values (v_j = e_j) the output row is the dropped weight row itself."""
    b, h, nq, nk, p = 2, 2, 20, 24, 0.25
    q, k, _, key_bias, _ = make_inputs(b, h, h, nq, nk, 16, nk, torch.float32)
    v = torch.eye(nk, device=DEVICE).expand(b, h, nk, nk)  # (B, H, Nk, Dv = Nk)
    vl = per_query_lens(b, nq, nk)
    out = flash_attention(q, k, v, scale=0.25, key_bias=key_bias, valid_lens=vl,
                          causal="top_left", dropout_p=p, dropout_seed=7)  # (B, H, Nq, Nk)
    keep = flash_dropout_mask(b, h, nq, nk, dropout_p=p, dropout_seed=7, device=DEVICE)
    weights = reference_attention(q.double(), k.double(), v.double(), scale=0.25,
                                  key_bias=key_bias.double(), valid_lens=vl, causal="top_left")
    assert ((out != 0) <= keep).all()  # nothing outside the keep mask
    assert max_err(out, weights * keep / (1 - p)) < 1e-6


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_dropout_matches_reference_forward_and_gradients(dtype):
    q, k, v, key_bias, do = make_inputs(2, 2, 1, 17, 33, 24, 24, dtype, seed=11)
    check_against_reference(q, k, v, key_bias, do, dtype, scale=24**-0.5,
                            valid_lens=per_query_lens(2, 17, 33), causal="bottom_right",
                            dropout_p=0.2, dropout_seed=2024)


def test_dropout_seed_defaults_to_torch_generator():
    q, k, v, _, _ = make_inputs(1, 2, 2, 9, 17, 16, 16, torch.float32, bias=False)
    torch.manual_seed(3)
    first = flash_attention(q, k, v, scale=0.25, dropout_p=0.5)
    torch.manual_seed(3)
    assert torch.equal(first, flash_attention(q, k, v, scale=0.25, dropout_p=0.5))
    assert not torch.equal(first, flash_attention(q, k, v, scale=0.25, dropout_p=0.5))


def test_rejects_bad_dropout():
    q, k, v = make_inputs(1, 2, 2, 5, 7, 16, 16, torch.float32, bias=False)[:3]
    with pytest.raises(ValueError, match=r"dropout_p must be a number in \[0, 1\); got 1.0"):
        flash_attention(q, k, v, scale=1.0, dropout_p=1.0)
    with pytest.raises(ValueError, match="dropout_seed must be an int"):
        flash_attention(q, k, v, scale=1.0, dropout_p=0.1, dropout_seed=-1)


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------


def _qkv(h=4, hkv=2, d=16):
    return make_inputs(2, h, hkv, 5, 7, d, d, torch.float32, bias=False)[:3]


def test_rejects_mismatched_shapes():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="k must have head size D = 16"):
        flash_attention(q, k[..., :8], v, scale=1.0)
    with pytest.raises(ValueError, match="v must have shape"):
        flash_attention(q, k, v[:, :, :3], scale=1.0)
    with pytest.raises(ValueError, match="k must have batch size"):
        flash_attention(q, k[:1], v[:1], scale=1.0)
    with pytest.raises(ValueError, match=r"q must have 4 dims \(B, H, N, D\)"):
        flash_attention(q[0], k, v, scale=1.0)
    with pytest.raises(ValueError, match=r"key_bias must have shape \(B, Nk\) = \(2, 7\)"):
        flash_attention(q, k, v, scale=1.0, key_bias=torch.zeros(2, 5, device=DEVICE))


def test_rejects_heads_not_divisible():
    q, k, v = _qkv(h=4, hkv=3)
    with pytest.raises(ValueError, match="H must be divisible by Hkv = 3; got 4"):
        flash_attention(q, k, v, scale=1.0)


def test_rejects_head_size_above_256():
    q, k, v = _qkv(h=2, hkv=2, d=264)
    with pytest.raises(ValueError, match=r"head size D must be an int in \[1, 256\]; got 264"):
        flash_attention(q, k, v, scale=1.0)


def test_rejects_bad_valid_lens():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"valid_lens must have shape \(B,\) = \(2,\)"):
        flash_attention(q, k, v, scale=1.0, valid_lens=torch.ones(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"or \(B, Nq\) = \(2, 5\), got \(2, 4\)"):
        flash_attention(q, k, v, scale=1.0, valid_lens=torch.ones(2, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="valid_lens must be an integer tensor"):
        flash_attention(q, k, v, scale=1.0, valid_lens=torch.ones(2))


def test_rejects_bad_causal():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="causal must be None, 'top_left' or 'bottom_right'"):
        flash_attention(q, k, v, scale=1.0, causal="lower")


def test_rejects_bad_dtypes():
    q, k, v = _qkv()
    with pytest.raises(TypeError, match="q, k and v must share one dtype"):
        flash_attention(q, k.half(), v, scale=1.0)
    with pytest.raises(TypeError, match="q must be float16, bfloat16 or float32"):
        flash_attention(q.double(), k, v, scale=1.0)
