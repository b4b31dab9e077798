"""Encoder–decoder interfaces (d2l §10.6) and Bahdanau attention (§11.4), the book's API.

The GRU encoder and the attention decoder are :mod:`attnkit.models.bahdanau`'s,
with the book's time-major encoder outputs and its list-shaped decoder state.

Shapes use the symbols of ``docs/shapes.md``: ``B`` batch, ``S``/``T``
source/target length, ``E`` = ``embed_size``, ``d`` = ``num_hiddens``, ``L`` =
``num_layers``, ``V`` vocabulary.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models import bahdanau
from .attention import AdditiveAttention
from .framework import Classifier, Module

__all__ = [
    "GRU",
    "RNN",
    "AttentionDecoder",
    "Decoder",
    "Encoder",
    "EncoderDecoder",
    "Seq2Seq",
    "Seq2SeqAttentionDecoder",
    "Seq2SeqEncoder",
    "init_seq2seq",
]


def init_seq2seq(module: nn.Module) -> None:
    """The book's initialization: Xavier-uniform weights of ``nn.Linear`` and ``nn.GRU``
    (use as ``model.apply(init_seq2seq)``; lazy layers are left as they are)."""
    if type(module) is nn.Linear:
        nn.init.xavier_uniform_(module.weight)
    if type(module) is nn.GRU:
        for name in module._flat_weights_names:
            if "weight" in name:
                nn.init.xavier_uniform_(getattr(module, name))


class Encoder(nn.Module):
    """The encoder interface (d2l §10.6.1): ``forward(X, *args)``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

    def forward(self, X, *args):
        raise NotImplementedError


class Decoder(nn.Module):
    """The decoder interface (d2l §10.6.2): ``init_state(enc_all_outputs, *args)``,
    ``forward(X, state) -> (output, state)``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

    def init_state(self, enc_all_outputs, *args):
        raise NotImplementedError

    def forward(self, X, state):
        raise NotImplementedError


class AttentionDecoder(Decoder):
    """The interface of attention-based decoders (d2l §11.4.2): a decoder with
    ``attention_weights``."""

    @property
    def attention_weights(self):
        raise NotImplementedError


class RNN(Module):
    """A one-layer tanh RNN (d2l §9.6): ``RNN(num_inputs, num_hiddens)``;
    ``forward(inputs (T, B, num_inputs), H=None)`` → ``(outputs (T, B, d), H (1, B, d))``,
    time-major like ``nn.RNN``, which it wraps as ``self.rnn``."""

    def __init__(self, num_inputs, num_hiddens):
        super().__init__()
        self.save_hyperparameters()
        self.rnn = nn.RNN(num_inputs, num_hiddens)

    def forward(self, inputs, H=None):
        return self.rnn(inputs, H)


class GRU(RNN):
    """A multi-layer GRU (d2l §10.3): ``GRU(num_inputs, num_hiddens, num_layers, dropout=0)``.

    ``forward(inputs (T, B, num_inputs), H=None)`` → ``(outputs (T, B, d),
    H (L, B, d))``, time-major; ``self.rnn`` is the ``nn.GRU``. Dropout acts
    between layers (none with one layer, where ``nn.GRU`` would only warn).
    """

    def __init__(self, num_inputs, num_hiddens, num_layers, dropout=0):
        Module.__init__(self)
        self.save_hyperparameters()
        self.rnn = nn.GRU(num_inputs, num_hiddens, num_layers,
                          dropout=dropout if num_layers > 1 else 0)


class EncoderDecoder(Classifier):
    """Encoder and decoder together (d2l §10.6.3): ``forward(enc_X, dec_X, *args)``
    → the decoder's output; :meth:`predict_step` decodes greedily.

    A :class:`Classifier` (cross-entropy ``loss``, ``accuracy``), so
    :class:`Trainer` fits it as in the book.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, enc_X: torch.Tensor, dec_X: torch.Tensor, *args) -> torch.Tensor:
        enc_all_outputs = self.encoder(enc_X, *args)
        dec_state = self.decoder.init_state(enc_all_outputs, *args)
        return self.decoder(dec_X, dec_state)[0]  # the output, without the state

    @torch.no_grad()
    def predict_step(self, batch, device, num_steps: int,
                     save_attention_weights: bool = False):
        """Greedy decoding of ``batch = (src (B, S), tgt (B, T), src_valid_len (B,), _)``
        for ``num_steps`` steps, starting from ``tgt[:, 0]`` (the book's ``<bos>``).

        Returns ``(ids (B, num_steps), attention_weights)``, the second a list of the
        decoder's ``attention_weights`` after each step (empty unless asked for).
        The model stays in the mode it is in (after :meth:`Trainer.fit`, ``eval``).
        """
        src, tgt, src_valid_len = (None if a is None else a.to(device) for a in batch[:3])
        enc_all_outputs = self.encoder(src, src_valid_len)
        dec_state = self.decoder.init_state(enc_all_outputs, src_valid_len)
        outputs, attention_weights = [tgt[:, 0].unsqueeze(1)], []  # (B, 1) each
        for _ in range(num_steps):
            Y, dec_state = self.decoder(outputs[-1], dec_state)  # (B, 1, V)
            outputs.append(Y.argmax(2))
            if save_attention_weights:
                attention_weights.append(self.decoder.attention_weights)
        return torch.cat(outputs[1:], 1), attention_weights


