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

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (module, attribute; None for the module itself)
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "Additive": ("attnkit.scores", "Additive"),
    "Bilinear": ("attnkit.scores", "Bilinear"),
    "Distance": ("attnkit.scores", "Distance"),
    "Dot": ("attnkit.scores", "Dot"),
    "ScaledDot": ("attnkit.scores", "ScaledDot"),
    "attention": ("attnkit.functional", "attention"),
    "attention_weights": ("attnkit.functional", "attention_weights"),
    "choose_backend": ("attnkit.functional", "choose_backend"),
    "masked_softmax": ("attnkit.softmax", "masked_softmax"),
    "masks": ("attnkit.masks", None),
    "scores": ("attnkit.scores", None),
}

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

if TYPE_CHECKING:  # what static tools see; at run time these load on first use
    from . import masks, scores
    from .functional import attention, attention_weights, choose_backend
    from .scores import Additive, Bilinear, Distance, Dot, ScaledDot
    from .softmax import masked_softmax


def __getattr__(name: str) -> Any:
    """Import a public name, or a submodule (``attnkit.nn``), on first access."""
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = importlib.import_module(module)
        if attr is not None:
            value = getattr(value, attr)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    """The public names (``dir(attnkit)``), loaded or not."""
    return sorted([*_EXPORTS, "__version__"])
