"""``attnkit train``: train a translation model from a TOML config and flags.

Every option of :class:`attnkit.train.config.TrainConfig` is a flag
``--key-name``; the help text, type and range come from the field's metadata.
"""

from __future__ import annotations

import argparse

TABLE_TITLES = {
    "data": "[data]: the corpus",
    "tokenizer": "[tokenizer]",
    "model": "[model]: a preset, then any field of its config class",
    "optim": "[optim]: optimizer, schedule, loss, batches",
    "run": "[run]: stopping, hardware, bookkeeping (may change on resume: marked 'resume')",
}


def _converter(field, tp):
    """An argparse ``type`` for a field annotation; ``none`` unsets optional fields."""
    from attnkit._options import option_info, parse_flag_value, split_optional

    base, optional = split_optional(tp)
    info = option_info(field)

    def convert(text: str):
        if optional and text.lower() == "none":
            return None
        try:
            if info.check in ("bool_or_auto", "positive_or_auto"):
                return parse_flag_value(info, text)
            return base(text)
        except ValueError as e:
            said = str(e) if info.check == "positive_or_auto" else \
                f"expected {getattr(base, '__name__', base)}, got {text!r}"
            raise argparse.ArgumentTypeError(said) from None

    convert.__name__ = getattr(base, "__name__", "value")
    return convert


def _help(field, tp) -> str:
    from attnkit._options import option_info, split_optional

    info = option_info(field)
    parts = [info.help]
    if isinstance(info.choices, tuple):
        parts.append("{" + ", ".join(map(str, info.choices)) + "}")
    if field.default is not field.default_factory and field.default is not None:
        parts.append(f"(default: {field.default!r})")
    if info.inf:
        parts.append(f"— 'inf': {info.inf}")
    if split_optional(tp)[1]:
        parts.append("— 'none' to unset")
    if info.resume:
        parts.append("[resume]")
    return " ".join(p for p in parts if p).replace("%", "%%")


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    from attnkit._options import split_optional
    from attnkit.train.config import flat_options

    p.add_argument("--config", help="TOML config file with [data], [tokenizer], [model], "
                                    "[optim], [run] tables; flags given here override it")
    groups = {t: p.add_argument_group(title) for t, title in TABLE_TITLES.items()}
    for name, (table, key, field, tp) in flat_options().items():
        flag, group = "--" + name.replace("_", "-"), groups[table]
        if split_optional(tp)[0] is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=_help(field, tp))
        else:  # SUPPRESS: only flags given appear in the namespace ('none' included)
            group.add_argument(flag, dest=name, type=_converter(field, tp),
                               default=argparse.SUPPRESS,
                               help=_help(field, tp), metavar=key.upper())


def config_from_args(args: argparse.Namespace):
    """The :class:`~attnkit.train.config.TrainConfig` of ``--config`` with the flags on top."""
    from attnkit.train.config import TrainConfig, flat_options, load_config_file

    tables = load_config_file(args.config) if args.config else {}
    given = vars(args)
    flags = {name: given[name] for name in flat_options() if name in given}
    return TrainConfig.merge(tables, flags, source=args.config or "")


MIN_VOCAB = 5  # the four special tokens and one piece: a char or word vocabulary is larger


def _model_flag(name: str, value) -> str:
    return f"--{name.replace('_', '-')} {value} ([model] {name})"


def check_memory(cfg) -> None:
    """Refuse, before any data is read, a model whose training cannot fit in the memory
    this process may use (:func:`attnkit._memory.available_memory`), naming the size to
    lower. The vocabulary is not known yet: sentencepiece's ``vocab_size``, or the
    smallest there can be, so the estimate stays a lower bound."""
    from attnkit._memory import available_memory, format_bytes
    from attnkit.models.family import PRESETS
    from attnkit.models.sizes import blame, model_size, training_memory

    budget = available_memory()
    if budget is None:
        return
    _check_generated_corpus(cfg.data, budget)
    vocab = cfg.tokenizer.vocab_size if cfg.tokenizer.kind == "sentencepiece" else MIN_VOCAB
    config = cfg.model.config(vocab, vocab, shared=cfg.tokenizer.shared_vocab)
    need = training_memory(config)
    if need.total <= budget.bytes:
        _check_validation_memory(cfg, config, need.total, budget)
        return
    field = blame(config, PRESETS[cfg.model.preset](vocab, vocab),
                  lambda c: training_memory(c).total)
    what = (_model_flag(field, getattr(config, field)) if field is not None
            else f"--model {cfg.model.preset}")
    size = model_size(config)
    count = "more than 2^63" if size.overflow else f"the {size.parameters:,}"
    about = "more than" if need.overflow else "at least"
    raise MemoryError(
        f"{what}: training needs {about} {format_bytes(need.total)} for {count} "
        f"parameters with their gradients and Adam state, more than the "
        f"{format_bytes(budget.bytes)} this process may use ({budget.source}); lower it")


