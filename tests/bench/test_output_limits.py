"""The output-limits suite decodes the first validation sentences to their limit, the same
outputs on every run, and names a Multi30k file it cannot read."""

from __future__ import annotations

import re

import pytest
import torch

from attnkit.bench.output_limits.measure import run
from attnkit.cli import main
from tests.conftest import START_THREADS


@pytest.fixture
def multi30k(tmp_path):
    raw = tmp_path / "multi30k" / "raw"
    raw.mkdir(parents=True)
    (raw / "val.de").write_text("ein hund läuft .\nzwei katzen\neine frau sitzt hier .\n")
    (raw / "val.en").write_text("a dog runs .\ntwo cats\na woman sits here .\n")
    return raw.parent


def test_outputs_run_to_the_limit_and_hash_alike(multi30k, three_threads):
    first = run(beam=1, sentences=2, data_root=multi30k)
    assert torch.get_num_threads() == START_THREADS
    again = run(beam=1, sentences=2, data_root=multi30k)
    assert first.sentences == 2 and first.tokens == again.tokens > 0
    assert re.fullmatch(r"[0-9a-f]{12}", first.digest) and first.digest == again.digest
    assert first.summary()[0].startswith("beam 1: cpu ") and first.digest in first.summary()[0]
    assert f"`{first.digest}`" in first.markdown("attnkit bench output_limits --beam 1")


def test_a_missing_validation_file_is_one_line_naming_it(tmp_path, capsys):
    assert main(["bench", "output_limits", "--beam", "1", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"attnkit bench output_limits: error: {tmp_path / 'raw' / 'val.de'}: "
                   "No such file or directory")


@pytest.mark.parametrize("kwargs, message", [
    (dict(beam=0), "--beam: expected at least 1, got 0"),
    (dict(beam=1, sentences=0), "--sentences: expected at least 1, got 0"),
])
def test_sizes_that_decode_nothing_are_refused_naming_the_flag(kwargs, message, multi30k):
    with pytest.raises(ValueError, match=re.escape(message)):
        run(data_root=multi30k, **kwargs)
