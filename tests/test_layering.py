"""Dependencies point one way: codegen -> derivations -> diagrams (DESIGN.md 3.1)."""

import ast
from pathlib import Path

import detequiv

ROOT = Path(detequiv.__file__).parent
FORBIDDEN = {"diagrams": ("derivations", "codegen"), "derivations": ("codegen",)}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:  # relative: resolve against the package path
                pkg = path.relative_to(ROOT.parent).with_suffix("").parts[: -node.level]
                mod = ".".join((*pkg, mod)) if mod else ".".join(pkg)
            out.add(mod)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_stages_import_one_way():
    bad = []
    for stage, forbidden in FORBIDDEN.items():
        for path in (ROOT / stage).rglob("*.py"):
            for mod in _imports(path):
                for other in forbidden:
                    if mod.startswith(f"detequiv.{other}"):
                        bad.append(f"{path.name} imports {mod}")
    assert not bad, bad


def test_diagrams_do_not_need_sympy():
    for path in (ROOT / "diagrams").rglob("*.py"):
        assert not any(m.startswith("sympy") for m in _imports(path)), path
