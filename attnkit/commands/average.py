"""``attnkit average``: average the weights of the last k checkpoints into a new one."""

from __future__ import annotations

import argparse


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="run folder or its checkpoints/ folder")
    p.add_argument("--last", type=int, default=5, help="how many of the latest checkpoints")
    p.add_argument("--out", required=True, help="folder for the averaged checkpoint")


def run_cli(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..train.checkpoint import average_checkpoints, list_checkpoints, save_checkpoint
    from ..translate import load_translator, resolve_checkpoint

    if args.last < 1:
        raise ValueError(f"--last must be >= 1; got {args.last}")
    latest = resolve_checkpoint(args.checkpoint)
    paths = list_checkpoints(latest.parent)[-args.last:]
    weights = average_checkpoints(paths)
    tr = load_translator(latest, weights=weights)
    import json

    config = json.loads((latest / "config.json").read_text())
    step = json.loads((latest / "train_state.json").read_text()).get("step", 0) \
        if (latest / "train_state.json").exists() else 0
    out = save_checkpoint(Path(args.out), model=tr.model, optimizer=None, scheduler=None,
                          config=config, train_state={"step": step, "averaged": [
                              str(p) for p in paths]}, tokenizer=tr.tokenizers)
    print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) -> {out}")
    return 0
