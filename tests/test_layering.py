"""The layout holds: dependencies point one way, no module cycles, no private names shared.

The graph is read from the source with :mod:`ast`, so it includes the imports written
inside functions (an import moved into a function to dodge a cycle is still a cycle); the
package order also covers those under ``TYPE_CHECKING`` (types point downwards too).
Package order, lowest first::

    errors, plotting, runtime -> diagrams -> derivations -> {codegen, witnesses}
        -> {models, dmft} -> cli (and the top-level ``detequiv`` package)

A module may import from its own package and from packages strictly lower in the order;
two packages on the same level do not import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

import detequiv

ROOT = Path(detequiv.__file__).parent
LEVEL = {
    "errors": 0,
    "plotting": 1,
    "runtime": 1,
    "diagrams": 2,
    "derivations": 3,
    "codegen": 4,
    "witnesses": 4,
    "models": 5,
    "dmft": 5,
    "cli": 6,
    "__main__": 7,
    "": 7,  # the top-level package re-exports everything
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:`` (annotations only, never executed)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def _imports(module: str, runtime_only: bool = False) -> list[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` for every detequiv import (without
    the ``TYPE_CHECKING`` ones when ``runtime_only``)."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree) if runtime_only else set()
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if not target.startswith("detequiv"):
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                if full in MODULES:
                    out.append((full, None, node.lineno))
                else:
                    out.append((target, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.startswith("detequiv")]
    resolved = []
    for target, name, line in out:
        while target not in MODULES and "." in target:
            target = target.rsplit(".", 1)[0]
        resolved.append((target, name, line))
    return resolved


def _graph(runtime_only: bool = False) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for module in MODULES:
        for target, _, line in _imports(module, runtime_only):
            if target != module:
                graph.add_edge(module, target, line=line)
    return graph


def test_every_module_has_a_level():
    assert {_package(m) for m in MODULES} <= set(LEVEL), sorted({_package(m) for m in MODULES} - set(LEVEL))


def test_no_import_cycles_between_modules():
    """Imports that run (at module level or inside functions) form no cycle; annotations under
    ``TYPE_CHECKING`` may refer back (they never execute)."""
    cycles = [sorted(c) for c in nx.strongly_connected_components(_graph(runtime_only=True)) if len(c) > 1]
    assert not cycles, cycles


def test_packages_import_downwards_only():
    bad = []
    for module, target, data in _graph().edges(data=True):
        here, there = _package(module), _package(target)
        if here == there:
            continue
        if not LEVEL[there] < LEVEL[here]:
            bad.append(f"{module}:{data['line']} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_private_names_across_modules():
    bad = [
        f"{module}:{line} imports {name} from {target}"
        for module in MODULES
        for target, name, line in _imports(module)
        if name and name.startswith("_") and not name.startswith("__") and target != module
    ]
    assert not bad, "\n".join(bad)


def test_layout_rooms():
    """No simulator in codegen, no model in derivations, no code kept in strings."""
    assert not list((ROOT / "codegen").glob("*_mc.py"))
    for path in (ROOT / "codegen").glob("*.py"):
        assert "def simulate" not in path.read_text(), path
    for path in (ROOT / "derivations").glob("*.py"):
        text = path.read_text()
        for model in (
            "RidgeRegression",
            "KernelRegression",
            "RandomFeatureRidge",
            "GradientFlow",
            "OnlineSGD",
        ):
            assert f"class {model}" not in text, (path, model)


_STRING_CODE: set[str] = set()  # issue 12: none left


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=pytest.mark.xfail(strict=True))
        if str(p.relative_to(ROOT)) in _STRING_CODE
        else p
        for p in sorted(ROOT.rglob("*.py"))
    ],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_source_code_in_strings(path):
    """A string constant that parses as Python with a ``def`` in it is code kept in a string."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "\ndef " in node.value:
            try:
                ast.parse(node.value)
            except SyntaxError:
                continue
            pytest.fail(f"{path.name}:{node.lineno} keeps Python source in a string")


def test_diagrams_do_not_need_sympy():
    for path in (ROOT / "diagrams").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not any(m.startswith("sympy") for m in names), path
