"""RNN encoder–decoder whose attention compares the states directly (d2l §11.4, exercise 2).

The exercise replaces the additive attention of the Bahdanau model
(:mod:`attnkit.models.bahdanau`) by the scaled dot-product one. ``score``
chooses among the §11.3 scores that compare the decoder's state ``s`` (the
query) with each encoder state ``h`` (the key) without a hidden layer:

* ``"dot"``: ``sᵀh`` (d2l eq. 11.3.5 without the scale; Luong et al.'s "dot");
* ``"scaled_dot"``: ``sᵀh/√d`` (d2l eq. 11.3.5);
* ``"bilinear"``: ``sᵀMh`` with a learned ``M`` of ``(d, d)`` (d2l §11.3
  exercise 2; Luong et al.'s "general").

All else is the Bahdanau model's: the encoder, the decoder's GRU fed the
context and the embedded token, the step decoding, the packed source; the
attention module keeps its name, ``decoder.attention``. Shapes as in
:mod:`attnkit.models.bahdanau` (``d`` = ``num_hiddens``, the size of queries
and keys alike).

The config and its preset import no torch (``attnkit train --help`` lists the
fields); the model class, :class:`RNNDotSeq2Seq`, is defined on first use.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .._options import option
from .config import BahdanauConfig, preset_config

# RNNDotSeq2Seq is made by the module's __getattr__, on first use
__all__ = ["SCORES", "RNNDotConfig", "RNNDotSeq2Seq", "rnn_dot_small"]  # noqa: F822

#: What ``score`` accepts.
SCORES: tuple[str, ...] = ("dot", "scaled_dot", "bilinear")


@dataclass(frozen=True, kw_only=True)
class RNNDotConfig(BahdanauConfig):
    """Hyperparameters of :class:`RNNDotSeq2Seq`: those of
    :class:`~attnkit.models.BahdanauConfig` and the ``score``."""

    num_hiddens: int = option(256, "GRU hidden size (also the size of the attention's "
                                   "queries and keys)", check="positive")
    score: str = option("scaled_dot", "how the decoder's state scores each encoder state",
                        choices=SCORES)


def rnn_dot_small(src_vocab_size: int, tgt_vocab_size: int | None = None,
                  **overrides) -> RNNDotConfig:
    """``bahdanau_small``'s sizes (embeddings 256, GRU hidden 256, 2+2 layers, dropout 0.2)
    with scaled dot-product attention.

    Parameters: 2,544,616 with vocabularies of 1,000 each; ``score="bilinear"`` adds
    the 65,536 of ``M``.
    """
    return preset_config(RNNDotConfig, src_vocab_size, tgt_vocab_size, {}, overrides)


def __getattr__(name: str):
    """:class:`RNNDotSeq2Seq`, defined on first use (it needs torch; the config does not)."""
    if name == "RNNDotSeq2Seq":
        return _model_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _attention(score: str, num_hiddens: int, dropout: float, backend: str):
    """The attention module of ``score``, over queries and keys of size ``num_hiddens``."""
    from .._values import check_choice
    from ..nn.attention import BilinearAttention, DotProductAttention

    if check_choice("score", score, SCORES) == "bilinear":
        return BilinearAttention(num_hiddens, num_hiddens, dropout, backend=backend)
    return DotProductAttention(dropout, scaled=score == "scaled_dot", backend=backend)


@functools.cache
def _model_class() -> type:
    from .bahdanau import BahdanauSeq2Seq

    class RNNDotSeq2Seq(BahdanauSeq2Seq):
        """The Bahdanau encoder–decoder with a dot-product-family score (see the module
        doc); same interface as :class:`~attnkit.models.BahdanauSeq2Seq`."""

        def __init__(self, src_vocab_size: int, tgt_vocab_size: int, *,
                     score: str = "scaled_dot", embed_size: int = 256,
                     num_hiddens: int = 256, num_encoder_layers: int = 2,
                     num_decoder_layers: int = 2, dropout: float = 0.2,
                     backend: str = "auto"):
            attention = _attention(score, num_hiddens, dropout, backend)  # checks first
            super().__init__(src_vocab_size, tgt_vocab_size, embed_size=embed_size,
                             num_hiddens=num_hiddens, num_encoder_layers=num_encoder_layers,
                             num_decoder_layers=num_decoder_layers, dropout=dropout,
                             backend=backend)
            self.decoder.attention = attention  # in place of the additive one
            self.score = score

        def extra_repr(self) -> str:
            return f"score={self.score!r}"

    RNNDotSeq2Seq.__module__, RNNDotSeq2Seq.__qualname__ = __name__, "RNNDotSeq2Seq"
    return RNNDotSeq2Seq
