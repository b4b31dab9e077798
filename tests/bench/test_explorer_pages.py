"""The explorer-pages suite writes one page per size and times a browser drawing it; its
``--sizes`` flag says what it expected."""

from __future__ import annotations

import pytest

from attnkit.cli import main
from tests.viz.conftest import CHROMIUM


def test_each_size_is_one_page_drawn_in_the_browser():
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (set ATTNKIT_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="browser tests need 'playwright'")
    from attnkit.bench.explorer_pages.measure import run

    result = run(sizes=[4, 32], tokens=8, heads=1, rounds=1, timeout=60)
    assert [(r["max_tokens"], r["cells"]) for r in result.rows] == [(4, 16), (32, 64)]
    assert all(r["mb"] > 0 and len(r["loads"]) == 1 for r in result.rows)
    assert all(t is not None and t > 0 for r in result.rows for t in r["loads"])
    table = result.markdown("attnkit bench explorer_pages --sizes 4,32")
    assert "| max_tokens | cells drawn | page | load (median) | loads |" in table
    assert "| 32 | 64 | " in table


@pytest.mark.parametrize("text, said", [
    ("64,x", "expected a comma list of positive ints; got '64,x'"),
    ("64,0", "expected a comma list of positive ints; got '64,0'")])
def test_a_size_list_flag_says_what_it_expected(capsys, text, said):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "explorer_pages", "--sizes", text])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"attnkit bench explorer_pages: error: argument --sizes: {said}")


def test_a_chromium_that_is_not_there_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATTNKIT_CHROMIUM", str(tmp_path / "chromium"))
    assert main(["bench", "explorer_pages", "--sizes", "4", "--tokens", "8"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"attnkit bench explorer_pages: error: {tmp_path / 'chromium'}: no Chromium there "
        "(ATTNKIT_CHROMIUM names it)")
