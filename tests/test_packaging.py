"""The packaging metadata names files that exist."""

from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def package_data():
    """(package, glob) pairs of ``[tool.setuptools.package-data]`` in pyproject.toml."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        table = tomllib.load(f)["tool"]["setuptools"]["package-data"]
    return [(package, pattern) for package, patterns in table.items() for pattern in patterns]


def test_package_data_is_declared():
    assert package_data(), "[tool.setuptools.package-data] lists no files"


@pytest.mark.parametrize("package,pattern", package_data())
def test_each_package_data_glob_matches_a_file(package, pattern):
    assert package.split(".")[0] == "attnkit", f"package-data for a foreign package {package!r}"
    package_dir = ROOT.joinpath(*package.split("."))
    assert package_dir.is_dir(), f"package {package!r} has no folder {package_dir}"
    matches = [p for p in package_dir.glob(pattern) if p.is_file()]
    assert matches, f"{package}: {pattern!r} matches no file under {package_dir}"
