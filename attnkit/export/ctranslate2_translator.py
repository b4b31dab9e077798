"""Translate with an exported CTranslate2 model and attnkit's tokenizer.

:func:`load_ctranslate2` opens a directory written by
:func:`attnkit.export.export_ctranslate2` and returns a
:class:`CTranslate2Translator` with the interface of
:class:`attnkit.decode.Translator`: ``translate(sentences, beam_size=,
max_output_len=, alpha=, progress=)`` and ``overlong(sentences)``. It
decodes what attnkit's own search decodes:

* sources are attnkit's token ids (the vocabularies keep them), cut to the
  positional table like attnkit's, with ``<eos>`` appended; one output per
  input, blank in, blank out;
* sentences are batched as attnkit batches them (64 at a time, by length),
  and each batch gets attnkit's output limit: ``max_output_len`` or
  ``2·S + 10`` for its longest source of ``S`` ids, at most the table size − 1;
* ``beam_size=1`` is greedy search (the most likely token at every step);
* beam search keeps ``K`` beams and ranks finished hypotheses by
  ``log P / ((5 + |y|) / 6)^alpha`` (GNMT, ``|y|`` counting ``<eos>``), as
  :func:`attnkit.decode.search.beam_search` does.

CTranslate2 has no GNMT penalty: its ``length_penalty`` divides by
``|y|^length_penalty`` (``|y|`` without ``<eos>``). So the search runs with
``length_penalty=0`` (raw log-probabilities), returns its ``K`` best
hypotheses with their scores, and these are ranked here with the GNMT
penalty. Both searches keep the same beams (the ``K`` best extensions that
are not ``<eos>``, out of the ``2K`` best), and greedy search is exactly
attnkit's. Where beam outputs can differ, precisely:

1. an ``<eos>`` ranked between ``K`` and ``2K`` at a step finishes a
   hypothesis in attnkit's search; CTranslate2 (like fairseq and
   OpenNMT-py) finishes only an ``<eos>`` ranked below ``K``. This matters
   when such a hypothesis is the best one, which happens with narrow beams
   (``K`` = 2 or 3) on weak models;
2. at the output limit CTranslate2 keeps the live beams as hypotheses; attnkit
   drops them when the sentence already has ``K`` finished ones;
3. with ``alpha > 0``, CTranslate2 stops once its best beam has ended and it
   holds ``K`` hypotheses, while attnkit keeps going while a longer hypothesis
   could still win under the penalty.

With ``alpha = 0`` rule 3 does not apply (no later hypothesis can beat an
ended best beam), and with rules 1 and 2 aside the outputs are attnkit's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..decode.translator import in_batches, output_limit, overlong_sources
from .ctranslate2 import EXPORT_INFO, require_ctranslate2, vocabulary

__all__ = ["CTranslate2Translator", "load_ctranslate2"]

def _gnmt(length: int, alpha: float) -> float:
    return ((5.0 + length) / 6.0) ** alpha


class CTranslate2Translator:
    """An exported CTranslate2 model with its tokenizers; see the module docs.

    Attributes:
        path: the exported directory; ``info``: its :data:`EXPORT_INFO` record;
        tokenizers: the run's :class:`attnkit.data.TokenizerPair`;
        engine: the ``ctranslate2.Translator``.
    """

    def __init__(self, path: Path, info: dict, tokenizers, engine):
        self.path, self.info, self.tokenizers, self.engine = path, info, tokenizers, engine
        self.positions: int | None = info.get("positions")
        self._src_tokens = vocabulary(tokenizers.src)
        tgt = vocabulary(tokenizers.tgt)
        self._tgt_ids = {t: i for i, t in enumerate(tgt)}
        self._eos = tgt[tokenizers.tgt.eos_id]

    def _sources(self, sentences: list[str]) -> list[list[str]]:
        """Source token strings, cut like attnkit's (room for the ``<eos>`` the model adds)."""
        cut = None if self.positions is None else self.positions - 1
        return [[self._src_tokens[i] for i in self.tokenizers.src.encode(s)[:cut]]
                for s in sentences]


    def _best(self, result, beam_size: int, alpha: float) -> list[str]:
        hyps = result.hypotheses
        if beam_size == 1 or len(hyps) == 1:
            return hyps[0]
        # the first of equal scores wins, as in attnkit's stable sort
        best = max(range(len(hyps)), key=lambda k: result.scores[k] / _gnmt(len(hyps[k]), alpha))
        return hyps[best]

    def _decode(self, tokens: list[str]) -> str:
        return self.tokenizers.tgt.decode([self._tgt_ids[t] for t in tokens])

    def translate_batch(self, sentences: list[str], *, beam_size: int = 1,
                        max_output_len: int | None = None, alpha: float = 0.6) -> list[str]:
        """One batch, decoded together under one output limit (see the module docs)."""
        sources = self._sources(sentences)
        results = self.engine.translate_batch(
            sources, beam_size=beam_size, num_hypotheses=beam_size, length_penalty=0.0,
            max_decoding_length=output_limit(max(map(len, sources)) + 1, max_output_len,
                                             self.positions), min_decoding_length=0,
            max_input_length=0, return_scores=True, return_end_token=True)
        return [self._decode(self._best(r, beam_size, alpha)) for r in results]

    def translate(self, sentences: list[str], *, beam_size: int = 1,
                  max_output_len: int | None = None, alpha: float = 0.6,
                  progress: Callable[[int], object] | None = None) -> list[str]:
        """One output per sentence, in input order (a blank sentence gives a blank output),
        batched as attnkit's own translator batches them."""
        return in_batches(list(sentences), lambda texts: self.translate_batch(
            texts, beam_size=beam_size, max_output_len=max_output_len, alpha=alpha),
            progress=progress)

    def overlong(self, sentences: list[str]) -> list[int]:
        """Indices of ``sentences`` too long for the positional table (cut when translated)."""
        return overlong_sources(self.tokenizers, list(sentences), self.positions)


def load_ctranslate2(path: str | Path, *, threads: int = 0,
                     compute_type: str = "default") -> CTranslate2Translator:
    """The exported model at ``path`` on the CPU (``threads`` 0: CTranslate2's default).

    ``compute_type`` ``"default"`` runs the weights in the type they were
    exported with (``--quantization``).

    Raises:
        OSError: ctranslate2 not installed, or ``path`` not an exported directory.
        ValueError: an export of another format.
    """
    from ..data.tokenizer import TokenizerPair

    ct2 = require_ctranslate2("--engine ctranslate2")
    p = Path(path)
    if not (p / EXPORT_INFO).is_file():
        raise FileNotFoundError(f"--model: {p} is not a directory written by "
                                f"'attnkit export ctranslate2' (no {EXPORT_INFO})")
    info = json.loads((p / EXPORT_INFO).read_text(encoding="utf-8"))
    if info.get("format") != 1 or info.get("engine") != "ctranslate2":
        raise ValueError(f"--model: {p / EXPORT_INFO} describes format {info.get('format')!r} "
                         f"for {info.get('engine')!r}; this attnkit reads format 1 for "
                         "'ctranslate2'")
    tokenizers = TokenizerPair.load(p / "tokenizer")
    engine = ct2.Translator(str(p), device="cpu", compute_type=compute_type,
                            intra_threads=int(threads), inter_threads=1)
    return CTranslate2Translator(p, info, tokenizers, engine)
