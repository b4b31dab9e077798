"""The one registry of model families: what each is, and everything callers ask of it.

A family is a kind of model, such as the Transformer or the Bahdanau RNN
seq2seq. Its :class:`Family` declares its config class (a frozen dataclass
importing no torch), its module class (named by a dotted path, imported on
first build), its presets, the fields that size it, and what it can do.
Everything that depends on the family asks here — :func:`build_model`, the run
format (:func:`model_config_to_dict` / :func:`model_config_from_dict`),
:data:`PRESETS` and the ``[model]`` table, :mod:`attnkit.models.sizes`, the
CTranslate2 export — so no code outside :mod:`attnkit.models` tells families
apart, and a new family is one entry in :data:`FAMILIES` and one module.

Importing this module imports no torch (``attnkit train --help`` lists every field).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._options import plain_value
from .._values import check_choice
from .config import (
    BahdanauConfig,
    TransformerConfig,
    bahdanau_small,
    transformer_base,
    transformer_small,
    transformer_tiny,
)
from .rnn_dot import RNNDotConfig, rnn_dot_small

__all__ = ["FAMILIES", "MODEL_CONFIGS", "PRESETS", "Family", "family_of", "family_of_preset",
           "model_config_from_dict", "model_config_to_dict", "renamed_fields"]


@dataclass(frozen=True)
class Family:
    """What one model family is, and what callers may ask of it.

    Attributes:
        name: the family's name (``"transformer"``).
        title: how messages name it (``"the Transformer"``).
        config: its config class (frozen, keyword-only, importing no torch).
        module: ``"package.module:Class"``, the ``nn.Module`` built from the config as
            ``Class(src_vocab_size, tgt_vocab_size, backend=..., **other_fields)``.
        presets: preset name -> builder ``(src_vocab_size, tgt_vocab_size=None,
            **overrides) -> config``.
        size_fields: the fields that scale the model (those
            :func:`attnkit.models.sizes.blame` may name).
        layer_fields: the layer counts, one tuple per stack that grows alone (the
            fields of one tuple must be equal, e.g. an RNN's encoder and decoder);
            :func:`attnkit.models.sizes.model_size` builds one and two of each.
        decoding_state: ``(config, source_len)`` -> values held per beam and per beam
            and step while decoding, besides the scores of the next tokens
            (:func:`attnkit.models.sizes.decoding_memory`).
        ctranslate2: whether :mod:`attnkit.export.ctranslate2` can convert it.
        renamed: an old field name -> the fields that took its value, so that configs
            stored before the rename still load.
    """

    name: str
    title: str
    config: type
    module: str
    presets: Mapping[str, Callable[..., Any]]
    size_fields: tuple[str, ...]
    layer_fields: tuple[tuple[str, ...], ...]
    decoding_state: Callable[[Any, int], tuple[int, int]]
    ctranslate2: bool = False
    renamed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def module_class(self) -> type:
        """The ``nn.Module`` class of the family (imports it, and torch, on first call)."""
        path, _, name = self.module.partition(":")
        return getattr(importlib.import_module(path), name)

    def tied(self, name: str) -> tuple[str, ...]:
        """The fields that change together with field ``name`` (itself included)."""
        return next((group for group in self.layer_fields if name in group), (name,))


def _transformer_state(c: TransformerConfig, source_len: int) -> tuple[int, int]:
    """Per beam: the encoder outputs and each decoder layer's cross-attention keys and
    values; per beam and step: each decoder layer's self-attention cache."""
    kv = (c.num_kv_heads or c.num_heads) * (c.num_hiddens // c.num_heads)
    per_step = c.num_decoder_layers * 2 * kv
    return source_len * (c.num_hiddens + per_step), per_step


def _rnn_state(c: BahdanauConfig, source_len: int) -> tuple[int, int]:
    """Per beam: the encoder outputs and the decoder's hidden state; nothing per step."""
    return source_len * c.num_hiddens + c.num_decoder_layers * c.num_hiddens, 0


_RNN_LAYERS = (("num_encoder_layers", "num_decoder_layers"),)
_RNN_RENAMED = {"num_layers": ("num_encoder_layers", "num_decoder_layers")}

#: Every model family, by name.
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("transformer", "the Transformer", TransformerConfig,
           "attnkit.models.transformer:Transformer",
           {"transformer_tiny": transformer_tiny, "transformer_small": transformer_small,
            "transformer_base": transformer_base},
           size_fields=("num_hiddens", "ffn_num_hiddens", "max_len", "num_encoder_layers",
                        "num_decoder_layers"),
           layer_fields=(("num_encoder_layers",), ("num_decoder_layers",)),
           decoding_state=_transformer_state, ctranslate2=True),
    Family("bahdanau", "the Bahdanau RNN", BahdanauConfig,
           "attnkit.models.bahdanau:BahdanauSeq2Seq", {"bahdanau_small": bahdanau_small},
           size_fields=("embed_size", "num_hiddens", "num_encoder_layers",
                        "num_decoder_layers"),
           layer_fields=_RNN_LAYERS, decoding_state=_rnn_state, renamed=_RNN_RENAMED),
    Family("rnn_dot", "the RNN with dot-product attention", RNNDotConfig,
           "attnkit.models.rnn_dot:RNNDotSeq2Seq", {"rnn_dot_small": rnn_dot_small},
           size_fields=("embed_size", "num_hiddens", "num_encoder_layers",
                        "num_decoder_layers"),
           layer_fields=_RNN_LAYERS, decoding_state=_rnn_state),
)}

