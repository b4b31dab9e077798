"""Tests of the fused Triton additive attention against a float64 reference (on CPU
tensors under the Triton interpreter without a GPU: ``_setup`` comes first)."""

import pytest
import torch

from tests.kernels._setup import DEVICE, DTYPES, FLOOR, per_query_lens  # skips without triton

# isort: split

from attnkit.kernels.triton_additive import (  # noqa: E402
    additive_attention,
    additive_block_sizes,
)
from tests.kernels._reference import (  # noqa: E402
    attend_mask,
    check_against_baseline,
    max_err,
    reference_additive,
)

NAMES = ("dq", "dk", "dv", "dw_q", "dw_k", "dw_v")


def make_inputs(b, nq, nk, dq, dk, dv, hd, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    tensors = [
        torch.randn(b, nq, dq, generator=gen),
        torch.randn(b, nk, dk, generator=gen),
        torch.randn(b, nk, dv, generator=gen),
        torch.randn(hd, dq, generator=gen) * dq**-0.5,
        torch.randn(hd, dk, generator=gen) * dk**-0.5,
        torch.randn(hd, generator=gen),
    ]
    do = torch.randn(b, nq, dv, generator=gen)
    return [t.to(dtype=dtype, device=DEVICE) for t in tensors], do.to(dtype=dtype, device=DEVICE)


def run(fn, inputs, do, dtype, **kwargs):
    leaves = [t.detach().to(dtype).requires_grad_() for t in inputs]
    out = fn(*leaves, **kwargs)
    return out, torch.autograd.grad(out, leaves, do.to(out.dtype))


def check_against_reference(inputs, do, dtype, **kwargs):
    """Assert the error-relative rule against the float64 reference."""
    out, grads = run(additive_attention, inputs, do, dtype, **kwargs)
    truth = run(reference_additive, inputs, do, torch.float64, **kwargs)
    low = run(reference_additive, inputs, do, dtype, **kwargs)
    assert out.dtype == dtype
    return check_against_baseline((out, grads), low, truth, floor=FLOOR[dtype], names=NAMES)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [None, "top_left", "bottom_right"])
@pytest.mark.parametrize("nq,nk", [(17, 33), (33, 17)])
def test_matches_reference_with_per_query_lens(nq, nk, causal, dtype):
    inputs, do = make_inputs(2, nq, nk, 24, 20, 24, 12, dtype)
    check_against_reference(inputs, do, dtype, valid_lens=per_query_lens(2, nq, nk),
                            causal=causal)


@pytest.mark.parametrize("hd", [1, 5, 33])
def test_hidden_sizes_across_chunks(hd):
    assert additive_block_sizes(DEVICE).block_h < 33  # 33 spans several chunks
    dtype = torch.float32
    inputs, do = make_inputs(2, 9, 21, 7, 11, 13, hd, dtype, seed=hd)
    check_against_reference(inputs, do, dtype, valid_lens=torch.tensor([21, 6], device=DEVICE))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_without_masks_and_value_size_256(dtype):
    inputs, do = make_inputs(1, 18, 17, 16, 16, 256, 8, dtype, seed=3)
    check_against_reference(inputs, do, dtype)


def test_empty_rows_are_zero_with_zero_gradients():
    dtype = torch.float32
    b, nq, nk = 2, 9, 6
    inputs, do = make_inputs(b, nq, nk, 8, 8, 8, 12, dtype)
    vl = torch.tensor([[0, 6, 6, 6, 6, 6, 6, 6, 6], [6, 1, 0, 6, 6, 6, 6, 6, 6]], device=DEVICE)
    out, grads = run(additive_attention, inputs, do, dtype, valid_lens=vl,
                     causal="bottom_right")
    empty = ~attend_mask(b, nq, nk, vl, "bottom_right", device=DEVICE).any(-1)  # (B, Nq)
    assert empty[0, :3].all() and empty[1, 2]
    assert (out[empty] == 0).all()
    for g in grads:
        assert torch.isfinite(g).all()
    assert (grads[0][empty] == 0).all()  # dq of rows that see nothing


def test_all_keys_masked_gives_zero_output_and_zero_gradients():
    inputs, do = make_inputs(2, 5, 7, 8, 8, 8, 6, torch.float32)
    vl = torch.zeros(2, dtype=torch.int64, device=DEVICE)
    out, grads = run(additive_attention, inputs, do, torch.float32, valid_lens=vl)
    assert (out == 0).all()
    for g in grads:
        assert (g == 0).all()


