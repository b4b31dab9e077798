"""``attnkit bench``: run a benchmark suite and record it in BENCHMARKS.md.

``attnkit bench attention [...]`` (default) times the attention backends against
the reference, SDPA given the equivalent boolean mask and compiled
FlexAttention; ``attnkit bench transformer [...]`` times a training step of
attnkit's Transformer against ``torch.nn.Transformer``. Options after the
suite name go to that suite (``attnkit bench attention --help``).
"""

from __future__ import annotations

import argparse


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", nargs="?", default="attention",
                   choices=["attention", "transformer", "throughput"],
                   help="which benchmark (default: attention)")
    p.add_argument("suite_args", nargs=argparse.REMAINDER,
                   help="options of the suite, e.g. --quick")


def run_cli(args: argparse.Namespace) -> int:
    if args.suite == "throughput":
        from .bench.throughput import main as throughput_main

        throughput_main(args.suite_args)
        return 0
    if args.suite == "transformer":
        from .bench.transformer import main

        main(args.suite_args)
        return 0
    from .bench.__main__ import main

    return int(main(args.suite_args) or 0)