#: Every preset of every family: name -> builder.
PRESETS: dict[str, Callable[..., Any]] = {
    name: builder for f in FAMILIES.values() for name, builder in f.presets.items()}
#: The config classes by class name (the ``"class"`` a run stores).
MODEL_CONFIGS: dict[str, type] = {f.config.__name__: f.config for f in FAMILIES.values()}
_BY_CONFIG: dict[type, Family] = {f.config: f for f in FAMILIES.values()}
_BY_PRESET: dict[str, Family] = {p: f for f in FAMILIES.values() for p in f.presets}
if len(PRESETS) != sum(len(f.presets) for f in FAMILIES.values()) \
        or len(_BY_CONFIG) != len(FAMILIES):  # pragma: no cover - caught by any import
    raise RuntimeError("two model families share a preset name or a config class")


def family_of(config: Any) -> Family:
    """The family of a model config (its exact class: a subclass is a family of its own).

    Raises:
        TypeError: ``config`` is no model config.
    """
    found = _BY_CONFIG.get(type(config))
    if found is None:
        raise TypeError(f"config must be a model config, one of {', '.join(MODEL_CONFIGS)}; "
                        f"got {type(config).__name__}")
    return found


def family_of_preset(preset: Any, *, where: str = "model preset") -> Family:
    """The family of preset ``preset``.

    Raises:
        ValueError: naming ``where``, for a name that is no preset.
    """
    return _BY_PRESET[check_choice(where, preset, PRESETS)]


def renamed_fields() -> dict[str, tuple[str, ...]]:
    """Old field names of any family -> the fields that replaced them."""
    return {old: new for f in FAMILIES.values() for old, new in f.renamed.items()}


def model_config_to_dict(config: Any) -> dict:
    """``{"class": name, **fields}``: what a run stores to rebuild its model."""
    family_of(config)
    return {"class": type(config).__name__, **{f: plain_value(getattr(config, f)) for f in
                                               config.__dataclass_fields__}}


def model_config_from_dict(d: dict, *, where: str = "model") -> Any:
    """Inverse of :func:`model_config_to_dict`; every field must be present, none unknown.
    A field stored under its old name (:attr:`Family.renamed`) is read under the new ones.

    Raises:
        ValueError / TypeError: naming ``where``, an unknown class, missing or unknown
            fields, or a value the config refuses.
    """
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a table of fields; got {type(d).__name__}")
    cls = MODEL_CONFIGS[check_choice(f"{where}: 'class'", d.get("class"), MODEL_CONFIGS)]
    d = _renamed(d, _BY_CONFIG[cls].renamed)
    names = {f.name for f in dataclasses.fields(cls)}
    given = set(d) - {"class"}
    if given != names:
        raise ValueError(f"{where}: fields of {cls.__name__} missing {sorted(names - given)}, "
                         f"unknown {sorted(given - names)}")
    try:
        return cls(**{k: d[k] for k in names})
    except (TypeError, ValueError) as e:  # a value out of range or of another type
        raise type(e)(f"{where}: {e}") from None


def _renamed(d: dict, renamed: Mapping[str, tuple[str, ...]]) -> dict:
    """``d`` with each old field name that none of its new names accompanies replaced by
    the new names (an old name beside a new one stays, and is refused as unknown)."""
    out = dict(d)
    for old, new in renamed.items():
        if old in out and not any(n in out for n in new):
            value = out.pop(old)
            out.update(dict.fromkeys(new, value))
    return out
