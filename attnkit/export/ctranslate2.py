"""Export a Transformer run to CTranslate2 (https://github.com/OpenNMT/CTranslate2).

The model is described with CTranslate2's own converter API, a
``ctranslate2.specs.TransformerSpec``, filled from the run's modules the way
CTranslate2's OpenNMT-py and fairseq converters fill it, then validated,
optionally quantized and saved by CTranslate2 itself::

    export_ctranslate2("runs/multi30k-de-en", "deploy/de-en", quantization="int8")

How attnkit's Transformer maps onto the spec (``L`` = one layer):

==============================================  =============================================
attnkit                                         CTranslate2 spec
==============================================  =============================================
``encoder.embed.embedding`` (× √d)              ``encoder.embeddings[0]``, ``scale_embeddings``
``decoder.embed.embedding`` (× √d)              ``decoder.embeddings``, ``scale_embeddings``
sinusoidal table ``P`` / learned positions      ``{en,de}coder.position_encodings.encodings``
                                                (given as a weight: attnkit interleaves sin/cos
                                                from position 0, CTranslate2's built-in table
                                                concatenates them from position 1)
rope (interleaved pairs, base 10000)            ``rotary_dim=0, rotary_interleave=True`` on the
                                                self-attentions; no position table
``L.attention.W_q, W_k, W_v`` (encoder)         ``L.self_attention.linear[0]`` (fused q;k;v)
``L.self_attention.W_q, W_k, W_v`` (decoder)    ``L.self_attention.linear[0]`` (fused q;k;v)
``L.cross_attention.W_q`` / ``W_k, W_v``        ``L.attention.linear[0]`` / ``linear[1]`` (k;v)
``W_o``                                         ``linear[-1]`` of the same attention
``L.addnorm1.ln`` (encoder)                     ``L.self_attention.layer_norm``
``L.addnorm1.ln`` / ``addnorm2.ln`` (decoder)   ``L.self_attention.layer_norm`` /
                                                ``L.attention.layer_norm``
last ``addnorm.ln`` of a layer                  ``L.ffn.layer_norm``
``L.ffn.dense1`` / ``dense2``                   ``L.ffn.linear_0`` / ``linear_1``
``final_norm`` (pre-LN only)                    ``{en,de}coder.layer_norm``
``output`` (tied or not, with its bias)         ``decoder.projection``
``pre_norm``                                    ``pre_norm`` of both stacks
``activation`` relu / gelu (erf)                ``Activation.RELU`` / ``Activation.GELU``
``score`` scaled_dot / dot                      ``queries_scale`` 1/√Dh (default) / 1.0
``num_kv_heads``                                ``num_heads_kv`` of every attention
LayerNorm eps 1e-5                              config ``layer_norm_epsilon = 1e-5``
==============================================  =============================================

Vocabularies are written from attnkit's tokenizers so that token id ``i`` in
attnkit is token ``i`` in CTranslate2 (the specials ``<pad> <unk> <bos>
<eos>`` are ids 0–3); the config names ``<bos>`` as the decoder start token
and adds ``<eos>`` to every source, as attnkit does. The run's tokenizer is
copied to ``tokenizer/`` and :data:`EXPORT_INFO` records the model section and
its positional table size, so the directory alone can translate text
(:mod:`attnkit.export.ctranslate2_translator`). :data:`MANIFEST` lists the size
and SHA-256 of every file; the loader checks them before it reads anything, and
the directory is put in place whole or not at all (:mod:`attnkit.export.directory`).

What CTranslate2 cannot represent is refused by :func:`check_exportable`,
naming the option: the RNN models, ``positional="alibi"`` (CTranslate2
has ALiBi in decoders only; attnkit's encoder uses the symmetric form) and
the scores other than ``scaled_dot`` and ``dot``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .directory import EXPORT_INFO, MANIFEST, ExportArgumentError, write_export

if TYPE_CHECKING:
    from ..runs.run import Run

__all__ = ["EXPORT_FORMAT", "EXPORT_INFO", "MANIFEST", "QUANTIZATIONS", "check_exportable",
           "export_ctranslate2", "require_ctranslate2"]

#: What ``quantization`` accepts: the weight types CTranslate2 runs on a CPU.
QUANTIZATIONS = ("float32", "int16", "int8")

#: What :data:`EXPORT_INFO` says as ``"format"`` (1: before exports had a manifest).
EXPORT_FORMAT = 2
_LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, used by every attnkit LayerNorm
_SCORES = {"scaled_dot": None, "dot": 1.0}  # score -> queries_scale (None: 1/sqrt(Dh))
_POSITIONAL = ("sinusoidal", "learned", "rope")
_INSTALL = 'pip install "attnkit[deploy]"'
#: What an export holds (a format-1 export, without a manifest, is replaced if it holds no more)
_WRITTEN = ("model.bin", "config.json", "shared_vocabulary.json", "source_vocabulary.json",
            "target_vocabulary.json", "tokenizer", EXPORT_INFO)


def require_ctranslate2(what: str = "the ctranslate2 engine"):
    """The ``ctranslate2`` module, or an ``OSError`` saying how to install it."""
    try:
        import ctranslate2
    except ImportError:
        raise OSError(f"{what} needs the ctranslate2 package, which is not installed: "
                      f"{_INSTALL}") from None
    return ctranslate2


def check_exportable(config) -> None:
    """Raise ``ValueError`` (one line, naming the option) unless CTranslate2 can represent
    the model of ``config``: a family that declares it
    (:attr:`attnkit.models.family.Family.ctranslate2`, the Transformer), with options it has."""
    from ..models.family import FAMILIES, family_of

    family = family_of(config)
    if not family.ctranslate2:
        exportable = " and ".join(f.title for f in FAMILIES.values() if f.ctranslate2)
        raise ValueError(f"cannot export a {type(config).__name__} model to CTranslate2: "
                         f"{family.title} has no CTranslate2 spec (only {exportable} has)")
    if config.positional not in _POSITIONAL:
        raise ValueError(
            f"cannot export model option positional={config.positional!r} to CTranslate2: "
            "it has ALiBi in decoders only, while attnkit's encoder uses the symmetric form; "
            f"exportable: {', '.join(_POSITIONAL)}")
    if config.score not in _SCORES:
        raise ValueError(
            f"cannot export model option score={config.score!r} to CTranslate2, whose "
            f"attention is a dot product (scaled or not); exportable: {', '.join(_SCORES)}")


def _array(t):
    """A float32 numpy copy of a tensor (what the spec stores)."""
    return t.detach().to("cpu").float().contiguous().numpy()


def _linear(spec, *linears) -> None:
    """``spec.weight``/``bias`` from one or more ``nn.Linear`` fused along the outputs."""
    import numpy as np

    spec.weight = np.concatenate([_array(lin.weight) for lin in linears])
    if linears[0].bias is not None:
        spec.bias = np.concatenate([_array(lin.bias) for lin in linears])


def _norm(spec, ln) -> None:
    spec.gamma, spec.beta = _array(ln.weight), _array(ln.bias)


def _attention(spec, mha, queries_scale, *, fused_qkv: bool) -> None:
    if fused_qkv:
        _linear(spec.linear[0], mha.W_q, mha.W_k, mha.W_v)
    else:
        _linear(spec.linear[0], mha.W_q)
        _linear(spec.linear[1], mha.W_k, mha.W_v)
    _linear(spec.linear[-1], mha.W_o)
    if queries_scale is not None:
        spec.queries_scale = queries_scale


def _ffn(spec, ffn, ln) -> None:
    _linear(spec.linear_0, ffn.dense1)
    _linear(spec.linear_1, ffn.dense2)
    _norm(spec.layer_norm, ln)


def _positions(spec, embed, positional: str) -> None:
    """The additive position table (absolute kinds); nothing for rope."""
    if positional == "sinusoidal":
        spec.position_encodings.encodings = _array(embed.pos_encoding.P[0])  # (max_len, d)
    elif positional == "learned":
        spec.position_encodings.encodings = _array(embed.pos_encoding.embedding.weight)
    elif hasattr(spec, "position_encodings"):  # rope: the encoder spec declares a table
        del spec.position_encodings


def _stack_options(config) -> dict:
    from ctranslate2.specs import common_spec

    activation = {"relu": common_spec.Activation.RELU,
                  "gelu": common_spec.Activation.GELU}[config.activation]
    options = dict(pre_norm=config.pre_norm, activation=activation)
    if config.num_kv_heads not in (None, config.num_heads):
        options["num_heads_kv"] = config.num_kv_heads
    if config.positional == "rope":
        options.update(rotary_dim=0, rotary_interleave=True, rotary_base=10000.0)
    return options


def _stacks(model, config):
    """The filled encoder and decoder specs of ``model`` (see the module's table)."""
    from ctranslate2.specs import transformer_spec

    options = _stack_options(config)
    enc = transformer_spec.TransformerEncoderSpec(config.num_encoder_layers, config.num_heads,
                                                  **options)
    dec = transformer_spec.TransformerDecoderSpec(config.num_decoder_layers, config.num_heads,
                                                  **options)
    for spec, embeddings, stack in ((enc, enc.embeddings[0], model.encoder),
                                    (dec, dec.embeddings, model.decoder)):
        embeddings.weight = _array(stack.embed.embedding.weight)
        _positions(spec, stack.embed, config.positional)
        if config.pre_norm:
            _norm(spec.layer_norm, stack.final_norm)
    scale = _SCORES[config.score]
    for layer, blk in zip(enc.layer, model.encoder.blocks):
        _attention(layer.self_attention, blk.attention, scale, fused_qkv=True)
        _norm(layer.self_attention.layer_norm, blk.addnorm1.ln)
        _ffn(layer.ffn, blk.ffn, blk.addnorm2.ln)
    for layer, blk in zip(dec.layer, model.decoder.blocks):
        _attention(layer.self_attention, blk.self_attention, scale, fused_qkv=True)
        _norm(layer.self_attention.layer_norm, blk.addnorm1.ln)
        _attention(layer.attention, blk.cross_attention, scale, fused_qkv=False)
        _norm(layer.attention.layer_norm, blk.addnorm2.ln)
        _ffn(layer.ffn, blk.ffn, blk.addnorm3.ln)
    _linear(dec.projection, model.output)
    return enc, dec


def vocabulary(tokenizer) -> list[str]:
    """The token string of every id of ``tokenizer``, in id order (all distinct)."""
    if hasattr(tokenizer, "idx_to_token"):
        tokens = list(tokenizer.idx_to_token)
    elif hasattr(tokenizer, "id_to_piece"):
        tokens = [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    else:
        raise ValueError(f"a {type(tokenizer).__name__} has no token strings to write as a "
                         "CTranslate2 vocabulary")
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"the {type(tokenizer).__name__}'s token strings are not distinct; "
                         "CTranslate2 needs one string per id")
    return tokens


def model_spec(model, config, tokenizers):
    """The filled ``TransformerSpec`` of ``model`` (built from ``config``) and its config."""
    from ctranslate2.specs import transformer_spec

    check_exportable(config)
    spec = transformer_spec.TransformerSpec(*_stacks(model, config))
    spec.register_source_vocabulary(vocabulary(tokenizers.src))
    spec.register_target_vocabulary(vocabulary(tokenizers.tgt))
    for key, value in engine_config().items():
        setattr(spec.config, key, value)
    return spec


def engine_config() -> dict:
    """The entries of the exported ``config.json`` that attnkit's decoding relies on
    (written by :func:`model_spec`, checked when an export is loaded)."""
    from ..data.tokenizer import BOS_ID, EOS_ID, SPECIAL_TOKENS, UNK_ID

    return {"layer_norm_epsilon": _LAYER_NORM_EPS, "unk_token": SPECIAL_TOKENS[UNK_ID],
            "bos_token": SPECIAL_TOKENS[BOS_ID], "eos_token": SPECIAL_TOKENS[EOS_ID],
            "decoder_start_token": SPECIAL_TOKENS[BOS_ID], "add_source_bos": False,
            "add_source_eos": True}


def export_ctranslate2(checkpoint: str | Path | Run, out: str | Path, *,
                       quantization: str = "float32", force: bool = False) -> Path:
    """Write the Transformer run at ``checkpoint`` as a CTranslate2 model directory ``out``.

    ``checkpoint``: what :func:`attnkit.runs.run.open_run` opens (a run folder, ``RUN/best``
    or a checkpoint), verified once here, or a :class:`~attnkit.runs.run.Run` opened
    already, which is not verified again (a caller exporting one checkpoint several ways
    opens it once). ``quantization``: one of :data:`QUANTIZATIONS` (the weights' type on
    disk).
    The directory is built beside ``out``, given a manifest of checksums and
    renamed into place, so ``out`` holds either the earlier export or the whole
    new one, even if the process is killed (:func:`attnkit.export.directory.write_export`);
    ``force`` replaces an earlier export there.

    Raises:
        ValueError: a model CTranslate2 cannot represent (naming the option); an
            :class:`~attnkit.export.directory.ExportArgumentError` naming
            ``quantization`` or ``out`` (one that holds other files, or an earlier
            export without ``force``).
        OSError: ctranslate2 not installed, unreadable checkpoint, unwritable ``out``.
    """
    from ..runs.run import Run, open_run

    if quantization not in QUANTIZATIONS:
        raise ExportArgumentError("quantization", f"must be one of {', '.join(QUANTIZATIONS)}; "
                                                  f"got {quantization!r}")
    # verified once, here or when it was opened; the translator reads this checkpoint
    run = checkpoint if isinstance(checkpoint, Run) else open_run(checkpoint)
    check_exportable(run.model)  # before the weights are read, and whether or not
    ct2 = require_ctranslate2("exporting to CTranslate2")  # installing ctranslate2 would help
    from ..decode.translator import load_translator

    tr = load_translator(run)
    spec = model_spec(tr.model, tr.run.model, tr.tokenizers)
    spec.validate()
    spec.optimize(quantization=quantization)
    info = _info(tr.run, quantization, ct2.__version__)

    def build(folder: Path) -> None:
        spec.save(str(folder))
        tr.tokenizers.save(folder / "tokenizer")
        # the loader holds config.json to this copy (an engine error then blames model.bin)
        info["config"] = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        (folder / EXPORT_INFO).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")

    return write_export(out, build, known=_WRITTEN, force=force)


def _info(run, quantization: str, ct2_version: str) -> dict:
    from .._version import __version__
    from ..models.family import model_config_to_dict

    return {"format": EXPORT_FORMAT, "engine": "ctranslate2",
            "ctranslate2_version": ct2_version, "attnkit_version": __version__,
            "checkpoint": str(run.path), "step": run.train_state.get("step"),
            "quantization": quantization, "positions": run.model.max_len,
            "tokenizer": run.tokenizer, "model": model_config_to_dict(run.model)}
