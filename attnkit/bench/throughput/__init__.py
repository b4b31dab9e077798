"""Training throughput on real bucketed batches: attnkit's Transformer vs ``torch.nn.Transformer``.

Both models have the same sizes, embeddings (×√d), sinusoidal encodings and
output layer (the baseline is :class:`attnkit.bench.toolkit.TorchSeq2Seq`);
both see the same length-bucketed batches from :class:`attnkit.data.batching.BucketBatcher`
(Multi30k when the data root holds it, else the built-in date task),
one training step each (forward, label-smoothed loss, backward, Adam), in
alternation after warm-up. Reported: target tokens per second of each, and
the ratio attnkit / torch (higher is better for attnkit).

``attnkit bench throughput --record`` writes its table to BENCHMARKS.md between
its markers.
"""

from .._suite import TRAINING_ROUNDS, Flag, Suite, data_root_flag

SUITE = Suite(
    package=__name__,
    help="training throughput vs torch.nn.Transformer on real bucketed batches",
    flags=(
        Flag("--max-tokens", "tokens per batch", type=int, default=4096),
        *TRAINING_ROUNDS,
        data_root_flag("the built-in date task where it is absent"),
    ),
)
