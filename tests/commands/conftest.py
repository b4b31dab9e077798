"""Runs the command-line tests share."""

import pytest

from attnkit.cli import main

from ._tatoeba import TATOEBA
from ._tatoeba import TINY as TATOEBA_TINY
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


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A 9-step run on the Tatoeba sample, checkpoints every 3 steps (skips without it)."""
    if not TATOEBA.exists():
        pytest.skip(f"shared data absent: {TATOEBA}")
    out = tmp_path_factory.mktemp("tatoeba") / "run"
    code = main(["train", "--data", "tsv", "--train-path", str(TATOEBA), "--tokenizer",
                 "sentencepiece", "--vocab-size", "300", "--max-pairs", "1500",
                 "--valid-size", "50", "--max-steps", "9", "--checkpoint-every", "3",
                 "--out-dir", str(out), *TATOEBA_TINY])
    assert code == 0
    return out


#: A Transformer that learns the dates task in a few hundred steps, the same on every CPU
#: kind (fp32, one thread, seeded)
DATES = ["--data", "dates", "--num-examples", "3000", "--valid-size", "50",
         "--model", "transformer_tiny", "--num-hiddens", "64", "--num-heads", "4",
         "--ffn-num-hiddens", "128", "--num-encoder-layers", "1", "--num-decoder-layers", "1",
         "--warmup", "50", "--dropout", "0", "--eval-every", "0", "--eval-sentences", "4",
         "--max-tokens", "2000", "--no-progress", "--device", "cpu", "--bf16", "false",
         "--threads", "1", "--seed", "0"]


@pytest.fixture(scope="session")
def dates_run(tmp_path_factory):
    """A Transformer trained 300 steps on the built-in dates task (about half a minute)."""
    out = tmp_path_factory.mktemp("dates") / "run"
    assert main(["train", *DATES, "--max-steps", "300", "--out-dir", str(out)]) == 0
    return out
