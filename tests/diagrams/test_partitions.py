"""Tests of detequiv.diagrams.partitions against independent sources.

Expected values come from OEIS (A000108 Catalan, A000110 Bell), MATH.md section 7
(Narayana rows), brute force over all set partitions with a crossing check written
here from the definition, and naive reference implementations in this file (refinement
by set containment, Kreweras by its interleaving definition and by permutations,
Moebius by the defining recursion).
"""

from __future__ import annotations

import itertools
import pickle
import random
from collections import Counter

import numpy as np
import pytest

from detequiv.diagrams import partitions as P
from detequiv.diagrams.partitions import (
    NCPartition,
    catalan,
    crossing_pair,
    is_noncrossing,
    iter_label_batches,
    iter_set_partitions,
    kreweras_count,
    moebius,
    narayana,
    noncrossing_partitions,
)
from detequiv.errors import InvalidArgument, InvalidPartition

# OEIS A000108, n = 0..16
CATALAN = [
    1,
    1,
    2,
    5,
    14,
    42,
    132,
    429,
    1430,
    4862,
    16796,
    58786,
    208012,
    742900,
    2674440,
    9694845,
    35357670,
]
# OEIS A000110, n = 0..8
BELL = [1, 1, 2, 5, 15, 52, 203, 877, 4140]


# ----------------------------------------------------------------- naive references


def crosses(v, w):
    """Definition: a < b < c < d with a, c in one block and b, d in the other."""
    for a, c in itertools.combinations(sorted(v), 2):
        for b, d in itertools.combinations(sorted(w), 2):
            if a < b < c < d or b < a < d < c:
                return True
    return False


def naive_is_nc(blocks):
    return not any(crosses(v, w) for v, w in itertools.combinations(blocks, 2))


def canon(blocks):
    return tuple(sorted(tuple(sorted(b)) for b in blocks))


def rg_labels(blocks, n):
    """Restricted-growth labels computed from canonical blocks."""
    lab = [None] * n
    for i, b in enumerate(sorted(tuple(sorted(b)) for b in blocks)):
        for x in b:
            lab[x] = i
    return tuple(lab)


def naive_refines(a, b):
    """Every block of a is a subset of some block of b."""
    return all(any(set(x) <= set(y) for y in b) for x in a)


def perm_of_blocks(blocks, n):
    p = list(range(n))
    for b in blocks:
        b = sorted(b)
        for i, x in enumerate(b):
            p[x] = b[(i + 1) % len(b)]
    return p


def cycles_of(p):
    seen, out = set(), []
    for i in range(len(p)):
        if i not in seen:
            cyc, j = [], i
            while j not in seen:
                seen.add(j)
                cyc.append(j)
                j = p[j]
            out.append(tuple(sorted(cyc)))
    return canon(out)


def nc_brute(n):
    """NC(n) by filtering all set partitions with the definition-based check."""
    return [canon(b) for b in iter_set_partitions(n) if naive_is_nc(b)]


# ----------------------------------------------------------------- counts


def test_catalan_matches_oeis():
    assert [catalan(n) for n in range(len(CATALAN))] == CATALAN
    assert catalan(30) == 3814986502092304  # A000108(30), an exact int
    assert isinstance(catalan(40), int)


def test_narayana_rows_from_math_md():
    assert [narayana(4, k) for k in range(1, 5)] == [1, 6, 6, 1]
    assert [narayana(5, k) for k in range(1, 6)] == [1, 10, 20, 10, 1]
    assert narayana(0, 0) == 1 and narayana(3, 0) == 0 and narayana(3, 4) == 0


def test_iter_set_partitions_bell_numbers():
    for n, bell in enumerate(BELL):
        parts = list(iter_set_partitions(n))
        assert len(parts) == bell
        assert len(set(parts)) == bell
        for blocks in parts:
            assert sorted(x for b in blocks for x in b) == list(range(n))


@pytest.mark.parametrize("n", range(0, 11))
def test_object_enumeration_count_is_catalan(n):
    parts = list(noncrossing_partitions(n))
    assert len(parts) == CATALAN[n]
    assert len(set(parts)) == CATALAN[n]
    assert all(type(p) is NCPartition and p.n == n for p in parts)