@pytest.mark.parametrize("causal", [None, "top_left"])
def test_keys_no_query_can_see_are_never_read(causal):
    """NaN planted in keys past every valid length (or past the last query's causal
    frontier) reaches neither the output nor the kernel's gradients."""
    b, nq, nk = 2, 7, 70
    inputs, do = make_inputs(b, nq, nk, 8, 8, 8, 6, torch.float32)
    vl = torch.tensor([10, 3], device=DEVICE) if causal is None else None
    first_unseen = [10, 3] if causal is None else [nq, nq]
    for i, f in enumerate(first_unseen):
        inputs[1][i, f:] = float("nan")
        inputs[2][i, f:] = float("nan")
    out, grads = run(additive_attention, inputs, do, torch.float32, valid_lens=vl,
                     causal=causal)
    assert torch.isfinite(out).all()
    for name, g in zip(NAMES, grads, strict=True):
        if name == "dw_k":
            continue  # torch's chain rule dw_k = dk'^T k multiplies 0 by the NaN keys
        if name in ("dk", "dv"):
            for i, f in enumerate(first_unseen):
                assert torch.isfinite(g[i, :f]).all(), name
                if name == "dv":
                    assert (g[i, f:] == 0).all()
        else:
            assert torch.isfinite(g).all(), name


def test_padded_keys_do_not_change_the_output():
    inputs, _ = make_inputs(2, 11, 20, 8, 8, 8, 6, torch.float32)
    vl = torch.tensor([13, 4], device=DEVICE)
    out = additive_attention(*inputs, valid_lens=vl)
    inputs[1][0, 13:] = 50.0
    inputs[2][1, 4:] = -1e4
    assert torch.equal(out, additive_attention(*inputs, valid_lens=vl))


def test_matches_nn_linear_layout():
    """w_q, w_k, w_v taken from nn.Linear modules as documented."""
    torch.manual_seed(0)
    lin_q = torch.nn.Linear(7, 12, bias=False)
    lin_k = torch.nn.Linear(5, 12, bias=False)
    lin_v = torch.nn.Linear(12, 1, bias=False)
    q, k, v = torch.randn(2, 3, 7), torch.randn(2, 4, 5), torch.randn(2, 4, 6)
    scores = lin_v(torch.tanh(lin_q(q)[:, :, None] + lin_k(k)[:, None])).squeeze(-1)
    expected = torch.softmax(scores, dim=-1) @ v  # (B, Nq, Dv)
    with torch.no_grad():
        out = additive_attention(q.to(DEVICE), k.to(DEVICE), v.to(DEVICE),
                                 lin_q.weight.to(DEVICE), lin_k.weight.to(DEVICE),
                                 lin_v.weight.view(-1).to(DEVICE))
    assert max_err(out.cpu(), expected) < 1e-5


def _args(hd=6):
    inputs, _ = make_inputs(2, 5, 7, 8, 9, 10, hd, torch.float32)
    return inputs


def test_rejects_mismatched_shapes():
    q, k, v, w_q, w_k, w_v = _args()
    with pytest.raises(ValueError, match=r"q must have 3 dims \(B, Nq, Dq\)"):
        additive_attention(q[None], k, v, w_q, w_k, w_v)
    with pytest.raises(ValueError, match=r"v must have shape \(B, Nk, Dv\) with Nk = 7"):
        additive_attention(q, k, v[:, :3], w_q, w_k, w_v)
    with pytest.raises(ValueError, match="must share the batch size"):
        additive_attention(q, k[:1], v[:1], w_q, w_k, w_v)
    with pytest.raises(ValueError, match=r"w_q must have shape \(Hd, Dq\) = \(Hd, 8\)"):
        additive_attention(q, k, v, w_q.T, w_k, w_v)
    with pytest.raises(ValueError, match=r"w_k must have shape \(Hd, Dk\) = \(6, 9\)"):
        additive_attention(q, k, v, w_q, w_k[:, :4], w_v)
    with pytest.raises(ValueError, match=r"w_v must have shape \(Hd,\) = \(6,\)"):
        additive_attention(q, k, v, w_q, w_k, w_v[None])


def test_rejects_value_size_above_256():
    q, k, _, w_q, w_k, w_v = _args()
    v = torch.zeros(2, 7, 300, device=DEVICE)
    with pytest.raises(ValueError, match=r"value size Dv must be an int in \[1, 256\]; got 300"):
        additive_attention(q, k, v, w_q, w_k, w_v)


def test_rejects_bad_valid_lens_and_causal():
    args = _args()
    with pytest.raises(ValueError, match=r"valid_lens must have shape \(B,\) = \(2,\)"):
        additive_attention(*args, valid_lens=torch.ones(2, 3, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="causal must be None, 'top_left' or 'bottom_right'"):
        additive_attention(*args, causal=True)


def test_rejects_mixed_dtypes():
    q, k, v, w_q, w_k, w_v = _args()
    with pytest.raises(TypeError, match="w_v must have the dtype of q"):
        additive_attention(q, k, v, w_q, w_k, w_v.half())
