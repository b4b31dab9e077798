"""The book's programs as :mod:`attnkit.bench.d2l_book.book` takes them from its markdown:
only PyTorch cells, tabs resolved, the import replaced and nothing else changed."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from attnkit.bench.d2l_book import book as _book
from tests.d2l.test_book import TRAINED, UNTRAINED

needs_book = pytest.mark.skipif(
    not (_book.BOOK.is_dir() and _book.FRA_SOURCE.is_file()),
    reason=f"the book's markdown ({_book.BOOK}) or the Tatoeba pairs ({_book.FRA_SOURCE}) "
           "are absent")


@needs_book
def test_beam_search_section_has_no_code_to_run():
    """§10.8 (beam search) is prose and figures only: there is nothing of it to run."""
    with pytest.raises(ValueError, match="no PyTorch code cell"):
        _book.program("10.8")


@needs_book
@pytest.mark.parametrize("section", UNTRAINED + TRAINED)
def test_programs_change_only_the_import(section):
    book = _book.program(section, d2l_import=_book.BOOK_IMPORT)
    ours = _book.program(section)
    assert "from d2l import" not in ours and ours.count(_book.ATTNKIT_IMPORT) == 1
    assert ours.replace(_book.ATTNKIT_IMPORT, _book.BOOK_IMPORT) == book
    compile(ours, f"§{section}", "exec")


@needs_book
def test_extraction_keeps_pytorch_cells_and_resolves_tabs(tmp_path):
    md = "\n".join([
        "```{.python .input}", "%load_ext d2lbook.tab", "tab.interact_select('mxnet')", "```",
        "text", "```{.python .input  n=2}", "%%tab mxnet", "from d2l import mxnet as d2l",
        "```", "```{.python .input}", "%%tab pytorch", "from d2l import torch as d2l", "```",
        "```{.python .input}", "%%tab mxnet, pytorch", "x = 1", "```",
        "```{.python .input}", "%%tab all", "if tab.selected('mxnet'):", "    x = 'mx'",
        "if tab.selected('jax', 'pytorch'):", "    x = 'pt'", "```",
        "```{.python .input}", "%%tab tensorflow", "x = 'tf'", "```"])
    (tmp_path / "chapter_recurrent-modern").mkdir()
    (tmp_path / _book.SECTIONS["10.6"]).write_text(md)
    code = _book.program("10.6", book=tmp_path, d2l_import="d2l = None")
    assert "mxnet as d2l" not in code and "'tf'" not in code and "%" not in code
    namespace: dict = {}
    exec(compile(code, "program", "exec"), namespace)
    assert namespace["x"] == "pt" and namespace["d2l"] is None


@pytest.mark.parametrize("text, said", [
    ("10.7,12.1", "expected a comma list of 10.7, 11.4, 11.7; got '10.7,12.1'"),
    ("", "expected a comma list of 10.7, 11.4, 11.7; got ''"),
])
def test_a_section_list_flag_says_what_it_expected(capsys, text, said):
    from attnkit.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["bench", "d2l_book", "--book-python", "python", "--sections", text])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"attnkit bench d2l_book: error: argument --sections: {said}")


def test_the_table_gives_medians_ratios_and_each_runs_bleu():
    from attnkit.bench.d2l_book.measure import table

    def runs(*fits):
        return [{"fit": f, "cpu": f / 2, "bleu": {"go .": 1.0, "i lost .": 0.5}} for f in fits]

    text = table({"10.7": {"book": runs(10.0, 12.0, 11.0), "attnkit": runs(5.0, 6.0, 7.0)}})
    assert "| §10.7 | 11.0 | 6.0 | 0.55 | 5.5 / 3.0 | 0.55 | 10.0, 12.0, 11.0 | 5.0, 6.0, 7.0 |" \
        in text
    assert "| §10.7 | i lost . | 0.500, 0.500, 0.500 | 0.500, 0.500, 0.500 |" in text


@pytest.mark.parametrize("python, says", [
    ("/nonexistent/python", "/nonexistent/python does not run (No such file or directory)"),
    (sys.executable, f"{sys.executable} cannot import d2l; expected a Python with PyPI's d2l"),
])
def test_a_book_python_that_cannot_run_the_book_is_refused_naming_the_flag(capsys, python,
                                                                          says):
    from attnkit.cli import main

    if python == sys.executable and importlib.util.find_spec("d2l") is not None:
        pytest.skip("this Python has PyPI's d2l")
    assert main(["bench", "d2l_book", "--book-python", python, "--rounds", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"attnkit bench d2l_book: error: --book-python: {says}"), err
