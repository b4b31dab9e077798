"""Facts about the machine and where attnkit caches per-machine results: the cache folder
from ``$ATTNKIT_CACHE_DIR``, ``$XDG_CACHE_HOME`` or the home folder."""

from __future__ import annotations

from pathlib import Path

from attnkit._cpu import cache_dir


def test_a_relative_cache_dir_is_taken_from_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATTNKIT_CACHE_DIR", "rel/cache")
    assert cache_dir() == tmp_path / "rel" / "cache"
    monkeypatch.setenv("ATTNKIT_CACHE_DIR", "~/c")
    assert cache_dir() == Path.home() / "c"
    monkeypatch.delenv("ATTNKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # not a valid XDG value: ignored
    assert cache_dir() == Path.home() / ".cache" / "attnkit"
