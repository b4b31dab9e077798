"""Attention modules with the book's call signature (d2l §11.3).

``forward(queries, keys, values, valid_lens=None)`` → ``(B, Nq, Dv)``, as in
"Dive into Deep Learning", plus keyword-only ``mask=`` (boolean, **True = may
attend**) and ``causal=``. Differences from the book, on purpose:

* a row with no valid key (``valid_len == 0``) gets zero weights and a zero
  output (the book's ``-1e6`` fill gives uniform weights over padding);
* weights are kept only on demand: with ``keep_weights=True`` the module
  fills ``.attention_weights`` ``(B, ..., Nq, Nk)`` after each forward
  (``attnkit.attention(..., return_weights=True)``: the materialized path,
  weights before dropout); by default nothing is stored and the fastest
  backend that serves the call runs (``backend="auto"``). Reading
  ``.attention_weights`` when nothing was kept raises an error that says
  so (the book's modules always keep them: :mod:`attnkit.d2l` does too).

Lazy sizes (``AdditiveAttention`` without ``query_size``/``key_size``) are
inferred from the first call's inputs before any backend runs, so every
backend, ``triton`` included, sees materialized parameters.

Dropout acts on the attention weights in training mode only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from .._values import check_probability
from ..backends import check_backend_name
from ..functional import attention, refuse_script
from ..scores import Additive, Bilinear, Distance, Dot, ScaledDot, Score

__all__ = [
    "NOT_KEPT",
    "AdditiveAttention",
    "AttentionPooling",
    "BilinearAttention",
    "DistanceAttention",
    "DotProductAttention",
]


#: The message of reading ``.attention_weights`` that were not kept.
NOT_KEPT = (
    "{name}.attention_weights were not kept: build it with keep_weights=True (or set "
    "module.keep_weights = True, or wrap the call in attnkit.nn.capture_attention(model)) "
    "and call it again; the book-compatible modules of attnkit.d2l always keep them"
)


class KeptWeights:
    """Mixin: ``.attention_weights`` that raises, naming ``keep_weights=True``, when the
    module kept nothing (instead of handing back ``None``)."""

    _attention_weights: torch.Tensor | None = None

    @property
    def attention_weights(self) -> torch.Tensor:
        """The weights of the last forward call (kept only with ``keep_weights=True``).

        Raises:
            RuntimeError: nothing was kept (``keep_weights`` off, or no call yet).
        """
        if self._attention_weights is None:
            raise RuntimeError(NOT_KEPT.format(name=type(self).__name__))
        return self._attention_weights

    @attention_weights.setter
    def attention_weights(self, value: torch.Tensor | None) -> None:
        self._attention_weights = value

    @property
    def kept_weights(self) -> torch.Tensor | None:
        """The kept weights, or ``None`` when nothing was kept (never raises)."""
        return self._attention_weights

    def __dir__(self):
        """Without ``attention_weights`` while nothing is kept: tools that read every name
        ``dir`` lists (``torch.jit.trace``, ``inspect.getmembers``) would meet its error,
        which ``hasattr`` does not swallow."""
        names = super().__dir__()
        return names if self._attention_weights is not None else \
            [n for n in names if n != "attention_weights"]

    def __prepare_scriptable__(self):
        """``torch.jit.script`` asks this first: one line instead of a compiler error deep
        in the Python dispatch (use ``torch.jit.trace`` or ``torch.compile``)."""
        refuse_script()


def materialize_lazy(score: nn.Module, queries: torch.Tensor, keys: torch.Tensor) -> None:
    """Infer the sizes of ``score``'s lazy layers (``nn.LazyLinear``) from ``queries`` and
    ``keys`` by scoring zero queries, so a backend that reads the parameters directly
    (``triton``, ``chunked``) never meets an uninitialized one."""
    if any(isinstance(m, LazyModuleMixin) and m.has_uninitialized_params()
           for m in score.modules()):
        with torch.no_grad():
            score(queries[..., :0, :], keys)  # (..., 0, Nk): sizes only, no work


class AttentionPooling(KeptWeights, nn.Module):
    """Attention pooling with any :class:`attnkit.scores.Score`.

    The four named modules below are this class with a fixed score.
    """

    def __init__(self, score: Score, dropout: float = 0.0, *, backend: str = "auto",
                 keep_weights: bool = False):
        super().__init__()
        if not isinstance(score, Score):
            raise TypeError(f"score must be an attnkit.scores.Score; got {type(score).__name__}")
        self.score = score
        self.dropout = check_probability("dropout", dropout)
        self.backend = check_backend_name(backend)
        self.keep_weights = keep_weights
        self.attention_weights = None

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                valid_lens: torch.Tensor | None = None, *, mask: torch.Tensor | None = None,
                causal: bool | str = False) -> torch.Tensor:
        """queries ``(B, .., Nq, Dq)``, keys ``(B, .., Nk, Dk)``, values
        ``(B, .., Nk, Dv)``, valid_lens ``(B,)``/``(B, Nq)`` → ``(B, .., Nq, Dv)``."""
        if isinstance(queries, torch.Tensor) and isinstance(keys, torch.Tensor):
            materialize_lazy(self.score, queries, keys)
        p = self.dropout if self.training else 0.0
        args = dict(score=self.score, valid_lens=valid_lens, mask=mask, causal=causal,
                    dropout_p=p, backend=self.backend)
        if not self.keep_weights:
            return attention(queries, keys, values, **args)  # (B, .., Nq, Dv)
        out, weights = attention(queries, keys, values, return_weights=True, **args)
        self.attention_weights = weights.detach()  # (B, .., Nq, Nk)
        return out  # (B, .., Nq, Dv)

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}, backend={self.backend!r}, keep_weights={self.keep_weights}"


class DotProductAttention(AttentionPooling):
    """Scaled dot-product attention ``softmax(QKᵀ/√d) V`` (d2l eq. 11.3.5).

    ``scaled=False`` gives plain dot-product attention ``softmax(QKᵀ) V``.
    Queries and keys must share the size ``d``.
    """

    def __init__(self, dropout: float = 0.0, scaled: bool = True, *, backend: str = "auto",
                 keep_weights: bool = False):
        super().__init__(ScaledDot() if scaled else Dot(), dropout, backend=backend,
                         keep_weights=keep_weights)


class AdditiveAttention(AttentionPooling):
    """Additive (Bahdanau) attention, score ``w_vᵀ tanh(W_q q + W_k k)`` (d2l eq. 11.3.7).

    ``query_size``/``key_size`` may be omitted to infer them lazily on the
    first call, as the book's ``LazyLinear`` does. The parameters live in
    ``self.score`` (``W_q``, ``W_k``, ``w_v``) and are also reachable as
    ``self.W_q`` etc. for code written against the book.
    """

    def __init__(self, num_hiddens: int, dropout: float = 0.0, *,
                 query_size: int | None = None, key_size: int | None = None,
                 backend: str = "auto", keep_weights: bool = False):
        super().__init__(Additive(num_hiddens, query_size, key_size), dropout, backend=backend,
                         keep_weights=keep_weights)

    @property
    def W_q(self) -> nn.Module:
        return self.score.W_q

    @property
    def W_k(self) -> nn.Module:
        return self.score.W_k

    @property
    def w_v(self) -> nn.Module:
        return self.score.w_v


class BilinearAttention(AttentionPooling):
    """Bilinear attention, score ``qᵀ M k`` for queries and keys of different sizes.

    d2l §11.3 exercise 2. ``M`` has shape ``(query_size, key_size)``.
    """

    def __init__(self, query_size: int, key_size: int, dropout: float = 0.0, *,
                 scaled: bool = False, backend: str = "auto", keep_weights: bool = False):
        super().__init__(Bilinear(query_size, key_size, scaled=scaled), dropout,
                         backend=backend, keep_weights=keep_weights)


class DistanceAttention(AttentionPooling):
    """Distance (RBF) attention, score ``−‖q − k‖²/(2σ²)`` (d2l §11.3 exercise 1).

    Keys close to the query get the largest weights; ``sigma`` sets how fast
    the weight falls with distance.
    """

    def __init__(self, dropout: float = 0.0, sigma: float = 1.0, *, backend: str = "auto",
                 keep_weights: bool = False):
        super().__init__(Distance(sigma), dropout, backend=backend, keep_weights=keep_weights)
