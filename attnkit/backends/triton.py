"""The ``triton`` backend: attnkit's fused Triton kernels behind the common interface.

Serves dot, scaled dot, bilinear and distance scores through
:func:`attnkit.kernels.flash_attention` (via :meth:`Score.as_dot`: bilinear
folds ``M`` into the queries, distance passes the per-key bias
``−‖k‖²/(2σ²)``), and additive scores through
:func:`attnkit.kernels.additive_attention`, which never stores the
``(B, Nq, Nk, h)`` features. ``valid_lens`` (``(B,)``/``(B, Nq)``) and both
causal alignments are built into the kernels: key blocks past a sequence's
valid length or the causal frontier are skipped.

Second-order gradients (``create_graph=True``, e.g. a gradient penalty) are
refused with one line naming the backend: the kernels' backward is not
itself differentiable. ``reference``, ``sdpa`` and ``chunked`` give them.

Leading batch dims are folded into one (``(B, P, N, D)`` → ``(B·P, 1, N, D)``
with ``P`` the product of the dims after ``B``, e.g. heads), and the key
lengths are the call's prefix lengths repeated per folded row
(:meth:`AttentionCall.prefix_lengths`: ``valid_lens`` and padded queries in
one ``(B·P, Nq)`` tensor), so every layout the reference takes works.

Runs on CUDA tensors. On CPU tensors it runs only under Triton's interpreter
(``TRITON_INTERPRET=1``, for tests: slow, no bf16) and only when asked for by
name; ``auto`` considers it for CUDA tensors only.

``auto`` rule (documented, not yet measured on a GPU): on CUDA, ``triton`` is
preferred for additive scores (the alternatives materialize or chunk the
``(B, Nq, Nk, h)`` features); for dot-product scores ``auto`` keeps ``sdpa``
until a GPU measurement shows the fused kernel faster.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

from ..scores import Additive
from .base import AttentionCall, Backend, first_order_only, values_reason

__all__ = ["TritonBackend"]

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@functools.cache
def _triton_installed() -> bool:
    """Whether triton can be imported (looked up once: ``auto`` asks on every call)."""
    return importlib.util.find_spec("triton") is not None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


class TritonBackend(Backend):
    name = "triton"
    handles_query_valid_lens = True  # padded queries have prefix length 0

    def unsupported_reason(self, call: AttentionCall) -> str | None:
        if not _triton_installed():
            return "triton is not installed (pip install 'attnkit[triton]')"
        q, k, v = call.queries, call.keys, call.values
        if values_reason(call) is not None:
            return values_reason(call)
        if q.device.type != "cuda" and not _interpreting():
            return "needs CUDA tensors (on CPU only under TRITON_INTERPRET=1)"
        if q.dtype not in _DTYPES:
            return f"dtype {q.dtype} (takes float16, bfloat16, float32)"
        if q.dtype == torch.bfloat16 and q.device.type != "cuda":
            return "bfloat16 under the Triton interpreter (numpy has no bfloat16)"
        if call.mask is not None:
            return "a boolean mask= (the kernels take valid_lens and causal only)"
        if v is None:
            return "no values"
        if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
            return "broadcast batch dims (queries, keys and values must share them)"
        if max(q.shape[-1], k.shape[-1], v.shape[-1]) > 256:
            return "feature sizes above 256"
        if call.score.needs_whole_rows:
            return f"score '{call.score.name}' depends on heads/positions the kernels fold away"
        if isinstance(call.score, Additive):
            if call.dropout_p > 0:
                return "dropout with additive scores (the fused additive kernel has none)"
            return None
        if call.score.as_dot(q[..., :0, :], k[..., :0, :]) is None:
            return f"score '{call.score.name}' has no dot-product form"
        return None

    def auto_reason(self, call: AttentionCall) -> str | None:
        if call.queries.device.type != "cuda":
            return "auto uses triton on CUDA tensors only"
        if not isinstance(call.score, Additive):
            return "dot-product scores stay on sdpa until the GPU table is measured"
        return None

    def forward(self, call: AttentionCall) -> torch.Tensor:
        q, k, v = call.queries, call.keys, call.values
        batch = q.shape[:-2]
        vl = None  # the kernels apply causal themselves; lengths only when there are any
        if call.valid_lens is not None or call.query_valid_lens is not None:
            vl = call.prefix_lengths(fold=True)  # (B·P, Nq), P = prod(batch[1:])
        q3 = q.reshape(-1, q.shape[-2], q.shape[-1])  # (B·P, Nq, Dq)
        k3 = k.reshape(-1, k.shape[-2], k.shape[-1])  # (B·P, Nk, Dk)
        v3 = v.reshape(-1, v.shape[-2], v.shape[-1])  # (B·P, Nk, Dv)
        if isinstance(call.score, Additive):
            from ..kernels import additive_attention

            s = call.score
            out = additive_attention(q3, k3, v3, s.W_q.weight, s.W_k.weight,
                                     s.w_v.weight.view(-1), valid_lens=vl, causal=call.causal)
        else:
            from ..kernels import flash_attention

            form = call.score.as_dot(q3, k3)
            bias = None if form.key_bias is None else form.key_bias.reshape(-1, k3.shape[-2])
            out = flash_attention(form.queries.unsqueeze(1), form.keys.unsqueeze(1),
                                  v3.unsqueeze(1), scale=form.scale, key_bias=bias,
                                  valid_lens=vl, causal=call.causal,
                                  dropout_p=call.dropout_p).squeeze(1)  # (B·P, Nq, Dv)
        out = first_order_only(out, self.name, "its fused kernels' backward is not differentiable")
        return out.reshape(*batch, q.shape[-2], v.shape[-1])  # (*batch, Nq, Dv)
