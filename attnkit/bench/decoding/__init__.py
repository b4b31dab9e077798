"""Decoding speed: attnkit's own search against CTranslate2 on the same model.

The run is exported with :func:`attnkit.export.export_ctranslate2` (float32 and
int8) into a temporary folder; then the test sentences are translated by each
engine, greedy and with beam 5, at each thread count, all in one process.
Reported: sentences/s, target tokens/s (tokens of the outputs, ``<eos>``
included) and sacreBLEU of each output, and each engine's speed over
attnkit's. Targets (on the same model, :data:`measure.TARGETS`): attnkit in fp32
≥ 1.0× CTranslate2 float32 greedy and ≥ 0.8× at beam 5, attnkit's int8 ≥ 0.8×
CTranslate2 int8 greedy.

``--threads 1,2,auto --competing`` times each engine while another CPU-bound process
runs: then ``auto`` (the cores the other processes leave free) must be at least as
fast as one thread (within 5 %, the noise of one timing), and the table says how
many threads ``auto`` chose.

``attnkit bench decoding --checkpoint RUN --record`` writes the table to BENCHMARKS.md.
"""

from .._suite import Flag, Suite, choice_list, positive_int, thread_settings

#: the engines timed, in this order: attnkit in fp32 and int8, CTranslate2 in float32 and int8
ENGINES = ("attnkit", "attnkit int8", "ct2 float32", "ct2 int8")

SUITE = Suite(
    package=__name__,
    help="attnkit's greedy and beam search against CTranslate2 on the same run",
    flags=(
        Flag("--checkpoint", "a Multi30k Transformer run", required=True),
        Flag("--split", "the Multi30k split decoded", default="test_2016_flickr"),
        Flag("--threads", "e.g. 1,2 or 1,2,auto", type=thread_settings, default=(1, 2)),
        Flag("--limit", "only the first N sentences", type=int),
        Flag("--competing", "time everything while another CPU-bound process runs",
             switch=True),
        Flag("--engines", "a comma list of the engines timed (default: all four)",
             type=choice_list(ENGINES)),
        Flag("--rounds", "each time is the median of this many, the engines taking turns",
             type=positive_int, default=3),
    ),
    convert=lambda a: dict(checkpoint=a.checkpoint, split=a.split, threads=tuple(a.threads),
                           limit=a.limit, competing=a.competing, rounds=a.rounds,
                           engines=a.engines),
)
