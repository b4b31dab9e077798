"""The configuration of a training run, and how it is read from TOML files and flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import tomllib

__all__ = ["TrainConfig", "load_config_file", "MODEL_BUILDERS"]

MODEL_BUILDERS = ("transformer_tiny", "transformer_small", "transformer_base", "bahdanau_small")
DATA_KINDS = ("dates", "tsv", "aligned", "multi30k")
TOKENIZERS = ("char", "word", "sentencepiece")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything a training run needs; every field is a ``attnkit train`` flag
    (``--field-name``) and a key of a TOML config file (``field_name``)."""

    # --- data
    data: str = "dates"  # "dates" (built in) | "tsv" | "aligned" | "multi30k"
    train_path: str | None = None  # tsv: pairs file; aligned: source file
    train_tgt_path: str | None = None  # aligned: target file
    valid_path: str | None = None  # tsv: validation pairs; aligned: source file
    valid_tgt_path: str | None = None  # aligned: validation target file
    multi30k_root: str | None = None  # multi30k: folder with raw/ and tok/
    src_lang: str = "de"  # multi30k: source language
    tgt_lang: str = "en"  # multi30k: target language
    tokenized: bool = False  # multi30k: use the lowercased tokenized files
    reverse: bool = False  # tsv: swap the two columns (translate column 2 → 1)
    num_examples: int = 30000  # dates: training pairs to generate
    valid_size: int = 500  # dates: held-out pairs; tsv without valid_path: pairs split off
    max_pairs: int | None = None  # keep only the first N training pairs
    # --- tokenizer
    tokenizer: str = "char"  # "char" | "word" (the book's) | "sentencepiece"
    vocab_size: int = 8000  # sentencepiece vocabulary size
    shared_vocab: bool = True  # one vocabulary for source and target
    # --- model
    model: str = "transformer_tiny"  # builder name, see MODEL_BUILDERS
    num_hiddens: int | None = None  # override d_model / GRU hidden size
    num_heads: int | None = None  # override attention heads
    ffn_num_hiddens: int | None = None  # override FFN inner size
    num_layers: int | None = None  # override layers (encoder and decoder)
    dropout: float | None = None  # override dropout
    tie_output: bool = False  # tie output projection to target embedding
    pre_norm: bool = False  # pre-LN blocks instead of the paper's post-LN
    backend: str = "auto"  # attention backend of every attention module
    # --- optimisation
    optimizer: str = "adam"  # "adam" | "adamw"
    lr_scale: float = 1.0  # factor on the paper's schedule d^-0.5·min(s^-0.5, s·w^-1.5)
    warmup: int = 4000  # warmup steps of the schedule
    beta1: float = 0.9  # Adam β1 (paper: 0.9)
    beta2: float = 0.98  # Adam β2 (paper: 0.98)
    eps: float = 1e-9  # Adam ε (paper: 1e-9)
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    label_smoothing: float = 0.1  # ε_ls (paper: 0.1)
    clip_norm: float | None = 1.0  # gradient clipping by global norm (None: off)
    accum_steps: int = 1  # micro-batches per optimizer step
    max_tokens: int = 4096  # token budget of one (global) micro-batch, padding included
    max_len: int = 100  # longest source/target kept (longer ones counted and skipped)
    batch_multiple: int | None = None  # examples per batch rounded to a multiple (None: ranks)
    max_steps: int | None = None  # stop after this many optimizer steps
    epochs: int | None = None  # stop after this many epochs
    time_limit: float | None = None  # stop after this many seconds of training
    bf16: bool = False  # bf16 autocast (CPU and GPU)
    seed: int = 0  # seeds data order, initialisation and dropout
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    # --- bookkeeping
    out_dir: str = "runs/attnkit"  # checkpoints/, metrics.jsonl and tokenizers go here
    log_every: int = 20  # steps between metric records
    eval_every: int = 500  # steps between validations (0: only at the end)
    checkpoint_every: int = 500  # steps between checkpoints (0: only at the end)
    keep_last: int = 5  # checkpoints kept on disk
    eval_sentences: int = 300  # validation sentences decoded for BLEU / exact match
    beam_size: int = 1  # beam used for validation decoding (1 = greedy)
    progress: bool = True  # progress bar

    def __post_init__(self):
        def one_of(name, choices):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}; got {getattr(self, name)!r}")

        one_of("data", DATA_KINDS)
        one_of("tokenizer", TOKENIZERS)
        one_of("model", MODEL_BUILDERS)
        one_of("optimizer", ("adam", "adamw"))
        for name in ("warmup", "accum_steps", "max_tokens", "max_len", "log_every",
                     "keep_last", "vocab_size", "eval_sentences", "beam_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int; got {v!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1); got {self.label_smoothing}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {self.dropout}")
        if self.data == "tsv" and not self.train_path:
            raise ValueError("data='tsv' needs train_path (a tab-separated pairs file)")
        if self.data == "aligned" and not (self.train_path and self.train_tgt_path):
            raise ValueError("data='aligned' needs train_path and train_tgt_path")
        if self.data == "multi30k" and not self.multi30k_root:
            raise ValueError("data='multi30k' needs multi30k_root (folder with raw/ and tok/)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; valid keys: {sorted(names)}")
        return cls(**d)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def load_config_file(path: str | Path) -> dict:
    """Read a TOML config file into a dict of :class:`TrainConfig` fields.

    Keys may be grouped in tables (``[data]``, ``[model]``…); tables are
    flattened, so ``[model] num_hiddens = 256`` sets ``num_hiddens``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file not found: {path}")
    with path.open("rb") as f:
        raw = tomllib.load(f)
    flat: dict = {}
    for k, v in raw.items():
        if isinstance(v, dict):
            flat.update(v)
        else:
            flat[k] = v
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(flat) - names)
    if unknown:
        raise ValueError(f"{path}: unknown config keys {unknown}")
    return flat

