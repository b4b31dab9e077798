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

#: Modules without a test file of their own, and where what they do is tested instead.
EXCEPTIONS = {
    # helpers every layer imports: tested through the messages and results of their callers
    "_checks.py": "the API's input checks: tests/test_validation.py, tests/test_api_messages.py",
    "_dtypes.py": "one table of dtype facts: the reference backend's and softmax's tests",
    "_io.py": "file helpers of the run, export and command writers (tests/runs, tests/export)",
    "_lazy.py": "lazy package attributes: tests/commands/test_help.py imports attnkit lazily",
    "_names.py": "name tuples, checked against their registries by tests/test_scores.py",
    "_options.py": "the config's self-describing fields: tests of attnkit/train/config.py",
    "_profiling.py": "the measured peak memory that tests/test_cost.py compares the model with",
    "_version.py": "the release string: tests/commands/test_help.py reads attnkit.__version__",
    # parts every backend shares: checked on every backend by the one suite
    "backends/base.py": "the interface every backend follows: tests/backends/test_backends.py",
    "backends/reference.py": "the oracle of tests/backends/test_backends.py, run on every case",
    "bench/toolkit.py": "what the suites share: each suite's test in tests/bench/",
    # command-line front ends tested with what they drive
    "commands/_decoding.py": "flags translate and evaluate share: their tests in tests/commands/",
    "commands/demo.py": "flags around attnkit/demo.py: tests/test_demo.py runs `attnkit demo`",
    "commands/export.py": "flags around the exporter: tests/export/ runs `attnkit export`",
    "commands/tour.py": "flags around attnkit/viz/tour.py: tests/viz/test_tour.py runs it",
    "models/build.py": "build_model: tests/models/test_family.py builds every family's presets",
    # shared by the modules of one package, tested through them
    "kernels/_triton_common.py": "what both Triton kernels share: tests/kernels/test_triton_*.py",
    "kernels/_cpu_args.py": "both compiled kernels' argument check: tests/kernels/test_cpu_*.py",
    "viz/_matplotlib.py": "matplotlib loaded once: tests/viz/test_heatmap.py, test_figures.py",
}


def files_testing(module: Path) -> list[Path]:
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
    missing = [m for m in modules() if m not in EXCEPTIONS and not files_testing(PACKAGE / m)]
    assert missing == [], "modules without tests/<pkg>/test_<module>.py: " + ", ".join(missing)


def test_every_exception_is_a_module_still_without_a_test_file():
    stale = [m for m in EXCEPTIONS if not (PACKAGE / m).is_file() or files_testing(PACKAGE / m)]
    assert stale == [], "EXCEPTIONS to remove: " + ", ".join(stale)
