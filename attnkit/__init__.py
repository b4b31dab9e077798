"""attnkit: attention mechanisms and the Transformer, correct on the awkward cases.

Conventions (one of each, everywhere):

* shapes are batch first: queries ``(B, ..., Nq, Dq)``, keys ``(B, ..., Nk, Dk)``,
  values ``(B, ..., Nk, Dv)``; multi-head internals ``(B, H, N, Dh)``;
* boolean masks mean **True = may attend** (as PyTorch's SDPA);
* ``valid_lens`` is ``(B,)`` (valid keys per sequence) or ``(B, Nq)`` (per query);
* a row with nothing to attend to gets zero weights and a zero output, never NaN;
* fp16/bf16 inputs are accumulated in float32 and returned in their dtype;
* backends are explicit: ``backend="reference" | ... | "auto"``.
"""

from . import masks, scores
from .functional import attention, attention_weights, choose_backend
from .scores import Additive, Bilinear, Distance, Dot, ScaledDot
from .softmax import masked_softmax

__version__ = "0.1.0"

__all__ = [
    "Additive",
    "Bilinear",
    "Distance",
    "Dot",
    "ScaledDot",
    "attention",
    "attention_weights",
    "choose_backend",
    "masked_softmax",
    "masks",
    "scores",
]
