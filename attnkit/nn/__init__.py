"""Neural-network modules: attention pooling, multi-head attention, Transformer blocks."""

from .attention import (
    AdditiveAttention,
    AttentionPooling,
    BilinearAttention,
    DistanceAttention,
    DotProductAttention,
)

__all__ = [
    "AdditiveAttention",
    "AttentionPooling",
    "BilinearAttention",
    "DistanceAttention",
    "DotProductAttention",
]

from .capture import attention_modules, capture_attention
from .dropout import Dropout
from .multihead import KVCache, MultiHeadAttention
from .packed import Packed, select_valid
from .positional import (
    ALiBi,
    ALiBiScore,
    LearnedPositionalEmbedding,
    PositionalEncoding,
    RotaryEmbedding,
    alibi_slopes,
    sinusoidal_table,
)
from .transformer import (
    AddNorm,
    PositionWiseFFN,
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoder,
    TransformerEncoderBlock,
)

__all__ += [
    "ALiBi",
    "ALiBiScore",
    "AddNorm",
    "Dropout",
    "KVCache",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "Packed",
    "PositionWiseFFN",
    "PositionalEncoding",
    "RotaryEmbedding",
    "TransformerDecoder",
    "TransformerDecoderBlock",
    "TransformerEncoder",
    "TransformerEncoderBlock",
    "alibi_slopes",
    "attention_modules",
    "capture_attention",
    "select_valid",
    "sinusoidal_table",
]
