"""Export directories that are whole or absent, and that say so when they are not what was written.

An export is a directory of files that another engine reads (``model.bin``,
``config.json``, vocabularies, the run's ``tokenizer/``), plus two of attnkit's:

* :data:`EXPORT_INFO` (``attnkit-export.json``): what the directory holds, for the
  loader (format, engine, the positional table size, the model's config);
* :data:`MANIFEST` (``manifest.json``, written last): the size and SHA-256 of every
  other file, as a checkpoint's manifest has them.

**Writing** (:func:`write_export`). The new export is built in ``.NAME.export-new``
beside ``out``, its manifest written and every file flushed to disk; only then is
it put in place by renames: an earlier export at ``out`` goes to
``.NAME.export-old``, the new one to ``out``, and the old one is removed. A
process killed at any point leaves the earlier export at ``out`` (or the new one,
whole): never nothing, never half of one. The next export to ``out`` removes what
a killed one left (and puts the earlier export back if the kill came between the
two renames). Exports into one parent folder take turns (an ``flock`` on that
folder, released by the kernel however the process ends), so leftovers are
never another export's work in progress. Files and folders get the modes the
user's umask gives (like ``mkdir`` and ``open``), not the private ones of
temporary names.

**Reading** (:func:`verify_export`). Before a loader opens any file of an export,
every file the manifest lists must be there with its size and SHA-256, and there
must be no other file or link: a truncated ``model.bin``, an edited vocabulary or
a stray file is one line naming the file, not an engine's error (or, worse, a
silently different translation).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path

from .._io import read_json, sha256_of_file, write_atomic

__all__ = ["EXPORT_INFO", "MANIFEST", "ExportArgumentError", "verify_export", "write_export"]

#: The file of an exported directory that says what it holds.
EXPORT_INFO = "attnkit-export.json"
#: Size and SHA-256 of every other file of an export; written last.
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ExportArgumentError(ValueError):
    """A bad value of one argument of an export function.

    ``str()`` names the Python arguments (``out: … holds an earlier export; pass
    force=True to replace it``); :meth:`message` takes other names for them, so
    the command line can name its own flags (``--out``, ``--force``).
    """

    PYTHON_NAMES = {"force": "force=True"}

    def __init__(self, argument: str, problem: str, fix: tuple[str, str] | None = None):
        self.argument, self.problem, self.fix = argument, problem, fix
        super().__init__(self.message())

    def message(self, names: Mapping[str, str] | None = None) -> str:
        """The error with each argument called by ``names`` (default: Python's)."""
        names = self.PYTHON_NAMES if names is None else names
        text = f"{names.get(self.argument, self.argument)}: {self.problem}"
        if self.fix is not None:
            argument, purpose = self.fix
            text += f"; pass {names.get(argument, argument)} {purpose}"
        return text


# ------------------------------------------------------------------------- writing
def _aside(out: Path, role: str) -> Path:
    """Where an export to ``out`` is built (``new``) or its predecessor waits (``old``)."""
    return out.with_name(f".{out.name}.export-{role}")


@contextmanager
def _turn(parent: Path):
    """Hold an exclusive ``flock`` on the folder ``parent`` (exports there take turns)."""
    fd = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


def _clean_leftovers(out: Path) -> None:
    """Undo what an export to ``out`` killed part-way left (see the module docs)."""
    new, old = _aside(out, "new"), _aside(out, "old")
    if new.exists() or new.is_symlink():
        _remove(new)  # a build that never reached its place
    if old.exists() or old.is_symlink():
        if out.exists() or out.is_symlink():
            _remove(old)  # replaced already: the rest of its removal
        else:
            os.rename(old, out)  # killed between the two renames: the earlier export is back


def _foreign(out: Path, known: tuple[str, ...]) -> list[str]:
    """What in the earlier export ``out`` is not the export's: files its manifest does not
    list (or, an export without one, names not in ``known``)."""
    try:
        manifest = read_json(out / MANIFEST, format_version=MANIFEST_FORMAT,
                             missing=ValueError())
        return [name for name, _ in _strays(out, _listed(out, manifest))]
    except ValueError:
        return sorted(p.name for p in out.iterdir() if p.name not in (*known, MANIFEST))


def _check_out(out: Path, marker: str, known: tuple[str, ...], force: bool) -> bool:
    """Whether ``out`` holds an earlier export to replace; refuse anything else."""
    if out.is_symlink():
        raise ExportArgumentError("out", f"{out} is a symbolic link; name a directory")
    if not out.exists():
        return False
    if not out.is_dir():
        raise ExportArgumentError("out", f"{out} exists and is not a directory")
    if not any(out.iterdir()):
        return True  # an empty folder is replaced like an export
    if not (out / marker).is_file():
        raise ExportArgumentError("out", f"{out} exists and is not empty; choose a new "
                                         "directory")
    if not force:
        raise ExportArgumentError("out", f"{out} holds an earlier export",
                                  ("force", "to replace it"))
    foreign = _foreign(out, known)
    if foreign:
        raise ExportArgumentError("out", f"{out} holds an earlier export and files that are "
                                         f"not of it ({', '.join(foreign[:5])}); move them "
                                         "or choose a new directory")
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _seal(work: Path) -> None:
    """Give every file and folder of ``work`` the umask's modes (``work`` itself came
    from ``mkdir``, so it has them), write the manifest, flush everything to disk."""
    dir_mode = work.stat().st_mode & 0o777
    file_mode = dir_mode & 0o666
    files = {}
    for p in sorted(work.rglob("*")):
        if p.is_symlink():
            raise OSError(f"{p}: an export holds no links")
        os.chmod(p, dir_mode if p.is_dir() else file_mode)
        if p.is_file():
            files[p.relative_to(work).as_posix()] = {"bytes": p.stat().st_size,
                                                     "sha256": sha256_of_file(p)}
    manifest = {"format_version": MANIFEST_FORMAT, "files": files}
    write_atomic(work / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    os.chmod(work / MANIFEST, file_mode)
    for p in [*work.rglob("*"), work]:
        _fsync(p)


def _swap(work: Path, out: Path, replace: bool) -> None:
    """Put the sealed ``work`` at ``out``: old -> aside, new -> place, remove aside."""
    old = _aside(out, "old")
    if replace:
        os.rename(out, old)
    os.rename(work, out)
    _fsync(out.parent)
    if replace:
        _remove(old)


def write_export(out: str | Path, build: Callable[[Path], None], *, marker: str = EXPORT_INFO,
                 known: tuple[str, ...] = (), force: bool = False) -> Path:
    """Build an export with ``build(folder)`` and put it at ``out`` whole (module docs).

    ``build`` writes every file of the export into the empty ``folder`` it is given,
    ``marker`` among them; the manifest is added after it returns. ``force``
    replaces an earlier export (a folder with ``marker``) that holds nothing but
    what its manifest lists (without a manifest: the names in ``known``).

    Raises:
        ExportArgumentError: ``out`` is a link, a file, a folder with other files, an
            earlier export with files of someone else's, or one and ``force`` is false.
        OSError: the parent folder cannot be created or written.
    """
    given, out = Path(out), Path(os.path.abspath(out))  # "..", "." and "a/.." name a folder
    if out == Path(os.getcwd()) or out in Path(os.getcwd()).parents:
        raise ExportArgumentError("out", f"{given} is the current folder or holds it; name a "
                                         "new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    with _turn(out.parent):
        _clean_leftovers(out)
        replace = _check_out(out, marker, known, force)
        work = _aside(out, "new")
        work.mkdir()  # the umask's mode, as every folder a user makes
        try:
            build(work)
            _seal(work)
            _swap(work, out, replace)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return given


# ------------------------------------------------------------------------- reading
def _listed(p: Path, manifest: dict) -> dict[str, dict]:
    """The manifest's entries, each a relative path inside ``p`` with a size and digest."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ValueError(f"{p / MANIFEST}: lists no files")
    for name, info in files.items():
        parts = Path(name).parts
        if (not parts or Path(name).is_absolute() or ".." in parts or "\\" in name
                or name == MANIFEST or not isinstance(info, dict)
                or type(info.get("bytes")) is not int
                or not _SHA256.match(str(info.get("sha256")))):
            raise ValueError(f"{p / MANIFEST}: lists {name!r} with {info!r}, which is not a "
                             "file of the export with its size and sha256")
    return files


def _strays(p: Path, files: dict) -> list[tuple[str, str]]:
    """Links anywhere in ``p``, and files the manifest does not list (nothing else may be
    read): ``(name, why)`` each."""
    found = []
    for f in sorted(p.rglob("*")):
        name = f.relative_to(p).as_posix()
        if f.is_symlink():
            found.append((name, "a link; an export holds none"))
        elif not f.is_dir() and name != MANIFEST and name not in files:
            found.append((name, f"not listed in {MANIFEST}"))
    return found


def verify_export(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, dict]:
    """Check the export at ``path`` against its manifest before any other file is read:
    each listed file present with its size and SHA-256, no other file or link, each
    of ``required`` listed. Returns the manifest's entries.

    Raises:
        ValueError: one line naming ``manifest.json`` or each file that differs.
    """
    p = Path(path)
    manifest = read_json(p / MANIFEST, format_version=MANIFEST_FORMAT, missing=ValueError(
        f"{p} is not a whole export: it has no {MANIFEST} (export the run again)"))
    files = _listed(p, manifest)
    bad = [f"{name} ({why})" for name, why in _strays(p, files)]
    bad += [f"{name} (missing, and {MANIFEST} must list it)" for name in required
            if name not in files]
    for name, info in files.items():
        f = p / name
        if f.is_symlink():
            continue  # named above
        if not f.is_file():
            bad.append(f"{name} (missing, or not a file)")
        elif f.stat().st_size != info["bytes"] or sha256_of_file(f) != info["sha256"]:
            bad.append(f"{name} (its size or sha256 differs from {MANIFEST})")
    if bad:
        raise ValueError(f"{p} is not the export that was written: {', '.join(bad)}")
    return files