@pytest.mark.parametrize("n", range(0, 15))
def test_compact_enumeration_count_is_catalan(n):
    total = 0
    batches = iter_label_batches(n, batch_size=50_000)
    for batch in batches:
        assert batch.dtype == np.int8 and batch.ndim == 2 and batch.shape[1] == n
        total += len(batch)
        # full batches until the last one
        assert len(batch) == 50_000 or total == CATALAN[n]
    assert total == CATALAN[n]


@pytest.mark.slow
@pytest.mark.parametrize("n", [15, 16])
def test_compact_enumeration_count_is_catalan_large(n):
    assert sum(len(b) for b in iter_label_batches(n)) == CATALAN[n]


@pytest.mark.parametrize("n", range(0, 9))
def test_enumeration_equals_brute_force_in_lexicographic_order(n):
    brute = nc_brute(n)
    expected = sorted(brute, key=lambda b: rg_labels(b, n))
    got = [p.blocks for p in noncrossing_partitions(n)]
    assert got == expected
    for p in noncrossing_partitions(n):
        assert is_noncrossing(p.blocks) and naive_is_nc(p.blocks)
        assert p.labels == rg_labels(p.blocks, n)


@pytest.mark.parametrize("n", [9, 10, 12])
def test_compact_rows_sorted_distinct_restricted_growth_noncrossing(n):
    rows = np.concatenate(list(iter_label_batches(n, batch_size=4096))).astype(np.int64)
    assert len(rows) == CATALAN[n]
    # strictly increasing lexicographically => distinct and in the promised order
    diff = rows[1:] - rows[:-1]
    first = np.argmax(diff != 0, axis=1)
    assert np.all(diff[np.arange(len(diff)), first] > 0)
    # restricted growth: label[i] <= max(label[:i]) + 1, label[0] == 0
    assert np.all(rows[:, 0] == 0)
    running = np.maximum.accumulate(rows, axis=1)
    assert np.all(rows[:, 1:] <= running[:, :-1] + 1)
    # a random sample is non-crossing by the definition
    rnd = random.Random(n)
    for i in rnd.sample(range(len(rows)), 300):
        lab = rows[i].tolist()
        blocks = [[j for j in range(n) if lab[j] == b] for b in range(max(lab) + 1)]
        assert naive_is_nc(blocks)


@pytest.mark.parametrize("n", range(0, 11))
def test_compact_rows_equal_object_labels(n):
    rows = [tuple(r) for b in iter_label_batches(n, batch_size=97) for r in b.tolist()]
    assert rows == [p.labels for p in noncrossing_partitions(n)]


@pytest.mark.parametrize("n", range(0, 9))
def test_narayana_against_brute_force(n):
    by_k = Counter(len(b) for b in nc_brute(n))
    for k in range(0, n + 2):
        assert narayana(n, k) == by_k.get(k, 0)


@pytest.mark.parametrize("n", range(0, 11))
def test_num_blocks_enumeration(n):
    full = list(noncrossing_partitions(n))
    counts = Counter(len(p.blocks) for p in full)
    for k in range(0, n + 2):
        got = list(noncrossing_partitions(n, num_blocks=k))
        assert got == [p for p in full if len(p.blocks) == k]
        assert len(got) == narayana(n, k) == counts.get(k, 0)
        rows = [tuple(r) for b in iter_label_batches(n, num_blocks=k, batch_size=61) for r in b.tolist()]
        assert rows == [p.labels for p in got]


@pytest.mark.parametrize("n", range(0, 10))
def test_kreweras_count_against_enumeration_by_block_type(n):
    full = list(noncrossing_partitions(n))
    by_type = {}
    for p in full:
        t = tuple(sorted((len(b) for b in p.blocks), reverse=True))
        by_type.setdefault(t, []).append(p)
    assert sum(len(v) for v in by_type.values()) == CATALAN[n]
    rnd = random.Random(n)
    for t, parts in by_type.items():
        assert kreweras_count(t) == len(parts)
        shuffled = list(t)
        rnd.shuffle(shuffled)
        assert list(noncrossing_partitions(n, block_sizes=shuffled)) == parts
        rows = [
            tuple(r) for b in iter_label_batches(n, block_sizes=shuffled, batch_size=53) for r in b.tolist()
        ]
        assert rows == [p.labels for p in parts]


