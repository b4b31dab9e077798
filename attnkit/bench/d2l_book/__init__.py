"""The book's trained sections under the book's own ``d2l`` and under ``attnkit.d2l``.

For each trained section of "Dive into Deep Learning" (§10.7 RNN seq2seq,
§11.4 Bahdanau attention, §11.7 Transformer) the section's PyTorch program is
taken from the book's markdown (:mod:`attnkit.bench.d2l_book.book`) and run as a
program twice per round: once with the book's import (``from d2l import torch as
d2l``, in a Python that has PyPI's ``d2l`` installed) and once with ``from
attnkit import d2l``. Rounds alternate which package goes first; each pair
of runs in a round uses the same seed. What is compared:

- the wall time of ``trainer.fit`` (the same small wrapper around
  ``Trainer.fit`` is installed before either program starts), medians over
  the rounds and the ratio ours / book;
- the book's BLEU (k=2) of the four sentences the section translates, as the
  program itself prints it.

The book's package refetches ``fra-eng.zip`` unless the file's SHA-1 is the
published one; offline, its runs are served a zip of the same local
``fra.txt`` (``book.BOOK_PACKAGE_OFFLINE``). Both runs read the same file, and
the book's markdown, from the shared corpora (``$ATTNKIT_DATA``, else
``../shared/data``).
"""

from .._suite import Flag, Suite

#: the sections that train a model, in the order they run
TRAINED = ("10.7", "11.4", "11.7")


def section_list(text: str) -> list[str]:
    """``"10.7,11.7"`` -> ``["10.7", "11.7"]``: trained sections of the book, each once."""
    sections = [s.strip() for s in text.split(",")]
    unknown = [s for s in sections if s not in TRAINED]
    if unknown:
        raise ValueError(f"expected a comma list of {', '.join(TRAINED)}; got {text!r}")
    return list(dict.fromkeys(sections))


SUITE = Suite(
    package=__name__,
    help="the book's trained sections under the book's d2l and under attnkit.d2l",
    flags=(
        Flag("--book-python", "a Python with PyPI's d2l (1.0.3) installed", required=True,
             metavar="PYTHON"),
        Flag("--rounds", "runs of each package per section", type=int, default=3),
        Flag("--sections", "comma list of " + ", ".join(TRAINED), type=section_list,
             default=list(TRAINED)),
        Flag("--paired", "start every run of a round at once (on a loaded machine: the "
                         "book's and attnkit's runs then share the same load)", switch=True),
        Flag("--threads", "torch threads of every run (OMP_NUM_THREADS); default: torch's "
                          "own choice (one per core)", type=int),
        Flag("--json", "also write every run's figures here (JSON)", metavar="FILE"),
    ),
    convert=lambda a: dict(book_python=a.book_python, rounds=a.rounds,
                             sections=list(a.sections), paired=a.paired, threads=a.threads,
                             json_path=a.json),
)
