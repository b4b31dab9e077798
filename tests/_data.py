"""Where the shared corpora are: $ATTNKIT_DATA, else ../shared/data beside the repository."""

from pathlib import Path

import pytest

from attnkit._data_root import data_root

DATA = data_root()
TATOEBA = DATA / "tatoeba-eng-fra" / "eng-fra.attrib.txt"
MULTI30K = DATA / "multi30k"
needs_tatoeba = pytest.mark.skipif(not TATOEBA.is_file(), reason=f"{TATOEBA} absent")
needs_multi30k = pytest.mark.skipif(not MULTI30K.is_dir(), reason=f"{MULTI30K} absent")


def digits_pairs_file(path: Path, n: int = 200, *, max_digits: int = 4) -> Path:
    """A small TSV task at ``path``: digits to their English names ("3 1" -> "three one")."""
    import random

    rng = random.Random(0)
    words = "zero one two three four five six seven eight nine".split()
    lines = []
    for _ in range(n):
        digits = [rng.randrange(10) for _ in range(rng.randint(1, max_digits))]
        lines.append(" ".join(map(str, digits)) + "\t" + " ".join(words[d] for d in digits))
    path.write_text("\n".join(lines) + "\n")
    return path
