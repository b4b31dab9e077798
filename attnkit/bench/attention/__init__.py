"""Attention benchmark: attnkit's backends against PyTorch's own kernels on the CPU.

Every workload is timed in one process, side by side: after a warm-up the
contenders run in alternation, round after round, and the median of the
rounds is reported, with the ratio to attnkit (``speedup`` = this
contender's median / attnkit's median, so > 1 means attnkit is faster).

Contenders per workload (where they apply):

* ``attnkit:<backend>`` — :func:`attnkit.attention` with ``backend="auto"``
  (the backend ``auto`` chose is named);
* ``reference`` — the book-style materializing implementation;
* ``sdpa+mask`` — :func:`torch.nn.functional.scaled_dot_product_attention`
  given the equivalent boolean mask (it computes every padded key);
* ``flex (compiled)`` — ``torch.nn.attention.flex_attention`` under
  ``torch.compile`` with a block mask, where it compiles; otherwise the
  reason is reported.

Columns: median milliseconds; GFLOP/s counting only the FLOPs that are
needed (valid keys of real queries; backward counted as 2.5× the forward,
the convention of flash-attention's benchmarks; ``tanh`` counted as one FLOP);
the fraction of this machine's matmul peak measured in the same run with a
large matmul in the same dtype; peak memory, measured with
``torch.profiler`` memory events (the maximum of the running sum of
allocations and frees during one call, i.e. memory beyond the inputs).

Run ``attnkit bench attention`` (``--quick`` for a small smoke run; ``--record``
writes the table to ``BENCHMARKS.md`` between the markers
``<!-- bench:cpu-attention:start -->`` and ``<!-- bench:cpu-attention:end -->``).
"""

from .._suite import Flag, Suite

SUITE = Suite(
    package=__name__,
    help="attention backends vs the reference, SDPA with a mask and FlexAttention (CPU)",
    flags=(
        Flag("--quick", "tiny shapes, few repeats (smoke run)", switch=True),
        Flag("--repeats", "timed rounds (default 7; 3 quick)", type=int),
        Flag("--no-flex", "skip compiled FlexAttention", switch=True),
        Flag("--no-big", "skip the N=4096 additive run", switch=True),
    ),
    convert=lambda a: dict(quick=a.quick, repeats=a.repeats,
                             flex=False if a.no_flex else None, big=not a.no_big,
                             verbose=True),
)
