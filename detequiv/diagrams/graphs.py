"""The networkx boundary: isomorphism classes and symmetry factors of diagrams.

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

Drawings of diagrams (arcs over a line, or chords in a circle) are in
:mod:`detequiv.diagrams.drawing`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import networkx as nx
from networkx.algorithms import isomorphism as iso

from .words import Diagram

__all__ = [
    "automorphism_count",
    "isomorphism_classes",
    "is_isomorphic",
]

_NODE_MATCH = iso.categorical_node_match("letter", None)
_EDGE_MATCH = iso.categorical_multiedge_match("kind", None)


def is_isomorphic(a: Diagram, b: Diagram) -> bool:
    """True when the two diagrams are the same up to relabelling positions (letters kept).

    Parameters
    ----------
    a, b : Diagram
        Diagrams, compared through :meth:`Diagram.to_networkx` (letters on the nodes,
        word and block edges).

    Returns
    -------
    bool

    Examples
    --------
    >>> from detequiv.diagrams.words import Diagram, Letter, TraceWord
    >>> word = TraceWord([Letter("W", free=True)] * 4)
    >>> pairs, rotated = Diagram(word, [[0, 1], [2, 3]]), Diagram(word, [[0, 3], [1, 2]])
    >>> crossing = Diagram(word, [[0, 2], [1, 3]])
    >>> is_isomorphic(pairs, rotated), is_isomorphic(pairs, crossing)
    (True, False)
    """
    return bool(
        nx.is_isomorphic(a.to_networkx(), b.to_networkx(), node_match=_NODE_MATCH, edge_match=_EDGE_MATCH)
    )


def automorphism_count(diagram: Diagram) -> int:
    """Number of relabellings mapping the diagram to itself (its symmetry factor).

    Parameters
    ----------
    diagram : Diagram

    Returns
    -------
    int
        The automorphisms of :meth:`Diagram.to_networkx` that keep letters and edge
        kinds: the rotations of the word that map the diagram to itself.

    Examples
    --------
    >>> from detequiv.diagrams.words import Diagram, Letter, TraceWord
    >>> word = TraceWord([Letter("W", free=True)] * 4)
    >>> automorphism_count(Diagram(word, [[0, 1], [2, 3]])), automorphism_count(Diagram(word, [[0, 1, 2, 3]]))
    (2, 4)
    """
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

    Parameters
    ----------
    diagrams : iterable of Diagram

    Returns
    -------
    list of (Diagram, int)
        One entry per class: its first diagram and how many diagrams it holds.

    Examples
    --------
    >>> from detequiv.diagrams.words import Letter, TraceWord
    >>> word = TraceWord([Letter("W", free=True)] * 4)
    >>> [(str(d).split(": ")[1], count) for d, count in isomorphism_classes(word.planar_diagrams())]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('{0}{1}{2}{3} faces 1', 1), ('{0}{1}{2,3} faces 1', 4), ('{0}{1,3}{2} faces 1', 2),
     ('{0}{1,2,3} faces 1', 4), ('{0,1}{2,3} faces 1', 2), ('{0,1,2,3} faces 1', 1)]
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
