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
