"""One multi-head self-attention training pass, timed: forward + backward of
:class:`attnkit.nn.MultiHeadAttention` (B = 64 sequences of up to 24 tokens, d = 256,
8 heads, valid lengths drawn in [5, 24], the ``auto`` backend), one thread; the median
of the timed passes after warm-up.

It compares checkouts, one process each: run it once per checkout, alternating, on one
pinned core, e.g. ``PYTHONPATH=CHECKOUT taskset -c 1 attnkit bench attention_step --label
LABEL``; the label names the checkout in the printed line.
"""

from .._suite import Flag, Suite

SUITE = Suite(
    package=__name__,
    help="one multi-head self-attention forward + backward, one thread (compare checkouts)",
    flags=(
        Flag("--label", "names this checkout in the printed line", default="attnkit"),
        Flag("--steps", "passes timed after the warm-up", type=int, default=30),
        Flag("--warmup", "passes run before timing", type=int, default=5),
    ),
)
