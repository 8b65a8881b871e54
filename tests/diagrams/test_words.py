"""Trace words, ribbon graphs and genus, against brute force and closed forms."""

from __future__ import annotations

import itertools
from collections import Counter
from math import comb, factorial

import pytest

from detequiv.diagrams.graphs import automorphism_count, is_isomorphic, isomorphism_classes
from detequiv.diagrams.maps import Map, blocks_permutation, cycle_permutation
from detequiv.diagrams.words import Diagram, Letter, TraceWord
from detequiv.errors import InvalidArgument, InvalidWord

W = Letter("W", free=True)
V = Letter("V", free=True)
A, B = Letter("A"), Letter("B")


def brute_set_partitions(items):
    """All set partitions, written independently of the package."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in brute_set_partitions(rest):
        yield [[first], *part]
        for i in range(len(part)):
            yield part[:i] + [[first, *part[i]]] + part[i + 1 :]


def brute_crosses(blocks):
    """True if some a < b < c < d has a, c in one block and b, d in another."""
    where = {x: i for i, b in enumerate(blocks) for x in b}
    n = len(where)
    for a, b, c, d in itertools.combinations(range(n), 4):
        if where[a] == where[c] and where[b] == where[d] and where[a] != where[b]:
            return True
    return False


def catalan(n):
    return comb(2 * n, n) // (n + 1)


@pytest.mark.parametrize("n", range(1, 9))
def test_genus_zero_iff_noncrossing(n):
    gamma = cycle_permutation(n)
    seen = 0
    for blocks in brute_set_partitions(list(range(n))):
        g = Map(gamma, blocks_permutation(blocks, n)).genus
        assert (g == 0) == (not brute_crosses(blocks)), blocks
        seen += 1
    bell = [1, 1, 2, 5, 15, 52, 203, 877, 4140]
    assert seen == bell[n]


def test_genus_of_pairings_harer_zagier():
    # epsilon_g(m): pairings of 2m points on one vertex by genus (OEIS A035309)
    expected = {2: {0: 2, 1: 1}, 3: {0: 5, 1: 10}, 4: {0: 14, 1: 70, 2: 21}}
    for m, want in expected.items():
        n = 2 * m
        got = Counter()
        for blocks in brute_set_partitions(list(range(n))):
            if all(len(b) == 2 for b in blocks):
                got[Map(cycle_permutation(n), blocks_permutation(blocks, n)).genus] += 1
        assert dict(got) == want


def test_euler_relation_kreweras_size():
    # |pi| + |faces| = n + 1 for planar one-vertex maps (faces = Kreweras complement)
    n = 6
    for blocks in brute_set_partitions(list(range(n))):
        m = Map(cycle_permutation(n), blocks_permutation(blocks, n))
        if not brute_crosses(blocks):
            assert len(m.hyperedges()) + len(m.faces()) == n + 1


def test_map_rejects_non_permutations():
    with pytest.raises(InvalidArgument, match="not a permutation"):
        Map((0, 0, 1), (0, 1, 2))
    with pytest.raises(InvalidArgument, match="same positions"):
        Map((1, 0), (0, 1, 2))


def test_two_vertex_map_genus():
    # tr(W W) tr(W W) with the crossing-free pairing across traces: sphere (genus 0)
    sigma = (1, 0, 3, 2)
    assert Map(sigma, blocks_permutation([[0, 2], [1, 3]], 4)).genus == 0
    assert Map(sigma, blocks_permutation([[0, 2], [1, 3]], 4)).num_components == 1
    assert Map(sigma, (0, 1, 2, 3)).num_components == 2


@pytest.mark.parametrize("n", range(1, 9))
def test_planar_diagram_counts_are_catalan(n):
    assert sum(1 for _ in TraceWord([W] * n).planar_diagrams()) == catalan(n)
    assert sum(1 for _ in TraceWord([A, W] * n).planar_diagrams()) == catalan(n)


def test_planar_diagrams_are_the_genus_zero_diagrams():
    words = [
        TraceWord([W, A, V, W, B, V, W, V]),
        TraceWord([W, V, W, V, W, V]),
        TraceWord([W, W, A, W, V, V, B]),
    ]
    for word in words:
        planar = {d.blocks for d in word.planar_diagrams()}
        brute = {d.blocks for d in word.all_diagrams() if not brute_crosses(_relabel(d))}
        assert planar == brute
        assert planar == {d.blocks for d in word.all_diagrams() if d.genus == 0}
        # no mixed blocks
        for blocks in planar:
            for b in blocks:
                assert len({word.letters[i] for i in b}) == 1


def _relabel(d):
    pos = d.word.free_positions
    idx = {p: i for i, p in enumerate(pos)}
    return [[idx[x] for x in b] for b in d.blocks]


def test_faces_are_the_kreweras_traces():
    # tr(A1 W A2 W A3 W): planar blocks pi on the W's; faces group A_i by K(pi)
    a = [Letter(f"A{i}") for i in range(3)]
    word = TraceWord([a[0], W, a[1], W, a[2], W])
    faces = {d.blocks: sorted(str(t) for t in d.trace_factors) for d in word.planar_diagrams()}
    # one block {W,W,W}: K = singletons -> tr(A0) tr(A1) tr(A2)
    assert faces[((1, 3, 5),)] == ["tr(A0)", "tr(A1)", "tr(A2)"]
    # all singletons: K = one block -> tr(A0 A1 A2)
    assert faces[((1,), (3,), (5,))] == ["tr(A0 A1 A2)"]
    # {W1, W3} with W5 alone: A1 between them is cut off
    assert faces[((1, 3), (5,))] == ["tr(A0 A2)", "tr(A1)"]


def test_word_canonical_rotation_and_errors():
    assert TraceWord([A, W, B]) == TraceWord([B, A, W]) == TraceWord([W, B, A])
    assert TraceWord([A, W, B]) != TraceWord([B, W, A])
    assert hash(TraceWord([W, A])) == hash(TraceWord([A, W]))
    with pytest.raises(InvalidWord, match="both as free and as deterministic"):
        TraceWord([Letter("W", free=True), Letter("W")])
    with pytest.raises(InvalidWord, match="not a letter"):
        TraceWord([A, 3])
    with pytest.raises(InvalidWord, match="cover the free positions"):
        Diagram(TraceWord([A, W, A, W]), [[1]])
    with pytest.raises(InvalidWord, match="one letter"):
        Diagram(TraceWord([W, V]), [[0, 1]])


def test_isomorphism_classes_orbit_stabilizer():
    for n in (4, 5, 6):
        word = TraceWord([W] * n)
        diagrams = list(word.planar_diagrams())
        classes = isomorphism_classes(diagrams)
        assert sum(c for _, c in classes) == catalan(n)
        for rep, count in classes:
            assert count * automorphism_count(rep) == n
    # number of classes = rotation orbits of non-crossing partitions, by brute force
    for n in (5, 6, 7):
        orbits = set()
        for blocks in brute_set_partitions(list(range(n))):
            if not brute_crosses(blocks):
                orbits.add(min(_rotated(blocks, r, n) for r in range(n)))
        assert len(isomorphism_classes(TraceWord([W] * n).planar_diagrams())) == len(orbits)


def _rotated(blocks, r, n):
    return tuple(sorted(tuple(sorted((x + r) % n for x in b)) for b in blocks))


def test_isomorphism_respects_letters():
    word = TraceWord([A, W, B, W])
    d1, d2 = list(word.planar_diagrams())
    assert not is_isomorphic(d1, d2)
    # a word with no symmetry: every diagram is its own class
    assert all(c == 1 for _, c in isomorphism_classes(word.planar_diagrams()))
    assert word.rotation_symmetry() == 1
    assert TraceWord([A, W] * 3).rotation_symmetry() == 3


def test_drawing_writes_png_and_svg(tmp_path):
    pytest.importorskip("matplotlib")
    from detequiv.diagrams.drawing import draw_diagram

    d = next(iter(TraceWord([A, W, A, W, W, W]).planar_diagrams()))
    for suffix, magic in ((".png", b"\x89PNG"), (".svg", b"<?xml")):
        path = tmp_path / f"d{suffix}"
        draw_diagram(d, style="chords", path=str(path))
        assert path.read_bytes().startswith(magic)
    with pytest.raises(InvalidArgument, match="style"):
        draw_diagram(d, style="boxes")


def test_factorial_sanity_of_bruteforce():
    # the brute-force generator itself: Bell(5) = 52 and pairings of 6 points = 5!! = 15
    parts = list(brute_set_partitions(list(range(6))))
    assert sum(1 for p in parts if all(len(b) == 2 for b in p)) == factorial(6) // (factorial(3) * 8)


def test_notebook_svg_reprs():
    pytest.importorskip("matplotlib")
    from detequiv.diagrams.partitions import NCPartition

    svg = NCPartition([[0, 3], [1, 2]])._repr_svg_()
    assert svg is not None and "<svg" in svg
    d = next(iter(TraceWord([A, W, A, W]).planar_diagrams()))
    assert "<svg" in d._repr_svg_()
