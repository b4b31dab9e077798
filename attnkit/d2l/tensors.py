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


def _method(name: str, method: str, doc: str):
    """The tensor method ``method`` as the function ``name`` of the tensor first:
    ``name(x, *args, **kwargs)`` is ``x.method(*args, **kwargs)``, as in the book's
    ``d2l.torch``."""
    def function(x: torch.Tensor, *args, **kwargs):
        return getattr(x, method)(*args, **kwargs)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc
    return function


size = _method("size", "numel", "The number of elements of ``x`` (``x.numel()``).")
reshape = _method("reshape", "reshape", "``x.reshape(shape)``.")
to = _method("to", "to", "``x.to(device or dtype)``.")
reduce_sum = _method("reduce_sum", "sum", "``x.sum(dims)``.")
reduce_mean = _method("reduce_mean", "mean", "``x.mean(dims)``.")
argmax = _method("argmax", "argmax", "``x.argmax(dim)``.")
astype = _method("astype", "type", "``x`` converted to a dtype (``x.type(dtype)``).")
transpose = _method("transpose", "t",
                    "The transpose of a matrix (``x.t()``: at most two dimensions).")
expand_dims = _method("expand_dims", "unsqueeze",
                      "``x`` with a new axis of size 1 (``x.unsqueeze(dim)``).")
swapaxes = _method("swapaxes", "swapaxes", "``x`` with two axes exchanged (``x.swapaxes(a, b)``).")
repeat = _method("repeat", "repeat", "``x`` tiled (``x.repeat(sizes)``).")
