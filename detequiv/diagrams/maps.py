"""Ribbon graphs (combinatorial maps) as pairs of permutations, and their genus.

A trace word of length ``n`` is the cyclic permutation ``sigma`` (position ``i`` is
followed by ``sigma[i]``); a partition of the positions is the permutation ``alpha``
whose cycles are its blocks in increasing order. The faces are the cycles of
``alpha^{-1} o sigma`` and Euler's formula for hypermaps gives the genus

    c(sigma) + c(alpha) + c(faces) = n + 2 * components - 2 * genus.

For one trace (``sigma`` one n-cycle) this is ``|pi| + |K(pi)| = n + 1 - 2 g``, so
the genus is 0 exactly for the non-crossing partitions (Biane, 1997):

>>> from detequiv.diagrams.maps import Map, cycle_permutation, blocks_permutation
>>> gamma = cycle_permutation(4)
>>> Map(gamma, blocks_permutation([[0, 1], [2, 3]], 4)).genus
0
>>> Map(gamma, blocks_permutation([[0, 2], [1, 3]], 4)).genus
1

Planarity of a trace diagram is a property of its fixed cyclic order, which is why it
is computed here from the permutations and not with ``networkx.check_planarity``
(that function ignores the rotation system).

References
----------
P. Biane, "Some properties of crossings and partitions", Discrete Math. 175 (1997).
A. Nica and R. Speicher, Lectures on the Combinatorics of Free Probability (2006).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from ..errors import InvalidArgument

__all__ = [
    "Map",
    "blocks_permutation",
    "cycle_permutation",
    "cycles",
    "compose",
    "inverse",
]

Perm = tuple[int, ...]


def cycle_permutation(n: int, start: int = 0, size: int | None = None) -> Perm:
    """The cyclic shift ``i -> i + 1`` on ``start .. start + n - 1`` (identity elsewhere).

    ``size`` is the length of the whole permutation (default ``start + n``).

    >>> cycle_permutation(3)
    (1, 2, 0)
    """
    total = start + n if size is None else size
    p = list(range(total))
    for i in range(n):
        p[start + i] = start + (i + 1) % n
    return tuple(p)


def blocks_permutation(blocks: Iterable[Iterable[int]], n: int) -> Perm:
    """Permutation whose cycles are the given blocks, each in increasing order.

    Positions not covered by any block are fixed points.

    >>> blocks_permutation([[0, 2]], 3)
    (2, 1, 0)
    """
    p = list(range(n))
    for block in blocks:
        b = sorted(block)
        for i, x in enumerate(b):
            p[x] = b[(i + 1) % len(b)]
    return tuple(p)


def compose(p: Perm, q: Perm) -> Perm:
    """``p o q``: apply ``q`` first, then ``p``."""
    return tuple(p[q[i]] for i in range(len(q)))


def inverse(p: Perm) -> Perm:
    """The inverse permutation."""
    out = [0] * len(p)
    for i, x in enumerate(p):
        out[x] = i
    return tuple(out)


def cycles(p: Perm) -> tuple[tuple[int, ...], ...]:
    """Cycles of ``p``, each starting at its least element, sorted by it."""
    seen = [False] * len(p)
    out = []
    for i in range(len(p)):
        if not seen[i]:
            cyc = []
            j = i
            while not seen[j]:
                seen[j] = True
                cyc.append(j)
                j = p[j]
            out.append(tuple(cyc))
    return tuple(out)


def _check_perm(p: Sequence[int], name: str) -> Perm:
    t = tuple(int(x) for x in p)
    if sorted(t) != list(range(len(t))):
        raise InvalidArgument(
            f"{name}={tuple(p)} is not a permutation of 0..{len(t) - 1}; give the image "
            "of each position exactly once"
        )
    return t


@dataclass(frozen=True, slots=True)
class Map:
    """A combinatorial (hyper)map: darts ``0..n-1``, vertex rotation ``sigma``, hyperedges ``alpha``.

    Parameters
    ----------
    sigma : sequence of int
        Cyclic order of the darts around each vertex (one cycle per trace).
    alpha : sequence of int
        The hyperedges: cycles of ``alpha`` are the blocks of the diagram.

    Examples
    --------
    >>> m = Map((1, 2, 0), (0, 1, 2))
    >>> m.faces()
    ((0, 1, 2),)
    >>> m.genus, m.num_components
    (0, 1)
    """

    sigma: Perm
    alpha: Perm
    _faces: Perm = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        s = _check_perm(self.sigma, "sigma")
        a = _check_perm(self.alpha, "alpha")
        if len(s) != len(a):
            raise InvalidArgument(
                f"sigma has {len(s)} darts but alpha has {len(a)}; both must act on the same positions"
            )
        object.__setattr__(self, "sigma", s)
        object.__setattr__(self, "alpha", a)
        object.__setattr__(self, "_faces", compose(inverse(a), s))

    @property
    def n(self) -> int:
        """Number of darts (letters of the word)."""
        return len(self.sigma)

    def vertices(self) -> tuple[tuple[int, ...], ...]:
        """Cycles of ``sigma`` (the traces)."""
        return cycles(self.sigma)

    def hyperedges(self) -> tuple[tuple[int, ...], ...]:
        """Cycles of ``alpha`` (the blocks)."""
        return cycles(self.alpha)

    def faces(self) -> tuple[tuple[int, ...], ...]:
        """Cycles of ``alpha^{-1} o sigma``, in the order a face is walked."""
        return cycles(self._faces)

    def to_networkx(self) -> nx.MultiGraph:
        """Underlying graph: darts joined by ``sigma`` (kind 'trace') and ``alpha`` (kind 'block')."""
        g = nx.MultiGraph()
        g.add_nodes_from(range(self.n))
        for i in range(self.n):
            if self.sigma[i] != i:
                g.add_edge(i, self.sigma[i], kind="trace")
            if self.alpha[i] != i:
                g.add_edge(i, self.alpha[i], kind="block")
        return g

    @property
    def num_components(self) -> int:
        """Connected components of the map (networkx on the dart graph)."""
        return nx.number_connected_components(self.to_networkx()) if self.n else 0

    @property
    def euler_characteristic(self) -> int:
        """``c(sigma) + c(alpha) + c(faces) - n``."""
        return len(self.vertices()) + len(self.hyperedges()) + len(self.faces()) - self.n

    @property
    def genus(self) -> int:
        """Genus from Euler's formula; 0 means the diagram is planar."""
        twice = 2 * self.num_components - self.euler_characteristic
        assert twice % 2 == 0 and twice >= 0, "Euler's formula violated: not a map"
        return twice // 2

    @property
    def is_planar(self) -> bool:
        """True when the genus is 0."""
        return self.genus == 0

    def canonical_key(self) -> tuple[Any, ...]:
        """Least relabelling of the darts (walking sigma, then alpha) over all start darts.

        Two maps have the same key exactly when they are isomorphic as rooted-free
        maps preserving both permutations, which is how diagrams are deduplicated.
        """
        best: tuple[Any, ...] | None = None
        for start in range(self.n):
            key = self._relabel_from(start)
            if key is not None and (best is None or key < best):
                best = key
        return best if best is not None else ()

    def _relabel_from(self, start: int) -> tuple[Any, ...] | None:
        label = {start: 0}
        order = [start]
        i = 0
        while i < len(order):
            d = order[i]
            for nxt in (self.sigma[d], self.alpha[d]):
                if nxt not in label:
                    label[nxt] = len(order)
                    order.append(nxt)
            i += 1
        if len(order) != self.n:
            return None  # disconnected: only starts reaching everything define the key
        return tuple((label[self.sigma[d]], label[self.alpha[d]]) for d in order)
