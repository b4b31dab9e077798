"""``python -m attnkit.bench``: the CPU attention benchmark (see :mod:`attnkit.bench.attention`)."""

from __future__ import annotations

import argparse
import shlex
import sys

from .attention import run_bench


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="attnkit bench",
        description="Time attnkit's attention backends against the reference, SDPA with a "
                    "boolean mask and compiled FlexAttention; write the table to BENCHMARKS.md.")
    p.add_argument("--quick", action="store_true", help="tiny shapes, few repeats (smoke run)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7; 3 quick)")
    p.add_argument("--no-flex", action="store_true", help="skip compiled FlexAttention")
    p.add_argument("--no-big", action="store_true", help="skip the N=4096 additive run")
    p.add_argument("--output", default="BENCHMARKS.md", help="Markdown file to update")
    args = p.parse_args(argv)
    shown = sys.argv[1:] if argv is None else argv
    result = run_bench(quick=args.quick, repeats=args.repeats,
                       flex=False if args.no_flex else None, big=not args.no_big,
                       output=args.output, verbose=True,
                       command=" ".join(["python -m attnkit.bench", *map(shlex.quote, shown)]))
    for name, rule, value, met in result.targets:
        status = "—" if met is None else "met" if met else "NOT met"
        shown_value = "—" if value is None else f"{value:.2f}"
        print(f"{name:55s} {rule:>7s} {shown_value:>8s}  {status}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
