"""Package attributes imported on first use (PEP 562), so light entry points stay light."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import warnings
from collections.abc import Callable

__all__ = ["deprecated_alias", "lazy_attributes"]


def deprecated_alias(func: Callable, old: str, new: str) -> Callable:
    """``func`` under its former name ``old`` (both spelled as users import them, e.g.
    ``"attnkit.choose_backend"``): the same call, with a ``DeprecationWarning`` that
    names ``new``, for the releases until the old name goes."""

    @functools.wraps(func)
    def alias(*args, **kwargs):
        warnings.warn(f"{old} is deprecated: it is now called {new}", DeprecationWarning,
                      stacklevel=2)
        return func(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old.rpartition(".")[2]
    alias.__doc__ = f"Deprecated name of :func:`{new}` (same arguments and result)."
    return alias


def lazy_attributes(package: str, where: dict[str, str], *, submodules: bool = False
                    ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``.

    ``where`` maps a public name to the submodule (relative, e.g. ``".config"``)
    that defines it; a name equal to the submodule's own name (``"masks":
    ".masks"``) is the submodule itself. With ``submodules=True`` any other
    submodule is imported on first access too (``attnkit.nn``). A loaded value
    is cached in the package, so later accesses skip ``__getattr__``.
    """

    def __getattr__(name: str) -> object:
        if name in where:
            module = importlib.import_module(where[name], package)
            value = module if module.__name__.rsplit(".", 1)[-1] == name \
                else getattr(module, name)
        elif submodules and not name.startswith("_") and \
                importlib.util.find_spec(f"{package}.{name}"):
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__
