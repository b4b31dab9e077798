"""The decoding benchmark opens its run once: the checkpoint is verified once per call,
although its test split, attnkit's translator and both CTranslate2 exports are read from
it. Run on the golden checkpoint (a digits model) with a small Multi30k-like folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
        (engine, n) for n in (1, 2) for engine in ("attnkit", "ct2 float32", "ct2 int8")]
    assert r.sentences == 4 and set(r.sizes) == {"float32", "int8"}
    assert all(n > 0 for n in r.sizes.values())
