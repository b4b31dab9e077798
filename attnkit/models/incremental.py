"""A lean decoding step for :class:`attnkit.models.Transformer` at inference.

:meth:`Transformer.decode_step` runs the decoder's modules, which check their
inputs, pack and unpack positions, and build an attention call per module
and step. While decoding one token per sentence with a trained model none of
that changes from step to step, and for a small model it costs as much as
the arithmetic. :func:`lean_step` computes the same step from the modules'
weights with the fewest tensor ops: per layer the fused ``[W_q; W_k; W_v]``
product, one SDPA call over the self-attention cache, the query product and
one masked SDPA call over the cached encoder keys, the FFN and the layer
norms. It uses the same :class:`~attnkit.nn.KVCache` objects as the modules
(a step of either kind may follow the other), and the same kernels in the same
order, so its logits equal ``decode_step``'s (tests compare them).

:func:`lean_verdict` decides whether a decoding takes it and :func:`lean_reason` says
why a model or state cannot (then
``decode_step`` runs the modules): training mode or autograd, attention
weights being captured, a score other than scaled dot product, grouped-query
heads, rotary or ALiBi positions (their scores), a backend other than ``auto``/``sdpa``,
encoder keys not cached yet (the first step), a source of length 0.
"""

from __future__ import annotations

import enum
import math

import torch
import torch.nn.functional as F

from ..nn.multihead import KVCache, MultiHeadAttention, fused_weights
from ..scores import ScaledDot

__all__ = ["Lean", "lean_reason", "lean_step", "lean_verdict"]

_BACKENDS = ("auto", "sdpa")


def _attention_reason(mha: MultiHeadAttention) -> str | None:
    if type(mha.score) is not ScaledDot or mha.score.scale is not None:
        return f"score {mha.score.name!r} (the lean step is for the default scaled dot)"
    if mha.num_kv_heads != mha.num_heads:
        return "grouped-query heads"
    if mha.rotary is not None:
        return "rotary positions"
    if mha.keep_weights:
        return "attention weights are being kept"
    if mha.backend not in _BACKENDS:
        return f"backend {mha.backend!r}"
    return None


class Lean(enum.Enum):
    """Whether a decoding takes :func:`lean_step`: decided once, at its first step that has
    the encoder keys cached; until then ``UNDECIDED``."""

    UNDECIDED = "undecided"  # no step with the encoder keys cached has run yet
    ON = "on"  # every step of one token takes the lean step
    OFF = "off"  # every step runs the modules


def lean_verdict(model, state) -> tuple[Lean, str | None]:
    """``(ON, None)`` when ``model`` can take :func:`lean_step` on ``state`` now; else
    ``OFF`` and why, or ``UNDECIDED`` and why at the first step (ask again at the next)."""
    if model.training or torch.is_grad_enabled():
        return Lean.OFF, "training mode or autograd on"
    if not state.caches or not state.caches[0][1].filled or not len(state.caches[0][0]):
        return Lean.UNDECIDED, "the first step (encoder keys not cached yet)"
    for blk in model.decoder.blocks:
        for mha in (blk.self_attention, blk.cross_attention):
            reason = _attention_reason(mha)
            if reason is not None:
                return Lean.OFF, reason
    lens = state.src_valid_lens
    if lens is not None and not bool((lens > 0).all()):
        return Lean.OFF, "a source of length 0"
    return Lean.ON, None


def lean_reason(model, state) -> str | None:
    """Why ``model`` cannot take :func:`lean_step` on ``state`` now (``None``: it can)."""
    return lean_verdict(model, state)[1]


