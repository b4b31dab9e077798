"""Runs the command-line tests share."""

import pytest

from attnkit.cli import main

from .test_reliability import TINY, pairs_file

_MODEL_FLAGS = {"--num-hiddens", "--num-heads", "--ffn-num-hiddens", "--num-encoder-layers",
                "--num-decoder-layers"}


@pytest.fixture(scope="session")
def bahdanau_run(tmp_path_factory):
    """A one-step Bahdanau run: an RNN, whose outputs no positional table caps."""
    tmp = tmp_path_factory.mktemp("bahdanau")
    data = [a for i, a in enumerate(TINY) if a not in _MODEL_FLAGS
            and TINY[i - 1] not in _MODEL_FLAGS]  # TINY's data and run flags
    argv = ["train", *data, "--model", "bahdanau_small", "--embed-size", "8",
            "--num-hiddens", "8", "--num-encoder-layers", "1", "--num-decoder-layers", "1",
            "--train-path", str(pairs_file(tmp / "p.tsv", 40)), "--out-dir", str(tmp / "run"),
            "--max-steps", "1", "--bf16", "false", "--threads", "1"]
    assert main(argv) == 0
    return tmp / "run"
