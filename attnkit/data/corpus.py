"""Parallel corpora: reading sentence pairs and reporting what was wrong with them.

Two on-disk layouts are supported:

* **Tab-separated pairs** (:func:`read_tsv_pairs`), the Tatoeba / ManyThings
  ``fra.txt`` layout used by "Dive into Deep Learning"::

      Go.<TAB>Va !<TAB>CC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) ...

  Columns beyond the two that are read (such as the attribution) are ignored.

* **Line-aligned files** (:func:`read_aligned_files`, :func:`load_multi30k`):
  line *i* of the source file translates line *i* of the target file.

Nothing is dropped silently. Every reader returns a :class:`ParallelCorpus` whose
:class:`CorpusReport` counts each kind of problem and keeps the first few
(1-based) line numbers of each, so a user can open the file at the offending line.
Problem kinds:

``blank_line``
    a line that is empty after whitespace normalization (TSV only).
``missing_column``
    a TSV line with fewer tab-separated columns than ``max(src_col, tgt_col) + 1``.
``empty_source`` / ``empty_target``
    one side of the pair is empty after normalization.
``invalid_utf8``
    the line's bytes are not valid UTF-8 (aligned files: in either file).

Whitespace normalization (:func:`normalize_whitespace`) is applied to every kept
sentence: all Unicode space separators (``U+00A0`` no-break space, ``U+202F``
narrow no-break space used before French punctuation, ``U+2009`` thin space, …),
tabs and other control whitespace become an ordinary space; runs of spaces
collapse to one; leading and trailing spaces are stripped; a UTF-8 byte-order
mark at the start of a file is removed. Nothing else is changed: no case folding,
no Unicode normalization, no tokenization (tokenizers own those steps).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .._data_root import data_root_text
from .._io import check_regular_file
from .._values import check_choice, check_finite, check_int, check_nonnegative_int

__all__ = [
    "CorpusReport",
    "ParallelCorpus",
    "MULTI30K_LANGS",
    "MULTI30K_SPLITS",
    "load_multi30k",
    "load_pairs",
    "multi30k_files",
    "multi30k_test_split",
    "read_sentences",
    "read_test_set",
    "run_test_split",
    "normalize_whitespace",
    "read_aligned_files",
    "read_tsv_pairs",
    "split_pairs",
]

#: Splits shipped with Multi30k task 1 (``raw/<split>.<lang>``).
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr")
#: Languages of Multi30k task 1 used here.
MULTI30K_LANGS = ("en", "de", "fr")

# How many line numbers a report keeps per problem kind.
_MAX_EXAMPLES = 5

_SPACE_RUN = re.compile(r"\s+")


def normalize_whitespace(text: str) -> str:
    """Return ``text`` with every kind of whitespace turned into single ASCII spaces.

    Unicode space separators (category ``Zs``: no-break, narrow no-break, thin,
    em spaces, …) and control whitespace (tab, CR, LF, …) become ``" "``; runs
    collapse to one space; the result is stripped. A leading byte-order mark
    (``U+FEFF``) is removed.

    >>> normalize_whitespace("  Va\\u202f!\\t ok\\xa0 ")
    'Va ! ok'
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    # In str patterns \s matches every character for which str.isspace() is true:
    # all of Unicode category Zs plus tab, CR, LF, VT, FF and the separators U+001C-1F.
    return _SPACE_RUN.sub(" ", text).strip()


