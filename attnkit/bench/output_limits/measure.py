"""How :mod:`attnkit.bench.output_limits` measures: the model, the one decoding call and
the hash of its outputs; :func:`run` returns an :class:`OutputLimitsResult`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from ...data.tokenizer import TokenizerPair, WordTokenizer
from ...decode.translator import translate_sentences
from ...models import Transformer
from ...runtime import held_threads
from ..report import section_markers
from ..toolkit import default_data_root

__all__ = ["END", "START", "OutputLimitsResult", "run"]

START, END = section_markers("output_limits")


@dataclass
class OutputLimitsResult:
    beam: int
    sentences: int
    cpu_s: float
    wall_s: float
    tokens: int
    digest: str  # the outputs' hash: equal digests, the same translations
    date: str
    markers: ClassVar[tuple[str, str]] = (START, END)

    def summary(self) -> list[str]:
        return [f"beam {self.beam}: cpu {self.cpu_s:.2f} s, wall {self.wall_s:.2f} s, "
                f"{self.tokens} tokens, outputs {self.digest}"]

    def markdown(self, command: str) -> str:
        return ("## Decoding when every output runs to its limit\n\n"
                f"Command: `{command}` ({self.date}; the first {self.sentences} Multi30k "
                "validation sentences, one thread, an untrained d=256 3+3-layer Transformer "
                "that never predicts a special token)\n\n"
                "| beam | CPU s | wall s | output tokens | outputs |\n|---:|---:|---:|---:|---|\n"
                f"| {self.beam} | {self.cpu_s:.2f} | {self.wall_s:.2f} | {self.tokens} | "
                f"`{self.digest}` |\n")


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def run(*, beam: int = 5, sentences: int = 500,
        data_root: str | Path | None = None) -> OutputLimitsResult:
    """Decode the first ``sentences`` validation sentences with beam ``beam``, timed."""
    if beam < 1:
        raise ValueError(f"--beam: expected at least 1, got {beam}")
    if sentences < 1:
        raise ValueError(f"--sentences: expected at least 1, got {sentences}")
    raw = (default_data_root() if data_root is None else Path(data_root)) / "raw"
    src, tgt = _lines(raw / "val.de"), _lines(raw / "val.en")
    with held_threads(1):
        tok = TokenizerPair(WordTokenizer.train(src), WordTokenizer.train(tgt))
        torch.manual_seed(0)
        model = Transformer(tok.src.vocab_size, tok.tgt.vocab_size, num_hiddens=256,
                            num_heads=4, ffn_num_hiddens=512, num_encoder_layers=3,
                            num_decoder_layers=3, dropout=0.0, max_len=256).eval()
        with torch.no_grad():
            model.output.bias[:4] = -1e4  # no <pad>/<unk>/<bos>/<eos>: outputs run to the limit
        wall, cpu = time.perf_counter(), time.process_time()
        out = translate_sentences(model, tok, src[:sentences], beam_size=beam, positions=256)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    digest = hashlib.sha256("\n".join(out).encode()).hexdigest()[:12]
    return OutputLimitsResult(beam, min(sentences, len(src)), cpu, wall,
                              sum(len(o.split()) for o in out), digest,
                              _dt.date.today().isoformat())
