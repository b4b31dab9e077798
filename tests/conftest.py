"""Test-wide settings.

Without a GPU, Triton kernels run under Triton's interpreter, which must be
switched on before triton is first imported.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
