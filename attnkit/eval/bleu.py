"""Corpus BLEU and chrF via sacrebleu, each result labelled with how it was computed.

BLEU figures are only comparable when computed the same way. sacrebleu's
*signature* (``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``)
records the choices; every result here carries it, plus a one-line ``label``.

* :func:`corpus_bleu` — the standard, reportable number: detokenized
  hypotheses and references, cased, sacrebleu's ``13a`` tokenizer (the one of
  ``mteval-v13a.pl``), exponential smoothing off for the corpus statistic.
* :func:`tokenized_lowercase_bleu` — the figure most published Multi30k results
  report: lowercased and tokenized text, BLEU over tokens. With
  ``pretokenized=False`` (default) the text is lowercased and tokenized by
  ``13a``; with ``pretokenized=True`` it is lowercased and split on whitespace
  only (``tok:none``), for text that is already tokenized, such as Multi30k's
  ``tok/*.lc.norm.tok.*`` files. It is usually several points higher than
  :func:`corpus_bleu` on the same output — never compare the two.
* :func:`corpus_chrf` — character n-gram F-score (chrF2), less sensitive to
  tokenization and morphology.

References: one string per hypothesis, or a sequence of strings per hypothesis
for several references (all hypotheses must then have the same number).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF

__all__ = ["BleuResult", "ChrfResult", "corpus_bleu", "corpus_chrf", "tokenized_lowercase_bleu"]


@dataclass(frozen=True)
class BleuResult:
    """A corpus BLEU score with its statistics.

    Attributes:
        score: BLEU in [0, 100].
        signature: sacrebleu's signature string.
        label: short human description of casing and tokenization.
        precisions: modified n-gram precisions (percent) for n = 1…4.
        counts: matched n-grams for n = 1…4.
        totals: hypothesis n-grams for n = 1…4.
        brevity_penalty: BP in (0, 1].
        sys_len: hypothesis length in tokens.
        ref_len: effective reference length in tokens.
    """

    score: float
    signature: str
    label: str
    precisions: tuple[float, ...]
    counts: tuple[int, ...]
    totals: tuple[int, ...]
    brevity_penalty: float
    sys_len: int
    ref_len: int

    def __str__(self) -> str:
        return f"{self.label} = {self.score:.2f} ({self.signature})"


@dataclass(frozen=True)
class ChrfResult:
    """A corpus chrF score.

    Attributes:
        score: chrF in [0, 100].
        signature: sacrebleu's signature string.
        label: short human description.
    """

    score: float
    signature: str
    label: str

    def __str__(self) -> str:
        return f"{self.label} = {self.score:.2f} ({self.signature})"


def _streams(hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    """Validate inputs and turn per-hypothesis references into sacrebleu's streams."""
    if isinstance(hyps, str) or isinstance(refs, str):
        raise TypeError("hyps and refs must be sequences of sentences, not a single str")
    hyps, refs = list(hyps), list(refs)
    if len(hyps) != len(refs):
        raise ValueError(
            f"hyps and refs must have the same length, got {len(hyps)} hyps and {len(refs)} refs"
        )
    bad = [i for i, h in enumerate(hyps) if not isinstance(h, str)]
    if bad:
        raise TypeError(f"hyps must hold strings, got {type(hyps[bad[0]]).__name__} at {bad[0]}")
    if all(isinstance(r, str) for r in refs):
        return [list(refs)]  # one reference stream
    if any(isinstance(r, str) for r in refs):
        raise TypeError("refs must be all strings or all sequences of strings, got a mix")
    counts = {len(r) for r in refs}
    if len(counts) > 1 or 0 in counts:
        raise ValueError(
            f"every hypothesis must have the same number (>= 1) of references, got {sorted(counts)}"
        )
    return [[r[j] for r in refs] for j in range(counts.pop())] if refs else [[]]


def _bleu(metric: BLEU, label: str, hyps, refs) -> BleuResult:
    streams = _streams(hyps, refs)
    r = metric.corpus_score(list(hyps), streams)
    return BleuResult(
        score=float(r.score),
        signature=str(metric.get_signature()),
        label=label,
        precisions=tuple(float(p) for p in r.precisions),
        counts=tuple(int(c) for c in r.counts),
        totals=tuple(int(t) for t in r.totals),
        brevity_penalty=float(r.bp),
        sys_len=int(r.sys_len),
        ref_len=int(r.ref_len),
    )


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]]) -> BleuResult:
    """Standard sacreBLEU: cased, ``13a`` tokenization, on detokenized text.

    Raises:
        ValueError: if ``hyps`` and ``refs`` differ in length.
        TypeError: if they are not sequences of strings.
    """
    return _bleu(BLEU(), "BLEU (cased, 13a)", hyps, refs)


def tokenized_lowercase_bleu(
    hyps: Sequence[str],
    refs: Sequence[str] | Sequence[Sequence[str]],
    *,
    pretokenized: bool = False,
) -> BleuResult:
    """BLEU on lowercased, tokenized text — the convention of many Multi30k papers.

    Args:
        hyps, refs: as in :func:`corpus_bleu`.
        pretokenized: the text is already tokenized: only lowercase and split on
            whitespace (``tok:none``) instead of applying ``13a``.
    """
    if pretokenized:
        return _bleu(
            BLEU(lowercase=True, tokenize="none"),
            "tokenized BLEU (lowercased, pre-tokenized, whitespace tokens)",
            hyps,
            refs,
        )
    label = "tokenized BLEU (lowercased, 13a)"
    return _bleu(BLEU(lowercase=True, tokenize="13a"), label, hyps, refs)


def corpus_chrf(hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]]) -> ChrfResult:
    """chrF2 (character 6-grams, beta = 2), sacrebleu defaults."""
    streams = _streams(hyps, refs)
    metric = CHRF()
    r = metric.corpus_score(list(hyps), streams)
    return ChrfResult(float(r.score), str(metric.get_signature()), "chrF2")
