"""The architecture kept honest: layers by import-linter, small functions, a true Layout."""

import ast
import re
from pathlib import Path

import tomllib
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "attnkit"
MAX_FUNCTION_LINES = 60
LONG_ALLOWED = ("attnkit/kernels/triton_",)  # Triton kernels: one @jit function per kernel


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"]


def _top_level_names() -> set[str]:
    """Every module and package directly under attnkit/ (``__init__``, ``__main__`` aside)."""
    names = {p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("__")}
    names |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    return names


def _contract(name_start: str) -> dict:
    """The one contract whose name starts with ``name_start``."""
    (found,) = [c for c in _contracts() if c["name"].startswith(name_start)]
    return found


def test_import_linter_contracts_hold(capsys):
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"Contracts: {len(_contracts())} kept, 0 broken" in out


def test_every_module_is_a_layer_or_a_helper():
    layers, helpers = _contract("layers: "), _contract("helpers import no layer")
    assert layers["type"] == "layers" and helpers["type"] == "forbidden"
    in_layers = {name.strip() for level in layers["layers"] for name in level.split("|")}
    in_helpers = {m.split(".", 1)[1] for m in helpers["source_modules"]}
    assert in_layers.isdisjoint(in_helpers)
    assert _top_level_names() == in_layers | in_helpers
    assert {n for n in _top_level_names() if n.startswith("_")} == in_helpers
    # the forbidden contract names every layer
    assert {m.split(".", 1)[1] for m in helpers["forbidden_modules"]} == in_layers


def test_the_packages_with_an_inner_order_list_every_module():
    """runs/, train/ and decode/ state the order of their modules; bench/ that its suites
    import none of each other: every module there is named, so a new one must be placed."""
    from attnkit.bench import SUITES

    for package in ("runs", "train", "decode"):
        (contract,) = [c for c in _contracts() if c.get("containers") == [f"attnkit.{package}"]]
        named = {n.strip() for level in contract["layers"] for n in level.split("|")}
        modules = {p.stem for p in (PACKAGE / package).glob("*.py") if p.stem != "__init__"}
        assert modules == named, (package, sorted(modules ^ named))
    suites = _contract("bench: ")["modules"]
    assert suites == [f"attnkit.bench.{s}" for s in SUITES]


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(LONG_ALLOWED):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{rel}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_readme_layout_matches_the_tree():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Layout\n\n```\n(.*?)```", readme, re.S).group(1)
    listed = set()
    for line in block.splitlines():
        paths = line.split("  ")[0]
        for item in re.findall(r"attnkit/[\w/]+(?:\.py)?|[\w]+\.py|[\w]+/", paths):
            name = item.removeprefix("attnkit/").rstrip("/").split("/")[0].removesuffix(".py")
            listed.add(name)
            assert (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file(), item
    public = {n for n in _top_level_names() if not n.startswith("_")}
    assert public <= listed, sorted(public - listed)
