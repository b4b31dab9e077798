"""Capture the attention weights of every layer of a model, keyed by module name.

Example::

    with capture_attention(model) as weights:
        model(src, tgt_in, src_valid_lens)
    weights["encoder.blocks.0.attention"]          # (B, H, S, S)
    weights["decoder.blocks.1.cross_attention"]    # (B, H, T, S)

The names are those of ``model.named_modules()``, which is what
:func:`attnkit.viz.explorer.records_from_captures` reads. Outside the
``with`` block nothing is stored and the modules run their default (fused
where possible) path: capturing costs nothing when it is off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .attention import AttentionPooling
from .multihead import MultiHeadAttention

__all__ = ["attention_modules", "capture_attention"]

_CAPTURED = (MultiHeadAttention, AttentionPooling)


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every :class:`MultiHeadAttention` / :class:`AttentionPooling` in ``model``, by name."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    return {name: m for name, m in model.named_modules() if isinstance(m, _CAPTURED)}


@contextmanager
def capture_attention(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Turn on ``keep_weights`` in every attention module of ``model`` for the block.

    Yields a dict, filled as the model runs: module name → the detached
    weights of that module's most recent call, ``(B, H, Nq, Nk)`` for
    :class:`MultiHeadAttention` and ``(B, Nq, Nk)`` for single-head pooling
    (e.g. ``"decoder.attention"`` of the Bahdanau decoder, ``(B, T, S)`` over
    all steps of one decoder call). A module called several times (e.g. once
    per ``decode_step``) keeps its last call.

    On exit every module's ``keep_weights`` flag is restored and the hooks are
    removed (also when the block raises).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
    """
    modules = attention_modules(model)
    flags = {name: m.keep_weights for name, m in modules.items()}
    captured: dict[str, torch.Tensor] = {}
    handles = []

    # Each attention module and every module above it sync the captures after their
    # forward: a parent sees weights it assembles over several calls (e.g. the Bahdanau
    # decoder's steps, (B, T, S)), and the Transformer stacks run their blocks on packed
    # rows through ``forward_rows``, which no hook of the blocks sees.
    groups: dict[str, list[str]] = {}
    for name in modules:
        groups.setdefault(name, []).append(name)
        parent = name
        while parent:
            parent = parent.rpartition(".")[0]
            groups.setdefault(parent, []).append(name)
    owners = dict(model.named_modules())

    def sync(names: list[str]):
        def hook(module, args, output):
            for name in names:
                if modules[name].kept_weights is not None:
                    captured[name] = modules[name].kept_weights
        return hook

    try:
        for m in modules.values():
            m.keep_weights = True
            m.attention_weights = None
        for owner, names in groups.items():
            handles.append(owners[owner].register_forward_hook(sync(names)))
        yield captured
    finally:
        for h in handles:
            h.remove()
        for name, m in modules.items():
            m.keep_weights = flags[name]
            if not flags[name]:
                m.attention_weights = None
