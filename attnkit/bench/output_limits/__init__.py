"""attnkit's own decoding of sentences of mixed lengths when every output runs to its
limit (the worst case for how output limits are handled): one ``translate_sentences``
call on the first 500 Multi30k validation sentences, one thread, a d=256 3+3-layer
Transformer (untrained, seeded) whose special tokens are never predicted. Reported: CPU
and wall seconds, output tokens and a hash of the outputs (equal hashes: the same
translations).

It compares checkouts, one process each: run it once per checkout, alternating, on one
pinned core, e.g. ``PYTHONPATH=CHECKOUT taskset -c 1 attnkit bench output_limits --beam 5``.
"""

from .._suite import Flag, Suite, data_root_flag

SUITE = Suite(
    package=__name__,
    help="decoding when every output runs to its limit, one thread (compare checkouts)",
    flags=(
        Flag("--beam", "beam size (1: greedy)", type=int, default=5),
        Flag("--sentences", "the first N validation sentences", type=int, default=500),
        data_root_flag("raw/val.de and raw/val.en are read"),
    ),
)
