"""How :mod:`attnkit.bench.explorer_pages` measures: the long pair, one page per size and
the browser's loads; :func:`run` returns an :class:`ExplorerPagesResult`.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from ...viz.explorer import AttentionRecord, write_explorer
from ..report import section_markers
from ..toolkit import machine_info

__all__ = ["END", "START", "ExplorerPagesResult", "run"]

START, END = section_markers("explorer_pages")
KINDS = ("encoder_self", "decoder_self", "cross")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@dataclass
class ExplorerPagesResult:
    rows: list[dict]  # max_tokens, cells, megabytes, loads (seconds, None: past the timeout)
    tokens: int
    heads: int
    timeout: float
    machine: dict
    date: str
    markers: ClassVar[tuple[str, str]] = (START, END)

    def _cells(self, row: dict) -> list[str]:
        done = [t for t in row["loads"] if t is not None]
        median = f"{statistics.median(done):.2f} s" if done else f"> {self.timeout:.0f} s"
        loads = ", ".join("timeout" if t is None else f"{t:.2f}" for t in row["loads"])
        return [f"{row['max_tokens']:,}", f"{row['cells']:,}", f"{row['mb']:.2f} MB", median,
                loads]

    def summary(self) -> list[str]:
        return [f"machine: {self.machine['cpu']} ({self.machine['isa']}), "
                f"{self.machine['cores']} cores, load {self.machine['load_avg_1min']}; "
                f"torch {self.machine['torch']}; {self.tokens}-token pair, "
                f"{len(KINDS)} kinds x {self.heads} heads",
                *self._table()]

    def _table(self) -> list[str]:
        return ["| max_tokens | cells drawn | page | load (median) | loads |",
                "|---:|---:|---:|---:|---|",
                *("| " + " | ".join(self._cells(r)) + " |" for r in self.rows)]

    def markdown(self, command: str) -> str:
        return ("## Explorer pages in a browser\n\n"
                f"Command: `{command}` ({self.date}; a {self.tokens}-token pair, "
                f"{len(KINDS)} kinds x {self.heads} heads; headless Chromium)\n\n"
                + "\n".join(self._table()) + "\n")


def long_pair(tokens: int, heads: int) -> tuple[list[AttentionRecord], list[str], list[str]]:
    """Records of every kind for a ``tokens``-long pair (random rows summing to 1)."""
    gen = torch.Generator().manual_seed(0)
    records = [AttentionRecord(kind, 0, (3.0 * torch.randn(heads, tokens, tokens,
                                                           generator=gen)).softmax(-1))
               for kind in KINDS]
    return records, [f"s{i}" for i in range(tokens)], [f"t{i}" for i in range(tokens)]


def load_seconds(browser, path: Path, timeout: float) -> float | None:
    """Seconds from navigation to the page's ready flag (``None``: past ``timeout``)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    start = time.perf_counter()
    try:
        page.goto(path.resolve().as_uri(), timeout=timeout * 1000)
        page.wait_for_function("document.documentElement.dataset.ready === 'true'",
                               timeout=timeout * 1000)
        return time.perf_counter() - start
    except Exception as e:  # playwright's TimeoutError
        if "Timeout" not in type(e).__name__:
            raise
        return None
    finally:
        context.close()


def run(*, sizes: list[int] = (64, 128, 256, 512), tokens: int = 2000, heads: int = 2,
        rounds: int = 5, timeout: float = 60.0) -> ExplorerPagesResult:
    """Write one page per size and load each ``rounds`` times in headless Chromium."""
    chromium = os.environ.get("ATTNKIT_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).is_file():
        raise FileNotFoundError(errno.ENOENT, "no Chromium there (ATTNKIT_CHROMIUM names it)",
                                chromium)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise OSError("explorer_pages needs the 'playwright' package") from None
    machine = machine_info()
    records, src, tgt = long_pair(tokens, heads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
        for n in sizes:
            path = write_explorer(Path(tmp) / f"page-{n}.html", records, src, tgt,
                                  max_tokens=n)
            rows.append({"max_tokens": n, "cells": min(n, tokens) ** 2,
                         "mb": path.stat().st_size / 1e6,
                         "loads": [load_seconds(browser, path, timeout) for _ in range(rounds)]})
        browser.close()
    return ExplorerPagesResult(rows, tokens, heads, timeout, machine, _dt.date.today().isoformat())
