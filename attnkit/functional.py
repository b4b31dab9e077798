"""One entry point for attention: ``attention`` (outputs) and ``attention_weights``.

Three layers, each usable alone: :func:`attention_weights` gives the weights,
:func:`attention` the output, and the modules in :mod:`attnkit.nn` wrap them.

Precision: fp16/bf16 inputs are scored, normalized and summed with float32
accumulation on every backend; the ``reference`` and weights paths upcast
queries and keys *before* the score, so a ``q·k`` beyond fp16's 65504 stays
finite, as in the fused kernels. Outputs and weights come back in the input
dtype. Mixed dtypes (fp16 queries with fp32 keys…) raise ``TypeError`` naming
each argument's dtype: nothing is promoted silently.

Empty axes: the same result on every backend, forward and backward
(``docs/shapes.md``, "Empty axes"):

* ``B = 0`` (or another batch dim), ``Nq = 0`` or ``Dv = 0``: an empty
  output ``(B, ..., Nq, Dv)``.
* ``Nk = 0``: every row has nothing to attend to, so the output is zeros
  ``(B, ..., Nq, Dv)`` and the weights ``(B, ..., Nq, 0)`` (the empty-row
  rule); ``valid_lens``, if given, must be 0.
* In these cases the gradients of queries, keys, values and the score's
  parameters are zeros of their shapes, and no backend kernel runs (the
  backend is still checked: one that cannot serve the call raises).
* ``Dq = 0`` or ``Dk = 0``: ``ValueError`` (a score over zero features is
  undefined: scaled dot would divide by √0, and a constant 0 score would give
  uniform weights the user did not ask for).

Meta tensors (shapes only, to estimate sizes before allocating), ``torch.func``
transforms (``vmap``, ``grad``, ``jacrev``) and ``torch.jit.trace`` are served
by the ``reference`` backend, which ``auto`` picks for them; the fast backends
refuse them by name (they plan from the lengths' values). ``torch.jit.script``
cannot compile this Python dispatch and says so in one line
(:func:`refuse_script`); trace instead, or use ``torch.compile``.
"""

from __future__ import annotations

from typing import Literal, overload

import torch

from ._checks import (
    check_mask,
    check_qkv,
    check_query_valid_lens,
    check_valid_lens,
    normalize_causal,
)
from ._lazy import deprecated_alias
from ._values import check_probability
from .backends import (
    AttentionCall,
    BackendChoice,
    check_backend_name,
    float_weights,
    reference_weights,
    select_backend,
    to_input_dtype,
    weighted_values,
    zero_output,
)
from .backends import explain_backend as _explain_call
from .scores import Score, make_score

__all__ = ["attention", "attention_weights", "choose_backend", "explain_backend", "make_call",
           "refuse_script"]


def make_call(queries, keys, values, *, score="scaled_dot", valid_lens=None, mask=None,
              causal=False, dropout_p=0.0, query_valid_lens=None) -> AttentionCall:
    """Validate the arguments of :func:`attention` into an :class:`AttentionCall`."""
    batch = check_qkv(queries, keys, values)
    score = make_score(score)
    score.check_sizes(queries.shape[-1], keys.shape[-1])
    num_queries, num_keys = queries.shape[-2], keys.shape[-2]
    device = queries.device
    return AttentionCall(
        queries=queries, keys=keys, values=values, score=score,
        valid_lens=check_valid_lens(valid_lens, batch[0], num_queries, num_keys, device),
        mask=check_mask(mask, (*batch, num_queries, num_keys), device),
        causal=normalize_causal(causal),
        dropout_p=check_probability("dropout_p", dropout_p), batch_shape=batch,
        query_valid_lens=check_query_valid_lens(query_valid_lens, batch[0], num_queries,
                                                device),
    )


@overload
def attention(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, *,
              score: str | Score = ..., valid_lens: torch.Tensor | None = ...,
              mask: torch.Tensor | None = ..., causal: bool | str = ...,
              dropout_p: float = ..., query_valid_lens: torch.Tensor | None = ...,
              backend: str = ..., return_weights: Literal[False] = ...) -> torch.Tensor: ...


@overload
def attention(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, *,
              score: str | Score = ..., valid_lens: torch.Tensor | None = ...,
              mask: torch.Tensor | None = ..., causal: bool | str = ...,
              dropout_p: float = ..., query_valid_lens: torch.Tensor | None = ...,
              backend: str = ..., return_weights: Literal[True]
              ) -> tuple[torch.Tensor, torch.Tensor]: ...


