"""The diagrams modules import each other without cycles (imports inside functions count)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import detequiv.diagrams

PACKAGE = Path(detequiv.diagrams.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    """Sibling modules of the diagrams package imported anywhere in ``path``."""
    siblings = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                names = [node.module] if node.module else [a.name for a in node.names]
            elif (node.module or "").startswith("detequiv.diagrams."):
                names = [node.module.split(".")[2]]
            else:
                names = []
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[2] for a in node.names if a.name.startswith("detequiv.diagrams.")]
        else:
            continue
        out.update(n.split(".")[0] for n in names if n and n.split(".")[0] in siblings)
    return out


def test_no_import_cycle_between_diagram_modules():
    graph = nx.DiGraph()
    for path in PACKAGE.glob("*.py"):
        if path.stem != "__init__":
            graph.add_node(path.stem)
            others = _imported_modules(path) - {path.stem}
            graph.add_edges_from((path.stem, other) for other in others)
    assert {"words", "graphs", "drawing", "partitions", "maps"} <= set(graph)
    assert list(nx.simple_cycles(graph)) == []
    assert graph.has_edge("graphs", "words") and graph.has_edge("words", "drawing")


def test_graphs_keeps_the_networkx_views_only():
    import detequiv.diagrams.graphs as graphs

    assert set(graphs.__all__) == {"automorphism_count", "isomorphism_classes", "is_isomorphic"}
    source = (PACKAGE / "graphs.py").read_text()
    assert "matplotlib" not in source and "savefig" not in source