@pytest.mark.parametrize("ratio", [0, 10**9])
def test_both_block_type_strategies(monkeypatch, ratio):
    """Exact pruned search (ratio 0) and Narayana-then-filter (huge ratio) agree."""
    monkeypatch.setattr(P, "_FILTER_RATIO", ratio)
    monkeypatch.setattr(P, "_SMALL", 0)
    for n in range(1, 10):
        full = list(P._py_codes(n, None))
        types = Counter(tuple(sorted(Counter(c).values(), reverse=True)) for c in full)
        for t in types:
            want = [tuple(c) for c in full if sorted(Counter(c).values(), reverse=True) == list(t)]
            got = [p.labels for p in noncrossing_partitions(n, block_sizes=t)]
            assert got == want
            assert len(got) == types[t]


def test_kreweras_count_closed_form_examples():
    # non-crossing pairings of 2m points are counted by Catalan(m)
    for m in range(0, 9):
        assert kreweras_count([2] * m) == CATALAN[m]
    assert kreweras_count([]) == 1
    assert kreweras_count([1] * 7) == 1 and kreweras_count([7]) == 1
    assert kreweras_count([3, 3]) == 3  # {012}{345}, {015}{234}, {045}{123}
    assert kreweras_count([3, 3]) == sum(1 for b in nc_brute(6) if sorted(map(len, b)) == [3, 3])


def test_pairings_of_20_points_stream():
    pairings = noncrossing_partitions(20, block_sizes=[2] * 10)
    first = next(pairings)
    assert first.blocks == (
        (0, 1),
        (2, 3),
        (4, 5),
        (6, 7),
        (8, 9),
        (10, 11),
        (12, 13),
        (14, 15),
        (16, 17),
        (18, 19),
    )
    assert 1 + sum(1 for _ in pairings) == CATALAN[10]


def test_streaming_is_lazy_for_large_n():
    it = noncrossing_partitions(40)
    assert next(it) == NCPartition.one(40)
    second = next(it)
    assert second.blocks == (tuple(range(39)), (39,))
    batch = next(iter_label_batches(40, batch_size=10))
    assert batch.shape == (10, 40)
    assert batch[0].tolist() == [0] * 40 and batch[1].tolist() == [0] * 39 + [1]


def test_large_n_with_few_blocks():
    got = list(noncrossing_partitions(150, num_blocks=2))
    assert len(got) == 150 * 149 // 2  # narayana(n, 2) = C(n, 2)
    assert all(len(p) == 2 and p.n == 150 for p in got[::997])
    assert len(set(got)) == len(got)


# ----------------------------------------------------------------- the value


def test_canonical_equality_and_hash():
    a = NCPartition([[3, 0], [2, 1], [4]])
    b = NCPartition([(4,), (1, 2), (0, 3)])
    c = NCPartition.from_labels(["x", "y", "y", "x", 7])
    assert a == b == c and hash(a) == hash(b) == hash(c)
    assert a.blocks == ((0, 3), (1, 2), (4,))
    assert len({a, b, c}) == 1
    assert a != NCPartition([[0, 3], [1], [2], [4]])
    assert a != a.blocks  # no equality with plain tuples
    assert NCPartition(np.array([[0, 1], [2, 3]])) == NCPartition([[0, 1], [2, 3]])


def test_from_labels_canonicalises():
    p = NCPartition.from_labels([5, 5, 2, 5, 9])
    assert p.labels == (0, 0, 1, 0, 2)
    assert p.blocks == ((0, 1, 3), (2,), (4,))
    assert NCPartition.from_labels([]) == NCPartition([])


def test_basic_attributes():
    p = NCPartition([[0, 4, 5], [1, 2], [3], [6, 7]])
    assert p.n == 8 and len(p) == 4
    assert p.block_type == (3, 2, 2, 1)
    assert list(p) == [(0, 4, 5), (1, 2), (3,), (6, 7)]
    assert not p.is_pairing
    assert NCPartition([[0, 3], [1, 2]]).is_pairing
    assert NCPartition.zero(3).blocks == ((0,), (1,), (2,))
    assert NCPartition.one(3).blocks == ((0, 1, 2),)
    assert NCPartition.zero(0) == NCPartition.one(0) == NCPartition([])
    assert NCPartition([]).n == 0 and len(NCPartition([])) == 0


def test_str_repr_latex():
    p = NCPartition([[1, 2], [0, 3]])
    assert str(p) == "{0,3}{1,2}"
    assert repr(p) == "NCPartition(((0, 3), (1, 2)))"
    assert p._repr_latex_() == r"$\{0,3\}\,\{1,2\}$"
    assert repr(NCPartition([[0]])) == "NCPartition(((0,),))"


