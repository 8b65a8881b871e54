"""Moments <-> free cumulants, checked against brute force over NC(n) and closed forms.

Every expected value comes from an independent source: sums over non-crossing
partitions enumerated here by brute force, the Moebius function computed on the lattice
NC(n) by brute force, Narayana / Catalan numbers from binomials, MATH.md section 7.
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction
from math import comb

import pytest
import sympy as sp

from detequiv.derivations import cumulants as C
from detequiv.derivations.cumulants import (
    cumulant_coefficient,
    cumulant_symbols,
    cumulants_from_moments,
    moment_symbols,
    moments_from_cumulants,
)
from detequiv.derivations.quantities import tr
from detequiv.errors import InvalidArgument

# ------------------------------------------------------------------------ brute force


def set_partitions(n):
    """All set partitions of 1..n as lists of blocks (restricted growth strings)."""

    def grow(i, blocks):
        if i > n:
            yield [tuple(b) for b in blocks]
            return
        for b in blocks:
            b.append(i)
            yield from grow(i + 1, blocks)
            b.pop()
        blocks.append([i])
        yield from grow(i + 1, blocks)
        blocks.pop()

    yield from grow(1, [])


def crosses(p):
    for a, b in itertools.permutations(p, 2):
        for a1, a2 in itertools.combinations(a, 2):
            for b1, b2 in itertools.combinations(b, 2):
                if a1 < b1 < a2 < b2:
                    return True
    return False


def nc_partitions(n):
    return [p for p in set_partitions(n) if not crosses(p)]


def refines(p, q):
    return all(any(set(a) <= set(b) for b in q) for a in p)


def moebius_to_top(n):
    """mu(pi, 1_n) on NC(n), from mu(1,1) = 1 and sum_{pi <= s <= 1} mu(s, 1) = 0."""
    parts = sorted(nc_partitions(n), key=len)  # coarser first
    mu = {}
    for p in parts:
        key = tuple(p)
        if len(p) == 1:
            mu[key] = 1
            continue
        mu[key] = -sum(mu[tuple(s)] for s in parts if len(s) < len(p) and refines(p, s))
    return mu


def nc_moment(n, kappa):
    return sp.expand(sum(sp.Mul(*[kappa[len(b)] for b in p]) for p in nc_partitions(n)))


def moebius_cumulant(n, m, mu):
    return sp.expand(sum(mu[tuple(p)] * sp.Mul(*[m[len(b)] for b in p]) for p in mu))


def rebuilt(e):
    """The same sum rebuilt with sympy's own (flattening, sorting) constructors."""
    if isinstance(e, sp.Add):
        return sp.Add(*[sp.Mul(*a.args) if a.is_Mul else a for a in e.args])
    if isinstance(e, sp.Mul):
        return sp.Mul(*e.args)
    return e


def assert_canonical(e):
    r = rebuilt(e)
    assert r.args == e.args and hash(r) == hash(e) and r == e
    for a in e.args:
        if a.is_Mul:
            assert sp.Mul(*a.args).args == a.args


def catalan(n):
    return comb(2 * n, n) // (n + 1)


def narayana(n, k):
    return comb(n, k) * comb(n, k - 1) // n


# ------------------------------------------------------------- the brute force itself


def test_brute_force_counts():
    # Bell numbers and Catalan numbers: the enumeration and the crossing test are right
    assert [len(list(set_partitions(n))) for n in range(1, 8)] == [
        1,
        2,
        5,
        15,
        52,
        203,
        877,
    ]
    assert [len(nc_partitions(n)) for n in range(1, 8)] == [catalan(n) for n in range(1, 8)]
    assert crosses([(1, 3), (2, 4)]) and not crosses([(1, 4), (2, 3)])


def test_brute_force_moebius_closed_values():
    # mu(0_n, 1_n) = (-1)^(n-1) C_(n-1) (Speicher): checks the lattice code
    for n in range(1, 6):
        mu = moebius_to_top(n)
        zero = tuple((i,) for i in range(1, n + 1))
        assert mu[zero] == (-1) ** (n - 1) * catalan(n - 1)


