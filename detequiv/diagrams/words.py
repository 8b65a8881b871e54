"""Trace words in deterministic and free random matrices, and their diagrams.

A :class:`TraceWord` is a cyclic word ``tr(a_1 a_2 ... a_n)`` in letters. Each
:class:`Letter` is either *deterministic* (all deterministic letters form one
family with arbitrary joint moments) or *free*: a random matrix that is free from
every other letter (each free letter is its own family). A :class:`Diagram` of the
word joins the positions of its free letters into blocks, each block holding one
letter only (mixed free cumulants vanish). The planar diagrams are the non-crossing
ones; the faces of a diagram group the deterministic letters into the traces that
multiply its cumulants (the Kreweras complement).

The count of planar diagrams of ``tr(W^n)`` is Catalan, and the genus comes from
the ribbon graph:

>>> from detequiv.diagrams.words import Letter, TraceWord
>>> W, A = Letter("W", free=True), Letter("A")
>>> sum(1 for _ in TraceWord([W] * 5).planar_diagrams())
42
>>> word = TraceWord([A, W, A, W])
>>> [str(d) for d in word.planar_diagrams()]
['tr(A W A W): {1}{3} faces tr(A A)', 'tr(A W A W): {1,3} faces tr(A) tr(A)']
>>> sorted({d.genus for d in word.all_diagrams()})
[0]
>>> sorted({d.genus for d in TraceWord([W] * 4).all_diagrams()})
[0, 1]

Words are canonical up to rotation, so ``tr(W A)`` and ``tr(A W)`` are equal:

>>> TraceWord([W, A]) == TraceWord([A, W])
True
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import networkx as nx

from ..errors import InvalidWord
from .drawing import blocks_svg
from .maps import Map, blocks_permutation, cycle_permutation

__all__ = ["Letter", "TraceWord", "Diagram", "DETERMINISTIC"]

DETERMINISTIC = "deterministic"


@dataclass(frozen=True, slots=True, order=True)
class Letter:
    """A letter of a trace word.

    Parameters
    ----------
    name : str
        Display name (``"Sigma"``, ``"W"``).
    free : bool
        True for a random matrix free from all other letters; False (default) for a
        deterministic matrix.

    Examples
    --------
    >>> Letter("W", free=True).family
    'W'
    >>> Letter("Sigma").family
    'deterministic'
    """

    name: str
    free: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidWord(f"letter name {self.name!r} must be a non-empty string")

    @property
    def family(self) -> str:
        """The free family: all deterministic letters share one, each free letter has its own."""
        return self.name if self.free else DETERMINISTIC

    def __str__(self) -> str:
        return self.name


def _as_letters(letters: Iterable[Letter | str]) -> tuple[Letter, ...]:
    out = []
    for x in letters:
        if isinstance(x, Letter):
            out.append(x)
        elif isinstance(x, str):
            out.append(Letter(x))
        else:
            raise InvalidWord(
                f"{x!r} is not a letter; use Letter(name, free=...) or a name string (a deterministic letter)"
            )
    return tuple(out)


def _least_rotation(keys: Sequence[Any]) -> int:
    n = len(keys)
    best = 0
    for i in range(1, n):
        if list(keys[i:]) + list(keys[:i]) < list(keys[best:]) + list(keys[:best]):
            best = i
    return best


@dataclass(frozen=True, slots=True)
class TraceWord:
    """A cyclic word ``tr(a_1 ... a_n)``, stored in its least rotation.

    Parameters
    ----------
    letters : iterable of Letter or str
        The letters in order; strings are deterministic letters. A name must mean
        the same kind of letter everywhere in the word.

    Raises
    ------
    InvalidWord
        If one name is used both as a free and a deterministic letter.
    """

    letters: tuple[Letter, ...]

    def __init__(self, letters: Iterable[Letter | str]) -> None:
        lets = _as_letters(letters)
        kinds: dict[str, bool] = {}
        for x in lets:
            if kinds.setdefault(x.name, x.free) != x.free:
                raise InvalidWord(
                    f"letter {x.name!r} appears both as free and as deterministic in "
                    f"{[str(y) for y in lets]}; give each matrix one kind"
                )
        if lets:
            start = _least_rotation([(x.name, x.free) for x in lets])
            lets = lets[start:] + lets[:start]
        object.__setattr__(self, "letters", lets)

    def __len__(self) -> int:
        return len(self.letters)

    def __str__(self) -> str:
        return "tr(" + " ".join(x.name for x in self.letters) + ")" if self.letters else "1"

    def __repr__(self) -> str:
        return f"TraceWord({list(self.letters)!r})"

    def _repr_latex_(self) -> str:
        inner = " ".join(x.name for x in self.letters)
        return r"$\operatorname{tr}\left(" + inner + r"\right)$"

    @property
    def free_positions(self) -> tuple[int, ...]:
        """Positions of the free letters."""
        return tuple(i for i, x in enumerate(self.letters) if x.free)

    @property
    def deterministic_positions(self) -> tuple[int, ...]:
        """Positions of the deterministic letters."""
        return tuple(i for i, x in enumerate(self.letters) if not x.free)

    @property
    def free_letters(self) -> tuple[Letter, ...]:
        """The distinct free letters, sorted by name."""
        return tuple(sorted({x for x in self.letters if x.free}))

    def is_deterministic(self) -> bool:
        """True if no free letter occurs."""
        return not self.free_positions

    def rotation_symmetry(self) -> int:
        """Number of rotations that leave the word unchanged (its cyclic symmetry order)."""
        n = len(self.letters)
        return sum(1 for r in range(n) if self.letters[r:] + self.letters[:r] == self.letters) if n else 1

    def planar_diagrams(self) -> Iterator[Diagram]:
        """Non-crossing diagrams: monochromatic non-crossing partitions of the free positions.

        Generated directly (recursion on the block of the first free position; the
        gaps it leaves are filled independently), in a deterministic order.
        """
        pos = self.free_positions
        fam = [x.family for x in self.letters]
        for blocks in _mono_noncrossing(pos, fam):
            yield Diagram._unchecked(self, tuple(sorted(blocks)))

    def all_diagrams(self) -> Iterator[Diagram]:
        """Every monochromatic partition of the free positions, planar or not (brute force)."""
        pos = self.free_positions
        fam = [x.family for x in self.letters]
        for blocks in _set_partitions(list(pos)):
            if all(len({fam[i] for i in b}) == 1 for b in blocks):
                yield Diagram._unchecked(self, tuple(sorted(tuple(b) for b in blocks)))

    def sub_word(self, positions: Sequence[int]) -> TraceWord:
        """The word made of the letters at the given positions, in that order."""
        return TraceWord([self.letters[i] for i in positions])


def _mono_noncrossing(pos: Sequence[int], fam: Sequence[str]) -> Iterator[list[tuple[int, ...]]]:
    """Non-crossing partitions of ``pos`` (in order) whose blocks are monochromatic."""
    if not pos:
        yield []
        return
    first, rest = pos[0], pos[1:]
    same = [i for i, p in enumerate(rest) if fam[p] == fam[first]]
    for k in range(len(same) + 1):
        for chosen in combinations(same, k):
            block = (first,) + tuple(rest[i] for i in chosen)
            cuts = [-1, *chosen, len(rest)]
            gaps = [rest[cuts[j] + 1 : cuts[j + 1]] for j in range(len(cuts) - 1)]
            yield from _product_of_gaps(gaps, fam, [block])


def _product_of_gaps(
    gaps: list[Sequence[int]], fam: Sequence[str], acc: list[tuple[int, ...]]
) -> Iterator[list[tuple[int, ...]]]:
    if not gaps:
        yield list(acc)
        return
    for part in _mono_noncrossing(gaps[0], fam):
        yield from _product_of_gaps(gaps[1:], fam, acc + part)


def _set_partitions(items: list[int]) -> Iterator[list[list[int]]]:
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _set_partitions(rest):
        yield [[first], *part]
        for i in range(len(part)):
            yield part[:i] + [[first, *part[i]]] + part[i + 1 :]


@dataclass(frozen=True, slots=True)
class Diagram:
    """A diagram of a trace word: blocks joining positions of equal free letters.

    Parameters
    ----------
    word : TraceWord
    blocks : iterable of iterable of int
        A partition of ``word.free_positions``; each block holds one letter.

    Examples
    --------
    >>> W, A = Letter("W", free=True), Letter("A")
    >>> d = Diagram(TraceWord([A, W, A, W]), [[1, 3]])
    >>> d.genus, d.cumulant_blocks, [str(t) for t in d.trace_factors]
    (0, (('W', 2),), ['tr(A)', 'tr(A)'])
    """

    word: TraceWord
    blocks: tuple[tuple[int, ...], ...]
    _map: Map = field(init=False, repr=False, compare=False)

    def __init__(self, word: TraceWord, blocks: Iterable[Iterable[int]]) -> None:
        bl = tuple(sorted(tuple(sorted(int(i) for i in b)) for b in blocks))
        covered = sorted(i for b in bl for i in b)
        if covered != sorted(word.free_positions):
            raise InvalidWord(
                f"blocks {bl} must cover the free positions {word.free_positions} of {word} exactly once"
            )
        for b in bl:
            names = {word.letters[i].name for i in b}
            if len(names) != 1:
                raise InvalidWord(
                    f"block {b} joins different free letters {sorted(names)}; mixed free "
                    "cumulants vanish, so each block must hold one letter"
                )
        self._init(word, bl)

    @classmethod
    def _unchecked(cls, word: TraceWord, blocks: tuple[tuple[int, ...], ...]) -> Diagram:
        obj = object.__new__(cls)
        obj._init(word, blocks)
        return obj

    def _init(self, word: TraceWord, blocks: tuple[tuple[int, ...], ...]) -> None:
        object.__setattr__(self, "word", word)
        object.__setattr__(self, "blocks", blocks)
        n = len(word)
        object.__setattr__(self, "_map", Map(cycle_permutation(n), blocks_permutation(blocks, n)))

    @property
    def map(self) -> Map:
        """The ribbon graph: ``sigma`` = the word's cyclic order, ``alpha`` = the blocks."""
        return self._map

    @property
    def genus(self) -> int:
        """Genus of the ribbon graph (0 exactly for non-crossing blocks)."""
        return self._map.genus

    @property
    def is_planar(self) -> bool:
        """True for the diagrams that survive the large-N limit."""
        return self.genus == 0

    @property
    def cumulant_blocks(self) -> tuple[tuple[str, int], ...]:
        """``(letter name, block size)`` for each block: the free cumulants it weighs."""
        return tuple((self.word.letters[b[0]].name, len(b)) for b in self.blocks)

    @property
    def trace_factors(self) -> tuple[TraceWord, ...]:
        """Deterministic traces multiplying the cumulants: one per face that has letters.

        Each face of the ribbon graph walks its deterministic letters in the word's
        cyclic order; for a planar diagram this is the Kreweras complement.
        """
        out = []
        det = set(self.word.deterministic_positions)
        for face in self._map.faces():
            letters = [self.word.letters[i] for i in face if i in det]
            if letters:
                out.append(TraceWord(letters))
        return tuple(sorted(out, key=str))

    def __str__(self) -> str:
        bl = "".join("{" + ",".join(map(str, b)) + "}" for b in self.blocks) or "{}"
        faces = " ".join(str(t) for t in self.trace_factors) or "1"
        return f"{self.word}: {bl} faces {faces}"

    def _repr_svg_(self) -> str | None:
        """Chord drawing for Jupyter (None without matplotlib, so the text repr shows)."""
        return blocks_svg(
            len(self.word), self.blocks, labels=[x.name for x in self.word.letters], style="chords"
        )

    def to_networkx(self) -> nx.MultiDiGraph:
        """Positions as nodes (attribute ``letter``), word edges ``i -> i+1`` and block cycles.

        Edges carry ``kind`` = ``'word'`` or ``'block'``. Isomorphisms of this graph
        that respect letters and kinds are the rotations mapping the diagram to itself.
        """
        g = nx.MultiDiGraph()
        n = len(self.word)
        for i, letter in enumerate(self.word.letters):
            g.add_node(i, letter=letter.name, free=letter.free)
        for i in range(n):
            g.add_edge(i, (i + 1) % n, kind="word")
        for b in self.blocks:
            if len(b) > 1:
                for j, x in enumerate(b):
                    g.add_edge(x, b[(j + 1) % len(b)], kind="block")
        return g
