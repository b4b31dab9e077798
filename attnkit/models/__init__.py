"""Models assembled from :mod:`attnkit.nn`: the Transformer and the Bahdanau RNN seq2seq.

Both share one interface: ``forward(src, tgt_in, src_valid_lens, tgt_valid_lens=None)``
→ logits ``(B, T, V)``, and step decoding with ``encode`` → ``init_state`` →
``decode_step`` (and ``reorder_state`` for beam search).
"""

from .bahdanau import AttentionDecoder, BahdanauSeq2Seq, BahdanauState, Seq2SeqEncoder
from .config import (
    BahdanauConfig,
    TransformerConfig,
    bahdanau_small,
    build_model,
    count_parameters,
    transformer_base,
    transformer_small,
    transformer_tiny,
)
from .transformer import Transformer, TransformerState

__all__ = [
    "AttentionDecoder",
    "BahdanauConfig",
    "BahdanauSeq2Seq",
    "BahdanauState",
    "Seq2SeqEncoder",
    "Transformer",
    "TransformerConfig",
    "TransformerState",
    "bahdanau_small",
    "build_model",
    "count_parameters",
    "transformer_base",
    "transformer_small",
    "transformer_tiny",
]
