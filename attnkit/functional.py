"""One entry point for attention: ``attention`` (outputs) and ``attention_weights``.

Three layers, each usable alone: :func:`attention_weights` gives the weights,
:func:`attention` the output, and the modules in :mod:`attnkit.nn` wrap them.
"""

from __future__ import annotations

import torch

from ._checks import check_dropout, check_mask, check_qkv, check_valid_lens, normalize_causal
from .backends import AttentionCall, BackendChoice, explain_choice, reference_weights
from .scores import Score, resolve_score

__all__ = ["attention", "attention_weights", "choose_backend", "make_call"]


def make_call(queries, keys, values, *, score="scaled_dot", valid_lens=None, mask=None,
              causal=False, dropout_p=0.0) -> AttentionCall:
    """Validate the arguments of :func:`attention` into an :class:`AttentionCall`."""
    batch = check_qkv(queries, keys, values)
    score = resolve_score(score)
    score.check_sizes(queries.shape[-1], keys.shape[-1])
    num_queries, num_keys = queries.shape[-2], keys.shape[-2]
    valid_lens = check_valid_lens(valid_lens, batch[0], num_queries, num_keys, queries.device)
    mask = check_mask(mask, (*batch, num_queries, num_keys), queries.device)
    return AttentionCall(
        queries=queries, keys=keys, values=values, score=score, valid_lens=valid_lens,
        mask=mask, causal=normalize_causal(causal),
        dropout_p=check_dropout("dropout_p", dropout_p), batch_shape=batch,
    )


def attention(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, *,
              score: str | Score = "scaled_dot", valid_lens: torch.Tensor | None = None,
              mask: torch.Tensor | None = None, causal: bool | str = False,
              dropout_p: float = 0.0, backend: str = "auto") -> torch.Tensor:
    """Attention pooling ``softmax(a(Q, K)) V`` over the keys that may be attended.

    Shapes:
        queries: ``(B, ..., Nq, Dq)``; keys: ``(B, ..., Nk, Dk)``; values:
        ``(B, ..., Nk, Dv)``. Extra leading dims (e.g. heads) broadcast like
        ``torch.matmul``.
        valid_lens: ``(B,)`` or ``(B, Nq)`` integer, keys ``j >= valid_len`` ignored.
        mask: boolean, broadcastable to ``(B, ..., Nq, Nk)``; **True = may attend**.
        returns: ``(B, ..., Nq, Dv)`` in the dtype of the inputs.

    Args:
        score: ``"dot"``, ``"scaled_dot"`` (default), ``"distance"`` or a
            :class:`attnkit.scores.Score` instance (``Bilinear``, ``Additive``,
            ``Distance(sigma)``, ``ScaledDot(scale)``…).
        causal: ``False``; ``True`` or ``"top_left"`` (query ``i`` sees keys
            ``j <= i``, as SDPA's ``is_causal``); ``"bottom_right"`` (query
            ``i`` sees keys ``j <= i + Nk - Nq``, for decoding with a cache).
            See :func:`attnkit.masks.causal_mask`.
        dropout_p: dropout on the attention weights, always applied when > 0
            (modules pass 0 in eval mode).
        backend: ``"auto"`` or a name from :func:`attnkit.backends.available_backends`.
            An explicit backend that cannot serve the call raises ``ValueError``.

    Rows with no key to attend to (``valid_len == 0``, a fully masked row,
    or a causal row that sees nothing) produce zero output rows.
    """
    call = make_call(queries, keys, values, score=score, valid_lens=valid_lens, mask=mask,
                     causal=causal, dropout_p=dropout_p)
    from .backends import select_backend

    return select_backend(call, backend).forward(call)


def attention_weights(queries: torch.Tensor, keys: torch.Tensor, *,
                      score: str | Score = "scaled_dot",
                      valid_lens: torch.Tensor | None = None,
                      mask: torch.Tensor | None = None,
                      causal: bool | str = False) -> torch.Tensor:
    """The attention weights ``(B, ..., Nq, Nk)`` that :func:`attention` would use.

    Same arguments and semantics as :func:`attention` (without values and
    dropout); always materialized. Each row sums to 1 over its valid keys,
    0 beyond them, and is all zeros when it has no valid key.
    """
    call = make_call(queries, keys, None, score=score, valid_lens=valid_lens, mask=mask,
                     causal=causal)
    return reference_weights(call)


def choose_backend(queries, keys, values, *, score="scaled_dot", valid_lens=None, mask=None,
                   causal=False, dropout_p=0.0, backend="auto") -> BackendChoice:
    """What ``attention(..., backend=backend)`` would run, and why (runs nothing).

    Example::

        >>> print(attnkit.choose_backend(q, k, v, score=additive))
        auto -> reference
    """
    call = make_call(queries, keys, values, score=score, valid_lens=valid_lens, mask=mask,
                     causal=causal, dropout_p=dropout_p)
    return explain_choice(call, backend)
