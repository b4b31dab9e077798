"""The scaled-dot attention of a decoding step on the CPU, in compiled C; and of an
encoder's packed rows (:func:`packed_attention`).

A decoding step asks, per sequence and head, for one query (or the few of a grouped-query
head's group, or of a source's beams) against the keys and values cached so far.
PyTorch's SDPA spends most of such a call on the fixed cost of its loop over
(sequence, head) blocks; ``step_cpu.c`` does the same arithmetic in a plain loop
(built on first use by :mod:`attnkit.kernels._build`, like the additive kernel) and is
bound by reading the cache. :meth:`attnkit.nn.MultiHeadAttention.step` uses it where
:func:`usable` says so and SDPA elsewhere.

Shapes (float32, CPU, each tensor's last dimension contiguous; other strides are free,
so a cache may be a view of a larger buffer): queries ``q`` ``(B, Hkv, R, D)``, keys
``k`` ``(B, Hkv, Nk, D)``, values ``v`` ``(B, Hkv, Nk, Dv)``, ``lens`` ``(B,)`` int64
or ``None``; the output ``(B, Hkv, R, Dv)``. Row ``r`` of head ``h`` attends keys
``[0, min(lens[b], Nk))`` of head ``h``; a sequence with none gets zeros. Keys past a
sequence's length are not read.
"""

from __future__ import annotations

import ctypes

import torch

from ._build import Built, load, source_code
from ._cpu_args import check_float32 as _check

__all__ = ["packed_attention", "status", "step_attention", "usable"]

_SOURCE = "step_cpu.c"
#: the source as this module was imported with: its library is built from it (``_build``)
_CODE = source_code(_SOURCE)
_I64, _PTR = ctypes.c_int64, ctypes.c_void_p
_SIGNATURES = {
    "attnkit_step_attention": [_I64] * 7 + [ctypes.c_float] + [_PTR, _I64, _I64, _I64] * 3
    + [_PTR, _PTR, _I64, _PTR, _I64, _I64, _I64, _PTR],
    "attnkit_packed_attention": [_I64, _I64, _PTR] + [_I64] * 4 + [ctypes.c_float, _I64]
    + [_PTR, _I64, _I64] * 4 + [_PTR],
}


def status() -> Built:
    """The compiled library (``.lib`` ``None`` where it could not be built, with ``.detail``)."""
    return load(_SOURCE, _CODE, _SIGNATURES)


def usable(*tensors: torch.Tensor) -> bool:
    """Whether :func:`step_attention` takes these tensors: float32 CPU tensors, none of
    them needing a gradient where autograd records (the kernel has no backward), and the
    library built."""
    for t in tensors:
        if t.dtype != torch.float32 or t.device.type != "cpu":
            return False
        if t.requires_grad and torch.is_grad_enabled():
            return False
    return status().lib is not None


def _check_key_rows(key_rows: torch.Tensor, B: int, Nk: int, Bk: int) -> None:
    """Raise ``ValueError`` unless ``key_rows`` is a ``(B, ≥ Nk)`` int64 CPU table,
    contiguous in its last dimension, whose first ``Nk`` columns are rows of ``k``."""
    if (key_rows.dtype != torch.int64 or key_rows.device.type != "cpu"
            or key_rows.dim() != 2 or key_rows.shape[0] != B or key_rows.shape[1] < Nk
            or (Nk > 1 and key_rows.stride(1) != 1)
            or (B and Nk and (int(key_rows[:, :Nk].min()) < 0
                              or int(key_rows[:, :Nk].max()) >= Bk))):
        raise ValueError(f"key_rows must be a ({B}, >= {Nk}) int64 CPU table of rows of k "
                         f"(in [0, {Bk})), contiguous in its last dimension; got "
                         f"{tuple(key_rows.shape)} {key_rows.dtype} on {key_rows.device}")


