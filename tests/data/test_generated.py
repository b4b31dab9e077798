"""Tests for attnkit.data.generated: the date-normalization task."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

import pytest

from attnkit.data.generated import (
    DATE_FORMATS,
    HELDOUT_FRACTION,
    MAX_DATE,
    MIN_DATE,
    date_alphabet,
    format_date,
    generate_heldout_pairs,
    generate_pairs,
    is_heldout,
)

MONTHS = [dt.date(2000, m, 1).strftime("%B") for m in range(1, 13)]  # C locale names


def _year2(yy: str) -> int:
    """The documented pivot: 50-99 -> 19xx, 00-49 -> 20xx."""
    return 1900 + int(yy) if int(yy) >= 50 else 2000 + int(yy)


def _month(name: str) -> int:
    return [m[:3].lower() for m in MONTHS].index(name[:3].lower()) + 1


# An independent parser per format: the oracle every generated target must match.
_PARSERS = [
    (r"(\d{1,2}) ([A-Z][a-z]+) (\d{4})", lambda d, m, y: (int(y), _month(m), int(d))),
    (r"([A-Z][a-z]+) (\d{1,2}), (\d{4})", lambda m, d, y: (int(y), _month(m), int(d))),
    (r"(\d\d)/(\d\d)/(\d\d)", lambda d, m, y: (_year2(y), int(m), int(d))),
    (
        r"([A-Z][a-z]+day), the (\d{1,2})(?:st|nd|rd|th) of ([A-Z][a-z]+) (\d{4})",
        lambda w, d, m, y: (int(y), _month(m), int(d)),
    ),
    (r"(\d{1,2})\.(\d{1,2})\.(\d{4})", lambda d, m, y: (int(y), int(m), int(d))),
    (r"([a-z]{3}) (\d{1,2}) (\d\d)", lambda m, d, y: (_year2(y), _month(m), int(d))),
    (r"(\d\d)-([A-Z]{3})-(\d{4})", lambda d, m, y: (int(y), _month(m), int(d))),
    (r"(\d{4})(\d\d)(\d\d)", lambda y, m, d: (int(y), int(m), int(d))),
]


def parse(source: str) -> dt.date:
    hits = []
    for pattern, build in _PARSERS:
        m = re.fullmatch(pattern, source)
        if m:
            hits.append(dt.date(*build(*m.groups())))
    assert len(hits) == 1, f"{source!r} matched {len(hits)} formats"
    return hits[0]


def test_formats_of_one_date_match_the_documented_table():
    d = dt.date(1998, 3, 3)
    got = {fmt: format_date(d, fmt) for fmt in DATE_FORMATS}
    assert got == {
        "d_month_yyyy": "3 March 1998",
        "month_d_yyyy": "March 3, 1998",
        "dd/mm/yy": "03/03/98",
        "weekday_ordinal": "Tuesday, the 3rd of March 1998",
        "d.m.yyyy": "3.3.1998",
        "mon_d_yy": "mar 3 98",
        "dd-MON-yyyy": "03-MAR-1998",
        "yyyymmdd": "19980303",
    }


def test_numeric_formats_are_day_first_and_years_pivot_at_50():
    assert format_date(dt.date(1998, 4, 3), "dd/mm/yy") == "03/04/98"
    assert format_date(dt.date(1998, 4, 3), "d.m.yyyy") == "3.4.1998"
    assert format_date(MIN_DATE, "mon_d_yy") == "jan 1 50"
    assert format_date(MAX_DATE, "dd/mm/yy") == "31/12/49"


@pytest.mark.parametrize(
    ("day", "suffix"),
    [(1, "st"), (2, "nd"), (3, "rd"), (4, "th"), (11, "th"), (12, "th"), (13, "th"),
     (21, "st"), (22, "nd"), (23, "rd"), (30, "th"), (31, "st")],
)  # fmt: skip
def test_ordinal_suffixes(day, suffix):
    assert f", the {day}{suffix} of " in format_date(dt.date(2001, 1, day), "weekday_ordinal")


def test_every_pair_parses_back_to_its_target_and_weekdays_are_true():
    pairs = generate_pairs(4000, seed=0) + generate_heldout_pairs(1000, seed=0)
    for src, tgt in pairs:
        assert parse(src).isoformat() == tgt
        m = re.match(r"([A-Z][a-z]+day), ", src)
        if m:
            assert m.group(1) == dt.date.fromisoformat(tgt).strftime("%A")
    # the source determines the target: no string maps to two dates
    seen: dict[str, str] = {}
    for src, tgt in pairs:
        assert seen.setdefault(src, tgt) == tgt


def test_all_formats_and_range_are_covered():
    pairs = generate_pairs(8000, seed=1)
    lengths = [len(s) for s, _ in pairs]
    assert min(lengths) >= 8 and max(lengths) <= 37
    assert all(len(t) == 10 and MIN_DATE.isoformat() <= t <= MAX_DATE.isoformat() for _, t in pairs)
    counts = Counter()
    for fmt in DATE_FORMATS:
        probe = format_date(dt.date(1987, 11, 22), fmt)
        counts[fmt] = sum(parse(s) and _same_shape(s, probe) for s, _ in pairs)
    assert all(800 <= c <= 1200 for c in counts.values()), counts  # ~1000 each
    years = Counter(int(t[:4]) for _, t in pairs)
    assert min(years) < 1955 and max(years) > 2044


def _same_shape(a: str, b: str) -> bool:
    """Whether two sources look like the same format (digits and letters abstracted)."""

    def shape(s: str) -> str:
        s = re.sub(r"\d+", "9", s)
        return re.sub(r"[A-Za-z]+", lambda m: "W" if m.group(0)[0].isupper() else "w", s)

    return shape(a) == shape(b)


def test_generation_is_deterministic():
    assert generate_pairs(500, seed=3) == generate_pairs(500, seed=3)
    assert generate_pairs(500, seed=3) != generate_pairs(500, seed=4)
    only = generate_pairs(200, seed=0, formats=["yyyymmdd"])
    assert all(re.fullmatch(r"\d{8}", s) for s, _ in only)


def test_heldout_is_disjoint_from_train_whatever_the_seeds():
    train = {s for s, _ in generate_pairs(20000, seed=11)}
    held = {s for s, _ in generate_heldout_pairs(3000, seed=11)}
    assert train.isdisjoint(held)
    assert not any(is_heldout(s) for s in train) and all(is_heldout(s) for s in held)
    # the reserved share of the whole source space is close to HELDOUT_FRACTION
    day, n, total = MIN_DATE, 0, 0
    while day <= MAX_DATE:
        for fmt in DATE_FORMATS:
            n += is_heldout(format_date(day, fmt))
            total += 1
        day += dt.timedelta(days=7)
    assert abs(n / total - HELDOUT_FRACTION) < 0.01


def test_alphabet_covers_every_character():
    alphabet = set(date_alphabet())
    for src, tgt in generate_pairs(3000, seed=5) + generate_heldout_pairs(300, seed=5):
        assert set(src) <= alphabet and set(tgt) <= alphabet


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="n must be a non-negative int; got -1"):
        generate_pairs(-1, seed=0)
    with pytest.raises(ValueError, match="split must be one of 'train', 'heldout'; got 'test'"):
        generate_pairs(1, seed=0, split="test")
    with pytest.raises(ValueError, match="formats must be a non-empty subset"):
        generate_pairs(1, seed=0, formats=["iso"])
    with pytest.raises(ValueError, match="date must be in"):
        format_date(dt.date(2050, 1, 1), "yyyymmdd")
    with pytest.raises(ValueError, match="fmt must be one of"):
        format_date(dt.date(2000, 1, 1), "ddmmyy")
