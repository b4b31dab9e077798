"""The attention-step suite times passes on one thread, gives the caller's threads back and
prints the line that names the checkout."""

from __future__ import annotations

import re

import pytest
import torch

from attnkit.bench.attention_step.measure import END, START, run
from attnkit.bench.report import record
from tests.conftest import START_THREADS


def test_one_timed_pass_names_the_label_and_restores_threads(three_threads, tmp_path):
    result = run(label="main", steps=1, warmup=0)
    assert torch.get_num_threads() == START_THREADS
    assert result.median_ms > 0
    assert re.fullmatch(r"main: \d+\.\d\d ms", result.summary()[0])
    command = "attnkit bench attention_step --label main"
    text = record(result, tmp_path / "B.md", command).read_text()
    assert text.count(START) == 1 and text.count(END) == 1
    assert "`attnkit bench attention_step --label main`" in text and "| main | " in text


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0), "--steps: expected at least 1, got 0"),
    (dict(warmup=-1), "--warmup: expected at least 0, got -1"),
])
def test_counts_that_time_nothing_are_refused_naming_the_flag(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        run(**kwargs)
