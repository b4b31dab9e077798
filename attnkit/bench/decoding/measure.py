"""How :mod:`attnkit.bench.decoding` measures: the export, each engine's translation of
the test split and the table; :func:`run` returns a :class:`DecodingResult`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..._timing import alternated
from ..._values import check_choice, check_positive_int
from ...data.corpus import run_test_split
from ...decode.translator import load_translator
from ...eval.bleu import corpus_bleu
from ...runs.run import Run, open_run, read_beside_writer
from ...runtime import held_threads
from ..report import section_markers
from . import ENGINES

__all__ = ["END", "START", "DecodingResult", "run"]

START, END = section_markers("decoding")
#: (ours, theirs) -> beam -> the target of ours / theirs in sentences/s: attnkit in fp32
#: against CTranslate2 float32, and attnkit's int8 against CTranslate2's (greedy)
TARGETS = {("attnkit", "ct2 float32"): {1: 1.0, 5: 0.8}, ("attnkit int8", "ct2 int8"): {1: 0.8}}
#: with a competing process: each engine at ``--threads auto`` over itself on one thread
AUTO_TARGET = 0.95
_QUANTIZATIONS = ("float32", "int8")  # the exports measured, each an engine


@dataclass
class DecodingResult:
    rows: list[dict]  # engine, threads, beam, seconds, sent/s, tok/s, bleu
    sentences: int
    source: str
    checkpoint: str
    date: str
    sizes: dict = field(default_factory=dict)  # quantization -> bytes of model.bin
    competing: bool = False  # timed while another CPU-bound process ran
    rounds: int = 1  # each time: the median of this many, the engines taking turns
    markers: ClassVar[tuple[str, str]] = (START, END)

    def ratio(self, threads: int | str, beam: int, ours: str = "attnkit",
              theirs: str = "ct2 float32", their_threads: int | str | None = None
              ) -> float | None:
        """Engine ``ours``'s sentences/s over ``theirs``'s (attnkit's over CTranslate2
        float32's by default), at ``threads`` (``theirs`` at ``their_threads``, default
        the same)."""
        get = {(r["engine"], r["threads"], r["beam"]): r["sent_s"] for r in self.rows}
        a = get.get((ours, threads, beam))
        b = get.get((theirs, threads if their_threads is None else their_threads, beam))
        return None if not a or not b else a / b

    def summary(self) -> list[str]:
        lines = [f"{r['engine']:12s} threads {_threads_label(r)} beam {r['beam']}: "
                 f"{r['sent_s']:7.1f} sent/s {r['tok_s']:8.0f} tok/s BLEU {r['bleu']:5.2f}"
                 for r in self.rows]
        for (threads, beam) in sorted({(r["threads"], r["beam"]) for r in self.rows}, key=str):
            for (ours, theirs), by_beam in TARGETS.items():
                ratio = self.ratio(threads, beam, ours, theirs)
                if ratio is not None and beam in by_beam:
                    met = "met" if ratio >= by_beam[beam] else "NOT met"
                    lines.append(f"{ours} / {theirs}, threads {threads}, beam {beam}: "
                                 f"{ratio:.2f}x (target >= {by_beam[beam]}): {met}")
        if self.competing:
            for engine in dict.fromkeys(r["engine"] for r in self.rows):
                for beam in sorted({r["beam"] for r in self.rows}):
                    ratio = self.ratio("auto", beam, engine, engine, their_threads=1)
                    if ratio is not None:
                        met = "met" if ratio >= AUTO_TARGET else "NOT met"
                        lines.append(f"{engine} threads auto / threads 1 beside a competing "
                                     f"process, beam {beam}: {ratio:.2f}x (target >= "
                                     f"{AUTO_TARGET}): {met}")
        return lines

    def markdown(self, command: str) -> str:
        head = (f"## Decoding: attnkit's search and CTranslate2 on the same model\n\n"
                f"Command: `{command}` ({self.date}). Model: `{self.checkpoint}`; "
                f"{self.sentences} sentences of {self.source}; batches of 64 sorted by "
                "length, output limit 2·S + 10, GNMT α = 0.6 for beam 5."
                + (f" Each time: the median of {self.rounds} rounds, the engines taking "
                   "turns." if self.rounds > 1 else "")
                + (" Timed while another CPU-bound process ran." if self.competing else "")
                + "".join(f" Exported `model.bin` ({q}): {n / 1e6:.1f} MB."
                          for q, n in self.sizes.items()) + "\n\n"
                "| engine | threads | beam | seconds | sentences/s | target tokens/s | "
                "sacreBLEU | vs attnkit |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
        base = {(r["threads"], r["beam"]): r["sent_s"] for r in self.rows
                if r["engine"] == "attnkit"}
        body = "".join(
            f"| {r['engine']} | {_threads_label(r)} | {r['beam']} | {r['seconds']:.1f} | "
            f"{r['sent_s']:.1f} | {r['tok_s']:,.0f} | {r['bleu']:.2f} | "
            + (f"{r['sent_s'] / base[(r['threads'], r['beam'])]:.2f}× |\n"
               if (r["threads"], r["beam"]) in base else "– |\n") for r in self.rows)
        return head + body + "\n" + "\n".join(f"- {line}" for line in self.summary()
                                              if "target" in line) + "\n"


def _threads_label(row: dict) -> str:
    """``2``, or ``auto (1)`` with the count ``auto`` chose."""
    return str(row["threads"]) if row["threads"] != "auto" else f"auto ({row['count']})"


def _prepare(ckpt: Path, split: str, limit: int | None, folder: Path, sizes: dict):
    """The checkpoint opened (verified once), its test split, attnkit's translator and
    both exports under ``folder``: everything the benchmark reads from the run."""
    from ...export.ctranslate2 import export_ctranslate2

    opened = open_run(ckpt)
    test_set = _test_set(opened, split, limit)
    translator = load_translator(opened)
    for q in _QUANTIZATIONS:
        # force: an earlier attempt on a checkpoint a training replaced is overwritten
        export_ctranslate2(opened, folder / q, quantization=q, force=True)
        sizes[q] = (folder / q / "model.bin").stat().st_size
    return test_set, translator


def _engines(translator, folder: Path, threads: int, names: tuple[str, ...]) -> dict:
    """The engines ``names`` (of :data:`ENGINES`): attnkit's translator in fp32 and int8
    and the CTranslate2 engines of the exports, on ``threads``."""
    from ...export.ctranslate2_translator import load_ctranslate2

    made = {"attnkit": lambda: translator,
            "attnkit int8": lambda: translator.with_precision("int8"),
            **{f"ct2 {q}": (lambda q=q: load_ctranslate2(folder / q, threads=threads))
               for q in _QUANTIZATIONS}}
    return {name: made[name]() for name in names}


def _test_set(run: Run, split: str, limit: int | None):
    """The split of the run's data, in the tokenization the run was trained on."""
    srcs, refs = run_test_split(run, split, needed_by="the decoding benchmark")
    return srcs[:limit] if limit else srcs, refs[:limit] if limit else refs


