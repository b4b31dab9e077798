"""``attnkit bench SUITE``: run a benchmark suite; ``--record`` writes it to BENCHMARKS.md.

Suites (``attnkit bench SUITE --help`` for the options of each):

* ``attention`` — attention backends against the reference, SDPA given the
  equivalent boolean mask and compiled FlexAttention, on the CPU;
* ``transformer`` — a training step of attnkit's Transformer against
  ``torch.nn.Transformer`` on one padded batch;
* ``throughput`` — training throughput of both on real bucketed batches;
* ``gpu`` — the Triton kernels against SDPA's backends (needs CUDA);
* ``threads`` — training throughput idle and beside one competing process;
* ``decoding`` — attnkit's greedy and beam search against CTranslate2 on one run;
* ``peers`` — training and BLEU against JoeyNMT 2.3.0 on an equal budget.

Every suite prints its summary; only ``--record [FILE]`` writes its section
of FILE (default ``BENCHMARKS.md``), with the command line that produced it.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from ..bench import SUITES

DEFAULT_RECORD = "BENCHMARKS.md"

_HELP = {
    "attention": "attention backends vs the reference, SDPA with a mask and FlexAttention "
                 "(CPU)",
    "transformer": "a Transformer training step vs torch.nn.Transformer on a padded batch",
    "throughput": "training throughput vs torch.nn.Transformer on real bucketed batches",
    "gpu": "Triton kernels vs SDPA's backends (needs a CUDA device)",
    "threads": "training throughput idle and with one competing process, per threads setting",
    "decoding": "attnkit's greedy and beam search against CTranslate2 on the same run",
    "peers": "attnkit against JoeyNMT 2.3.0: Multi30k de-en, equal training budget, BLEU",
}


def _thread_list(text: str) -> list[int]:
    """``"2,1"`` -> ``[2, 1]`` (for ``--threads``)."""
    try:
        threads = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of ints; got {text!r}") from None
    if any(t < 1 for t in threads):
        raise argparse.ArgumentTypeError(f"thread counts must be >= 1; got {text!r}")
    return threads


def _attention_options(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], dict]:
    p.add_argument("--quick", action="store_true", help="tiny shapes, few repeats (smoke run)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7; 3 quick)")
    p.add_argument("--no-flex", action="store_true", help="skip compiled FlexAttention")
    p.add_argument("--no-big", action="store_true", help="skip the N=4096 additive run")
    return lambda a: dict(quick=a.quick, repeats=a.repeats, flex=False if a.no_flex else None,
                          big=not a.no_big, verbose=True)


def _transformer_options(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], dict]:
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--shortest", type=int, default=6, help="shortest sentence, in tokens")
    p.add_argument("--longest", type=int, default=64,
                   help="longest sentence, in tokens; the batch is padded to it")
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_thread_list, default=None,
                   help="torch threads, or a comma list to run each (e.g. 2,1)")
    p.add_argument("--device", default="cpu")
    return lambda a: dict(threads=a.threads or [None], batch_size=a.batch_size,
                          shortest=a.shortest, longest=a.longest, vocab=a.vocab, reps=a.reps,
                          warmup=a.warmup, seed=a.seed, device=a.device)


def _throughput_options(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], dict]:
    p.add_argument("--max-tokens", type=int, default=4096, help="tokens per batch")
    p.add_argument("--batches", type=int, default=6, help="batches per round")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="Multi30k folder (with raw/); default $ATTNKIT_DATA/multi30k or "
                        "../shared/data/multi30k; the built-in date task where it is absent")
    return lambda a: dict(max_tokens=a.max_tokens, num_batches=a.batches, rounds=a.rounds,
                          data_root=a.data_root)


def _gpu_options(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], dict]:
    p.add_argument("--quick", action="store_true", help="fewer shapes (smoke run)")
    p.add_argument("--repeats", type=int, default=10, help="timed rounds")
    return lambda a: dict(quick=a.quick, repeats=a.repeats)


def _threads_options(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], dict]:
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per cell")
    p.add_argument("--batches", type=int, default=6, help="training steps per round")
    return lambda a: dict(rounds=a.rounds, num_batches=a.batches)


def _decoding_options(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], dict]:
    p.add_argument("--checkpoint", required=True, help="a Multi30k Transformer run")
    p.add_argument("--split", default="test_2016_flickr", help="the Multi30k split decoded")
    p.add_argument("--threads", type=_thread_list, default=[1, 2], help="e.g. 1,2")
    p.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    return lambda a: dict(checkpoint=a.checkpoint, split=a.split, threads=tuple(a.threads),
                          limit=a.limit)


def _peers_options(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], dict]:
    p.add_argument("--config", default="configs/multi30k-de-en.toml",
                   help="the attnkit config; JoeyNMT gets the equivalent YAML")
    p.add_argument("--budget", type=float, default=1800.0,
                   help="seconds of training for each tool (default 1800)")
    p.add_argument("--work", default="runs/peers",
                   help="folder for the JoeyNMT venv, the shared inputs and both runs")
    p.add_argument("--concurrent", action="store_true",
                   help="train both at once, each process pinned to its own core "
                        "(default: one after the other)")
    p.add_argument("--reuse", action="store_true",
                   help="keep the finished training runs in --work; decode and score again")
    p.add_argument("--split", default="test_2016_flickr", help="the Multi30k split scored")
    p.add_argument("--limit", type=int, default=None,
                   help="score only the first N sentences (a smoke run)")
    return lambda a: dict(config=a.config, budget=a.budget, work=a.work,
                          concurrent=a.concurrent, reuse=a.reuse, split=a.split,
                          limit=a.limit)


# suite -> adds its options, returns the keyword arguments of its run() from the parsed ones
_OPTIONS = {"attention": _attention_options, "transformer": _transformer_options,
            "throughput": _throughput_options, "gpu": _gpu_options,
            "threads": _threads_options, "decoding": _decoding_options,
            "peers": _peers_options}


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="suite", metavar="SUITE", required=True)
    for name in SUITES:
        p = sub.add_parser(name, help=_HELP[name], description=_HELP[name])
        kwargs_of = _OPTIONS[name](p)
        p.add_argument("--record", nargs="?", const=DEFAULT_RECORD, default=None,
                       metavar="FILE", help="write the results into FILE's section for "
                                            f"this suite (default FILE: {DEFAULT_RECORD})")
        p.set_defaults(_prog=p.prog, _run_kwargs=kwargs_of)


def run_cli(args: argparse.Namespace) -> int:
    from ..bench.report import record
    from ..runtime import machine

    suite = importlib.import_module(SUITES[args.suite])
    before = machine()  # the load average before the run
    result = suite.run(**args._run_kwargs(args))
    for line in result.summary():
        print(line)
    if args.record is None:
        print(f"(not recorded; --record writes it to {DEFAULT_RECORD})")
        return 0
    command = getattr(args, "command_line", None) or f"attnkit bench {args.suite}"
    print(f"wrote {record(result, args.record, command, machine=before)}")
    return 0
