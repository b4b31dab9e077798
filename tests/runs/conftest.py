"""Fixtures of the run tests."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .._data import digits_pairs_file
from ._writer import train_argv


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory) -> tuple[Path, Path]:
    """(pairs file, a run trained for 2 steps with a checkpoint at step 2), one per module:
    tests copy the run before they change it."""
    from attnkit.cli import main

    base = tmp_path_factory.mktemp("two-steps")
    pairs = digits_pairs_file(base / "pairs.tsv")
    assert main(train_argv(pairs, base / "run", "--max-steps", "2")) == 0
    return pairs, base / "run"


@pytest.fixture
def running_training(tmp_path):
    """``(pairs file, start)``: ``start(out_dir, *flags)`` launches a real ``attnkit train``
    that keeps going (a time limit guards it) and is killed when the test ends."""
    pairs = digits_pairs_file(tmp_path / "pairs.tsv")
    procs = []

    def start(out: Path, *more: str) -> subprocess.Popen:
        argv = train_argv(pairs, out, "--max-steps", "100000", "--time-limit", "120", *more)
        # at a lower priority than the test's readers, as a training in the background is:
        # on a loaded machine the readers then keep their pace relative to the writer's
        # saves, so whether a read loses its race does not follow the machine's load
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from attnkit.cli import "
                                 "main; sys.exit(main(sys.argv[1:]))", *argv],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=lambda: os.nice(5))
        procs.append(proc)
        return proc

    yield pairs, start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
