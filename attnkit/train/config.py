"""The configuration of a training run: five tables, validated before anything is read.

A run is configured by one TOML file (and flags that override it)::

    [data]        what to train on          (kind = "multi30k", multi30k_root, ...)
    [tokenizer]   how text becomes ids      (kind = "sentencepiece", vocab_size, ...)
    [model]       the architecture          (preset = "transformer_small", then any field
                                             of the preset's TransformerConfig / BahdanauConfig)
    [optim]       the optimisation          (warmup, label_smoothing, max_tokens, ...)
    [run]         stopping, hardware, bookkeeping (max_steps, device, out_dir, ...)

Tables stay tables: a key in the wrong table is an error that names the right
one. Every key is a field declared with :func:`attnkit._options.option` (help
text, type, range); the command line offers each as ``--key-name`` (key names
are unique across tables) and the three choices of kind as ``--data``,
``--tokenizer`` and ``--model``. Values are checked for type, sign and range
when the config is built, with a message naming the key and the file.

Fields marked ``resume=True`` (stopping, logging, evaluation and checkpoint
cadence, device, precision, backend, learning-rate scale) may differ when a
run is resumed; any other difference refuses the resume (see
:func:`resume_differences`).

Importing this module imports no torch (``--help`` stays light). Checking a config
asks the models whether they build its model section
(:func:`attnkit.models.sizes.check_buildable`), so that combinations the modules
refuse are found when the config is read.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from .._data_root import DATA_VARIABLE, data_root
from .._io import check_regular_file
from .._names import BACKEND_NAMES, SCHEDULE_NAMES
from .._options import option, option_info, plain_value, validate_value
from ..models.family import MODEL_CONFIGS, PRESETS, family_of_preset, renamed_fields

__all__ = ["DataConfig", "ModelSection", "OptimConfig", "RunConfig", "TokenizerConfig",
           "TrainConfig", "flat_options", "load_config_file", "model_differences",
           "resume_differences"]

DATA_KINDS = ("dates", "tsv", "aligned", "multi30k")
TOKENIZER_KINDS = ("char", "word", "sentencepiece")
_VOCAB_FIELDS = ("src_vocab_size", "tgt_vocab_size")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """``[data]``: the parallel corpus of a run."""

    kind: str = option("dates", "corpus: dates (built in) | tsv | aligned | multi30k",
                       choices=DATA_KINDS, flag="data")
    train_path: str | None = option(None, "tsv: pairs file; aligned: source file", path=True)
    train_tgt_path: str | None = option(None, "aligned: target file", path=True)
    valid_path: str | None = option(None, "tsv: validation pairs; aligned: source file", path=True)
    valid_tgt_path: str | None = option(None, "aligned: validation target file", path=True)
    multi30k_root: str | None = option(None, "multi30k: folder with raw/ and tok/", path=True)
    src_lang: str = option("de", "multi30k: source language")
    tgt_lang: str = option("en", "multi30k: target language")
    tokenized: bool = option(False, "multi30k: use the lowercased tokenized files")
    reverse: bool = option(False, "tsv: swap the two columns (translate column 2 -> 1)")
    num_examples: int = option(30000, "dates: training pairs to generate", check="positive")
    valid_size: int = option(500, "dates: held-out pairs; tsv without valid_path: pairs "
                                  "split off", check="positive")
    max_pairs: int | None = option(None, "keep only the first N training pairs",
                                   check="positive")
    max_sentence_tokens: int = option(100, "longest training sentence kept, in tokens, source "
                                           "or target (longer pairs are counted and skipped)",
                                      check="positive")

    def check(self, label) -> None:
        needs = {"tsv": ("train_path",), "aligned": ("train_path", "train_tgt_path"),
                 "multi30k": ("multi30k_root",)}.get(self.kind, ())
        missing = [n for n in needs if not getattr(self, n)]
        if missing:
            what = {"tsv": "a tab-separated pairs file", "aligned": "source and target files",
                    "multi30k": f"folder with raw/ and tok/, or the {DATA_VARIABLE} variable "
                                "naming the folder that holds multi30k/"}[self.kind]
            raise ValueError(f"data={self.kind!r} needs {' and '.join(missing)} ({what}); "
                             f"set {', '.join(label(n) for n in missing)}")


@dataclass(frozen=True, kw_only=True)
class TokenizerConfig:
    """``[tokenizer]``: how sentences become ids."""

    kind: str = option("char", "char | word (the book's) | sentencepiece",
                       choices=TOKENIZER_KINDS, flag="tokenizer")
    vocab_size: int = option(8000, "sentencepiece vocabulary size", check="positive")
    shared_vocab: bool = option(True, "one vocabulary for source and target")
    sample_alpha: float = option(0.0, "subword sampling of the training sentences, drawn "
                                      "anew each epoch (sentencepiece; 0: off): for a "
                                      "unigram model the smoothing exponent alpha, for BPE "
                                      "the dropout probability", check="nonnegative_float",
                                 maximum=1)


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """``[optim]``: the optimizer, the schedule, the loss and the batches."""

    optimizer: str = option("adam", "adam | adamw", choices=("adam", "adamw"))
    lr_scale: float = option(1.0, "factor on the schedule (noam: d^-0.5·min(s^-0.5, s·w^-1.5))",
                             check="positive_float", resume=True)
    warmup: int = option(4000, "warmup steps of the schedule", check="positive")
    beta1: float = option(0.9, "Adam β1 (paper: 0.9)", check="probability")
    beta2: float = option(0.98, "Adam β2 (paper: 0.98)", check="probability")
    eps: float = option(1e-9, "Adam ε (paper: 1e-9)", check="positive_float")
    weight_decay: float = option(0.0, "AdamW decoupled weight decay",
                                 check="nonnegative_float")
    label_smoothing: float = option(0.1, "ε_ls (paper: 0.1)", check="probability")
    clip_norm: float | None = option(1.0, "gradient clipping by global norm (none: off)",
                                     check="positive_float",
                                     inf="never clip, still log the norm as grad_norm")
    accum_steps: int = option(1, "micro-batches per optimizer step", check="positive")
    max_tokens: int = option(4096, "token budget of one (global) micro-batch, padding "
                                   "included", check="positive")
    batch_multiple: int | None = option(None, "examples per batch rounded to a multiple "
                                              "(none: the number of processes)",
                                        check="positive")
    schedule: str = option("noam", "learning-rate schedule: noam (the paper's: warmup, "
                                   "lr_scale, d_model^-0.5) | inverse_sqrt | cosine | plateau "
                                   "(these three: a linear warmup to lr)",
                           choices=SCHEDULE_NAMES)
    lr: float | None = option(None, "inverse_sqrt, cosine, plateau: the peak learning rate, "
                                    "reached at step warmup (times lr_scale)",
                              check="positive_float")
    warmup_init_lr: float = option(0.0, "inverse_sqrt, cosine, plateau: the rate the warmup "
                                        "starts from", check="nonnegative_float")
    min_lr: float = option(0.0, "cosine: the rate it decays to, kept after total_steps; "
                                "plateau: the lowest rate", check="nonnegative_float")
    total_steps: int | None = option(None, "cosine: the step its decay ends (none: "
                                           "max_steps)", check="positive")
    decrease_factor: float = option(0.5, "plateau: factor in (0, 1) on the rate after "
                                         "plateau_patience validations without a better "
                                         "score", check="positive_float")
    plateau_patience: int = option(5, "plateau: validations in a row without a better score "
                                      "before the rate decreases", check="positive")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """``[run]``: where the run lives, when it stops, what it runs on, what it records."""

    out_dir: str = option("runs/attnkit", "run folder: checkpoints/, metrics.jsonl",
                          resume=True, path=True)
    seed: int = option(0, "seeds data order, initialisation and dropout (numpy takes "
                          "32 bits)", check="nonnegative", maximum=2**32 - 1)
    max_steps: int | None = option(None, "stop after this many optimizer steps",
                                   check="positive", resume=True)
    epochs: int | None = option(None, "stop after this many epochs", check="positive",
                                resume=True)
    time_limit: float | None = option(None, "stop after this many seconds of training",
                                      check="positive_float", resume=True,
                                      inf="no limit, as none")
    bf16: bool | str = option("auto", "bf16 autocast: auto (where the device runs it fast: "
                                      "a measured bf16 matmul speed-up), true or false",
                              check="bool_or_auto", resume=True)
    threads: int | str = option("auto", "CPU threads: auto (the cores not busy with other "
                                        "processes, re-checked while training) or a number",
                                check="positive_or_auto", resume=True)
    device: str = option("auto", "auto | cpu | cuda | cuda:N", resume=True)
    backend: str = option("auto", "attention backend of every attention module",
                          choices=("auto", *BACKEND_NAMES),
                          resume=True)
    log_every: int = option(20, "steps between metric records", check="positive", resume=True)
    eval_every: int = option(500, "steps between validations (0: only at the end)",
                             check="nonnegative", resume=True)
    stop_at: float | None = option(None, "stop once a validation reaches this score (exact "
                                         "match for dates, BLEU otherwise); needs eval_every",
                                   check="nonnegative_float", resume=True,
                                   inf="never reached, as none")
    patience: int | None = option(None, "stop after this many validations in a row without "
                                        "a better validation score (none: off); needs "
                                        "eval_every", check="positive", resume=True)
    checkpoint_every: int = option(500, "steps between checkpoints (0: only at the end)",
                                   check="nonnegative", resume=True)
    keep_last: int = option(5, "checkpoints kept on disk", check="positive", resume=True)
    keep_best: int = option(0, "checkpoints with the best validation scores kept besides the "
                               "last keep_last, listed in checkpoints/best.json (0: none)",
                            check="nonnegative", resume=True)
    eval_sentences: int = option(300, "validation sentences decoded for BLEU / exact match",
                                 check="positive", resume=True)
    beam_size: int = option(1, "beam used for validation decoding (1 = greedy)",
                            check="positive", resume=True)
    progress: bool = option(True, "progress bar", resume=True)
    tensorboard: bool = option(False, "also write metrics.jsonl's records as TensorBoard "
                                      "events to out_dir/tensorboard/ (pip install "
                                      "\"attnkit[tensorboard]\")", resume=True)


@dataclass(frozen=True)
class ModelSection:
    """``[model]``: a preset (``transformer_tiny`` …) and overrides of its config's fields.

    The keys besides ``preset`` are exactly the fields of the preset's config
    class (:class:`~attnkit.models.TransformerConfig` or
    :class:`~attnkit.models.BahdanauConfig`) except the vocabulary sizes, which
    come from the tokenizer. ``share_embeddings`` defaults to ``true`` when the
    vocabulary is shared.
    """

    preset: str = "transformer_tiny"
    options: dict = field(default_factory=dict)

    @property
    def config_class(self) -> type:
        return family_of_preset(self.preset).config

    def config(self, src_vocab_size: int, tgt_vocab_size: int, *, shared: bool = False):
        """The model config for these vocabulary sizes."""
        options = dict(self.options)
        if ("share_embeddings" in self.config_class.__dataclass_fields__ and shared
                and src_vocab_size == tgt_vocab_size):
            options.setdefault("share_embeddings", True)
        return PRESETS[self.preset](src_vocab_size, tgt_vocab_size, **options)

    def to_dict(self) -> dict:
        return {"preset": self.preset, **self.options}


@functools.cache  # the tables never change at run time
def model_fields() -> dict[str, tuple[dataclasses.Field, Any]]:
    """Every settable model field (of any config class): name -> (field, type)."""
    out: dict[str, tuple[dataclasses.Field, Any]] = {}
    for cls in MODEL_CONFIGS.values():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name not in _VOCAB_FIELDS:
                out.setdefault(f.name, (f, hints[f.name]))
    return out


_PRESET_FIELD = option("transformer_tiny", "model preset; the [model] keys override its "
                       "fields", choices=tuple(PRESETS), flag="model")
_PRESET_FIELD.name = "preset"
SECTIONS: dict[str, type] = {"data": DataConfig, "tokenizer": TokenizerConfig,
                             "model": ModelSection, "optim": OptimConfig, "run": RunConfig}


@functools.cache  # the tables never change at run time
def section_fields(table: str) -> dict[str, tuple[dataclasses.Field, Any]]:
    """The keys of one table: name -> (field, type)."""
    if table == "model":
        return {"preset": (_PRESET_FIELD, str), **model_fields()}
    cls = SECTIONS[table]
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


@functools.cache  # the tables never change at run time
def flat_options() -> dict[str, tuple[str, str, dataclasses.Field, Any]]:
    """Every option by its flat name (the flag without ``--``, dashes as underscores):
    ``name -> (table, key, field, type)``. Flat names are unique across tables."""
    out: dict[str, tuple[str, str, dataclasses.Field, Any]] = {}
    for table in SECTIONS:
        for key, (f, tp) in section_fields(table).items():
            name = option_info(f).flag or key
            if name in out:  # pragma: no cover - a programming error, caught by the tests
                raise RuntimeError(f"option name {name!r} is used by two tables")
            out[name] = (table, key, f, tp)
    return out


@functools.cache  # the tables never change at run time
def _table_of_key() -> dict[str, str]:
    return {key: table for table in SECTIONS for key in section_fields(table)}


def _label(table: str, key: str, source: str | None) -> str:
    """How a value is named in messages: ``FILE: [table] key`` or the flag ``--key``."""
    if not source:
        name = next(n for n, (t, k, _, _) in flat_options().items() if (t, k) == (table, key))
        return f"--{name.replace('_', '-')}"
    return f"{source}: [{table}] {key}"


def _check_keys(raw: dict, source: str) -> None:
    """Every top-level key is a table, every key sits in its own table."""
    where = _table_of_key()
    prefix = f"{source}: " if source else ""
    tables = ", ".join(f"[{t}]" for t in SECTIONS)
    for table, values in raw.items():
        if not isinstance(values, dict):
            if table in where:
                raise ValueError(f"{prefix}key {table!r} is outside any table; it belongs in "
                                 f"the [{where[table]}] table")
            raise ValueError(f"{prefix}unknown config keys [{table!r}] (outside any table; "
                             f"the tables are {tables})")
        if table not in SECTIONS:
            raise ValueError(f"{prefix}unknown table [{table}]; the tables are {tables}")
        own = section_fields(table)
        for key in values:
            if key not in own and key in where:
                raise ValueError(f"{prefix}[{table}] {key}: this key belongs in the "
                                 f"[{where[key]}] table")
        unknown = sorted(k for k in values if k not in own)
        if unknown:
            raise ValueError(f"{prefix}unknown config keys {unknown} in [{table}]"
                             f"{_renamed_hint(unknown)}; keys of [{table}]: {', '.join(own)}")


def _renamed_hint(keys: list[str]) -> str:
    """`` (KEY is now NEW)`` for each of ``keys`` that a model family renamed."""
    renamed = renamed_fields()
    said = [f"{k} is now {' and '.join(renamed[k])}" for k in keys if k in renamed]
    return f" ({'; '.join(said)})" if said else ""


def _build_section(table: str, values: dict, origin: dict, source: str) -> Any:
    """One section from its checked values; ``origin[(table, key)]`` names the source of a
    value when it is not the file ``source`` (``None``: a flag)."""
    fields = section_fields(table)
    checked = {k: validate_value(_label(table, k, origin.get((table, k), source)), v,
                                 *fields[k]) for k, v in values.items()}
    if table != "model":
        return SECTIONS[table](**checked)
    preset = checked.pop("preset", "transformer_tiny")
    section = ModelSection(preset=preset, options=checked)
    allowed = {f.name for f in dataclasses.fields(section.config_class)}
    for key in checked:
        if key not in allowed:
            raise ValueError(
                f"{_label('model', key, origin.get(('model', key), source))} is not an option of "
                f"preset {preset!r} ({section.config_class.__name__}); its options: "
                f"{', '.join(sorted(allowed - set(_VOCAB_FIELDS)))}")
    return section


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything a training run needs, in five sections (see the module docstring).

    Build it from a TOML file with :meth:`from_file`, from nested tables with
    :meth:`from_dict`, or from flat option names (as the flags name them) with
    :meth:`from_flat`::

        TrainConfig.from_flat(data="dates", model="transformer_tiny", num_hiddens=32,
                              max_steps=100)
    """

    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    # ------------------------------------------------------------- building
    @classmethod
    def from_dict(cls, tables: dict, *, source: str = "",
                  origin: dict | None = None) -> TrainConfig:
        """From nested tables ``{"data": {...}, "model": {...}, ...}`` (all optional).

        ``source`` names the file in messages. Raises ``ValueError``/``TypeError``
        naming the key (and file) for a key outside its table, an unknown key, or
        a value of the wrong type or range.
        """
        _check_keys(tables, source)
        origin = origin or {}
        sections = {t: _build_section(t, dict(tables.get(t, {})), origin, source)
                    for t in SECTIONS}
        cfg = cls(**sections)
        cfg._check_consistency(source, origin)
        return cfg

    @classmethod
    def from_flat(cls, values: dict | None = None, /, **kwargs) -> TrainConfig:
        """From flat option names (``num_heads=2``, ``data="tsv"``), as the flags give them."""
        return cls.merge({}, {**(values or {}), **kwargs})

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> TrainConfig:
        """From a TOML file, with flat-named ``overrides`` on top."""
        return cls.merge(load_config_file(path), overrides, source=str(path))

    @classmethod
    def merge(cls, tables: dict, flat: dict, *, source: str = "") -> TrainConfig:
        """Tables (from a file) with flat-named values (from flags) on top."""
        options = flat_options()
        _check_keys(tables, source)
        merged = {t: dict(v) for t, v in tables.items()}
        origin: dict = {}
        unknown = sorted(set(flat) - set(options))
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; the options are listed by "
                             "attnkit train --help")
        for name, value in flat.items():
            table, key, _, _ = options[name]
            merged.setdefault(table, {})[key] = value
            origin[(table, key)] = None  # named by its flag
        data, root = merged.get("data", {}), data_root(default=None)
        if data.get("kind") == "multi30k" and not data.get("multi30k_root") and root:
            data["multi30k_root"] = str(root / "multi30k")
        return cls.from_dict(merged, source=source, origin=origin)

    def _check_consistency(self, source: str, origin: dict) -> None:
        from ..models.sizes import check_buildable

        def label(table, key):  # the file is named once, in the prefix
            given = origin.get((table, key), source)
            return f"[{table}] {key}" if given else _label(table, key, None)

        prefix = f"{source}: " if source else ""
        try:
            self.data.check(lambda key: label("data", key))
            config = self.model.config(8, 8, shared=self.tokenizer.shared_vocab)
            check_buildable(config)
        except (TypeError, ValueError) as e:
            # a [model] key the family's own config refused: named as it was given
            # (flag or key), not by the config class's field
            said, owner = str(e), f"{self.model.config_class.__name__}."
            for key in self.model.options:
                said = said.replace(f"{owner}{key} ", f"{label('model', key)} ")
            raise type(e)(f"{prefix}{said}") from None
        if getattr(config, "share_embeddings", False) and not self.tokenizer.shared_vocab:
            raise ValueError(f"{prefix}{label('model', 'share_embeddings')} needs "
                             f"{label('tokenizer', 'shared_vocab')} = true")
        if self.run.patience is not None and self.run.eval_every == 0:
            patience, every = label("run", "patience"), label("run", "eval_every")
            raise ValueError(f"{prefix}{patience} = {self.run.patience} counts validations, "
                             f"which {every} = 0 turns off; give {every} a value > 0 or leave "
                             f"{patience} unset")
        self._check_sampling(prefix, label)
        longest = self.data.max_sentence_tokens + 1  # EOS (source) or BOS (target input)
        if hasattr(config, "max_len") and longest > config.max_len:
            raise ValueError(
                f"{prefix}{label('data', 'max_sentence_tokens')} = "
                f"{self.data.max_sentence_tokens} "
                f"needs {longest} positions, more than the model's positional table "
                f"({label('model', 'max_len')} = {config.max_len})")
        _check_schedule(self, label, prefix)

    def _check_sampling(self, prefix: str, label) -> None:
        """Subword sampling needs a tokenizer with more than one segmentation."""
        t = self.tokenizer
        if t.sample_alpha > 0 and t.kind != "sentencepiece":
            alpha, kind = label("tokenizer", "sample_alpha"), label("tokenizer", "kind")
            raise ValueError(
                f"{prefix}{alpha} = {t.sample_alpha:g} draws subword segmentations, which "
                f"only sentencepiece makes; {kind} = {t.kind!r} segments a sentence one way "
                f"only: set {alpha} = 0, or {kind} = 'sentencepiece'")

    # ------------------------------------------------------------- using
    def to_dict(self) -> dict:
        """Nested tables, JSON- and TOML-friendly (an infinity, where a key allows one, is
        ``"inf"``: JSON has none); :meth:`from_dict` reads it back, and a stored run's
        tables compare equal to those of the config that resumes it."""
        tables = {t: (getattr(self, t).to_dict() if t == "model"
                      else dataclasses.asdict(getattr(self, t))) for t in SECTIONS}
        return {t: {k: plain_value(v) for k, v in values.items()}
                for t, values in tables.items()}

    def replace(self, **flat) -> TrainConfig:
        """A copy with flat-named options changed (validated again)."""
        return TrainConfig.merge(self.to_dict(), flat)


