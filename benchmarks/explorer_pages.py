"""How big an ``attnkit explore`` page is and how long headless Chromium takes to show it,
per ``max_tokens`` (the tokens of each sentence a page draws), for one long pair.

The pair: 2,000 source and 2,000 target tokens, every kind captured (encoder self, decoder
self, cross), 2 heads each, random softmax rows. A page is "shown" when its script sets
``data-ready`` (the heatmap drawn, one SVG element per cell). Each size is loaded
``--rounds`` times in a fresh browser context; the median is reported. A load that passes
``--timeout`` seconds is reported as such.

    python benchmarks/explorer_pages.py --sizes 64,128,256,512 --rounds 5

Needs Chromium (``ATTNKIT_CHROMIUM``, default ``/usr/bin/chromium``) and Playwright.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from attnkit.runtime import cpu_model
from attnkit.viz.explorer import AttentionRecord, write_explorer

KINDS = ("encoder_self", "decoder_self", "cross")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


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


def main() -> None:
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="64,128,256,512", help="max_tokens values, comma list")
    p.add_argument("--tokens", type=int, default=2000, help="tokens per sentence of the pair")
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per load")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    records, src, tgt = long_pair(args.tokens, args.heads)
    chromium = os.environ.get("ATTNKIT_CHROMIUM", "/usr/bin/chromium")
    print(f"machine: {cpu_model()} ({torch.backends.cpu.get_cpu_capability()}), "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; torch {torch.__version__}; "
          f"{args.tokens}-token pair, {len(KINDS)} kinds x {args.heads} heads")
    print("| max_tokens | cells drawn | page | load (median) | loads |")
    print("|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
        for n in sizes:
            path = write_explorer(Path(tmp) / f"page-{n}.html", records, src, tgt,
                                  max_tokens=n)
            times = [load_seconds(browser, path, args.timeout) for _ in range(args.rounds)]
            done = [t for t in times if t is not None]
            median = f"{statistics.median(done):.2f} s" if done else f"> {args.timeout:.0f} s"
            print(f"| {n:,} | {min(n, args.tokens) ** 2:,} | "
                  f"{path.stat().st_size / 1e6:.2f} MB | {median} | "
                  + ", ".join("timeout" if t is None else f"{t:.2f}" for t in times) + " |")
        browser.close()


if __name__ == "__main__":
    main()