# -------------------------------------------------------------------- generic symbols


@pytest.mark.parametrize("n", range(1, 9))
def test_moments_equal_sum_over_nc(n):
    kappa = dict(enumerate(cumulant_symbols(n), start=1))
    got = moments_from_cumulants(n)
    assert got[-1] == nc_moment(n, kappa)


def test_all_orders_returned_at_once():
    got = moments_from_cumulants(8)
    assert len(got) == 8
    kappa = dict(enumerate(cumulant_symbols(8), start=1))
    for n in range(1, 9):
        assert got[n - 1] == nc_moment(n, kappa)


@pytest.mark.parametrize("n", range(1, 7))
def test_cumulants_equal_moebius_inversion_brute_force(n):
    m = dict(enumerate(moment_symbols(n), start=1))
    assert cumulants_from_moments(n)[-1] == moebius_cumulant(n, m, moebius_to_top(n))


@pytest.mark.parametrize("n", [7, 8])
def test_cumulants_equal_moebius_inversion_library(n):
    partitions = pytest.importorskip("detequiv.diagrams.partitions")
    m = moment_symbols(n)
    want = sp.expand(
        sum(
            partitions.moebius(p) * sp.Mul(*[m[len(b) - 1] for b in p.blocks])
            for p in partitions.noncrossing_partitions(n)
        )
    )
    assert cumulants_from_moments(n)[-1] == want


@pytest.mark.parametrize("n", range(1, 7))
def test_cumulant_coefficient_is_moebius_sum_by_type(n):
    sums = {}
    for p, value in moebius_to_top(n).items():
        key = tuple(sorted(len(b) for b in p))
        sums[key] = sums.get(key, 0) + value
    for lam, value in sums.items():
        assert cumulant_coefficient(lam) == value


def test_closed_form_inverse_is_integral_and_matches_fraction_formula():
    # the formula (-1)^(k-1) (n+k-2)! / ((n-1)! prod mu_i!) evaluated with Fractions
    from math import factorial

    for n in range(1, 13):
        for lam in sp.utilities.iterables.partitions(n):
            sizes = [s for s, mult in lam.items() for _ in range(mult)]
            k = len(sizes)
            den = factorial(n - 1)
            for mult in lam.values():
                den *= factorial(mult)
            exact = Fraction((-1) ** (k - 1) * factorial(n + k - 2), den)
            assert exact.denominator == 1
            assert cumulant_coefficient(sizes) == exact


@pytest.mark.parametrize("direction", ["moments", "cumulants"])
def test_generic_output_is_canonical_sympy(direction):
    fn = moments_from_cumulants if direction == "moments" else cumulants_from_moments
    for e in fn(14):
        assert_canonical(e)


@pytest.mark.parametrize("direction", ["moments", "cumulants"])
def test_other_generators_canonical_and_correct(direction):
    # traces, undefined functions and symbols of mixed classes, in scrambled order
    A = sp.Symbol("A", commutative=False)
    f = sp.Function("f")
    gens = [
        sp.Symbol("b"),
        tr(A**2),
        f(1),
        sp.Symbol("a_9"),
        tr(A),
        sp.Symbol("Z"),
        f(0),
    ]
    fn = moments_from_cumulants if direction == "moments" else cumulants_from_moments
    got = fn(len(gens), gens)
    symbolic = fn(len(gens))
    names = cumulant_symbols(7) if direction == "moments" else moment_symbols(7)
    for g, s in zip(got, symbolic, strict=True):
        assert_canonical(g)
        assert sp.expand(s.xreplace(dict(zip(names, gens, strict=True)))) == g


def test_inverse_of_each_other_symbolic():
    k = cumulant_symbols(10)
    m = moment_symbols(10)
    assert cumulants_from_moments(10, moments_from_cumulants(10)) == k
    assert moments_from_cumulants(10, cumulants_from_moments(10)) == m