#: the [optim] keys of each schedule, besides warmup and lr_scale, which all of them read
SCHEDULE_KEYS = {"noam": (), "inverse_sqrt": ("lr", "warmup_init_lr"),
                 "cosine": ("lr", "warmup_init_lr", "min_lr", "total_steps"),
                 "plateau": ("lr", "warmup_init_lr", "min_lr", "decrease_factor",
                             "plateau_patience")}


def _check_schedule(cfg: TrainConfig, label, prefix: str) -> None:
    """The keys of the chosen schedule are there and agree; another schedule's keys are not
    given (a value other than its default would be silently unused)."""
    o, name = cfg.optim, cfg.optim.schedule
    fields = section_fields("optim")
    for key in dict.fromkeys(k for keys in SCHEDULE_KEYS.values() for k in keys):
        if key not in SCHEDULE_KEYS[name] and getattr(o, key) != fields[key][0].default:
            owners = " or ".join(repr(n) for n, keys in SCHEDULE_KEYS.items() if key in keys)
            raise ValueError(f"{prefix}{label('optim', key)} = {getattr(o, key)!r} is read only "
                             f"by schedule {owners}, not by {label('optim', 'schedule')} = "
                             f"{name!r}; remove it or change the schedule")
    if name == "noam":
        return
    if o.lr is None:
        raise ValueError(f"{prefix}{label('optim', 'schedule')} = {name!r} needs "
                         f"{label('optim', 'lr')}, its peak learning rate (e.g. 0.0005)")
    for key in ("min_lr", "warmup_init_lr"):  # rates below the peak: a warm-up rises
        if key in SCHEDULE_KEYS[name] and getattr(o, key) > o.lr:
            raise ValueError(f"{prefix}{label('optim', key)} must be a number <= "
                             f"{label('optim', 'lr')} = {o.lr:g}; got {getattr(o, key):g}")
    if name == "plateau":
        _check_plateau(cfg, label, prefix)
    elif name == "cosine":
        _check_horizon(cfg, label, prefix)


