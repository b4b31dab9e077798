"""Translating with a trained run: load it, translate sentences, capture attention.

A run is rebuilt from its checkpoint's model section alone
(:func:`attnkit.runs.run.open_run`); the training config is never
consulted, so a later change of training defaults cannot change what an old
checkpoint computes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from ..data.tokenizer import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, TokenizerPair
from ..models.build import build_model
from ..runs.run import Run, open_run, read_beside_writer
from .ensemble import EnsembleDecoder
from .precision import PRECISIONS, quantized_int8, running
from .search import (
    DEFAULT_STOP,
    Constraints,
    beam_search,
    check_n_best,
    greedy_search,
    n_best_unchecked,
)

__all__ = ["BATCH_SIZE", "EnsembleTranslator", "Translator", "capture_for_pair", "in_batches",
           "load_translator", "output_limit", "output_limits",
           "overlong_sources", "positions_of", "translate_n_best", "translate_sentences"]


def positions_of(model_config) -> int | None:
    """Positions the model's positional table covers (``None``: no limit, an RNN)."""
    return getattr(model_config, "max_len", None)


def _source_batch(tokenizers: TokenizerPair, sentences: list[str], max_src_len: int | None,
                  device) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded source ids ``(B, S)`` (EOS appended) and their lengths ``(B,)``."""
    ids = [tokenizers.src.encode(s) for s in sentences]
    if max_src_len is not None:
        ids = [x[: max_src_len - 1] for x in ids]  # room for EOS
    ids = [x + [EOS_ID] for x in ids]
    lens = torch.tensor([len(x) for x in ids], device=device)  # (B,)
    src = torch.full((len(ids), int(lens.max())), PAD_ID, dtype=torch.long, device=device)
    for r, x in enumerate(ids):
        src[r, : len(x)] = torch.tensor(x, device=device)
    return src, lens


BATCH_SIZE = 64  # sentences decoded together


def output_limit(source_len: int, max_output_len: int | None, positions: int | None) -> int:
    """Longest output, in tokens, for a sentence whose source has ``source_len`` ids
    (EOS included): ``max_output_len``, else ``2·source_len + 10``; at most
    ``positions - 1`` (BOS takes the first position of the target's table)."""
    limit = max_output_len or 2 * source_len + 10
    return limit if positions is None else min(limit, positions - 1)


def output_limits(source_lens: list[int], max_output_len: int | None,
                  positions: int | None) -> list[int]:
    """:func:`output_limit` of each source of ``source_lens`` ids (EOS included)."""
    return [output_limit(n, max_output_len, positions) for n in source_lens]


def by_output_limit(texts: list, source_lens: list[int], max_output_len: int | None,
                    positions: int | None, translate: Callable[[list, int], list]) -> list:
    """``translate(group, limit)`` once per distinct :func:`output_limit` among ``texts``
    (``source_lens``: each one's source ids, EOS included), outputs in input order.

    For an engine whose search takes one limit per call: its sentences are decoded
    together only with those of the same limit, so each gets its own, never its batch's
    (attnkit's own search takes one limit per sentence and needs no grouping).
    """
    limits = output_limits(source_lens, max_output_len, positions)
    out: list = [None] * len(texts)
    for limit in sorted(set(limits)):
        idx = [i for i, lim in enumerate(limits) if lim == limit]
        for i, res in zip(idx, translate([texts[i] for i in idx], limit), strict=True):
            out[i] = res
    return out


def in_batches(sentences: list[str], translate_batch: Callable[[list[str]], list], *,
               batch_size: int = BATCH_SIZE,
               progress: Callable[[int], object] | None = None, blank: object = "") -> list:
    """One output per sentence, in input order: a blank sentence gives ``blank`` (a blank
    output), the others go to ``translate_batch`` in batches of similar length (sorted by
    characters). ``progress(n)`` is called after each batch of ``n`` sentences."""
    order = sorted((i for i, s in enumerate(sentences) if s.strip()),
                   key=lambda i: len(sentences[i]))
    out: list = [blank] * len(sentences)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        for i, text in zip(idx, translate_batch([sentences[i] for i in idx]), strict=True):
            out[i] = text
        if progress is not None:
            progress(len(idx))
    return out


def translate_sentences(model, tokenizers: TokenizerPair, sentences: list[str], *,
                        beam_size: int = 1, max_output_len: int | None = None,
                        alpha: float = 0.6, batch_size: int = BATCH_SIZE, device=None,
                        positions: int | None = None,
                        progress: Callable[[int], object] | None = None,
                        stop: str = DEFAULT_STOP, no_repeat_ngram: int = 0,
                        repetition_penalty: float = 1.0) -> list[str]:
    """Translate ``sentences`` with greedy (``beam_size=1``) or beam search, one output
    per input, in input order (:func:`in_batches`); ``stop``: when a sentence's beam
    search stops (:data:`attnkit.decode.search.STOP_RULES`); ``no_repeat_ngram``,
    ``repetition_penalty``: the search's constraints
    (:class:`attnkit.decode.search.Constraints`, checked before anything is translated).

    ``max_output_len`` limits each output in tokens (:func:`output_limit`);
    ``positions`` is the size of the model's positional table
    (:func:`positions_of`): sources longer than that are cut to fit
    (:func:`overlong_sources` tells which).
    """
    rules = dict(no_repeat_ngram=no_repeat_ngram, repetition_penalty=repetition_penalty)
    Constraints(**rules)  # refused before any sentence is read
    device = device or next(model.parameters()).device
    model.eval()

    def translate_batch(texts: list[str]) -> list[str]:
        src, lens, limits = _search_input(tokenizers, texts, positions, max_output_len, device)
        if beam_size == 1:
            res = greedy_search(model, src, lens, bos_id=BOS_ID, eos_id=EOS_ID,
                                max_output_len=limits, **rules)
        else:
            res = beam_search(model, src, lens, bos_id=BOS_ID, eos_id=EOS_ID,
                              beam_size=beam_size, max_output_len=limits, alpha=alpha,
                              stop=stop, **rules)
        return [tokenizers.tgt.decode(toks) for toks in res]

    return in_batches(list(sentences), translate_batch, batch_size=batch_size,
                      progress=progress)


def _search_input(tokenizers: TokenizerPair, texts: list[str], positions: int | None,
                  max_output_len: int | None, device
                  ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Source ids ``(B, S)``, their lengths ``(B,)`` and each sentence's own output limit
    (:func:`output_limit` of its source, never of its batch's longest: a sentence
    translates the same alone, in a file beside longer ones, or streamed)."""
    src, lens = _source_batch(tokenizers, texts, positions, device)  # (B, S), (B,)
    return src, lens, output_limits(lens.tolist(), max_output_len, positions)


def translate_n_best(model, tokenizers: TokenizerPair, sentences: list[str], *, n_best: int,
                     beam_size: int, max_output_len: int | None = None, alpha: float = 0.6,
                     batch_size: int = BATCH_SIZE, device=None, positions: int | None = None,
                     progress: Callable[[int], object] | None = None,
                     stop: str = DEFAULT_STOP, no_repeat_ngram: int = 0,
                     repetition_penalty: float = 1.0) -> list[list[tuple[str, float]]]:
    """The ``n_best`` best translations of each sentence with their scores, best first
    (:func:`attnkit.decode.search.n_best_search`, checked once here), batched, cut and
    constrained as :func:`translate_sentences` does: the first of each list is its
    translation.

    A score is the log-probability divided by the GNMT length penalty, the beam's own
    ranking. A blank sentence gives one blank translation of score 0; a sentence gets
    fewer than ``n_best`` only when the search finds fewer.

    Raises:
        ValueError: ``n_best > beam_size`` (naming both) or either not a positive int.
    """
    check_n_best(n_best, beam_size)
    rules = Constraints(no_repeat_ngram, repetition_penalty)
    device = device or next(model.parameters()).device
    model.eval()

    def translate_batch(texts: list[str]) -> list[list[tuple[str, float]]]:
        src, lens, limits = _search_input(tokenizers, texts, positions, max_output_len, device)
        found = n_best_unchecked(model, src, lens, bos_id=BOS_ID, eos_id=EOS_ID,
                                 n_best=n_best, beam_size=beam_size, max_output_len=limits,
                                 alpha=alpha, stop=stop, rules=rules)
        return [[(tokenizers.tgt.decode(h.tokens), h.score) for h in hyps] for hyps in found]

    out = in_batches(list(sentences), translate_batch, batch_size=batch_size,
                     progress=progress, blank=None)
    return [[("", 0.0)] if hyps is None else hyps for hyps in out]


def overlong_sources(tokenizers: TokenizerPair, sentences: list[str],
                     positions: int | None) -> list[int]:
    """Indices of the sentences whose source ids (EOS included) exceed ``positions``:
    :func:`translate_sentences` cuts them to fit."""
    if positions is None:
        return []
    return [i for i, s in enumerate(sentences)
            if s.strip() and len(tokenizers.src.encode(s)) + 1 > positions]


@dataclass
class Translator:
    """A model ready for inference, with its tokenizers and the run it came from; a
    :class:`attnkit.decode.protocols.SentenceTranslator` that gives n-best lists too.

    ``precision`` is what the model translates in (:mod:`attnkit.decode.precision`):
    an ``int8`` model is quantized already, a ``bf16`` one runs under autocast."""

    model: torch.nn.Module
    tokenizers: TokenizerPair
    run: Run | None = None
    precision: str = "fp32"
    supports_n_best: ClassVar[bool] = True

    @property
    def path(self) -> Path | None:
        return None if self.run is None else self.run.path

    @property
    def memory_config(self):
        """The run's model config (``None`` without a run: the model alone is known)."""
        return None if self.run is None else self.run.model

    @property
    def positions(self) -> int | None:
        """The positional table size sources are cut to (``None``: no table known)."""
        return positions_of(None if self.run is None else self.run.model)

    def with_precision(self, precision: str) -> Translator:
        """This translator in ``precision`` (one of
        :data:`attnkit.decode.precision.PRECISIONS`), from an fp32 one: ``int8`` runs a
        quantized copy of the model (this one keeps its own), ``bf16`` the same model
        under autocast.

        Raises:
            ValueError: an unknown ``precision``, or this translator is not fp32.
        """
        from .._values import check_choice

        check_choice("precision", precision, PRECISIONS)
        if precision == self.precision:
            return self
        if self.precision != "fp32":
            raise ValueError(f"a {self.precision} translator cannot become {precision}; "
                             "load the run again")
        model = quantized_int8(self.model) if precision == "int8" else self.model
        return dataclasses.replace(self, model=model, precision=precision)

    def translate(self, sentences: list[str], *, beam_size: int = 1,
                  max_output_len: int | None = None, alpha: float = 0.6,
                  progress: Callable[[int], object] | None = None,
                  stop: str = DEFAULT_STOP, no_repeat_ngram: int = 0,
                  repetition_penalty: float = 1.0) -> list[str]:
        with running(self.precision):
            return translate_sentences(self.model, self.tokenizers, list(sentences),
                                       beam_size=beam_size, max_output_len=max_output_len,
                                       alpha=alpha, progress=progress,
                                       positions=self.positions, stop=stop,
                                       no_repeat_ngram=no_repeat_ngram,
                                       repetition_penalty=repetition_penalty)

    def translate_n_best(self, sentences: list[str], *, n_best: int, beam_size: int,
                         max_output_len: int | None = None, alpha: float = 0.6,
                         progress: Callable[[int], object] | None = None,
                         stop: str = DEFAULT_STOP, no_repeat_ngram: int = 0,
                         repetition_penalty: float = 1.0) -> list[list[tuple[str, float]]]:
        """The ``n_best`` best ``(translation, score)`` of each sentence, best first; the
        first is what :meth:`translate` gives (see :func:`translate_n_best`)."""
        with running(self.precision):
            return translate_n_best(self.model, self.tokenizers, list(sentences),
                                    n_best=n_best, beam_size=beam_size,
                                    max_output_len=max_output_len, alpha=alpha,
                                    progress=progress, positions=self.positions, stop=stop,
                                    no_repeat_ngram=no_repeat_ngram,
                                    repetition_penalty=repetition_penalty)

    def overlong(self, sentences: list[str]) -> list[int]:
        """Indices of ``sentences`` too long for the model (cut when translated)."""
        return overlong_sources(self.tokenizers, list(sentences), self.positions)

    def capture(self, src: str, tgt: str | None = None, *, beam_size: int = 1):
        """Attention weights of every layer for one pair (``tgt=None``: the model's own
        translation), from a teacher-forced forward pass of the pair:
        ``(captures, src_tokens, tgt_tokens)``, the captures keyed by module name.

        The one capture path: the demo, ``attnkit explore`` and ``attnkit plot`` use it."""
        from ..nn.capture import capture_attention

        if tgt is None:
            tgt = self.translate([src], beam_size=beam_size)[0]
        s_ids = self.tokenizers.src.encode(src) + [EOS_ID]
        t_ids = [BOS_ID] + self.tokenizers.tgt.encode(tgt)
        dev = next(self.model.parameters()).device
        self.model.eval()
        with torch.no_grad(), running(self.precision), capture_attention(self.model) as caps:
            self.model(torch.tensor([s_ids], device=dev), torch.tensor([t_ids], device=dev),
                       torch.tensor([len(s_ids)], device=dev))
        captures = dict(caps.items())
        return captures, [_piece(self.tokenizers.src, i) for i in s_ids], \
            [_piece(self.tokenizers.tgt, i) for i in t_ids]


@dataclass
class EnsembleTranslator(Translator):
    """Several runs translating together (:meth:`of`): their models decode as one
    (:class:`attnkit.decode.ensemble.EnsembleDecoder`: at every step the mean of their
    log-probabilities), greedy, beam and n-best alike, reading and writing with the
    tokenizers they share. ``run`` is the first member's (whose data names test splits);
    sources are cut to the smallest positional table among them."""

    members: tuple[Translator, ...] = ()

    @classmethod
    def of(cls, members: Sequence[Translator]) -> EnsembleTranslator:
        """The ensemble of ``members``, translators of one precision whose source and target
        tokenizers are the same (the members read the same source ids and score the same
        target tokens; their model families and sizes may differ).

        Raises:
            ValueError: no member; two members whose tokenizers or precisions differ,
                naming both.
        """
        if not members:
            raise ValueError("an ensemble needs at least one translator; got none")
        first = members[0]
        for other in members[1:]:
            for side in ("src", "tgt"):
                if getattr(other.tokenizers, side) != getattr(first.tokenizers, side):
                    raise ValueError(
                        f"{first.path} and {other.path} cannot decode as an ensemble: their "
                        f"{'source' if side == 'src' else 'target'} tokenizers differ (the "
                        "members must read the same source ids and score the same target "
                        "vocabulary); ensemble runs trained with one tokenizer")
            if other.precision != first.precision:
                raise ValueError(f"{first.path} ({first.precision}) and {other.path} "
                                 f"({other.precision}): an ensemble runs in one precision")
        return cls(EnsembleDecoder([m.model for m in members]), first.tokenizers, first.run,
                   first.precision, tuple(members))

    @property
    def memory_config(self):
        """Every member's model config: their searches run together."""
        return tuple(m.memory_config for m in self.members)

    @property
    def positions(self) -> int | None:
        known = [p for p in (m.positions for m in self.members) if p is not None]
        return min(known) if known else None

    def with_precision(self, precision: str) -> EnsembleTranslator:
        """The ensemble with every member in ``precision`` (:meth:`Translator.with_precision`)."""
        return EnsembleTranslator.of([m.with_precision(precision) for m in self.members])

    def capture(self, src: str, tgt: str | None = None, *, beam_size: int = 1):
        """Refused: attention weights are one model's."""
        raise ValueError("attention weights are one model's; capture them with one of the "
                         f"ensemble's runs ({', '.join(str(m.path) for m in self.members)})")


def _check_vocab(run: Run, tokenizers: TokenizerPair) -> None:
    sizes = (tokenizers.src.vocab_size, tokenizers.tgt.vocab_size)
    wanted = (run.model.src_vocab_size, run.model.tgt_vocab_size)
    if sizes != wanted:
        raise ValueError(f"{run.path}: the tokenizers' vocabularies {sizes} do not match the "
                         f"model section's (src_vocab_size, tgt_vocab_size) = {wanted}")


def load_translator(path: str | Path | Run, *, device: str = "cpu", backend: str = "auto",
                    weights: dict | None = None, precision: str = "fp32") -> Translator:
    """The model and tokenizers of a checkpoint (a run folder's latest checkpoint, or
    ``RUN/best``), or of a :class:`attnkit.runs.run.Run` opened already.

    The model is built from the checkpoint's model section only; ``weights``
    replaces its weights (e.g. an average of several checkpoints). The checkpoint is
    verified against its manifest once (:func:`attnkit.runs.run.open_run`). Safe
    beside a training on the same run: a checkpoint it removes while it is read is
    followed by the run's new latest (:func:`attnkit.runs.run.read_beside_writer`).
    ``precision``: what it translates in (:meth:`Translator.with_precision`).
    """
    from .._values import check_choice

    check_choice("precision", precision, PRECISIONS)  # before anything is read
    if isinstance(path, Run):
        translator = _from_run(path, backend)
    else:
        translator = read_beside_writer(path, lambda ckpt: _from_run(open_run(ckpt), backend))
    if weights is not None:
        missing, unexpected = translator.model.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise ValueError(f"averaged weights do not fit the model: missing {missing}, "
                             f"unexpected {unexpected}")
    translator.model.to(device).eval()
    return translator.with_precision(precision)


def _from_run(run: Run, backend: str) -> Translator:
    """The translator of one opened checkpoint, every file read from its folder."""
    tokenizers = TokenizerPair.load(run.tokenizer_dir)
    _check_vocab(run, tokenizers)
    model = build_model(run.model, backend=backend)
    run.restore(model, restore_rng=False)
    return Translator(model, tokenizers, run)


def capture_for_pair(path: str | Path, src: str, tgt: str | None = None, *, beam_size: int = 1):
    """:meth:`Translator.capture` of the run at ``path``."""
    return load_translator(path).capture(src, tgt, beam_size=beam_size)


def _piece(tok, i: int) -> str:
    if i < len(SPECIAL_TOKENS):
        return SPECIAL_TOKENS[i]
    if hasattr(tok, "id_to_piece"):
        return tok.id_to_piece(i)
    text = tok.decode([i])
    return text if text.strip() else repr(text)
