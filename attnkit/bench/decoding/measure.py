"""How :mod:`attnkit.bench.decoding` measures: the export, each engine's translation of
the test split and the table; :func:`run` returns a :class:`DecodingResult`.
"""

from __future__ import annotations

import datetime as _dt
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ...data.corpus import run_test_split
from ...decode.translator import load_translator
from ...eval.bleu import corpus_bleu
from ...runs.run import Run, open_run, read_beside_writer
from ...runtime import held_threads
from ..report import section_markers

__all__ = ["END", "START", "DecodingResult", "run"]

START, END = section_markers("decoding")
#: (ours, theirs) -> beam -> the target of ours / theirs in sentences/s: attnkit in fp32
#: against CTranslate2 float32, and attnkit's int8 against CTranslate2's (greedy)
TARGETS = {("attnkit", "ct2 float32"): {1: 1.0, 5: 0.8}, ("attnkit int8", "ct2 int8"): {1: 0.8}}
_QUANTIZATIONS = ("float32", "int8")  # the exports measured, each an engine


@dataclass
class DecodingResult:
    rows: list[dict]  # engine, threads, beam, seconds, sent/s, tok/s, bleu
    sentences: int
    source: str
    checkpoint: str
    date: str
    sizes: dict = field(default_factory=dict)  # quantization -> bytes of model.bin
    markers: ClassVar[tuple[str, str]] = (START, END)

    def ratio(self, threads: int, beam: int, ours: str = "attnkit",
              theirs: str = "ct2 float32") -> float | None:
        """Engine ``ours``'s sentences/s over ``theirs``'s (attnkit's over CTranslate2
        float32's by default)."""
        get = {(r["engine"], r["threads"], r["beam"]): r["sent_s"] for r in self.rows}
        a, b = get.get((ours, threads, beam)), get.get((theirs, threads, beam))
        return None if not a or not b else a / b

    def summary(self) -> list[str]:
        lines = [f"{r['engine']:12s} threads {r['threads']} beam {r['beam']}: "
                 f"{r['sent_s']:7.1f} sent/s {r['tok_s']:8.0f} tok/s BLEU {r['bleu']:5.2f}"
                 for r in self.rows]
        for (threads, beam) in sorted({(r["threads"], r["beam"]) for r in self.rows}):
            for (ours, theirs), by_beam in TARGETS.items():
                ratio = self.ratio(threads, beam, ours, theirs)
                if ratio is not None and beam in by_beam:
                    met = "met" if ratio >= by_beam[beam] else "NOT met"
                    lines.append(f"{ours} / {theirs}, threads {threads}, beam {beam}: "
                                 f"{ratio:.2f}x (target >= {by_beam[beam]}): {met}")
        return lines

    def markdown(self, command: str) -> str:
        head = (f"## Decoding: attnkit's search and CTranslate2 on the same model\n\n"
                f"Command: `{command}` ({self.date}). Model: `{self.checkpoint}`; "
                f"{self.sentences} sentences of {self.source}; batches of 64 sorted by "
                "length, output limit 2·S + 10, GNMT α = 0.6 for beam 5."
                + "".join(f" Exported `model.bin` ({q}): {n / 1e6:.1f} MB."
                          for q, n in self.sizes.items()) + "\n\n"
                "| engine | threads | beam | seconds | sentences/s | target tokens/s | "
                "sacreBLEU | vs attnkit |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
        base = {(r["threads"], r["beam"]): r["sent_s"] for r in self.rows
                if r["engine"] == "attnkit"}
        body = "".join(
            f"| {r['engine']} | {r['threads']} | {r['beam']} | {r['seconds']:.1f} | "
            f"{r['sent_s']:.1f} | {r['tok_s']:,.0f} | {r['bleu']:.2f} | "
            f"{r['sent_s'] / base[(r['threads'], r['beam'])]:.2f}× |\n" for r in self.rows)
        return head + body + "\n" + "\n".join(f"- {line}" for line in self.summary()
                                              if "target" in line) + "\n"


def _time(engine, sentences: list[str], beam: int, tokenize) -> tuple[float, list[str], int]:
    t0 = time.perf_counter()
    hyps = engine.translate(sentences, beam_size=beam, alpha=0.6)
    seconds = time.perf_counter() - t0
    return seconds, hyps, sum(len(tokenize(h)) + 1 for h in hyps)


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


def _engines(translator, folder: Path, threads: int) -> dict:
    """attnkit's translator and the CTranslate2 engines of the exports, on ``threads``."""
    from ...export.ctranslate2_translator import load_ctranslate2

    return {"attnkit": translator, "attnkit int8": translator.with_precision("int8"),
            **{f"ct2 {q}": load_ctranslate2(folder / q, threads=threads)
               for q in _QUANTIZATIONS}}


def _test_set(run: Run, split: str, limit: int | None):
    """The split of the run's data, in the tokenization the run was trained on."""
    srcs, refs = run_test_split(run, split, needed_by="the decoding benchmark")
    return srcs[:limit] if limit else srcs, refs[:limit] if limit else refs


def run(*, checkpoint: str, split: str = "test_2016_flickr", threads: tuple[int, ...] = (1, 2),
        beams: tuple[int, ...] = (1, 5), limit: int | None = None) -> DecodingResult:
    """Translate the split with every engine, thread count and beam; nothing is written
    but the temporary exports.

    The run is opened once and its checkpoint verified once; the split, the translator
    and the exports are read from it as one, safe beside a training on the run
    (:func:`attnkit.runs.run.read_beside_writer` reads a replaced latest anew)."""
    rows, sizes = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        (srcs, refs), translator = read_beside_writer(
            checkpoint, lambda ckpt: _prepare(ckpt, split, limit, Path(tmp), sizes))
        tokenize = translator.tokenizers.tgt.encode
        for n in threads:
            with held_threads(n):
                engines = _engines(translator, Path(tmp), n)
                for beam in beams:
                    for name, engine in engines.items():
                        engine.translate(srcs[:8], beam_size=beam)  # warm-up
                        seconds, hyps, tokens = _time(engine, srcs, beam, tokenize)
                        rows.append({"engine": name, "threads": n, "beam": beam,
                                     "seconds": seconds, "sent_s": len(srcs) / seconds,
                                     "tok_s": tokens / seconds,
                                     "bleu": corpus_bleu(hyps, refs).score})
    return DecodingResult(rows, len(srcs), f"Multi30k {split}", checkpoint,
                          _dt.date.today().isoformat(), sizes)
