"""Helpers for tests beside a real ``attnkit train`` (the ``running_training`` fixture)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from attnkit.runs import list_checkpoints

# a tiny model on a tiny task; fp32 and one thread, whatever the CPU
TINY = ["--data", "tsv", "--tokenizer", "word", "--num-hiddens", "16", "--num-heads", "2",
        "--ffn-num-hiddens", "32", "--num-encoder-layers", "1", "--num-decoder-layers", "1",
        "--warmup", "10", "--eval-every", "0", "--no-progress", "--device", "cpu",
        "--eval-sentences", "4", "--valid-size", "10", "--max-tokens", "400",
        "--max-sentence-tokens", "12", "--bf16", "false", "--threads", "1"]


def train_argv(pairs: Path, out: Path, *more: str) -> list[str]:
    return ["train", *TINY, "--train-path", str(pairs), "--out-dir", str(out), *more]


def wait_for(cond, what: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll ``cond()`` until it holds; fail if ``proc`` ends first or time runs out."""
    end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the training ended before {what}: {proc.stdout.read()}")
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[1])


def newest_step(root: Path) -> int:
    found = list_checkpoints(root)
    return step_of(found[-1]) if found else -1
