"""Truncated R- and S-transforms against closed forms and independent series algebra.

Expected values: closed forms of MATH.md 1.5 expanded by sympy's own ``series``,
Narayana and Fuss-Catalan numbers from binomials, a series reversion written here with
sympy's ``solve`` (not the library's recursion), and moments of free products from a
brute-force Kreweras sum over NC(n).
"""

from __future__ import annotations

import itertools
import random
from math import comb

import pytest
import sympy as sp

from detequiv.derivations.transforms import r_series, s_from_cumulants, s_series
from detequiv.errors import InvalidArgument, UndefinedTransform

q, p, s2 = sp.symbols("q p s2", positive=True)
t, w, z = sp.symbols("t w z")


def taylor(expr, var, order):
    """Coefficients [var^0 .. var^(order-1)] of a closed form, by sympy.series."""
    ser = sp.series(expr, var, 0, order).removeO()
    return [sp.simplify(ser.coeff(var, j)) for j in range(order)]


def coeffs(poly, var, order):
    poly = sp.expand(poly)
    return [poly.coeff(var, j) for j in range(order)]


def same(a, b):
    return all(sp.simplify(x - y) == 0 for x, y in zip(a, b, strict=True))


def narayana_moments(k, ratio):
    return sum(comb(k, j) * comb(k, j - 1) // k * ratio ** (j - 1) for j in range(1, k + 1))


# ---------------------------------------------------------------------------------- R


def test_r_series_marchenko_pastur():
    order = 8
    got = r_series(lambda n: q ** (n - 1), order, w)
    assert coeffs(got, w, order) == taylor(1 / (1 - q * w), w, order)
    assert sp.degree(got, w) == order - 1


def test_r_series_default_symbols_and_variable():
    assert r_series(None, 2) == sp.Symbol("kappa_1") + sp.Symbol("kappa_2") * sp.Symbol("w")
    assert r_series([1, 2, 3], 3, sp.Rational(1, 2)) == sp.Rational(11, 4)  # 1 + 2/2 + 3/4


# ---------------------------------------------------------------------------------- S


def test_s_series_marchenko_pastur_from_narayana():
    order = 8
    moments = [narayana_moments(k, q) for k in range(1, order + 1)]
    got = s_series(moments, order, t)
    assert coeffs(got, t, order) == [(-q) ** j for j in range(order)]
    assert sp.degree(got, t) == order - 1


def test_s_series_numeric_marchenko_pastur():
    moments = [1, 1.5, 2.75, 5.625, 12.3125, 28.21875, 66.859375]  # MATH.md, q = 1/2
    got = s_series(moments, 7, t)
    assert coeffs(got, t, 7) == [sp.Rational(-1, 2) ** j for j in range(7)]


def _fuss_catalan(n):
    return comb(3 * n, n) // (2 * n + 1)


def test_fuss_catalan_moments_give_product_s_transform():
    moments = [_fuss_catalan(n) for n in range(1, 6)]
    assert moments == [1, 3, 12, 55, 273]  # MATH.md 7
    got = s_series(moments, 5, t)
    assert coeffs(got, t, 5) == taylor((1 + t) ** -2, t, 5)


def test_product_s_transform_inverted_back_to_fuss_catalan():
    # independent inversion: chi(t) = t S(t)/(1+t) with S = S_W^2 = (1+t)^-2, then psi =
    # chi^<-1> solved coefficient by coefficient with sympy.solve
    order = 5
    chi = t / (1 + t) ** 3
    cs = sp.symbols(f"c1:{order + 1}")
    psi = sum(c * z ** (k + 1) for k, c in enumerate(cs))
    eq = sp.series(chi.subs(t, psi), z, 0, order + 1).removeO() - z
    sol = sp.solve([sp.expand(eq).coeff(z, k) for k in range(1, order + 1)], cs, dict=True)
    assert [sol[0][c] for c in cs] == [1, 3, 12, 55, 273]


def test_s_series_by_hand_reversion_symbolic():
    # psi = m1 z + m2 z^2 + m3 z^3: chi = t/m1 - m2 t^2/m1^3 + (2 m2^2 - m1 m3) t^3/m1^5
    m1, m2, m3 = sp.symbols("m_1:4")
    c1, c2, c3 = 1 / m1, -m2 / m1**3, (2 * m2**2 - m1 * m3) / m1**5
    want = [c1, c1 + c2, c2 + c3]
    assert same(coeffs(s_series(None, 3, t), t, 3), want)


def test_scaled_wishart_and_free_poisson_symbolic_first_moment():
    # sigma^2 W has S = 1/(sigma^2 (1 + q t)) (MATH.md 1.5): m1 = s2 is not a number
    order = 6
    moments = [s2**k * narayana_moments(k, q) for k in range(1, order + 1)]
    got = s_series(moments, order, t)
    assert same(coeffs(got, t, order), taylor(1 / (s2 * (1 + q * t)), t, order))
    # free Poisson, rate r and jump a: moments sum_k N(n,k) r^k a^n (Narayana)
    r, a = sp.symbols("r a", positive=True)
    mom = [
        sum(comb(n, k) * comb(n, k - 1) // n * r**k * a**n for k in range(1, n + 1))
        for n in range(1, order + 1)
    ]
    got = s_series(mom, order, t)
    assert same(coeffs(got, t, order), taylor(1 / (a * (t + r)), t, order))


def test_s_series_rational_function_moments():
    # moments c^n of the constant c = 1/(1+q): S = 1/c = 1 + q exactly
    c = 1 / (1 + q)
    got = s_series([c**n for n in range(1, 5)], 4, t)
    assert same(coeffs(got, t, 4), [1 + q, 0, 0, 0])


@pytest.mark.parametrize("seed", range(4))
def test_s_r_relation_random_rational_cumulants(seed):
    # S(t) R(t S(t)) = 1 through t^7 (MATH.md 1.5)
    rnd = random.Random(seed)
    order = 8
    kappas = [sp.Rational(rnd.randint(1, 9), rnd.randint(1, 5))] + [
        sp.Rational(rnd.randint(-9, 9), rnd.randint(1, 5)) for _ in range(order - 1)
    ]
    S = s_from_cumulants(kappas, order, t)
    R = r_series(kappas, order, w)
    product = sp.expand(S * R.subs(w, t * S))
    assert coeffs(product, t, order) == [1] + [0] * (order - 1)


def test_s_r_relation_symbolic_cumulants():
    order = 4
    S = s_from_cumulants(None, order, t)
    R = r_series(None, order, w)
    product = sp.series(S * R.subs(w, t * S), t, 0, order).removeO()
    assert [sp.simplify(product.coeff(t, j)) for j in range(order)] == [1, 0, 0, 0]


# ---------------------------------------------------------------------- free products


def _nc_partitions(n):
    def grow(i, blocks):
        if i == n:
            yield [tuple(b) for b in blocks]
            return
        for b in blocks:
            b.append(i)
            yield from grow(i + 1, blocks)
            b.pop()
        blocks.append([i])
        yield from grow(i + 1, blocks)
        blocks.pop()

    def crossing(part):
        return any(
            a1 < b1 < a2 < b2
            for a, b in itertools.permutations(part, 2)
            for a1, a2 in itertools.combinations(a, 2)
            for b1, b2 in itertools.combinations(b, 2)
        )

    return [part for part in grow(0, []) if not crossing(part)]


def _kreweras(part, n):
    """K(pi) = pi^-1 gamma_n as a permutation; its cycles are the blocks."""
    perm = {}
    for block in part:
        for i, x in enumerate(block):
            perm[x] = block[(i + 1) % len(block)]
    inverse = {v: k for k, v in perm.items()}
    k = {i: inverse[(i + 1) % n] for i in range(n)}
    seen, cycles = set(), []
    for i in range(n):
        if i not in seen:
            cycle, j = [], i
            while j not in seen:
                seen.add(j)
                cycle.append(j)
                j = k[j]
            cycles.append(cycle)
    return cycles


def test_free_product_of_two_wisharts_multiplies_s():
    # m_n(ab) = sum_pi kappa_pi(a) m_K(pi)(b) (MATH.md 1.3), brute force over NC(n)
    order = 5
    mb = {k: narayana_moments(k, p) for k in range(1, order + 1)}
    moments = []
    for n in range(1, order + 1):
        total = 0
        for part in _nc_partitions(n):
            cycles = _kreweras(part, n)
            assert len(part) + len(cycles) == n + 1
            total += sp.Mul(*[q ** (len(b) - 1) for b in part]) * sp.Mul(*[mb[len(c)] for c in cycles])
        moments.append(sp.expand(total))
    got = s_series(moments, order, t)
    want = taylor(1 / ((1 + q * t) * (1 + p * t)), t, order)
    assert same(coeffs(got, t, order), want)


# ------------------------------------------------------------------- misc / bad input


def test_numeric_variable_equals_substitution():
    moments = [narayana_moments(k, q) for k in range(1, 6)]
    symbolic = s_series(moments, 5, t)
    assert sp.expand(symbolic.subs(t, sp.Rational(1, 10))) == sp.expand(
        s_series(moments, 5, sp.Rational(1, 10))
    )


def test_undefined_s_transform():
    with pytest.raises(UndefinedTransform, match="m1 != 0, got m1 = 0"):
        s_series([0, 1, 0, 2], 4, t)
    with pytest.raises(UndefinedTransform, match="kappa1 = 0"):
        s_from_cumulants([0, 1, 0, 0], 4, t)


def test_bad_input():
    with pytest.raises(InvalidArgument, match="got 0"):
        r_series([1], 0, w)
    with pytest.raises(InvalidArgument, match="got 2.5"):
        s_series([1, 2, 3], 2.5, t)
    with pytest.raises(InvalidArgument, match="text"):
        s_series([1, 2], 2, "t")
    with pytest.raises(InvalidArgument, match="has 2 entries but order 3"):
        s_from_cumulants([1, 2], 3, t)
