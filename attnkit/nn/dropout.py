"""Dropout whose random numbers cost a quarter of ``nn.Dropout``'s on the CPU.

Dropout (Srivastava et al., 2014; "Attention Is All You Need" §5.4) zeroes
each element with probability ``p`` and scales the rest by ``1/(1 − p)``.
On the CPU, ``torch.nn.functional.dropout`` draws one Bernoulli sample per
element from the Mersenne Twister, single-threaded, and in a small Transformer
that is a large share of a training step (BENCHMARKS.md, "Training throughput
on bucketed batches", has the profile's figure). :class:`Dropout` draws
64 random bits per call of the generator instead and uses them as four
16-bit uniforms, so an element is kept when its uniform is at least
``round(p · 2^16)``: the drop probability is ``p`` rounded to a multiple of
``2^-16`` (|error| ≤ 7.7·10⁻⁶), and the scale ``1/(1 − p')`` uses that
rounded ``p'``, so the expectation of the output equals the input exactly.

Randomness comes from torch's default generator (``torch.manual_seed``
reproduces it, and checkpoints that save the RNG state resume it). On other
devices, where ``F.dropout`` is a fused kernel, it is used unchanged.

Float32 and bfloat16 CPU tensors go through a compiled kernel (:mod:`attnkit.kernels.cpu_dropout`)
with the same rule and scale: one pass forward (output and mask) and one backward,
instead of five passes of torch ops; its 64-bit draws are counter-based, seeded from
the default generator (other masks than the torch-op path's, as reproducible). Other
dtypes, and machines where it is not built, take the torch ops below.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import cpu_dropout

__all__ = ["Dropout", "dropout"]


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Functional form of :class:`Dropout` (same shape and dtype as ``x``)."""
    if not 0.0 <= p <= 1.0:  # (NaN too)
        raise ValueError(f"dropout probability p must be in [0, 1]; got {p}")
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training=True)
    kept = cpu_dropout.rule(p)  # drop when the 16-bit uniform is below the threshold
    if kept is None:  # p within 2^-17 of 0 (nothing dropped) or of 1 (torch's exact rule)
        return x if p < 0.5 else F.dropout(x, p, training=True)
    threshold, scale = kept
    if cpu_dropout.usable(x):  # float32, bfloat16: one compiled pass each way, other random numbers
        return cpu_dropout.dropout(x, threshold, scale)
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None)
    uniforms = words.view(torch.int16)[:n].view(x.shape)  # each in [-2^15, 2^15)
    keep = uniforms >= threshold - (1 << 15)
    return torch.where(keep, x * scale, x.new_zeros(()))


class Dropout(nn.Dropout):
    """``nn.Dropout`` with four 16-bit uniforms per random draw on the CPU.

    Shapes: any; returns the shape and dtype of the input. Identity in eval
    mode and for ``p = 0``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
