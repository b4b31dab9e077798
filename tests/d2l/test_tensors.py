"""attnkit.d2l's tensor names: the very functions the book's ``d2l.torch`` maps them to."""

import torch
from torch import nn

from attnkit import d2l


def test_tensor_names_are_the_books_aliases():
    X = d2l.arange(6, dtype=d2l.float32)
    assert d2l.tensor is torch.tensor and d2l.concat is torch.cat and d2l.float32 is torch.float32
    assert d2l.float is torch.float and d2l.int is torch.int and d2l.int32 is torch.int32
    M = d2l.reshape(X, (2, 3))
    assert d2l.transpose(M).shape == (3, 2) and d2l.swapaxes(M, 0, 1).shape == (3, 2)
    assert d2l.astype(M, d2l.int32).dtype == torch.int32
    assert d2l.reduce_sum(M, 1).tolist() == [3.0, 12.0] and d2l.argmax(M, 1).tolist() == [2, 2]
    assert d2l.expand_dims(X, 1).shape == (6, 1) and d2l.numpy(M).shape == (2, 3)
    assert d2l.to(M, d2l.cpu()).device.type == "cpu" and d2l.size(M) == 6
    assert d2l.reduce_mean(M).item() == 2.5 and d2l.repeat(X, 2).shape == (12,)
    for name in ("ones", "zeros", "normal", "rand", "randn", "abs", "exp", "sin", "eye"):
        assert getattr(d2l, name) is getattr(torch, name)
    assert d2l.plt.__name__ == "matplotlib.pyplot" and d2l.nn_Module is nn.Module
