"""Float64 references and the error-relative tolerance rule shared by the kernel and backend tests.

The rule (flash-attn's): run a fast implementation, a plain baseline in the same low
precision, and a float64 oracle on the same inputs. The fast one's largest error against
the oracle must be at most ``2 ×`` the baseline's error plus a small floor for the
output, and ``3 ×`` for gradients. The bound thus follows the precision actually in use
instead of a fixed tolerance that is either loose in float32 or flaky in float16.

This module imports neither triton nor the kernels: suites that do not need Triton
use it too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: How much worse than the same-precision baseline the fast output / gradients may be.
OUTPUT_FACTOR = 2
GRAD_FACTOR = 3


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference, in float64 (0 for empty tensors)."""
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.numel() == 0:
        return 0.0
    return (a.double() - b.double()).abs().max().item()


def within_bound(name: str, err: float, base_err: float, *, factor: float,
                 floor: float) -> float:
    """Assert ``err <= factor * base_err + floor``; return the bound."""
    bound = factor * base_err + floor
    assert err <= bound, f"{name}: err {err:.3g} > bound {bound:.3g} (baseline {base_err:.3g})"
    return bound


def check_against_baseline(fast, low, truth, *, floor: float, grad_floor: float | None = None,
                           names: Sequence[str] | None = None) -> tuple[float, float]:
    """Assert the rule for ``(output, gradients)`` triples; return the output's (err, bound).

    ``fast`` is the implementation under test, ``low`` the plain baseline in the same
    precision and ``truth`` the float64 oracle, each ``(out, grads)``. The fast output
    and gradients must have the baseline's dtype and shape and be finite.
    ``grad_floor`` defaults to ``floor``.
    """
    (out, grads), (low_out, low_grads), (ref_out, ref_grads) = fast, low, truth
    assert out.dtype == low_out.dtype and out.shape == ref_out.shape, (out.dtype, out.shape)
    assert torch.isfinite(out).all(), "output has non-finite values"
    err = max_err(out, ref_out)
    bound = within_bound("output", err, max_err(low_out, ref_out), factor=OUTPUT_FACTOR,
                         floor=floor)
    names = names if names is not None else [f"grad {i}" for i in range(len(grads))]
    grad_floor = floor if grad_floor is None else grad_floor
    for name, g, lg, rg in zip(names, grads, low_grads, ref_grads, strict=True):
        assert g.dtype == lg.dtype and g.shape == rg.shape, (name, g.dtype, g.shape)
        assert torch.isfinite(g).all(), f"{name} has non-finite values"
        within_bound(name, max_err(g, rg), max_err(lg, rg), factor=GRAD_FACTOR,
                     floor=grad_floor)
    return err, bound


# ------------------------------------------------------------------------------------------
# References: materialized scores, -inf masking, softmax, fully masked rows set to zero.
# ------------------------------------------------------------------------------------------


def attend_mask(batch, nq, nk, valid_lens, causal, *, device=None):
    """Boolean (B, Nq, Nk), True = may attend.

    ``valid_lens`` is None, (B,) or (B, Nq); ``causal`` None, "top_left" or "bottom_right".
    """
    i = torch.arange(nq, device=device)[:, None]  # (Nq, 1)
    j = torch.arange(nk, device=device)[None, :]  # (1, Nk)
    mask = torch.ones(batch, nq, nk, dtype=torch.bool, device=device)
    if valid_lens is not None:
        vl = valid_lens if valid_lens.dim() == 2 else valid_lens[:, None].expand(batch, nq)
        mask &= j[None] < vl[:, :, None]
    if causal == "top_left":
        mask &= j <= i
    elif causal == "bottom_right":
        mask &= j <= i + (nk - nq)
    return mask


def masked_softmax(s, mask):
    """Softmax of ``s`` over keys where ``mask`` (broadcast to ``s``) is True; rows with no
    True key are all zero."""
    w = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)
    return torch.where(mask.any(dim=-1, keepdim=True), w, torch.zeros_like(w))


def reference_attention(q, k, v, *, scale, key_bias=None, valid_lens=None, causal=None,
                        dropout_mask=None, dropout_p=0.0):
    """Scaled-dot attention in the dtype of its inputs (float64 for the oracle).

    q (B, H, Nq, D), k (B, Hkv, Nk, D), v (B, Hkv, Nk, Dv) with H a multiple of Hkv;
    ``key_bias`` (B, Nk) is added to the scores; ``dropout_mask`` (B, H, Nq, Nk),
    True = kept, scales kept weights by 1 / (1 - p).
    """
    b, h, nq, _ = q.shape
    hkv, nk = k.shape[1], k.shape[2]
    k = k.repeat_interleave(h // hkv, dim=1)  # (B, H, Nk, D)
    v = v.repeat_interleave(h // hkv, dim=1)  # (B, H, Nk, Dv)
    s = scale * (q @ k.transpose(-1, -2))  # (B, H, Nq, Nk)
    if key_bias is not None:
        s = s + key_bias.to(s.dtype)[:, None, None, :]
    mask = attend_mask(b, nq, nk, valid_lens, causal, device=q.device)[:, None]  # (B,1,Nq,Nk)
    w = masked_softmax(s, mask)
    if dropout_mask is not None:
        w = w * dropout_mask.to(w.dtype) / (1.0 - dropout_p)
    return w @ v  # (B, H, Nq, Dv)


def reference_additive(q, k, v, w_q, w_k, w_v, *, valid_lens=None, causal=None):
    """Additive (Bahdanau) attention in the dtype of its inputs.

    q (B, Nq, Dq), k (B, Nk, Dk), v (B, Nk, Dv); scores ``tanh(q w_qᵀ + k w_kᵀ) · w_v``
    with w_q (Hd, Dq), w_k (Hd, Dk), w_v (Hd,).
    """
    b, nq, _ = q.shape
    nk = k.shape[1]
    feats = torch.tanh((q @ w_q.T)[:, :, None, :] + (k @ w_k.T)[:, None, :, :])  # (B,Nq,Nk,Hd)
    s = feats @ w_v  # (B, Nq, Nk)
    w = masked_softmax(s, attend_mask(b, nq, nk, valid_lens, causal, device=q.device))
    return w @ v  # (B, Nq, Dv)
