"""Checks of plain Python values (sizes, numbers, choices), shared by every layer.

This module imports nothing heavy (no torch), so configuration code and the
command line can validate values without loading PyTorch. One checker per kind
of value, and every message of every kind has one shape::

    {name} must be {what is expected}; got {what was given}

e.g. ``num_heads must be a positive int; got 0``. A value of the wrong kind (a
str where an int belongs) raises :class:`WrongKindError`, which is both a
``TypeError`` and a ``ValueError``; a value of the right kind out of its range
raises ``ValueError``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

__all__ = ["WrongKindError", "check_choice", "check_divisible", "check_finite", "check_int",
           "check_nonnegative_int", "check_positive_int", "check_probability", "closest",
           "parse_positive_or_auto"]

_GIVEN_LIMIT = 80  # characters of a given value's repr that a message shows


class WrongKindError(TypeError, ValueError):
    """A value of the wrong kind: a ``TypeError`` by Python's convention, and a
    ``ValueError`` as the checks of sizes and rates have always raised, so either
    ``except`` clause of a caller catches it."""


def _given(value: Any) -> str:
    """``value`` as a message shows it: its repr, cut short (a pasted file is not echoed)."""
    text = repr(value)
    if len(text) > _GIVEN_LIMIT:
        text = text[:_GIVEN_LIMIT - 3] + "..."
    return text


def _message(name: str, expected: str, value: Any) -> str:
    """The one message shape; a check without a name (a flag's value parsed before
    the command line names it) says ``expected ...``."""
    if not name:
        return f"expected {expected}; got {_given(value)}"
    return f"{name} must be {expected}; got {_given(value)}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(x: float) -> str:
    return format(x, "g")


def check_int(name: str, value: Any, *, minimum: int | None = None,
              maximum: int | None = None, allow_none: bool = False) -> int | None:
    """``value`` if it is an int (not a bool) in ``[minimum, maximum]`` (either bound
    optional), or ``None`` when ``allow_none`` (which the message does not offer: where
    ``None`` is allowed it is the default, as a flag not given).

    >>> check_int("rank", 4, minimum=0, maximum=3)
    Traceback (most recent call last):
    ValueError: rank must be an int in [0, 3]; got 4
    """
    if value is None and allow_none:
        return None
    if minimum in (0, 1) and maximum is None:
        expected = "a non-negative int" if minimum == 0 else "a positive int"
    elif minimum is not None and maximum is not None:
        expected = f"an int in [{minimum}, {maximum}]"
    elif minimum is not None or maximum is not None:
        expected = f"an int >= {minimum}" if maximum is None else f"an int <= {maximum}"
    else:
        expected = "an int"
    if not _is_int(value):
        raise WrongKindError(_message(name, expected, value))
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(_message(name, expected, value))
    return value


def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """``value`` if it is an int ``>= 1`` (or ``None`` when ``allow_none``).

    >>> check_positive_int("num_heads", 0)
    Traceback (most recent call last):
    ValueError: num_heads must be a positive int; got 0
    """
    return check_int(name, value, minimum=1, allow_none=allow_none)


def check_nonnegative_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """``value`` if it is an int ``>= 0`` (or ``None`` when ``allow_none``)."""
    return check_int(name, value, minimum=0, allow_none=allow_none)


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
        raise ValueError(_message(label, "auto or a positive int", value))
    return n


def _interval(minimum, maximum, above, below) -> str:
    """What a number in the given bounds is: ``a finite number > 0``, ``a number in
    [0, 1)``… (``minimum``/``maximum`` inclusive, ``above``/``below`` exclusive)."""
    low = (("[", ">=", minimum) if minimum is not None else
           ("(", ">", above) if above is not None else None)
    high = (("]", "<=", maximum) if maximum is not None else
            (")", "<", below) if below is not None else None)
    if low and high:
        return f"a number in {low[0]}{_number(low[2])}, {_number(high[2])}{high[0]}"
    if low or high:
        bracket, relation, bound = low or high
        return f"a finite number {relation} {_number(bound)}"
    return "a finite number"


def check_finite(name: str, value: Any, *, minimum: float | None = None,
                 maximum: float | None = None, above: float | None = None,
                 below: float | None = None) -> float:
    """``value`` as a float if it is a finite number (not a bool) within the given
    bounds: ``minimum``/``maximum`` inclusive, ``above``/``below`` exclusive.

    >>> check_finite("sigma", 0, above=0)
    Traceback (most recent call last):
    ValueError: sigma must be a finite number > 0; got 0
    """
    expected = _interval(minimum, maximum, above, below)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WrongKindError(_message(name, expected, value))
    number = float(value) if isinstance(value, float) or abs(value) < 2 ** 1023 else math.inf
    if not (math.isfinite(number)
            and (minimum is None or number >= minimum) and (above is None or number > above)
            and (maximum is None or number <= maximum) and (below is None or number < below)):
        raise ValueError(_message(name, expected, value))
    return number


def check_probability(name: str, value: Any) -> float:
    """``value`` as a float if it lies in ``[0, 1)`` (a dropout or smoothing rate)."""
    return check_finite(name, value, minimum=0, below=1)


def closest(word: Any, options: Iterable[Any], *, cutoff: float = 0.6) -> str | None:
    """The option of ``options`` most like ``word`` (``None``: none is close, or
    ``word`` is no str): what a "did you mean" hint names."""
    if not isinstance(word, str):
        return None
    names = [o for o in options if isinstance(o, str)]
    same_letters = [o for o in names if o.casefold() == word.casefold()]
    if same_letters:  # "EXACT" for "exact": the case alone differs
        return same_letters[0]
    close = difflib.get_close_matches(word, names, n=1, cutoff=cutoff)
    return close[0] if close else None


def check_choice(name: str, value: Any, choices: Iterable[Any], *,
                 alternative: str | None = None) -> Any:
    """``value`` if it is one of ``choices``; the message lists them (and the
    ``alternative`` the caller accepts beside them, e.g. ``"an nn.Module"``) and names
    the closest to a misspelt name. A value of another type than every choice (a
    number where names belong) raises :class:`WrongKindError`.

    >>> check_choice("score", "dott", ("dot", "scaled_dot"))
    Traceback (most recent call last):
    ValueError: score must be one of 'dot', 'scaled_dot'; got 'dott' (did you mean 'dot'?)
    """
    choices = tuple(choices)
    if any(value == c and isinstance(value, bool) is isinstance(c, bool) for c in choices):
        return value
    expected = ("one of " if len(choices) > 1 else "") + ", ".join(map(repr, choices))
    message = _message(name, expected + (f" or {alternative}" if alternative else ""), value)
    hint = closest(value, choices)
    message += f" (did you mean {hint!r}?)" if hint else ""
    if choices and not any(isinstance(value, type(c)) for c in choices):
        raise WrongKindError(message)
    raise ValueError(message)


def check_divisible(name: str, value: int, divisor_name: str, divisor: int) -> int:
    """``value`` if ``divisor`` divides it (both checked ints, e.g. positive sizes).

    >>> check_divisible("num_hiddens", 10, "num_heads", 4)
    Traceback (most recent call last):
    ValueError: num_hiddens must be divisible by num_heads = 4; got 10
    """
    if value % divisor:
        raise ValueError(_message(name, f"divisible by {divisor_name} = {divisor}", value))
    return value
