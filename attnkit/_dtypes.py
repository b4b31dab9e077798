"""Dtype facts shared by every layer: which floating dtypes are computed in float32.

fp16 and bf16 have too few mantissa bits for a softmax and its sums (``exp`` of
a few hundred scores, added up, loses the small terms), so the layers that take
them compute in float32 and return the input dtype.
"""

from __future__ import annotations

import torch

__all__ = ["LOW_PRECISION"]

#: Floating dtypes whose scores, softmax and accumulations run in float32.
LOW_PRECISION = (torch.float16, torch.bfloat16)
