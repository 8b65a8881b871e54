"""Additive free perturbations (additive subordination) and their composition with sampling.

Expected values are independent of the engine: the exact side of every series check is
the limit trace of the noncommutative polynomial ``M (A + B)^k`` by the free product
formula (:func:`~detequiv.derivations.mixed.polynomial_moment`); the numbers come from
closed-form Stieltjes transforms (semicircle, Marchenko-Pastur: quadratic equations
solved here) and from simulation. Negative controls (plausible wrong formulas) show that
both witnesses can fail.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import sympy as sp

import detequiv  # noqa: F401 - registers the Monte Carlo witness
from detequiv.derivations.derive import derive
from detequiv.derivations.expressions import Deterministic, FreeMatrix, Gaussian, resolvent
from detequiv.derivations.laws import CumulantLaw, Semicircle, Wishart
from detequiv.derivations.onepoint import OnePoint
from detequiv.derivations.quantities import df1
from detequiv.errors import InvalidArgument, InvalidWord

lam = sp.Symbol("lam", positive=True)
D, P = sp.symbols("D P", positive=True)
v, q = sp.symbols("v q", positive=True)
Sigma = Deterministic("Sigma", D)
X = Gaussian("X", (P, D))
S = FreeMatrix("S", D, Semicircle(v))
B = FreeMatrix("B", D, Wishart(q))
Bsym = FreeMatrix("C", D, CumulantLaw("C"))
Sigma_hat = Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P


def _rules(eq: OnePoint) -> list[str]:
    return [s.rule.name for s in eq.derivation]


def _replace_fixed_point(eq: OnePoint, symbol: sp.Symbol, rhs: sp.Expr) -> OnePoint:
    fps = tuple(
        dataclasses.replace(fp, equation=sp.Eq(fp.symbol, rhs)) if fp.symbol == symbol else fp
        for fp in eq.fixed_points
    )
    return dataclasses.replace(eq, fixed_points=fps)


# -- the rule -----------------------------------------------------------------------


def test_deterministic_plus_semicircle_rule_and_fixed_point():
    eq = derive(lam * resolvent(Sigma + S, lam))
    k = sp.Symbol("kappa_1")
    Sm = sp.MatrixSymbol("Sigma", D, D)
    assert _rules(eq) == ["additive_subordination"]
    # subordination with z = -lam: lam~ = lam + R_S(-g), g = (1 - df1)/lam~, R_S(w) = v w
    (fp,) = eq.fixed_points
    assert sp.simplify(fp.rhs - (lam - v * (1 - df1(Sm, k)) / k)) == 0
    assert fp.implicit
    # prefactor lam / lam~ in front of lam~ (lam~ + Sigma)^-1
    assert sp.simplify(eq.prefactor - lam / k) == 0
    assert eq.matrix == Sm
    assert "Biane" in eq.derivation[0].reference


def test_scaled_free_term_uses_scaled_r_transform():
    eq = derive(lam * resolvent(Sigma + 3 * S, lam))
    k = sp.Symbol("kappa_1")
    Sm = sp.MatrixSymbol("Sigma", D, D)
    # R_{3S}(w) = 3 R_S(3 w) = 9 v w
    assert sp.simplify(eq.fixed_points[0].rhs - (lam - 9 * v * (1 - df1(Sm, k)) / k)) == 0


# -- series witness (exact, order >= 6) ----------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: Sigma + S,
        lambda: Sigma + B,
        lambda: 2 * Sigma + S,
        lambda: S + Sigma @ Sigma,
    ],
    ids=["Sigma + semicircle", "Sigma + Wishart", "2 Sigma + semicircle", "Sigma^2 + S"],
)
def test_additive_series_order_6(build):
    result = derive(lam * resolvent(build(), lam)).check_series(6)
    assert result.passed, str(result)
    # the exact side is not trivial: it sees the free cumulants of the perturbation
    assert result.coefficients[2][1].free_symbols & {v, q} or "C" in str(result.coefficients[2][1])


def test_symbolic_law_series_order_4():
    # R_C has no closed form: it enters as an undefined function, replaced by the exact
    # truncated series of its symbolic cumulants kappa_{C,n} in the check
    eq = derive(lam * resolvent(Sigma + Bsym, lam))
    assert "R_C" in str(eq.fixed_points[0].rhs)
    result = eq.check_series(4)
    assert result.passed, str(result)
    assert "kappa_C,3" in str(result.coefficients[3][1])


@pytest.mark.slow
def test_symbolic_law_series_order_6():
    assert derive(lam * resolvent(Sigma + Bsym, lam)).check_series(6).passed


def test_sample_covariance_plus_semicircle_series_order_6():
    eq = derive(lam * resolvent(Sigma_hat + S, lam))
    assert _rules(eq)[-1] == "layer_composition"
    assert "additive_subordination" in _rules(eq) and "free_factor_renormalization" in _rules(eq)
    result = eq.check_series(6)
    assert result.passed, str(result)


def test_covariance_plus_noise_then_sampled_series_order_5():
    # the example that appears in no doc: (Sigma + S) sampled by a white Wishart
    eq = derive(lam * resolvent(X.T @ X @ (Sigma + S) / P, lam))
    rules = _rules(eq)
    assert rules.index("free_factor_renormalization") < rules.index("additive_subordination")
    assert "trace_invariance" in rules and rules[-1] == "layer_composition"
    result = eq.check_series(5)
    assert result.passed, str(result)


@pytest.mark.slow
@pytest.mark.parametrize("order", [6, 7])
def test_covariance_plus_noise_then_sampled_series_high_order(order):
    eq = derive(lam * resolvent(X.T @ X @ (Sigma + S) / P, lam))
    assert eq.check_series(order).passed


def test_born_approximation_is_caught_by_the_series():
    # plausible wrong formula: evaluate g at the bare ridge (first-order Born approximation)
    eq = derive(lam * resolvent(Sigma + B, lam))
    k = sp.Symbol("kappa_1")
    Sm = sp.MatrixSymbol("Sigma", D, D)
    (fp,) = eq.fixed_points
    # true: lam~ = lam + R_B(-(1 - df1)/lam~), R_B(w) = 1/(1 - q w) (closed form of MATH.md 1.5)
    assert sp.simplify(fp.rhs - (lam + 1 / (1 + q * (1 - df1(Sm, k)) / k))) == 0
    wrong = _replace_fixed_point(eq, k, lam + 1 / (1 + q * (1 - df1(Sm, k)) / lam))
    result = wrong.check_series(6)
    assert not result.passed
    assert result.first_failure is not None and result.first_failure >= 2


def test_sign_flip_and_missing_prefactor_are_caught():
    eq = derive(lam * resolvent(Sigma + S, lam))
    k = sp.Symbol("kappa_1")
    (fp,) = eq.fixed_points
    flipped = _replace_fixed_point(eq, k, 2 * lam - fp.rhs)  # lam~ = lam - R(-g)
    assert not flipped.check_series(6).passed
    # composition: the trace of the additive layer carries the prefactor kappa_1/kappa_2;
    # dropping it (df1 equal across the additive layer, as for a multiplicative one) fails
    eq2 = derive(lam * resolvent(X.T @ X @ (Sigma + S) / P, lam))
    k1, k2 = sp.symbols("kappa_1 kappa_2")
    Sm = sp.MatrixSymbol("Sigma", D, D)
    naive = lam / (1 - D / P * df1(Sm, k2))
    outer = sp.solve(sp.Eq(k2, k1 - v * (1 - df1(Sm, k2)) / k2), k1)[0]
    wrong = _replace_fixed_point(eq2, k2, sp.simplify(k2 * naive / outer))
    assert not wrong.check_series(4).passed


# -- numbers: closed-form Stieltjes transforms ---------------------------------------


def _semicircle_stieltjes(z: complex, var: float) -> complex:
    """G(z) = (z - sqrt(z^2 - 4 var)) / (2 var), the branch with G ~ 1/z (Im G Im z < 0)."""
    root = np.sqrt(complex(z * z - 4 * var))
    g1, g2 = (z - root) / (2 * var), (z + root) / (2 * var)
    if z.imag == 0:
        return g1 if abs(g1 * z - 1) < abs(g2 * z - 1) or abs(g1) < abs(g2) else g2
    return g1 if g1.imag * z.imag < 0 else g2


def _mp_stieltjes(z: complex, ratio: float) -> complex:
    """Marchenko-Pastur: ratio z G^2 - (z + ratio - 1) G + 1 = 0... solved with the G ~ 1/z branch."""
    a, b, c = ratio * z, -(z + ratio - 1), 1.0
    roots = np.roots([a, b, c])
    # the physical root: Im G Im z < 0, or for real z outside the support the one ~ 1/z
    if z.imag != 0:
        return complex(next(r for r in roots if r.imag * z.imag < 0))
    return complex(min(roots, key=lambda r: abs(r * z - 1)))


@pytest.mark.parametrize("ridge", [0.5, 2.0, 0.3 + 0.4j, 1e-3 + 0.2j])
def test_constant_plus_semicircle_matches_closed_form(ridge):
    eq = derive(lam * resolvent(Sigma + S, lam))
    c, var = 0.7, 0.25
    value = eq.evaluate({Sigma: np.full(4, c), lam: ridge, v: var, D: 4})
    # tr lam (lam + c + S)^-1 = -lam G_S(-(lam + c))
    expected = -ridge * _semicircle_stieltjes(-(ridge + c), var)
    assert abs(value.trace() - expected) < 1e-10


@pytest.mark.parametrize("ridge", [0.4, 0.3 + 0.4j])
def test_constant_plus_wishart_matches_marchenko_pastur(ridge):
    eq = derive(lam * resolvent(Sigma + B, lam))
    c, ratio = 0.5, 0.5
    value = eq.evaluate({Sigma: np.full(3, c), lam: ridge, q: ratio, D: 3})
    G = _mp_stieltjes(complex(-(ridge + c)), ratio)
    assert abs(value.trace() - (-ridge * G)) < 1e-10


# -- Monte Carlo witness --------------------------------------------------------------


def test_monte_carlo_semicircle_and_rejection_of_a_wrong_formula():
    eq = derive(lam * resolvent(Sigma + S, lam))
    kw = dict(sizes=(80, 160), values={v: 0.1}, n_samples=6, lams=(0.5, 0.3 + 0.4j))
    good = eq.check_monte_carlo(rng=np.random.default_rng(7), **kw)
    assert good.passed, str(good)
    k = sp.Symbol("kappa_1")
    wrong = _replace_fixed_point(eq, k, 2 * lam - eq.fixed_points[0].rhs)  # sign of R flipped
    bad = wrong.check_monte_carlo(rng=np.random.default_rng(7), **kw)
    assert not bad.passed


@pytest.mark.slow
@pytest.mark.parametrize(
    "build",
    [
        lambda: Sigma + B,
        lambda: Sigma_hat + S,
        lambda: X.T @ X @ (Sigma + S) / P,
    ],
    ids=["Sigma + Wishart", "Sigma_hat + semicircle", "(Sigma + S) sampled"],
)
def test_monte_carlo_slow(build):
    eq = derive(lam * resolvent(build(), lam))
    result = eq.check_monte_carlo(
        sizes=(100, 200, 400), rng=np.random.default_rng(1), values={v: 0.1, q: 0.5}, n_samples=10
    )
    assert result.passed, str(result)


# -- errors ---------------------------------------------------------------------------


def test_sum_without_free_additive_term_is_refused():
    with pytest.raises(InvalidArgument, match="additive"):
        derive(lam * resolvent(Sigma + Sigma_hat, lam), method="shapes")


def test_repeated_free_matrix_in_a_sum_is_refused():
    with pytest.raises(InvalidWord, match="more than once"):
        derive(lam * resolvent(Sigma @ S + S, lam), method="shapes")


@pytest.mark.slow
def test_monte_carlo_rejects_composition_without_the_additive_trace_prefactor():
    # (Sigma + S) sampled: the correct equivalent passes, the one that treats the additive
    # layer like a multiplicative one in the trace (df1 equal across it) is rejected
    eq = derive(lam * resolvent(X.T @ X @ (Sigma + S) / P, lam))
    k1, k2 = sp.symbols("kappa_1 kappa_2")
    Sm = sp.MatrixSymbol("Sigma", D, D)
    outer = sp.solve(sp.Eq(k2, k1 - v * (1 - df1(Sm, k2)) / k2), k1)[0]
    wrong = _replace_fixed_point(eq, k2, sp.simplify(k2 * (lam / (1 - D / P * df1(Sm, k2))) / outer))
    kw = dict(
        sizes=(100, 200, 400),
        values={v: 0.5},
        dims={P: 0.5},
        n_samples=6,
        lams=(0.5,),
        spectra={Sigma: lambda n: np.linspace(1.5, 3, n)},
    )
    good = eq.check_monte_carlo(rng=np.random.default_rng(3), **kw)
    assert good.passed, str(good)
    bad = wrong.check_monte_carlo(rng=np.random.default_rng(3), **kw)
    assert not bad.passed, str(bad)


def test_ridgeless_additive_is_refused_not_silently_zero():
    """lam = 0 for Sigma + semicircle noise: the spectrum can reach below 0, so there is no
    ridgeless value to return; before, evaluate returned 0."""
    import numpy as _np
    import sympy as _sp

    import detequiv as _de
    from detequiv.errors import InvalidArgument as _Bad

    lam = _sp.Symbol("lam", positive=True)
    d = _sp.Symbol("D", positive=True)
    s = _de.Deterministic("Sigma", d)
    b = _de.FreeMatrix("B", d, _de.Semicircle(_sp.Rational(1, 4)))
    eq = _de.derive(lam * _de.resolvent(s + b, lam))
    with pytest.raises(_Bad, match="ridgeless"):
        eq.evaluate({s: _np.linspace(0.5, 2, 50), lam: 0, d: 50})
