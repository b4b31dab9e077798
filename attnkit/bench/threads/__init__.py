"""Training throughput on a shared machine: idle, and with one competing CPU-bound process.

For each thread setting (1, every core, and ``auto`` — :func:`attnkit.runtime.choose_threads`)
the same training steps (the Multi30k config's model sizes, bucketed batches
of the built-in date task) are timed on the idle machine and again while
another process spins on one core. Reported: target tokens per second, and
loaded / idle. The rule behind ``auto`` must keep the loaded throughput at
≥ 0.4× the idle one (two OpenMP threads on two cores collapse when one core is
taken: every parallel region waits for the descheduled thread).

``attnkit bench threads --record`` writes the table to BENCHMARKS.md.
"""

from .._suite import TRAINING_ROUNDS, Suite

SUITE = Suite(
    package=__name__,
    help="training throughput idle and with one competing process, per threads setting",
    flags=TRAINING_ROUNDS,
)
