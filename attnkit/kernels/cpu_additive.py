"""Additive attention scores and their gradients on the CPU, fused in compiled C.

``s[b, i, j] = Σ_f w[f] · tanh(q[b, i, f] + k[b, j, f])`` for a block of
(sequences, queries, keys) without the ``(b, i, j, h)`` features that PyTorch ops
would write and read back (``additive_cpu.c``; built on first use by
:mod:`attnkit.kernels._build`). The ``chunked`` backend calls these on its blocks
from several threads at once: each call is single-threaded and releases the GIL.

Shapes (float32, CPU, innermost dimension contiguous; other strides are free):
``q`` ``(b, Nq, h)``, ``kt`` ``(b, h, Nk)`` (the keys transposed), ``w`` ``(h,)``,
scores and their gradient ``(b, Nq, Nk)``.
"""

from __future__ import annotations

import ctypes

import torch

from ._build import Built, load, source_code
from ._cpu_args import check_float32 as _check

__all__ = ["TANH_MAX_REL_ERR", "additive_grads", "additive_scores", "status"]

#: Bound on the relative error of the kernel's tanh (a rational approximation evaluated
#: in float32), with a margin over what the builds reach (``kernels/README.md``, "tanh",
#: has the measured errors).
#: A score's error is then at most ``Σ_f |w_f| · TANH_MAX_REL_ERR`` plus float32 sums.
TANH_MAX_REL_ERR = 8 * 2.0**-24

_SOURCE = "additive_cpu.c"
#: the source as this module was imported with: its library is built from it (``_build``)
_CODE = source_code(_SOURCE)
_I64, _PTR = ctypes.c_int64, ctypes.c_void_p
_SIGNATURES = {
    "attnkit_additive_scores": [_I64] * 4 + [_PTR, _I64, _I64] * 2 + [_PTR, _PTR, _I64, _I64],
    "attnkit_additive_grads": [_I64] * 4 + [_PTR, _I64, _I64] * 3
    + [_PTR, _PTR, _I64, _I64, _PTR, _I64, _I64, _PTR],
}


def status() -> Built:
    """The compiled library (``.lib`` ``None`` where it could not be built, with ``.detail``)."""
    return load(_SOURCE, _CODE, _SIGNATURES)


def _lib():
    built = status()
    if built.lib is None:
        raise RuntimeError(f"the compiled additive kernel is not available: {built.detail}")
    return built.lib


def _sizes(q: torch.Tensor, kt: torch.Tensor, w: torch.Tensor) -> tuple[int, int, int, int]:
    if q.dim() != 3 or kt.dim() != 3:
        raise ValueError(f"q must be (b, Nq, h) and kt (b, h, Nk); got {tuple(q.shape)} and "
                         f"{tuple(kt.shape)}")
    b, nq, h = q.shape
    nk = kt.shape[2]
    _check("q", q, (b, nq, h))
    _check("kt", kt, (b, h, nk))
    _check("w", w, (h,))
    return b, nq, nk, h


def additive_scores(q: torch.Tensor, kt: torch.Tensor, w: torch.Tensor,
                    out: torch.Tensor) -> torch.Tensor:
    """Write ``Σ_f w[f] tanh(q[b, i, f] + kt[b, f, j])`` into ``out`` ``(b, Nq, Nk)``; return it."""
    b, nq, nk, h = _sizes(q, kt, w)
    _check("out", out, (b, nq, nk))
    _lib().attnkit_additive_scores(
        b, nq, nk, h, q.data_ptr(), q.stride(0), q.stride(1), kt.data_ptr(), kt.stride(0),
        kt.stride(1), w.data_ptr(), out.data_ptr(), out.stride(0), out.stride(1))
    return out


def additive_grads(q: torch.Tensor, kt: torch.Tensor, w: torch.Tensor, ds: torch.Tensor,
                   dq: torch.Tensor, dkt: torch.Tensor, dw: torch.Tensor) -> None:
    """Add the gradients of the scores, given ``ds`` ``(b, Nq, Nk)``, into ``dq``
    ``(b, Nq, h)``, ``dkt`` ``(b, h, Nk)`` and ``dw`` ``(h,)`` (tanh recomputed)."""
    b, nq, nk, h = _sizes(q, kt, w)
    _check("ds", ds, (b, nq, nk))
    _check("dq", dq, (b, nq, h))
    _check("dkt", dkt, (b, h, nk))
    _check("dw", dw, (h,))
    _lib().attnkit_additive_grads(
        b, nq, nk, h, q.data_ptr(), q.stride(0), q.stride(1), kt.data_ptr(), kt.stride(0),
        kt.stride(1), w.data_ptr(), ds.data_ptr(), ds.stride(0), ds.stride(1),
        dq.data_ptr(), dq.stride(0), dq.stride(1), dkt.data_ptr(), dkt.stride(0),
        dkt.stride(1), dw.data_ptr())
