"""Models assembled from :mod:`attnkit.nn`: the Transformer and RNN encoder–decoders.

All share one interface: ``forward(src, tgt_in, src_valid_lens, tgt_valid_lens=None)``
→ logits ``(B, T, V)``, and step decoding with ``encode`` → ``init_state`` →
``decode_step`` (and ``reorder_state`` for beam search).

Each family of models (its config class, module class, presets, sizes and what it can
do) is declared once, in :mod:`attnkit.models.family`. Configs
(:mod:`attnkit.models.config`) import no torch; the modules are loaded on first use of
a name.
"""

from .._lazy import lazy_attributes

_WHERE = {
    **dict.fromkeys(["AttentionDecoder", "BahdanauSeq2Seq", "BahdanauState", "Seq2SeqEncoder"],
                    ".bahdanau"),
    **dict.fromkeys(["BahdanauConfig", "TransformerConfig", "bahdanau_small",
                     "transformer_base", "transformer_small", "transformer_tiny"], ".config"),
    **dict.fromkeys(["FAMILIES", "Family", "PRESETS", "family_of", "model_config_from_dict",
                     "model_config_to_dict"], ".family"),
    **dict.fromkeys(["build_model", "count_parameters"], ".build"),
    **dict.fromkeys(["Transformer", "TransformerState"], ".transformer"),
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)
