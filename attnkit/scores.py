"""Attention scoring functions a(q, k) (d2l §11.3 and its exercises).

Each score is a small ``nn.Module`` whose ``forward(queries, keys)`` returns
the raw scores ``(..., Nq, Nk)`` for queries ``(..., Nq, Dq)`` and keys
``(..., Nk, Dk)``; leading dims broadcast like ``torch.matmul``. Scores with
parameters (bilinear ``M``, additive ``W_q, W_k, w_v``, distance bandwidth
``sigma``) carry them, so they can be passed to :func:`attnkit.attention` or
owned by a module.

Scores that are a dot product in disguise also describe themselves as one
(:meth:`Score.as_dot`): ``a(q, k) = scale * q'ᵀk + bias_k (+ terms constant
per query)``. Fused backends use that form; it gives the same softmax weights.

Named scores: :data:`SCORE_REGISTRY` is the one list of names (name → how to
build the score for queries and keys of size ``Dh``), :data:`SCORE_NAMES` its
names, and :func:`make_score` the one way a name becomes a Score (every module
and the functional API go through it). Shapes: ``docs/shapes.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from . import _names
from ._lazy import deprecated_alias
from ._values import check_choice, check_finite, check_positive_int

__all__ = [
    "Additive",
    "Bilinear",
    "Distance",
    "Dot",
    "DotForm",
    "SCORE_NAMES",
    "SCORE_REGISTRY",
    "Score",
    "ScaledDot",
    "ScoreSpec",
    "make_score",
    "resolve_score",
]


@dataclass
class DotForm:
    """A score rewritten as ``scale * queries @ keys.T + key_bias[..., None, :]``.

    ``key_bias`` is ``None`` or ``(..., Nk)``; terms that depend only on the
    query are dropped because softmax over keys cancels them.
    """

    queries: torch.Tensor
    keys: torch.Tensor
    scale: float
    key_bias: torch.Tensor | None = None


class Score(nn.Module):
    """Base class of scoring functions ``a(q, k)``.

    Scores compute in the dtype of their inputs and cast their parameters to
    it. :func:`attnkit.attention` and :func:`attnkit.attention_weights` pass
    fp16/bf16 queries and keys as float32 on their materialized path, so no
    score is ever evaluated in half precision there (a half ``q·k`` overflows
    beyond 65504).
    """

    name: str = "score"
    #: True for scores whose value depends on where a block of queries/keys sits
    #: in the whole matrix (e.g. ALiBi's per-head ``slope · (j − i)``): backends
    #: that evaluate the score on blocks or on folded batches refuse them.
    needs_whole_rows: bool = False

    def check_sizes(self, query_size: int, key_size: int) -> None:
        """Raise ``ValueError`` if this score cannot pair these feature sizes."""
        if query_size != key_size:
            raise ValueError(
                f"score '{self.name}' needs queries and keys of the same size "
                f"(Dq == Dk); got Dq={query_size}, Dk={key_size}. "
                "Use attnkit.scores.Bilinear for different sizes"
            )

    def as_dot(self, queries: torch.Tensor, keys: torch.Tensor) -> DotForm | None:
        """The equivalent dot-product form, or ``None`` if there is none."""
        return None

    def extra_repr(self) -> str:
        return ""


class Dot(Score):
    """Dot-product score ``a(q, k) = qᵀk``. Needs ``Dq == Dk``."""

    name = "dot"

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return queries @ keys.transpose(-1, -2)  # (..., Nq, Nk)

    def as_dot(self, queries, keys):
        return DotForm(queries, keys, 1.0)


class ScaledDot(Score):
    """Scaled dot-product score ``a(q, k) = qᵀk / √d`` (d2l eq. 11.3.2).

    ``d = Dq = Dk``. Dividing by √d keeps the variance of the scores near 1
    for unit-variance inputs, so softmax does not saturate as ``d`` grows.
    Pass ``scale`` to use another factor (the score is then ``scale · qᵀk``).
    """

    name = "scaled_dot"

    def __init__(self, scale: float | None = None):
        super().__init__()
        self.scale = scale

    def forward(self, queries, keys):
        scores = queries @ keys.transpose(-1, -2)  # (..., Nq, Nk)
        if self.scale is None:
            return scores / math.sqrt(queries.shape[-1])  # as in d2l
        return scores * self.scale

    def as_dot(self, queries, keys):
        scale = self.scale if self.scale is not None else 1.0 / math.sqrt(queries.shape[-1])
        return DotForm(queries, keys, scale)

    def extra_repr(self):
        return "" if self.scale is None else f"scale={self.scale}"


class Bilinear(Score):
    """Bilinear score ``a(q, k) = qᵀ M k`` with a learned ``M ∈ R^{Dq×Dk}``.

    d2l §11.3 exercise 2: dot attention for queries and keys of different
    sizes, adjusted by a matrix. ``M`` is initialised like ``nn.Linear``'s
    weight, so ``qᵀM`` has roughly unit-variance entries. ``scaled=True``
    divides by √Dk as scaled dot does.
    """

    name = "bilinear"

    def __init__(self, query_size: int, key_size: int, *, scaled: bool = False):
        super().__init__()
        check_positive_int("query_size", query_size)
        check_positive_int("key_size", key_size)
        self.query_size, self.key_size, self.scaled = query_size, key_size, scaled
        self.M = nn.Parameter(torch.empty(query_size, key_size))
        nn.init.uniform_(self.M, -1.0 / math.sqrt(query_size), 1.0 / math.sqrt(query_size))

    def check_sizes(self, query_size, key_size):
        if (query_size, key_size) != (self.query_size, self.key_size):
            raise ValueError(
                f"score 'bilinear' has M of shape ({self.query_size}, {self.key_size}) "
                f"= (Dq, Dk); got queries with Dq={query_size} and keys with Dk={key_size}"
            )

    def _scale(self) -> float:
        return 1.0 / math.sqrt(self.key_size) if self.scaled else 1.0

    def forward(self, queries, keys):
        qm = queries @ self.M.to(queries.dtype)  # (..., Nq, Dk)
        scores = qm @ keys.transpose(-1, -2)  # (..., Nq, Nk)
        return scores.mul_(self._scale()) if self.scaled else scores

    def as_dot(self, queries, keys):
        return DotForm(queries @ self.M.to(queries.dtype), keys, self._scale())

    def extra_repr(self):
        return f"query_size={self.query_size}, key_size={self.key_size}, scaled={self.scaled}"


class Additive(Score):
    """Additive (Bahdanau) score ``a(q, k) = w_vᵀ tanh(W_q q + W_k k)`` (d2l eq. 11.3.7).

    ``W_q ∈ R^{h×Dq}``, ``W_k ∈ R^{h×Dk}``, ``w_v ∈ R^h``, all without bias,
    so queries and keys may have different sizes. ``query_size``/``key_size``
    may be left ``None`` to infer them on first use (as the book's
    ``LazyLinear``). The reference evaluation materializes a
    ``(..., Nq, Nk, h)`` tensor, as the book does; the ``chunked`` and
    ``triton`` backends do not.
    """

    name = "additive"

    def __init__(self, num_hiddens: int, query_size: int | None = None,
                 key_size: int | None = None):
        super().__init__()
        self.num_hiddens = check_positive_int("num_hiddens", num_hiddens)
        self.W_q = (nn.Linear(query_size, num_hiddens, bias=False) if query_size
                    else nn.LazyLinear(num_hiddens, bias=False))
        self.W_k = (nn.Linear(key_size, num_hiddens, bias=False) if key_size
                    else nn.LazyLinear(num_hiddens, bias=False))
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)

    def check_sizes(self, query_size, key_size):
        for name, lin, size in (("W_q", self.W_q, query_size), ("W_k", self.W_k, key_size)):
            if isinstance(lin, nn.LazyLinear) and lin.has_uninitialized_params():
                continue
            if lin.in_features != size:
                which = "queries (Dq)" if name == "W_q" else "keys (Dk)"
                raise ValueError(
                    f"score 'additive' has {name} for inputs of size {lin.in_features}; "
                    f"got {which} of size {size}"
                )

    def project(self, queries, keys) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W_q q, W_k k)``: ``(..., Nq, h)`` and ``(..., Nk, h)``, in the inputs' dtype."""
        return _linear(self.W_q, queries), _linear(self.W_k, keys)

    def forward(self, queries, keys):
        q, k = self.project(queries, keys)  # (..., Nq, h), (..., Nk, h)
        features = torch.tanh(q.unsqueeze(-2) + k.unsqueeze(-3))  # (..., Nq, Nk, h)
        return _linear(self.w_v, features).squeeze(-1)  # (..., Nq, Nk)

    def extra_repr(self):
        return f"num_hiddens={self.num_hiddens}"


