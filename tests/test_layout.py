"""The tests mirror the package: each module of ``attnkit/`` has a test file named after it.

``attnkit/<pkg>/<module>.py`` is tested in ``tests/<pkg>/test_<module>.py`` (a large
module may have several, ``test_<module>_<aspect>.py``; a leading underscore is not
part of the name). A benchmark suite is one package, its declaration and its
``measure`` module, tested in ``tests/bench/test_<suite>.py``. A package's
``__init__`` gathers names (its registry, if any, is tested in
``tests/<pkg>/test_<pkg>.py``). Files that test a behaviour across modules (the
command line's reliability, the API's messages) stand beside these under their own
names.
"""

from __future__ import annotations

from pathlib import Path

from attnkit.bench import SUITES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE, TESTS = ROOT / "attnkit", ROOT / "tests"

#: modules without a test file of their own, and why: each is small or only a part of
#: what its callers' tests check, and none holds a rule that is not checked there.
EXCEPTIONS = {
}


def test_files(module: Path) -> list[Path]:
    """Where ``module``'s tests are expected."""
    rel = module.relative_to(PACKAGE)
    if rel.parts[0] == "bench" and len(rel.parts) == 3 and rel.parts[1] in SUITES:
        folder, name = TESTS / "bench", rel.parts[1]
    else:
        folder, name = TESTS / rel.parent, rel.stem.lstrip("_")
    return sorted(folder.glob(f"test_{name}.py")) + sorted(folder.glob(f"test_{name}_*.py"))


def modules() -> list[str]:
    return sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                  if p.name not in ("__init__.py", "__main__.py"))


def test_every_module_has_a_test_file_named_after_it():
    missing = [m for m in modules() if m not in EXCEPTIONS and not test_files(PACKAGE / m)]
    assert missing == [], "modules without tests/<pkg>/test_<module>.py: " + ", ".join(missing)


def test_every_exception_is_a_module_still_without_a_test_file():
    stale = [m for m in EXCEPTIONS if not (PACKAGE / m).is_file() or test_files(PACKAGE / m)]
    assert stale == [], "EXCEPTIONS to remove: " + ", ".join(stale)
