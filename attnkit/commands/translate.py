"""``attnkit translate``: translate sentences from arguments, a file or stdin.

One output line per input line, always: lines are split on ``\\n`` only, a
blank line gives a blank line, and sentences cut to the model's limit are
named on stderr. Input is streamed: lines are translated in chunks as they
arrive (``--input`` may be a FIFO; ``yes 3 1 | attnkit translate ...`` runs in
bounded memory) and each chunk's output is flushed before the next is read.
``--engine ctranslate2 --model DIR`` decodes with a model
written by ``attnkit export ctranslate2`` instead of attnkit's own search.
``--checkpoint RUN/best`` names the run's best-scoring checkpoint (``keep_best``);
``--checkpoint`` given more than once decodes with the ensemble of the runs (at every step
the mean of their log-probabilities, :mod:`attnkit.decode.ensemble`), which must share
their tokenizers. ``--no-repeat-ngram`` and ``--repetition-penalty`` constrain the search
(:class:`attnkit.decode.search.Constraints`), with either engine.
``--precision`` runs the model in fp32, bf16 or int8, or in the choice ``attnkit evaluate
--precision auto`` recorded for the checkpoint on this machine
(:mod:`attnkit.decode.precision`).

``--n-best K`` prints the ``K`` best translations of each input line instead, best
first, in the Moses n-best format ``i ||| translation ||| score``: ``i`` the 0-based
input line, ``score`` the log-probability divided by the GNMT length penalty (the
beam's own ranking), 4 decimals. ``K`` is at most ``--beam-size``; the first line of
each sentence is its ``--n-best``-less output (``--beam-size 1``: the greedy output,
``K`` = 1). A blank input line gives one line ``i |||  ||| 0.0000``; a sentence has
fewer than ``K`` lines only when the search finds fewer hypotheses (a tiny vocabulary
or output limit). Only with an engine whose translator gives n-best lists
(``supports_n_best``, :class:`attnkit.decode.protocols.SentenceTranslator`): not with
``--engine ctranslate2``, whose beam keeps other hypotheses (see
:mod:`attnkit.export.ctranslate2_translator`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator

from ._decoding import (
    add_decoding_arguments,
    check_decoding_arguments,
    check_decoding_memory,
    checkpoint_paths,
    in_precision,
    load_translators,
    note_overlong,
    one_line,
    progress_bar,
    search_options,
)

#: ``--engine`` name -> (module, class) of the translator it loads, a
#: :class:`attnkit.decode.protocols.SentenceTranslator` whose capabilities the command asks
ENGINES = {
    "attnkit": ("attnkit.decode.translator", "Translator"),
    "ctranslate2": ("attnkit.export.ctranslate2_translator", "CTranslate2Translator"),
}


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sentences", nargs="*", help="sentences to translate (default: read "
                                                "--input, or stdin, one per line)")
    p.add_argument("--checkpoint", action="append",
                   help="a checkpoint directory, a run folder (its latest checkpoint) or "
                        "RUN/best (its best-scoring one, see keep_best); required with "
                        "--engine attnkit. Given more than once: the ensemble of those runs "
                        "(the mean of their log-probabilities at every step; they must share "
                        "their tokenizers)")
    p.add_argument("--engine", choices=tuple(ENGINES), default="attnkit",
                   help="attnkit's own decoder (default), or CTranslate2 on a model written "
                        "by 'attnkit export ctranslate2' (--model)")
    p.add_argument("--model", help="with --engine ctranslate2: the exported model directory")
    p.add_argument("--input", help="file with one sentence per line ('-' for stdin)")
    p.add_argument("--n-best", type=int, default=None, metavar="K",
                   help="print the K best translations of each sentence, best first, as "
                        "'i ||| translation ||| score' (Moses n-best; K <= --beam-size)")
    add_decoding_arguments(p)


def input_chunks(args: argparse.Namespace) -> Iterator[list[str]]:
    """The sentences in chunks, as they arrive: the arguments (one chunk), else the lines
    of ``--input`` (a file or a FIFO, opened now) or of stdin, streamed
    (:func:`~attnkit.commands._streaming.line_chunks`)."""
    from ._streaming import line_chunks, open_input

    if args.sentences:
        return iter([list(args.sentences)])
    if args.input and args.input != "-":
        return _closing(open_input(args.input, "--input"), f"--input {args.input}")
    return line_chunks(sys.stdin.buffer, "stdin")


def _total(args: argparse.Namespace) -> int | None:
    """How many lines the input has, where that is known before reading it."""
    from ._streaming import count_lines

    if args.sentences:
        return len(args.sentences)
    return count_lines(args.input) if args.input and args.input != "-" else None


def _closing(f, name: str) -> Iterator[list[str]]:
    from ._streaming import line_chunks

    with f:
        yield from line_chunks(f, name)


def load_engine(args: argparse.Namespace, threads: int):
    """The translator ``--engine`` names, from ``--checkpoint`` or ``--model``; CTranslate2
    runs on ``threads`` (the count the command holds torch at)."""
    if args.engine == "ctranslate2":
        if not args.model:
            raise ValueError("--engine ctranslate2 needs --model DIR, a directory written by "
                             "'attnkit export ctranslate2'")
        from ..export.ctranslate2_translator import load_ctranslate2

        return load_ctranslate2(args.model, threads=threads,
                                compute_type=ctranslate2_compute_type(args.precision))
    if args.model:
        raise ValueError("--model is for --engine ctranslate2; --engine attnkit reads "
                         "--checkpoint")
    if not args.checkpoint:
        raise ValueError("--checkpoint is required (or --engine ctranslate2 --model DIR)")
    from ..decode.translator import load_translator

    return in_precision("attnkit translate", args,
                        load_translators(checkpoint_paths(args), load_translator))


#: ``--precision`` -> the CTranslate2 compute type it runs in
CTRANSLATE2_TYPES = {"fp32": "float32", "int8": "int8", "bf16": "bfloat16"}


def ctranslate2_compute_type(precision: str | None) -> str:
    """CTranslate2's compute type for ``--precision`` (``None``: the type the model was
    exported with).

    Raises:
        ValueError: ``auto`` (a choice measured with attnkit's own decoder), or a type
            CTranslate2 does not run on this CPU, naming the ones it does.
    """
    if precision is None:
        return "default"
    if precision == "auto":
        raise ValueError("--precision auto is measured with attnkit's own decoder; with "
                         "--engine ctranslate2 give --precision fp32 or int8 (its float32 or "
                         "int8 compute type)")
    from ..export.ctranslate2 import require_ctranslate2

    wanted = CTRANSLATE2_TYPES[precision]
    runs = require_ctranslate2("reading a CTranslate2 export").get_supported_compute_types("cpu")
    if wanted not in runs:
        raise ValueError(f"--precision {precision}: CTranslate2 runs no {wanted} on this CPU "
                         f"(it runs {', '.join(sorted(runs))}); give --precision fp32 or int8")
    return wanted


def engine_class(name: str) -> type:
    """The translator class of ``--engine name`` (loaded, not instantiated): its
    capabilities can be asked before any model is read."""
    module, cls = ENGINES[name]
    return getattr(importlib.import_module(module), cls)


def check_n_best_flags(args: argparse.Namespace) -> None:
    """``--n-best``: a positive int, at most ``--beam-size``
    (:func:`attnkit.decode.search.check_n_best`), with an engine that gives n-best lists."""
    from ..decode.search import check_n_best as check_sizes

    if args.n_best is None:
        return
    check_sizes(args.n_best, args.beam_size, names=("--n-best", "--beam-size"))
    if not engine_class(args.engine).supports_n_best:
        raise ValueError(f"--n-best is not available with --engine {args.engine}, whose beam "
                         "keeps other hypotheses than attnkit's; use --engine attnkit "
                         "--checkpoint RUN")


def n_best_lines(n_best: list[list[tuple[str, float]]], first: int = 0) -> list[str]:
    """``i ||| translation ||| score`` for every hypothesis of every sentence ``i``
    (counted from ``first``, the input line of the first sentence, 0-based)."""
    return [f"{first + i} ||| {one_line(text)} ||| {score:.4f}"
            for i, hyps in enumerate(n_best) for text, score in hyps]


def _translated(args: argparse.Namespace, tr, sentences: list[str], first: int, bar
                ) -> list[str]:
    """The output lines of one chunk of sentences (``first``: its first input line)."""
    options = dict(search_options(args), progress=bar.update)
    if args.n_best is None:
        return [one_line(t) for t in tr.translate(sentences, **options)]
    return n_best_lines(tr.translate_n_best(sentences, n_best=args.n_best, **options), first)


def run_cli(args: argparse.Namespace) -> int:
    """Translate chunk by chunk as the input arrives: each chunk's lines are printed,
    in input order, and flushed before the next chunk is read."""
    from ..runtime import held_threads

    check_decoding_arguments(args)
    check_n_best_flags(args)
    with held_threads(args.threads) as threads:  # chosen once, for both engines
        return _translate_chunks(args, threads.count)


def _translate_chunks(args: argparse.Namespace, threads: int) -> int:
    from .._memory import plain_out_of_memory
    from ..decode.translator import BATCH_SIZE

    chunks = input_chunks(args)
    tr = load_engine(args, threads)
    cut: list[int] = []
    seen, checked = 0, set()  # lines done; batch sizes whose memory was checked
    with progress_bar(_total(args), "translate") as bar, plain_out_of_memory("while translating"):
        for chunk in chunks:
            batch = min(BATCH_SIZE, sum(1 for s in chunk if s.strip()))
            if batch and batch not in checked:
                check_decoding_memory(args, tr, batch)
                checked.add(batch)
            cut += [seen + i for i in tr.overlong(chunk)]
            lines = _translated(args, tr, chunk, seen, bar)
            seen += len(chunk)
            if lines:
                sys.stdout.write("".join(line + "\n" for line in lines))
                sys.stdout.flush()
    note_overlong("attnkit translate", cut, seen)
    return 0
