"""``attnkit average``: average the weights of the last k checkpoints into a new one."""

from __future__ import annotations

import argparse


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="run folder or its checkpoints/ folder")
    p.add_argument("--last", type=int, default=5, help="how many of the latest checkpoints")
    p.add_argument("--out", required=True, help="folder for the averaged checkpoint")


def run_cli(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .._io import check_not_an_input, ensure_writable_dir
    from .._values import check_positive_int
    from ..decode.translator import load_translator
    from ..runs.lock import RunLock
    from ..runs.retention import save_checkpoint
    from ..runs.run import open_run
    from ._decoding import averaged_last, checkpoint_inputs, fewer_than_asked

    check_positive_int("--last", args.last)
    inputs = checkpoint_inputs(args.checkpoint)  # the averaged step-N lie beside the last
    inputs += [("--checkpoint", str(Path(p).parent)) for _, p in inputs[1:]
               if Path(p).name.startswith("step-")]
    check_not_an_input(args.out, "--out", inputs, holds=True)
    ensure_writable_dir(args.out, "--out")
    with RunLock(args.out, checkpoints="."):  # one writer per (real) folder, as for train
        run = open_run(args.checkpoint)
        paths, weights = averaged_last(run, args.last, "--last")
        tr = load_translator(run, weights=weights)
        step = tr.run.train_state.get("step", 0)
        out = save_checkpoint(Path(args.out), model=tr.model, optimizer=None, scheduler=None,
                              config=tr.run.description, train_state={
                                  "step": step, "averaged": [str(p) for p in paths]},
                              tokenizer=tr.tokenizers)
    print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) -> {out}"
          f"{fewer_than_asked(paths, args.last, '--last')}")
    return 0
