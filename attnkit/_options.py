"""Dataclass fields that describe themselves: help text, allowed values, resume rules.

Every configuration dataclass of attnkit (the model configs, the sections of a
training run) declares its fields with :func:`option`. The metadata is the one
source for three things:

* validation at construction (:func:`validate_options`): type, sign, range and
  choices, with a message naming the field;
* ``--help`` text of the command line (no source parsing);
* what may change when a run is resumed (``resume=True``).

Float fields hold finite numbers unless they say what infinity means
(``inf="no limit"``); such a field accepts ``inf`` (also as the text ``"inf"``)
and :func:`plain_value` writes it as ``"inf"``, since JSON has no infinity.

Torch-free, so the command line can read it without importing PyTorch.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from typing import Any

from ._values import (
    check_choice,
    check_finite,
    check_int,
    check_probability,
    parse_positive_or_auto,
)

__all__ = ["INF_TEXT", "OptionInfo", "describe_type", "option", "option_info",
           "parse_flag_value", "plain_value", "split_optional", "validate_options",
           "validate_value"]

_MISSING = dataclasses.MISSING
INF_TEXT = "inf"  # how a field's infinity is written where numbers must be finite (JSON)


@dataclasses.dataclass(frozen=True)
class OptionInfo:
    """What :func:`option` attaches to a field (``field.metadata["attnkit"]``)."""

    help: str
    # the range, checked by attnkit._values: "positive", "nonnegative" (ints: check_int
    # from 1 or 0), "probability" (check_probability), "positive_float", "nonnegative_float"
    # (check_finite above 0 or from 0), "bool_or_auto", "positive_or_auto"
    check: str | None = None
    choices: tuple[Any, ...] | None = None  # allowed values (or a callable giving them)
    resume: bool = False  # may differ from the stored value when a run is resumed
    flag: str | None = None  # command-line flag name when it is not the field name
    path: bool = False  # a file or folder: in a config file, relative to that file
    inf: str | None = None  # what +inf means for a float field; None: it must be finite
    maximum: int | None = None  # the largest value a number field takes


def option(default: Any = _MISSING, help: str = "", *, check: str | None = None,
           choices: tuple[Any, ...] | Callable[[], tuple[Any, ...]] | None = None,
           resume: bool = False, flag: str | None = None, path: bool = False,
           inf: str | None = None, maximum: int | None = None) -> Any:
    """A dataclass field with its help text and checks (see :class:`OptionInfo`)."""
    info = OptionInfo(help=help, check=check, choices=choices, resume=resume, flag=flag,
                      path=path, inf=inf, maximum=maximum)
    kwargs = {} if default is _MISSING else {"default": default}
    return dataclasses.field(metadata={"attnkit": info}, **kwargs)


def option_info(field: dataclasses.Field) -> OptionInfo:
    """The :class:`OptionInfo` of ``field`` (an empty one for plain fields)."""
    return field.metadata.get("attnkit", OptionInfo(help=""))


def split_optional(tp: Any) -> tuple[Any, bool]:
    """``(base type, None allowed)`` of an annotation such as ``int | None``."""
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else tp), type(None) in args
    return tp, False


def describe_type(tp: Any) -> str:
    base, optional = split_optional(tp)
    name = getattr(base, "__name__", str(base))
    return f"{name} or none" if optional else name


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _type_ok(base: Any, value: Any) -> bool:
    if base is bool:
        return isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is str:
        return isinstance(value, str)
    return True  # richer annotations are checked by the class itself


def _bool_or_auto(label: str, value: Any) -> Any:
    if value == "auto" or isinstance(value, bool):
        return value
    raise ValueError(f"{label} must be true, false or \"auto\"; got {value!r}")


def _positive_or_auto(label: str, value: Any) -> Any:
    return parse_positive_or_auto(label, value)


_AUTO_CHECKS = {"bool_or_auto": _bool_or_auto, "positive_or_auto": _positive_or_auto}
_INT_MINIMA = {"positive": 1, "nonnegative": 0}  # the lower bound each check of an int sets


def parse_flag_value(info: OptionInfo, text: str) -> Any:
    """A command-line string for a field whose check accepts ``"auto"``."""
    low = text.lower()
    if info.check == "bool_or_auto" and low in ("auto", "true", "false"):
        return {"auto": "auto", "true": True, "false": False}[low]
    if info.check == "positive_or_auto":
        return parse_positive_or_auto("", low)
    raise ValueError(f"expected auto, true or false; got {text!r}")


def validate_value(label: str, value: Any, field: dataclasses.Field, tp: Any) -> Any:
    """``value`` checked against ``field``'s type ``tp`` and its :class:`OptionInfo`.

    Returns the value (ints given for float fields become floats). Raises
    ``TypeError``/``ValueError`` whose message starts with ``label``.
    """
    base, optional = split_optional(tp)
    info = option_info(field)
    if value is None:
        if optional:
            return None
        raise TypeError(f"{label} must be {_a(describe_type(tp))}; got None")
    if info.inf and value == INF_TEXT:  # as plain_value wrote it
        value = math.inf
    if not _type_ok(base, value):
        raise TypeError(f"{label} must be {_a(describe_type(tp))}; got {value!r} "
                        f"({type(value).__name__})")
    if info.check in _AUTO_CHECKS:
        return _AUTO_CHECKS[info.check](label, value)
    if info.check == "probability":
        value = check_probability(label, value)
    elif base is int:
        check_int(label, value, minimum=_INT_MINIMA.get(info.check), maximum=info.maximum)
    elif base is float:
        value = _in_range(label, float(value), info)
    if info.choices is not None:
        choices = info.choices() if callable(info.choices) else info.choices
        check_choice(label, value, choices)
    return value


def _in_range(label: str, value: float, info: OptionInfo) -> float:
    """``value`` within the range of a float field (its ``check`` and ``maximum``); NaN
    and infinities refused unless the field says what ``inf`` means (a checkpoint's
    JSON could not hold them, and no range check catches ``nan``)."""
    if info.inf and value == math.inf:
        return value  # beyond every bound, as "no limit" is
    if info.inf and not math.isfinite(value):
        raise ValueError(f"{label} must be a finite number or inf ({info.inf}); got {value}")
    return check_finite(label, value, minimum=0 if info.check == "nonnegative_float" else None,
                        above=0 if info.check == "positive_float" else None,
                        maximum=info.maximum)


def plain_value(value: Any) -> Any:
    """``value`` as JSON can hold it: an infinity (of a field that allows it) as
    :data:`INF_TEXT`, which :func:`validate_value` reads back."""
    return INF_TEXT if isinstance(value, float) and value == math.inf else value


def validate_options(obj: Any, prefix: str | None = None) -> None:
    """Check every field of dataclass instance ``obj`` (messages ``Class.field ...``)."""
    prefix = type(obj).__name__ + "." if prefix is None else prefix
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = validate_value(prefix + f.name, getattr(obj, f.name), f, hints[f.name])
        if value is not getattr(obj, f.name):
            object.__setattr__(obj, f.name, value)  # frozen: normalize int -> float
