"""The networkx boundary: isomorphism classes, symmetry factors and drawings.

Diagrams of one word that differ by a rotation of the word are isomorphic as
labelled graphs (:meth:`Diagram.to_networkx`). Grouping them gives each class with
its multiplicity, and the orbit-stabilizer theorem ties the two together:
``multiplicity * automorphisms == rotation symmetry of the word``.

>>> from detequiv.diagrams.words import Letter, TraceWord
>>> from detequiv.diagrams.graphs import isomorphism_classes, automorphism_count
>>> word = TraceWord([Letter("W", free=True)] * 4)
>>> classes = isomorphism_classes(word.planar_diagrams())
>>> sorted(count for _, count in classes)
[1, 1, 2, 2, 4, 4]
>>> all(count * automorphism_count(d) == 4 for d, count in classes)
True

Drawings (arcs over a line, or chords in a circle) need matplotlib, installed with
``pip install detequiv[plot]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import networkx as nx
from networkx.algorithms import isomorphism as iso

from ..errors import InvalidArgument
from .words import Diagram

__all__ = [
    "automorphism_count",
    "isomorphism_classes",
    "is_isomorphic",
    "draw_blocks",
    "draw_diagram",
    "require_matplotlib",
    "blocks_svg",
]

_NODE_MATCH = iso.categorical_node_match("letter", None)
_EDGE_MATCH = iso.categorical_multiedge_match("kind", None)


def is_isomorphic(a: Diagram, b: Diagram) -> bool:
    """True when the two diagrams are the same up to relabelling positions (letters kept)."""
    return bool(
        nx.is_isomorphic(a.to_networkx(), b.to_networkx(), node_match=_NODE_MATCH, edge_match=_EDGE_MATCH)
    )


def automorphism_count(diagram: Diagram) -> int:
    """Number of relabellings mapping the diagram to itself (its symmetry factor)."""
    g = diagram.to_networkx()
    matcher = iso.MultiDiGraphMatcher(g, g, node_match=_NODE_MATCH, edge_match=_EDGE_MATCH)
    return sum(1 for _ in matcher.isomorphisms_iter())


def _invariant(d: Diagram) -> tuple[Any, ...]:
    """A cheap isomorphism invariant: block sizes per letter and the face traces."""
    return (tuple(sorted(d.cumulant_blocks)), tuple(str(t) for t in d.trace_factors))


def isomorphism_classes(diagrams: Iterable[Diagram]) -> list[tuple[Diagram, int]]:
    """Group diagrams into isomorphism classes; returns ``(first representative, count)``.

    Candidates are bucketed by an invariant (cumulant blocks and face traces) and
    then compared with ``networkx.is_isomorphic``; the order of classes follows first appearance.
    """
    buckets: dict[tuple[Any, ...], list[list[Any]]] = {}
    order: list[list[Any]] = []
    for d in diagrams:
        key = _invariant(d)
        for entry in buckets.setdefault(key, []):
            if is_isomorphic(entry[0], d):
                entry[1] += 1
                break
        else:
            entry = [d, 1]
            buckets[key].append(entry)
            order.append(entry)
    return [(d, c) for d, c in order]


def require_matplotlib() -> Any:
    """Import matplotlib with a non-interactive backend, or say how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InvalidArgument(
            "drawing needs matplotlib: pip install 'detequiv[plot]' (or pip install matplotlib)"
        ) from exc
    return plt


def draw_blocks(
    n: int,
    blocks: Sequence[Sequence[int]],
    *,
    labels: Sequence[str] | None = None,
    style: str = "arcs",
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Draw a partition of ``0..n-1``: arcs over a line, or chords in a circle.

    Parameters
    ----------
    n : int
        Number of positions.
    blocks : sequence of sequence of int
        The blocks to draw (positions not in any block are drawn as points).
    labels : sequence of str, optional
        A label per position (the letters of a word).
    style : {'arcs', 'chords'}
    ax : matplotlib Axes, optional
        Drawn into this axes; a new figure is made otherwise.
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    if style not in ("arcs", "chords"):
        raise InvalidArgument(f"style={style!r}; use 'arcs' or 'chords'")
    plt = require_matplotlib()
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(max(2.0, 0.6 * n), 2.2 if style == "arcs" else 2.6))
    labels = list(labels) if labels is not None else [str(i) for i in range(n)]
    if style == "arcs":
        xy = {i: (float(i), 0.0) for i in range(n)}
    else:
        layout = nx.circular_layout(nx.cycle_graph(n)) if n > 0 else {}
        # networkx puts node i at angle 2 pi i / n from the x axis, counter-clockwise;
        # swapping the coordinates puts position 0 on top with the word running clockwise
        xy = {i: (float(p[1]), float(p[0])) for i, p in layout.items()}
    if style == "chords" and n > 0:
        theta = np.linspace(0.0, 2 * np.pi, 200)
        ax.plot(np.sin(theta), np.cos(theta), color="0.85", lw=1.0, zorder=0)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, block in enumerate(sorted(tuple(sorted(b)) for b in blocks)):
        c = colours[k % len(colours)]
        if style == "arcs" and len(block) > 1:
            h = 0.25 + 0.18 * (block[-1] - block[0])
            ax.plot([block[0], block[-1]], [h, h], color=c, lw=1.5)
            for x in block:
                ax.plot([x, x], [0.08, h], color=c, lw=1.5)
        elif style == "chords" and len(block) > 1:
            pts = [xy[x] for x in block] + [xy[block[0]]]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=c, lw=1.5)
            if len(block) > 2:
                ax.fill([p[0] for p in pts], [p[1] for p in pts], color=c, alpha=0.15)
    for i in range(n):
        px, py = xy[i]
        ax.plot([px], [py], "o", color="black", ms=4)
        off = (0.0, -0.22) if style == "arcs" else (0.2 * px, 0.2 * py)
        ax.text(px + off[0], py + off[1], labels[i], ha="center", va="center", fontsize=9)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9, pad=14 if style == "chords" else 4)
    return ax


def draw_diagram(diagram: Diagram, *, style: str = "arcs", ax: Any = None, path: str | None = None) -> Any:
    """Draw a trace diagram (letters as labels); save to ``path`` (PNG/SVG) if given."""
    ax = draw_blocks(
        len(diagram.word),
        diagram.blocks,
        labels=[x.name for x in diagram.word.letters],
        style=style,
        ax=ax,
        title=str(diagram),
    )
    if path is not None:
        ax.figure.savefig(path, bbox_inches="tight")
    return ax


def blocks_svg(
    n: int, blocks: Sequence[Sequence[int]], *, labels: Sequence[str] | None = None, style: str = "arcs"
) -> str | None:
    """SVG text of :func:`draw_blocks` for notebooks, or None without matplotlib."""
    try:
        plt = require_matplotlib()
    except InvalidArgument:
        return None
    import io

    ax = draw_blocks(n, blocks, labels=labels, style=style)
    buf = io.StringIO()
    ax.figure.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(ax.figure)
    return buf.getvalue()
