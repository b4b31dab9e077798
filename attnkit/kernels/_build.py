"""Compile a C source shipped with attnkit into a shared library, once per machine.

The library is built with the system's C compiler (``$CC``, else ``cc``) for the
CPU it runs on (``-march=native``; ``$ATTNKIT_CPU_ARCH`` names another), cached
under attnkit's cache directory (``$ATTNKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/attnkit``, else
``~/.cache/attnkit``) in a file named by a hash of the source, the compiler, its
flags and the CPU's feature flags, and loaded with :mod:`ctypes`. A build takes
about a second, the first time only. Where no compiler runs, or
``ATTNKIT_CPU_KERNELS=off`` is set, :func:`load` returns no library and the reason,
and the callers use their PyTorch path.

Several processes may build the same library at once: each compiles to its own
temporary file and renames it into place (atomic), so a reader never sees a
half-written file.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .._cpu import cache_dir, cpu_flags

__all__ = ["Built", "load"]

#: Value of ``ATTNKIT_CPU_KERNELS`` that turns the compiled kernels off.
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


def load(source: str) -> Built:
    """The compiled library for ``attnkit/kernels/<source>``; built on first use, then cached."""
    with _LOCK:
        if source not in _LOADED:
            _LOADED[source] = _load(source)
        return _LOADED[source]


def _arch() -> str:
    """``-march`` value: ``$ATTNKIT_CPU_ARCH`` (e.g. ``haswell`` for AVX2 code on a newer
    CPU, or a baseline for a cache shared by several CPU kinds), else ``native``."""
    arch = os.environ.get("ATTNKIT_CPU_ARCH", "").strip() or "native"
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", arch):
        raise ValueError(f"ATTNKIT_CPU_ARCH must be a -march name such as 'native' or "
                         f"'haswell'; got {arch!r}")
    return arch


def _flag_sets() -> list[tuple[str, ...]]:
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    native = (f"-march={_arch()}",)
    sets = [BASE_FLAGS + native + X86_EXTRA] if x86 else []
    return sets + [BASE_FLAGS + native, BASE_FLAGS]


def _load(source: str) -> Built:
    setting = os.environ.get("ATTNKIT_CPU_KERNELS", "auto").strip().lower()
    if setting in OFF:
        return Built(None, f"turned off by ATTNKIT_CPU_KERNELS={setting}")
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        return Built(None, f"no C compiler: {cc!r} is not on PATH (install one or set CC)")
    try:
        flag_sets = _flag_sets()
    except ValueError as e:
        warnings.warn(f"{e}; the compiled CPU kernels are not used", stacklevel=3)
        return Built(None, str(e))
    code = resources.files(__package__).joinpath(source).read_bytes()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.partition("\n")[0]
    except (OSError, subprocess.SubprocessError) as e:
        return Built(None, f"the C compiler {cc!r} does not run: {e}")
    folder, error = _writable(cache_dir() / "kernels"), ""
    for flags in flag_sets:  # the first set that builds (a cached build counts)
        key = hashlib.sha256(b"\0".join([
            code, version.encode(), platform.machine().encode(),
            " ".join(sorted(cpu_flags())).encode(), " ".join(flags).encode()])).hexdigest()[:16]
        target = folder / f"{Path(source).stem}-{key}.so"
        lib, error = _built(cc, flags, code, target)
        if lib is not None:
            shown = " ".join(f for f in flags if f not in BASE_FLAGS) or "no CPU flags"
            return Built(lib, f"compiled by {version or cc} ({shown}), cached at {target}")
    return Built(None, error)


def _built(cc: str, flags: tuple[str, ...], code: bytes,
           target: Path) -> tuple[ctypes.CDLL | None, str]:
    """``target`` loaded, compiled first where missing; a cached file that does not load
    (truncated, from another machine) is built again once."""
    for attempt in range(2):
        if not target.exists():
            error = _compile(cc, flags, code, target)
            if error is not None:
                return None, error
        try:
            return ctypes.CDLL(str(target)), ""
        except OSError as e:
            if attempt == 1:
                return None, f"the compiled {target} does not load: {e}"
            target.unlink(missing_ok=True)
    raise AssertionError("unreachable")  # pragma: no cover


def _writable(folder: Path) -> Path:
    """``folder``, created private to this user; a fresh private temporary folder where that
    fails or where ``folder`` belongs to another user (whose files must not be loaded)."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if hasattr(os, "getuid") and folder.stat().st_uid != os.getuid():
            raise PermissionError(f"{folder} belongs to another user")
        probe = tempfile.NamedTemporaryFile(dir=folder)
        probe.close()
        return folder
    except OSError:
        return Path(tempfile.mkdtemp(prefix="attnkit-kernels-"))


def _compile(cc: str, flags: tuple[str, ...], code: bytes, target: Path) -> str | None:
    """Build ``target`` from ``code``; ``None``, or the reason it could not be built."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp")
    os.close(fd)
    try:
        try:
            done = subprocess.run([cc, *flags, "-x", "c", "-", "-o", tmp], input=code,
                                  capture_output=True, timeout=COMPILE_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as e:
            return f"the C compiler {cc!r} failed to run: {e}"
        if done.returncode == 0:
            os.replace(tmp, target)  # atomic: other processes see all of it or nothing
            return None
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        first = lines[0] if lines else f"exit status {done.returncode}, no message"
        return f"{cc} could not build the kernel: {first}"
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
