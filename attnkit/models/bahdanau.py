"""RNN encoder–decoder with Bahdanau attention (d2l §10.7 and §11.4).

Bahdanau, Cho and Bengio (2015), as in "Dive into Deep Learning" §11.4: a GRU
encoder reads the source; a GRU decoder, at every step, uses its previous
hidden state (top layer) as the query of :class:`attnkit.nn.AdditiveAttention`
over *all* encoder states (padding masked with the source ``valid_lens``), and
feeds the context vector, concatenated with the embedded input token, to its
GRU. The attention module is ``decoder.attention``, the name
:func:`attnkit.nn.capture_attention` and the explorer use.

Shapes use the symbols of ``docs/shapes.md``: ``B`` batch, ``S`` source
length, ``T`` target length, ``E`` embedding size, ``d`` GRU hidden size
(``num_hiddens``, also the hidden size ``h`` of the additive attention),
``L`` GRU layers, ``V`` vocabulary.

Two differences from the book, on purpose:

* tensors are batch first throughout;
* the encoder runs on packed sequences, so its final hidden state (the
  decoder's initial state) is the state after the last *valid* source token,
  not after the padding; with this, no output depends on padded source tokens.
  A source of length 0 is read as length 1 (the packed GRU needs one step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .._checks import check_module_dtype, check_row_indices, check_token_ids
from .._values import check_positive_int, check_probability
from ..nn.attention import AdditiveAttention
from ..nn.packed import select_valid
from .config import check_tied_layers

__all__ = ["AttentionDecoder", "BahdanauSeq2Seq", "BahdanauState", "Seq2SeqEncoder"]


def _between_layers(dropout: float, num_layers: int) -> float:
    """GRU dropout acts between layers only: none for a single layer (no torch warning)."""
    p = check_probability("dropout", dropout)
    return p if num_layers > 1 else 0.0


class Seq2SeqEncoder(nn.Module):
    """RNN encoder of d2l §10.7.1: embedding then a multi-layer GRU.

    Shapes:
        X: ``(B, S)`` token ids; valid_lens: ``(B,)`` or ``None`` (all valid).
        returns ``(outputs (B, S, d), state (L, B, d))``; outputs at padded
        positions are zero, ``state`` is taken after each sequence's last
        valid token.
    """

    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int,
                 dropout: float = 0.0):
        super().__init__()
        for name, v in (("vocab_size", vocab_size), ("embed_size", embed_size),
                        ("num_hiddens", num_hiddens), ("num_layers", num_layers)):
            check_positive_int(name, v)
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size, num_hiddens, num_layers, batch_first=True,
                          dropout=_between_layers(dropout, num_layers))

    def forward(self, X: torch.Tensor, valid_lens: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        check_token_ids("src", X, self.vocab_size)
        embs = self.embedding(X)  # (B, S, E)
        if valid_lens is None:
            return self.rnn(embs)  # (B, S, d), (L, B, d)
        lengths = valid_lens.detach().to("cpu", torch.int64).clamp(min=1)  # (B,)
        packed = pack_padded_sequence(embs, lengths, batch_first=True, enforce_sorted=False)
        outputs, state = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=X.shape[1])
        return outputs, state  # (B, S, d), (L, B, d)


@dataclass
class BahdanauState:
    """Decoder state between steps.

    Attributes:
        enc_outputs: ``(B, S, d)`` encoder states (keys and values of attention).
        hidden: ``(L, B, d)`` GRU hidden state.
        src_valid_lens: ``(B,)`` or ``None``.
    """

    enc_outputs: torch.Tensor
    hidden: torch.Tensor
    src_valid_lens: torch.Tensor | None

    def reorder(self, indices: torch.Tensor) -> BahdanauState:
        """The state of batch rows ``indices`` (``(B',)`` long), e.g. surviving beams."""
        check_row_indices("indices", indices, self.enc_outputs.shape[0])
        vl = None if self.src_valid_lens is None else self.src_valid_lens.index_select(0, indices)
        return BahdanauState(self.enc_outputs.index_select(0, indices),
                             self.hidden.index_select(1, indices), vl)


class AttentionDecoder(nn.Module):
    """GRU decoder with additive attention, d2l §11.4.2 (``Seq2SeqAttentionDecoder``).

    At step ``t``: ``c_t = attention(s_{t−1}, enc_outputs, enc_outputs, src_valid_lens)``
    with ``s_{t−1}`` the top-layer hidden state (d2l eq. 11.4.1), then
    ``s_t = GRU([c_t; embed(y_{t−1})], s_{t−1})`` and logits ``dense(s_t)``.

    Shapes:
        X: ``(B, T)`` token ids; returns logits ``(B, T, V)`` and the new
        :class:`BahdanauState`. When ``self.attention.keep_weights`` is on,
        ``self.attention.attention_weights`` holds the weights of all ``T``
        steps of the call, ``(B, T, S)``.
    """

    def __init__(self, vocab_size: int, embed_size: int, num_hiddens: int, num_layers: int,
                 dropout: float = 0.0, *, backend: str = "auto"):
        super().__init__()
        for name, v in (("vocab_size", vocab_size), ("embed_size", embed_size),
                        ("num_hiddens", num_hiddens), ("num_layers", num_layers)):
            check_positive_int(name, v)
        self.vocab_size = vocab_size
        self.attention = AdditiveAttention(num_hiddens, dropout, query_size=num_hiddens,
                                           key_size=num_hiddens, backend=backend)
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers, batch_first=True,
                          dropout=_between_layers(dropout, num_layers))
        self.dense = nn.Linear(num_hiddens, vocab_size)

    def init_state(self, enc_outputs: torch.Tensor, enc_state: torch.Tensor,
                   src_valid_lens: torch.Tensor | None = None) -> BahdanauState:
        return BahdanauState(enc_outputs, enc_state, src_valid_lens)

    def forward(self, X: torch.Tensor, state: BahdanauState
                ) -> tuple[torch.Tensor, BahdanauState]:
        check_token_ids("tgt", X, self.vocab_size)
        check_module_dtype("AttentionDecoder", self.rnn.weight_ih_l0.dtype,
                           **{"state.enc_outputs": state.enc_outputs, "state.hidden": state.hidden})
        embs = self.embedding(X)  # (B, T, E)
        hidden, outputs, weights = state.hidden, [], []
        for t in range(X.shape[1]):
            query = hidden[-1].unsqueeze(1)  # (B, 1, d)
            context = self.attention(query, state.enc_outputs, state.enc_outputs,
                                     state.src_valid_lens)  # (B, 1, d)
            if self.attention.keep_weights:
                weights.append(self.attention.attention_weights)  # (B, 1, S)
            x = torch.cat((context, embs[:, t:t + 1]), dim=-1)  # (B, 1, d + E)
            out, hidden = self.rnn(x, hidden)  # (B, 1, d), (L, B, d)
            outputs.append(out)
        if weights:  # one row per decoding step, like a Transformer's cross-attention
            self.attention.attention_weights = torch.cat(weights, dim=1)  # (B, T, S)
        logits = self.dense(torch.cat(outputs, dim=1))  # (B, T, V)
        return logits, BahdanauState(state.enc_outputs, hidden, state.src_valid_lens)


class BahdanauSeq2Seq(nn.Module):
    """Encoder–decoder with Bahdanau attention (d2l §11.4.3), same interface as
    :class:`attnkit.models.Transformer`.

    ``forward(src (B, S), tgt_in (B, T), src_valid_lens (B,), tgt_valid_lens=None)``
    → logits ``(B, T, V)`` (the decoder is causal by construction, so
    ``tgt_valid_lens`` changes nothing there); with ``only_valid=True``, the
    logits ``(n_valid, V)`` of positions ``t < tgt_valid_lens[b]`` only, as
    :class:`attnkit.models.Transformer` gives them. Step decoding:
    ``encode`` → ``init_state`` → ``decode_step`` repeatedly.

    The decoder starts from the encoder's final state, layer by layer, so
    ``num_decoder_layers`` must equal ``num_encoder_layers``.
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, *, embed_size: int = 256,
                 num_hiddens: int = 256, num_encoder_layers: int = 2,
                 num_decoder_layers: int = 2, dropout: float = 0.2, backend: str = "auto"):
        super().__init__()
        check_tied_layers(num_encoder_layers, num_decoder_layers)
        self.encoder = Seq2SeqEncoder(src_vocab_size, embed_size, num_hiddens,
                                      num_encoder_layers, dropout)
        self.decoder = AttentionDecoder(tgt_vocab_size, embed_size, num_hiddens,
                                        num_decoder_layers, dropout, backend=backend)

    def encode(self, src: torch.Tensor, src_valid_lens: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(enc_outputs (B, S, d), enc_state (L, B, d))``."""
        return self.encoder(src, src_valid_lens)

    def init_state(self, enc: tuple[torch.Tensor, torch.Tensor],
                   src_valid_lens: torch.Tensor | None = None) -> BahdanauState:
        enc_outputs, enc_state = enc
        return self.decoder.init_state(enc_outputs, enc_state, src_valid_lens)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor,
                src_valid_lens: torch.Tensor | None = None,
                tgt_valid_lens: torch.Tensor | None = None, *,
                only_valid: bool = False) -> torch.Tensor:
        state = self.init_state(self.encode(src, src_valid_lens), src_valid_lens)
        logits, _ = self.decoder(tgt_in, state)  # (B, T, V)
        return select_valid(logits, tgt_valid_lens) if only_valid else logits

    def decode_step(self, tgt: torch.Tensor, state: BahdanauState
                    ) -> tuple[torch.Tensor, BahdanauState]:
        """Logits ``(B, t, V)`` for tokens ``(B, t)`` and the new state (not in place)."""
        return self.decoder(tgt, state)

    @staticmethod
    def reorder_state(state: BahdanauState, indices: torch.Tensor) -> BahdanauState:
        return state.reorder(indices)
