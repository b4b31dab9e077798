"""attnkit: attention mechanisms and the Transformer, correct on the awkward cases.

Conventions (one of each, everywhere):

* shapes are batch first: queries ``(B, ..., Nq, Dq)``, keys ``(B, ..., Nk, Dk)``,
  values ``(B, ..., Nk, Dv)``; multi-head internals ``(B, H, N, Dh)``;
* boolean masks mean **True = may attend** (as PyTorch's SDPA);
* ``valid_lens`` is ``(B,)`` (valid keys per sequence) or ``(B, Nq)`` (per query);
* a row with nothing to attend to gets zero weights and a zero output, never NaN;
* fp16/bf16 inputs are accumulated in float32 and returned in their dtype;
* backends are explicit: ``backend="reference" | ... | "auto"``.

The names below are imported on first use (PEP 562), so ``import attnkit``
and the command line's ``--help`` do not load PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_attributes
from ._version import __version__

_WHERE = {
    **dict.fromkeys(["Additive", "Bilinear", "Distance", "Dot", "ScaledDot"], ".scores"),
    **dict.fromkeys(["attention", "attention_weights", "choose_backend", "explain_backend"],
                    ".functional"),
    "masked_softmax": ".softmax",
    "masks": ".masks",
    "scores": ".scores",
}
__all__ = [  # the names of _WHERE, spelled out for static tools
    "Additive", "Bilinear", "Distance", "Dot", "ScaledDot", "__version__", "attention",
    "attention_weights", "choose_backend", "explain_backend", "masked_softmax", "masks",
    "scores",
]

if TYPE_CHECKING:  # what static tools see; at run time these load on first use
    from . import masks, scores
    from .functional import attention, attention_weights, choose_backend, explain_backend
    from .scores import Additive, Bilinear, Distance, Dot, ScaledDot
    from .softmax import masked_softmax

__getattr__, _dir = lazy_attributes(__name__, _WHERE, submodules=True)


def __dir__() -> list[str]:
    """The public names (``dir(attnkit)``), loaded or not."""
    return [*_dir(), "__version__"]
