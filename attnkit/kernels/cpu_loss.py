"""The label-smoothed loss's passes over float32 or bfloat16 logits, in compiled C.

:mod:`attnkit.train.loss` uses these where :func:`usable` says so, and its torch ops
elsewhere (and for every row with a value that is not finite). ``loss_cpu.c`` says what
each pass computes. A bfloat16 matrix is read as it is (no float32 copy of it is made)
and its gradient written in bfloat16, rounded as torch's cast rounds; everything in
between is float32.
"""

from __future__ import annotations

import ctypes

import torch

from ._build import Built, load, source_code

__all__ = ["gradient", "row_stats", "status", "usable"]

_SOURCE = "loss_cpu.c"
#: the source as this module was imported with: its library is built from it (``_build``)
_CODE = source_code(_SOURCE)
_I64, _PTR, _F32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float
_FORWARD = [_PTR, _I64, _I64, _I64, _I64, _PTR, _PTR, _PTR, _PTR]
_BACKWARD = [_PTR, _I64, _I64, _I64, _I64, _PTR, _PTR, _PTR, _F32, _PTR, _I64, _PTR]
_SIGNATURES = {
    "attnkit_loss_forward_f32": _FORWARD, "attnkit_loss_forward_bf16": _FORWARD,
    "attnkit_loss_backward_f32": _BACKWARD, "attnkit_loss_backward_bf16": _BACKWARD,
}
_SUFFIX = {torch.float32: "f32", torch.bfloat16: "bf16"}


def status() -> Built:
    """The compiled library (``.lib`` ``None`` where it could not be built, with ``.detail``)."""
    return load(_SOURCE, _CODE, _SIGNATURES)


def usable(logits: torch.Tensor) -> bool:
    """Whether :func:`row_stats` and :func:`gradient` take ``logits``: a 2-D float32 or
    bfloat16 CPU tensor with contiguous rows and at least one column, the library built."""
    return (logits.dtype in _SUFFIX and logits.device.type == "cpu" and logits.ndim == 2
            and logits.shape[1] > 0 and logits.stride(1) == 1 and status().lib is not None)


def _check(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or not usable(logits):
        got = (f"{tuple(logits.shape)} {logits.dtype} on {logits.device}, strides "
               f"{logits.stride()}" if isinstance(logits, torch.Tensor)
               else type(logits).__name__)
        lib = status()
        raise ValueError(
            "logits must be a 2-D float32 or bfloat16 CPU tensor with contiguous rows and at "
            f"least one column; got {got}" if lib.lib is not None else
            f"the compiled loss kernel is not available: {lib.detail}")


def row_stats(logits: torch.Tensor, rows: range | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(max, sumexp, sum)``, float32 ``(n,)`` each, of the rows of ``logits`` ``(n, V)``:
    the largest logit, ``Σ exp(x − max)`` and ``Σ x``. A row with a value that is not
    finite has a sum that is not finite (its other two are then meaningless). ``rows``:
    fill only these (the others are left uninitialized; for a caller sharing rows out)."""
    _check(logits)
    n, V = logits.shape
    out = [torch.empty(n, dtype=torch.float32) for _ in range(3)]
    r = range(n) if rows is None else rows
    scratch = torch.empty(2 * V, dtype=torch.float32)
    getattr(status().lib, f"attnkit_loss_forward_{_SUFFIX[logits.dtype]}")(
        logits.data_ptr(), r.start, r.stop, V, logits.stride(0), scratch.data_ptr(),
        *(t.data_ptr() for t in out))
    return out[0], out[1], out[2]


def gradient(logits: torch.Tensor, target: torch.Tensor, lse: torch.Tensor,
             grad_rows: torch.Tensor, epsilon: float, out: torch.Tensor,
             rows: range | None = None) -> None:
    """Write ``grad_rows[i] · (softmax(x_i) − ε/V − (1 − ε)·onehot(target[i]))`` into the
    rows of ``out`` (the dtype and shape of ``logits``, contiguous rows) whose ``lse`` (float32
    ``(n,)``, the rows' log-sum-exp) is finite; the other rows of ``out`` are left as they
    are. ``target`` int64 ``(n,)``; ``grad_rows`` float32 ``(n,)``. ``rows``: only these."""
    _check(logits)
    n, V = logits.shape
    if out.dtype != logits.dtype or tuple(out.shape) != (n, V) or out.stride(1) != 1:
        raise ValueError(f"out must be {logits.dtype} {(n, V)} with contiguous rows; got "
                         f"{out.dtype} {tuple(out.shape)}")
    for name, t, dtype in (("target", target, torch.int64), ("lse", lse, torch.float32),
                           ("grad_rows", grad_rows, torch.float32)):
        if t.dtype != dtype or tuple(t.shape) != (n,) or not t.is_contiguous():
            raise ValueError(f"{name} must be a contiguous {dtype} tensor of shape ({n},); "
                             f"got {t.dtype} {tuple(t.shape)}")
    r = range(n) if rows is None else rows
    scratch = torch.empty(2 * V, dtype=torch.float32)
    getattr(status().lib, f"attnkit_loss_backward_{_SUFFIX[logits.dtype]}")(
        logits.data_ptr(), logits.stride(0), r.start, r.stop, V, lse.data_ptr(),
        grad_rows.data_ptr(), target.data_ptr(), float(epsilon), out.data_ptr(),
        out.stride(0), scratch.data_ptr())