@dataclass(frozen=True)
class CorpusReport:
    """What a reader saw: lines read, pairs kept, and problems by kind.

    Attributes:
        sources: the file(s) read, as strings.
        lines_read: physical lines examined (for aligned files: line pairs).
        pairs_kept: pairs returned in :attr:`ParallelCorpus.pairs`.
        problems: count per problem kind (see the module docstring); kinds that
            did not occur are absent.
        examples: for each problem kind, the first few 1-based line numbers.
    """

    sources: tuple[str, ...]
    lines_read: int
    pairs_kept: int
    problems: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[int]] = field(default_factory=dict)

    @property
    def num_problems(self) -> int:
        """Total number of lines skipped for any reason."""
        return sum(self.problems.values())

    def summary(self) -> str:
        """A short human-readable account, one problem kind per line."""
        head = (
            f"{' + '.join(self.sources)}: read {self.lines_read} lines, "
            f"kept {self.pairs_kept} pairs, skipped {self.num_problems}"
        )
        lines = [head]
        for kind in sorted(self.problems):
            where = ", ".join(str(n) for n in self.examples.get(kind, []))
            more = " ..." if self.problems[kind] > len(self.examples.get(kind, [])) else ""
            lines.append(f"  {kind}: {self.problems[kind]} (lines {where}{more})")
        return "\n".join(lines)


@dataclass(frozen=True)
class ParallelCorpus:
    """Sentence pairs plus the report of how they were read.

    Attributes:
        pairs: ``(source, target)`` sentences, whitespace-normalized, in file order.
        report: counts of lines read, kept, and skipped by problem kind.
    """

    pairs: list[tuple[str, str]]
    report: CorpusReport

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def sources(self) -> list[str]:
        """The source side of every pair."""
        return [s for s, _ in self.pairs]

    @property
    def targets(self) -> list[str]:
        """The target side of every pair."""
        return [t for _, t in self.pairs]


class _Tally:
    """Mutable problem counter used while reading; frozen into a CorpusReport."""

    def __init__(self) -> None:
        self.problems: dict[str, int] = {}
        self.examples: dict[str, list[int]] = {}

    def add(self, kind: str, line_no: int) -> None:
        self.problems[kind] = self.problems.get(kind, 0) + 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < _MAX_EXAMPLES:
            ex.append(line_no)

    def report(self, sources: Sequence[Path], lines_read: int, kept: int) -> CorpusReport:
        return CorpusReport(
            sources=tuple(str(p) for p in sources),
            lines_read=lines_read,
            pairs_kept=kept,
            problems=dict(self.problems),
            examples={k: list(v) for k, v in self.examples.items()},
        )


def _split_lines(data: bytes) -> list[bytes]:
    """Lines of ``data`` split on ``\\n`` only, a trailing ``\\r`` stripped from each.

    A final newline does not start an extra line; data without one still
    yields its last line. Form feeds, vertical tabs, lone ``\\r`` and Unicode
    line separators stay inside their line, so line *i* of the output is line
    *i* of the input as ``wc -l`` and every aligned corpus count them.
    """
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def _read_lines(path: Path) -> list[bytes]:
    """Raw lines of ``path`` (see :func:`_split_lines`)."""
    return _split_lines(path.read_bytes())


def read_sentences(source: str | Path | bytes, *, name: str) -> list[str]:
    """Every line of a file (or of ``bytes``, e.g. standard input) as text, blank lines kept.

    Lines are split on ``\\n`` only (see :func:`_split_lines`); a UTF-8 byte
    order mark at the start is dropped. ``name`` names the source in messages.

    Raises:
        FileNotFoundError: ``source`` is a path that is not a file.
        ValueError: a line is not valid UTF-8 (the message gives its number).
    """
    data = source if isinstance(source, bytes) else _check_path(source, name).read_bytes()
    out = []
    for line_no, raw in enumerate(_split_lines(data), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}: line {line_no} is not valid UTF-8 (byte "
                             f"{raw[e.start:e.start + 1]!r} at column {e.start + 1})") from None
        out.append(text[1:] if line_no == 1 and text.startswith("\ufeff") else text)
    return out


