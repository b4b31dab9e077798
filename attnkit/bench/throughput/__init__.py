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

from ..._data_root import data_root_text
from .._suite import Flag, Suite

SUITE = Suite(
    package=__name__,
    help="training throughput vs torch.nn.Transformer on real bucketed batches",
    flags=(
        Flag("--max-tokens", "tokens per batch", type=int, default=4096),
        Flag("--batches", "batches per round", type=int, default=6),
        Flag("--rounds", "timed rounds", type=int, default=3),
        Flag("--data-root", f"Multi30k folder (with raw/); default multi30k/ in "
                            f"{data_root_text()}; the built-in date task where it is absent",
             metavar="DIR"),
    ),
    arguments=lambda a: dict(max_tokens=a.max_tokens, num_batches=a.batches, rounds=a.rounds,
                             data_root=a.data_root),
)
