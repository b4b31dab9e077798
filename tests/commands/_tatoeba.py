"""The Tatoeba sample the command-line tests train on, and the flags of their tiny model."""

import pytest

from .._data import DATA

TATOEBA = DATA / "tatoeba-eng-fra" / "eng-fra.attrib.txt"
needs_data = pytest.mark.skipif(not TATOEBA.exists(), reason=f"shared data absent: {TATOEBA}")

TINY = ["--num-hiddens", "32", "--num-heads", "2", "--ffn-num-hiddens", "48",
        "--num-encoder-layers", "1", "--num-decoder-layers", "1", "--warmup", "10",
        "--eval-every", "0", "--no-progress", "--device", "cpu", "--eval-sentences", "8",
        "--max-sentence-tokens", "30", "--max-tokens", "800",
        "--bf16", "false", "--threads", "1"]  # the same numbers on every CPU kind