class Seq2Seq(EncoderDecoder):
    """An encoder–decoder trained on padded targets (d2l §10.7.3):
    ``Seq2Seq(encoder, decoder, tgt_pad, lr)``.

    ``loss`` is the cross-entropy averaged over the label tokens that are not
    ``tgt_pad`` (the book's masked loss); ``configure_optimizers`` is Adam
    with learning rate ``lr``; validation plots the loss only.
    """

    def __init__(self, encoder, decoder, tgt_pad, lr):
        super().__init__(encoder, decoder)
        self.save_hyperparameters()

    def validation_step(self, batch):
        Y_hat = self(*batch[:-1])
        self.plot("loss", self.loss(Y_hat, batch[-1]), train=False)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    def loss(self, Y_hat, Y, averaged=True):
        """Mean cross-entropy over non-padding labels (one value per label when
        ``averaged=False``, padding included, as :meth:`Classifier.loss`)."""
        if not averaged:
            return super().loss(Y_hat, Y, averaged=False)
        return torch.nn.functional.cross_entropy(
            Y_hat.reshape((-1, Y_hat.shape[-1])), Y.reshape(-1), ignore_index=self.tgt_pad)


class Seq2SeqEncoder(Encoder, bahdanau.Seq2SeqEncoder):
    """The GRU encoder (d2l §10.7.1): ``Seq2SeqEncoder(vocab_size, embed_size,
    num_hiddens, num_layers, dropout=0)``.

    ``forward(X (B, S) ids, *args)`` → ``(outputs (S, B, d), state (L, B, d))``,
    time-major like the book's. As in the book, the GRU also reads the padding
    (extra arguments such as valid lengths are ignored); the packed encoder
    of :class:`attnkit.models.BahdanauSeq2Seq` does not.
    """

    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int,
                 dropout: float = 0):
        super().__init__(vocab_size, embed_size, num_hiddens, num_layers, dropout)
        self.apply(init_seq2seq)

    def forward(self, X: torch.Tensor, *args) -> tuple[torch.Tensor, torch.Tensor]:
        outputs, state = bahdanau.Seq2SeqEncoder.forward(self, X.long())  # (B, S, d)
        return outputs.transpose(0, 1), state  # (S, B, d), (L, B, d)


class Seq2SeqAttentionDecoder(AttentionDecoder, bahdanau.AttentionDecoder):
    """GRU decoder with Bahdanau attention (d2l §11.4.2).

    ``Seq2SeqAttentionDecoder(vocab_size, embed_size, num_hiddens, num_layers,
    dropout=0)``; ``state = init_state(encoder(X), enc_valid_lens)``, then
    ``forward(X (B, T) ids, state) -> (logits (B, T, V), state)`` with the
    book's ``state = [enc_outputs (B, S, d), hidden (L, B, d), enc_valid_lens]``.
    ``attention_weights`` lists the weights of each step of the last call,
    ``T`` tensors ``(B, 1, S)``. The attention (``self.attention``) is a lazy
    :class:`AdditiveAttention`, the output layer a lazy linear layer.
    """

    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int,
                 dropout: float = 0):
        super().__init__(vocab_size, embed_size, num_hiddens, num_layers, dropout)
        self.attention = AdditiveAttention(num_hiddens, dropout)
        self.dense = nn.LazyLinear(vocab_size)
        self.apply(init_seq2seq)
        self._attention_weights: list[torch.Tensor] = []

    def init_state(self, enc_outputs: tuple[torch.Tensor, torch.Tensor],
                   enc_valid_lens: torch.Tensor | None, *args) -> tuple:
        outputs, hidden_state = enc_outputs  # (S, B, d), (L, B, d)
        return outputs.permute(1, 0, 2), hidden_state, enc_valid_lens  # (B, S, d) first

    def forward(self, X: torch.Tensor, state) -> tuple[torch.Tensor, list]:
        enc_outputs, hidden_state, enc_valid_lens = state
        start = bahdanau.BahdanauState(enc_outputs, hidden_state, enc_valid_lens)
        logits, end = bahdanau.AttentionDecoder.forward(self, X.long(), start)  # (B, T, V)
        weights = self.attention.attention_weights  # (B, T, S), all steps of this call
        self._attention_weights = list(weights.split(1, dim=1))  # T × (B, 1, S)
        return logits, [enc_outputs, end.hidden, enc_valid_lens]

    @property
    def attention_weights(self) -> list[torch.Tensor]:
        return self._attention_weights
