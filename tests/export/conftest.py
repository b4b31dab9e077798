"""Tiny trained runs for the export tests: one per family of model options.

Each run is trained once per test session (a few seconds on 2 cores) and only
when a test asks for it, in float32 on one thread whatever the CPU runs fast
(``bf16 = "auto"`` would pick bf16 where the CPU has it natively), so every
machine trains the same weights up to float32 rounding.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .._data import digits_pairs_file

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-format-2"

#: Model options of each trained run (besides the sizes of :func:`_train`). The golden
#: checkpoint is the post-LN run with one vocabulary, shared embeddings and a tied output.
RUNS = {
    "pre_ln_separate_untied": dict(pre_norm=True, shared_vocab=False, tie_output=False),
    "post_ln_options": dict(pre_norm=False, shared_vocab=True, share_embeddings=False,
                            tie_output=False, positional="learned", activation="gelu",
                            score="dot", bias=False, tokenizer="char"),
    "rope_mqa": dict(pre_norm=True, shared_vocab=True, tie_output=True, positional="rope",
                     num_heads=4, num_kv_heads=1),
}

#: Sources for the comparisons: seen and unseen lengths, an unknown word, a blank line,
#: and one longer than the positional table of the golden run (16 positions).
SENTENCES = ["3 1 4", "1 5 9 2", "6", "5 3 5 8 9", "7 7", "0 0 0", "2 8 1 8 2 8",
             "4 x 4", "", "9 8 7 6 5 4 3 2 1 0", "1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6", "5"]


def _train(root: Path, options: dict) -> Path:
    from attnkit.train.config import TrainConfig
    from attnkit.train.trainer import Trainer

    pairs = digits_pairs_file(root / "pairs.tsv", 2000, max_digits=5)
    base = dict(data="tsv", train_path=str(pairs), tokenizer="word",
                valid_size=20, eval_sentences=4, max_tokens=600, max_sentence_tokens=12,
                num_hiddens=16, num_heads=2, ffn_num_hiddens=32, num_encoder_layers=1,
                num_decoder_layers=1, max_len=32, dropout=0.0, warmup=100, lr_scale=2.0,
                eval_every=0, checkpoint_every=10_000, max_steps=300, progress=False,
                device="cpu", threads=1, bf16=False, out_dir=str(root / "run"))
    Trainer(TrainConfig.from_flat({**base, **options}), log=None).fit()
    return root / "run"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """``trained_run(name)``: the run folder of :data:`RUNS` ``[name]`` ("golden": a copy
    of the golden checkpoint)."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            root = tmp_path_factory.mktemp(name)
            cache[name] = (Path(shutil.copytree(GOLDEN, root / "golden")) if name == "golden"
                           else _train(root, RUNS[name]))
        return cache[name]

    return get