def _check_plateau(cfg: TrainConfig, label, prefix: str) -> None:
    if cfg.optim.decrease_factor >= 1:
        raise ValueError(f"{prefix}{label('optim', 'decrease_factor')} must be a number in "
                         f"(0, 1); got {cfg.optim.decrease_factor:g}")
    if cfg.run.eval_every == 0:
        every = label("run", "eval_every")
        raise ValueError(f"{prefix}{label('optim', 'schedule')} = 'plateau' follows the "
                         f"validation score, which {every} = 0 turns off; give {every} a "
                         "value > 0")


def _check_horizon(cfg: TrainConfig, label, prefix: str) -> None:
    """A cosine decays over ``total_steps``, else over ``max_steps``; one of them is given
    and leaves steps after the warmup."""
    o, steps = cfg.optim, label("optim", "total_steps")
    if o.total_steps is None and cfg.run.max_steps is None:
        raise ValueError(f"{prefix}{label('optim', 'schedule')} = 'cosine' decays until a "
                         f"known step: give {steps} or {label('run', 'max_steps')}")
    given = steps if o.total_steps is not None else label("run", "max_steps")
    total = o.total_steps if o.total_steps is not None else cfg.run.max_steps
    if total <= o.warmup:
        raise ValueError(f"{prefix}{given} = {total} ends the cosine before it starts: it "
                         f"must be > {label('optim', 'warmup')} = {o.warmup}")



