"""The book's own code is the test: d2l §10.5–10.7 and §11.1–11.7 under ``from attnkit import d2l``.

Each test takes a section's PyTorch program from the book's markdown at run
time (``tests/d2l/_book.py``), changes only the import, and runs it as a
program in a fresh process, in ``<tmp>/work`` with a local
``<tmp>/data/fra-eng/fra.txt`` (the book's default data root ``../data``).
After the program ends, checks written here look at what it computed (its
globals) and at what it printed: the ``check_shape`` calls passed (the
program ran to its end), attention over padded keys is zero, and the trained
sections translate at least one of the book's four sentences exactly.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.d2l import _book

pytestmark = pytest.mark.skipif(
    not (_book.BOOK.is_dir() and _book.FRA_SOURCE.is_file()),
    reason=f"the book's markdown ({_book.BOOK}) or the Tatoeba pairs ({_book.FRA_SOURCE}) "
           "are absent")

# A figure with these axis labels was drawn (the book's heat maps and plots).
_FIGURE_LABELS = '''
import matplotlib.pyplot as plt

def labelled(xlabel, ylabel):
    return any(ax.get_xlabel() == xlabel and ax.get_ylabel() == ylabel
               for n in plt.get_fignums() for ax in plt.figure(n).axes)
'''

# Weights ``w`` (rows, Nq, Nk) are zero on keys at or past ``lens[row]``, sum to 1 before.
_PADDED_KEYS = '''
import torch

def assert_padded_keys_zero(w, lens):
    w = w.detach().float()
    for row, n in enumerate(lens):
        n = int(n)
        assert torch.all(w[row, ..., n:] == 0), (row, n, w[row])
        assert torch.allclose(w[row, ..., :n].sum(-1), torch.ones(w.shape[1:-1])), (row, w[row])
'''

# The source sentence's valid length, as the program's own data module builds it.
_LAST_SENTENCE_LEN = '''
_, _, src_valid_len, _ = g["data"].build([g["engs"][-1]], [g["fras"][-1]])
valid = int(src_valid_len[0])
assert valid == len(g["engs"][-1].split()) + 1, valid  # the words and <eos>
'''

CHECKS = {
    "10.5": '''
data = g["data"]
src, tgt, valid_len, label = data.arrays
pad, bos = data.src_vocab["<pad>"], data.tgt_vocab["<bos>"]
assert src.shape[1] == data.num_steps and src.shape[0] > data.num_train, src.shape
assert (valid_len == (src != pad).sum(1)).all(), "src_valid_len counts the non-pad tokens"
assert (tgt[:, 0] == bos).all(), "the decoder input starts with <bos>"
assert (tgt[:, 1:] == label[:, :-1]).all(), "the decoder input is the label, one step late"
pads = ["<pad>"] * (data.num_steps - 3)
assert data.src_vocab.to_tokens(g["src"][0].tolist()) == ["hi", ".", "<eos>"] + pads
assert data.tgt_vocab.to_tokens(g["tgt"][0].tolist()) == ["<bos>", "salut", ".", "<eos>"] + pads[1:]
''',
    "10.6": "",
    "11.1": _FIGURE_LABELS + '''
assert tuple(g["attention_weights"].shape) == (1, 1, 10, 10)
assert labelled("Keys", "Queries")
''',
    "11.2": '''
import torch
_, w = g["nadaraya_watson"](g["x_train"], g["y_train"], g["x_val"], g["gaussian"])
assert tuple(w.shape) == (40, 50), w.shape
assert torch.allclose(w.sum(0), torch.ones(50)), "weights over the keys sum to 1 per query"
import matplotlib.pyplot as plt
assert len(plt.get_fignums()) >= 5, plt.get_fignums()
''',
    "11.3": _PADDED_KEYS + _FIGURE_LABELS + '''
assert_padded_keys_zero(g["attention"].attention_weights, g["valid_lens"])
assert labelled("Keys", "Queries")
''',
    "11.5": _PADDED_KEYS + '''
heads = g["attention"].num_heads
assert_padded_keys_zero(g["attention"].attention.attention_weights,
                        torch.repeat_interleave(g["valid_lens"], heads))
''',
    "11.6": _PADDED_KEYS + _FIGURE_LABELS + '''
heads = g["attention"].num_heads
assert_padded_keys_zero(g["attention"].attention.attention_weights,
                        torch.repeat_interleave(g["valid_lens"], heads))
assert labelled("Column (encoding dimension)", "Row (position)")
''',
    "10.7": "",
    "11.4": _PADDED_KEYS + _LAST_SENTENCE_LEN + '''
w = g["attention_weights"]  # (1, 1, steps, num_steps): the decoder's steps over the source
assert_padded_keys_zero(w[0], [valid])
''',
    "11.7": _PADDED_KEYS + _LAST_SENTENCE_LEN + '''
enc = g["enc_attention_weights"]  # (blocks, heads, num_steps, num_steps)
assert_padded_keys_zero(enc.reshape(1, -1, enc.shape[-1]), [valid])
inter = g["dec_inter_attention_weights"]  # (blocks, heads, steps, num_steps)
assert torch.all(inter[..., valid:] == 0), inter
''',
}

UNTRAINED = ["10.5", "10.6", "11.1", "11.2", "11.3", "11.5", "11.6"]
TRAINED = ["10.7", "11.4", "11.7"]



def _run(section, tmp_path, **kw):
    proc = _book.run(section, tmp_path, python=sys.executable, checks=CHECKS[section],
                     env=_book.PINNED_ENV, **kw)
    assert proc.returncode == 0, (
        f"§{section} ({_book.SECTIONS[section]}) failed, exit {proc.returncode}:\n"
        f"{proc.stderr[-6000:]}")
    assert "BOOK-PROGRAM-DONE" in proc.stdout
    return proc


@pytest.mark.parametrize("section", UNTRAINED)
def test_section_runs_with_only_the_import_changed(section, tmp_path):
    _run(section, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("section", TRAINED)
def test_trained_section_translates(section, tmp_path):
    if section == "11.7" and importlib.util.find_spec("pandas") is None:
        pytest.skip("§11.7 imports pandas for its table: pip install -c constraints.txt "
                    "-e '.[d2l]'")
    proc = _run(section, tmp_path)
    scores = _book.translations(proc.stdout)
    assert list(scores) == ["go .", "i lost .", "he's calm .", "i'm home ."], proc.stdout[-2000:]
    assert max(scores.values()) == 1.0, f"no sentence translated exactly: {scores}"


def test_a_failing_check_shape_fails_the_run(tmp_path):
    """The harness sees a wrong shape: §11.3 with one expected shape changed exits non-zero."""
    proc = _book.run("11.3", tmp_path, python=sys.executable,
                     edit=lambda code: _replace_once(code, "(2, 1, 4))", "(2, 1, 5))"))
    assert proc.returncode != 0
    assert "BOOK-PROGRAM-DONE" not in proc.stdout
    assert "check_shape" in proc.stderr, proc.stderr[-3000:]


def _replace_once(code, old, new):
    assert old in code, old
    return code.replace(old, new, 1)


def test_beam_search_section_has_no_code_to_run():
    """§10.8 (beam search) is prose and figures only: there is nothing of it to run."""
    with pytest.raises(ValueError, match="no PyTorch code cell"):
        _book.program("10.8")


@pytest.mark.parametrize("section", UNTRAINED + TRAINED)
def test_programs_change_only_the_import(section):
    book = _book.program(section, d2l_import=_book.BOOK_IMPORT)
    ours = _book.program(section)
    assert "from d2l import" not in ours and ours.count(_book.ATTNKIT_IMPORT) == 1
    assert ours.replace(_book.ATTNKIT_IMPORT, _book.BOOK_IMPORT) == book
    compile(ours, f"§{section}", "exec")


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
