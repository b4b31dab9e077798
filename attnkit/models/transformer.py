"""The Transformer encoder–decoder for sequence to sequence ("Attention Is All You Need").

Figure 1 of the paper as one module (d2l §11.7.6's ``EncoderDecoder`` with the
Transformer encoder and decoder): source and target embeddings scaled by
``√d_model`` (§3.4), sinusoidal positional encodings (§3.5), ``N`` encoder and
``N`` decoder layers, and the final "Linear" to the target vocabulary.
§3.4: "we share the same weight matrix between the two embedding layers and
the pre-softmax linear transformation" — ``share_embeddings=True`` shares the
source and target embeddings (one vocabulary), ``tie_output=True`` ties the
output projection to the target embedding.

Shapes use the symbols of ``docs/shapes.md``: ``B`` batch, ``S`` source
length, ``T`` target length, ``d`` = ``num_hiddens``, ``V`` target vocabulary
size, ``n_valid`` real target positions.

Decoding one token at a time (greedy or beam search)::

    enc = model.encode(src, src_valid_lens)                  # (B, S, d)
    state = model.init_state(enc, src_valid_lens)
    logits, state = model.decode_step(bos[:, None], state)   # (B, 1, V)
    ...                                                      # feed the next token

``decode_step`` keeps, per decoder layer, a key/value cache of the
self-attention (appended to at every step) and the cross-attention keys/values
(projected from the encoder outputs once), so step ``t`` costs ``O(t)``
instead of re-running the prefix. Its logits equal those of
``forward`` on the whole prefix. A step of one token at inference runs
:meth:`attnkit.nn.TransformerDecoder.step` (the blocks' and attention modules'
``step`` methods: nothing checked or packed per module, the fused ``[W_q; W_k; W_v]``
product, one call of the compiled step kernel or SDPA per attention where the score
allows it), for every configuration the model can be built with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .._checks import check_row_indices
from ..nn.multihead import KeyMask, KVCache, step_linear
from ..nn.packed import Packed, select_valid
from ..nn.transformer import TransformerDecoder, TransformerEncoder

__all__ = ["Transformer", "TransformerState"]


@dataclass
class TransformerState:
    """What :meth:`Transformer.decode_step` needs between steps.

    Attributes:
        enc_outputs: ``(n, S, d)`` encoder outputs, one row per source the batch decodes.
        src_valid_lens: ``(n,)`` or ``None``.
        caches: one ``(self_cache, cross_cache)`` pair per decoder layer; the
            self-attention caches hold one row per decoded sequence (``B``), the
            cross-attention caches one per source (``n``), as ``enc_outputs``.
        position: number of target tokens decoded so far (the position of the
            next token).
        origin: ``(B,)`` the source (row of ``enc_outputs``) each sequence decodes;
            ``None``: row ``b`` decodes source ``b``.
        rows_per_source: ``G`` when the ``B`` sequences are ``G`` consecutive rows per
            source, in the order of the sources (``origin`` is
            ``arange(n).repeat_interleave(G)``: the ``G`` beams of each sentence), so a
            step attends each source once for its ``G`` rows; 1 otherwise.
        key_mask: the source positions each source's rows may attend, from
            ``src_valid_lens`` (built at the first one-token step).
    """

    enc_outputs: torch.Tensor
    src_valid_lens: torch.Tensor | None
    caches: list[tuple[KVCache, KVCache]] = field(default_factory=list)
    position: int = 0
    origin: torch.Tensor | None = None
    rows_per_source: int = 1
    key_mask: KeyMask | None = None

    def reorder(self, indices: torch.Tensor) -> TransformerState:
        """Keep batch rows ``indices`` (``(B',)`` long), e.g. the surviving beams.

        Everything on the encoder side (outputs, lengths, cross-attention caches)
        depends only on each row's source, so it follows the sources, not the rows:
        when the rows keep their sources (beams reordered within their sentence) only
        the self-attention caches are reordered; when whole sentences leave (``G``
        rows each), their sources are dropped; rows in any other order or number
        per source get the encoder side copied row by row, as sequences of their own.
        """
        n = self.enc_outputs.shape[0]
        origin = (torch.arange(n, device=indices.device) if self.origin is None
                  else self.origin)  # (B,)
        check_row_indices("indices", indices, origin.shape[0])
        new_origin = origin.index_select(0, indices)  # (B',)
        for self_cache, _ in self.caches:
            self_cache.reorder(indices)
        if new_origin.shape == origin.shape and bool(torch.equal(new_origin, origin)):
            return self  # the same sources, the same rows per source
        sources, counts = torch.unique_consecutive(new_origin, return_counts=True)
        G = int(counts[0]) if len(counts) else 1
        grouped = bool((counts == G).all()) and bool((sources[1:] > sources[:-1]).all())
        if grouped:  # G rows per source, sources in order: keep the sources decoded
            self._select_sources(sources)
            self.origin = torch.arange(len(sources), device=indices.device
                                       ).repeat_interleave(G)
            self.rows_per_source = G
        else:  # one source row per sequence
            self._select_sources(new_origin)
            self.origin, self.rows_per_source = None, 1
        return self

    def rows_own_sources(self) -> TransformerState:
        """The state with one encoder-side row per sequence (``rows_per_source = 1``):
        what a step of several tokens (the decoder's ``forward`` with the caches) reads."""
        if self.origin is not None:
            n = self.enc_outputs.shape[0]
            if not torch.equal(self.origin, torch.arange(n, device=self.origin.device)):
                self._select_sources(self.origin)
            self.origin, self.rows_per_source = None, 1
        return self

    def _select_sources(self, sources: torch.Tensor) -> None:
        """The encoder side restricted to rows ``sources`` (``(m,)`` long) of it."""
        if sources.shape[0] == self.enc_outputs.shape[0] and bool(torch.equal(
                sources, torch.arange(sources.shape[0], device=sources.device))):
            return
        self.enc_outputs = self.enc_outputs.index_select(0, sources)
        if self.src_valid_lens is not None:
            self.src_valid_lens = self.src_valid_lens.index_select(0, sources)
        if self.key_mask is not None:
            self.key_mask = self.key_mask.index_select(sources)
        for _, cross_cache in self.caches:
            cross_cache.reorder(sources)


class Transformer(nn.Module):
    """Transformer seq2seq model, Figure 1 of "Attention Is All You Need".

    Args:
        src_vocab_size, tgt_vocab_size: vocabulary sizes.
        num_hiddens: ``d_model`` (the paper's base: 512).
        num_heads: ``H`` (the paper's ``h`` = 8); ``num_kv_heads`` (``Hkv``) for
            grouped-query attention.
        ffn_num_hiddens: ``d_ff`` (2048).
        num_encoder_layers, num_decoder_layers: ``N`` (6 and 6).
        dropout: ``P_drop`` (0.1), on embeddings + PE, attention weights,
            FFN hidden units and every sublayer output.
        max_len: number of positions the positional encoding covers (the
            longest source or target it can encode).
        pre_norm: pre-LN instead of the paper's post-LN.
        share_embeddings: one embedding for source and target (needs equal
            vocabulary sizes).
        tie_output: output projection weight = target embedding weight.
        positional: ``"sinusoidal"`` (the paper), ``"learned"``, ``"rope"``, ``"alibi"``.
        score, bias, activation, backend: as the blocks'.

    ``forward(src, tgt_in, src_valid_lens, tgt_valid_lens=None)``:
        src ``(B, S)`` long, tgt_in ``(B, T)`` long (target shifted right,
        starting with ``<bos>``), src_valid_lens ``(B,)``, tgt_valid_lens
        ``(B,)`` or ``None`` → logits ``(B, T, V)``.
        With ``only_valid=True``: logits ``(n_valid, V)`` of the valid target
        positions only (``t < tgt_valid_lens[b]``, row-major, the order of
        :func:`attnkit.nn.select_valid`): what a training loss needs, without
        materialising zeros at padded positions (the largest tensors of a step).

    Padding is skipped, not just masked: positions beyond ``src_valid_lens``
    / ``tgt_valid_lens`` are left out of the attention, the FFNs and the
    projections, so a padded batch costs about what its real tokens cost.
    Logits at positions ``t >= tgt_valid_lens[b]`` are zeros (exclude them
    from the loss, as padding always is); all other logits are unchanged.

    Raises:
        ValueError: ``share_embeddings`` with different vocabulary sizes, and
            the errors of the blocks.
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, *, num_hiddens: int = 512,
                 num_heads: int = 8, num_kv_heads: int | None = None,
                 ffn_num_hiddens: int = 2048, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dropout: float = 0.1, max_len: int = 1024,
                 pre_norm: bool = False, share_embeddings: bool = False,
                 tie_output: bool = False, positional: str = "sinusoidal",
                 score: str = "scaled_dot", bias: bool = True, activation: str = "relu",
                 backend: str = "auto"):
        super().__init__()
        if share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError(
                "share_embeddings=True needs src_vocab_size == tgt_vocab_size; got "
                f"{src_vocab_size} and {tgt_vocab_size}"
            )
        common = dict(num_kv_heads=num_kv_heads, bias=bias, pre_norm=pre_norm, score=score,
                      activation=activation, positional=positional, max_len=max_len,
                      backend=backend)
        self.encoder = TransformerEncoder(src_vocab_size, num_hiddens, ffn_num_hiddens,
                                          num_heads, num_encoder_layers, dropout, **common)
        shared = self.encoder.embed.embedding if share_embeddings else None
        self.decoder = TransformerDecoder(tgt_vocab_size, num_hiddens, ffn_num_hiddens,
                                          num_heads, num_decoder_layers, dropout,
                                          embedding=shared, **common)
        self.output = nn.Linear(num_hiddens, tgt_vocab_size)
        if tie_output:
            self.output.weight = self.decoder.embed.embedding.weight
        self.share_embeddings, self.tie_output = share_embeddings, tie_output

    def encode(self, src: torch.Tensor, src_valid_lens: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Encoder outputs ``(B, S, d)`` for source ids ``(B, S)``."""
        return self.encoder(src, src_valid_lens)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor,
                src_valid_lens: torch.Tensor | None = None,
                tgt_valid_lens: torch.Tensor | None = None, *,
                only_valid: bool = False) -> torch.Tensor:
        enc_outputs = self.encode(src, src_valid_lens)  # (B, S, d)
        H = self.decoder(tgt_in, enc_outputs, src_valid_lens,
                         tgt_valid_lens=tgt_valid_lens)  # (B, T, d)
        if only_valid:
            return self.output(select_valid(H, tgt_valid_lens))  # (n_valid, V)
        packed = Packed.from_lens(tgt_valid_lens, H.shape[0], H.shape[1])
        return packed.apply(self.output, H)  # (B, T, V), zeros at padding

    def init_state(self, enc_outputs: torch.Tensor,
                   src_valid_lens: torch.Tensor | None = None) -> TransformerState:
        """Empty caches for decoding against ``enc_outputs`` ``(B, S, d)``."""
        caches = [(KVCache(), KVCache(static=True)) for _ in self.decoder.blocks]
        return TransformerState(enc_outputs, src_valid_lens, caches, 0)

    def decode_step(self, tgt: torch.Tensor, state: TransformerState
                    ) -> tuple[torch.Tensor, TransformerState]:
        """Logits ``(B, t, V)`` for the next ``t`` target tokens ``(B, t)`` (usually ``t = 1``).

        Appends to ``state``'s caches and advances ``state.position`` by ``t``
        (in place; the same object is returned for convenience). One token in eval
        mode takes :meth:`~attnkit.nn.TransformerDecoder.step`; several tokens, or
        training mode (dropout), run the decoder's :meth:`forward` with the caches.
        """
        if isinstance(tgt, torch.Tensor) and tgt.shape[1:] == (1,) and not self.training:
            if state.key_mask is None and state.src_valid_lens is not None:
                state.key_mask = KeyMask.from_lens(state.src_valid_lens,
                                                   state.enc_outputs.shape[1])
            H = self.decoder.step(tgt, state.caches, state.enc_outputs, state.key_mask,
                                  offset=state.position,
                                  rows_per_source=state.rows_per_source)  # (B, d)
            state.position += 1
            return step_linear(self.output, H)[:, None], state  # (B, 1, V)
        state.rows_own_sources()
        H = self.decoder(tgt, state.enc_outputs, state.src_valid_lens, caches=state.caches,
                         offset=state.position)  # (B, t, d)
        state.position += tgt.shape[1]
        return self.output(H), state  # (B, t, V)

    @staticmethod
    def reorder_state(state: TransformerState, indices: torch.Tensor) -> TransformerState:
        """``state`` restricted to batch rows ``indices`` (for beam search)."""
        return state.reorder(indices)
