"""``attnkit evaluate``: BLEU (sacrebleu, with signature), chrF and the lowercased
tokenized BLEU that published Multi30k figures use, on a test set. ``--checkpoint`` given
more than once scores the ensemble of the runs (:mod:`attnkit.decode.ensemble`)."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from ._decoding import (
    add_decoding_arguments,
    averaged_last,
    check_decoding_arguments,
    check_decoding_memory,
    checkpoint_inputs,
    checkpoint_paths,
    fewer_than_asked,
    in_precision,
    load_translators,
    note_overlong,
    one_line,
    progress_bar,
    search_options,
)


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, action="append",
                   help="checkpoint directory, run folder (its latest checkpoint) or RUN/best; "
                        "given more than once: the ensemble of those runs (the mean of their "
                        "log-probabilities at every step; they must share their tokenizers)")
    p.add_argument("--src", help="source file, one sentence per line")
    p.add_argument("--ref", help="reference file, line-aligned with --src")
    p.add_argument("--multi30k-split", help="instead of --src/--ref: a Multi30k split of the "
                                            "checkpoint's data (e.g. test_2016_flickr)")
    add_decoding_arguments(p)
    p.add_argument("--average", type=int, default=0,
                   help="average the weights of the last N checkpoints first (of each run, "
                        "with several --checkpoint)")
    p.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    p.add_argument("--hyp-out", help="write the translations to this file, one line per "
                                     "source line")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")


def _translator(args: argparse.Namespace):
    """The run's translator, with the last ``--average`` checkpoints averaged (the
    ensemble of the runs' translators, each averaged, with several ``--checkpoint``).

    A run is opened once and every checkpoint verified once: the opened one is
    loaded (and averaged) as it was opened. Opening, averaging and loading are read
    as one beside a training on the run (:func:`attnkit.runs.run.read_beside_writer`)."""
    from ..decode.translator import load_translator
    from ..runs.run import open_run, read_beside_writer

    def load(ckpt):
        run = open_run(ckpt)
        paths, weights = (averaged_last(run, args.average, "--average") if args.average
                          else ([], None))
        return paths, load_translator(run, weights=weights)

    def load_one(checkpoint):
        paths, translator = read_beside_writer(checkpoint, load)
        if args.average:
            print(f"averaged {len(paths)} checkpoints: {[p.name for p in paths]}"
                  f"{fewer_than_asked(paths, args.average, '--average')}", file=sys.stderr)
        return translator

    return load_translators(checkpoint_paths(args), load_one)


def _test_set(args: argparse.Namespace, run) -> tuple[list[str], list[str]]:
    """Sources and references, every line kept: ``--src``/``--ref``, or a Multi30k split
    of the run's data (:func:`attnkit.data.corpus.run_test_split`)."""
    from ..data.corpus import read_test_set, run_test_split

    if args.multi30k_split:
        srcs, refs = run_test_split(run, args.multi30k_split, needed_by="--multi30k-split")
    elif args.src and args.ref:
        srcs, refs = read_test_set(args.src, args.ref, flags=("--src", "--ref"))
    else:
        raise ValueError("give --src and --ref, or --multi30k-split")
    if not srcs:  # BLEU of nothing is undefined; sacrebleu fails on an empty corpus
        given = f"--multi30k-split {args.multi30k_split}" if args.multi30k_split else \
            f"--src {args.src} and --ref {args.ref}"
        raise ValueError(f"{given}: no sentences to score (empty files); expected one "
                         "sentence per line, line-aligned")
    return (srcs[: args.limit], refs[: args.limit]) if args.limit else (srcs, refs)


def _check_arguments(args: argparse.Namespace) -> None:
    from .._io import check_not_an_input, check_writable_file
    from .._values import check_choice, check_nonnegative_int, check_positive_int
    from ..data.corpus import MULTI30K_SPLITS

    check_decoding_arguments(args)
    check_nonnegative_int("--average", args.average)
    check_positive_int("--limit", args.limit, allow_none=True)
    if args.multi30k_split is not None:
        check_choice("--multi30k-split", args.multi30k_split, MULTI30K_SPLITS)
    if args.precision == "auto" and args.average:
        raise ValueError(f"--precision auto is chosen for one checkpoint's weights, not for "
                         f"--average {args.average}; write the average with 'attnkit "
                         "average' and choose for it")
    if args.hyp_out:
        check_not_an_input(args.hyp_out, "--hyp-out", [
            ("--src", args.src), ("--ref", args.ref),
            *(i for c in checkpoint_paths(args) for i in checkpoint_inputs(c))])
        check_writable_file(args.hyp_out, "--hyp-out")


def run_cli(args: argparse.Namespace) -> int:
    from ..runtime import held_threads

    _check_arguments(args)
    with held_threads(args.threads):
        return _evaluate(args)


