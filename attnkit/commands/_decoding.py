"""Options shared by the commands that decode (translate, evaluate): one place for their
flags, their checks and the note about sentences cut to the model's length."""

from __future__ import annotations

import argparse
import os
import sys

PRECISION_CHOICES = ("fp32", "bf16", "int8", "auto")  # --precision


def threads_arg(text: str) -> int | str:
    """``--threads``: ``auto`` or a positive int (:func:`attnkit._values.parse_positive_or_auto`,
    the parser config files use too); more than the machine's cores is capped at them,
    with a note (:func:`attnkit.runtime.capped_threads`)."""
    from .._values import parse_positive_or_auto

    try:
        n = parse_positive_or_auto("", text)
    except ValueError as e:  # argparse names the flag
        raise argparse.ArgumentTypeError(str(e)) from None
    if n == "auto":
        return n
    from ..runtime import capped_threads

    capped = capped_threads(n, name="--threads", per_core=1)
    if capped.count != n:
        print(f"attnkit: note: {capped.reason}", file=sys.stderr)
    return capped.count


def add_decoding_arguments(p: argparse.ArgumentParser, *, beam_size: int = 4) -> None:
    p.add_argument("--beam-size", type=int, default=beam_size,
                   help=f"beam width; 1 = greedy (default {beam_size})")
    p.add_argument("--length-penalty", type=float, default=0.6,
                   help="GNMT length penalty alpha for beam search, >= 0 (default 0.6)")
    p.add_argument("--beam-stop", default=None, metavar="{best_ended,exact}",
                   help="when a sentence's beam search stops: best_ended (default; with K "
                        "ended hypotheses, once a step's best extension was <eos>: "
                        "CTranslate2's rule) or exact (with K ended hypotheses, once no live "
                        "beam can still beat the best of them under the length penalty: "
                        "slower, the search's best is final)")
    p.add_argument("--max-output-len", type=int, default=None,
                   help="longest output in tokens (default: 2 x source length + 10)")
    p.add_argument("--threads", type=threads_arg, default="auto",
                   help="CPU threads: auto (default: the cores other processes leave free) "
                        "or a number")
    p.add_argument("--precision", default=None, metavar="{" + ",".join(PRECISION_CHOICES) + "}",
                   help="what the model computes in: fp32 (default); bf16 (bfloat16 "
                        "autocast: fast on CPUs whose bf16 matmuls beat fp32, slow "
                        "elsewhere); int8 (int8 weights, PyTorch's dynamically quantized "
                        "linear layers); auto: the "
                        "fastest of those whose BLEU on the run's validation sentences is "
                        "within 0.3 of fp32's, as 'attnkit evaluate --precision auto' measures "
                        "it and records it for the checkpoint on this machine (translate uses "
                        "that record, else fp32). With --engine ctranslate2, fp32 and int8 "
                        "are its float32 and int8 compute types (default: the exported one)")
    # the two constraints are read by check_decoding_arguments, not argparse: one line, no usage
    p.add_argument("--no-repeat-ngram", default=0, metavar="N",
                   help="never repeat an N-gram in an output: a token that would complete an "
                        "N-gram the hypothesis holds already is not chosen; 0 = off (default)")
    p.add_argument("--repetition-penalty", default=1.0, metavar="P",
                   help="CTRL's repetition penalty, P > 0: the logit of a token the "
                        "hypothesis holds already is divided by P when positive, multiplied "
                        "by P when negative (P > 1 discourages repeats); 1 = off (default)")


def check_decoding_arguments(args: argparse.Namespace) -> None:
    """Reject values that make no sense before the model is loaded."""
    from .._values import check_choice, check_finite, check_nonnegative_int, check_positive_int

    if args.precision is not None:  # checked here, not by argparse: one line, no usage
        check_choice("--precision", args.precision, PRECISION_CHOICES)
    check_positive_int("--beam-size", args.beam_size)
    check_finite("--length-penalty", args.length_penalty, minimum=0.0)
    check_positive_int("--max-output-len", args.max_output_len, allow_none=True)
    if args.beam_stop is not None:
        from ..decode.search import STOP_RULES

        check_choice("--beam-stop", args.beam_stop, STOP_RULES)
    args.no_repeat_ngram = check_nonnegative_int(
        "--no-repeat-ngram", _number("--no-repeat-ngram", args.no_repeat_ngram, int))
    args.repetition_penalty = check_finite(
        "--repetition-penalty", _number("--repetition-penalty", args.repetition_penalty, float),
        above=0)
    check_ensemble_arguments(args)


def _number(flag: str, given, kind: type):
    """The text ``given`` for ``flag`` as a ``kind`` (int or float; a value not given as
    text is returned as it is), refused in one line naming ``flag`` when it is none."""
    if not isinstance(given, str):
        return given
    try:
        return kind(given)
    except ValueError:
        expected = "an int" if kind is int else "a number"
        raise ValueError(f"{flag} must be {expected}; got {given!r}") from None


