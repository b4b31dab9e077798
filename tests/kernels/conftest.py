"""Fixtures of the build and cache tests: each test's own cache folder, and a library built
once per session to copy into it."""

from __future__ import annotations

import shutil
import tempfile

import pytest

from attnkit.kernels import _build

from ._builds import SOURCE


@pytest.fixture
def own_cache(monkeypatch, tmp_path):
    """This test's cache folder and temporary directory; the default compiler and settings
    (used by every test of the build and the cache: ``pytestmark`` there)."""
    for name in ("CC", "ATTNKIT_CPU_ARCH", "ATTNKIT_CPU_KERNELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ATTNKIT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path / "cache" / "kernels"


@pytest.fixture(scope="session")
def built_cache(tmp_path_factory):
    """A kernels folder with the library built by the default settings (one compile)."""
    folder = tmp_path_factory.mktemp("built")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("CC", "ATTNKIT_CPU_ARCH", "ATTNKIT_CPU_KERNELS"):
            mp.delenv(name, raising=False)
        mp.setenv("ATTNKIT_CACHE_DIR", str(folder))
        built = _build._load(SOURCE)
    if built.lib is None:
        pytest.skip(f"no compiled kernel: {built.detail}")
    return folder / "kernels"


@pytest.fixture
def cached(built_cache, own_cache):
    """This test's kernels folder holding a copy of the session's library and its record;
    returns the library's path (a copy: no process has it mapped yet)."""
    own_cache.mkdir(parents=True, mode=0o700)
    for path in built_cache.iterdir():
        if path.suffix in (".so", ".json"):
            shutil.copy2(path, own_cache / path.name)
    (lib,) = own_cache.glob("*.so")
    return lib
