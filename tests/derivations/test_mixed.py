"""Mixed moments of free families: closed forms, two independent routes, transforms."""

from __future__ import annotations

import random
from math import comb

import pytest
import sympy as sp

from detequiv.derivations.laws import CumulantLaw, Semicircle, Wishart
from detequiv.derivations.mixed import diagram_sum, mixed_moment
from detequiv.derivations.quantities import tr
from detequiv.diagrams.words import Letter, TraceWord
from detequiv.errors import InvalidWord

A, B, W, V, S = sp.symbols("A B W V S", commutative=False)
q, p = sp.symbols("q p", positive=True)


def test_sample_covariance_second_moment():
    # MATH.md 1.3: tr(Sigma W)^2 -> tr Sigma^2 + q (tr Sigma)^2
    assert mixed_moment(A * W * A * W, {W: Wishart(q)}) == tr(A**2) + q * tr(A) ** 2


def test_third_moment_of_sample_covariance():
    # E tr(Sigma W)^3 in the limit, by Wick counting of planar pairings (independent):
    # tr S^3 + 3 q tr S tr S^2 + q^2 (tr S)^3
    got = mixed_moment((A * W) ** 3, {W: Wishart(q)})
    assert sp.expand(got - (tr(A**3) + 3 * q * tr(A) * tr(A**2) + q**2 * tr(A) ** 3)) == 0


def test_free_product_of_two_free_elements():
    # phi(abab) = phi(a^2)phi(b)^2 + phi(a)^2 phi(b^2) - phi(a)^2 phi(b)^2 for free a, b
    la, lb = CumulantLaw("a"), CumulantLaw("b")
    got = mixed_moment(W * V * W * V, {W: la, V: lb})
    ma = la.moments(2)
    mb = lb.moments(2)
    want = ma[1] * mb[0] ** 2 + ma[0] ** 2 * mb[1] - ma[0] ** 2 * mb[0] ** 2
    assert sp.expand(got - want) == 0


