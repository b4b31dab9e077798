"""The smallest problem the book's framework trains: a line fitted by one linear layer.

Shared by the framework's tests and the programs that show its progress (they import it
from the checkout, which their ``PYTHONPATH`` names).
"""

import torch
from torch import nn

from attnkit import d2l


class Line(d2l.DataModule):
    """y = 2x − 1 with noise: 32 training rows, 8 validation rows."""

    def __init__(self, batch_size=8):
        super().__init__()
        self.save_hyperparameters()
        g = torch.Generator().manual_seed(0)
        self.X = torch.randn(40, 1, generator=g)
        self.y = 2 * self.X - 1 + 0.01 * torch.randn(40, 1, generator=g)

    def get_dataloader(self, train):
        idx = slice(0, 32) if train else slice(32, None)
        return self.get_tensorloader((self.X, self.y), train, idx)


class Regression(d2l.Module):
    def __init__(self, lr):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(1, 1)

    def loss(self, y_hat, y):
        return ((y_hat - y) ** 2).mean()
