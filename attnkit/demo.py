"""``attnkit demo``: the main job on its embedded default (no external data)."""

from __future__ import annotations

import argparse


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="attnkit-demo", help="output directory")
    p.add_argument("--seed", type=int, default=0, help="random seed")


def run_cli(args: argparse.Namespace) -> int:
    from .tour import run_tour

    run_tour(args.out, seed=args.seed)
    return 0