def test_high_order_counts():
    # m_n has one term per integer partition of n, and its coefficients count NC(n)
    got = moments_from_cumulants(25)
    for n in (1, 10, 25):
        coeffs = got[n - 1].as_coefficients_dict()
        assert len(coeffs) == sp.partition(n)
        assert sum(coeffs.values()) == catalan(n)
    # the law with all moments 1 (the constant 1) has kappa_1 = 1 and no other cumulant
    back = cumulants_from_moments(25)
    assert [sum(e.as_coefficients_dict().values()) for e in back] == [1] + [0] * 24


@pytest.mark.slow
def test_order_40():
    got = moments_from_cumulants(40)
    coeffs = got[-1].as_coefficients_dict()
    assert len(coeffs) == 37338 and sum(coeffs.values()) == catalan(40)
    assert_canonical(got[-1])


# ----------------------------------------------------------------- specialised values


def test_marchenko_pastur_symbolic_is_narayana():
    q = sp.Symbol("q", positive=True)
    got = moments_from_cumulants(12, lambda n: q ** (n - 1))
    for k, m in enumerate(got, start=1):
        want = sum(narayana(k, j) * q ** (j - 1) for j in range(1, k + 1))
        assert sp.expand(m - want) == 0
        assert_canonical(m)


def test_marchenko_pastur_numbers_from_math_md():
    half = moments_from_cumulants(7, lambda n: sp.Rational(1, 2) ** (n - 1))
    assert [float(x) for x in half] == [
        1,
        1.5,
        2.75,
        5.625,
        12.3125,
        28.21875,
        66.859375,
    ]
    q = Fraction(5, 2)
    five_halves = moments_from_cumulants(5, [q ** (n - 1) for n in range(1, 6)])
    assert [float(x) for x in five_halves] == [1, 3.5, 14.75, 69.125, 346.3125]
    assert moments_from_cumulants(8, [1] * 8) == tuple(catalan(n) for n in range(1, 9))


def test_semicircle_catalan():
    got = moments_from_cumulants(12, [0, 1] + [0] * 10)
    assert got[1::2] == tuple(catalan(k) for k in range(1, 7))
    assert got[0::2] == (0,) * 6
    s2 = sp.Symbol("s2", positive=True)
    got = moments_from_cumulants(8, lambda n: s2 if n == 2 else 0)
    assert got[1::2] == tuple(catalan(k) * s2**k for k in range(1, 5))


def _substituted(n, values, direction):
    generic = moments_from_cumulants(n) if direction == "moments" else cumulants_from_moments(n)
    names = cumulant_symbols(n) if direction == "moments" else moment_symbols(n)
    mapping = dict(zip(names, values, strict=True))
    return [sp.expand(e.xreplace(mapping)) for e in generic]


def _cases():
    q, r = sp.symbols("q r", positive=True)
    x = sp.Symbol("x")
    rnd = random.Random(7)
    rationals = [sp.Rational(rnd.randint(-9, 9), rnd.randint(1, 6)) for _ in range(10)]
    return {
        "wishart_q": [q ** (n - 1) for n in range(1, 11)],
        "rationals": rationals,
        "integers": [rnd.randint(-5, 5) for _ in range(10)],
        "two_symbols": [r * q**n - sp.Rational(1, 3) for n in range(1, 11)],
        "sparse": [0, x, 0, 2, 0, 0, x**2, 0, 0, 1],
        "first_zero": [0, 1, q, 0, 0, 0, 0, 0, 0, 0],
    }


@pytest.mark.parametrize("direction", ["moments", "cumulants"])
@pytest.mark.parametrize("case", sorted(_cases()))
def test_specialised_equals_substituted_generic(case, direction):
    values = _cases()[case]
    n = len(values)
    fn = moments_from_cumulants if direction == "moments" else cumulants_from_moments
    got = fn(n, values)
    assert list(got) == _substituted(n, values, direction)
    for e in got:
        assert_canonical(e)
    # callable input gives the same
    assert fn(n, lambda k: values[k - 1]) == got