def load_config_file(path: str | Path) -> dict:
    """The tables of a TOML config file (checked for placement, not yet for values)."""
    path = Path(path)
    check_regular_file(path, "config file")  # a FIFO or /dev/stdin is not "not found"
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        with path.open("rb") as f:
            tables = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None
    _check_keys(tables, str(path))
    return _resolve_paths(tables, path)


_VARIABLE = re.compile(r"\$\{(ATTNKIT_[A-Z_]+)(?::-([^}]*))?\}")


def expand_variables(value: str, where: str) -> str:
    """``${ATTNKIT_DATA}`` and ``${ATTNKIT_DATA:-default}`` replaced by the data root the
    variable names (:func:`attnkit._data_root.data_root`), else by the file's default;
    another ``${ATTNKIT_...}`` is refused, naming the one variable there is."""
    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name != DATA_VARIABLE:
            raise ValueError(f"{where} uses ${{{name}}}; the one variable a config file may "
                             f"use is ${{{DATA_VARIABLE}}} (the folder holding the corpora)")
        root = data_root(default=None)
        if root is not None:
            return str(root)
        if default is not None:
            return default
        raise ValueError(f"{where} uses ${{{name}}}, which is not set; set the environment "
                         f"variable {name} or write the path")
    return _VARIABLE.sub(sub, value)


