"""Benchmark suites that compare attnkit with PyTorch's own kernels, side by side.

Each suite is a package here, named in :data:`SUITES`, the one list of them:

* :mod:`attnkit.bench.attention` — attention backends on the CPU;
* :mod:`attnkit.bench.transformer` — a Transformer training step on one padded batch;
* :mod:`attnkit.bench.throughput` — training throughput on real bucketed batches;
* :mod:`attnkit.bench.precision` — training in the default precision (bf16 = auto) against fp32;
* :mod:`attnkit.bench.gpu` — the Triton kernels against SDPA's backends (CUDA only);
* :mod:`attnkit.bench.threads` — training throughput idle and under load, per threads setting;
* :mod:`attnkit.bench.decoding` — attnkit's search against CTranslate2 on the same run;
* :mod:`attnkit.bench.peers` — attnkit against JoeyNMT 2.3.0 or eole 0.6.4, equal budget;
* :mod:`attnkit.bench.attention_step` — one multi-head attention training pass (per checkout);
* :mod:`attnkit.bench.output_limits` — decoding when every output runs to its limit (per checkout);
* :mod:`attnkit.bench.explorer_pages` — explorer pages in headless Chromium;
* :mod:`attnkit.bench.d2l_book` — the book's trained sections under the book's d2l and ours.

A suite's package says what it measures and declares itself, torch-free: its
help line and options, as a :class:`attnkit.bench._suite.Suite` (see there).
Its ``measure`` module does the work: ``run(**options)`` measures and returns a
result with ``summary()`` (terminal lines), ``markdown(command)`` (its section
of ``BENCHMARKS.md``) and ``markers``; :func:`attnkit.bench.report.record`
writes that section. What the suites share is :mod:`attnkit.bench.toolkit`.
From the shell: ``attnkit bench SUITE [--record [FILE]]``.
"""

from __future__ import annotations

import importlib

from ._suite import Suite

#: every suite, in the order ``attnkit bench --help`` lists them: a package of this one each
SUITES = ("attention", "transformer", "throughput", "precision", "gpu", "threads", "decoding",
          "peers", "attention_step", "output_limits", "explorer_pages", "d2l_book")


def declared() -> dict[str, Suite]:
    """Each suite's declaration by name, in :data:`SUITES` order (imports no torch:
    only the suites' packages, not their ``measure`` modules)."""
    return {name: importlib.import_module(f"{__name__}.{name}").SUITE for name in SUITES}


__all__ = ["SUITES", "Suite", "declared"]