def checkpoint_paths(args: argparse.Namespace) -> list[str]:
    """The ``--checkpoint`` paths, in the order given (none, one, or an ensemble's)."""
    given = args.checkpoint
    return [] if given is None else [given] if isinstance(given, str) else list(given)


def check_ensemble_arguments(args: argparse.Namespace) -> None:
    """With ``--checkpoint`` given more than once (an ensemble), refuse what needs one
    model: ``--precision auto`` (a choice recorded for one checkpoint's weights) and an
    engine other than attnkit's."""
    paths = checkpoint_paths(args)
    if len(paths) < 2:
        return
    given = f"{len(paths)} --checkpoint ({', '.join(paths)})"
    if args.precision == "auto":
        raise ValueError(f"--precision auto is chosen for one checkpoint's weights, not for an "
                         f"ensemble of {given}; give --precision fp32, bf16 or int8")
    if getattr(args, "engine", "attnkit") != "attnkit":
        raise ValueError(f"--engine {args.engine} decodes one exported model (--model); an "
                         f"ensemble of {given} decodes with --engine attnkit")


def search_options(args: argparse.Namespace) -> dict:
    """The search keywords of ``translate`` from the decoding flags: beam size, output
    limit, length penalty and (when given) the stop rule and the search constraints."""
    options = dict(beam_size=args.beam_size, max_output_len=args.max_output_len,
                   alpha=args.length_penalty)
    if args.beam_stop is not None:
        options["stop"] = args.beam_stop
    if args.no_repeat_ngram:
        options["no_repeat_ngram"] = args.no_repeat_ngram
    if args.repetition_penalty != 1.0:
        options["repetition_penalty"] = args.repetition_penalty
    return options


def load_translators(paths: list[str], load):
    """``load(path)`` of each checkpoint of ``paths``, as one translator: the only one, or
    their ensemble (:class:`attnkit.decode.translator.EnsembleTranslator`, which refuses
    runs of other tokenizers, naming both).

    A path given more than once is loaded once (its model counts as often as it is
    given). Before the other members are loaded, their memory (the first member's
    parameters times their number) is compared with what this process may still take,
    and an ensemble that cannot fit is refused in one line naming ``--checkpoint``."""
    keys = [os.path.realpath(p) for p in paths]
    loaded = {keys[0]: load(paths[0])}
    others = len(set(keys)) - 1
    config = getattr(loaded[keys[0]], "memory_config", None)
    if others and config is not None:
        from .._memory import available_memory, format_bytes
        from ..models.sizes import decoding_memory

        size = decoding_memory(config, rows=0, steps=0).weights  # as the decoding check counts
        budget = available_memory()
        if budget is not None and size * others > budget.bytes:
            raise ValueError(
                f"--checkpoint given {len(paths)} times ({others + 1} different): the "
                f"ensemble's other {others} models need about {format_bytes(size * others)} "
                f"({format_bytes(size)} each), more than this process may still take "
                f"({format_bytes(budget.bytes)}, {budget.source}); give fewer --checkpoint")
    for path, key in zip(paths, keys, strict=True):
        if key not in loaded:
            loaded[key] = load(path)
    if len(paths) == 1:
        return loaded[keys[0]]
    from ..decode.translator import EnsembleTranslator

    return EnsembleTranslator.of([loaded[k] for k in keys])


def in_precision(prog: str, args: argparse.Namespace, translator):
    """``translator`` (fp32, attnkit's own) in ``--precision``; ``auto`` takes the choice
    recorded for its checkpoint on this machine
    (:func:`attnkit.decode.precision.recorded_choice`), else fp32. A note on stderr says
    what ``auto`` found, and that bf16 is slow on a CPU whose bf16 matmuls are slow."""
    from ..decode.precision import bf16_note, recorded_choice

    wanted = args.precision or "fp32"
    if wanted == "auto":
        run = translator.run
        record = None if run is None else recorded_choice(run.weights_digest)
        if record is None:
            print(f"{prog}: note: --precision auto: no choice is recorded for this checkpoint "
                  "on this machine; translating in fp32 (record one with 'attnkit evaluate "
                  f"--checkpoint {checkpoint_paths(args)[0]} --precision auto')",
                  file=sys.stderr)
        else:
            print(f"{prog}: note: --precision auto: {record['precision']}, as recorded "
                  f"({record.get('why', 'by attnkit evaluate')})", file=sys.stderr)
        wanted = "fp32" if record is None else record["precision"]
    if wanted == "bf16" and (slow := bf16_note()):
        print(f"{prog}: note: {slow}", file=sys.stderr)
    return translator.with_precision(wanted)