def read_test_set(src: str | Path, ref: str | Path, *,
                  flags: tuple[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Line-aligned source and reference files for scoring, every line kept (blank too);
    ``flags``: the options that named them, for messages (``("--src", "--ref")``).

    Raises:
        ValueError: the files differ in line count (naming both counts), or a
            line is not valid UTF-8.
    """
    names = [str(p) if flags is None else f"{flag} {p}"
             for p, flag in zip((src, ref), flags or (None, None))]
    srcs, refs = read_sentences(src, name=names[0]), read_sentences(ref, name=names[1])
    if len(srcs) != len(refs):
        raise ValueError(f"line-aligned files differ in length: {src} has {len(srcs)} lines, "
                         f"{ref} has {len(refs)} lines")
    return srcs, refs


def _decode(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _check_path(path: str | Path, name: str) -> Path:
    if not isinstance(path, (str, Path)):
        raise TypeError(f"{name} must be a str or pathlib.Path, got {type(path).__name__}")
    p = Path(path)
    check_regular_file(p, name)  # a directory, a FIFO or a device: said as such
    if not p.is_file():
        raise FileNotFoundError(f"{name}: no such file: {p}")
    return p


def _check_max_pairs(max_pairs: int | None) -> None:
    check_nonnegative_int("max_pairs", max_pairs, allow_none=True)


def read_tsv_pairs(
    path: str | Path,
    *,
    src_col: int = 0,
    tgt_col: int = 1,
    max_pairs: int | None = None,
) -> ParallelCorpus:
    """Read tab-separated sentence pairs (the Tatoeba ``fra.txt`` layout).

    Args:
        path: the file; UTF-8, one pair per line.
        src_col: 0-based column of the source sentence.
        tgt_col: 0-based column of the target sentence (swap the two to reverse
            the translation direction).
        max_pairs: stop after this many pairs have been kept (``None``: read all).
            ``report.lines_read`` then counts only the lines examined.

    Returns:
        A :class:`ParallelCorpus`; see the module docstring for problem kinds.

    Raises:
        ValueError: on negative or equal column indices, or a bad ``max_pairs``.
        FileNotFoundError: if ``path`` is not a file.
    """
    p = _check_path(path, "path")
    for name, col in (("src_col", src_col), ("tgt_col", tgt_col)):
        check_nonnegative_int(name, col)
    if src_col == tgt_col:
        raise ValueError(f"src_col and tgt_col must differ, both are {src_col}")
    _check_max_pairs(max_pairs)
    return _kept_pairs(_tsv_rows(_read_lines(p), src_col, tgt_col), max_pairs, [p])


# A line of a corpus as its reader sees it: the (source, target) texts it holds, or the
# kind of problem that drops it (a key of the report's tally).
_Row = tuple[str, str] | str


def _tsv_rows(lines: list[bytes], src_col: int, tgt_col: int) -> Iterator[_Row]:
    """Each line of a TSV file as a :data:`_Row`."""
    need = max(src_col, tgt_col) + 1
    for line_no, raw in enumerate(lines, start=1):
        text = _decode(raw)
        if text is None:
            yield "invalid_utf8"
            continue
        if line_no == 1 and text.startswith("\ufeff"):
            text = text[1:]
        cols = text.split("\t")
        if len(cols) < need:
            yield "blank_line" if not normalize_whitespace(text) else "missing_column"
        else:
            yield cols[src_col], cols[tgt_col]


def _kept_pairs(rows: Iterable[_Row], max_pairs: int | None, paths: list[Path]
                ) -> ParallelCorpus:
    """The corpus of ``rows`` (line 1 first): each pair whitespace-normalized and kept
    unless a side is empty, each dropped line tallied by its kind, reading stopped once
    ``max_pairs`` are kept."""
    tally, pairs, lines_read = _Tally(), [], 0
    for line_no, row in enumerate(rows, start=1):
        if max_pairs is not None and len(pairs) >= max_pairs:
            break
        lines_read += 1
        if isinstance(row, str):
            tally.add(row, line_no)
            continue
        src, tgt = normalize_whitespace(row[0]), normalize_whitespace(row[1])
        if not src:
            tally.add("empty_source", line_no)
        elif not tgt:
            tally.add("empty_target", line_no)
        else:
            pairs.append((src, tgt))
    return ParallelCorpus(pairs, tally.report(paths, lines_read, len(pairs)))


def read_aligned_files(
    src_path: str | Path,
    tgt_path: str | Path,
    *,
    max_pairs: int | None = None,
) -> ParallelCorpus:
    """Read two line-aligned files: line *i* of ``src_path`` translates line *i* of ``tgt_path``.

    Args:
        src_path: source-language file, UTF-8, one sentence per line.
        tgt_path: target-language file with exactly as many lines.
        max_pairs: stop after this many pairs have been kept (``None``: all).

    Returns:
        A :class:`ParallelCorpus`; ``report.lines_read`` counts line pairs.

    Raises:
        ValueError: if the files have different numbers of lines (the message
            names both files and both counts): misaligned files would pair every
            later sentence with the wrong translation.
        FileNotFoundError: if either path is not a file.
    """
    sp, tp = _check_path(src_path, "src_path"), _check_path(tgt_path, "tgt_path")
    _check_max_pairs(max_pairs)
    src_lines, tgt_lines = _read_lines(sp), _read_lines(tp)
    if len(src_lines) != len(tgt_lines):
        raise ValueError(
            f"line-aligned files differ in length: {sp} has {len(src_lines)} lines, "
            f"{tp} has {len(tgt_lines)} lines"
        )
    decoded = ((_decode(rs), _decode(rt)) for rs, rt in zip(src_lines, tgt_lines, strict=True))
    rows = ("invalid_utf8" if s is None or t is None else (s, t) for s, t in decoded)
    return _kept_pairs(rows, max_pairs, [sp, tp])


def load_multi30k(
    root: str | Path,
    split: str,
    src_lang: str,
    tgt_lang: str,
    *,
    tokenized: bool = False,
) -> ParallelCorpus:
    """Load one split of Multi30k task 1 from a local copy.

    Layout expected under ``root``::

        raw/<split>.<lang>                  original casing, untokenized
        tok/<split>.lc.norm.tok.<lang>      lowercased, normalized, Moses-tokenized

    Args:
        root: the ``multi30k`` folder.
        split: one of :data:`MULTI30K_SPLITS`.
        src_lang: one of :data:`MULTI30K_LANGS`.
        tgt_lang: one of :data:`MULTI30K_LANGS`, different from ``src_lang``.
        tokenized: read the ``tok/`` files instead of ``raw/``.

    Raises:
        ValueError: on an unknown split or language, or ``src_lang == tgt_lang``.
        FileNotFoundError: if a file of the split is missing.
    """
    return read_aligned_files(*multi30k_files(root, split, src_lang, tgt_lang,
                                              tokenized=tokenized))


def multi30k_files(root: str | Path, split: str, src_lang: str, tgt_lang: str, *,
                   tokenized: bool = False) -> tuple[Path, Path]:
    """The source and target files of one Multi30k split (see :func:`load_multi30k`)."""
    check_choice("split", split, MULTI30K_SPLITS)
    for name, lang in (("src_lang", src_lang), ("tgt_lang", tgt_lang)):
        check_choice(name, lang, MULTI30K_LANGS)
    if src_lang == tgt_lang:
        raise ValueError(f"src_lang and tgt_lang must differ, both are {src_lang!r}")
    base = Path(root)
    if tokenized:
        return tuple(base / "tok" / f"{split}.lc.norm.tok.{lang}" for lang in (src_lang,
                                                                               tgt_lang))
    return tuple(base / "raw" / f"{split}.{lang}" for lang in (src_lang, tgt_lang))


def run_test_split(run, split: str, *, needed_by: str = "a Multi30k test split"
                   ) -> tuple[list[str], list[str]]:
    """Sources and references of one Multi30k ``split`` of the data ``run`` (an
    :class:`attnkit.runs.run.Run`) was trained on, in the tokenization it was trained
    on: the lowercased tokenized files for ``tokenized = true``, else the raw ones.
    Every line is kept (:func:`read_test_set`)."""
    return multi30k_test_split(run.data, split, needed_by=needed_by)


def multi30k_test_split(data: dict, split: str, *, needed_by: str
                        ) -> tuple[list[str], list[str]]:
    """:func:`run_test_split` for a ``[data]`` table (a dict, as a run stores it or
    :meth:`attnkit.train.config.TrainConfig.to_dict` gives it); ``needed_by`` names the
    asker in the error.

    Raises:
        ValueError: the data is not Multi30k with a ``multi30k_root``, or the split is
            unknown or its files are unreadable or misaligned.
    """
    if data.get("kind") != "multi30k" or not data.get("multi30k_root"):
        raise ValueError(f"{needed_by} needs a run trained on [data] kind = 'multi30k' (it "
                         "reads one of that corpus's test splits)")
    return read_test_set(*multi30k_files(data["multi30k_root"], split, data.get("src_lang"),
                                         data.get("tgt_lang"),
                                         tokenized=bool(data.get("tokenized"))))


def split_pairs(
    pairs: Sequence[tuple[str, str]],
    *,
    valid_fraction: float,
    seed: int,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Split pairs into ``(train, valid)`` deterministically from ``seed``.

    ``round(len(pairs) * valid_fraction)`` pairs, chosen by a seeded shuffle of
    the indices, go to ``valid``; both parts keep the input order. The same
    ``pairs`` and ``seed`` always give the same split on every platform
    (Python's ``random.Random`` with an int seed is specified to be portable).

    Raises:
        ValueError: if ``valid_fraction`` is not in ``[0, 1]``.
        TypeError: if ``seed`` is not an int.
    """
    check_finite("valid_fraction", valid_fraction, minimum=0, maximum=1)
    check_int("seed", seed)
    n = len(pairs)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    valid_idx = set(order[: round(n * valid_fraction)])
    train = [pairs[i] for i in range(n) if i not in valid_idx]
    valid = [pairs[i] for i in range(n) if i in valid_idx]
    return train, valid


def _read_split(data, split: str) -> ParallelCorpus | None:
    """The training (``split="train"``) or validation corpus a ``[data]`` section names."""
    if data.kind == "multi30k":
        try:
            return load_multi30k(data.multi30k_root, "train" if split == "train" else "val",
                                 data.src_lang, data.tgt_lang, tokenized=data.tokenized)
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"{e}; the Multi30k folder is set by [data] multi30k_root (--multi30k-root; "
                f"the shipped configs read multi30k/ in {data_root_text()})") from None
    path = data.train_path if split == "train" else data.valid_path
    if path is None:
        return None
    if data.kind == "aligned":
        tgt = data.train_tgt_path if split == "train" else data.valid_tgt_path
        return read_aligned_files(path, tgt)
    return read_tsv_pairs(path)


def load_pairs(data, *, seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]], str]:
    """Training and validation pairs of a run's ``[data]`` section, and a report.

    ``data`` is an :class:`attnkit.train.config.DataConfig`. Without a validation
    file, ``valid_size`` pairs are split off the training data (seeded).
    """
    if data.kind == "dates":
        from .generated import generate_heldout_pairs, generate_pairs

        train = generate_pairs(data.num_examples, seed=seed)
        valid = generate_heldout_pairs(data.valid_size, seed=seed + 1)
        return train, valid, f"dates: {len(train)} generated pairs, {len(valid)} held out"
    tr, va = _read_split(data, "train"), _read_split(data, "valid")
    reports = ["train: " + tr.report.summary()]
    flip = data.kind == "tsv" and data.reverse
    train = [(t, s) for s, t in tr.pairs] if flip else list(tr.pairs)
    if va is None:
        fraction = min(0.5, data.valid_size / max(1, len(train)))
        train, valid = split_pairs(train, valid_fraction=fraction, seed=seed)
    else:
        reports.append("valid: " + va.report.summary())
        valid = [(t, s) for s, t in va.pairs] if flip else list(va.pairs)
    if data.max_pairs:
        train = train[: data.max_pairs]
    return train, valid, "\n".join(reports)
