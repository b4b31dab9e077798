"""``attnkit train``: train a translation model from a TOML config and flags.

Every option of :class:`attnkit.runs.config.TrainConfig` is a flag
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
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {getattr(base, '__name__', base)}, got {text!r}") from None

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
    if split_optional(tp)[1]:
        parts.append("— 'none' to unset")
    if info.resume:
        parts.append("[resume]")
    return " ".join(p for p in parts if p).replace("%", "%%")


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    from attnkit._options import split_optional
    from attnkit.runs.config import flat_options

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
    """The :class:`~attnkit.runs.config.TrainConfig` of ``--config`` with the flags on top."""
    from attnkit.runs.config import TrainConfig, flat_options, load_config_file

    tables = load_config_file(args.config) if args.config else {}
    given = vars(args)
    flags = {name: given[name] for name in flat_options() if name in given}
    return TrainConfig.merge(tables, flags, source=args.config or "")


def run_cli(args: argparse.Namespace) -> int:
    from attnkit.train.trainer import Trainer

    cfg = config_from_args(args)
    trainer = Trainer(cfg)
    final = trainer.fit()
    if trainer.dist.is_main:
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in final.items()
                 if k.startswith("val_") or k == "step"}
        print(f"done: {shown}; checkpoints in {trainer.ckpt_dir}")
    return 0
