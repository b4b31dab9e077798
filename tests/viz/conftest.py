"""Fixtures for the viz tests: one headless Chromium per test module, driven by Playwright.

Browser tests skip (with the reason) when Chromium or Playwright is not installed; the
browser is the system one (``ATTNKIT_CHROMIUM``, default ``/usr/bin/chromium``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("ATTNKIT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium shared by the tests of one module."""
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (set ATTNKIT_CHROMIUM)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="browser tests need the 'playwright' package"
    )
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class PageLog:
    """What a page reported while a test ran."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def open_page(browser):
    """``open_page(path) -> (page, log)``: load a local HTML file from ``file://``.

    Every page is checked on teardown: no console errors, no uncaught exceptions and
    no request other than the file itself.
    """
    opened = []

    def _open(path: Path):
        context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
        page = context.new_page()
        log = PageLog()
        page.on(
            "console",
            lambda msg: log.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        page.on("pageerror", lambda exc: log.page_errors.append(str(exc)))
        page.on("request", lambda req: log.requests.append(req.url))
        url = path.resolve().as_uri()
        page.goto(url)
        page.wait_for_function("document.documentElement.dataset.ready === 'true'")
        opened.append((context, log, url))
        return page, log

    yield _open
    for context, log, url in opened:
        context.close()
        assert log.console_errors == []
        assert log.page_errors == []
        assert log.requests == [url]
