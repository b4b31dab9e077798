"""Fused scaled-dot attention in Triton (FlashAttention-2 style), forward and backward.

Notation (all tensors batch first, multi-head layout like
``torch.nn.functional.scaled_dot_product_attention``):

    B    batch size
    H    query heads;  Hkv key/value heads, ``H % Hkv == 0`` (grouped-/multi-query)
    Nq   queries per sequence;  Nk keys per sequence
    D    head size of queries and keys;  Dv head size of values

Query head ``h`` reads key/value head ``h // (H // Hkv)``.

The kernels never build the ``(Nq, Nk)`` score matrix: a program owns a block of
queries, walks over blocks of keys with an online softmax in float32 and keeps only
the running max, the running sum and the output accumulator. The backward pass
recomputes the probabilities from ``q``, ``k`` and the saved float32 logsumexp.
Key blocks that no query of a block may attend to (beyond the valid length or beyond
the causal frontier) are never loaded.

The kernels run on CUDA tensors, or on CPU tensors under the Triton interpreter
(``TRITON_INTERPRET=1`` set before triton is first imported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .._checks import check_is_tensor
from .._values import (
    check_divisible,
    check_finite,
    check_int,
    check_positive_int,
    check_probability,
)
from ._triton_common import (
    CAUSAL_MODES,
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

__all__ = [
    "flash_attention",
    "flash_dropout_mask",
    "flash_block_sizes",
    "BlockSizes",
    "CAUSAL_MODES",
]

_LOG2E = math.log2(math.e)


# --------------------------------------------------------------------------------------
# Launch configuration
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockSizes:
    """Tile sizes and launch parameters of one kernel family."""

    block_m: int  # queries per program (rows of a tile)
    block_n: int  # keys per inner-loop step (columns of a tile)
    num_warps: int  # warps per program (ignored by the interpreter)
    num_stages: int  # software-pipelining depth of the key loop (ignored by the interpreter)


# CUDA tiles: (pass, padded head size bound, dropout) -> (block_m, block_n, warps, stages).
# Chosen so that ptxas reports no (or only a few bytes of) register spills for sm_90
# with all masks enabled; a compile-time check, not a timing.
_CUDA_TILES_HALF = {
    ("fwd", 64, False): (128, 64, 8, 3),
    ("fwd", 64, True): (64, 64, 8, 2),
    ("fwd", 128, False): (128, 32, 8, 2),
    ("fwd", 128, True): (64, 32, 8, 2),
    ("fwd", 256, False): (64, 16, 8, 2),
    ("fwd", 256, True): (32, 32, 8, 1),
    ("bwd", 64, False): (128, 64, 8, 3),
    ("bwd", 64, True): (128, 32, 8, 2),
    ("bwd", 128, False): (64, 32, 4, 2),
    ("bwd", 128, True): (64, 32, 4, 2),
    ("bwd", 256, False): (32, 32, 8, 1),
    ("bwd", 256, True): (32, 32, 8, 1),
}
# fp32 inputs use IEEE fp32 products (no tensor cores): much smaller tiles.
_CUDA_TILES_FP32 = {64: (32, 32, 4, 1), 128: (16, 16, 4, 1), 256: (16, 16, 4, 1)}


def flash_block_sizes(device: torch.device, head_dim: int, head_dim_v: int, *,
                      backward: bool = False, dropout: bool = False,
                      dtype: torch.dtype = torch.float16) -> BlockSizes:
    """Tile sizes for the flash kernels.

    Under the interpreter (CPU tensors) small 16 x 16 tiles keep the Python-level
    emulation fast. On CUDA the tiles shrink as the padded head grows so that the
    float32 accumulators stay in registers, and with dropout (Philox state lives in
    registers). The backward pass uses one size pair for both its kernels:
    ``block_n`` keys per dK/dV program, ``block_m`` queries per dQ program and per
    inner step of the dK/dV loop.
    """
    if device.type != "cuda":
        return BlockSizes(block_m=16, block_n=16, num_warps=1, num_stages=1)
    d = max(head_block(head_dim), head_block(head_dim_v))
    bound = 64 if d <= 64 else (128 if d <= 128 else 256)
    if dtype == torch.float32:
        block_m, block_n, warps, stages = _CUDA_TILES_FP32[bound]
    else:
        key = ("bwd" if backward else "fwd", bound, dropout)
        block_m, block_n, warps, stages = _CUDA_TILES_HALF[key]
    return BlockSizes(block_m=block_m, block_n=block_n, num_warps=warps, num_stages=stages)


# --------------------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------------------


@triton.jit
def _dropout_keep(seed, pid_bh, offs_m, offs_n, Nq, Nk, dropout_p):
    """Boolean (BM, BN) keep mask of weight (b, h, i, j): Philox at counter
    ``((b * H + h) * Nq + i) * Nk + j``, so forward, backward and
    :func:`flash_dropout_mask` draw the same numbers."""
    offs = (pid_bh.to(tl.int64) * Nq + offs_m[:, None]) * Nk + offs_n[None, :]
    return tl.rand(seed, offs) >= dropout_p


# --------------------------------------------------------------------------------------
# Forward
# --------------------------------------------------------------------------------------


@triton.jit
def _query_program(H, GROUP, BLOCK_M: tl.constexpr):
    """Who a program of the grid ``(query blocks, B * H)`` is: ``b * H + h``, its batch
    row ``b``, query head ``h``, the kv head ``hk`` that head reads, and its query rows."""
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    return pid_bh, b, h, h // GROUP, offs_m


@triton.jit
def _key_bias(BIAS, b, offs_n, n, stride_bb, stride_bn):
    """``key_bias[b, offs_n]`` in float32, 0 for keys at or beyond ``n``."""
    bias = tl.load(BIAS + b * stride_bb + offs_n * stride_bn, mask=offs_n < n, other=0.0)
    return bias.to(tl.float32)


@triton.jit
def _flash_fwd_kernel(
    Q, K, V, BIAS, VL, OUT, LSE,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_bb, stride_bn,
    stride_vlb, stride_vlm,
    stride_ob, stride_oh, stride_om, stride_od,
    H, Nq, Nk, D, DV, GROUP, causal_off, qk_scale, dropout_p, seed,
    HAS_BIAS: tl.constexpr, HAS_VL: tl.constexpr, CAUSAL: tl.constexpr,
    HAS_DROPOUT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, DOT_PREC: tl.constexpr,
):
    LOG2E: tl.constexpr = 1.4426950408889634
    pid_bh, b, h, hk, offs_m = _query_program(H, GROUP, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    k_base = K + b.to(tl.int64) * stride_kb + hk.to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + hk.to(tl.int64) * stride_vh

    q = load_tile(Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh,
                  offs_m, offs_d, stride_qm, stride_qd, Nq, D)  # (BM, BD)
    lim = row_limits(offs_m, b, VL, stride_vlb, stride_vlm, Nq, Nk, causal_off,
                     HAS_VL, CAUSAL)  # (BM,)
    hi = tl.max(lim, axis=0)  # keys at or beyond hi are skipped entirely

    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)  # running max (log2 units)
    l_i = tl.zeros((BLOCK_M,), tl.float32)  # running sum of exp2(s - m_i)
    acc = tl.zeros((BLOCK_M, BLOCK_DV), tl.float32)  # running sum of p @ v
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        kt = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                     mask=(offs_n[None, :] < hi) & (offs_d[:, None] < D), other=0.0)  # (BD, BN)
        s = tl.dot(q, kt, input_precision=DOT_PREC) * qk_scale  # (BM, BN), log2 units
        if HAS_BIAS:
            s += _key_bias(BIAS, b, offs_n, hi, stride_bb, stride_bn)[None, :] * LOG2E
        p, alpha, m_i, l_i = online_softmax_step(s, offs_n, lim, m_i, l_i)
        if HAS_DROPOUT:  # after the denominator: it sees all weights
            p = tl.where(_dropout_keep(seed, pid_bh, offs_m, offs_n, Nq, Nk, dropout_p), p, 0.0)
        v = load_tile(v_base, offs_n, offs_dv, stride_vn, stride_vd, hi, DV)  # (BN, BDV)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)

    out, lse = online_softmax_result(acc, m_i, l_i)
    if HAS_DROPOUT:
        out = out * (1.0 / (1.0 - dropout_p))
    store_tile(OUT + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh, offs_m, offs_dv,
               stride_om, stride_od, Nq, DV, out.to(OUT.dtype.element_ty))
    tl.store(LSE + pid_bh.to(tl.int64) * Nq + offs_m, lse, mask=offs_m < Nq)


# --------------------------------------------------------------------------------------
# Backward
# --------------------------------------------------------------------------------------


@triton.jit
def _flash_bwd_dkdv_kernel(
    Q, K, V, BIAS, VL, KVMAX, DO, LSE, DELTA, DK, DV_, DBIAS,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_bb, stride_bn,
    stride_vlb, stride_vlm,
    stride_dob, stride_doh, stride_dom, stride_dod,
    stride_dkb, stride_dkh, stride_dkn, stride_dkd,
    stride_dvb, stride_dvh, stride_dvn, stride_dvd,
    H, HKV, Nq, Nk, D, DV, GROUP, causal_off, qk_scale, scale, dropout_p, seed,
    HAS_BIAS: tl.constexpr, STORE_DBIAS: tl.constexpr, HAS_VL: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_DROPOUT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """dK, dV (and the per-kv-head column sums of dS for key_bias) for one key block.

    The program loops over the GROUP query heads sharing this kv head and over the
    query blocks that can see this key block, so dK/dV accumulate in registers
    without atomics.
    """
    LOG2E: tl.constexpr = 1.4426950408889634
    pid_bhk = tl.program_id(1)
    b = pid_bhk // HKV
    hk = pid_bhk % HKV
    start_n = tl.program_id(0) * BLOCK_N

    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    kv_hi, lo, hi = backward_key_range(KVMAX, b, start_n, Nq, Nk, causal_off, HAS_VL, CAUSAL,
                                       BLOCK_M)
    k = load_tile(K + b.to(tl.int64) * stride_kb + hk.to(tl.int64) * stride_kh,
                  offs_n, offs_d, stride_kn, stride_kd, kv_hi, D)  # (BN, BD)
    v = load_tile(V + b.to(tl.int64) * stride_vb + hk.to(tl.int64) * stride_vh,
                  offs_n, offs_dv, stride_vn, stride_vd, kv_hi, DV)  # (BN, BDV)
    bias = tl.zeros((BLOCK_N,), tl.float32)
    if HAS_BIAS:
        bias = _key_bias(BIAS, b, offs_n, kv_hi, stride_bb, stride_bn) * LOG2E

    dk = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_DV), tl.float32)
    dbias = tl.zeros((BLOCK_N,), tl.float32)
    for g in range(0, GROUP):
        h = hk * GROUP + g
        q_base = Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
        do_base = DO + b.to(tl.int64) * stride_dob + h.to(tl.int64) * stride_doh
        row_base = (b * H + h).to(tl.int64) * Nq
        for start_m in range(lo, hi, BLOCK_M):
            offs_m = start_m + offs_m0
            q = load_tile(q_base, offs_m, offs_d, stride_qm, stride_qd, Nq, D)
            do = load_tile(do_base, offs_m, offs_dv, stride_dom, stride_dod, Nq, DV)
            lse2 = load_lse_log2(LSE + row_base, offs_m, Nq)
            delta = tl.load(DELTA + row_base + offs_m, mask=offs_m < Nq, other=0.0)
            lim = row_limits(offs_m, b, VL, stride_vlb, stride_vlm, Nq, Nk, causal_off,
                             HAS_VL, CAUSAL)
            s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale + bias[None, :]
            valid = offs_n[None, :] < lim[:, None]
            p = tl.where(valid, tl.exp2(s - lse2[:, None]), 0.0)  # (BM, BN)
            dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)  # (BM, BN)
            if HAS_DROPOUT:
                keep = _dropout_keep(seed, b * H + h, offs_m, offs_n, Nq, Nk, dropout_p)
                inv_keep = 1.0 / (1.0 - dropout_p)
                dv += tl.dot(tl.trans(tl.where(keep, p * inv_keep, 0.0).to(do.dtype)), do,
                             input_precision=DOT_PREC)
                dp = tl.where(keep, dp * inv_keep, 0.0)
            else:
                dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=DOT_PREC)
            ds = tl.where(valid, p * (dp - delta[:, None]), 0.0)  # dL/ds, s = scale q.k + bias
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=DOT_PREC)
            if STORE_DBIAS:
                dbias += tl.sum(ds, axis=0)

    dk = dk * scale
    store_tile(DK + b.to(tl.int64) * stride_dkb + hk.to(tl.int64) * stride_dkh, offs_n, offs_d,
               stride_dkn, stride_dkd, Nk, D, dk.to(DK.dtype.element_ty))
    store_tile(DV_ + b.to(tl.int64) * stride_dvb + hk.to(tl.int64) * stride_dvh, offs_n,
               offs_dv, stride_dvn, stride_dvd, Nk, DV, dv.to(DV_.dtype.element_ty))
    if STORE_DBIAS:
        tl.store(DBIAS + pid_bhk.to(tl.int64) * Nk + offs_n, dbias, mask=offs_n < Nk)


@triton.jit
def _flash_bwd_dq_kernel(
    Q, K, V, BIAS, VL, DO, LSE, DELTA, DQ,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_bb, stride_bn,
    stride_vlb, stride_vlm,
    stride_dob, stride_doh, stride_dom, stride_dod,
    stride_dqb, stride_dqh, stride_dqm, stride_dqd,
    H, Nq, Nk, D, DV, GROUP, causal_off, qk_scale, scale, dropout_p, seed,
    HAS_BIAS: tl.constexpr, HAS_VL: tl.constexpr, CAUSAL: tl.constexpr,
    HAS_DROPOUT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """dQ for one query block, looping over the key blocks it can see."""
    LOG2E: tl.constexpr = 1.4426950408889634
    pid_bh, b, h, hk, offs_m = _query_program(H, GROUP, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    k_base = K + b.to(tl.int64) * stride_kb + hk.to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + hk.to(tl.int64) * stride_vh
    q = load_tile(Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh,
                  offs_m, offs_d, stride_qm, stride_qd, Nq, D)
    do = load_tile(DO + b.to(tl.int64) * stride_dob + h.to(tl.int64) * stride_doh,
                   offs_m, offs_dv, stride_dom, stride_dod, Nq, DV)
    row_base = pid_bh.to(tl.int64) * Nq
    lse2 = load_lse_log2(LSE + row_base, offs_m, Nq)
    delta = tl.load(DELTA + row_base + offs_m, mask=offs_m < Nq, other=0.0)
    lim = row_limits(offs_m, b, VL, stride_vlb, stride_vlm, Nq, Nk, causal_off, HAS_VL, CAUSAL)
    hi = tl.max(lim, axis=0)

    dq = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        k = load_tile(k_base, offs_n, offs_d, stride_kn, stride_kd, hi, D)  # (BN, BD)
        v = load_tile(v_base, offs_n, offs_dv, stride_vn, stride_vd, hi, DV)  # (BN, BDV)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale
        if HAS_BIAS:
            s += _key_bias(BIAS, b, offs_n, hi, stride_bb, stride_bn)[None, :] * LOG2E
        valid = offs_n[None, :] < lim[:, None]
        p = tl.where(valid, tl.exp2(s - lse2[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
        if HAS_DROPOUT:
            keep = _dropout_keep(seed, pid_bh, offs_m, offs_n, Nq, Nk, dropout_p)
            dp = tl.where(keep, dp * (1.0 / (1.0 - dropout_p)), 0.0)
        ds = tl.where(valid, p * (dp - delta[:, None]), 0.0)
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC)

    dq = dq * scale
    store_tile(DQ + b.to(tl.int64) * stride_dqb + h.to(tl.int64) * stride_dqh, offs_m, offs_d,
               stride_dqm, stride_dqd, Nq, D, dq.to(DQ.dtype.element_ty))


# --------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------

def _check_flash_inputs(q, k, v, key_bias, scale, dropout_p) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_is_tensor(name, t)
        if t.dim() != 4:
            raise ValueError(
                f"{name} must have 4 dims (B, H, N, D), got shape {tuple(t.shape)}"
            )
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"{name} must be float16, bfloat16 or float32, got dtype {t.dtype}"
            )
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(
            f"q, k and v must share one dtype, got {q.dtype}, {k.dtype} and {v.dtype}"
        )
    b, h, _, d = q.shape
    bk, hkv, nk, dk = k.shape
    if bk != b:
        raise ValueError(f"k must have batch size B = {b} like q, got k shape {tuple(k.shape)}")
    if dk != d:
        raise ValueError(
            f"k must have head size D = {d} like q, got k shape {tuple(k.shape)}"
        )
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(
            f"v must have shape (B, Hkv, Nk, Dv) = ({b}, {hkv}, {nk}, Dv) like k, "
            f"got {tuple(v.shape)}"
        )
    check_divisible("H", h, "Hkv", check_positive_int("Hkv", hkv))
    for name, size in (("D", d), ("Dv", v.shape[3])):
        check_int(f"head size {name}", size, minimum=1, maximum=MAX_HEAD_DIM)
    if key_bias is not None:
        check_is_tensor("key_bias", key_bias, "a torch.Tensor or None")
        if key_bias.shape != (b, nk):
            raise ValueError(
                f"key_bias must have shape (B, Nk) = ({b}, {nk}), got {tuple(key_bias.shape)}"
            )
        if not key_bias.dtype.is_floating_point:
            raise TypeError(f"key_bias must be a float tensor, got dtype {key_bias.dtype}")
    check_finite("scale", scale)
    check_probability("dropout_p", dropout_p)


# --------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------


def _strides4(t: torch.Tensor) -> tuple[int, int, int, int]:
    return tuple(t.stride())  # type: ignore[return-value]


def _flash_forward(q, k, v, key_bias, vl, scale, causal, dropout_p, seed):
    b, h, nq, d = q.shape
    hkv, nk, dv = k.shape[1], k.shape[2], v.shape[3]
    o = torch.empty((b, h, nq, dv), dtype=q.dtype, device=q.device)  # (B, H, Nq, Dv)
    lse = torch.empty((b, h, nq), dtype=torch.float32, device=q.device)  # (B, H, Nq)
    if nq == 0:
        return o, lse
    cfg = flash_block_sizes(q.device, d, dv, dropout=dropout_p > 0.0, dtype=q.dtype)
    dummy = lse  # stands in for absent optional pointers (never read)
    bias_t = key_bias if key_bias is not None else dummy
    vl_t = vl if vl is not None else dummy
    grid = (triton.cdiv(nq, cfg.block_m), b * h)
    _flash_fwd_kernel[grid](
        q, k, v, bias_t, vl_t, o, lse,
        *_strides4(q), *_strides4(k), *_strides4(v),
        *(key_bias.stride() if key_bias is not None else (0, 0)),
        *(vl.stride() if vl is not None else (0, 0)),
        *_strides4(o),
        h, nq, nk, d, dv, h // hkv, causal_offset(causal, nq, nk), scale * _LOG2E,
        dropout_p, seed,
        HAS_BIAS=key_bias is not None, HAS_VL=vl is not None, CAUSAL=causal is not None,
        HAS_DROPOUT=dropout_p > 0.0,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
        BLOCK_D=head_block(d), BLOCK_DV=head_block(dv), DOT_PREC=dot_precision(q.dtype),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return o, lse


def _flash_backward(do, q, k, v, key_bias, vl, o, lse, scale, causal, dropout_p, seed,
                    need_dq, need_dbias):
    b, h, nq, d = q.shape
    hkv, nk, dv = k.shape[1], k.shape[2], v.shape[3]
    group = h // hkv
    do = do.to(q.dtype)
    dq = torch.empty_like(q) if need_dq else None  # (B, H, Nq, D)
    dk = torch.empty_like(k)  # (B, Hkv, Nk, D)
    dvv = torch.empty_like(v)  # (B, Hkv, Nk, Dv)
    dbias_part = None
    if need_dbias:
        dbias_part = torch.empty((b, hkv, nk), dtype=torch.float32, device=q.device)
    if nq == 0 or nk == 0:
        dbias = dbias_part.zero_().sum(dim=1) if dbias_part is not None else None
        return (dq.zero_() if need_dq else None), dk.zero_(), dvv.zero_(), dbias
    cfg = flash_block_sizes(q.device, d, dv, backward=True, dropout=dropout_p > 0.0,
                            dtype=q.dtype)
    blocks = dict(BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
                  BLOCK_D=head_block(d), BLOCK_DV=head_block(dv))
    launch = dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    off = causal_offset(causal, nq, nk)
    prec = dot_precision(q.dtype)

    delta = torch.empty((b, h, nq), dtype=torch.float32, device=q.device)  # (B, H, Nq)
    delta_kernel[(triton.cdiv(nq, cfg.block_m), b * h)](
        o, do, delta, *_strides4(o), *_strides4(do), h, nq, dv,
        BLOCK_M=cfg.block_m, BLOCK_DV=blocks["BLOCK_DV"], num_warps=cfg.num_warps,
    )

    dummy = delta
    bias_t = key_bias if key_bias is not None else dummy
    bias_strides = key_bias.stride() if key_bias is not None else (0, 0)
    vl_t = vl if vl is not None else dummy
    vl_strides = vl.stride() if vl is not None else (0, 0)
    kv_max = vl.amax(dim=1).to(torch.int32) if vl is not None else dummy  # (B,)
    flags = dict(HAS_BIAS=key_bias is not None, HAS_VL=vl is not None,
                 CAUSAL=causal is not None, HAS_DROPOUT=dropout_p > 0.0)

    _flash_bwd_dkdv_kernel[(triton.cdiv(nk, cfg.block_n), b * hkv)](
        q, k, v, bias_t, vl_t, kv_max, do, lse, delta, dk, dvv,
        dbias_part if dbias_part is not None else dummy,
        *_strides4(q), *_strides4(k), *_strides4(v), *bias_strides, *vl_strides,
        *_strides4(do), *_strides4(dk), *_strides4(dvv),
        h, hkv, nq, nk, d, dv, group, off, scale * _LOG2E, scale, dropout_p, seed,
        STORE_DBIAS=need_dbias, DOT_PREC=prec, **flags, **blocks, **launch,
    )
    if need_dq:
        _flash_bwd_dq_kernel[(triton.cdiv(nq, cfg.block_m), b * h)](
            q, k, v, bias_t, vl_t, do, lse, delta, dq,
            *_strides4(q), *_strides4(k), *_strides4(v), *bias_strides, *vl_strides,
            *_strides4(do), *_strides4(dq),
            h, nq, nk, d, dv, group, off, scale * _LOG2E, scale, dropout_p, seed,
            DOT_PREC=prec, **flags, **blocks, **launch,
        )
    dbias = dbias_part.sum(dim=1) if dbias_part is not None else None  # (B, Nk)
    return dq, dk, dvv, dbias


class _FlashAttentionFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, key_bias, vl, scale, causal, dropout_p, seed):
        o, lse = _flash_forward(q, k, v, key_bias, vl, scale, causal, dropout_p, seed)
        ctx.save_for_backward(q, k, v, key_bias, vl, o, lse)
        ctx.scale = scale
        ctx.causal = causal
        ctx.dropout_p = dropout_p
        ctx.seed = seed
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, key_bias, vl, o, lse = ctx.saved_tensors
        need_dbias = key_bias is not None and ctx.needs_input_grad[3]
        dq, dk, dv, dbias = _flash_backward(
            do, q, k, v, key_bias, vl, o, lse, ctx.scale, ctx.causal, ctx.dropout_p, ctx.seed,
            ctx.needs_input_grad[0], need_dbias,
        )
        if dbias is not None:
            dbias = dbias.to(key_bias.dtype)
        return dq, dk, dv, dbias, None, None, None, None, None


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    key_bias: torch.Tensor | None = None,
    valid_lens: torch.Tensor | None = None,
    causal: str | None = None,
    dropout_p: float = 0.0,
    dropout_seed: int | None = None,
) -> torch.Tensor:
    """Fused attention ``softmax(scale * q k^T + key_bias, masked) v`` without the weights.

    Args:
        q: queries ``(B, H, Nq, D)``, float16, bfloat16 or float32.
        k: keys ``(B, Hkv, Nk, D)`` with ``H % Hkv == 0``; query head ``h`` reads kv head
            ``h // (H // Hkv)`` (Hkv == H: multi-head, Hkv == 1: multi-query).
        v: values ``(B, Hkv, Nk, Dv)``. D and Dv may differ; each is at most 256.
        scale: multiplies ``q . k`` (usually ``D ** -0.5``).
        key_bias: optional float ``(B, Nk)`` added to every score of key ``j`` of a
            sequence, for all heads and queries (distance/RBF attention uses
            ``-|k_j|^2 / (2 sigma^2)``). Receives a gradient when it requires one.
        valid_lens: optional integer ``(B,)`` (valid keys per sequence) or ``(B, Nq)``
            (valid keys per query). Key positions ``>= valid_len`` get zero weight;
            values are clamped to ``[0, Nk]``.
        causal: None, ``"top_left"`` or ``"bottom_right"``. True = may attend; for
            Nq = 2, Nk = 5 (rows: queries i, columns: keys j)::

                top_left  (j <= i, like SDPA is_causal)   bottom_right  (j <= i + Nk - Nq)
                     j: 0 1 2 3 4                              j: 0 1 2 3 4
                  i=0:  1 0 0 0 0                           i=0:  1 1 1 1 0
                  i=1:  1 1 0 0 0                           i=1:  1 1 1 1 1

            bottom_right aligns the last query with the last key (KV-cache decoding);
            with Nq > Nk its first Nq - Nk rows see nothing.
        dropout_p: probability in ``[0, 1)`` of zeroing each attention weight (kept
            weights are scaled by ``1 / (1 - dropout_p)``). The keep mask comes from
            Philox (``tl.rand``) at counter ``((b * H + h) * Nq + i) * Nk + j`` and is
            regenerated, not stored, in the backward pass;
            :func:`flash_dropout_mask` returns the same mask for inspection.
        dropout_seed: Philox seed for the dropout mask. None draws one from torch's
            default CPU generator (so ``torch.manual_seed`` makes runs repeatable).

    Returns:
        ``(B, H, Nq, Dv)`` in the dtype of ``q``. A query row with no key to attend to
        (valid length 0, or causal + valid_lens leaving nothing) is exactly zero, and
        its gradients are zero; nothing is NaN. Softmax statistics and all
        accumulations are float32.

    Raises:
        ValueError: shapes, head sizes, ``H % Hkv``, ``valid_lens`` shape, ``causal``
            value, ``scale`` or ``dropout_p`` out of range, devices.
        TypeError: non-tensor inputs, unsupported dtypes.
    """
    _check_flash_inputs(q, k, v, key_bias, scale, dropout_p)
    check_causal(causal)
    tensors = [q, k, v] + ([key_bias] if key_bias is not None else [])
    check_device(*tensors)
    vl = normalize_valid_lens(valid_lens, q.shape[0], q.shape[2], q.device)
    seed = _dropout_seed(dropout_seed) if dropout_p > 0.0 else 0
    return _FlashAttentionFn.apply(q, k, v, key_bias, vl, float(scale), causal,
                                   float(dropout_p), seed)


def _dropout_seed(dropout_seed: int | None) -> int:
    if dropout_seed is None:
        return int(torch.randint(0, 2**31 - 1, (1,)).item())  # CPU generator: no GPU sync
    return check_int("dropout_seed", dropout_seed, minimum=0, maximum=2**63 - 1)


@triton.jit
def _dropout_mask_kernel(MASK, H, Nq, Nk, dropout_p, seed,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    base = MASK + pid_bh.to(tl.int64) * Nq * Nk
    for start_n in range(0, Nk, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        keep = _dropout_keep(seed, pid_bh, offs_m, offs_n, Nq, Nk, dropout_p)
        tl.store(base + offs_m[:, None] * Nk + offs_n[None, :], keep.to(tl.int8),
                 mask=(offs_m[:, None] < Nq) & (offs_n[None, :] < Nk))


def flash_dropout_mask(batch: int, heads: int, nq: int, nk: int, *, dropout_p: float,
                       dropout_seed: int, device: torch.device | str) -> torch.Tensor:
    """Keep mask ``(B, H, Nq, Nk)`` (True = weight kept) that :func:`flash_attention`
    applies for the same ``dropout_p`` and ``dropout_seed``; for tests and inspection."""
    check_probability("dropout_p", dropout_p)
    seed = _dropout_seed(dropout_seed)
    mask = torch.empty((batch, heads, nq, nk), dtype=torch.int8, device=device)
    check_device(mask)
    if mask.numel() == 0:
        return mask.bool()
    block_m, block_n, warps = (32, 64, 4) if mask.device.type == "cuda" else (16, 16, 1)
    _dropout_mask_kernel[(triton.cdiv(nq, block_m), batch * heads)](
        mask, heads, nq, nk, float(dropout_p), seed,
        BLOCK_M=block_m, BLOCK_N=block_n, num_warps=warps,
    )
    return mask.bool()
