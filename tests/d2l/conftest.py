"""Helpers of the attnkit.d2l tests: materialize lazy modules, then work in float64."""

import pytest
import torch


def materialize(module, *inputs):
    """Run ``module`` once in float32 (lazy sizes are inferred), then make it float64."""
    module(*[x.float() if torch.is_tensor(x) and x.is_floating_point() else x
             for x in inputs])
    return module.double()


def params(module):
    """The module's parameters by the book's names (a copy detached from autograd)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)