def test_fuss_catalan_for_product_of_two_mp1():
    # moments of W1 W2, both MP(1): Fuss-Catalan binom(3n, n)/(2n+1) = 1, 3, 12, 55, 273
    want = [comb(3 * n, n) // (2 * n + 1) for n in range(1, 7)]
    got = [mixed_moment((W * V) ** n, {W: Wishart(1), V: Wishart(1)}) for n in range(1, 7)]
    assert got == want == [1, 3, 12, 55, 273, 1428]


def test_semicircle_catalan_and_odd_zero():
    assert [mixed_moment(S**k, {S: Semicircle()}) for k in range(1, 9)] == [0, 1, 0, 2, 0, 5, 0, 14]
    v = sp.Symbol("v", positive=True)
    assert mixed_moment(S**4, {S: Semicircle(v)}) == 2 * v**2


def test_deterministic_only_word_is_a_trace_symbol():
    assert mixed_moment(A * B * A, {}) == tr(A**2 * B)
    assert mixed_moment(B * A * A, {}) == tr(A**2 * B)


def test_semicircle_sandwich():
    # tr(A S B S) = kappa_2 tr(A) tr(B) for a centred semicircle S free from A, B
    assert mixed_moment(A * S * B * S, {S: Semicircle()}) == tr(A) * tr(B)
    # tr(A S S) = tr(A) (since tr(S^2) = 1)
    assert mixed_moment(A * S * S, {S: Semicircle()}) == tr(A)


def _random_word(rng: random.Random, length: int) -> sp.Expr:
    pool = [A, B, W, V, W, V]
    return sp.Mul(*[rng.choice(pool) for _ in range(length)])


@pytest.mark.parametrize("seed", range(12))
def test_recursion_equals_planar_diagram_sum(seed):
    rng = random.Random(seed)
    word = _random_word(rng, rng.randint(3, 9))
    laws = {W: CumulantLaw("w"), V: Wishart(q)}
    if not (word.has(W) or word.has(V)):
        word = word * W
    assert sp.expand(mixed_moment(word, laws) - diagram_sum(word, laws)) == 0


def test_moments_of_deterministic_times_free():
    # MATH.md 1.3: m_n(A W) = sum_{pi in NC(n)} kappa_pi(W) m_{K(pi)}(A); check n = 4 with
    # symbolic cumulants against the same sum written out over NC(4) by hand
    k = sp.symbols("k1:5")
    law = CumulantLaw("w", list(k))
    a = [tr(A**j) for j in range(5)]
    a[0] = 1
    # NC(4) by block type of pi, with K(pi) block type (|pi| + |K| = 5):
    # {4}: K = 1^4 ; {3,1} x4: K = {2,1,1}; {2,2} x2 (non-crossing): K = {2,1,1}... written per partition:
    want = (
        k[3] * a[1] ** 4
        + 4 * k[2] * k[0] * a[2] * a[1] ** 2
        + 2 * k[1] ** 2 * a[2] * a[1] ** 2  # {01}{23}, {03}{12}: K = {0}{1,3}{2} type (2,1,1)
        + 2 * k[1] * k[1] * 0  # placeholder for the crossing pairing (absent)
        + 4 * k[1] * k[0] ** 2 * (a[3] * a[1])  # adjacent pair + 2 singletons: K type (3,1)
        + 2 * k[1] * k[0] ** 2 * a[2] ** 2  # {0,2} or {1,3} + singletons: K type (2,2)
        + k[0] ** 4 * a[4]
    )
    got = mixed_moment((A * W) ** 4, {W: law})
    assert sp.expand(got - want) == 0


def test_s_transform_multiplicative_on_series():
    from detequiv.derivations.transforms import s_series

    t = sp.Symbol("t")
    order = 6
    moments = [mixed_moment((W * V) ** n, {W: Wishart(q), V: Wishart(p)}) for n in range(1, order + 1)]
    s_prod = s_series(moments, order, t)
    s_w = s_series(Wishart(q).moments(order), order, t)
    s_v = s_series(Wishart(p).moments(order), order, t)
    diff = sp.expand(s_prod - sp.expand(s_w * s_v))
    # compare the coefficients that both truncations determine
    assert all(sp.expand(diff.coeff(t, j)) == 0 for j in range(order))
    # and against the closed form 1/((1+qt)(1+pt))
    closed = sp.series(1 / ((1 + q * t) * (1 + p * t)), t, 0, order).removeO()
    assert all(sp.expand((s_prod - closed).coeff(t, j)) == 0 for j in range(order))


def test_bad_input():
    with pytest.raises(InvalidWord, match="not a law"):
        mixed_moment(A * W, {W: 3})
    with pytest.raises(InvalidWord, match="not a word"):
        mixed_moment("A W", {W: Wishart(q)})
    with pytest.raises(InvalidWord, match="exponent"):
        mixed_moment(A ** sp.Rational(1, 2) * W, {W: Wishart(q)})
    with pytest.raises(InvalidWord, match="noncommutative letter"):
        mixed_moment(2 * A * W, {W: Wishart(q)})


def test_trace_word_input():
    word = TraceWord([Letter("A"), Letter("W", free=True)] * 2)
    assert mixed_moment(word, {"W": Wishart(q)}) == tr(A**2) + q * tr(A) ** 2


# -------------------------------------------------------------- sums of free matrices
def test_free_cumulants_add_for_sums():
    # R-transform additivity: kappa_n(B1 + B2) = kappa_n(B1) + kappa_n(B2)
    from detequiv.derivations.cumulants import moments_from_cumulants
    from detequiv.derivations.mixed import polynomial_moment

    l1, l2 = CumulantLaw("a"), CumulantLaw("b")
    summed = moments_from_cumulants(5, [l1.cumulant(n) + l2.cumulant(n) for n in range(1, 6)])
    for k in range(1, 6):
        got = polynomial_moment((W + V) ** k, {W: l1, V: l2})
        assert sp.expand(got - summed[k - 1]) == 0, k


def test_shifted_semicircle_moments():
    # A = c I: tr((c + S)^4) = c^4 + 6 c^2 + 2 (binomial expansion with E S^2 = 1, E S^4 = 2)
    from detequiv.derivations.mixed import polynomial_moment

    c = sp.Symbol("c")
    got = polynomial_moment((A + S) ** 4, {S: Semicircle()})
    at_scalar = got.subs({tr(A**j): c**j for j in range(1, 5)})
    assert sp.expand(at_scalar - (c**4 + 6 * c**2 + 2)) == 0
    # and the two routes agree on a test-matrix contraction
    poly = B * (A + S) ** 3
    assert polynomial_moment(poly, {S: Semicircle(q)}) == polynomial_moment(
        poly, {S: Semicircle(q)}, method="diagrams"
    )


def test_polynomial_moment_bad_method():
    from detequiv.derivations.mixed import polynomial_moment

    with pytest.raises(InvalidWord, match="method"):
        polynomial_moment(A, {}, method="magic")
