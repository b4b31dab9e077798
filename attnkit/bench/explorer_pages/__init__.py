"""How big an ``attnkit explore`` page is and how long headless Chromium takes to show it,
per ``max_tokens`` (the tokens of each sentence a page draws), for one long pair.

The pair: 2,000 source and 2,000 target tokens, every kind captured (encoder self, decoder
self, cross), 2 heads each, random softmax rows. A page is "shown" when its script sets
``data-ready`` (the heatmap drawn, one SVG element per cell). Each size is loaded
``--rounds`` times in a fresh browser context; the median is reported. A load that passes
``--timeout`` seconds is reported as such.

Needs Chromium (``ATTNKIT_CHROMIUM``, default ``/usr/bin/chromium``) and Playwright.
"""

from .._suite import Flag, Suite, size_list

SUITE = Suite(
    package=__name__,
    help="explorer pages: size and headless Chromium's time to draw, per max_tokens",
    flags=(
        Flag("--sizes", "max_tokens values, comma list", type=size_list,
             default=[64, 128, 256, 512]),
        Flag("--tokens", "tokens per sentence of the pair", type=int, default=2000),
        Flag("--heads", "heads of each kind", type=int, default=2),
        Flag("--rounds", "loads of each page", type=int, default=5),
        Flag("--timeout", "seconds per load", type=float, default=60.0),
    ),
)
