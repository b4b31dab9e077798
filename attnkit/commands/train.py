"""``attnkit train``: train a translation model; every option is a TrainConfig field."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing

from ..train import config as config_module
from ..train.config import TrainConfig, load_config_file


def _field_help() -> dict[str, str]:
    """The comment after each field of TrainConfig, used as its ``--help`` text."""
    src = inspect.getsource(config_module.TrainConfig)
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"^\s+(\w+): [^=\n]+= [^#\n]+#(.*)$", src, re.M)}


def _parser_for(tp):
    """(argparse type, allows None) for a field annotation."""
    tp = eval(tp, vars(typing), vars(config_module)) if isinstance(tp, str) else tp
    args = typing.get_args(tp)
    optional = isinstance(tp, types.UnionType) and type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else tp
    return base, optional


def _convert(base, optional):
    def conv(text: str):
        if optional and text.lower() == "none":
            return None
        return base(text)

    conv.__name__ = base.__name__
    return conv


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file; flags given here override it")
    helps = _field_help()
    for f in dataclasses.fields(TrainConfig):
        base, optional = _parser_for(f.type)
        flag = "--" + f.name.replace("_", "-")
        text = f"{helps.get(f.name, '')} (default: {f.default!r})"
        if base is bool:
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                           default=None, help=text)
        else:
            p.add_argument(flag, dest=f.name, type=_convert(base, optional), default=None,
                           help=text + (" — 'none' to unset" if optional else ""),
                           metavar=f.name.upper())


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = load_config_file(args.config) if args.config else {}
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    return TrainConfig.from_dict(values)


def run_cli(args: argparse.Namespace) -> int:
    from ..train.trainer import Trainer

    cfg = config_from_args(args)
    trainer = Trainer(cfg)
    final = trainer.fit()
    if trainer.dist.is_main:
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in final.items()
                 if k.startswith("val_") or k == "step"}
        print(f"done: {shown}; checkpoints in {trainer.ckpt_dir}")
    return 0
