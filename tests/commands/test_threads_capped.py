"""A thread count beyond the machine's cores is capped with a note (torch crashed on
``--threads 100000``): a decoding flag at the cores, a config or the environment at a
few per core; one that is no count is refused naming the flag."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from attnkit.cli import main
from attnkit.runtime import choose_threads

from ._limits import attnkit_command, child_env
from .test_reliability import TINY, pairs_file

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-format-2"
CORES = os.cpu_count() or 1


@pytest.mark.parametrize("count", [str(CORES + 1), "100000", "9" * 30])
def test_translate_caps_threads_beyond_the_cores(count):
    res = subprocess.run(attnkit_command("translate", "--checkpoint", str(GOLDEN), "--threads",
                                         count, "--beam-size", "1", "3 1"),
                         env=child_env(), capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    assert len(res.stdout.decode().splitlines()) == 1
    assert res.stderr.decode().splitlines() == [
        f"attnkit: note: --threads = {count} capped at the {CORES} cores of this machine"]


@pytest.mark.parametrize("value", ["0", "-1", "1e9", "2.5", "many"])
def test_a_thread_count_that_is_no_count_is_refused_naming_the_flag(capsys, value):
    with pytest.raises(SystemExit):
        main(["evaluate", "--checkpoint", str(GOLDEN), "--threads", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"attnkit evaluate: error: argument --threads: expected auto or a "
                       f"positive int; got {value!r}")


def test_a_config_or_environment_count_far_beyond_the_cores_is_capped(monkeypatch):
    assert choose_threads(100000, cores=2).count == 8  # a few per core stay allowed
    assert "capped at 8, 4 per core of the 2" in choose_threads(100000, cores=2).reason
    assert choose_threads(3, cores=2).count == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "100000")
    assert choose_threads("auto", cores=2).count == 8


def test_train_caps_its_threads_and_says_so(tmp_path, capsys):
    argv = ["train", *TINY, "--train-path", str(pairs_file(tmp_path / "p.tsv", 40)),
            "--out-dir", str(tmp_path / "run"), "--max-steps", "1", "--threads", "100000"]
    assert main(argv) == 0
    assert f"threads = 100000 capped at {4 * CORES}, 4 per core" in capsys.readouterr().out
