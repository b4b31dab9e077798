"""Boolean attention masks.

One polarity everywhere: **True = may attend** (the polarity of
``torch.nn.functional.scaled_dot_product_attention``). Note that
``torch.nn.MultiheadAttention``'s ``key_padding_mask`` uses the opposite
(True = ignore); convert with ``~mask`` when moving between them.

All builders return masks that broadcast against attention scores of shape
``(B, ..., Nq, Nk)``. ``valid_lens``, causal masks and padded queries are all
*prefix* masks (a row may attend keys ``[0, e)``); :func:`prefix_mask` turns
such lengths into a mask. Shapes: see ``docs/shapes.md``.
"""

from __future__ import annotations

import torch

from ._checks import broadcast_shapes, check_valid_lens, normalize_causal, shape_str
from ._values import check_nonnegative_int

__all__ = [
    "causal_lengths",
    "causal_mask",
    "combine_masks",
    "key_padding_mask",
    "prefix_mask",
    "valid_lens_mask",
]


def prefix_mask(lengths: torch.Tensor, num_keys: int) -> torch.Tensor:
    """``lengths`` ``(...)`` → ``(..., Nk)``: position ``j`` may be attended iff ``j < length``.

    The one place lengths become a mask (unchecked: callers validate).
    """
    positions = torch.arange(num_keys, device=lengths.device)  # (Nk,)
    return positions < lengths.unsqueeze(-1)  # (..., Nk)


def key_padding_mask(valid_lens: torch.Tensor, num_keys: int) -> torch.Tensor:
    """Mask of real (non-padded) key positions, ``(B,) -> (B, Nk)``.

    Example, ``valid_lens = [2, 4]``, ``num_keys = 5``::

        [[T, T, F, F, F],
         [T, T, T, T, F]]

    Raises:
        ValueError: ``num_keys`` not a non-negative int; ``valid_lens`` not of
            shape ``(B,)`` or with values outside ``[0, num_keys]``.
        TypeError: ``valid_lens`` not an integer tensor.
    """
    check_nonnegative_int("num_keys", num_keys)
    device = valid_lens.device if isinstance(valid_lens, torch.Tensor) else None
    valid_lens = check_valid_lens(valid_lens, None, None, num_keys, device, bound="num_keys")
    return prefix_mask(valid_lens, num_keys)  # (B, Nk)


def valid_lens_mask(valid_lens: torch.Tensor, num_queries: int, num_keys: int) -> torch.Tensor:
    """Mask from d2l-style ``valid_lens``.

    ``valid_lens`` of shape ``(B,)`` (valid keys per sequence) gives a mask of
    shape ``(B, 1, Nk)``; of shape ``(B, Nq)`` (valid keys per query) gives
    ``(B, Nq, Nk)``. Key position ``j`` may be attended iff ``j < valid_len``.

    Example, ``valid_lens = [[1, 3], [2, 4]]``, ``Nk = 4``::

        batch 0: [[T, F, F, F],      batch 1: [[T, T, F, F],
                  [T, T, T, F]]                [T, T, T, T]]

    Raises:
        ValueError: ``num_queries``/``num_keys`` not non-negative ints;
            ``valid_lens`` of another shape or outside ``[0, num_keys]``.
        TypeError: ``valid_lens`` not integer.
    """
    check_nonnegative_int("num_queries", num_queries)
    check_nonnegative_int("num_keys", num_keys)
    device = valid_lens.device if isinstance(valid_lens, torch.Tensor) else None
    valid_lens = check_valid_lens(valid_lens, None, num_queries, num_keys, device,
                                  bound="num_keys")
    lens = valid_lens[:, None] if valid_lens.ndim == 1 else valid_lens  # (B, 1) or (B, Nq)
    return prefix_mask(lens, num_keys)  # (B, 1, Nk) or (B, Nq, Nk)


def causal_mask(num_queries: int, num_keys: int, *, align: str = "top_left",
                device: torch.device | str | None = None) -> torch.Tensor:
    """Look-ahead mask of shape ``(Nq, Nk)``: query ``i`` may not see later keys.

    ``align="top_left"`` (PyTorch SDPA's ``is_causal``): query ``i`` sees keys
    ``j <= i``. ``align="bottom_right"`` (flash-attn's convention, what a
    decoder with a key/value cache needs): query ``i`` sees keys
    ``j <= i + Nk - Nq``, so the *last* query sees every key. They agree
    when ``Nq == Nk``. Example with ``Nq = 2``, ``Nk = 5``::

        top_left          bottom_right
        T F F F F         T T T T F
        T T F F F         T T T T T

    With ``Nq > Nk`` and bottom-right alignment, the first ``Nq - Nk`` queries
    see nothing: their rows are all False (attnkit gives them zero weights).
    """
    return prefix_mask(causal_lengths(num_queries, num_keys, align=align, device=device),
                       num_keys)  # (Nq, Nk)


def causal_lengths(num_queries: int, num_keys: int, *, align: str = "top_left",
                   device: torch.device | str | None = None) -> torch.Tensor:
    """The causal mask as prefix lengths ``(Nq,)`` long: query ``i`` sees keys ``[0, e[i])``.

    ``e[i] = i + 1`` (``"top_left"``) or ``i + 1 + Nk - Nq`` (``"bottom_right"``),
    clamped to ``[0, Nk]``; :func:`causal_mask` is ``prefix_mask`` of these.
    """
    align = normalize_causal(align)
    if align is None:
        raise ValueError("align must be 'top_left' or 'bottom_right'; got None/False")
    check_nonnegative_int("num_queries", num_queries)
    check_nonnegative_int("num_keys", num_keys)
    offset = 0 if align == "top_left" else num_keys - num_queries
    rows = torch.arange(num_queries, device=device)  # (Nq,)
    return (rows + 1 + offset).clamp(min=0, max=num_keys)  # (Nq,)


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """Logical AND of boolean masks with broadcasting; ``None`` entries are skipped.

    A position may be attended only if every mask allows it. Returns ``None``
    when no mask is given.
    """
    out = None
    for i, m in enumerate(masks):
        if m is None:
            continue
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool:
            got = m.dtype if isinstance(m, torch.Tensor) else type(m).__name__
            raise TypeError(f"masks[{i}] must be a boolean tensor (True = may attend); got {got}")
        if out is None:
            out = m
            continue
        try:
            broadcast_shapes(out.shape, m.shape)
        except RuntimeError:
            raise ValueError(
                f"masks[{i}] of shape {shape_str(m.shape)} does not broadcast with the "
                f"combination so far {shape_str(out.shape)}"
            ) from None
        out = out & m
    return out
