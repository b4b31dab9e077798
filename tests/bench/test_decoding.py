"""The decoding benchmark opens its run once: the checkpoint is verified once per call,
although its test split, attnkit's translator and both CTranslate2 exports are read from
it. Run on the golden checkpoint (a digits model) with a small Multi30k-like folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from attnkit.runtime import held_threads

from .._data import DATA
from ..conftest import START_THREADS
from ..runs._edit import edit_config
from ..runs._helpers import GOLDEN, count_verifications

SOURCES = ["3 1 4", "1 5 9 2", "6", "5 3 5 8 9", "7 7", "0 0 0"]


def _digits_multi30k(root: Path) -> Path:
    """A Multi30k folder whose test split is digit sentences (the golden run's words)."""
    (root / "raw").mkdir(parents=True)
    for lang in ("de", "en"):
        (root / "raw" / f"test_2016_flickr.{lang}").write_text(
            "".join(f"{s}\n" for s in SOURCES), encoding="utf-8")
    return root


def _multi30k_run(tmp_path: Path) -> Path:
    """``tmp_path/run/checkpoints/step-000400``: the golden checkpoint, said to have been
    trained on :func:`_digits_multi30k`."""
    ckpt = Path(shutil.copytree(GOLDEN, tmp_path / "run" / "checkpoints" / "step-000400"))
    data = {"kind": "multi30k", "multi30k_root": str(_digits_multi30k(tmp_path / "m30k")),
            "src_lang": "de", "tgt_lang": "en", "tokenized": False}
    edit_config(ckpt, lambda meta: meta["train"]["data"].update(data))
    return ckpt


@pytest.mark.parametrize("named", ["run", "run/checkpoints/step-000400", "run/best"])
def test_the_decoding_bench_verifies_its_checkpoint_once(tmp_path, monkeypatch, named):
    pytest.importorskip("ctranslate2")
    from attnkit.bench.decoding.measure import run
    from attnkit.runs import record_best

    ckpt = _multi30k_run(tmp_path)
    record_best(ckpt.parent, {"step": 400, "score": 1.0, "metric": "val_bleu"}, keep_best=1)
    calls = count_verifications(monkeypatch)
    r = run(checkpoint=str(tmp_path / named), threads=(1, 2), beams=(1,), limit=4)
    # one checkpoint, one verification: not one per engine, export or thread count
    assert calls == [ckpt]
    assert [(row["engine"], row["threads"]) for row in r.rows] == [
        (engine, n) for n in (1, 2)
        for engine in ("attnkit", "attnkit int8", "ct2 float32", "ct2 int8")]
    assert r.sentences == 4 and set(r.sizes) == {"float32", "int8"}
    assert all(n > 0 for n in r.sizes.values())


MULTI30K = DATA / "multi30k"


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
    from attnkit.train.config import TrainConfig
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
    # beside a competing process, auto takes the cores it leaves (at least one)
    loaded = run(checkpoint=str(tmp_path / "run"), split="val", threads=(1, "auto"),
                 beams=(1,), limit=4, competing=True, engines=("attnkit", "ct2 float32"))
    assert [(row["engine"], row["threads"]) for row in loaded.rows] == [
        ("attnkit", 1), ("ct2 float32", 1), ("attnkit", "auto"), ("ct2 float32", "auto")]
    auto = [row["count"] for row in loaded.rows if row["threads"] == "auto"]
    assert all(1 <= n <= max(1, (os.cpu_count() or 1) - 1) for n in auto)
    assert loaded.competing and "another CPU-bound process ran" in loaded.markdown("x")
    assert "Each time: the median of 3 rounds, the engines taking turns." in \
        loaded.markdown("x")
    assert all(lo <= row["seconds"] <= hi for row in loaded.rows
               for lo, hi in [row["spread"]])
    with pytest.raises(ValueError, match="rounds must be a positive int; got 0"):
        run(checkpoint=str(tmp_path / "run"), split="val", rounds=0)
    assert torch.get_num_threads() == START_THREADS


def test_the_loaded_table_compares_auto_with_one_thread():
    from attnkit.bench._suite import thread_settings
    from attnkit.bench.decoding.measure import DecodingResult

    assert thread_settings("1,2,auto") == [1, 2, "auto"]
    for bad in ("0,auto", "one", "1,,2", "auto,-1"):
        with pytest.raises(ValueError, match="expected a comma list of positive ints or auto"):
            thread_settings(bad)
    rows = [dict(engine=e, threads=t, count=c, beam=1, seconds=1.0, sent_s=s, tok_s=10 * s,
                 bleu=30.0)
            for e, t, c, s in (("attnkit", 1, 1, 100.0), ("attnkit", 2, 2, 40.0),
                               ("attnkit", "auto", 1, 98.0), ("ct2 float32", 1, 1, 90.0),
                               ("ct2 float32", "auto", 1, 80.0))]
    r = DecodingResult(rows, 100, "Multi30k test", "runs/x", "2026-12-07", {}, True)
    said = r.summary()
    assert ("attnkit threads auto / threads 1 beside a competing process, beam 1: 0.98x "
            "(target >= 0.95): met") in said
    assert ("ct2 float32 threads auto / threads 1 beside a competing process, beam 1: 0.89x "
            "(target >= 0.95): NOT met") in said
    text = r.markdown("attnkit bench decoding --threads 1,2,auto --competing")
    assert "| attnkit | auto (1) | 1 | 1.0 | 98.0 | 980 | 30.00 | 1.00× |" in text
    assert "| attnkit | 2 | 1 | 1.0 | 40.0 | 400 | 30.00 | 1.00× |" in text


def test_decoding_suite_reports_ratios_and_refuses_non_multi30k_runs():
    from pathlib import Path

    from attnkit.bench.decoding.measure import DecodingResult, run

    golden = Path(__file__).resolve().parents[1] / "golden" / "run-format-2"
    with pytest.raises(ValueError, match="needs a run trained on \\[data\\] kind = 'multi30k'"):
        run(checkpoint=str(golden))
    rows = [dict(engine=e, threads=1, beam=b, seconds=1.0, sent_s=s, tok_s=10 * s, bleu=30.0)
            for e, b, s in (("attnkit", 1, 90.0), ("attnkit int8", 1, 100.0),
                            ("ct2 float32", 1, 80.0), ("ct2 int8", 1, 120.0),
                            ("attnkit", 5, 10.0), ("ct2 float32", 5, 40.0))]
    r = DecodingResult(rows, 1000, "Multi30k test", "runs/x", "2026-11-30",
                       {"float32": 29_200_000, "int8": 8_300_000})
    assert r.ratio(1, 1) == 90 / 80 and r.ratio(1, 5) == 0.25
    assert r.ratio(1, 1, "attnkit int8", "ct2 int8") == 100 / 120
    text = r.markdown("attnkit bench decoding --checkpoint runs/x")
    assert "| ct2 int8 | 1 | 1 | 1.0 | 120.0 | 1,200 | 30.00 | 1.33× |" in text
    assert "`model.bin` (float32): 29.2 MB. Exported `model.bin` (int8): 8.3 MB." in text
    said = r.summary()
    assert "attnkit / ct2 float32, threads 1, beam 1: 1.12x (target >= 1.0): met" in said
    assert "attnkit / ct2 float32, threads 1, beam 5: 0.25x (target >= 0.8): NOT met" in said
    assert "attnkit int8 / ct2 int8, threads 1, beam 1: 0.83x (target >= 0.8): met" in said
    assert not any("attnkit int8 / ct2 int8, threads 1, beam 5" in line for line in said)
