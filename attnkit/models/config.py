"""Model configurations (frozen dataclasses) and the builders that own the sizes.

A config says *what* to build; :func:`build_model` maps it to modules::

    config = transformer_base(src_vocab_size=37000, share_embeddings=True, tie_output=True)
    model = build_model(config)
    count_parameters(model)        # 63_119_496 (see transformer_base)

Builders take the vocabulary sizes and any field to override as keywords.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from torch import nn

from ..nn.transformer import POSITIONAL_KINDS
from .bahdanau import BahdanauSeq2Seq
from .transformer import Transformer

__all__ = [
    "BahdanauConfig",
    "TransformerConfig",
    "bahdanau_small",
    "build_model",
    "count_parameters",
    "transformer_base",
    "transformer_small",
    "transformer_tiny",
]


def _check_positive(config, *names: str) -> None:
    for name in names:
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{type(config).__name__}.{name} must be a positive int; got {v!r}")


def _check_dropout(config) -> None:
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"{type(config).__name__}.dropout must lie in [0, 1); "
                         f"got {config.dropout!r}")


@dataclass(frozen=True, kw_only=True)
class TransformerConfig:
    """Hyperparameters of :class:`attnkit.models.Transformer` (paper Table 3 notation)."""

    src_vocab_size: int  # source vocabulary size
    tgt_vocab_size: int  # target vocabulary size
    num_hiddens: int = 512  # d_model
    num_heads: int = 8  # h, query heads
    num_kv_heads: int | None = None  # key/value heads (None = num_heads; 1 = multi-query)
    ffn_num_hiddens: int = 2048  # d_ff, inner size of the position-wise FFN
    num_encoder_layers: int = 6  # N, encoder layers
    num_decoder_layers: int = 6  # N, decoder layers
    dropout: float = 0.1  # P_drop
    max_len: int = 1024  # positions covered by the positional encoding
    pre_norm: bool = False  # pre-LN instead of the paper's post-LN
    share_embeddings: bool = False  # one embedding for source and target (same vocabulary)
    tie_output: bool = False  # output projection weight = target embedding weight
    positional: str = "sinusoidal"  # "sinusoidal" | "learned" | "rope" | "alibi"
    score: str = "scaled_dot"  # scoring function of every attention module
    bias: bool = True  # biases in the attention projections
    activation: str = "relu"  # FFN activation: "relu" (paper) or "gelu"

    def __post_init__(self):
        _check_positive(self, "src_vocab_size", "tgt_vocab_size", "num_hiddens", "num_heads",
                        "ffn_num_hiddens", "num_encoder_layers", "num_decoder_layers",
                        "max_len")
        _check_dropout(self)
        if self.num_hiddens % self.num_heads:
            raise ValueError(
                f"TransformerConfig.num_hiddens must be divisible by num_heads; got "
                f"{self.num_hiddens} and {self.num_heads}"
            )
        if self.positional not in POSITIONAL_KINDS:
            raise ValueError(f"TransformerConfig.positional must be one of {POSITIONAL_KINDS}; "
                             f"got {self.positional!r}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "TransformerConfig.share_embeddings needs src_vocab_size == tgt_vocab_size; "
                f"got {self.src_vocab_size} and {self.tgt_vocab_size}"
            )


@dataclass(frozen=True, kw_only=True)
class BahdanauConfig:
    """Hyperparameters of :class:`attnkit.models.BahdanauSeq2Seq` (d2l §11.4.4)."""

    src_vocab_size: int  # source vocabulary size
    tgt_vocab_size: int  # target vocabulary size
    embed_size: int = 256  # token embedding size E
    num_hiddens: int = 256  # GRU hidden size h (also the additive attention's hidden size)
    num_layers: int = 2  # GRU layers L, encoder and decoder
    dropout: float = 0.2  # dropout between GRU layers and on the attention weights

    def __post_init__(self):
        _check_positive(self, "src_vocab_size", "tgt_vocab_size", "embed_size", "num_hiddens",
                        "num_layers")
        _check_dropout(self)


def _build_config(cls, src_vocab_size: int, tgt_vocab_size: int | None, sizes: dict,
                  overrides: dict):
    """``cls(**sizes)`` with the vocabularies (tgt defaults to src) and ``overrides`` applied."""
    tgt = src_vocab_size if tgt_vocab_size is None else tgt_vocab_size
    return cls(**{"src_vocab_size": src_vocab_size, "tgt_vocab_size": tgt, **sizes,
                  **overrides})


def transformer_tiny(src_vocab_size: int, tgt_vocab_size: int | None = None,
                     **overrides) -> TransformerConfig:
    """A tiny Transformer for tests and the generated tasks: d=64, 4 heads, FFN 128, 2+2 layers.

    Parameters (``count_parameters``): 360,424 with vocabularies of 1,000 each
    (nothing shared); 232,424 with ``share_embeddings=True, tie_output=True``.
    In general 167,424 + 3·64·V + V separate, 167,424 + 65·V shared and tied
    (V = vocabulary size; the last ``V`` is the output bias).
    """
    sizes = dict(num_hiddens=64, num_heads=4, ffn_num_hiddens=128, num_encoder_layers=2,
                 num_decoder_layers=2, dropout=0.1)
    return _build_config(TransformerConfig, src_vocab_size, tgt_vocab_size, sizes, overrides)


def transformer_small(src_vocab_size: int, tgt_vocab_size: int | None = None,
                      **overrides) -> TransformerConfig:
    """A small Transformer for CPU training: d=256, 4 heads, FFN 1024, 3+3 layers, dropout 0.1.

    Parameters: 13,219,600 with vocabularies of 10,000 each (nothing shared);
    8,099,600 with ``share_embeddings=True, tie_output=True``. In general
    5,529,600 + 3·256·V + V separate, 5,529,600 + 257·V shared and tied.
    """
    sizes = dict(num_hiddens=256, num_heads=4, ffn_num_hiddens=1024, num_encoder_layers=3,
                 num_decoder_layers=3, dropout=0.1)
    return _build_config(TransformerConfig, src_vocab_size, tgt_vocab_size, sizes, overrides)


def transformer_base(src_vocab_size: int, tgt_vocab_size: int | None = None,
                     **overrides) -> TransformerConfig:
    """The paper's base model (Table 3, "base"): d=512, 8 heads, FFN 2048, 6+6 layers, dropout 0.1.

    Parameters: 63,119,496 with the paper's shared source–target vocabulary of
    37,000 BPE tokens and ``share_embeddings=True, tie_output=True`` (§3.4;
    the paper reports 65M for base). The stacks hold 44,138,496
    (per encoder layer 3,152,384, per decoder layer 4,204,032); add 513·V
    shared and tied, or 3·512·V + V with separate vocabularies of size V each
    (59,508,496 for V = 10,000).
    """
    sizes = dict(num_hiddens=512, num_heads=8, ffn_num_hiddens=2048, num_encoder_layers=6,
                 num_decoder_layers=6, dropout=0.1)
    return _build_config(TransformerConfig, src_vocab_size, tgt_vocab_size, sizes, overrides)


def bahdanau_small(src_vocab_size: int, tgt_vocab_size: int | None = None,
                   **overrides) -> BahdanauConfig:
    """d2l §11.4.4's sizes: embeddings 256, GRU hidden 256, 2 layers, dropout 0.2.

    Parameters: 2,675,944 with vocabularies of 1,000 each.
    """
    return _build_config(BahdanauConfig, src_vocab_size, tgt_vocab_size, {}, overrides)


def build_model(config: TransformerConfig | BahdanauConfig, *, backend: str = "auto"
                ) -> nn.Module:
    """The model a config describes (freshly initialized)."""
    if isinstance(config, TransformerConfig):
        kwargs = {f.name: getattr(config, f.name) for f in fields(config)}
        src, tgt = kwargs.pop("src_vocab_size"), kwargs.pop("tgt_vocab_size")
        return Transformer(src, tgt, backend=backend, **kwargs)
    if isinstance(config, BahdanauConfig):
        kwargs = {f.name: getattr(config, f.name) for f in fields(config)}
        src, tgt = kwargs.pop("src_vocab_size"), kwargs.pop("tgt_vocab_size")
        return BahdanauSeq2Seq(src, tgt, backend=backend, **kwargs)
    raise TypeError(
        f"config must be a TransformerConfig or BahdanauConfig; got {type(config).__name__}"
    )


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters, each shared tensor counted once."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters()
               if p.requires_grad or not trainable_only)
