"""The book's framework-neutral tensor names, for PyTorch.

"Dive into Deep Learning" writes one program for four frameworks, so its code
says ``d2l.reshape(X, shape)``, ``d2l.reduce_sum(X, 1)`` or ``d2l.float32``
where PyTorch code would say ``X.reshape(shape)``, ``X.sum(1)`` or
``torch.float32``. Each name here is exactly the PyTorch function or method
the book's ``d2l.torch`` maps it to: a torch function is the function itself
(``d2l.tensor is torch.tensor``), a method becomes a function of the tensor
first (``d2l.astype(X, d2l.int32)`` is ``X.type(torch.int32)``,
``d2l.transpose(X)`` is ``X.t()``). ``d2l.float`` and ``d2l.int`` are
``torch.float`` and ``torch.int``.
"""

from __future__ import annotations

import torch

__all__ = [
    "abs", "arange", "argmax", "astype", "batch_matmul", "concat", "cos", "cosh", "exp",
    "expand_dims", "eye", "float", "float32", "int", "int32", "int64", "linspace", "log",
    "matmul", "meshgrid", "normal", "numpy", "ones", "ones_like", "rand", "randn",
    "reduce_mean", "reduce_sum", "repeat", "reshape", "sigmoid", "sin", "sinh", "size",
    "stack", "swapaxes", "tanh", "tensor", "to", "transpose", "zeros", "zeros_like",
]

# Functions: torch's own.
ones, ones_like, zeros, zeros_like = torch.ones, torch.ones_like, torch.zeros, torch.zeros_like
tensor, arange, linspace, meshgrid, eye = (torch.tensor, torch.arange, torch.linspace,
                                           torch.meshgrid, torch.eye)
normal, rand, randn = torch.normal, torch.rand, torch.randn
sin, sinh, cos, cosh, tanh = torch.sin, torch.sinh, torch.cos, torch.cosh, torch.tanh
exp, log, abs, sigmoid = torch.exp, torch.log, torch.abs, torch.sigmoid
matmul, batch_matmul, concat, stack = torch.matmul, torch.bmm, torch.cat, torch.stack

# Dtypes (``d2l.float``/``d2l.int`` shadow the builtins only as attributes of d2l).
float32, int32, int64 = torch.float32, torch.int32, torch.int64
float, int = torch.float, torch.int


def numpy(x: torch.Tensor, *args, **kwargs):
    """``x`` as a NumPy array (detached from autograd; ``x`` must be on the CPU)."""
    return x.detach().numpy(*args, **kwargs)


def size(x: torch.Tensor, *args, **kwargs):
    """The number of elements of ``x`` (``x.numel()``)."""
    return x.numel(*args, **kwargs)


def reshape(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``x.reshape(shape)``."""
    return x.reshape(*args, **kwargs)


def to(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``x.to(device or dtype)``."""
    return x.to(*args, **kwargs)


def reduce_sum(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``x.sum(dims)``."""
    return x.sum(*args, **kwargs)


def reduce_mean(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``x.mean(dims)``."""
    return x.mean(*args, **kwargs)


def argmax(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``x.argmax(dim)``."""
    return x.argmax(*args, **kwargs)


def astype(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``x`` converted to a dtype (``x.type(dtype)``)."""
    return x.type(*args, **kwargs)


def transpose(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """The transpose of a matrix (``x.t()``: at most two dimensions)."""
    return x.t(*args, **kwargs)


def expand_dims(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``x`` with a new axis of size 1 (``x.unsqueeze(dim)``)."""
    return x.unsqueeze(*args, **kwargs)


def swapaxes(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``x`` with two axes exchanged (``x.swapaxes(a, b)``)."""
    return x.swapaxes(*args, **kwargs)


def repeat(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``x`` tiled (``x.repeat(sizes)``)."""
    return x.repeat(*args, **kwargs)
