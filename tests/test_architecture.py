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


def _module_of(path: Path) -> str:
    """``attnkit.runs.container`` for attnkit/runs/container.py (a package for its
    ``__init__.py``)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    """Whether dotted ``name`` is a module or package of attnkit."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _source(node: ast.ImportFrom, path: Path) -> str:
    """The absolute name of the module that ``from X import ...`` in ``path`` reads."""
    if not node.level:
        return node.module or ""
    package = _module_of(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _modules_bound(tree: ast.Module, path: Path) -> dict[str, str]:
    """The local names of ``tree`` that stand for an attnkit module, and which one."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _source(node, path)
            for alias in node.names:
                if _is_module(f"{source}.{alias.name}"):
                    bound[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("attnkit"):
                    local = alias.asname or alias.name.split(".")[0]
                    bound[local] = alias.name if alias.asname else local
    return bound


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for the expression ``a.b.c``; ``None`` when it is not names and dots."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (base := _dotted(node.value)) is not None:
        return f"{base}.{node.attr}"
    return None


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_names_used(path: Path) -> list[str]:
    """Where ``path`` imports a private name of another module (``from X import _n``) or
    reads one through a module (``X._n``); private *modules* are shared by design."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel, bound, found = path.relative_to(ROOT).as_posix(), _modules_bound(tree, path), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _source(node, path)
            found += [f"{rel}:{node.lineno} imports {a.name} from {source}" for a in node.names
                      if _private(a.name) and not _is_module(f"{source}.{a.name}")]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            base = _dotted(node.value)
            head, _, rest = (base or "").partition(".")
            module = ".".join(filter(None, (bound.get(head), rest)))
            if head in bound and _is_module(module) and not _is_module(f"{module}.{node.attr}"):
                found.append(f"{rel}:{node.lineno} reads {module}.{node.attr}")
    return found


def test_no_private_name_is_used_outside_its_module():
    """A leading underscore says "this module's own": a name another module needs gets a
    public name where it belongs. Importing a private module (attnkit/_io.py,
    kernels/_build.py) is fine: those are shared by design; so are dunder names."""
    found = [f for path in sorted(PACKAGE.rglob("*.py")) for f in _private_names_used(path)]
    assert not found, "\n".join(found)


def test_the_notebooks_use_public_names_only():
    """A notebook is code a user copies: it imports attnkit's public names from public
    modules, never a private name or a private module."""
    import json

    found = []
    for nb in sorted((ROOT / "docs" / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        for cell in (c for c in cells if c["cell_type"] == "code"):
            code = "".join(line for line in cell["source"] if not line.startswith(("%", "!")))
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("attnkit"):
                    names = [*node.module.split("."), *(a.name for a in node.names)]
                elif isinstance(node, ast.Import):
                    names = [p for a in node.names if a.name.startswith("attnkit")
                             for p in a.name.split(".")]
                else:
                    continue
                found += [f"{nb.name}: {ast.unparse(node)}" for n in names if _private(n)][:1]
    assert not found, "\n".join(found)


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


def _family_names() -> tuple[set[str], set[str], set[str]]:
    """From the registry itself: the config classes, the module classes, and the strings
    that name a family or a preset."""
    from attnkit.models.family import FAMILIES

    configs = {f.config.__name__ for f in FAMILIES.values()}
    modules = {f.module.rpartition(":")[2] for f in FAMILIES.values()}
    names = set(FAMILIES) | {p for f in FAMILIES.values() for p in f.presets}
    return configs, modules, names


def _named(node: ast.AST) -> str | None:
    return node.id if isinstance(node, ast.Name) else \
        node.attr if isinstance(node, ast.Attribute) else None


def _branches_on_family(tree: ast.AST, configs: set[str], modules: set[str],
                        names: set[str]) -> list[int]:
    """Lines that name a family's config class; test a value against a family's module
    class (``isinstance``, ``issubclass``, ``type(m) is``); or compare a string with, or
    test a prefix of, a family or preset name. (Building a model of one family, as a
    benchmark of the Transformer does, is no branching.)"""
    def mentions(node: ast.AST, classes: set[str]) -> bool:
        return any(_named(n) in classes for n in ast.walk(node))

    def mentions_name(node: ast.AST) -> bool:
        return any(isinstance(c, ast.Constant) and isinstance(c.value, str) and c.value
                   and any(n.startswith(c.value) for n in names) for c in ast.walk(node))

    lines = []
    for node in ast.walk(tree):
        if _named(node) in configs or (isinstance(node, ast.ImportFrom)
                                       and any(a.name in configs for a in node.names)):
            lines.append(node.lineno)
        elif isinstance(node, ast.Compare) and (mentions(node, modules) or mentions_name(node)):
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and _named(node.func) in ("isinstance", "issubclass") \
                and mentions(node, modules):
            lines.append(node.lineno)
        elif (isinstance(node, ast.Call) and _named(node.func) in ("startswith", "endswith")
              and any(mentions_name(a) for a in node.args)):
            lines.append(node.lineno)
    return lines


def test_no_module_outside_models_tells_model_families_apart():
    """What depends on the model family is declared once, in attnkit/models/family.py:
    elsewhere no code names a family's config or module class (no isinstance, no import),
    compares with a family or preset name or tests a prefix of one. The book's API
    (attnkit/d2l/) builds its own models and is exempt."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("attnkit/models/", "attnkit/d2l/")):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [f"{rel}:{line}" for line in _branches_on_family(tree, *_family_names())]
    assert not found, found


def test_the_family_rule_sees_each_way_of_branching():
    for code in ("isinstance(c, TransformerConfig)", "from x import BahdanauConfig",
                 "c = models.BahdanauConfig", "isinstance(m, (nn.Linear, Transformer))",
                 "type(m) is models.BahdanauSeq2Seq", 'preset.startswith("bahdanau")',
                 'preset == "bahdanau_small"', 'p in ("transformer_tiny", "x")'):
        assert _branches_on_family(ast.parse(code), *_family_names()), code
    for code in ('f(preset="transformer_tiny")', "isinstance(c, dict)", 'x == ""',
                 'name.startswith("_")', "m = Transformer(8, 8)", "nn.Transformer(8)"):
        assert not _branches_on_family(ast.parse(code), *_family_names()), code
