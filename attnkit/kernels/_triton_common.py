"""What the two Triton kernel families share (:mod:`.triton_flash`, scaled-dot, and
:mod:`.triton_additive`, additive scores): the checks of their common arguments, the
padding of head sizes, and the pieces of a kernel that do not depend on how a score is
made — which keys a query row may see, the online softmax of the forward pass, the
``delta`` and the key range of the backward pass.

The masks are the same for both: query ``i`` of sequence ``b`` sees keys
``j < min(Nk, valid_len[b, i], i + causal_off + 1)`` (the last bound only when causal).
Importing this module imports triton; ``TRITON_INTERPRET=1`` must be set before that to
run the kernels on CPU tensors.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = [
    "CAUSAL_MODES",
    "FLOAT_DTYPES",
    "MAX_HEAD_DIM",
    "backward_key_range",
    "causal_offset",
    "check_causal",
    "check_device",
    "delta_kernel",
    "dot_precision",
    "head_block",
    "is_interpreting",
    "load_lse_log2",
    "load_tile",
    "normalize_valid_lens",
    "online_softmax_result",
    "online_softmax_step",
    "row_limits",
    "store_tile",
]

# Accepted values of ``causal``: None (no causal mask) or one of these alignments.
CAUSAL_MODES = ("top_left", "bottom_right")

# Largest supported head size (D and Dv); heads are padded to a power of two >= 16.
MAX_HEAD_DIM = 256

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


# --------------------------------------------------------------------------------------
# Launch configuration
# --------------------------------------------------------------------------------------


def is_interpreting() -> bool:
    """True when these kernels and triton's own library were built for the interpreter.

    Both are decided when they are defined, so ``TRITON_INTERPRET=1`` must be set
    before triton is first imported.
    """
    import triton.language.standard as tl_standard
    from triton.runtime.interpreter import InterpretedFunction

    stdlib_fn = getattr(tl_standard, "zeros_like", None)
    stdlib_ok = stdlib_fn is None or isinstance(stdlib_fn, InterpretedFunction)
    return isinstance(row_limits, InterpretedFunction) and stdlib_ok


def head_block(d: int) -> int:
    """Padded head size: next power of two, at least 16 (the minimum ``tl.dot`` size)."""
    return max(16, triton.next_power_of_2(d))


def dot_precision(dtype: torch.dtype) -> str | None:
    """The ``input_precision`` of ``tl.dot`` for inputs of ``dtype``: fp32 inputs get
    IEEE fp32 products (no TF32); fp16/bf16 use the default."""
    return "ieee" if dtype == torch.float32 else None


# --------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------


def check_causal(causal: str | None) -> None:
    """Raise ``ValueError`` unless ``causal`` is None or one of :data:`CAUSAL_MODES`."""
    if causal is not None and causal not in CAUSAL_MODES:
        raise ValueError(
            f"causal must be None, 'top_left' or 'bottom_right', got {causal!r}"
        )


def causal_offset(causal: str | None, nq: int, nk: int) -> int:
    """Offset ``off`` such that query i may see keys ``j <= i + off``."""
    return nk - nq if causal == "bottom_right" else 0


def check_device(*tensors: torch.Tensor) -> None:
    """Raise ``ValueError`` when the tensors cannot run on the compiled kernels."""
    device = tensors[0].device
    for t in tensors:
        if t.device != device:
            raise ValueError(
                f"all tensors must be on one device, got {device} and {t.device}"
            )
    if device.type != "cuda" and not is_interpreting():
        raise ValueError(
            f"the triton kernels need CUDA tensors (got device {device}); to run them on "
            "the CPU set TRITON_INTERPRET=1 before triton is first imported"
        )


def normalize_valid_lens(valid_lens: torch.Tensor | None, batch: int, nq: int,
                         device: torch.device) -> torch.Tensor | None:
    """Return valid lengths as an int32 ``(B, Nq)`` tensor (a stride-0 view for ``(B,)``)."""
    if valid_lens is None:
        return None
    if not isinstance(valid_lens, torch.Tensor):
        raise TypeError(f"valid_lens must be a torch.Tensor or None, got {type(valid_lens)}")
    if valid_lens.dtype.is_floating_point or valid_lens.dtype.is_complex \
            or valid_lens.dtype == torch.bool:
        raise TypeError(f"valid_lens must be an integer tensor, got dtype {valid_lens.dtype}")
    if valid_lens.device != device:
        raise ValueError(
            f"valid_lens must be on the same device as the queries ({device}), "
            f"got {valid_lens.device}"
        )
    if valid_lens.shape == (batch,):
        return valid_lens.to(torch.int32)[:, None].expand(batch, nq)  # (B, Nq), stride 0
    if valid_lens.shape == (batch, nq):
        return valid_lens.to(torch.int32)  # (B, Nq)
    raise ValueError(
        f"valid_lens must have shape (B,) = ({batch},) or (B, Nq) = ({batch}, {nq}), "
        f"got {tuple(valid_lens.shape)}"
    )


# --------------------------------------------------------------------------------------
# Pieces of the kernels
# --------------------------------------------------------------------------------------


@triton.jit
def row_limits(offs_m, b, VL, stride_vlb, stride_vlm, Nq, Nk, causal_off,
               HAS_VL: tl.constexpr, CAUSAL: tl.constexpr):
    """Number of keys each query row may attend to: keys ``0 .. lim - 1``.

    ``lim = min(Nk, valid_len, i + causal_off + 1)``, clamped at 0; rows past Nq get 0.
    """
    lim = tl.zeros_like(offs_m) + Nk
    if HAS_VL:
        vl = tl.load(VL + b * stride_vlb + offs_m * stride_vlm, mask=offs_m < Nq, other=0)
        lim = tl.minimum(lim, vl)
    if CAUSAL:
        lim = tl.minimum(lim, offs_m + causal_off + 1)
    lim = tl.maximum(lim, 0)
    return tl.where(offs_m < Nq, lim, 0)


@triton.jit
def online_softmax_step(s, offs_n, lim, m_i, l_i):
    """One key tile of the online softmax, in log2 units: the scores ``s`` (BM, BN) of
    keys ``offs_n`` masked at the rows' limits ``lim``; returns the unnormalized weights
    ``p``, the factor ``alpha`` that rescales what was accumulated so far, and the new
    running max and sum of the rows."""
    s = tl.where(offs_n[None, :] < lim[:, None], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # row still empty: no NaN
    alpha = tl.exp2(m_i - m_safe)
    p = tl.exp2(s - m_safe[:, None])  # masked entries: exp2(-inf) = 0
    l_new = l_i * alpha + tl.sum(p, axis=1)  # the denominator sees all weights
    return p, alpha, m_new, l_new


@triton.jit
def online_softmax_result(acc, m_i, l_i):
    """The rows' output ``acc / l`` and their logsumexp (natural log) once every key tile
    is in; a row that saw no key gives 0 and ``-inf``."""
    LN2: tl.constexpr = 0.6931471805599453
    nonempty = l_i > 0.0
    out = acc / tl.where(nonempty, l_i, 1.0)[:, None]  # empty rows: acc == 0 -> 0
    lse = tl.where(nonempty, (m_i + tl.log2(tl.where(nonempty, l_i, 1.0))) * LN2, float("-inf"))
    return out, lse


@triton.jit
def load_lse_log2(LSE_ROW, offs_m, Nq):
    """The saved logsumexp of rows ``offs_m`` in log2 units, ``+inf`` for a row that saw
    no key (so that its recomputed weights ``exp2(s - lse)`` are 0)."""
    LOG2E: tl.constexpr = 1.4426950408889634
    lse2 = tl.load(LSE_ROW + offs_m, mask=offs_m < Nq, other=0.0) * LOG2E
    return tl.where(lse2 == float("-inf"), float("inf"), lse2)


@triton.jit
def backward_key_range(KVMAX, b, start_n, Nq, Nk, causal_off, HAS_VL: tl.constexpr,
                       CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr):
    """For the backward program of the key block at ``start_n``: ``kv_hi``, the keys at
    or beyond which no query of sequence ``b`` looks (padding, or past the last causal
    frontier: never read, so their content cannot leak into dS), and the range
    ``lo .. hi`` of the queries (``lo`` a multiple of ``BLOCK_M``) that can see it."""
    kv_hi = Nk
    if HAS_VL:
        kv_hi = tl.minimum(tl.maximum(tl.load(KVMAX + b), 0), Nk)  # largest valid length
    if CAUSAL:
        kv_hi = tl.minimum(kv_hi, tl.maximum(Nq + causal_off, 0))
    lo = 0
    if CAUSAL:
        lo = tl.maximum(start_n - causal_off, 0)  # first query i with i + off >= start_n
        lo = (lo // BLOCK_M) * BLOCK_M
    hi = tl.where(start_n < kv_hi, Nq, 0)
    return kv_hi, lo, hi


@triton.jit
def delta_kernel(
    OUT, DO, DELTA,
    stride_ob, stride_oh, stride_om, stride_od,
    stride_dob, stride_doh, stride_dom, stride_dod,
    H, Nq, DV,
    BLOCK_M: tl.constexpr, BLOCK_DV: tl.constexpr,
):
    """delta_i = sum_d dO_id * O_id (float32), one program per query block."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask = (offs_m[:, None] < Nq) & (offs_dv[None, :] < DV)
    o = tl.load(OUT + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh
                + offs_m[:, None] * stride_om + offs_dv[None, :] * stride_od, mask=mask, other=0.0)
    do = tl.load(DO + b.to(tl.int64) * stride_dob + h.to(tl.int64) * stride_doh
                 + offs_m[:, None] * stride_dom + offs_dv[None, :] * stride_dod,
                 mask=mask, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1)
    tl.store(DELTA + pid_bh.to(tl.int64) * Nq + offs_m, delta, mask=offs_m < Nq)


@triton.jit
def load_tile(base, rows, cols, stride_r, stride_c, n_rows, n_cols):
    """The ``(len(rows), len(cols))`` tile ``base[rows, cols]``, zero where a row is not
    below ``n_rows`` or a column not below ``n_cols`` (padding, or what must not be
    read)."""
    return tl.load(base + rows[:, None] * stride_r + cols[None, :] * stride_c,
                   mask=(rows[:, None] < n_rows) & (cols[None, :] < n_cols), other=0.0)


@triton.jit
def store_tile(base, rows, cols, stride_r, stride_c, n_rows, n_cols, tile):
    """``base[rows, cols] = tile`` where the row is below ``n_rows`` and the column below
    ``n_cols``."""
    tl.store(base + rows[:, None] * stride_r + cols[None, :] * stride_c, tile,
             mask=(rows[:, None] < n_rows) & (cols[None, :] < n_cols))