def _resolve_paths(tables: dict, source: Path) -> dict:
    """Path values of a config file, variables expanded, relative to the file's folder."""
    base = source.resolve().parent
    out = {t: dict(v) for t, v in tables.items()}
    for table, values in out.items():
        fields = section_fields(table)
        for key, value in values.items():
            if key in fields and option_info(fields[key][0]).path and isinstance(value, str):
                value = os.path.expanduser(expand_variables(value, f"{source}: [{table}] {key}"))
                values[key] = os.path.normpath(base / value) if not os.path.isabs(value) \
                    else value
    return out


def _dotted(tables: dict) -> dict[str, Any]:
    """``{table: {key: v}}`` -> ``{"table.key": v}``."""
    return {f"{t}.{k}": v for t, values in tables.items() for k, v in values.items()}


def resume_differences(stored: dict, given: TrainConfig) -> list[str]:
    """The fields, as ``table.key: stored X, given Y``, in which ``given`` differs from a
    run's stored train config (nested dict), except those marked ``resume=True`` and
    the ``[model]`` table (compare the resolved model configs for that:
    :func:`model_differences`). A key the stored config lacks was added since the run was
    written: it counts as its default, which keeps the behaviour of that time."""
    may_change = {f"{t}.{k}" for t in SECTIONS for k, (f, _) in section_fields(t).items()
                  if option_info(f).resume}
    defaults = {f"{t}.{k}": plain_value(f.default) for t in SECTIONS if t != "model"
                for k, (f, _) in section_fields(t).items() if f.default is not dataclasses.MISSING}
    a, b = {**defaults, **_dotted(stored)}, _dotted(given.to_dict())
    out = []
    for key in sorted(set(a) | set(b)):
        if key in may_change or key.startswith("model."):
            continue
        if a.get(key, "(unset)") != b.get(key, "(unset)"):
            out.append(f"{key}: stored {a.get(key, '(unset)')!r}, given "
                       f"{b.get(key, '(unset)')!r}")
    return out


def model_differences(stored: Any, given: Any) -> list[str]:
    """``model.field: stored X, given Y`` for each field in which two model configs differ."""
    if type(stored) is not type(given):
        return [f"model: stored {type(stored).__name__}, given {type(given).__name__}"]
    return [f"model.{f.name}: stored {getattr(stored, f.name)!r}, given "
            f"{getattr(given, f.name)!r}" for f in dataclasses.fields(stored)
            if getattr(stored, f.name) != getattr(given, f.name)]
