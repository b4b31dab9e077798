"""The book's PyTorch programs, taken from its markdown at run time.

"Dive into Deep Learning" is written as markdown with code cells for four
frameworks::

    ```{.python .input  n=3}
    %%tab pytorch, mxnet
    ...
    ```

A cell belongs to PyTorch when its ``%%tab`` line names ``pytorch`` or ``all``.
Inside ``%%tab all`` cells (and some shared ones) ``if tab.selected('pytorch'):``
blocks pick each framework's lines; rather than guessing at them textually,
the program defines ``tab`` with ``selected(*names)`` true exactly when
``'pytorch'`` is among the names, so Python itself resolves every such
branch, as d2lbook's own tab selection does when a notebook runs.

Two things change and nothing else: the ``%%tab`` line is dropped, and the
book's ``from d2l import torch as d2l`` becomes the import the caller asks for
(``from attnkit import d2l`` by default). The first cell of each section
(``%load_ext d2lbook.tab`` / ``tab.interact_select``) is notebook machinery
and is left out.

The book's markdown and the Tatoeba pairs are read from the shared corpora
(:func:`attnkit._data_root.data_root`): ``d2l-en`` and ``tatoeba-eng-fra``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..._data_root import data_root

BOOK = data_root() / "d2l-en"
FRA_SOURCE = data_root() / "tatoeba-eng-fra" / "eng-fra.attrib.txt"

BOOK_IMPORT = "from d2l import torch as d2l"
ATTNKIT_IMPORT = "from attnkit import d2l"

# Section number -> markdown file under the book folder.
SECTIONS = {
    "10.5": "chapter_recurrent-modern/machine-translation-and-dataset.md",
    "10.6": "chapter_recurrent-modern/encoder-decoder.md",
    "10.7": "chapter_recurrent-modern/seq2seq.md",
    "10.8": "chapter_recurrent-modern/beam-search.md",
    "11.1": "chapter_attention-mechanisms-and-transformers/queries-keys-values.md",
    "11.2": "chapter_attention-mechanisms-and-transformers/attention-pooling.md",
    "11.3": "chapter_attention-mechanisms-and-transformers/attention-scoring-functions.md",
    "11.4": "chapter_attention-mechanisms-and-transformers/bahdanau-attention.md",
    "11.5": "chapter_attention-mechanisms-and-transformers/multihead-attention.md",
    "11.6": "chapter_attention-mechanisms-and-transformers/"
            "self-attention-and-positional-encoding.md",
    "11.7": "chapter_attention-mechanisms-and-transformers/transformer.md",
}

# What d2lbook provides to a notebook: ``tab.selected(...)`` true for PyTorch.
TAB_PREAMBLE = '''\
class _Tab:
    """d2lbook's tab switch, fixed on the PyTorch tab."""

    @staticmethod
    def selected(*names):
        return "pytorch" in names


