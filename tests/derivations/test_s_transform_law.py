"""STransformLaw: a free rotation-invariant factor given by its S-transform (issue 3).

Independent sources of the expected values:

* closed forms of MATH.md 1.4, 1.5 and 7: Narayana polynomials and cumulants q^(n-1) for
  S = 1/(1 + q t), Fuss-Catalan numbers binom((k+1) n, n) / (k n + 1) for S = (1 + t)^-k;
* the free product formula (``mixed_moment``, Kreweras complement) for S_1 S_2;
* a naive reference written here: moments by brute-force power-series composition
  (psi(chi(t)) = t solved coefficient by coefficient with sympy.series);
* the planar diagram sums of the series witness, and simulation for the Monte Carlo one.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import sympy as sp
from sympy.core.function import AppliedUndef

import detequiv.witnesses.onepoint  # noqa: F401 - registers OnePoint.check_monte_carlo
from detequiv.derivations.cumulants import moments_from_cumulants
from detequiv.derivations.derive import derive
from detequiv.derivations.expressions import Deterministic, FreeMatrix, resolvent
from detequiv.derivations.laws import STransformLaw, Wishart
from detequiv.derivations.mixed import mixed_moment
from detequiv.derivations.quantities import df1
from detequiv.derivations.transforms import (
    cumulants_from_s,
    moments_from_s,
    s_from_cumulants,
    s_series,
    s_taylor,
)
from detequiv.errors import InvalidArgument, UndefinedTransform
from detequiv.witnesses.moments import sampler_for_law

t = sp.Symbol("t")
q = sp.Symbol("q", positive=True)
lam = sp.Symbol("lam", positive=True)
D = sp.Symbol("D", positive=True)
Sigma = Deterministic("Sigma", D)
SIGMA = sp.MatrixSymbol("Sigma", D, D)
KAPPA = sp.Symbol("kappa")


def _narayana_moment(n: int, ratio: sp.Expr) -> sp.Expr:
    """MATH.md 1.4: m_n = sum_j N(n, j) q^(j-1), N(n, j) = binom(n, j) binom(n, j-1) / n."""
    return sp.expand(
        sp.Add(
            *[
                sp.Rational(math.comb(n, j) * math.comb(n, j - 1), n) * ratio ** (j - 1)
                for j in range(1, n + 1)
            ]
        )
    )


def _fuss_catalan(n: int, k: int) -> int:
    """Moments of a product of k free MP(1): binom((k+1) n, n) / (k n + 1) (OEIS A001764 for k = 2)."""
    return math.comb((k + 1) * n, n) // (k * n + 1)


def _naive_moments(s: sp.Expr, order: int) -> list[sp.Expr]:
    """Reference: unknown m_1..m_n solved from psi(chi(u)) = u order by order, with sympy.series."""
    u = sp.Symbol("u")
    chi = sp.series(s.subs(t, u) * u / (1 + u), u, 0, order + 1).removeO()
    ms: list[sp.Expr] = []
    for n in range(1, order + 1):
        mn = sp.Symbol("m_unknown")
        psi = sum(m * chi**k for k, m in enumerate([*ms, mn], start=1))
        coeff = sp.expand(psi).coeff(u, n)
        target = 1 if n == 1 else 0
        ms.append(sp.solve(sp.Eq(coeff, target), mn)[0])
    return [sp.simplify(m) for m in ms]


def _same(a, b) -> bool:
    return all(sp.simplify(x - y) == 0 for x, y in zip(a, b, strict=True))


# -- moments and cumulants from S -------------------------------------------------------


def test_wishart_s_gives_narayana_moments_and_cumulants():
    law = STransformLaw(1 / (1 + q * t), t, "W")
    assert _same(law.moments(7), [_narayana_moment(n, q) for n in range(1, 8)])
    assert _same(law.cumulants(7), [q ** (n - 1) for n in range(1, 8)])
    assert law.cumulant(5) == q**4
    # MATH.md 7: MP(q = 0.5) and MP(2.5) numbers
    half = STransformLaw(1 / (1 + t / 2), t)
    assert [float(m) for m in half.moments(7)] == [1, 1.5, 2.75, 5.625, 12.3125, 28.21875, 66.859375]
    assert [float(m) for m in STransformLaw(1 / (1 + sp.Rational(5, 2) * t), t).moments(5)] == [
        1,
        3.5,
        14.75,
        69.125,
        346.3125,
    ]


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_fuss_catalan_moments(k):
    law = STransformLaw((1 + t) ** (-k), t)
    assert list(law.moments(6)) == [_fuss_catalan(n, k) for n in range(1, 7)]
    if k == 2:
        assert list(law.moments(5)) == [1, 3, 12, 55, 273]  # MATH.md 7


def test_product_of_s_transforms_is_free_product_of_two_wisharts():
    q1, q2 = sp.symbols("q1 q2", positive=True)
    law = STransformLaw(1 / ((1 + q1 * t) * (1 + q2 * t)), t)
    W1, W2 = sp.symbols("W1 W2", commutative=False)
    laws = {W1: Wishart(q1), W2: Wishart(q2)}
    # tr (W1 W2)^n, free product formula: independent of any S-transform
    expected = [mixed_moment((W1 * W2) ** n, laws) for n in range(1, 6)]
    assert _same(law.moments(5), expected)


def test_scaled_wishart_and_constant():
    sigma2 = sp.Symbol("sigma2", positive=True)
    # MATH.md 1.5: sigma^2 W has S = 1/(sigma^2 (1 + q t)); its moments scale as sigma^(2n)
    law = STransformLaw(1 / (sigma2 * (1 + q * t)), t)
    assert _same(law.moments(5), [sigma2**n * _narayana_moment(n, q) for n in range(1, 6)])
    const = STransformLaw(sp.Rational(1, 3), t)  # S_{cI} = 1/c
    assert const.moments(4) == (3, 9, 27, 81)
    assert const.cumulants(3) == (3, 0, 0)


def test_non_rational_s_matches_naive_reference():
    for s in (sp.exp(-t / 3), 1 / sp.sqrt(1 + 2 * t), (2 + t) / ((1 + t) * (3 + t))):
        assert _same(moments_from_s(s, t, 5), _naive_moments(s, 5)), s


def test_round_trip_with_random_rational_cumulants():
    rng = random.Random(11)
    for _ in range(5):
        kappas = [sp.Rational(rng.randint(1, 9), rng.randint(1, 5))] + [
            sp.Rational(rng.randint(-9, 9), rng.randint(1, 7)) for _ in range(6)
        ]
        s_poly = s_from_cumulants(kappas, 7, t)
        # a polynomial S agrees with the true S through t^6, so m_1..m_7 and kappa_1..kappa_7 match
        law = STransformLaw(s_poly, t)
        assert list(law.cumulants(7)) == kappas
        assert list(law.moments(7)) == list(moments_from_cumulants(7, kappas))
        assert sp.expand(s_series(law.moments(7), 7, t) - s_poly) == 0
    # and the other way: the S-series of the Wishart moments is the Taylor series of S
    assert (
        sp.expand(
            s_series(Wishart(q).moments(6), 6, t)
            - sum(s_taylor(1 / (1 + q * t), t, 6)[j] * t**j for j in range(6))
        )
        == 0
    )


def test_cumulants_from_s_and_s_taylor():
    assert cumulants_from_s(1 / (1 + q * t), t, 4) == (1, q, q**2, q**3)
    assert s_taylor((1 + t) ** -2, t, 5) == (1, -2, 3, -4, 5)
    assert s_taylor(sp.Integer(2), t, 3) == (2, 0, 0)


def test_s_transform_closed_form_and_r_transform():
    law = STransformLaw(1 / (1 + q * t), t)
    d, w = sp.symbols("d w")
    assert sp.simplify(law.s_transform(-d) - 1 / (1 - q * d)) == 0
    assert sp.simplify(law.r_transform(w) - 1 / (1 - q * w)) == 0  # MATH.md 1.5
    # (1+t)^-2: R from a quadratic; its series must be the cumulants 1, 2, 5, 14 (Catalan)
    r = STransformLaw((1 + t) ** -2, t).r_transform(w)
    assert sp.expand(sp.series(r, w, 0, 5).removeO() - (1 + 2 * w + 5 * w**2 + 14 * w**3 + 42 * w**4)) == 0
    # S(t) R(t S(t)) = 1 (MATH.md 1.5)
    s = (1 + t) ** -2
    assert sp.simplify(sp.series(s * r.subs(w, t * s), t, 0, 5).removeO() - 1) == 0
    with pytest.raises(UndefinedTransform, match="r_series"):
        STransformLaw(sp.exp(-t), t).r_transform(w)


def test_subs_touches_parameters_not_the_variable():
    law = STransformLaw(1 / (1 + q * t), t, "W")
    half = law.subs(q, sp.Rational(1, 2))
    assert half == STransformLaw(1 / (1 + t / 2), t, "W")
    same = law.subs({t: 5, q: 2})  # t is bound: only q changes
    assert same.s_transform(t) == 1 / (1 + 2 * t)
    assert law.parameters == frozenset({q})
    assert "W" in str(law) and "STransformLaw" in law._latex()


def test_bad_inputs_are_rejected_with_a_fix():
    with pytest.raises(InvalidArgument, match="build it with sympy"):
        STransformLaw("1/(1+t)", t)
    with pytest.raises(InvalidArgument, match="Symbol"):
        STransformLaw(1 / (1 + t), "t")
    with pytest.raises(UndefinedTransform, match="S\\(0\\)"):
        STransformLaw(t / (1 + t), t)
    with pytest.raises(InvalidArgument, match="analytic"):
        STransformLaw(1 / t, t)
    with pytest.raises(InvalidArgument, match="analytic"):
        STransformLaw(sp.sqrt(t) + 1, t)
    with pytest.raises(InvalidArgument, match="undefined functions"):
        STransformLaw(sp.Function("f")(t), t)
    with pytest.raises(InvalidArgument, match="name"):
        STransformLaw(1 / (1 + t), t, "bad name")
    with pytest.raises(InvalidArgument, match="callable"):
        STransformLaw(1 / (1 + t), t, spectrum=[1.0, 2.0])
    with pytest.raises(InvalidArgument, match="order"):
        STransformLaw(1 / (1 + t), t).moments(0)


# -- the one-point engine ---------------------------------------------------------------


def _derive(law):
    B = FreeMatrix("B", D, law)
    return derive(lam * resolvent(Sigma.sqrt() @ B @ Sigma.sqrt(), lam))


@pytest.mark.parametrize(
    "s", [1 / (1 + q * t), (1 + t) ** -2, sp.exp(-t / 2), 1 / ((1 + q * t) * (1 + 2 * t))], ids=str
)
def test_engine_uses_the_closed_form_and_passes_the_series_check(s):
    eq = _derive(STransformLaw(s, t))
    (fp,) = eq.fixed_points
    # MATH.md 2.2: kappa = lam S_B(-df1(kappa))
    assert sp.simplify(fp.rhs - lam * s.subs(t, -df1(SIGMA, KAPPA))) == 0
    assert not fp.rhs.atoms(AppliedUndef)  # no S_B(...) placeholder: the closed form is used
    check = eq.check_series(6)
    assert check.passed, str(check)


class _Inconsistent(STransformLaw):
    """Moments of S(t) = 1/(1 + q t) but a closed form with the ratio 2q: a wrong law."""

    __slots__ = ()

    def s_transform(self, arg):
        return 1 / (1 + 2 * q * arg)


def test_series_check_rejects_an_s_that_disagrees_with_the_moments():
    eq = _derive(_Inconsistent(1 / (1 + q * t), t, "Liar"))
    (fp,) = eq.fixed_points
    assert sp.simplify(fp.rhs - lam / (1 - 2 * q * df1(SIGMA, KAPPA))) == 0
    check = eq.check_series(4)
    assert not check.passed
    # lam^-1: m1 = 1 for both; lam^-2: kappa_2 = q (moments) against 2q (the wrong closed form)
    assert check.first_failure == 2
    # the honest law with the same moments passes
    assert _derive(STransformLaw(1 / (1 + q * t), t)).check_series(4).passed


# -- Monte Carlo ------------------------------------------------------------------------


def test_numeric_inversion_spectrum_matches_the_moments():
    for s, n_moments in ((1 / (1 + t / 2), 4), ((1 + t) ** -2, 4), (sp.exp(-t / 3), 3)):
        law = STransformLaw(s, t)
        e = sampler_for_law(law).quantiles(4000)  # type: ignore[attr-defined]
        exact = [float(m) for m in law.moments(n_moments)]
        got = [float(np.mean(e**k)) for k in range(1, n_moments + 1)]
        # quantiles (k - 1/2)/N of the density: discretisation error O(1/N) (relative)
        assert np.allclose(got, exact, rtol=3e-3), (s, got, exact)


def test_numeric_inversion_handles_the_atom_of_a_wishart_with_q_above_one():
    # Wishart q = 2 has an atom of mass 1/2 at 0; Narayana moments 1, 3, 11, 45 (MATH.md 1.4)
    e = sampler_for_law(STransformLaw(1 / (1 + 2 * t), t)).quantiles(4000)  # type: ignore[attr-defined]
    assert np.allclose([np.mean(e**k) for k in (1, 2, 3, 4)], [1, 3, 11, 45], rtol=3e-3)
    assert np.mean(np.abs(e) < 1e-4) == pytest.approx(0.5, abs=2e-3)


def test_sampled_matrices_have_the_law_moments():
    law = STransformLaw(1 / (1 + t / 2), t)
    rng = np.random.default_rng(3)
    m = sampler_for_law(law)(300, rng)
    assert np.allclose(m, m.T)
    ev = np.linalg.eigvalsh(m)
    # MP(1/2): 1, 1.5, 2.75 (MATH.md 7); eigenvalues are deterministic quantiles up to rotation
    assert np.allclose([np.mean(ev**k) for k in (1, 2, 3)], [1, 1.5, 2.75], rtol=1e-2)


def test_spectrum_keyword_is_used_and_symbolic_parameters_are_refused():
    law = STransformLaw(1 / (1 + q * t), t, spectrum=lambda N: np.full(N, 7.0))
    m = sampler_for_law(law)(5, np.random.default_rng(0))
    assert np.allclose(np.linalg.eigvalsh(m), 7.0)
    with pytest.raises(InvalidArgument, match="symbolic parameters"):
        sampler_for_law(STransformLaw(1 / (1 + q * t), t))
    with pytest.raises(InvalidArgument, match="not the law"):
        sampler_for_law(STransformLaw(1 / (1 - t), t))  # moments 1, 0, -1: m2 < m1^2
    with pytest.raises(InvalidArgument, match="not positive semidefinite"):
        sampler_for_law(STransformLaw(1 / (1 + t) + t**2, t))  # moments 1, 2, 4, 5: Hankel det < 0
    with pytest.raises(InvalidArgument, match="spectrum="):
        # moments 1, 2, 6, 21 pass the Hankel test, but Im G > 0 somewhere: no law has this S
        sampler_for_law(STransformLaw(1 - t + t**3, t))


def test_monte_carlo_with_numeric_inversion_passes_and_catches_a_wrong_s():
    law = STransformLaw(1 / (1 + q * t), t)
    eq = _derive(law)
    check = eq.check_monte_carlo(
        sizes=(100, 200), rng=np.random.default_rng(0), values={q: 0.5}, n_samples=10
    )
    assert check.passed, str(check)
    wrong = _derive(_Inconsistent(1 / (1 + q * t), t, "Liar"))
    bad = wrong.check_monte_carlo(
        sizes=(100, 200), rng=np.random.default_rng(0), values={q: 0.5}, n_samples=10
    )
    assert not bad.passed


def test_monte_carlo_closed_form_against_true_wishart_matrices():
    # the sampler is an actual white Wishart (montecarlo.wishart_sampler), not the inversion
    from detequiv.witnesses.sampling import wishart_sampler

    eq = _derive(STransformLaw(1 / (1 + t / 2), t, "W"))
    check = eq.check_monte_carlo(
        sizes=(100, 200), rng=np.random.default_rng(2), samplers={"B": wishart_sampler(0.5)}, n_samples=10
    )
    assert check.passed, str(check)


@pytest.mark.slow
def test_monte_carlo_product_law_by_inversion():
    # the law (1 + t)^-2 sampled by inversion, against the engine's closed form
    eq = _derive(STransformLaw((1 + t) ** -2, t))
    check = eq.check_monte_carlo(sizes=(100, 200), rng=np.random.default_rng(1), n_samples=10)
    assert check.passed, str(check)
