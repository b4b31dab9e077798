"""Dropout of float32 and bfloat16 CPU tensors in compiled C: one pass forward, one backward.

:func:`attnkit.nn.dropout.dropout` uses it where :func:`usable` says so; the torch ops
elsewhere. ``dropout_cpu.c`` says how the random numbers are made: counter-based, from a
seed drawn from torch's default generator, four 16-bit uniforms per 64 bits, the same
rule as the torch-op path (kept when the uniform is at least ``round(p · 2^16)``; the
scale ``2^16 / (2^16 − threshold)``), with other random numbers. A bfloat16 tensor gets
the mask a float32 one of its size would (same seed, same elements dropped) and the values
torch's bfloat16 ``x * scale`` gives (float32 arithmetic, rounded to nearest even).
"""

from __future__ import annotations

import ctypes

import torch

from ._build import Built, load, source_code

__all__ = ["dropout", "rule", "status", "usable"]

#: the uniforms are 16-bit: a drop probability is a multiple of 2^-16
LEVELS = 1 << 16

_SOURCE = "dropout_cpu.c"
#: the source as this module was imported with: its library is built from it (``_build``)
_CODE = source_code(_SOURCE)
_I64, _PTR = ctypes.c_int64, ctypes.c_void_p
_FORWARD = [_PTR, _PTR, _PTR, _I64, ctypes.c_uint64, _I64, ctypes.c_float]
_BACKWARD = [_PTR, _PTR, _PTR, _I64, ctypes.c_float]
_SIGNATURES = {
    "attnkit_dropout_forward": _FORWARD, "attnkit_dropout_backward": _BACKWARD,
    "attnkit_dropout_forward_bf16": _FORWARD, "attnkit_dropout_backward_bf16": _BACKWARD,
}
#: the dtypes the kernel takes, and its functions' suffix for each
_SUFFIX = {torch.float32: "", torch.bfloat16: "_bf16"}


def status() -> Built:
    """The compiled library (``.lib`` ``None`` where it could not be built, with ``.detail``)."""
    return load(_SOURCE, _CODE, _SIGNATURES)


def rule(p: float) -> tuple[int, float] | None:
    """``(threshold, scale)`` of drop probability ``p``: an element is dropped when its
    16-bit uniform is below ``threshold = round(p · 2^16)`` and the others are scaled by
    ``2^16 / (2^16 − threshold)`` (so the expectation is the input exactly). ``None`` where
    the rule does not apply: ``p`` rounds to 0 (nothing is dropped) or to 1 (everything)."""
    threshold = round(p * LEVELS)
    return (threshold, LEVELS / (LEVELS - threshold)) if 0 < threshold < LEVELS else None


def usable(x: torch.Tensor) -> bool:
    """Whether :func:`dropout` takes ``x``: a float32 or bfloat16 CPU tensor, and the library
    built."""
    return x.dtype in _SUFFIX and x.device.type == "cpu" and status().lib is not None


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
        x = x.contiguous()
        seed = int(torch.empty((), dtype=torch.int64).random_())  # torch's generator
        y = torch.empty_like(x)
        keep = torch.empty(x.shape, dtype=torch.uint8) if ctx.needs_input_grad[0] else None
        getattr(status().lib, f"attnkit_dropout_forward{_SUFFIX[x.dtype]}")(
            x.data_ptr(), y.data_ptr(), None if keep is None else keep.data_ptr(),
            x.numel(), seed, threshold, scale)
        ctx.scale, ctx.dtype = scale, x.dtype
        if keep is not None:
            ctx.save_for_backward(keep)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (keep,) = ctx.saved_tensors
        if torch.is_grad_enabled() or g.dtype != ctx.dtype:
            # a graph of the backward (create_graph): torch ops, which autograd follows
            return g * (keep.to(g.dtype) * ctx.scale), None, None
        g = g.contiguous()
        out = torch.empty_like(g)
        getattr(status().lib, f"attnkit_dropout_backward{_SUFFIX[g.dtype]}")(
            g.data_ptr(), keep.data_ptr(), out.data_ptr(), g.numel(), ctx.scale)
        return out, None, None


def dropout(x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
    """``x`` with each element zeroed where its 16-bit uniform is below ``threshold``
    (``1 ≤ threshold < 2^16``), the others times ``scale``; differentiable (twice too).

    Raises:
        ValueError: ``x`` not a float32 or bfloat16 CPU tensor, or ``threshold`` out of range.
        RuntimeError: the library could not be built (``status().detail`` says why).
    """
    if not isinstance(x, torch.Tensor) or x.dtype not in _SUFFIX or x.device.type != "cpu":
        got = f"{x.dtype} on {x.device}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a float32 or bfloat16 CPU tensor; got {got}")
    if not 1 <= threshold < 1 << 16:
        raise ValueError(f"threshold must be in [1, 65536); got {threshold}")
    if status().lib is None:
        raise RuntimeError(f"the compiled dropout kernel is not available: {status().detail}")
    return _Dropout.apply(x, int(threshold), float(scale))
