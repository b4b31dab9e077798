"""Benchmarks that compare attnkit with PyTorch's own kernels, side by side.

* :mod:`attnkit.bench.attention` — attention backends on the CPU
  (``python -m attnkit.bench``, :func:`run_bench`);
* :mod:`attnkit.bench.transformer` — a Transformer training step.

Each writes its own marked section of ``BENCHMARKS.md``.
"""

from .attention import run_bench

__all__ = ["run_bench"]