def _check_validation_memory(cfg, config, training: int, budget) -> None:
    """Refuse a validation search (``beam_size`` × a batch of ``eval_sentences``) that
    cannot fit beside training, before the run starts: it runs at every ``eval_every``
    and at the end, where failing would cost the steps since the last checkpoint."""
    from attnkit._memory import format_bytes
    from attnkit.decode.translator import BATCH_SIZE, output_limit, positions_of
    from attnkit.models.sizes import decoding_memory

    rows = min(BATCH_SIZE, cfg.run.eval_sentences) * cfg.run.beam_size
    steps = output_limit(2, None, positions_of(config))  # the shortest sentence's limit
    need = decoding_memory(config, rows=rows, steps=steps).activations
    if training + need <= budget.bytes:
        return
    raise MemoryError(
        f"--beam-size {cfg.run.beam_size} ([run] beam_size) x {rows // cfg.run.beam_size} "
        f"validation sentences at a time: the search needs about {format_bytes(need)} "
        f"beside the {format_bytes(training)} of training, more than the "
        f"{format_bytes(budget.bytes)} this process may use ({budget.source}); lower it")


#: a generated dates pair held while training: its two strings and their token ids
#: (about 620 bytes measured), with room for the batcher's arrays
DATES_PAIR_BYTES = 1024


def _check_generated_corpus(data, budget) -> None:
    """Refuse a dates corpus larger than memory before generating it (``num_examples =
    10**12`` would generate for days, then fail)."""
    from attnkit._memory import format_bytes

    if data.kind != "dates":
        return
    need = (data.num_examples + data.valid_size) * DATES_PAIR_BYTES
    if need > budget.bytes:
        raise MemoryError(
            f"--num-examples {data.num_examples} and --valid-size {data.valid_size} ([data] "
            f"num_examples, valid_size): the generated pairs need about "
            f"{format_bytes(need)}, more than the {format_bytes(budget.bytes)} this process "
            f"may use ({budget.source}); lower them")


def check_accumulation(cfg, trainer) -> None:
    """``accum_steps`` micro-batches must fit in one epoch, or no step ever completes."""
    batches = trainer.batcher.num_batches(trainer.batcher.epoch)
    if cfg.optim.accum_steps > batches:
        raise ValueError(
            f"--accum-steps {cfg.optim.accum_steps} ([optim] accum_steps) is more than the "
            f"{batches} batch{'es' if batches != 1 else ''} of an epoch (--max-tokens "
            f"{cfg.optim.max_tokens}), so no "
            f"optimizer step could complete; lower --accum-steps to at most {batches}, or "
            f"--max-tokens for more, smaller batches")


def check_outputs(cfg, config_file: str | None) -> None:
    """Refuse a run folder whose writing would overwrite what the run reads: its log
    (``metrics.jsonl``) or its ``checkpoints/`` (rotated: whole folders deleted) being,
    holding or lying in a data file, the data folder or the config file."""
    from pathlib import Path

    from attnkit._io import check_not_an_input
    from attnkit.train.config import section_fields

    data = cfg.data
    inputs = [(f"--{k.replace('_', '-')}", getattr(data, k)) for k in section_fields("data")
              if k.endswith(("_path", "_root")) and isinstance(getattr(data, k), str)]
    inputs.append(("--config", config_file))
    out = Path(cfg.run.out_dir)
    check_not_an_input(out, "--out-dir", inputs)
    check_not_an_input(out / "metrics.jsonl", "--out-dir's metrics.jsonl", inputs)
    check_not_an_input(out / "checkpoints", "--out-dir's checkpoints/", inputs, holds=True)


def _corpus_files(data) -> str:
    """The files the [data] of a run reads, for messages."""
    if data.kind == "multi30k":
        return f"--multi30k-root {data.multi30k_root}"
    if data.kind == "dates":
        return "the generated dates corpus"
    return " and ".join(str(p) for p in (data.train_path, data.train_tgt_path) if p)


def _trainer(cfg):
    """The :class:`~attnkit.train.trainer.Trainer` of ``cfg``, checked to complete steps."""
    from attnkit.data.tokenizer import TokenizerTrainingError
    from attnkit.train.trainer import Trainer

    try:
        trainer = Trainer(cfg)
    except TokenizerTrainingError as e:
        raise ValueError(f"{_corpus_files(cfg.data)}: cannot train the [tokenizer] "
                         f"({cfg.tokenizer.kind}): {e}") from None
    try:
        check_accumulation(cfg, trainer)
    except ValueError:
        trainer.close()
        raise
    return trainer


def run_cli(args: argparse.Namespace) -> int:
    from attnkit._memory import plain_out_of_memory

    cfg = config_from_args(args)
    check_outputs(cfg, args.config)
    check_memory(cfg)
    with plain_out_of_memory("while training"):
        trainer = _trainer(cfg)
        final = trainer.fit()
    if trainer.dist.is_main:
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in final.items()
                 if k.startswith("val_") or k == "step"}
        print(f"done: {shown}; checkpoints in {trainer.ckpt_dir}")
    return 0
