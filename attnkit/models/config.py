"""Model configurations (frozen dataclasses) and the builders that own the sizes.

A config says *what* to build; :func:`build_model` maps it to modules::

    config = transformer_base(src_vocab_size=37000, share_embeddings=True, tie_output=True)
    model = build_model(config)
    count_parameters(model)        # 63_119_496 (see transformer_base)

Builders take the vocabulary sizes and any field to override as keywords. Which
family a config belongs to, its presets and what it can do are declared once, in
:mod:`attnkit.models.family`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._names import ACTIVATIONS, POSITIONAL_KINDS, SCORE_NAMES
from .._options import option, validate_options
from .._values import check_divisible

__all__ = [
    "BahdanauConfig",
    "TransformerConfig",
    "bahdanau_small",
    "check_tied_layers",
    "preset_config",
    "transformer_base",
    "transformer_small",
    "transformer_tiny",
]


@dataclass(frozen=True, kw_only=True)
class TransformerConfig:
    """Hyperparameters of :class:`attnkit.models.Transformer` (paper Table 3 notation)."""

    src_vocab_size: int = option(help="source vocabulary size", check="positive")
    tgt_vocab_size: int = option(help="target vocabulary size", check="positive")
    num_hiddens: int = option(512, "d_model, the width of every layer", check="positive")
    num_heads: int = option(8, "h, attention (query) heads", check="positive")
    num_kv_heads: int | None = option(
        None, "key/value heads (none = num_heads; 1 = multi-query)", check="positive")
    ffn_num_hiddens: int = option(2048, "d_ff, inner size of the position-wise FFN",
                                  check="positive")
    num_encoder_layers: int = option(6, "N, encoder layers", check="positive")
    num_decoder_layers: int = option(6, "N, decoder layers", check="positive")
    dropout: float = option(0.1, "P_drop, dropout rate", check="probability")
    max_len: int = option(1024, "positions covered by the positional encoding (the longest "
                                "source or target sequence, EOS/BOS included)", check="positive")
    pre_norm: bool = option(False, "pre-LN blocks instead of the paper's post-LN")
    share_embeddings: bool = option(False, "one embedding for source and target (same "
                                           "vocabulary)")
    tie_output: bool = option(False, "output projection weight = target embedding weight")
    positional: str = option("sinusoidal", "positional encoding", choices=POSITIONAL_KINDS)
    score: str = option("scaled_dot", "scoring function of every attention module",
                        choices=SCORE_NAMES)
    bias: bool = option(True, "biases in the attention projections")
    activation: str = option("relu", "FFN activation (the paper: relu)", choices=ACTIVATIONS)

    def __post_init__(self):
        validate_options(self)
        check_divisible("TransformerConfig.num_hiddens", self.num_hiddens,
                        "num_heads", self.num_heads)
        if self.num_kv_heads is not None:
            check_divisible("TransformerConfig.num_heads", self.num_heads,
                            "num_kv_heads", self.num_kv_heads)
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "TransformerConfig.share_embeddings needs src_vocab_size == tgt_vocab_size; "
                f"got {self.src_vocab_size} and {self.tgt_vocab_size}"
            )


@dataclass(frozen=True, kw_only=True)
class BahdanauConfig:
    """Hyperparameters of :class:`attnkit.models.BahdanauSeq2Seq` (d2l §11.4.4)."""

    src_vocab_size: int = option(help="source vocabulary size", check="positive")
    tgt_vocab_size: int = option(help="target vocabulary size", check="positive")
    embed_size: int = option(256, "token embedding size E", check="positive")
    num_hiddens: int = option(256, "GRU hidden size (also the additive attention's hidden "
                                   "size h)", check="positive")
    num_encoder_layers: int = option(2, "GRU layers of the encoder", check="positive")
    num_decoder_layers: int = option(2, "GRU layers of the decoder (an RNN: as many as the "
                                        "encoder's)", check="positive")
    dropout: float = option(0.2, "dropout between GRU layers and on the attention weights",
                            check="probability")

    def __post_init__(self):
        validate_options(self)
        check_tied_layers(self.num_encoder_layers, self.num_decoder_layers,
                          f"{type(self).__name__}.")


def check_tied_layers(num_encoder_layers: int, num_decoder_layers: int, prefix: str = ""
                      ) -> None:
    """An RNN decoder starts from the encoder's final state, layer by layer: both stacks
    have the same depth (``prefix`` names the owner in the message)."""
    if num_decoder_layers != num_encoder_layers:
        raise ValueError(
            f"{prefix}num_decoder_layers must equal num_encoder_layers (the decoder starts "
            f"from the encoder's final state, one per layer); got {num_decoder_layers} and "
            f"{num_encoder_layers}")


def preset_config(cls, src_vocab_size: int, tgt_vocab_size: int | None, sizes: dict,
                  overrides: dict):
    """A preset's config: ``cls(**sizes)`` with the vocabularies (tgt defaults to src) and
    ``overrides`` applied; what every family's preset builders share."""
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
    return preset_config(TransformerConfig, src_vocab_size, tgt_vocab_size, sizes, overrides)


def transformer_small(src_vocab_size: int, tgt_vocab_size: int | None = None,
                      **overrides) -> TransformerConfig:
    """A small Transformer for CPU training: d=256, 4 heads, FFN 1024, 3+3 layers, dropout 0.1.

    Parameters: 13,219,600 with vocabularies of 10,000 each (nothing shared);
    8,099,600 with ``share_embeddings=True, tie_output=True``. In general
    5,529,600 + 3·256·V + V separate, 5,529,600 + 257·V shared and tied.
    """
    sizes = dict(num_hiddens=256, num_heads=4, ffn_num_hiddens=1024, num_encoder_layers=3,
                 num_decoder_layers=3, dropout=0.1)
    return preset_config(TransformerConfig, src_vocab_size, tgt_vocab_size, sizes, overrides)


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
    return preset_config(TransformerConfig, src_vocab_size, tgt_vocab_size, sizes, overrides)


def bahdanau_small(src_vocab_size: int, tgt_vocab_size: int | None = None,
                   **overrides) -> BahdanauConfig:
    """d2l §11.4.4's sizes: embeddings 256, GRU hidden 256, 2+2 layers, dropout 0.2.

    Parameters: 2,675,944 with vocabularies of 1,000 each.
    """
    return preset_config(BahdanauConfig, src_vocab_size, tgt_vocab_size, {}, overrides)