def run(*, checkpoint: str, split: str = "test_2016_flickr",
        threads: tuple[int | str, ...] = (1, 2), beams: tuple[int, ...] = (1, 5),
        limit: int | None = None, competing: bool = False,
        engines: tuple[str, ...] | None = None, rounds: int = 3) -> DecodingResult:
    """Translate the split with every engine, thread setting (a count or ``"auto"``) and
    beam; nothing is written but the temporary exports. ``competing``: all of it while
    another CPU-bound process runs (:func:`attnkit.bench.toolkit.competing_process`).
    ``rounds``: each time is the median of that many, the engines taking turns.

    The run is opened once and its checkpoint verified once; the split, the translator
    and the exports are read from it as one, safe beside a training on the run
    (:func:`attnkit.runs.run.read_beside_writer` reads a replaced latest anew)."""
    from ..toolkit import competing_process

    check_positive_int("rounds", rounds)
    names = ENGINES if engines is None else tuple(
        check_choice("engines", e, ENGINES) for e in engines)
    rows, sizes = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        (srcs, refs), translator = read_beside_writer(
            checkpoint, lambda ckpt: _prepare(ckpt, split, limit, Path(tmp), sizes))
        tokenize = translator.tokenizers.tgt.encode
        with competing_process() if competing else contextlib.nullcontext():
            for setting in threads:
                with held_threads(setting) as chosen:
                    timed = _engines(translator, Path(tmp), chosen.count, names)
                    for beam in beams:
                        rows += _rounds(timed, srcs, refs, beam, rounds, tokenize,
                                        {"threads": setting, "count": chosen.count})
    return DecodingResult(rows, len(srcs), f"Multi30k {split}", checkpoint,
                          _dt.date.today().isoformat(), sizes, competing, rounds)


def _rounds(engines: dict, srcs, refs, beam: int, rounds: int, tokenize, where: dict
            ) -> list[dict]:
    """One row per engine: the median time of ``rounds`` translations of ``srcs``, the
    engines taking turns (:func:`attnkit._timing.alternated`), after a warm-up each."""
    for engine in engines.values():
        engine.translate(srcs[:8], beam_size=beam)  # warm-up
    timed = alternated({name: functools.partial(engine.translate, srcs, beam_size=beam,
                                                alpha=0.6)
                        for name, engine in engines.items()}, rounds)
    rows = []
    for name, t in timed.items():
        tokens = sum(len(tokenize(h)) + 1 for h in t.result)
        rows.append({"engine": name, **where, "beam": beam, "seconds": t.seconds,
                     "sent_s": len(srcs) / t.seconds, "tok_s": tokens / t.seconds,
                     "bleu": corpus_bleu(t.result, refs).score, "spread": t.spread})
    return rows
