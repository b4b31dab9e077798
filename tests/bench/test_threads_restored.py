"""Every benchmark suite's entry point leaves torch's thread count as it found it.

Each suite changes the count while it measures (one thread, every core, ``auto``)
through :func:`attnkit.runtime.held_threads`; the caller's setting must be back
when ``run`` returns, or a later row (or the caller's own work) runs on the
suite's last count. Every test starts from a count no suite picks by itself (3).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attnkit.runtime import held_threads, parse_threads

from ..conftest import START_THREADS

MULTI30K = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "multi30k"


def test_held_threads_holds_the_choice_and_restores_the_setting(three_threads):
    with held_threads(1) as t:
        assert t.count == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == START_THREADS
    with pytest.raises(RuntimeError), held_threads(2):
        raise RuntimeError("an error inside the block")
    assert torch.get_num_threads() == START_THREADS
    with held_threads(None) as t:  # None: leave torch's setting alone
        assert t.count == START_THREADS


@pytest.mark.parametrize("value, want", [("auto", "auto"), (2, 2), ("4", 4), (" 3 ", 3)])
def test_one_parser_of_auto_or_a_positive_int(value, want):
    assert parse_threads(value) == want


@pytest.mark.parametrize("value", [0, -1, "0", "two", "", True, 1.5, None])
def test_bad_thread_settings_are_refused_naming_the_setting(value):
    with pytest.raises(ValueError, match=r"--threads must be auto or a positive int; got "):
        parse_threads(value, name="--threads")


def test_transformer_suite_restores_threads(three_threads):
    from attnkit.bench.transformer.measure import run

    r = run(threads=[1, 2], batch_size=2, shortest=2, longest=6, vocab=40, reps=1, warmup=0)
    assert [s.threads for s in r.steps] == [1, 2]  # each row ran on its own count
    assert torch.get_num_threads() == START_THREADS


def test_throughput_suite_restores_threads(three_threads, tmp_path):
    from attnkit.bench.throughput.measure import run

    r = run(max_tokens=200, num_batches=1, rounds=1, data_root=tmp_path, d=16, heads=2,
            ffn=32, layers=1)  # no Multi30k under tmp_path: the built-in date task
    assert r.tokens_per_s["attnkit"] > 0
    assert torch.get_num_threads() == START_THREADS


@pytest.mark.slow
def test_threads_suite_restores_threads(three_threads):
    from attnkit.bench.threads.measure import run

    r = run(rounds=1, max_tokens=200, num_batches=1)
    assert [row["threads_idle"] for row in r.rows][:2] == [1, START_THREADS]
    assert torch.get_num_threads() == START_THREADS


def _tiny_multi30k(root: Path, lines: int = 60) -> Path:
    (root / "raw").mkdir(parents=True)
    for split in ("train", "val"):
        for lang in ("de", "en"):
            text = (MULTI30K / "raw" / f"{split}.{lang}").read_text().splitlines()[:lines]
            (root / "raw" / f"{split}.{lang}").write_text("\n".join(text) + "\n")
    return root


@pytest.mark.slow
@pytest.mark.skipif(not (MULTI30K / "raw" / "val.de").is_file(),
                    reason="needs ../shared/data/multi30k (the decoding suite decodes a "
                           "Multi30k split)")
def test_decoding_suite_restores_threads(three_threads, tmp_path):
    pytest.importorskip("ctranslate2")
    from attnkit.bench.decoding.measure import run
    from attnkit.runs.config import TrainConfig
    from attnkit.train.trainer import Trainer

    root = _tiny_multi30k(tmp_path / "multi30k")
    cfg = TrainConfig.from_flat(dict(
        data="multi30k", multi30k_root=str(root), src_lang="de", tgt_lang="en",
        tokenizer="word", valid_size=4, eval_sentences=2, max_tokens=400,
        num_hiddens=16, num_heads=2, ffn_num_hiddens=32, num_encoder_layers=1,
        num_decoder_layers=1, warmup=2, eval_every=0, checkpoint_every=0, max_steps=2,
        progress=False, device="cpu", threads=1, bf16=False, out_dir=str(tmp_path / "run")))
    with held_threads(1):
        Trainer(cfg, log=None).fit()
    r = run(checkpoint=str(tmp_path / "run"), split="val", threads=(1, 2), beams=(1,),
            limit=4)
    assert {row["threads"] for row in r.rows} == {1, 2}
    assert torch.get_num_threads() == START_THREADS
