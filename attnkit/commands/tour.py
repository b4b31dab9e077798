"""``attnkit tour``: the five scoring functions on the book's toy example.

Prints the shapes and weights of each score and writes one heatmap PNG per
score (see :func:`attnkit.viz.tour.run_tour`).
"""

from __future__ import annotations

import argparse


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="attnkit-demo",
                   help="directory for the heatmap PNGs (default attnkit-demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the toy inputs")


def run_cli(args: argparse.Namespace) -> int:
    from ..viz.tour import run_tour

    run_tour(args.out, seed=args.seed)
    return 0
