"""The training-step suite runs on a tiny batch and records the new command form."""

from __future__ import annotations

import torch

from attnkit.bench.report import record
from attnkit.bench.transformer.measure import END, START, run

from ..conftest import START_THREADS


def test_tiny_run_summarises_and_records_one_row_per_thread_count(tmp_path):
    r = run(threads=[1], batch_size=2, shortest=2, longest=6, vocab=40, reps=1, warmup=0)
    assert len(r.steps) == 1 and r.steps[0].threads == 1 and r.steps[0].ratio > 0
    assert r.summary()[0].startswith("1 threads: attnkit ")
    out = record(r, tmp_path / "B.md", "attnkit bench transformer --threads 1")
    text = out.read_text()
    assert text.count(START) == 1 and text.count(END) == 1
    assert "Command: `attnkit bench transformer --threads 1`" in text
    assert "| torch threads |" in text


def test_transformer_suite_restores_threads(three_threads):
    from attnkit.bench.transformer.measure import run

    r = run(threads=[1, 2], batch_size=2, shortest=2, longest=6, vocab=40, reps=1, warmup=0)
    assert [s.threads for s in r.steps] == [1, 2]  # each row ran on its own count
    assert torch.get_num_threads() == START_THREADS
