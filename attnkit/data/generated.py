"""A built-in translation task that needs no files: dates in many spellings → ISO 8601.

Every source is one calendar date between 1 January 1950 and 31 December 2049
written in one of the formats below; the target is always ``YYYY-MM-DD``::

    format name          example source                      target
    d_month_yyyy         3 March 1998                        1998-03-03
    month_d_yyyy         March 3, 1998                       1998-03-03
    dd/mm/yy             03/03/98                            1998-03-03
    weekday_ordinal      Tuesday, the 3rd of March 1998      1998-03-03
    d.m.yyyy             3.3.1998                            1998-03-03
    mon_d_yy             mar 3 98                            1998-03-03
    dd-MON-yyyy          03-MAR-1998                         1998-03-03
    yyyymmdd             19980303                            1998-03-03

Conventions that remove ambiguity (one per format, never mixed):

* Numeric day/month formats (``dd/mm/yy``, ``d.m.yyyy``) are **day first**, as in
  most of Europe: ``03/04/98`` is 3 April 1998, never 4 March.
* Two-digit years use the pivot 50: ``50``–``99`` → 1950–1999 and ``00``–``49``
  → 2000–2049, which is why the date range is exactly those hundred years.
* Weekday names are the true weekday of the date (so they are redundant: the
  model may ignore them).

The task is character level on both sides (see :func:`date_alphabet`), has
sources of 8–37 characters and targets of 10, and shows clean alignments in
attention maps: target year digits attend to the year, month digits to the month
name or number, day digits to the day.

Train / held-out split: a source string belongs to the held-out set when the
SHA-256 of its text falls in the top :data:`HELDOUT_FRACTION` of the hash range.
The split is a property of the text itself, so :func:`generate_pairs` with
``split="train"`` can never produce a source that ``split="heldout"`` produces,
whatever the seeds, and vice versa.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import random

from .._values import check_choice, check_nonnegative_int

__all__ = [
    "DATE_FORMATS",
    "HELDOUT_FRACTION",
    "MAX_DATE",
    "MIN_DATE",
    "date_alphabet",
    "format_date",
    "generate_heldout_pairs",
    "generate_pairs",
    "is_heldout",
]

#: First and last date the task uses (two-digit years are unambiguous in this range).
MIN_DATE = _dt.date(1950, 1, 1)
MAX_DATE = _dt.date(2049, 12, 31)

#: Fraction of all possible source strings reserved for the held-out split.
HELDOUT_FRACTION = 0.1

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


#: Names of the source formats, in a fixed order.
DATE_FORMATS = (
    "d_month_yyyy",
    "month_d_yyyy",
    "dd/mm/yy",
    "weekday_ordinal",
    "d.m.yyyy",
    "mon_d_yy",
    "dd-MON-yyyy",
    "yyyymmdd",
)


def _ordinal(day: int) -> str:
    """1 → '1st', 2 → '2nd', 3 → '3rd', 11 → '11th', 22 → '22nd'."""
    if 11 <= day % 100 <= 13:
        return f"{day}th"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _render(d: _dt.date, fmt: str) -> str:
    month, mon = _MONTHS[d.month - 1], _MONTHS[d.month - 1][:3]
    yy = d.year % 100
    if fmt == "d_month_yyyy":
        return f"{d.day} {month} {d.year}"
    if fmt == "month_d_yyyy":
        return f"{month} {d.day}, {d.year}"
    if fmt == "dd/mm/yy":
        return f"{d.day:02d}/{d.month:02d}/{yy:02d}"
    if fmt == "weekday_ordinal":
        return f"{_WEEKDAYS[d.weekday()]}, the {_ordinal(d.day)} of {month} {d.year}"
    if fmt == "d.m.yyyy":
        return f"{d.day}.{d.month}.{d.year}"
    if fmt == "mon_d_yy":
        return f"{mon.lower()} {d.day} {yy:02d}"
    if fmt == "dd-MON-yyyy":
        return f"{d.day:02d}-{mon.upper()}-{d.year}"
    if fmt == "yyyymmdd":
        return f"{d.year:04d}{d.month:02d}{d.day:02d}"
    raise AssertionError(f"no rendering of {fmt!r}")  # callers pass DATE_FORMATS only


def format_date(date: _dt.date, fmt: str) -> str:
    """Write ``date`` in the source format ``fmt`` (one of :data:`DATE_FORMATS`).

    Raises:
        ValueError: if ``fmt`` is unknown or ``date`` is outside
            [:data:`MIN_DATE`, :data:`MAX_DATE`].
    """
    if not isinstance(date, _dt.date):
        raise TypeError(f"date must be a datetime.date, got {type(date).__name__}")
    if not MIN_DATE <= date <= MAX_DATE:
        raise ValueError(f"date must be in [{MIN_DATE}, {MAX_DATE}], got {date}")
    return _render(date, check_choice("fmt", fmt, DATE_FORMATS))


def is_heldout(source: str) -> bool:
    """Whether the source string ``source`` belongs to the held-out split."""
    h = int.from_bytes(hashlib.sha256(source.encode("utf-8")).digest()[:8], "big")
    return h < HELDOUT_FRACTION * 2**64


def date_alphabet() -> list[str]:
    """Every character any source or target of the task can contain, sorted.

    Build a :class:`~attnkit.data.tokenizer.CharTokenizer` from this list (not
    from a sample of pairs) so that no held-out character maps to ``<unk>``.
    """
    chars = set("0123456789 ,./-")
    for name in _MONTHS + _WEEKDAYS:
        chars.update(name)
        chars.update(name.lower())
        chars.update(name.upper())
    chars.update("stndrhof")  # ordinal suffixes and "the", "of"
    return sorted(chars)


def _check_formats(formats: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    if formats is None:
        return DATE_FORMATS
    formats = tuple(formats)
    bad = [f for f in formats if f not in DATE_FORMATS]
    if not formats or bad:
        raise ValueError(f"formats must be a non-empty subset of {DATE_FORMATS}, got {formats}")
    return formats


def generate_pairs(
    n: int,
    *,
    seed: int,
    split: str = "train",
    formats: tuple[str, ...] | list[str] | None = None,
) -> list[tuple[str, str]]:
    """Draw ``n`` ``(source, target)`` pairs of the date task.

    Dates are uniform over [:data:`MIN_DATE`, :data:`MAX_DATE`] and formats
    uniform over ``formats``; draws whose source falls in the other split are
    rejected and redrawn. Pairs may repeat (the space holds ~290,000 sources).

    Args:
        n: number of pairs.
        seed: the same seed gives the same pairs on every platform.
        split: ``"train"`` or ``"heldout"`` (disjoint by :func:`is_heldout`).
        formats: restrict to some of :data:`DATE_FORMATS` (default: all).

    Returns:
        A list of ``(source, target)`` pairs, targets in ``YYYY-MM-DD``.

    Raises:
        ValueError: on a negative ``n``, an unknown ``split`` or format.
    """
    check_nonnegative_int("n", n)
    check_choice("split", split, ("train", "heldout"))
    fmts = _check_formats(formats)
    want_heldout = split == "heldout"
    rng = random.Random(seed)
    span = (MAX_DATE - MIN_DATE).days
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        d = MIN_DATE + _dt.timedelta(days=rng.randint(0, span))
        src = _render(d, fmts[rng.randrange(len(fmts))])
        if is_heldout(src) == want_heldout:
            pairs.append((src, d.isoformat()))
    return pairs


def generate_heldout_pairs(
    n: int, *, seed: int, formats: tuple[str, ...] | list[str] | None = None
) -> list[tuple[str, str]]:
    """``generate_pairs(n, seed=seed, split="heldout")``: pairs never seen in training."""
    return generate_pairs(n, seed=seed, split="heldout", formats=formats)
