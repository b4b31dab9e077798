"""The attention chapter of "Dive into Deep Learning" (§11.1–11.7), its API exactly.

Replace ``from d2l import torch as d2l`` with ``from attnkit import d2l`` and
the chapter's code cells run unchanged: the same class and function names,
constructor and ``forward`` signatures, lazy input sizes (``nn.LazyLinear``),
attributes (``attention_weights``, ``W_q``, ``.attention``, ``.P``, ``blks``,
``init_state``…) and the same shapes and values. Every module here is a thin
layer over :mod:`attnkit.nn` (and :mod:`attnkit.models` for the GRU
encoder–decoder): the attention math is attnkit's, laid out the book's way.

==========================  ==========================================================
book (§)                    here
==========================  ==========================================================
§11.1 ``show_heatmaps``     :func:`show_heatmaps` (one shared colour scale for all panels)
§11.3 ``masked_softmax``    :func:`masked_softmax` = :func:`attnkit.masked_softmax`
§11.3 attention pooling     :class:`DotProductAttention`, :class:`AdditiveAttention`
§11.4 Bahdanau              :class:`AttentionDecoder`, :class:`Seq2SeqAttentionDecoder`,
                            with :class:`Seq2SeqEncoder` (§10.7) and :class:`EncoderDecoder`
§11.5 multi-head            :class:`MultiHeadAttention` (``transpose_qkv``,
                            ``transpose_output``, ``.attention``)
§11.6 positions             :class:`PositionalEncoding`
§11.7 Transformer           :class:`PositionWiseFFN`, :class:`AddNorm`,
                            :class:`TransformerEncoderBlock`, :class:`TransformerEncoder`,
                            :class:`TransformerDecoderBlock`, :class:`TransformerDecoder`
helpers                     :func:`check_shape`, :func:`plot`, :func:`init_seq2seq`,
                            :class:`Encoder`, :class:`Decoder`
==========================  ==========================================================

**The one difference in values.** A query row with *no* valid key
(``valid_len == 0``) gets all-zero weights and a zero output here; the book
fills masked scores with ``-1e6``, so such a row comes out *uniform* over the
padding, i.e. it attends to positions that are not there. Wherever a row has
at least one valid key the values are the book's.

Dropout draws its random numbers differently (attnkit's dropout), so in
training mode outputs match the book's in distribution, not bit for bit; in
``eval()`` mode they match.
"""

from __future__ import annotations

from . import tensors
from .attention import (
    AdditiveAttention,
    DotProductAttention,
    MultiHeadAttention,
    masked_softmax,
)
from .data import DATA_URL, DownloadError, MTFraEng, Vocab, bleu, download, extract
from .framework import (
    Classifier,
    DataModule,
    HyperParameters,
    Module,
    ProgressBoard,
    Trainer,
    add_to_class,
    check_len,
    cpu,
    gpu,
    num_gpus,
    try_all_gpus,
    try_gpu,
)
from .plotting import (
    check_shape,
    plot,
    set_axes,
    set_figsize,
    show_heatmaps,
    show_list_len_pair_hist,
    use_svg_display,
)
from .seq2seq import (
    GRU,
    RNN,
    AttentionDecoder,
    Decoder,
    Encoder,
    EncoderDecoder,
    Seq2Seq,
    Seq2SeqAttentionDecoder,
    Seq2SeqEncoder,
    init_seq2seq,
)
from .tensors import *  # noqa: F403  (the book's tensor names: d2l.tensor, d2l.reshape, ...)
from .transformer import (
    AddNorm,
    PositionalEncoding,
    PositionWiseFFN,
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoder,
    TransformerEncoderBlock,
)

nn_Module = tensors.torch.nn.Module  # the book's alias


def __getattr__(name: str):
    if name == "plt":  # matplotlib.pyplot, imported when first used
        from . import plotting

        return plotting.plt
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DATA_URL", "GRU", "RNN", "AddNorm", "AdditiveAttention", "AttentionDecoder",
    "Classifier", "DataModule", "Decoder", "DotProductAttention", "DownloadError", "Encoder",
    "EncoderDecoder", "HyperParameters", "MTFraEng", "Module", "MultiHeadAttention",
    "PositionWiseFFN", "PositionalEncoding", "ProgressBoard", "Seq2Seq",
    "Seq2SeqAttentionDecoder", "Seq2SeqEncoder", "Trainer", "TransformerDecoder",
    "TransformerDecoderBlock", "TransformerEncoder", "TransformerEncoderBlock", "Vocab",
    "add_to_class", "bleu", "check_len", "check_shape", "cpu", "download", "extract", "gpu",
    "init_seq2seq", "masked_softmax", "nn_Module", "num_gpus", "plot", "set_axes",
    "set_figsize", "show_heatmaps", "show_list_len_pair_hist", "try_all_gpus", "try_gpu",
    "use_svg_display", *tensors.__all__,
]