tab = _Tab()
'''

# One line per sentence, as the trained sections print it: "go . => ['va', '!'], bleu,1.000".
_TRANSLATION = re.compile(r"^(?P<en>.+) => \[(?P<fr>.*)\], bleu,(?P<bleu>\d+\.\d{3})$", re.M)

_FENCE_OPEN = re.compile(r"^```\{\.python \.input[^}]*\}\s*$")
_TAB_LINE = re.compile(r"^%%tab\s+(.*)$")


@dataclass(frozen=True)
class Cell:
    """One code cell: the line it starts on (1-based, in the markdown), its tabs, its code."""

    line: int
    tabs: tuple[str, ...]
    code: str


def cells(markdown: str) -> list[Cell]:
    """Every ``{.python .input}`` cell of ``markdown``, with the tabs its ``%%tab`` line names."""
    found, lines, i = [], markdown.splitlines(), 0
    while i < len(lines):
        if not _FENCE_OPEN.match(lines[i]):
            i += 1
            continue
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"markdown: the code cell opened on line {start} is never closed")
        i += 1
        tabs: tuple[str, ...] = ()
        if body and (m := _TAB_LINE.match(body[0])):
            tabs = tuple(t.strip() for t in m.group(1).split(","))
            body = body[1:]
        found.append(Cell(start, tabs, "\n".join(body)))
    return found


def pytorch_cells(markdown: str) -> list[Cell]:
    """The cells a reader on the PyTorch tab runs, in order (notebook set-up cells left out)."""
    return [c for c in cells(markdown)
            if ("pytorch" in c.tabs or "all" in c.tabs) and "%load_ext" not in c.code]


def program(section: str, *, d2l_import: str = ATTNKIT_IMPORT, book: Path = BOOK) -> str:
    """The PyTorch program of ``section`` ("11.4"), with the book's import replaced.

    Raises ``ValueError`` when the section has no PyTorch code or never imports
    the book's package (the replacement would silently not happen).
    """
    md = (book / SECTIONS[section]).read_text(encoding="utf-8")
    chosen = pytorch_cells(md)
    if not chosen:
        raise ValueError(f"§{section} ({SECTIONS[section]}) has no PyTorch code cell")
    parts, replaced = [TAB_PREAMBLE], 0
    for cell in chosen:
        code_lines = []
        for ln in cell.code.splitlines():
            if ln.strip() == BOOK_IMPORT:
                ln, replaced = ln.replace(BOOK_IMPORT, d2l_import), replaced + 1
            code_lines.append(ln)
        parts.append(f"# --- {SECTIONS[section]}, cell at line {cell.line}\n"
                     + "\n".join(code_lines) + "\n")
    if replaced == 0:
        raise ValueError(f"§{section}: no line {BOOK_IMPORT!r} to replace")
    return "\n".join(parts)


def write_fra(root: Path, *, source: Path = FRA_SOURCE) -> Path:
    """``root/fra-eng/fra.txt``: the English and French columns of the shared Tatoeba pairs.

    Each English sentence keeps its first French translation only. The shared
    list gives "Go." three translations and puts "I'm home." past the book's
    512 training pairs, so a model trained on it reproduces the book's
    ``va !`` or ``je suis chez moi .`` by chance, and which chance came up
    changed with the last bit of rounding (the CPU's vector width). With one
    translation each, three of the book's four test sentences are training
    pairs with one answer, as in the book's own data.
    """
    out = root / "fra-eng" / "fra.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows, seen = [], set()
    for line in source.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) < 2:
            raise ValueError(f"{source}: expected tab-separated English and French, got {line!r}")
        if cols[0] not in seen:
            seen.add(cols[0])
            rows.append(f"{cols[0]}\t{cols[1]}\n")
    out.write_text("".join(rows), encoding="utf-8")
    return out


def layout(tmp: Path) -> Path:
    """The book's folders under ``tmp``: data in ``tmp/data``, the program runs in ``tmp/work``.

    The book's default data root is ``../data``, so from ``tmp/work`` it finds
    ``tmp/data/fra-eng/fra.txt`` and fetches nothing.
    """
    write_fra(tmp / "data")
    work = tmp / "work"
    work.mkdir(parents=True, exist_ok=True)
    return work


_DRIVER = '''\
import runpy
import random

import torch

random.seed({seed})
torch.manual_seed({seed})
{preamble}
g = runpy.run_path("program.py", run_name="__main__")
{checks}
print("BOOK-PROGRAM-DONE")
'''


def driver(*, seed: int = 0, preamble: str = "", checks: str = "") -> str:
    """The script that runs ``program.py``: seeds, ``preamble``, the program, then ``checks``.

    The program runs through :func:`runpy.run_path`, so ``checks`` see what it
    computed as the dict ``g`` (its globals) and can assert on it.
    """
    return _DRIVER.format(seed=seed, preamble=preamble, checks=checks)


def run(section: str, tmp: Path, *, python: str, d2l_import: str = ATTNKIT_IMPORT,
        preamble: str = "", checks: str = "", seed: int = 0, timeout: float = 900,
        env: dict | None = None, edit=None):
    """Run §``section``'s program in ``tmp/work`` with ``python``; the finished process.

    ``tmp/data/fra-eng/fra.txt`` is laid first (see :func:`layout`); figures go
    to matplotlib's non-interactive Agg backend. ``edit`` (code -> code), when
    given, alters the program first: for tests that the harness sees a failure.
    """
    import os
    import subprocess

    work = layout(tmp)
    code = program(section, d2l_import=d2l_import)
    (work / "program.py").write_text(edit(code) if edit else code, encoding="utf-8")
    (work / "driver.py").write_text(driver(seed=seed, preamble=preamble, checks=checks),
                                    encoding="utf-8")
    full_env = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
    return subprocess.run([python, "driver.py"], cwd=work, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


# For runs of the book's own package only: it refetches ``fra-eng.zip`` unless the
# file's SHA-1 is the published one, and there is no network here. This serves a zip
# of the local ``fra.txt`` as if it were the cached download.
BOOK_PACKAGE_OFFLINE = '''\
import os as _os
import zipfile as _zipfile

from d2l import torch as _book_d2l

with _zipfile.ZipFile("../data/fra-eng.zip", "w") as _z:
    _z.write("../data/fra-eng/fra.txt", "fra-eng/fra.txt")
_book_download = _book_d2l.download


def _cached_download(url, folder="../data", sha1_hash=None):
    cached = _os.path.join(folder, url.split("/")[-1])
    return cached if _os.path.exists(cached) else _book_download(url, folder, sha1_hash)


_book_d2l.download = _cached_download
'''


def translations(stdout: str) -> dict[str, float]:
    """The translations a trained section printed: English sentence -> the book's BLEU (k=2)."""
    return {m["en"]: float(m["bleu"]) for m in _TRANSLATION.finditer(stdout)}
