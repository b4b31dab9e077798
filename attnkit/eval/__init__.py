"""Evaluation metrics: corpus BLEU (standard and tokenized-lowercase) and chrF."""

from attnkit.eval.bleu import (
    BleuResult,
    ChrfResult,
    corpus_bleu,
    corpus_chrf,
    tokenized_lowercase_bleu,
)

__all__ = ["BleuResult", "ChrfResult", "corpus_bleu", "corpus_chrf", "tokenized_lowercase_bleu"]
