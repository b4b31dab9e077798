"""Fused attention kernels: Triton (CUDA tensors, or CPU tensors under
``TRITON_INTERPRET=1``) and two compiled C kernels for the CPU.

Importing this package does not import triton; each name below loads its module on
first use, so the rest of attnkit works where triton is absent.
``attnkit.kernels.cpu_additive`` holds the CPU kernel for additive score blocks (C,
compiled on first use by ``attnkit.kernels._build``), which the ``chunked`` backend uses;
``attnkit.kernels.cpu_step`` the one for a decoding step's attention, which
:meth:`attnkit.nn.MultiHeadAttention.step` uses.

- :func:`flash_attention` — scaled-dot attention, ``(B, H, N, D)`` layout, GQA/MQA,
  key bias, valid lengths, top-left/bottom-right causal masks, dropout.
- :func:`additive_attention` — additive (Bahdanau) attention, ``(B, N, D)`` layout.
"""

from importlib import import_module

_EXPORTS = {
    "flash_attention": "triton_flash",
    "flash_dropout_mask": "triton_flash",
    "flash_block_sizes": "triton_flash",
    "additive_attention": "triton_additive",
    "additive_block_sizes": "triton_additive",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
