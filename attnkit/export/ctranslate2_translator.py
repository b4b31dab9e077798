"""Translate with an exported CTranslate2 model and attnkit's tokenizer.

:func:`load_ctranslate2` opens a directory written by
:func:`attnkit.export.export_ctranslate2` and returns a
:class:`CTranslate2Translator`, a
:class:`attnkit.decode.protocols.SentenceTranslator` as :class:`attnkit.decode.Translator`
is: ``translate(sentences, beam_size=, max_output_len=, alpha=, progress=)`` and
``overlong(sentences)``, without n-best lists (``supports_n_best`` is false: its beam
keeps other hypotheses than attnkit's, see below). It decodes what attnkit's own search
decodes:

* sources are attnkit's token ids (the vocabularies keep them), cut to the
  positional table like attnkit's, with ``<eos>`` appended; one output per
  input, blank in, blank out;
* sentences are batched as attnkit batches them (64 at a time, by length),
  and each sentence gets attnkit's output limit: ``max_output_len`` or
  ``2·S + 10`` for its own source of ``S`` ids, at most the table size − 1
  (one engine call per distinct limit, so neighbours never change an output);
* ``beam_size=1`` is greedy search (the most likely token at every step);
* beam search keeps ``K`` beams and ranks finished hypotheses by
  ``log P / ((5 + |y|) / 6)^alpha`` (GNMT, ``|y|`` counting ``<eos>``), as
  :func:`attnkit.decode.search.beam_search` does.

CTranslate2 has no GNMT penalty: its ``length_penalty`` divides by
``|y|^length_penalty`` (``|y|`` without ``<eos>``). So the search runs with
``length_penalty=0`` (raw log-probabilities), returns its ``K`` best
hypotheses with their scores, and these are ranked here with the GNMT
penalty. Both searches follow the same rules (those of fairseq and
OpenNMT-py too): the ``K`` beams are the best extensions that are not
``<eos>`` out of the ``2K`` best, an ``<eos>`` finishes a hypothesis only
when it ranks among the first ``K`` of those ``2K``, and at the output limit
the live beams count as hypotheses, and a sentence stops once it holds ``K``
hypotheses and a step's best extension was ``<eos>`` (attnkit's default stop
rule, ``"best_ended"``). Greedy search is exactly attnkit's, and so is beam search
but for floating-point differences of the two engines' arithmetic; attnkit's
``stop="exact"`` (keep going while a longer hypothesis could still win under the
penalty) has no CTranslate2 counterpart. The search constraints ``no_repeat_ngram`` and
``repetition_penalty`` (:class:`attnkit.decode.search.Constraints`) are CTranslate2's
``no_repeat_ngram_size`` and ``repetition_penalty``, the same rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .._io import read_json
from .._values import check_choice, check_nonnegative_int
from ..decode.search import NO_CONSTRAINTS, Constraints
from ..decode.translator import by_output_limit, in_batches, overlong_sources
from ..models.family import model_config_from_dict
from . import ctranslate2 as _ct2
from .ctranslate2 import engine_config, require_ctranslate2, vocabulary
from .directory import EXPORT_INFO, MANIFEST, verify_export

__all__ = ["CTranslate2Translator", "load_ctranslate2", "read_export"]

def _gnmt(length: int, alpha: float) -> float:
    return ((5.0 + length) / 6.0) ** alpha


class CTranslate2Translator:
    """An exported CTranslate2 model with its tokenizers; see the module docs.

    Attributes:
        path: the exported directory; ``info``: its :data:`EXPORT_INFO` record;
        tokenizers: the run's :class:`attnkit.data.TokenizerPair`;
        engine: the ``ctranslate2.Translator``.
    """

    supports_n_best = False  # its beam keeps other hypotheses than attnkit's (module docs)
    memory_config = None  # CTranslate2 holds its own memory

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
                        max_output_len: int | None = None, alpha: float = 0.6,
                        rules: Constraints = NO_CONSTRAINTS) -> list[str]:
        """One batch, each sentence under its own output limit and the search constraints
        ``rules`` (see the module docs)."""
        sources = self._sources(sentences)

        # CTranslate2 takes one max_decoding_length per call, so each call holds the
        # sentences of one limit: under another limit a sentence's output would change
        # (greedy: cut shorter or run longer; beam: also other <eos> candidates, another
        # stop, other live beams counted at the limit), so exactness needs the grouping.
        def decode(group: list[list[str]], limit: int) -> list[str]:
            results = self.engine.translate_batch(
                group, beam_size=beam_size, num_hypotheses=beam_size, length_penalty=0.0,
                max_decoding_length=limit, min_decoding_length=0, max_input_length=0,
                return_scores=True, return_end_token=True,
                no_repeat_ngram_size=rules.no_repeat_ngram,
                repetition_penalty=rules.repetition_penalty)
            return [self._decode(self._best(r, beam_size, alpha)) for r in results]

        return by_output_limit(sources, [len(x) + 1 for x in sources], max_output_len,
                               self.positions, decode)

    def translate(self, sentences: list[str], *, beam_size: int = 1,
                  max_output_len: int | None = None, alpha: float = 0.6,
                  progress: Callable[[int], object] | None = None,
                  stop: str = "best_ended", no_repeat_ngram: int = 0,
                  repetition_penalty: float = 1.0) -> list[str]:
        """One output per sentence, in input order (a blank sentence gives a blank output),
        batched as attnkit's own translator batches them. ``stop``: CTranslate2's beam
        stops by one rule, ``"best_ended"`` (:data:`attnkit.decode.search.STOP_RULES`);
        ``no_repeat_ngram``, ``repetition_penalty``: the search constraints (module docs).

        Raises:
            ValueError: another ``stop`` rule; a constraint out of its range.
        """
        if stop != "best_ended":
            raise ValueError(f"stop must be 'best_ended' with --engine ctranslate2 (its "
                             f"beam search stops by that rule only); got {stop!r}")
        rules = Constraints(no_repeat_ngram, repetition_penalty)
        return in_batches(list(sentences), lambda texts: self.translate_batch(
            texts, beam_size=beam_size, max_output_len=max_output_len, alpha=alpha,
            rules=rules), progress=progress)

    def overlong(self, sentences: list[str]) -> list[int]:
        """Indices of ``sentences`` too long for the positional table (cut when translated)."""
        return overlong_sources(self.tokenizers, list(sentences), self.positions)


def _not_an_export(p: Path, why: str) -> FileNotFoundError:
    return FileNotFoundError(f"{p} is not a directory written by 'attnkit export ctranslate2' "
                             f"({why})")


def _format_1(p: Path) -> None:
    """Refuse, naming both formats, an export written before exports had a manifest."""
    try:
        info = read_json(p / EXPORT_INFO, missing=ValueError())
    except ValueError:
        return  # not readable: verify_export names what is missing
    if info.get("format") == 1:
        raise ValueError(f"{p / EXPORT_INFO}: export format 1 (attnkit "
                         f"{info.get('attnkit_version', '?')}, before exports had checksums); "
                         f"this attnkit reads format {_ct2.EXPORT_FORMAT}: export the run again")


def _check_info(f: Path, info: dict) -> None:
    """The fields of :data:`EXPORT_INFO` the loader uses, each checked (naming ``f``)."""
    if info.get("format") != _ct2.EXPORT_FORMAT or info.get("engine") != "ctranslate2":
        raise ValueError(f"{f}: describes format {info.get('format')!r} for "
                         f"{info.get('engine')!r}; this attnkit reads format "
                         f"{_ct2.EXPORT_FORMAT} for 'ctranslate2'")
    check_choice(f"{f}: quantization", info.get("quantization"), _ct2.QUANTIZATIONS)
    try:
        model = model_config_from_dict(info.get("model"), where=f"{f}: model")
    except (TypeError, ValueError) as e:
        text = str(e)
        raise ValueError(text if str(f) in text else f"{f}: model: {text}") from None
    positions = info.get("positions")
    if type(positions) is not int or positions != model.max_len:
        raise ValueError(f"{f}: positions must be the model's max_len ({model.max_len}); got "
                         f"{positions!r}")


def _check_config(f: Path, info: dict) -> None:
    """``config.json`` says what attnkit's decoding relies on (its special tokens) and
    what the export wrote (the copy in :data:`EXPORT_INFO`)."""
    config = read_json(f, missing=ValueError(f"{f}: missing"))
    for key, want in engine_config().items():
        if key not in config or config[key] != want:
            raise ValueError(f"{f}: {key} must be {want!r}, as attnkit exports it; got "
                             f"{config.get(key, '(nothing)')!r}")
    saved = info.get("config") if isinstance(info.get("config"), dict) else {}
    if config != info.get("config"):
        changed = sorted(k for k in {*config, *saved} if config.get(k) != saved.get(k))
        raise ValueError(f"{f}: differs from the copy in {EXPORT_INFO} written with it "
                         f"(in {', '.join(changed) or 'its structure'})")


def read_export(path: str | Path) -> dict:
    """The :data:`EXPORT_INFO` record of the CTranslate2 export at ``path``, once its
    files match its manifest and its record and ``config.json`` are what attnkit writes.

    Raises:
        FileNotFoundError: ``path`` is not such a directory.
        ValueError: one line naming the file that is missing, altered or unexpected.
    """
    p = Path(path)
    if not p.is_dir():
        raise _not_an_export(p, "not a directory" if p.exists() else "no such directory")
    if not (p / EXPORT_INFO).is_file() and not (p / MANIFEST).is_file():
        raise _not_an_export(p, f"no {EXPORT_INFO}")
    if not (p / MANIFEST).is_file():
        _format_1(p)
    verify_export(p, required=(EXPORT_INFO, "config.json", "model.bin"))
    info = read_json(p / EXPORT_INFO, missing=_not_an_export(p, f"no {EXPORT_INFO}"))
    _check_info(p / EXPORT_INFO, info)
    _check_config(p / "config.json", info)
    return info


def _tokenizers(p: Path):
    """The export's ``tokenizer/``; its errors name the folder."""
    from ..data.tokenizer import TokenizerPair

    where = p / "tokenizer"
    try:
        return TokenizerPair.load(where)
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError, OSError) as e:
        text = str(e).strip() or type(e).__name__
        raise ValueError(text if str(where) in text else f"{where}: {text}") from None