def _linear(lin: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``lin(x)`` in the dtype of ``x`` (the weight cast like ``Bilinear.M``): fp16
    parameters score float32 inputs, as the reference path upcasts half inputs."""
    if isinstance(lin, nn.LazyLinear) and lin.has_uninitialized_params():
        return lin(x)  # infers in_features, as the book's LazyLinear
    return nn.functional.linear(x, lin.weight.to(x.dtype))


class Distance(Score):
    """Distance (RBF / Gaussian kernel) score ``a(q, k) = −‖q − k‖² / (2σ²)``.

    d2l §11.3 exercise 1. Computed from squared norms,
    ``‖q − k‖² = ‖q‖² − 2qᵀk + ‖k‖²``, so it costs one matrix product like dot
    attention. In the softmax over keys the ``‖q‖²`` term cancels, which is
    why only the squared key norms are needed: the dot form is
    ``qᵀk/σ² − ‖k‖²/(2σ²)``. ``sigma`` is the kernel bandwidth.
    """

    name = "distance"

    def __init__(self, sigma: float = 1.0):
        super().__init__()
        self.sigma = check_finite("sigma", sigma, above=0)

    def forward(self, queries, keys):
        q_sq = (queries * queries).sum(-1, keepdim=True)  # (..., Nq, 1)
        k_sq = (keys * keys).sum(-1).unsqueeze(-2)  # (..., 1, Nk)
        scores = queries @ keys.transpose(-1, -2)  # (..., Nq, Nk): qᵀk
        # in place on the fresh product: one (Nq, Nk) buffer, autograd-safe
        return scores.mul_(2).sub_(q_sq).sub_(k_sq).div_(2 * self.sigma ** 2)

    def as_dot(self, queries, keys):
        inv = 1.0 / self.sigma ** 2
        kf = keys.to(torch.promote_types(keys.dtype, torch.float32))  # ≥ fp32 accumulation
        key_bias = (kf * kf).sum(-1) * (-0.5 * inv)  # (..., Nk)
        return DotForm(queries, keys, inv, key_bias)

    def extra_repr(self):
        return f"sigma={self.sigma}"


@dataclass(frozen=True)
class ScoreSpec:
    """How the score of one name is built for queries and keys of size ``Dh``."""

    #: ``build(Dh)`` → a new Score for queries and keys of size ``Dh``.
    build: Callable[[int], Score]
    #: the constructor to name when the score has learned parameters (so it
    #: cannot be built without sizes); ``None`` for scores without parameters.
    learned: str | None = None


#: The one registry of named scores: name → :class:`ScoreSpec`. Additive
#: attention built for size ``Dh`` has hidden size ``h = Dh``; bilinear has
#: ``M`` of shape ``(Dh, Dh)``.
SCORE_REGISTRY: dict[str, ScoreSpec] = {
    "dot": ScoreSpec(lambda size: Dot()),
    "scaled_dot": ScoreSpec(lambda size: ScaledDot()),
    "distance": ScoreSpec(lambda size: Distance()),
    "additive": ScoreSpec(lambda size: Additive(size, size, size),
                          "Additive(num_hiddens, query_size, key_size)"),
    "bilinear": ScoreSpec(lambda size: Bilinear(size, size), "Bilinear(query_size, key_size)"),
}

#: The accepted score names, in registry order (for configs and command lines).
SCORE_NAMES: tuple[str, ...] = _names.SCORE_NAMES
if tuple(SCORE_REGISTRY) != SCORE_NAMES:  # pragma: no cover - caught by any import
    raise RuntimeError("SCORE_REGISTRY and attnkit._names.SCORE_NAMES disagree")


def make_score(score: str | Score, size: int | None = None) -> Score:
    """A :class:`Score` from a name of :data:`SCORE_NAMES` or an instance (returned as is).

    ``size`` is ``Dh``, the size of the queries and keys the score will see
    (e.g. one head); names of scores with learned parameters (``"additive"``,
    ``"bilinear"``) need it, the others ignore it.

    Raises:
        TypeError: ``score`` neither a str nor a Score.
        ValueError: an unknown name, or a score with parameters without ``size``.
    """
    if isinstance(score, Score):
        return score
    check_choice("score", score, SCORE_NAMES, alternative="an attnkit.scores.Score")
    spec = SCORE_REGISTRY[score]
    if size is None and spec.learned is not None:
        raise ValueError(
            f"score={score!r} carries learned parameters; pass an instance, e.g. "
            f"attnkit.scores.{spec.learned}"
        )
    return spec.build(check_positive_int("size", size, allow_none=True))


resolve_score = deprecated_alias(make_score, "attnkit.scores.resolve_score",
                                 "attnkit.scores.make_score")
