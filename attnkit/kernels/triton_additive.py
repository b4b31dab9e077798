"""Fused additive (Bahdanau) attention in Triton, forward and backward.

Score of query i and key j (single head, batch first):

    s_ij = w_v . tanh(W_q q_i + W_k k_j)

Notation:

    B    batch size;  Nq queries, Nk keys per sequence
    Dq   query size;  Dk key size;  Dv value size
    Hd   hidden size of the score MLP (rows of W_q and W_k, length of w_v)

The projections ``q' = q W_q^T (B, Nq, Hd)`` and ``k' = k W_k^T (B, Nk, Hd)`` are plain
torch matmuls. The fused kernel then walks over tiles of queries x keys, forms
``tanh(q'_i + k'_j)`` for a chunk of hidden units at a time, reduces it against
``w_v`` in registers and runs an online softmax across key tiles. The
``(B, Nq, Nk, Hd)`` tensor and the ``(B, Nq, Nk)`` weights are never stored; the
backward pass recomputes ``tanh`` from ``q'``, ``k'`` and the saved float32 logsumexp.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .._checks import check_is_tensor
from .._values import check_int
from ._triton_common import (
    FLOAT_DTYPES,
    MAX_HEAD_DIM,
    backward_key_range,
    causal_offset,
    check_causal,
    check_device,
    delta_kernel,
    dot_precision,
    head_block,
    load_lse_log2,
    load_tile,
    normalize_valid_lens,
    online_softmax_result,
    online_softmax_step,
    row_limits,
    store_tile,
)

__all__ = ["additive_attention", "additive_block_sizes", "AdditiveBlockSizes"]


@dataclass(frozen=True)
class AdditiveBlockSizes:
    """Tile sizes and launch parameters of the additive kernels."""

    block_m: int  # queries per tile
    block_n: int  # keys per tile
    block_h: int  # hidden units per chunk of the (block_m, block_n, block_h) tanh tile
    num_warps: int  # warps per program (ignored by the interpreter)


def additive_block_sizes(device: torch.device, value_dim: int = 64) -> AdditiveBlockSizes:
    """Tile sizes for the additive kernels.

    The work is one ``tanh`` per (query, key, hidden unit), so the kernel is bound by
    the special-function units, not by memory: tiles stay small enough that the
    ``(block_m, block_n, block_h)`` float32 tanh tile lives in registers. On CUDA,
    32 x 32 x 8 over 8 warps, with 16 query rows once the padded value size exceeds
    128, is where ptxas reports no register spills for sm_90 and fp16 (a compile-time
    check, not a timing). Under the interpreter (CPU tensors) a hidden chunk of 8
    makes the tests cover several chunks with small hidden sizes.
    """
    if device.type != "cuda":
        return AdditiveBlockSizes(block_m=16, block_n=16, block_h=8, num_warps=1)
    block_m = 32 if head_block(value_dim) <= 128 else 16
    return AdditiveBlockSizes(block_m=block_m, block_n=32, block_h=8, num_warps=8)


@triton.jit
def _tanh(x):
    """tanh in float32 without overflow: sign(x) (1 - e) / (1 + e), e = exp(-2|x|)."""
    LOG2E: tl.constexpr = 1.4426950408889634
    e = tl.exp2(-2.0 * LOG2E * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0.0, -t, t)


@triton.jit
def _tanh_chunk(qp_base, kp_base, WV, offs_m, offs_n, offs_c, Nq, Nk, HD,
                stride_qm, stride_qc, stride_km, stride_kc):
    """``tanh(q'_ic + k'_jc)`` (BM, BN, BH) of hidden units ``offs_c`` in float32, and
    their weights ``w_v[c]`` (BH,); rows at or beyond ``Nq`` / ``Nk`` are not read."""
    qc = load_tile(qp_base, offs_m, offs_c, stride_qm, stride_qc, Nq, HD)
    kc = load_tile(kp_base, offs_n, offs_c, stride_km, stride_kc, Nk, HD)
    wc = tl.load(WV + offs_c, mask=offs_c < HD, other=0.0)  # padded units weigh 0
    return _tanh(qc.to(tl.float32)[:, None, :] + kc.to(tl.float32)[None, :, :]), wc


@triton.jit
def _additive_scores(qp_base, kp_base, WV, offs_m, offs_n, Nq, Nk, HD,
                     stride_qm, stride_qc, stride_km, stride_kc,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr):
    """s_ij = sum_c w_v[c] tanh(q'_ic + k'_jc) for one (BLOCK_M, BLOCK_N) tile, float32."""
    s = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for c0 in range(0, HD, BLOCK_H):
        t, wc = _tanh_chunk(qp_base, kp_base, WV, offs_m, offs_n, c0 + tl.arange(0, BLOCK_H),
                            Nq, Nk, HD, stride_qm, stride_qc, stride_km, stride_kc)
        s += tl.sum(t * wc[None, None, :], axis=2)
    return s


@triton.jit
def _additive_fwd_kernel(
    QP, KP, V, WV, VL, OUT, LSE,
    stride_qb, stride_qm, stride_qc,
    stride_kb, stride_kn, stride_kc,
    stride_vb, stride_vn, stride_vd,
    stride_vlb, stride_vlm,
    stride_ob, stride_om, stride_od,
    Nq, Nk, HD, DV, causal_off,
    HAS_VL: tl.constexpr, CAUSAL: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr,
    BLOCK_DV: tl.constexpr, DOT_PREC: tl.constexpr,
):
    LOG2E: tl.constexpr = 1.4426950408889634
    b = tl.program_id(1)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_dv = tl.arange(0, BLOCK_DV)
    qp_base = QP + b.to(tl.int64) * stride_qb
    kp_base = KP + b.to(tl.int64) * stride_kb
    v_base = V + b.to(tl.int64) * stride_vb
    lim = row_limits(offs_m, b, VL, stride_vlb, stride_vlm, Nq, Nk, causal_off, HAS_VL, CAUSAL)
    hi = tl.max(lim, axis=0)

    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_DV), tl.float32)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        s = _additive_scores(qp_base, kp_base, WV, offs_m, offs_n, Nq, hi, HD,
                             stride_qm, stride_qc, stride_kn, stride_kc,
                             BLOCK_M, BLOCK_N, BLOCK_H) * LOG2E  # keys >= hi never read
        p, alpha, m_i, l_i = online_softmax_step(s, offs_n, lim, m_i, l_i)
        v = load_tile(v_base, offs_n, offs_dv, stride_vn, stride_vd, hi, DV)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)

    out, lse = online_softmax_result(acc, m_i, l_i)
    store_tile(OUT + b.to(tl.int64) * stride_ob, offs_m, offs_dv, stride_om, stride_od, Nq, DV,
               out.to(OUT.dtype.element_ty))
    tl.store(LSE + b.to(tl.int64) * Nq + offs_m, lse, mask=offs_m < Nq)


@triton.jit
def _additive_bwd_kernel(
    QP, KP, V, WV, VL, KVMAX, DO, LSE, DELTA, DQP, DKP, DV_, DWV,
    stride_qb, stride_qm, stride_qc,
    stride_kb, stride_kn, stride_kc,
    stride_vb, stride_vn, stride_vd,
    stride_vlb, stride_vlm,
    stride_dob, stride_dom, stride_dod,
    stride_dvb, stride_dvn, stride_dvd,
    Nq, Nk, HD, DV, causal_off,
    HAS_VL: tl.constexpr, CAUSAL: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr,
    BLOCK_DV: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """One program per key block: dV in registers; dq', dk', dw_v by float32 atomics.

    For each query block that can see the key block: recompute s and P, form
    dS = P (dP - delta), then recompute tanh chunk by chunk and scatter
        dq'_ic += w_v[c] sum_j dS_ij (1 - t_ijc^2)      (shared rows: atomics)
        dk'_jc += w_v[c] sum_i dS_ij (1 - t_ijc^2)      (rows owned by this program)
        dw_v[c] += sum_ij dS_ij t_ijc                   (partial row of this program)
    """
    LOG2E: tl.constexpr = 1.4426950408889634
    pid_n = tl.program_id(0)
    b = tl.program_id(1)
    start_n = pid_n * BLOCK_N
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_dv = tl.arange(0, BLOCK_DV)
    qp_base = QP + b.to(tl.int64) * stride_qb
    kp_base = KP + b.to(tl.int64) * stride_kb
    dqp_base = DQP + b.to(tl.int64) * Nq * HD  # dq', dk' are contiguous float32
    dkp_base = DKP + b.to(tl.int64) * Nk * HD
    dwv_base = DWV + (b * tl.num_programs(0) + pid_n).to(tl.int64) * HD
    kv_hi, lo, hi = backward_key_range(KVMAX, b, start_n, Nq, Nk, causal_off, HAS_VL, CAUSAL,
                                       BLOCK_M)
    v = load_tile(V + b.to(tl.int64) * stride_vb, offs_n, offs_dv, stride_vn, stride_vd,
                  kv_hi, DV)  # (BN, BDV)

    dv = tl.zeros((BLOCK_N, BLOCK_DV), tl.float32)
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + offs_m0
        do = load_tile(DO + b.to(tl.int64) * stride_dob, offs_m, offs_dv, stride_dom, stride_dod,
                       Nq, DV)
        lse2 = load_lse_log2(LSE + b.to(tl.int64) * Nq, offs_m, Nq)
        delta = tl.load(DELTA + b.to(tl.int64) * Nq + offs_m, mask=offs_m < Nq, other=0.0)
        lim = row_limits(offs_m, b, VL, stride_vlb, stride_vlm, Nq, Nk, causal_off,
                         HAS_VL, CAUSAL)
        s = _additive_scores(qp_base, kp_base, WV, offs_m, offs_n, Nq, kv_hi, HD,
                             stride_qm, stride_qc, stride_kn, stride_kc,
                             BLOCK_M, BLOCK_N, BLOCK_H) * LOG2E
        valid = offs_n[None, :] < lim[:, None]
        p = tl.where(valid, tl.exp2(s - lse2[:, None]), 0.0)  # (BM, BN)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=DOT_PREC)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
        ds = tl.where(valid, p * (dp - delta[:, None]), 0.0)  # dL/ds_ij; 0 outside the mask
        for c0 in range(0, HD, BLOCK_H):
            offs_c = c0 + tl.arange(0, BLOCK_H)
            t, wc = _tanh_chunk(qp_base, kp_base, WV, offs_m, offs_n, offs_c, Nq, kv_hi, HD,
                                stride_qm, stride_qc, stride_kn, stride_kc)
            g = ds[:, :, None] * (1.0 - t * t)  # (BM, BN, BH)
            dq_c = tl.sum(g, axis=1) * wc[None, :]  # (BM, BH)
            dk_c = tl.sum(g, axis=0) * wc[None, :]  # (BN, BH)
            dw_c = tl.sum(tl.sum(ds[:, :, None] * t, axis=1), axis=0)  # (BH,)
            tl.atomic_add(dqp_base + offs_m[:, None] * HD + offs_c[None, :], dq_c,
                          mask=(offs_m[:, None] < Nq) & (offs_c[None, :] < HD))
            tl.atomic_add(dkp_base + offs_n[:, None] * HD + offs_c[None, :], dk_c,
                          mask=(offs_n[:, None] < Nk) & (offs_c[None, :] < HD))
            tl.atomic_add(dwv_base + offs_c, dw_c, mask=offs_c < HD)

    store_tile(DV_ + b.to(tl.int64) * stride_dvb, offs_n, offs_dv, stride_dvn, stride_dvd, Nk, DV,
               dv.to(DV_.dtype.element_ty))


def _additive_forward(qp, kp, v, wv, vl, causal):
    b, nq, hd = qp.shape
    nk, dv = kp.shape[1], v.shape[2]
    o = torch.empty((b, nq, dv), dtype=v.dtype, device=v.device)  # (B, Nq, Dv)
    lse = torch.empty((b, nq), dtype=torch.float32, device=v.device)  # (B, Nq)
    if nq == 0:
        return o, lse
    cfg = additive_block_sizes(v.device, v.shape[2])
    _additive_fwd_kernel[(triton.cdiv(nq, cfg.block_m), b)](
        qp, kp, v, wv, vl if vl is not None else lse, o, lse,
        *qp.stride(), *kp.stride(), *v.stride(),
        *(vl.stride() if vl is not None else (0, 0)), *o.stride(),
        nq, nk, hd, dv, causal_offset(causal, nq, nk),
        HAS_VL=vl is not None, CAUSAL=causal is not None,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_H=cfg.block_h,
        BLOCK_DV=head_block(dv), DOT_PREC=dot_precision(v.dtype), num_warps=cfg.num_warps,
    )
    return o, lse


def _additive_backward(do, qp, kp, v, wv, vl, o, lse, causal):
    b, nq, hd = qp.shape
    nk, dv = kp.shape[1], v.shape[2]
    do = do.to(v.dtype)
    cfg = additive_block_sizes(v.device, v.shape[2])
    n_kblocks = triton.cdiv(nk, cfg.block_n)
    dqp = torch.zeros((b, nq, hd), dtype=torch.float32, device=v.device)  # (B, Nq, Hd)
    dkp = torch.zeros((b, nk, hd), dtype=torch.float32, device=v.device)  # (B, Nk, Hd)
    dwv_part = torch.zeros((b, n_kblocks, hd), dtype=torch.float32, device=v.device)
    dvv = torch.zeros_like(v)  # (B, Nk, Dv)
    if nq == 0 or nk == 0:
        return dqp, dkp, dvv, dwv_part.sum(dim=(0, 1))
    block_dv = head_block(dv)
    delta = torch.empty((b, nq), dtype=torch.float32, device=v.device)  # (B, Nq)
    delta_kernel[(triton.cdiv(nq, cfg.block_m), b)](
        o, do, delta, o.stride(0), 0, o.stride(1), o.stride(2),
        do.stride(0), 0, do.stride(1), do.stride(2), 1, nq, dv,
        BLOCK_M=cfg.block_m, BLOCK_DV=block_dv, num_warps=cfg.num_warps,
    )
    kv_max = vl.amax(dim=1).to(torch.int32) if vl is not None else delta  # (B,)
    _additive_bwd_kernel[(n_kblocks, b)](
        qp, kp, v, wv, vl if vl is not None else delta, kv_max, do, lse, delta,
        dqp, dkp, dvv, dwv_part,
        *qp.stride(), *kp.stride(), *v.stride(),
        *(vl.stride() if vl is not None else (0, 0)), *do.stride(), *dvv.stride(),
        nq, nk, hd, dv, causal_offset(causal, nq, nk),
        HAS_VL=vl is not None, CAUSAL=causal is not None,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_H=cfg.block_h,
        BLOCK_DV=block_dv, DOT_PREC=dot_precision(v.dtype), num_warps=cfg.num_warps,
    )
    return dqp, dkp, dvv, dwv_part.sum(dim=(0, 1))  # dw_v: (Hd,)


class _AdditiveCoreFn(torch.autograd.Function):
    """softmax(w_v . tanh(q'_i + k'_j), masked) v on projected queries and keys."""

    @staticmethod
    def forward(ctx, qp, kp, v, w_v, vl, causal):
        wv = w_v.to(torch.float32).contiguous()  # (Hd,)
        o, lse = _additive_forward(qp, kp, v, wv, vl, causal)
        ctx.save_for_backward(qp, kp, v, wv, vl, o, lse)
        ctx.causal = causal
        ctx.w_v_dtype = w_v.dtype
        return o

    @staticmethod
    def backward(ctx, do):
        qp, kp, v, wv, vl, o, lse = ctx.saved_tensors
        dqp, dkp, dv, dwv = _additive_backward(do, qp, kp, v, wv, vl, o, lse, ctx.causal)
        return dqp.to(qp.dtype), dkp.to(kp.dtype), dv, dwv.to(ctx.w_v_dtype), None, None


def _check_additive_inputs(q, k, v, w_q, w_k, w_v) -> None:
    named = (("q", q), ("k", k), ("v", v), ("w_q", w_q), ("w_k", w_k), ("w_v", w_v))
    for name, t in named:
        check_is_tensor(name, t)
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must be float16, bfloat16 or float32, got dtype {t.dtype}")
    for name, t in named[1:]:
        if t.dtype != q.dtype:
            raise TypeError(f"{name} must have the dtype of q ({q.dtype}), got {t.dtype}")
    for name, t, dims in (("q", q, "(B, Nq, Dq)"), ("k", k, "(B, Nk, Dk)"),
                          ("v", v, "(B, Nk, Dv)")):
        if t.dim() != 3:
            raise ValueError(f"{name} must have 3 dims {dims}, got shape {tuple(t.shape)}")
    b, _, dq = q.shape
    _, nk, dk = k.shape
    if k.shape[0] != b or v.shape[0] != b:
        raise ValueError(
            f"q, k and v must share the batch size B, got shapes {tuple(q.shape)}, "
            f"{tuple(k.shape)} and {tuple(v.shape)}"
        )
    if v.shape[1] != nk:
        raise ValueError(
            f"v must have shape (B, Nk, Dv) with Nk = {nk} like k, got {tuple(v.shape)}"
        )
    check_int("value size Dv", v.shape[2], minimum=1, maximum=MAX_HEAD_DIM)
    if w_q.dim() != 2 or w_q.shape[1] != dq or w_q.shape[0] == 0:
        raise ValueError(f"w_q must have shape (Hd, Dq) = (Hd, {dq}), got {tuple(w_q.shape)}")
    hd = w_q.shape[0]
    if w_k.shape != (hd, dk):
        raise ValueError(
            f"w_k must have shape (Hd, Dk) = ({hd}, {dk}), got {tuple(w_k.shape)}"
        )
    if w_v.shape != (hd,):
        raise ValueError(
            f"w_v must have shape (Hd,) = ({hd},) (e.g. Linear(Hd, 1).weight.view(-1)), "
            f"got {tuple(w_v.shape)}"
        )


def additive_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w_q: torch.Tensor,
    w_k: torch.Tensor,
    w_v: torch.Tensor,
    *,
    valid_lens: torch.Tensor | None = None,
    causal: str | None = None,
) -> torch.Tensor:
    """Fused additive attention ``softmax_j(w_v . tanh(W_q q_i + W_k k_j)) v``.

    Args:
        q: queries ``(B, Nq, Dq)``, float16, bfloat16 or float32.
        k: keys ``(B, Nk, Dk)``.
        v: values ``(B, Nk, Dv)``, ``Dv <= 256``.
        w_q: ``(Hd, Dq)``, the weight of ``nn.Linear(Dq, Hd, bias=False)``.
        w_k: ``(Hd, Dk)``, the weight of ``nn.Linear(Dk, Hd, bias=False)``.
        w_v: ``(Hd,)``, ``nn.Linear(Hd, 1, bias=False).weight.view(-1)``.
        valid_lens: optional integer ``(B,)`` or ``(B, Nq)``; key positions
            ``>= valid_len`` get zero weight (values clamped to ``[0, Nk]``).
        causal: None, ``"top_left"`` (query i sees keys ``j <= i``) or
            ``"bottom_right"`` (``j <= i + Nk - Nq``); see
            :func:`attnkit.kernels.triton_flash.flash_attention` for the drawing.

    Returns:
        ``(B, Nq, Dv)`` in the dtype of ``q``. Rows with no key to attend to are zero,
        with zero gradients; nothing is NaN. Scores, softmax and accumulations are
        float32. All six tensors receive gradients.

    Raises:
        ValueError: shapes, ``valid_lens`` shape, ``causal`` value, devices.
        TypeError: non-tensor inputs, unsupported or mixed dtypes.
    """
    _check_additive_inputs(q, k, v, w_q, w_k, w_v)
    check_causal(causal)
    check_device(q, k, v, w_q, w_k, w_v)
    vl = normalize_valid_lens(valid_lens, q.shape[0], q.shape[1], q.device)
    qp = q @ w_q.transpose(0, 1)  # (B, Nq, Hd)
    kp = k @ w_k.transpose(0, 1)  # (B, Nk, Hd)
    return _AdditiveCoreFn.apply(qp, kp, v, w_v, vl, causal)