def attention(queries, keys, values, *, score="scaled_dot", valid_lens=None, mask=None,
              causal=False, dropout_p=0.0, query_valid_lens=None, backend="auto",
              return_weights=False):
    """Attention pooling ``softmax(a(Q, K)) V`` over the keys that may be attended.

    Shapes (symbols: ``docs/shapes.md``):
        queries: ``(B, ..., Nq, Dq)``; keys: ``(B, ..., Nk, Dk)``; values:
        ``(B, ..., Nk, Dv)``. Extra leading dims (e.g. heads) broadcast like
        ``torch.matmul``.
        valid_lens: ``(B,)`` or ``(B, Nq)`` integer, keys ``j >= valid_len`` ignored.
        mask: boolean, broadcastable to ``(B, ..., Nq, Nk)``; **True = may attend**.
        returns: ``(B, ..., Nq, Dv)`` in the dtype of the inputs; with
        ``return_weights=True`` the pair ``(out, weights)``, weights
        ``(B, ..., Nq, Nk)``.

    Args:
        score: a parameter-free name of :data:`attnkit.scores.SCORE_NAMES`
            (``"dot"``, ``"scaled_dot"`` (default), ``"distance"``) or a
            :class:`attnkit.scores.Score` instance (``Bilinear``, ``Additive``,
            ``Distance(sigma)``, ``ScaledDot(scale)``…).
        causal: ``False``; ``True`` or ``"top_left"`` (query ``i`` sees keys
            ``j <= i``, as SDPA's ``is_causal``); ``"bottom_right"`` (query
            ``i`` sees keys ``j <= i + Nk - Nq``, for decoding with a cache).
            See :func:`attnkit.masks.causal_mask`.
        dropout_p: dropout on the weights when > 0 (modules pass 0 in eval mode).
        query_valid_lens: optional ``(B,)`` integer: query rows
            ``i >= query_valid_lens[b]`` are padding. Their output rows are
            zero, and fast backends skip computing them (with ``valid_lens``
            this is how padded self-attention costs only the real tokens).
        backend: ``"auto"`` or a name from :func:`attnkit.backends.available_backends`.
            An explicit backend that cannot serve the call raises ``ValueError``.
        return_weights: also return the attention weights. They are computed
            on the materialized path (the ``reference`` computation, whatever
            ``backend`` says; the name is still checked), *before* dropout:
            each row sums to 1 over its valid keys and is all zeros for a row
            with nothing to attend to or a padded query, exactly as
            :func:`attention_weights`. The output is ``dropout(weights) @ values``,
            so with ``dropout_p > 0`` it uses the dropped weights, not the
            returned ones. Modules that keep weights (``keep_weights=True``)
            use this.

    Rows with no key to attend to (``valid_len == 0``, fully masked, a causal
    row that sees nothing, or every valid score ``-inf``) and rows of padded
    queries produce zero output rows, on every backend.

    Empty axes ``B``, ``Nq``, ``Nk``, ``Dv`` = 0 give zeros of the output's
    shape; ``Dq``/``Dk`` = 0 raise ``ValueError``; mixed dtypes raise
    ``TypeError``; half inputs are scored in float32 (see the module docs).
    """
    call = make_call(queries, keys, values, score=score, valid_lens=valid_lens, mask=mask,
                     causal=causal, dropout_p=dropout_p, query_valid_lens=query_valid_lens)
    if return_weights:
        return _attention_with_weights(call, backend)
    chosen = select_backend(call, backend)
    if call.is_empty:  # no key, or nothing to output: zeros on every backend
        return zero_output(call)  # (*batch, Nq, Dv)
    out = chosen.forward(call)  # (*batch, Nq, Dv)
    if call.query_valid_lens is not None and not chosen.handles_query_valid_lens:
        out = out * call.query_valid_mask().to(out.dtype)  # padded query rows -> 0
    return out


def _attention_with_weights(call: AttentionCall, backend: str):
    """``(out, weights)`` on the materialized path (``return_weights=True``)."""
    if backend != "auto":
        check_backend_name(backend)  # an unknown name raises, as without weights
    weights = float_weights(call)  # (*batch, Nq, Nk), float32 for half inputs
    out = weighted_values(call, weights)  # (*batch, Nq, Dv), dropout applied
    return out, to_input_dtype(weights, call.queries.dtype)


def refuse_script():
    """``__prepare_scriptable__`` of the entry points and modules: ``torch.jit.script``
    calls it first, so it refuses in one line instead of failing deep in its compiler
    on the Python dispatch (backends, dataclasses, scores as objects)."""
    raise TypeError(
        "torch.jit.script cannot compile attnkit attention (it dispatches over Python "
        "backends); use torch.jit.trace (it runs the 'reference' backend) or torch.compile")


attention.__prepare_scriptable__ = refuse_script


def attention_weights(queries: torch.Tensor, keys: torch.Tensor, *,
                      score: str | Score = "scaled_dot",
                      valid_lens: torch.Tensor | None = None,
                      mask: torch.Tensor | None = None,
                      causal: bool | str = False,
                      query_valid_lens: torch.Tensor | None = None) -> torch.Tensor:
    """The attention weights ``(B, ..., Nq, Nk)`` that :func:`attention` would use.

    Same arguments and semantics as :func:`attention` (without values and
    dropout); always materialized, with float32 scores and softmax for
    fp16/bf16 inputs, returned in the input dtype. Each row sums to 1 over its
    valid keys, 0 beyond them, and is all zeros when it has no valid key or is
    a padded query (``i >= query_valid_lens[b]``). Empty axes as in
    :func:`attention`: ``Nk = 0`` gives ``(B, ..., Nq, 0)``.
    """
    call = make_call(queries, keys, None, score=score, valid_lens=valid_lens, mask=mask,
                     causal=causal, query_valid_lens=query_valid_lens)
    return reference_weights(call)


attention_weights.__prepare_scriptable__ = refuse_script


def explain_backend(queries, keys, values, *, score="scaled_dot", valid_lens=None, mask=None,
                    causal=False, dropout_p=0.0, query_valid_lens=None,
                    backend="auto") -> BackendChoice:
    """What ``attention(..., backend=backend)`` would run, and why (runs nothing):
    :func:`attnkit.backends.explain_backend` of the call these arguments make.

    Example::

        >>> print(attnkit.explain_backend(q, k, v, score=additive))
        auto -> reference
    """
    call = make_call(queries, keys, values, score=score, valid_lens=valid_lens, mask=mask,
                     causal=causal, dropout_p=dropout_p, query_valid_lens=query_valid_lens)
    return _explain_call(call, backend)


choose_backend = deprecated_alias(explain_backend, "attnkit.choose_backend",
                                  "attnkit.explain_backend")