def _norm(ln: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


def _sublayer(addnorm, x: torch.Tensor, fn) -> torch.Tensor:
    """Residual and layer norm around ``fn``, post-LN or pre-LN as ``addnorm`` says."""
    if addnorm.pre_norm:
        return x + fn(_norm(addnorm.ln, x))
    return _norm(addnorm.ln, x + fn(x))


def _qkv_weights(mha: MultiHeadAttention, fused: dict) -> tuple:
    """``[W_q; W_k; W_v]`` and its bias, concatenated once per decoding (``fused``)."""
    key = id(mha)
    if key not in fused:
        fused[key] = fused_weights(mha.W_q, mha.W_k, mha.W_v)
    return fused[key]


def _heads(y: torch.Tensor, mha: MultiHeadAttention) -> torch.Tensor:
    """``(B, H·Dh)`` → ``(B, H, 1, Dh)``, the layout of the modules' caches."""
    return y.view(y.shape[0], 1, mha.num_heads, mha.head_dim).transpose(1, 2)


def _self_attend(mha: MultiHeadAttention, z: torch.Tensor, cache: KVCache,
                 fused: dict) -> torch.Tensor:
    qkv = F.linear(z, *_qkv_weights(mha, fused))  # (B, 3d)
    q, k, v = qkv.split(mha.num_hiddens, -1)
    keys, values = cache.update(_heads(k, mha), _heads(v, mha))  # (B, H, N, Dh)
    out = F.scaled_dot_product_attention(_heads(q, mha), keys, values,
                                         scale=1.0 / math.sqrt(mha.head_dim))
    return F.linear(out.reshape(z.shape[0], mha.num_hiddens), mha.W_o.weight, mha.W_o.bias)


def _cross_attend(mha: MultiHeadAttention, z: torch.Tensor, cache: KVCache,
                  key_ok: torch.Tensor | None) -> torch.Tensor:
    q = _heads(F.linear(z, mha.W_q.weight, mha.W_q.bias), mha)  # (B, H, 1, Dh)
    out = F.scaled_dot_product_attention(q, cache.keys, cache.values, attn_mask=key_ok,
                                         scale=1.0 / math.sqrt(mha.head_dim))
    return F.linear(out.reshape(z.shape[0], mha.num_hiddens), mha.W_o.weight, mha.W_o.bias)


def _ffn(ffn, z: torch.Tensor) -> torch.Tensor:
    hidden = ffn.activation(F.linear(z, ffn.dense1.weight, ffn.dense1.bias))
    return F.linear(hidden, ffn.dense2.weight, ffn.dense2.bias)


def lean_step(model, tokens: torch.Tensor, state, fused: dict) -> torch.Tensor:
    """Logits ``(B, 1, V)`` of the next token after ``tokens`` ``(B, 1)``; appends to the
    self-attention caches of ``state`` (``state.position`` is advanced by the caller).
    ``fused`` keeps the concatenated projection weights between steps."""
    dec = model.decoder
    x = dec.embed(tokens, state.position)[:, 0]  # (B, d)
    key_ok = None
    if state.src_valid_lens is not None:
        S = state.caches[0][1].keys.shape[-2]
        key_ok = (torch.arange(S, device=x.device) < state.src_valid_lens[:, None])
        key_ok = key_ok[:, None, None, :]  # (B, 1, 1, S)
    for blk, caches in zip(dec.blocks, state.caches):
        x = _block_step(blk, x, caches, key_ok, fused)
    return model.output(dec.final_norm(x))[:, None]  # (B, 1, V)


def _block_step(blk, x: torch.Tensor, caches: tuple[KVCache, KVCache],
                key_ok: torch.Tensor | None, fused: dict) -> torch.Tensor:
    """One decoder block on ``x`` ``(B, d)``: self-attention, cross-attention, FFN."""
    self_cache, cross_cache = caches
    x = _sublayer(blk.addnorm1, x,
                  lambda z: _self_attend(blk.self_attention, z, self_cache, fused))
    x = _sublayer(blk.addnorm2, x,
                  lambda z: _cross_attend(blk.cross_attention, z, cross_cache, key_ok))
    return _sublayer(blk.addnorm3, x, lambda z: _ffn(blk.ffn, z))  # (B, d)
