"""Benchmark suites that compare attnkit with PyTorch's own kernels, side by side.

* :mod:`attnkit.bench.attention` — attention backends on the CPU;
* :mod:`attnkit.bench.transformer` — a Transformer training step on one padded batch;
* :mod:`attnkit.bench.throughput` — training throughput on real bucketed batches;
* :mod:`attnkit.bench.gpu` — the Triton kernels against SDPA's backends (CUDA only);
* :mod:`attnkit.bench.threads` — training throughput idle and under load, per threads setting;
* :mod:`attnkit.bench.decoding` — attnkit's search against CTranslate2 on the same run;
* :mod:`attnkit.bench.peers` — attnkit against JoeyNMT 2.3.0, equal training budget.

Every suite has the same shape: ``run(**options)`` measures and returns a
result with ``summary()`` (terminal lines), ``markdown(command)`` (its section
of ``BENCHMARKS.md``) and ``markers``; :func:`attnkit.bench.report.record`
writes that section. From the shell: ``attnkit bench SUITE [--record [FILE]]``.
"""

#: suite name -> module; the modules import PyTorch, so they are not imported here
SUITES = {
    "attention": "attnkit.bench.attention",
    "transformer": "attnkit.bench.transformer",
    "throughput": "attnkit.bench.throughput",
    "gpu": "attnkit.bench.gpu",
    "threads": "attnkit.bench.threads",
    "decoding": "attnkit.bench.decoding",
    "peers": "attnkit.bench.peers",
}

__all__ = ["SUITES"]