def _evaluate(args: argparse.Namespace) -> int:
    from .._memory import plain_out_of_memory
    from ..eval.bleu import corpus_bleu, corpus_chrf, tokenized_lowercase_bleu

    tr = _translator(args)
    if args.precision != "auto":
        tr = in_precision("attnkit evaluate", args, tr)
    else:
        tr, record = _auto_precision(args, tr)
        if not (args.src or args.ref or args.multi30k_split):  # chosen; no test set to score
            print(json.dumps(record, indent=2) if args.json else
                  f"precision: {record['precision']}  ({record['why']})")
            return 0
    srcs, refs = _test_set(args, tr.run)
    check_decoding_memory(args, tr, sum(1 for s in srcs if s.strip()))
    note_overlong("attnkit evaluate", tr.overlong(srcs), len(srcs))
    with progress_bar(len(srcs), "evaluate") as bar, plain_out_of_memory("while translating"):
        hyps = [one_line(h) for h in tr.translate(srcs, **search_options(args),
                                                  progress=bar.update)]
    if args.hyp_out:
        Path(args.hyp_out).write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    bleu, chrf, lc = corpus_bleu(hyps, refs), corpus_chrf(hyps, refs), \
        tokenized_lowercase_bleu(hyps, refs)
    result = {"sentences": len(hyps), "bleu": bleu.score, "bleu_signature": bleu.signature,
              "chrf": chrf.score, "chrf_signature": chrf.signature,
              "bleu_lc_tok": lc.score, "bleu_lc_tok_signature": lc.signature,
              "beam_size": args.beam_size, "precision": tr.precision}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"sentences: {len(hyps)}  (beam {args.beam_size}, {tr.precision})")
        print(f"BLEU  {bleu.score:6.2f}   {bleu.signature}")
        print(f"chrF  {chrf.score:6.2f}   {chrf.signature}")
        print(f"BLEU (lowercased, tokenized; the published Multi30k figures) "
              f"{lc.score:6.2f}   {lc.signature}")
    return 0


def _validation_set(run, limit: int | None) -> tuple[list[str], list[str]]:
    """The run's own validation sentences and references (never its test data): what its
    training held out, rebuilt from its stored ``[data]`` section."""
    from ..data.corpus import load_pairs
    from ..train.config import TrainConfig

    if run.train is None:
        raise ValueError(f"--precision auto measures BLEU on the run's validation data; "
                         f"{run.path} (run format 1) does not say what that was")
    try:
        cfg = TrainConfig.from_dict(run.train, source=f"{run.path}: train")
        _, valid, _ = load_pairs(cfg.data, seed=cfg.run.seed)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"--precision auto measures BLEU on the validation data the run was "
                         f"trained with, which cannot be read now: {e}") from None
    valid = [(s, t) for s, t in valid if s.strip()][:limit]
    if not valid:
        raise ValueError(f"--precision auto: the run {run.path} has no validation sentences "
                         "to measure on")
    return [s for s, _ in valid], [t for _, t in valid]


#: each precision's speed for ``--precision auto``: the median of this many translations
#: of the validation sentences, the precisions taking turns
AUTO_ROUNDS = 3


def _measured(args: argparse.Namespace, trs: dict, srcs: list[str], refs: list[str]) -> dict:
    """BLEU and sentences per second of each translator of ``trs`` (precision ->
    translator) on the validation sentences: after a warm-up on a few of them (not
    timed), :data:`AUTO_ROUNDS` translations each, in turns
    (:func:`attnkit._timing.alternated`), the median kept."""
    from .._timing import alternated
    from ..eval.bleu import corpus_bleu

    options = search_options(args)
    for tr in trs.values():
        tr.translate(srcs[:8], **options)
    timed = alternated({p: functools.partial(tr.translate, srcs, **options)
                        for p, tr in trs.items()}, AUTO_ROUNDS)
    return {p: {"bleu": round(corpus_bleu([one_line(h) for h in t.result], refs).score, 2),
                "sentences_per_s": round(len(srcs) / max(t.seconds, 1e-9), 2)}
            for p, t in timed.items()}


def _auto_precision(args: argparse.Namespace, tr):
    """``--precision auto``: each precision this machine runs fast measured on the run's
    validation sentences, the fastest within 0.3 BLEU of fp32 chosen
    (:func:`attnkit.decode.precision.best_within_tolerance`) and recorded for
    ``translate --precision auto``: ``(tr in that precision, the record)``."""
    import torch

    from ..decode.precision import (
        AUTO_BLEU_TOLERANCE,
        PRECISIONS,
        best_within_tolerance,
        bf16_note,
        choice_key,
        record_choice,
    )

    srcs, refs = _validation_set(tr.run, args.limit)
    candidates = [p for p in PRECISIONS if p != "bf16" or bf16_note() is None]
    measured = _measured(args, {p: tr.with_precision(p) for p in candidates}, srcs, refs)
    for precision in candidates:
        print(f"attnkit evaluate: --precision auto: {precision}: validation BLEU "
              f"{measured[precision]['bleu']:.2f}, {measured[precision]['sentences_per_s']:.1f}"
              " sentences/s", file=sys.stderr)
    chosen = best_within_tolerance(measured)
    why = (f"on {len(srcs)} validation sentences, beam {args.beam_size}, threads "
           f"{torch.get_num_threads()}, the median of {AUTO_ROUNDS} rounds in turns: the "
           f"fastest within {AUTO_BLEU_TOLERANCE} BLEU of fp32")
    record = {"precision": chosen, "why": why, "measured": measured,
              "key": choice_key(tr.run.weights_digest)}
    try:
        kept = f"recorded in {record_choice(tr.run.weights_digest, record)}"
    except OSError as e:
        kept = f"not recorded, for this call only ({e})"
    print(f"attnkit evaluate: --precision auto: chose {chosen} ({why}); {kept}",
          file=sys.stderr)
    return tr.with_precision(chosen), record
