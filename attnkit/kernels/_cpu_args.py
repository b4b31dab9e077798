"""The argument check both compiled CPU kernels' wrappers make before handing pointers to C."""

from __future__ import annotations

import torch

__all__ = ["check_float32"]


def check_float32(name: str, t: torch.Tensor, shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``t`` is a float32 CPU tensor of
    ``shape`` whose last dimension is contiguous (the kernels read rows as C arrays)."""
    if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or t.device.type != "cpu":
        got = f"{t.dtype} on {t.device}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a float32 CPU tensor; got {got}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}; got {tuple(t.shape)}")
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ValueError(f"{name} must be contiguous in its last dimension; strides "
                         f"{t.stride()}")