def _tokens(f: Path) -> list[str]:
    """The token strings of the vocabulary file ``f`` (a JSON list of strings)."""
    if not f.is_file():
        raise ValueError(f"{f}: missing (an export holds its vocabularies)")
    try:
        tokens = json.loads(f.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{f}: not valid JSON: {e}") from None
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise ValueError(f"{f}: expected a JSON list of token strings")
    return tokens


def _check_vocabularies(p: Path, tokenizers) -> None:
    """Token ``i`` of each vocabulary file is token ``i`` of the tokenizer (the engine
    reads the files, attnkit encodes and decodes with the tokenizer)."""
    shared = p / "shared_vocabulary.json"
    files = ([(shared, tokenizers.src), (shared, tokenizers.tgt)] if shared.is_file() else
             [(p / "source_vocabulary.json", tokenizers.src),
              (p / "target_vocabulary.json", tokenizers.tgt)])
    for f, tokenizer in files:
        got, want = _tokens(f), vocabulary(tokenizer)
        if got == want:
            continue
        i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
        if i is None:
            raise ValueError(f"{f}: {len(got)} tokens, while tokenizer/ has {len(want)}")
        raise ValueError(f"{f}: token {i} is {got[i]!r}, while tokenizer/ has {want[i]!r} "
                         "(the vocabulary must keep attnkit's token ids)")


def load_ctranslate2(path: str | Path, *, threads: int = 0,
                     compute_type: str = "default") -> CTranslate2Translator:
    """The exported model at ``path`` on the CPU (``threads`` 0: CTranslate2's default).

    ``compute_type`` ``"default"`` runs the weights in the type they were
    exported with (``quantization``). Every file is checked against the
    export's manifest (size and SHA-256) before any is read, and the
    vocabularies against the tokenizer (:func:`read_export`).

    Raises:
        OSError: ctranslate2 not installed, or ``path`` not an exported directory.
        ValueError: one line naming the file of the export that is missing, altered or
            unexpected, or that the engine cannot load; an export of another format.
    """
    ct2 = require_ctranslate2("reading a CTranslate2 export")
    check_nonnegative_int("threads", threads)
    types = sorted({"default", "auto", *ct2.get_supported_compute_types("cpu")})
    check_choice("compute_type", compute_type, types)
    p = Path(path)
    info = read_export(p)
    tokenizers = _tokenizers(p)
    _check_vocabularies(p, tokenizers)
    try:
        engine = ct2.Translator(str(p), device="cpu", compute_type=compute_type,
                                intra_threads=threads, inter_threads=1)
    except (RuntimeError, ValueError, TypeError, OSError) as e:  # config.json is checked
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ValueError(f"{p / 'model.bin'}: CTranslate2 cannot load it: {first}") from None
    return CTranslate2Translator(p, info, tokenizers, engine)
