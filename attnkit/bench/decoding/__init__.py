"""Decoding speed: attnkit's own search against CTranslate2 on the same model.

The run is exported with :func:`attnkit.export.export_ctranslate2` (float32 and
int8) into a temporary folder; then the test sentences are translated by each
engine, greedy and with beam 5, at each thread count, all in one process.
Reported: sentences/s, target tokens/s (tokens of the outputs, ``<eos>``
included) and sacreBLEU of each output, and each engine's speed over
attnkit's. Targets (on the same model): attnkit's greedy ≥ 0.5× CTranslate2
float32 sentences/s, beam 5 ≥ 0.4×.

``attnkit bench decoding --checkpoint RUN --record`` writes the table to BENCHMARKS.md.
"""

from .._suite import Flag, Suite, thread_list

SUITE = Suite(
    package=__name__,
    help="attnkit's greedy and beam search against CTranslate2 on the same run",
    flags=(
        Flag("--checkpoint", "a Multi30k Transformer run", required=True),
        Flag("--split", "the Multi30k split decoded", default="test_2016_flickr"),
        Flag("--threads", "e.g. 1,2", type=thread_list, default=(1, 2)),
        Flag("--limit", "only the first N sentences", type=int),
    ),
    convert=lambda a: dict(checkpoint=a.checkpoint, split=a.split, threads=tuple(a.threads),
                             limit=a.limit),
)
