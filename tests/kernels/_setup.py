"""Shared set-up of the kernel tests: the interpreter on CPU, device, dtypes, tolerance floors.

Without a GPU the kernels run under the Triton interpreter on CPU tensors, which needs
``TRITON_INTERPRET=1`` before triton is first imported (``tests/conftest.py`` sets it too).
"""

import os
import sys

import pytest
import torch

if not torch.cuda.is_available() and "triton" not in sys.modules:
    os.environ["TRITON_INTERPRET"] = "1"  # must precede the first import of triton

pytest.importorskip("triton", reason="triton is not installed")

from attnkit.kernels._triton_common import is_interpreting  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if DEVICE.type == "cpu" and not is_interpreting():
    pytest.skip(
        "no GPU, and triton was imported before TRITON_INTERPRET=1 was set "
        "(set it in the environment to run these tests on the CPU)",
        allow_module_level=True,
    )

# Floors of the error-relative tolerance rule of tests/kernels/_reference.py.
FLOOR = {torch.float16: 1e-3, torch.bfloat16: 1e-2, torch.float32: 1e-5}

# bf16 needs a GPU: the interpreter's numpy has no bfloat16.
DTYPES = [
    torch.float16,
    pytest.param(
        torch.bfloat16,
        marks=pytest.mark.skipif(
            DEVICE.type != "cuda",
            reason="bfloat16 is not supported by the Triton interpreter (numpy has no bf16)",
        ),
    ),
    torch.float32,
]


def per_query_lens(batch, nq, nk, seed=1):
    """(B, Nq) lengths in [0, Nk] with some zeros (rows that see nothing)."""
    gen = torch.Generator().manual_seed(seed)
    vl = torch.randint(0, nk + 1, (batch, nq), generator=gen)
    vl[0, 0] = 0
    vl[-1, nq // 2] = 0
    return vl.to(DEVICE)