@pytest.mark.parametrize("direction", ["moments", "cumulants"])
def test_kronecker_route_equals_domain_route(direction, monkeypatch):
    q, r = sp.symbols("q r")
    values = [q ** (n - 1) * (1 + r) ** (n % 3) - n for n in range(1, 9)]
    fn = moments_from_cumulants if direction == "moments" else cumulants_from_moments
    fast = fn(8, values)
    monkeypatch.setattr(C, "_KRONECKER_MAX_SLOTS", 0)
    slow = fn(8, values)
    assert fast == slow


def test_non_polynomial_values():
    q = sp.Symbol("q", positive=True)
    # rational functions (fraction field) and algebraic numbers (expression domain)
    got = moments_from_cumulants(5, lambda n: 1 / q**n)
    assert [sp.simplify(g - catalan(k) / q**k) for k, g in enumerate(got, 1)] == [0] * 5
    root = moments_from_cumulants(6, lambda n: sp.sqrt(2) ** n)
    assert [sp.simplify(g - catalan(k) * sp.sqrt(2) ** k) for k, g in enumerate(root, 1)] == [0] * 6
    back = cumulants_from_moments(5, [catalan(k) / q**k for k in range(1, 6)])
    assert [sp.simplify(b - q**-k) for k, b in enumerate(back, 1)] == [0] * 5


def test_floats_are_read_as_decimals():
    assert moments_from_cumulants(3, [0.5, 0.25, 0.0]) == (
        sp.Rational(1, 2),
        sp.Rational(1, 2),  # kappa_2 + kappa_1^2
        sp.Rational(1, 2),  # kappa_3 + 3 kappa_1 kappa_2 + kappa_1^3 = 0 + 3/8 + 1/8
    )
    assert moments_from_cumulants(2, [sp.Float(0.1), 0]) == (
        sp.Rational(1, 10),
        sp.Rational(1, 100),
    )


def test_random_rational_round_trip():
    rnd = random.Random(11)
    values = [Fraction(rnd.randint(-20, 20), rnd.randint(1, 9)) for _ in range(15)]
    moments = moments_from_cumulants(15, values)
    assert cumulants_from_moments(15, moments) == tuple(sp.Rational(v) for v in values)


# -------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("order", "match"),
    [
        (0, "got 0"),
        (-3, "got -3"),
        (2.5, "got 2.5"),
        ("3", "got '3'"),
        (True, "boolean"),
    ],
)
def test_bad_order(order, match):
    with pytest.raises(InvalidArgument, match=match):
        moments_from_cumulants(order)
    with pytest.raises(InvalidArgument, match="integer >= 1"):
        cumulants_from_moments(order, [1, 2, 3])


def test_bad_values():
    with pytest.raises(InvalidArgument, match="has 2 entries but order 3 needs 3"):
        moments_from_cumulants(3, [1, 2])
    with pytest.raises(InvalidArgument, match="text"):
        moments_from_cumulants(2, ["1", "2"])
    with pytest.raises(InvalidArgument, match="noncommutative"):
        moments_from_cumulants(1, [sp.Symbol("A", commutative=False)])
    with pytest.raises(InvalidArgument, match="finite"):
        cumulants_from_moments(1, [float("nan")])
    with pytest.raises(InvalidArgument, match="sequence of values or a callable"):
        moments_from_cumulants(2, {1: 1, 2: 2})
    with pytest.raises(InvalidArgument, match=r"cumulants\(1\)"):
        moments_from_cumulants(2, lambda n: "x")
    with pytest.raises(InvalidArgument, match="block size"):
        cumulant_coefficient([2, 0])
    with pytest.raises(InvalidArgument, match="order must be an integer"):
        cumulant_symbols(0)