@pytest.mark.parametrize("n", range(0, 7))
def test_repr_and_pickle_round_trip(n):
    ns = {"NCPartition": NCPartition}
    for p in noncrossing_partitions(n):
        q = eval(repr(p), ns)
        assert q == p and q.blocks == p.blocks
        assert pickle.loads(pickle.dumps(p)) == p


def test_immutable():
    p = NCPartition([[0, 1]])
    with pytest.raises(AttributeError):
        p.n = 3
    with pytest.raises(AttributeError):
        p._c = b"\x00"
    with pytest.raises(AttributeError):
        del p._c


@pytest.mark.parametrize("n", range(0, 8))
def test_constructor_agrees_with_brute_force_on_all_set_partitions(n):
    rnd = random.Random(100 + n)
    for blocks in iter_set_partitions(n):
        shuffled = [rnd.sample(b, len(b)) for b in blocks]
        rnd.shuffle(shuffled)
        if crossing_pair(blocks) is None:
            p = NCPartition(shuffled)
            assert p.blocks == canon(blocks)
            assert NCPartition.from_labels(rg_labels(blocks, n)) == p
        else:
            with pytest.raises(InvalidPartition, match="cross"):
                NCPartition(shuffled)
            with pytest.raises(InvalidPartition, match="cross"):
                NCPartition.from_labels(rg_labels(blocks, n))


def test_to_permutation_cycles_are_blocks_in_increasing_order():
    for n in range(0, 8):
        for p in noncrossing_partitions(n):
            perm = p.to_permutation()
            assert list(perm) == perm_of_blocks(p.blocks, n)
            assert sorted(perm) == list(range(n))


# ----------------------------------------------------------------- errors


def test_crossing_error_names_blocks_and_positions():
    with pytest.raises(InvalidPartition) as info:
        NCPartition([[0, 2], [1, 3]])
    msg = str(info.value)
    assert "(0, 2)" in msg and "(1, 3)" in msg and "0 < 1 < 2 < 3" in msg
    with pytest.raises(InvalidPartition) as info:
        NCPartition([[0, 4], [1, 2, 5], [3]])
    msg = str(info.value)
    assert "(0, 4)" in msg and "(1, 2, 5)" in msg and "0 < 1 < 4 < 5" in msg
    with pytest.raises(InvalidPartition, match=r"\(0, 2\) and \(1, 3\)"):
        NCPartition.from_labels("abab")


def test_overlap_missing_negative_non_int_errors():
    with pytest.raises(InvalidPartition, match=r"position 1 is in two blocks, \(0, 1\) and \(1, 2\)"):
        NCPartition([[0, 1], [1, 2]])
    with pytest.raises(InvalidPartition, match="position 1 appears twice"):
        NCPartition([[0, 1, 1]])
    with pytest.raises(InvalidPartition, match=r"positions 1, 3 are missing.*0 \.\. 4"):
        NCPartition([[0, 2], [4]])
    with pytest.raises(InvalidPartition, match="position 0 is missing"):
        NCPartition([[1]])
    with pytest.raises(InvalidPartition, match="negative position -1"):
        NCPartition([[-1, 0]])
    with pytest.raises(InvalidPartition, match=r"'a'.*not an integer|must be an integer"):
        NCPartition([[0, "a"]])
    with pytest.raises(InvalidPartition, match="must be an integer"):
        NCPartition([[0, 1.0]])
    with pytest.raises(InvalidPartition, match="bool"):
        NCPartition([[0, True]])
    with pytest.raises(InvalidPartition, match="empty"):
        NCPartition([[0], []])
    with pytest.raises(InvalidPartition, match="iterable of blocks"):
        NCPartition(5)
    with pytest.raises(InvalidPartition, match="unhashable"):
        NCPartition.from_labels([[0], [0]])


@pytest.mark.parametrize("bad", [-1, 2.5, "3", True, None])
def test_bad_n_raises_invalid_argument(bad):
    for f in (
        catalan,
        lambda n: noncrossing_partitions(n),
        lambda n: iter_label_batches(n),
        NCPartition.zero,
        NCPartition.one,
        lambda n: iter_set_partitions(n),
        lambda n: narayana(n, 1),
    ):
        with pytest.raises(InvalidArgument, match="n must be"):
            f(bad)
    with pytest.raises(InvalidArgument, match="k must be"):
        narayana(3, bad)


