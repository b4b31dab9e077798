"""Median time of one multi-head self-attention forward + backward (B = 64 sequences of up to
24 tokens, d = 256, 8 heads, valid lengths drawn in [5, 24], the `auto` backend), one thread.

Usage, once per checkout being compared (alternate the runs):
    PYTHONPATH=CHECKOUT taskset -c 1 python benchmarks/attention_step.py LABEL
"""

from __future__ import annotations

import sys
import time

import torch

from attnkit.nn import MultiHeadAttention


def main(label: str) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    mha = MultiHeadAttention(256, 8, dropout=0.0)
    x = torch.randn(64, 24, 256, requires_grad=True)
    lens = torch.randint(5, 25, (64,))
    times = []
    for i in range(35):
        start = time.perf_counter()
        mha(x, x, x, lens).sum().backward()
        if i >= 5:  # warm-up
            times.append(time.perf_counter() - start)
    times.sort()
    print(f"{label}: {times[len(times) // 2] * 1e3:.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "attnkit")
