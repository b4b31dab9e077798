"""``export_ctranslate2`` given a path opens the run and verifies its checkpoint once;
given a :class:`~attnkit.runs.run.Run` opened already it verifies nothing again, and
writes the same export."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from attnkit.export.ctranslate2 import EXPORT_INFO, export_ctranslate2
from attnkit.runs.run import open_run

from ..runs._edit import edit_config
from ..runs._helpers import count_verifications

needs_ct2 = pytest.mark.skipif(importlib.util.find_spec("ctranslate2") is None,
                               reason="ctranslate2 is not installed (attnkit[deploy])")


@needs_ct2
@pytest.mark.parametrize("quantization", ["float32", "int8"])
def test_a_path_is_verified_once_and_an_opened_run_not_again(trained_run, tmp_path,
                                                              monkeypatch, quantization):
    golden = trained_run("golden")
    calls = count_verifications(monkeypatch)
    by_path = export_ctranslate2(golden, tmp_path / "by-path", quantization=quantization)
    assert calls == [golden]
    opened = open_run(golden)
    assert calls == [golden, golden]  # opening it verifies it
    by_run = export_ctranslate2(opened, tmp_path / "by-run", quantization=quantization)
    assert calls == [golden, golden]  # the export reads the opened run without a check
    for name in ("model.bin", "config.json", "shared_vocabulary.json", EXPORT_INFO):
        assert (by_run / name).read_bytes() == (by_path / name).read_bytes(), name


@needs_ct2
def test_an_opened_run_that_cannot_be_exported_is_refused_before_anything_is_written(
        trained_run, tmp_path):
    ckpt = shutil.copytree(trained_run("golden"), tmp_path / "alibi")
    edit_config(ckpt, lambda meta: meta["model"].update(positional="alibi"))
    with pytest.raises(ValueError, match="positional='alibi'"):
        export_ctranslate2(open_run(ckpt), tmp_path / "ct2")
    assert not (tmp_path / "ct2").exists()