def test_constraint_errors():
    with pytest.raises(InvalidArgument, match=r"sum to 5, not n = 6"):
        noncrossing_partitions(6, block_sizes=[2, 3])
    with pytest.raises(InvalidArgument, match="num_blocks = 3 contradicts"):
        noncrossing_partitions(4, num_blocks=3, block_sizes=[2, 2])
    with pytest.raises(InvalidArgument, match="positive integers, got 0"):
        kreweras_count([2, 0])
    with pytest.raises(InvalidArgument, match="block size"):
        kreweras_count([2, 1.5])
    with pytest.raises(InvalidArgument, match="num_blocks must be a non-negative"):
        noncrossing_partitions(4, num_blocks=-1)
    with pytest.raises(InvalidArgument, match="batch_size must be a positive"):
        iter_label_batches(4, batch_size=0)
    with pytest.raises(InvalidArgument, match="block_sizes must be an iterable"):
        noncrossing_partitions(4, block_sizes=4)


def test_lattice_argument_errors():
    a, b = NCPartition.zero(3), NCPartition.zero(4)
    for op in (a.refines, a.meet, a.join):
        with pytest.raises(InvalidArgument, match="same n, got n = 3 and n = 4"):
            op(b)
        with pytest.raises(InvalidArgument, match="needs an NCPartition"):
            op([[0, 1, 2]])
    with pytest.raises(InvalidArgument, match="does not refine"):
        moebius(NCPartition.one(3), NCPartition.zero(3))
    with pytest.raises(InvalidArgument, match="same n"):
        moebius(a, NCPartition.one(4))


# ----------------------------------------------------------------- brute-force helpers


def test_crossing_pair_examples():
    assert crossing_pair([[0, 2], [1, 3]]) == ((0, 2), (1, 3))
    assert crossing_pair([[3, 1], [2, 0]]) == ((0, 2), (1, 3))
    assert crossing_pair([[0, 4], [1, 2, 5], [3]]) == ((0, 4), (1, 2, 5))
    assert crossing_pair([[0, 5], [1, 4], [2, 3]]) is None
    assert crossing_pair([]) is None
    assert is_noncrossing([[0, 1], [2, 3]]) and not is_noncrossing([[0, 3, 5], [1, 4]])
    with pytest.raises(InvalidPartition, match="overlaps"):
        crossing_pair([[0, 1], [1, 2]])


def test_crossing_pair_agrees_with_definition():
    for n in range(0, 8):
        for blocks in iter_set_partitions(n):
            pair = crossing_pair(blocks)
            assert (pair is None) == naive_is_nc(blocks)
            if pair is not None:
                assert crosses(*pair) and pair[0] in blocks and pair[1] in blocks


# ----------------------------------------------------------------- Kreweras


def test_kreweras_examples():
    assert NCPartition([[0, 2], [1], [3]]).kreweras() == NCPartition([[0, 1], [2, 3]])
    for n in range(0, 7):
        assert NCPartition.one(n).kreweras() == NCPartition.zero(n)
        assert NCPartition.zero(n).kreweras() == NCPartition.one(n)


@pytest.mark.parametrize("n", range(0, 10))
def test_kreweras_counts_rotation_inverse_bijection(n):
    parts = list(noncrossing_partitions(n))
    images = set()
    for p in parts:
        k = p.kreweras()
        assert len(p.blocks) + len(k.blocks) == n + 1 or n == 0
        assert naive_is_nc(k.blocks)
        # K twice is a rotation one step to the left: blocks {v - 1 mod n}
        assert k.kreweras().blocks == canon([[(v - 1) % n for v in b] for b in p.blocks])
        assert k.kreweras() == p.rotate(-1)
        assert k.kreweras_inverse() == p
        assert p.kreweras_inverse().kreweras() == p
        images.add(k)
    assert images == set(parts)


@pytest.mark.parametrize("n", range(1, 9))
def test_kreweras_is_pi_inverse_gamma(n):
    """K(pi)(i) = pi^{-1}(gamma(i)), with permutations built here from the blocks."""
    gamma = [(i + 1) % n for i in range(n)]
    for p in noncrossing_partitions(n):
        perm = perm_of_blocks(p.blocks, n)
        inv = [0] * n
        for i, j in enumerate(perm):
            inv[j] = i
        k = [inv[gamma[i]] for i in range(n)]
        assert cycles_of(k) == p.kreweras().blocks
        # and the cycles of K(pi) are again increasing: K(pi) as a permutation equals k
        assert list(p.kreweras().to_permutation()) == k


