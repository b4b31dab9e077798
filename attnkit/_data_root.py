"""Where the shared corpora (``multi30k/`` …) are: one folder, resolved here and only here.

``$ATTNKIT_DATA`` names it; unset or empty, it is :data:`DEFAULT_DATA_ROOT`, the folder
``shared/data`` beside the repository (beside the folder that holds ``attnkit/``), where
the shipped configs look too (``${ATTNKIT_DATA:-../../shared/data}``, relative to
``configs/``). A relative value of the variable is relative to the working folder, as
everywhere else in a shell, wherever it is used.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_VARIABLE", "DEFAULT_DATA_ROOT", "data_root", "data_root_text"]

#: the environment variable that names the folder holding the corpora
DATA_VARIABLE = "ATTNKIT_DATA"
#: the folder holding the corpora when :data:`DATA_VARIABLE` is unset or empty
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"

def data_root(default: Path | None = DEFAULT_DATA_ROOT) -> Path | None:
    """The folder holding the corpora: ``$ATTNKIT_DATA`` (``~`` expanded, made absolute)
    when it is set and not empty, else ``default`` (``None``: for a caller that has its
    own fallback when the variable is unset)."""
    value = os.environ.get(DATA_VARIABLE)
    if value:
        return Path(os.path.abspath(os.path.expanduser(value)))
    return default


def data_root_text() -> str:
    """How messages and help texts name the folder: the variable and its default."""
    return f"${DATA_VARIABLE}, else {DEFAULT_DATA_ROOT}"