def step_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   lens: torch.Tensor | None, scale: float, *,
                   out: torch.Tensor | None = None,
                   rows: tuple[int, int] | None = None,
                   key_rows: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(scale · q kᵀ) v`` over each sequence's first ``lens[b]`` keys (all when
    ``lens`` is ``None``), written into ``out`` (made when not given) and returned.

    ``rows = (b0, b1)`` computes only sequences ``[b0, b1)`` (into those rows of
    ``out``): the kernel is single-threaded, and a caller may share the sequences out.
    ``key_rows`` ``(B, ≥ Nk)`` int64: key ``j`` of sequence ``b`` is in row
    ``key_rows[b, j]`` of ``k`` and ``v`` (which then may have any number of rows), not
    in row ``b`` (a cache whose rows share their history: :class:`attnkit.nn.KVCache`).

    Raises:
        ValueError: a tensor of another dtype, device or shape than the module's
            docstring says, ``lens`` not ``(B,)`` int64, ``rows`` outside ``[0, B]``, or
            ``key_rows`` not a ``(B, ≥ Nk)`` int64 table of rows of ``k``.
        RuntimeError: the library could not be built (``status().detail`` says why).
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a float32 CPU tensor; got {type(t).__name__}")
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k and v must be (B, Hkv, R, D), (B, Hkv, Nk, D) and "
                         f"(B, Hkv, Nk, Dv); got {tuple(q.shape)}, {tuple(k.shape)} and "
                         f"{tuple(v.shape)}")
    B, H, R, D = q.shape
    Nk, Dv = k.shape[2], v.shape[3]
    Bk = B if key_rows is None else k.shape[0]
    _check("q", q, (B, H, R, D))
    _check("k", k, (Bk, H, Nk, D))
    _check("v", v, (Bk, H, Nk, Dv))
    if key_rows is not None:
        _check_key_rows(key_rows, B, Nk, Bk)
    if lens is not None and (lens.dtype != torch.int64 or lens.device.type != "cpu"
                             or tuple(lens.shape) != (B,) or not lens.is_contiguous()):
        raise ValueError(f"lens must be a contiguous ({B},) int64 CPU tensor; got "
                         f"{tuple(lens.shape)} {lens.dtype} on {lens.device}")
    if out is None:
        out = q.new_empty(B, H, R, Dv)
    _check("out", out, (B, H, R, Dv))
    b0, b1 = (0, B) if rows is None else rows
    if not 0 <= b0 <= b1 <= B:
        raise ValueError(f"rows must be (b0, b1) with 0 <= b0 <= b1 <= {B}; got {rows}")
    lib = status().lib
    if lib is None:
        raise RuntimeError(f"the compiled step kernel is not available: {status().detail}")
    scratch = q.new_empty(Nk + 16)  # see step_cpu.c
    lib.attnkit_step_attention(
        b0, b1, H, R, D, Dv, Nk, float(scale),
        q.data_ptr(), q.stride(0), q.stride(1), q.stride(2),
        k.data_ptr(), k.stride(0), k.stride(1), k.stride(2),
        v.data_ptr(), v.stride(0), v.stride(1), v.stride(2),
        None if lens is None else lens.data_ptr(),
        None if key_rows is None else key_rows.data_ptr(),
        0 if key_rows is None else key_rows.stride(0),
        out.data_ptr(), out.stride(0), out.stride(1), out.stride(2), scratch.data_ptr())
    return out


def packed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     offsets: torch.Tensor, scale: float, *, causal: bool = False,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """Self-attention of packed sequences: sequence ``b`` is rows
    ``offsets[b]:offsets[b + 1]`` of ``q`` ``(n, H, D)``, ``k`` ``(n, Hkv, D)`` and ``v``
    ``(n, Hkv, Dv)``, and each of its rows attends its keys (``causal``: those at its
    position and before) by ``softmax(scale · q kᵀ) v``; query head ``h`` reads key/value
    head ``h // (H / Hkv)``. Returns ``out`` ``(n, H, Dv)`` (made when not given).

    No padding is read or written: an encoder's packed rows go in and come out as they
    are (:class:`attnkit.nn.Packed`, :meth:`~attnkit.nn.Packed.offsets`).

    Raises:
        ValueError: a tensor of another dtype, device or shape, ``H`` not a multiple of
            ``Hkv``, or ``offsets`` not a contiguous int64 CPU tensor rising from 0 to ``n``.
        RuntimeError: the library could not be built (``status().detail`` says why).
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 3:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a 3-D (rows, heads, features) tensor; got {got}")
    n, H, D = q.shape
    Hkv, Dv = k.shape[1], v.shape[2]
    if Hkv == 0 or H % Hkv:
        raise ValueError(f"the query heads ({H}) must be a multiple of the key heads ({Hkv})")
    _check("q", q, (n, H, D))
    _check("k", k, (n, Hkv, D))
    _check("v", v, (n, Hkv, Dv))
    if (not isinstance(offsets, torch.Tensor) or offsets.dtype != torch.int64
            or offsets.device.type != "cpu" or offsets.dim() != 1 or offsets.numel() < 1
            or not offsets.is_contiguous()):
        got = (f"{tuple(offsets.shape)} {offsets.dtype} on {offsets.device}"
               if isinstance(offsets, torch.Tensor) else type(offsets).__name__)
        raise ValueError(f"offsets must be a contiguous (B + 1,) int64 CPU tensor; got {got}")
    sizes = offsets.diff()
    longest = int(sizes.max()) if sizes.numel() else 0
    if int(offsets[0]) != 0 or int(offsets[-1]) != n or (sizes.numel() and int(sizes.min()) < 0):
        raise ValueError(f"offsets must rise from 0 to the number of rows ({n}); got "
                         f"{offsets.tolist() if offsets.numel() <= 8 else offsets}")
    if out is None:
        out = q.new_empty(n, H, Dv)
    _check("out", out, (n, H, Dv))
    lib = status().lib
    if lib is None:
        raise RuntimeError(f"the compiled step kernel is not available: {status().detail}")
    scratch = q.new_empty(max((D + 4) * (longest + 15), 1))  # see step_cpu.c
    lib.attnkit_packed_attention(
        0, offsets.numel() - 1, offsets.data_ptr(), H, H // Hkv, D, Dv, float(scale),
        int(bool(causal)), q.data_ptr(), q.stride(0), q.stride(1),
        k.data_ptr(), k.stride(0), k.stride(1), v.data_ptr(), v.stride(0), v.stride(1),
        out.data_ptr(), out.stride(0), out.stride(1), scratch.data_ptr())
    return out
