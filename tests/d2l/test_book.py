"""The book's own code is the test: d2l §10.5–10.7 and §11.1–11.7 under ``from attnkit import d2l``.

Each test takes a section's PyTorch program from the book's markdown at run
time (``attnkit/bench/d2l_book/book.py``), changes only the import, and runs it as a
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

from attnkit.bench.d2l_book import book as _book

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

# The numerics of a trained section, pinned: a tiny model trained for 120 steps ends
# wherever its rounding leads it, so every run must round alike on every machine of the
# fleet (AVX2-only, AVX-512, AVX-512-BF16), idle or busy. One thread (the book's Trainer
# takes OMP_NUM_THREADS for its thread count, not the cores other processes leave
# free); PyTorch's kernels, MKL's matrix products, oneDNN and attnkit's compiled kernel
# all at the AVX2 level that every one of those CPUs has. The book's code is float32
# throughout (no autocast), and the driver seeds Python's and torch's generators.
PINNED_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATTNKIT_CPU_ARCH": "x86-64-v3",
}

UNTRAINED = ["10.5", "10.6", "11.1", "11.2", "11.3", "11.5", "11.6"]
TRAINED = ["10.7", "11.4", "11.7"]



def _run(section, tmp_path, **kw):
    proc = _book.run(section, tmp_path, python=sys.executable, checks=CHECKS[section],
                     env=PINNED_ENV, **kw)
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