@pytest.mark.parametrize("n", range(1, 6))
def test_kreweras_is_maximal_interleaved_complement(n):
    """Kreweras' definition: the coarsest sigma with pi on 0,2,4,.. and sigma on the
    slots 1,3,5,.. (slot 2i+1 between i and i+1) non-crossing together."""
    nc = nc_brute(n)
    for pi in nc:
        doubled_pi = [[2 * x for x in b] for b in pi]
        ok = [s for s in nc if naive_is_nc(doubled_pi + [[2 * x + 1 for x in b] for b in s])]
        coarsest = [s for s in ok if all(naive_refines(t, s) for t in ok)]
        assert len(coarsest) == 1
        assert NCPartition(pi).kreweras().blocks == coarsest[0]


# ----------------------------------------------------------------- lattice


def refinement_matrix(parts):
    return np.array([[naive_refines(a.blocks, b.blocks) for b in parts] for a in parts])


@pytest.mark.parametrize("n", range(0, 7))
def test_refines_and_kreweras_reverses_order(n):
    parts = list(noncrossing_partitions(n))
    kre = [p.kreweras() for p in parts]
    for a, ka in zip(parts, kre, strict=True):
        for b, kb in zip(parts, kre, strict=True):
            le = a.refines(b)
            assert le == naive_refines(a.blocks, b.blocks)
            assert le == kb.refines(ka)


@pytest.mark.parametrize("n", range(0, 6))
def test_meet_and_join_are_glb_and_lub(n):
    parts = list(noncrossing_partitions(n))
    le = refinement_matrix(parts)
    index = {p: i for i, p in enumerate(parts)}
    for i, a in enumerate(parts):
        for j, b in enumerate(parts):
            lower = np.flatnonzero(le[:, i] & le[:, j])
            glb = [z for z in lower if le[lower, z].all()]
            upper = np.flatnonzero(le[i, :] & le[j, :])
            lub = [z for z in upper if le[z, upper].all()]
            assert len(glb) == 1 and len(lub) == 1
            assert index[a.meet(b)] == glb[0]
            assert index[a.join(b)] == lub[0]


def test_join_is_not_the_set_partition_join():
    a = NCPartition([[0, 2], [1], [3]])
    b = NCPartition([[0], [1, 3], [2]])
    assert a.join(b) == NCPartition.one(4)  # the set join {0,2}{1,3} crosses
    assert a.meet(b) == NCPartition.zero(4)


@pytest.mark.parametrize("n", range(0, 7))
def test_moebius_against_defining_recursion(n):
    parts = list(noncrossing_partitions(n))
    m = len(parts)
    le = refinement_matrix(parts)
    order = sorted(range(m), key=lambda i: -len(parts[i].blocks))  # a linear extension
    for x in range(m):
        mu = np.zeros(m, dtype=np.int64)
        mu[x] = 1
        for y in order:
            if y != x and le[x, y]:
                below = le[x, :] & le[:, y]
                below[y] = False
                mu[y] = -mu[below].sum()
        for y in range(m):
            if le[x, y]:
                assert moebius(parts[x], parts[y]) == mu[y]
            else:
                with pytest.raises(InvalidArgument):
                    moebius(parts[x], parts[y])
        assert moebius(parts[x]) == mu[index_of_one(parts)]


def index_of_one(parts):
    return next(i for i, p in enumerate(parts) if len(p.blocks) <= 1)


def test_moebius_bottom_top_is_signed_catalan():
    for n in range(1, 12):
        assert moebius(NCPartition.zero(n)) == (-1) ** (n - 1) * CATALAN[n - 1]
        assert moebius(NCPartition.one(n)) == 1


def test_table_cache_eviction_keeps_output(monkeypatch):
    """With no room for widened tables (rebuilt every time) the rows are unchanged."""

    class Tiny(P._Tables):
        def __init__(self, constrained, rows_budget=0):
            super().__init__(constrained, rows_budget=0)

    expected = {
        n: [r for b in iter_label_batches(n, batch_size=40) for r in b.tolist()] for n in range(1, 10)
    }
    monkeypatch.setattr(P, "_Tables", Tiny)
    for n in range(1, 10):
        got = [r for b in iter_label_batches(n, batch_size=40) for r in b.tolist()]
        assert got == expected[n]
        assert [tuple(r) for r in got] == [p.labels for p in noncrossing_partitions(n)]
