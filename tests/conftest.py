"""Test-wide settings.

Without a GPU, Triton kernels run under Triton's interpreter, which must be
switched on before triton is first imported.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


#: A torch thread count that attnkit never picks by itself (it picks 1, the cores, or
#: what the load leaves): a test that starts from it sees whether a call gave it back.
START_THREADS = 3


@pytest.fixture
def three_threads():
    """Torch at :data:`START_THREADS` threads for the test; the caller's count after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(START_THREADS)
    yield START_THREADS
    torch.set_num_threads(before)
