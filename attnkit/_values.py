"""Checks of plain Python values (sizes, probabilities, choices), shared by every layer.

This module imports nothing heavy (no torch), so configuration code and the
command line can validate values without loading PyTorch. Each check raises
``ValueError`` (or ``TypeError`` for a value of the wrong kind) with a message
that names the argument, what was expected and what was given.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["check_choice", "check_finite", "check_nonnegative_int", "check_positive_int",
           "check_probability", "parse_positive_or_auto"]


def parse_positive_or_auto(label: str, value: Any) -> int | str:
    """``"auto"`` or a positive int (given as an int or its text), e.g. a threads setting;
    ``ValueError`` naming ``label`` otherwise. The one parser of such settings, for
    config files and command lines alike."""
    if value == "auto":
        return "auto"
    n = value if _is_int(value) else None
    if isinstance(value, str) and value.strip().isdigit():
        n = int(value)
    if n is None or n < 1:
        prefix = f"{label}: " if label else ""
        raise ValueError(f"{prefix}expected auto or a positive int, got {value!r}")
    return n


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """``value`` if it is an int ``>= 1`` (or ``None`` when ``allow_none``).

    >>> check_positive_int("num_heads", 0)
    Traceback (most recent call last):
    ValueError: num_heads must be a positive int; got 0
    """
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


def check_nonnegative_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """``value`` if it is an int ``>= 0`` (or ``None`` when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be an int >= 0; got {value!r}")
    return value


def check_finite(name: str, value: Any, *, minimum: float | None = None) -> float:
    """``value`` as a float if it is a finite number (and ``>= minimum`` when given)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number; got {type(value).__name__}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a finite number; got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return float(value)


def check_probability(name: str, value: Any) -> float:
    """``value`` as a float if it lies in ``[0, 1)`` (a dropout or smoothing rate)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1); got {type(value).__name__}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must lie in [0, 1); got {value}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value
