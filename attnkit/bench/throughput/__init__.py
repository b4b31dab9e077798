"""Training throughput on real bucketed batches: attnkit's Transformer vs ``torch.nn.Transformer``.

Both models have the same sizes, embeddings (×√d), sinusoidal encodings and
output layer (the baseline is :class:`attnkit.bench.toolkit.TorchSeq2Seq`);
both see the same length-bucketed batches from :class:`attnkit.data.batching.BucketBatcher`
(Multi30k when the data root holds it, else the built-in date task),
one training step each (forward, label-smoothed loss, backward, Adam), in
alternation after warm-up. Reported: target tokens per second of each, and
the ratio attnkit / torch (higher is better for attnkit), and each model's
model-FLOP utilization: its tokens/s times the model FLOPs of a target token
(counted on attnkit's step) over the fp32 matmul peak measured in the same run.
The default sizes and batch budget are those of ``configs/multi30k-de-en.toml``,
on one thread (``--threads``).

``attnkit bench throughput --record`` writes its table to BENCHMARKS.md between
its markers.
"""

from .._suite import TRAINING_ROUNDS, Flag, Suite, data_root_flag, positive_int

SUITE = Suite(
    package=__name__,
    help="training throughput vs torch.nn.Transformer on real bucketed batches",
    flags=(
        Flag("--max-tokens", "tokens per batch", type=positive_int, default=2500),
        Flag("--threads", "torch threads while timing", type=positive_int, default=1),
        *TRAINING_ROUNDS,
        data_root_flag("the built-in date task where it is absent"),
    ),
)
