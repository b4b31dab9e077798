"""The PyTorch code of "Dive into Deep Learning" §10.5–10.7 and §11.1–11.7, unchanged.

Replace ``from d2l import torch as d2l`` with ``from attnkit import d2l`` and
the PyTorch programs of those sections run as they are: every ``d2l.*`` name
they use is here, with the book's signatures and behaviour, and the book's
``@d2l.add_to_class(Cls)`` redefinitions (of ``EncoderDecoder.predict_step``,
of its own ``MTFraEng``, ``Seq2Seq``, ``MultiHeadAttention``…) work on these
classes, whose methods are plain attributes. The attention modules are thin
layers over :mod:`attnkit.nn` (the GRU encoder and decoder over
:mod:`attnkit.models.bahdanau`): the attention math is attnkit's, laid out the
book's way. ``pip install "attnkit[d2l]"`` adds pandas, which §11.7 imports.

==========================  ==========================================================
book                        here
==========================  ==========================================================
tensor names                ``tensor, ones, zeros, arange, normal, rand, randn, eye,
                            reshape, concat, stack, transpose, swapaxes, expand_dims,
                            abs, exp, log, sin, cos, tanh, reduce_sum, reduce_mean,
                            argmax, astype, numpy, to, size, repeat, float32, int32,
                            int64, float, int`` (:mod:`.tensors`)
figures                     ``use_svg_display, set_figsize, set_axes, plt, plot,
                            show_heatmaps, show_list_len_pair_hist``
framework (§3.2)            ``add_to_class, HyperParameters, ProgressBoard, Module,
                            Classifier, DataModule, Trainer, cpu, gpu, num_gpus,
                            try_gpu, try_all_gpus, check_shape, check_len``
§10.5 data                  ``Vocab, MTFraEng, download, extract, DATA_URL``
§10.3, §10.6, §10.7         ``RNN, GRU, Encoder, Decoder, EncoderDecoder``
                            (``predict_step``), ``Seq2SeqEncoder, Seq2Seq,
                            init_seq2seq, bleu``
§11.3 scoring               ``masked_softmax, DotProductAttention, AdditiveAttention``
§11.4 Bahdanau              ``AttentionDecoder``, ``Seq2SeqAttentionDecoder``
§11.5 multi-head            ``MultiHeadAttention`` (``transpose_qkv``, ``transpose_output``)
§11.6, §11.7                ``PositionalEncoding, PositionWiseFFN, AddNorm``, the
                            Transformer encoder and decoder blocks and stacks
==========================  ==========================================================

**What differs from the book's package, on purpose.**

* *Rows with no valid key.* A query with ``valid_len == 0`` (or a negative
  one) gets all-zero weights and a zero output here; the book fills masked
  scores with ``-1e6``, so its row comes out *uniform* over the padding.
  Wherever a row has a valid key the values are the book's. Valid lengths
  are read as the book reads them otherwise: a float keeps keys ``j < v``,
  a length beyond ``Nk`` keeps every key (NaN is refused).
* *Dropout's random numbers* are attnkit's, so in training mode outputs match
  the book's in distribution, not bit for bit; in ``eval()`` mode they match.
  Minibatches are drawn by index once per batch, so a seed gives another
  order of batches than the book's loader.
* *Progress.* In a notebook ``Trainer.fit`` draws the book's live curves; in
  a terminal it shows a progress bar (epoch, losses) on standard error, and
  when standard error is not a terminal it prints nothing. The board reads a
  loss from the device only when it averages ``every_n`` points.
* *Data.* ``MTFraEng`` reads ``<root>/fra-eng/fra.txt`` when it is there and
  fetches nothing (``root='../data'``, or the keyword ``root=``); a download
  is checked against the book's SHA-1 before it takes its name, and without
  a network the error says which file to put where, in one line shown
  without a traceback (:mod:`.data`). The first two columns of each line are
  the pair, so Tatoeba's current file, with its attribution column, reads
  as the book's; the book's own code drops every line of it.
* *Seq2Seq's loss* is masked (padding labels do not count), as §10.7 defines
  it; the book's package leaves that definition out.
* ``EncoderDecoder.predict_step`` runs without gradients.
* ``show_heatmaps`` draws every panel on one colour scale (from
  ``min(0, smallest value)`` to the largest), so a shade means one value in
  all of them; the book scales each panel on its own.
"""

from __future__ import annotations

from torch.nn import Module as nn_Module  # the book's alias

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