def note_overlong(prog: str, cut: list[int], total: int) -> None:
    """Say on stderr which sentences are cut to the model's limit: the 0-based indices
    ``cut`` (a translator's ``overlong(sentences)``) of ``total``, as line numbers."""
    if cut:
        shown = ", ".join(str(i + 1) for i in cut[:10]) + (", ..." if len(cut) > 10 else "")
        print(f"{prog}: note: {len(cut)} of {total} sentences are longer than the "
              f"model's positional table and were cut to fit (lines {shown})", file=sys.stderr)


def check_decoding_memory(args: argparse.Namespace, translator, sentences: int) -> None:
    """Refuse a ``--beam-size`` × batch × ``--max-output-len`` whose search state cannot
    fit in the memory this process may use, before decoding: an RNN has no positional
    table to cap its outputs, so ``--max-output-len`` alone decides their length.

    ``sentences``: how many are decoded at once (at most the translator's batch); without
    ``--max-output-len`` the shortest default limit is counted (a lower bound). A
    translator without a ``memory_config`` (another engine, which holds its own memory,
    :class:`attnkit.decode.protocols.SentenceTranslator`) is not checked; an ensemble's
    (a tuple of configs) counts every member's weights and search state.
    """
    from .._memory import available_memory, format_bytes
    from ..decode.translator import BATCH_SIZE, output_limit, positions_of
    from ..models.sizes import MemoryEstimate, decoding_memory

    config = translator.memory_config
    if config is None:
        return
    configs = config if isinstance(config, tuple) else (config,)
    batch = min(BATCH_SIZE, max(1, sentences))
    positions = [p for p in map(positions_of, configs) if p is not None]
    steps = output_limit(2, args.max_output_len, min(positions, default=None))  # a word, EOS
    each = [decoding_memory(c, rows=batch * args.beam_size, steps=steps) for c in configs]
    need = MemoryEstimate(sum(e.weights for e in each), sum(e.activations for e in each))
    budget = available_memory()
    if budget is None or need.total <= budget.bytes:
        return
    given = f"--max-output-len {args.max_output_len}" if args.max_output_len else \
        f"outputs of {steps} tokens"
    raise MemoryError(
        f"--beam-size {args.beam_size} x {batch} sentence{'s' if batch > 1 else ''} at a "
        f"time x {given}: decoding needs about {format_bytes(need.total)} "
        f"({format_bytes(need.activations)} for the beams' tokens and caches, "
        f"{format_bytes(need.weights)} for the weights"
        f"{f' of {len(configs)} models' if len(configs) > 1 else ''}), more than the "
        f"{format_bytes(budget.bytes)} this process may use ({budget.source}); lower "
        f"--max-output-len or --beam-size")


def one_line(text: str) -> str:
    """An output that cannot break line alignment (line breaks become spaces)."""
    return " ".join(text.splitlines()) if ("\n" in text or "\r" in text) else text


def progress_bar(total: int | None, desc: str):
    """A progress bar on stderr (sentences/s, ETA) when it is a terminal; silent when piped.

    Returns a context manager whose ``update(n)`` counts ``n`` sentences done.
    """
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="sent", file=sys.stderr, disable=None,
                leave=False, dynamic_ncols=True)


def averaged_last(run, k: int, flag: str):
    """``(paths, weights)``: the run's last ``k`` checkpoints (:meth:`attnkit.runs.run.Run.last`)
    and their averaged weights (:meth:`~attnkit.runs.run.Run.average`: the run's own
    checkpoint is not verified again), with a progress bar counting checkpoints.

    Raises:
        ValueError: no ``step-N`` checkpoint beside the opened one (a checkpoint folder
            outside a run's ``checkpoints/``), naming ``flag``.
    """
    paths = run.last(k)
    if not paths:
        raise ValueError(f"{flag} {k}: no step-N checkpoints beside {run.path} to average "
                         "(it is not in a run's checkpoints/ folder); give --checkpoint a run "
                         "folder")
    with progress_bar(len(paths), "average") as bar:
        return paths, run.average(paths, progress=bar.update)


def fewer_than_asked(paths, k: int, flag: str) -> str:
    """The words a report of an average adds when the run had fewer than the ``k``
    checkpoints ``flag`` asked for (an average of fewer is still made), else ``""``."""
    if len(paths) >= k:
        return ""
    return f" (the run has {len(paths)}, fewer than {flag} {k} asked for)"


def checkpoint_inputs(path: str | None, flag: str = "--checkpoint") -> list[tuple[str, str]]:
    """What ``--checkpoint PATH`` reads (:func:`attnkit.runs.run.read_paths`), as inputs for
    :func:`attnkit._io.check_not_an_input`."""
    if path is None:
        return []
    from ..runs.run import read_paths

    return [(flag, str(p)) for p in read_paths(path)]
