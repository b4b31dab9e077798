"""Training in the default precision against fp32 on this machine.

Two trainers of one config (:class:`attnkit.train.trainer.Trainer`, the shipped Multi30k
config by default): one with ``bf16 = false``, one with the config's own setting (``auto``
in the shipped configs: bf16 autocast where the CPU runs it fast, fp32 elsewhere). The same
training batches go through each trainer's own ``train_step`` in rounds, the two
alternating and their order reversed every other round; a round's figure is its target
tokens over the process time it took (another process on another core moves it less than
the wall clock). Reported: what ``auto`` chose and why, target tokens/s of each round, the
medians and their ratio, against the target: ≥ 1.8× where the default precision is bf16,
and no slower than fp32 (≥ 0.95×, the noise of one such run) where it is fp32.

``attnkit bench precision --record`` writes its table to BENCHMARKS.md.
"""

from .._suite import TRAINING_ROUNDS, Flag, Suite, positive_int

SUITE = Suite(
    package=__name__,
    help="training in the default precision (bf16 = auto) against fp32, alternating",
    flags=(
        Flag("--config", "the training config (its [run] bf16 setting is the one compared)",
             default="configs/multi30k-de-en.toml"),
        Flag("--threads", "torch threads of both trainers", type=positive_int, default=1),
        *TRAINING_ROUNDS,
    ),
)
