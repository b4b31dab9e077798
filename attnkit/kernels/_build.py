"""Compile a C source shipped with attnkit into a shared library, once per machine.

The library is built with the system's C compiler (``$CC``, else ``cc``) for the
CPU it runs on (``-march=native``; ``$ATTNKIT_CPU_ARCH`` names another), cached
under attnkit's cache directory (``$ATTNKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/attnkit``, else
``~/.cache/attnkit``) in a file named by a hash of the source, the compiler, its
flags and the CPU's feature flags, and loaded with :mod:`ctypes`. A build takes
about a second, the first time only. Where no compiler runs, or
``ATTNKIT_CPU_KERNELS=off`` is set, :func:`load` returns no library and the reason,
and the callers use their PyTorch path.

What may be loaded, and how builds of several processes meet, is :mod:`._cache`'s part:
a cached library is checked against the record of its build before it is loaded; one
process builds while the others wait for it.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import threading
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .._cpu import cache_dir, cpu_flags
from ._cache import build, check, places

__all__ = ["Built", "load", "source_code"]

#: Values of ``ATTNKIT_CPU_KERNELS`` (any case, spaces around ignored; unset or empty
#: is ``auto``): ``auto`` builds and uses the kernels where a compiler runs, the others
#: turn them off. Any other value is reported and turns them off.
AUTO = "auto"
OFF = ("off", "0", "false", "no")
#: Flags every build uses: the reductions over keys may be reassociated (so they
#: vectorize); multiply-adds fused (an ISO ``-std=c99`` turns that off, and the loops
#: slow down; BENCHMARKS.md, "Figures behind choices in the code");
#: no errno, no traps. NaN and infinities keep their meaning.
BASE_FLAGS = ("-O3", "-ffp-contract=fast", "-fPIC", "-shared", "-fno-math-errno",
              "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math")
#: Tried in order; the first that compiles is used. On x86, 512-bit vectors where the
#: CPU has them (gcc prefers 256 by default) and division by reciprocal + Newton step:
#: faster where 512-bit vectors run (BENCHMARKS.md, "Where the time goes", the compiled
#: kernel's bullet), within the tanh error bound the tests hold.
X86_EXTRA = ("-mprefer-vector-width=512", "-mrecip")
COMPILE_TIMEOUT_S = 120


@dataclass(frozen=True)
class Built:
    """A loaded library, or ``None`` and why not; ``detail`` says which, for logs."""

    lib: ctypes.CDLL | None
    detail: str


_LOCK = threading.Lock()
_LOADED: dict[str, Built] = {}


def _new_lock_in_child() -> None:
    """A fork copies a lock held by another thread as held, and no thread of the child
    will release it: the child starts with a free one (and builds or loads for itself)."""
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


#: ``#include "name.h"``: a header of this folder, written in place (see :func:`source_code`)
_LOCAL_INCLUDE = re.compile(rb'^#include "([A-Za-z0-9_]+\.h)"[ \t]*$', re.MULTILINE)


def source_code(source: str) -> bytes:
    """The text of ``attnkit/kernels/<source>``, each ``#include "name.h"`` line replaced by
    the text of ``attnkit/kernels/name.h`` (the headers the kernels share; one level), so a
    kernel is one text, compiled from standard input, whose hash covers its headers too. A
    kernel's Python wrapper reads it when it is imported and builds from that
    (:func:`load`'s ``code``), so the library it loads, perhaps much later, has the
    signature it was written for even if the package on disk has been replaced since (an
    upgrade while a long training runs)."""
    folder = resources.files(__package__)
    return _LOCAL_INCLUDE.sub(lambda m: folder.joinpath(m.group(1).decode()).read_bytes(),
                              folder.joinpath(source).read_bytes())


def load(source: str, code: bytes | None = None,
         signatures: dict[str, list] | None = None) -> Built:
    """The compiled library for ``attnkit/kernels/<source>`` (built from ``code`` when
    given, :func:`source_code`); built on first use, then cached. ``signatures``: each
    function's ``ctypes`` argument types (they return nothing), set once when it loads."""
    with _LOCK:
        if source not in _LOADED:
            built = _load(source, code)
            for name, argtypes in (signatures or {}).items():
                if built.lib is not None:
                    fn = getattr(built.lib, name)
                    fn.argtypes, fn.restype = argtypes, None
            _LOADED[source] = built
        return _LOADED[source]


def _refused(message: str) -> Built:
    """No library because a setting is wrong: said once as a warning, and kept as the reason."""
    warnings.warn(f"{message}; the compiled CPU kernels are not used", stacklevel=4)
    return Built(None, message)


def _arch() -> tuple[str, bool]:
    """``-march`` value and whether it was asked for: ``$ATTNKIT_CPU_ARCH`` (e.g.
    ``haswell`` for AVX2 code on a newer CPU, or a baseline for a cache shared by several
    CPU kinds; spaces around it ignored), else ``native``."""
    arch = os.environ.get("ATTNKIT_CPU_ARCH", "").strip()
    if arch and not re.fullmatch(r"[A-Za-z0-9_.+-]+", arch):
        raise ValueError(f"ATTNKIT_CPU_ARCH must be a -march name such as 'native' or "
                         f"'haswell'; got {arch!r}")
    return arch or "native", bool(arch)


def _flag_sets(arch: str, asked: bool) -> list[tuple[str, ...]]:
    """The flag sets to try in order; without ``-march`` last, unless a ``-march`` was
    asked for (then a compiler that refuses it is reported, not worked around)."""
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    native = (f"-march={arch}",)
    sets = [BASE_FLAGS + native + X86_EXTRA] if x86 else []
    return sets + [BASE_FLAGS + native] + ([] if asked else [BASE_FLAGS])


def _compiler() -> tuple[list[str] | None, str]:
    """``$CC`` split as a shell would (``ccache gcc``, ``gcc -pthread``), else ``cc``; or
    ``None`` and why it cannot be run."""
    raw = os.environ.get("CC", "")
    try:
        argv = shlex.split(raw) or ["cc"]
    except ValueError as e:
        return None, f"CC={raw!r} is not a command line ({e}); set CC to e.g. 'gcc'"
    if shutil.which(argv[0]) is None:
        named = f" (from CC={raw!r})" if raw.strip() else ""
        return None, (f"no C compiler: {argv[0]!r}{named} is not on PATH "
                      "(install one or set CC)")
    return argv, ""


def _load(source: str, code: bytes | None = None) -> Built:
    setting = os.environ.get("ATTNKIT_CPU_KERNELS", "").strip().lower() or AUTO
    if setting in OFF:
        return Built(None, f"turned off by ATTNKIT_CPU_KERNELS={setting}")
    if setting != AUTO:
        raw = os.environ["ATTNKIT_CPU_KERNELS"]
        return _refused(f"ATTNKIT_CPU_KERNELS={raw!r} is not one of {AUTO!r}, "
                        f"{', '.join(map(repr, OFF))} (any case)")
    cc, why = _compiler()
    if cc is None:
        return Built(None, why)
    try:
        arch, asked = _arch()
    except ValueError as e:
        return _refused(str(e))
    code = source_code(source) if code is None else code
    try:
        version = subprocess.run([*cc, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.partition("\n")[0]
    except (OSError, subprocess.SubprocessError) as e:
        return Built(None, f"the C compiler {shlex.join(cc)!r} does not run: {e}")
    folders, note = places(cache_dir() / "kernels")
    error = note
    for flags in _flag_sets(arch, asked):  # the first set that builds (a cached build counts)
        inputs = _inputs(code, cc, version, flags)
        name = f"{Path(source).stem}-{_digest(json.dumps(inputs, sort_keys=True).encode())}.so"
        for folder, may_build in folders:
            lib, error, rebuilt = _built(folder / name, inputs, may_build,
                                         lambda out, flags=flags: _compile(cc, flags, code, out))
            if lib is not None:
                shown = " ".join(f for f in flags if f not in BASE_FLAGS) or "no CPU flags"
                notes = "".join(f"; {n}" for n in (rebuilt, note) if n)
                return Built(lib, f"compiled by {version or shlex.join(cc)} ({shown}), cached "
                                  f"at {folder / name}{notes}")
    if asked:
        return _refused(f"ATTNKIT_CPU_ARCH={arch!r}: {error}; set it to a -march name "
                        f"{shlex.join(cc)} accepts (e.g. native, haswell, x86-64-v3) or unset it")
    return Built(None, error)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _inputs(code: bytes, cc: list[str], version: str, flags: tuple[str, ...]) -> dict:
    """What a build depends on: its file is named by their hash, and its record keeps them."""
    return {"source_sha256": _digest(code), "compiler": cc, "version": version,
            "flags": list(flags), "machine": platform.machine(),
            "cpu_flags_sha256": _digest(" ".join(sorted(cpu_flags())).encode())}


def _built(target: Path, inputs: dict, may_build: bool,
           compile_to) -> tuple[ctypes.CDLL | None, str, str]:
    """``(library, why not, note)``: ``target`` loaded where its record vouches for it,
    else built first (where ``may_build``) and the note says why it was rebuilt. A file
    that fails the check is never loaded."""
    why = check(target, inputs)
    if why is not None:
        if not may_build:
            return None, why or f"no {target}", ""
        error = build(target, inputs, compile_to)
        after = check(target, inputs) if error is None else None
        if error is not None or after is not None:
            return None, error or f"the library just built does not check: {after}", ""
    try:
        return ctypes.CDLL(str(target)), "", f"rebuilt: {why}" if why else ""
    except OSError as e:
        return None, f"the compiled {target} does not load: {e}", ""


def _compile(cc: list[str], flags: tuple[str, ...], code: bytes, out: str) -> str | None:
    """Build ``out`` from ``code``; ``None``, or the reason it could not be built."""
    shown = shlex.join(cc)
    try:
        done = subprocess.run([*cc, *flags, "-x", "c", "-", "-o", out], input=code,
                              capture_output=True, timeout=COMPILE_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as e:
        return f"the C compiler {shown!r} failed to run: {e}"
    if done.returncode == 0:
        return None
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    first = lines[0] if lines else f"exit status {done.returncode}, no message"
    return f"{shown} could not build the kernel: {first}"
