"""Two-point engine: exact double series against diagram sums, negative controls, and
exact identities (MATH.md 3.1-3.3, 6.3) checked with numbers computed here by numpy."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import brentq

from detequiv.derivations.expressions import Deterministic, FreeMatrix, Gaussian, resolvent
from detequiv.derivations.laws import CumulantLaw, Wishart
from detequiv.derivations.mixed import mixed_moment
from detequiv.derivations.quantities import df2, tr
from detequiv.derivations.sandwich import derive_two_point
from detequiv.derivations.twopoint import TwoPoint, operator_valued_subordination
from detequiv.errors import InvalidArgument, InvalidWord, VerificationError

lam, lam2 = sp.symbols("lam lam2", positive=True)
D, P = sp.symbols("D P", positive=True)
S = Deterministic("Sigma", D)
M = Deterministic("M", D)
C = Deterministic("C", D)
X = Gaussian("X", (P, D))
W = X.T @ X / P
SH = S.sqrt() @ X.T @ X @ S.sqrt() / P


def two(x1, x2, *mid):
    expr = lam * lam2 * resolvent(x1, lam)
    for m in mid:
        expr = expr @ m
    return derive_two_point(expr @ resolvent(x2, lam2))


FORMS = {"III": (SH, SH), "I": (S @ W, W @ S), "II": (W @ S, S @ W)}


# -- structure: the rule picks a ------------------------------------------------------


@pytest.mark.parametrize("form,a", [("III", 1), ("I", 0), ("II", 2)])
def test_forms_and_exponent(form, a):
    tp = two(*FORMS[form], M)
    assert tp.form == form and tp.exponent == a
    rules = [s.rule.name for s in tp.derivation]
    assert rules.count("one_point_renormalization") == 2
    assert "operator_valued_subordination" in rules and "linear_divided_difference" in rules
    # Wishart: c / tr(A R R') = kappa kappa' q / (1 - q df2)   (MATH.md 3.1)
    k, k2 = tp.kappa, tp.kappa2
    q = D / P
    assert sp.simplify(tp.scale - k * k2 * q / (1 - q * df2(S.to_sympy(), k, k2))) == 0


def test_general_law_keeps_divided_difference():
    B = FreeMatrix("B", D, CumulantLaw("b"))
    tp = two(S.sqrt() @ B @ S.sqrt(), S.sqrt() @ B @ S.sqrt(), M)
    assert "linear_divided_difference" not in [s.rule.name for s in tp.derivation]
    assert tp.scale.has(sp.Function)


# -- exact series ----------------------------------------------------------------------


def test_lowest_order_by_hand():
    """[x^1 y^1] of tr(N .) is tr(N Sh M Sh) -> tr(N S M S) + q tr(M S) tr(N S) (MATH.md 6.3)."""
    tp = two(SH, SH, M)
    coeffs = {k: (e, d) for k, e, d in tp.check_series(2).coefficients}
    n, s, m = sp.symbols("N_test Sigma_sqrt M", commutative=False)
    expected = tr(n * s * s * m * s * s) + D / P * tr(m * s * s) * tr(n * s * s)
    assert sp.expand(coeffs[(1, 1)][1] - expected) == 0
    assert sp.expand(coeffs[(1, 1)][0] - expected) == 0


@pytest.mark.parametrize("form", ["III", "I", "II"])
def test_series_wishart_order_4_nonsymmetric_m(form):
    tp = two(*FORMS[form], M, C)  # M C is not symmetric
    result = tp.check_series(4)
    assert result.passed, str(result)
    assert len(result.coefficients) == 15


@pytest.mark.slow
@pytest.mark.parametrize("form", ["III", "I", "II"])
def test_series_wishart_order_7_nonsymmetric_m(form):
    assert two(*FORMS[form], M, C).check_series(7).passed


def test_series_wishart_order_6():
    result = two(SH, SH, M).check_series(6)
    assert result.passed, str(result)
    assert len(result.coefficients) == 28


def test_series_same_order_ab_ab_not_in_math_md():
    """(lam + A B)^-1 M (lam' + A B)^-1: the rule gives a = 1 (no formula in MATH.md)."""
    tp = two(S @ W, S @ W, M)
    assert tp.exponent == 1
    assert tp.check_series(4).passed


def test_series_m_identity_and_m_equal_a():
    assert two(SH, SH).check_series(4).passed
    assert two(S @ W, W @ S, S).check_series(4).passed


@pytest.mark.parametrize("x", ["III", "I"])
def test_series_general_law_symbolic_cumulants(x):
    B = FreeMatrix("B", D, CumulantLaw("b"))
    sides = {"III": (S.sqrt() @ B @ S.sqrt(),) * 2, "I": (S @ B, B @ S)}[x]
    result = two(*sides, M).check_series(3)
    assert result.passed, str(result)


@pytest.mark.slow
def test_series_general_law_order_5():
    B = FreeMatrix("B", D, CumulantLaw("b"))
    assert two(S @ B, B @ S, M, C).check_series(5).passed


def test_series_wishart_in_general_form_also_passes():
    """The general c-form (before linear_divided_difference) is itself exact."""
    tp = two(SH, SH, M)
    general = operator_valued_subordination(lam, lam2, tp.kappa, tp.kappa2, S.to_sympy())
    assert tp.with_scale(general).check_series(4).passed


# -- negative controls ------------------------------------------------------------------


def test_negative_control_drop_sigma_from_trace():
    tp = two(SH, SH, M).with_exponent(0)
    result = tp.check_series(4)
    assert not result.passed
    assert "FAILED" in str(result) and "difference" in str(result)
    with pytest.raises(VerificationError, match="lam\\^-"):
        tp.verify_series(4)


def test_negative_control_perturbed_q():
    tp = two(SH, SH, M)
    wrong = tp.with_scale(tp.scale.xreplace({D: D * sp.Rational(101, 100)}))
    result = wrong.check_series(3)
    assert not result.passed


def test_negative_control_naive_product():
    assert not two(SH, SH, M).with_scale(0).check_series(2).passed


def test_diagram_side_is_independent():
    """The exact side is mixed_moment of N X1^a M X2^b; spot-check one coefficient by hand."""
    tp = two(S @ W, W @ S, M)
    coeffs = {k: d for k, _, d in tp.check_series(3).coefficients}
    n, s, m, w = sp.symbols("N_test Sigma M W_X", commutative=False)
    word = n * s * w * s * w * m * w * s
    assert sp.expand(coeffs[(2, 1)] + mixed_moment(word, {w: Wishart(D / P)})) == 0


# -- exact identities, numerically (MATH.md 3.3, 7) ------------------------------------

E = np.linspace(0.5, 2.0, 7)
Q = 0.5


def kappa_ref(lam_value: float, q: float = Q, e: np.ndarray = E) -> float:
    """Bisection for lam = kappa (1 - q df1(kappa)) on kappa > 0 (q < 1)."""
    return brentq(lambda k: k * (1 - q * np.mean(e / (e + k))) - lam_value, 1e-12, 100.0, xtol=1e-15)


def values(l1, l2, **extra):
    n = len(E)
    return {"lam": l1, "lam2": l2, "Sigma": E, "D": n, "P": int(n / Q), **extra}


def test_isotropic_kappa_table():
    tp = two(SH, SH)
    v = tp.evaluate({"lam": 0.1, "lam2": 1.0, "Sigma": np.ones(4), "D": 4, "P": 8})
    assert v.kappa == pytest.approx(0.1741657387, abs=1e-9)
    assert v.kappa2 == pytest.approx(1.2807764064, abs=1e-9)


@pytest.mark.parametrize("l1,l2", [(0.3, 0.7), (0.02, 0.5), (1e-3, 2.0)])
def test_m_identity_resolvent_identity(l1, l2):
    v = two(SH, SH).evaluate(values(l1, l2))
    k, k2 = kappa_ref(l1), kappa_ref(l2)
    r, r2 = np.diag(1 / (E + k)), np.diag(1 / (E + k2))
    expected = (l2 * k * r - l1 * k2 * r2) / (l2 - l1)
    assert np.abs(v.matrix - expected).max() < 1e-10


def test_m_identity_complex_ridges():
    tp = two(SH, SH)
    v = tp.evaluate(values(0.1 + 0.3j, 0.2 - 0.1j))
    k, k2 = v.kappa, v.kappa2
    for z, kk in ((0.1 + 0.3j, k), (0.2 - 0.1j, k2)):  # each kappa solves its equation
        assert abs(kk * (1 - Q * np.mean(E / (E + kk))) - z) < 1e-10
    r, r2 = np.diag(1 / (E + k)), np.diag(1 / (E + k2))
    expected = ((0.2 - 0.1j) * k * r - (0.1 + 0.3j) * k2 * r2) / ((0.2 - 0.1j) - (0.1 + 0.3j))
    assert np.abs(v.matrix - expected).max() < 1e-10


def test_push_through_m_equal_a_form_i():
    """(lam + AB)^-1 A = A (lam + BA)^-1, then the resolvent identity (MATH.md 3.3)."""
    l1, l2 = 0.2, 0.9
    v = two(S @ W, W @ S, S).evaluate(values(l1, l2))
    k, k2 = kappa_ref(l1), kappa_ref(l2)
    r, r2 = np.diag(1 / (E + k)), np.diag(1 / (E + k2))
    expected = np.diag(E) @ (l2 * k * r - l1 * k2 * r2) / (l2 - l1)
    assert np.abs(v.matrix - expected).max() < 1e-10


def test_divided_difference_of_kappa_is_df2_denominator():
    for l1, l2 in ((0.1, 0.4), (0.05, 3.0)):
        k, k2 = kappa_ref(l1), kappa_ref(l2)
        df2_value = np.mean(E**2 / ((E + k) * (E + k2)))
        assert (k2 - k) / (l2 - l1) == pytest.approx(1 / (1 - Q * df2_value), rel=1e-10)


@pytest.mark.parametrize("general", [False, True])
def test_equal_ridges_give_derivative_of_one_point(general):
    """lam^2 G^2 = lam G - lam d(lam G)/dlam, with lam G ~ kappa R (one-point, numpy here)."""
    tp = two(SH, SH)
    if general:
        tp = tp.with_scale(operator_valued_subordination(lam, lam2, tp.kappa, tp.kappa2, S.to_sympy()))
    l0, h = 0.3, 1e-5

    def one(z):
        k = kappa_ref(z)
        return k * np.diag(1 / (E + k))

    expected = one(l0) - l0 * (one(l0 + h) - one(l0 - h)) / (2 * h)
    v = tp.evaluate(values(l0, l0))
    assert np.abs(v.matrix - expected).max() < 1e-7


def test_general_form_agrees_numerically_with_wishart_form():
    tp = two(S @ W, W @ S, M)
    general = tp.with_scale(operator_valued_subordination(lam, lam2, tp.kappa, tp.kappa2, S.to_sympy()))
    rng = np.random.default_rng(0)
    m = rng.standard_normal((7, 7))
    for l1, l2 in ((0.3, 0.6), (0.1 + 0.2j, 0.4 - 0.3j)):
        a = tp.evaluate(values(l1, l2, M=m)).matrix
        b = general.evaluate(values(l1, l2, M=m)).matrix
        assert np.abs(a - b).max() < 1e-10


def test_correction_is_not_small():
    v = two(SH, SH, M).evaluate(values(0.02, 0.5, M=np.random.default_rng(1).standard_normal((7, 7))))
    total, naive = v.trace(), v.naive_trace()
    assert abs(total - naive) / abs(total) > 0.03


# -- errors ---------------------------------------------------------------------------------


def test_errors():
    with pytest.raises(InvalidArgument, match="two symbols"):
        derive_two_point(lam * resolvent(SH, lam) @ M @ resolvent(SH, lam))
    with pytest.raises(InvalidArgument, match="resolvent\\(X1, lam\\)"):
        derive_two_point(lam * resolvent(SH, lam))
    B = FreeMatrix("B", D, Wishart(sp.Rational(1, 2)))
    with pytest.raises(InvalidWord, match="different free factors"):
        two(SH, S @ B, M)
    with pytest.raises(InvalidWord, match="no resolvent absorbs it"):
        derive_two_point(lam * lam2 * resolvent(SH, lam) @ B @ resolvent(SH, lam2))
    # S B W with two free factors is a layered chain now (tests/test_twopoint_layers.py)
    with pytest.raises(InvalidWord, match="add up to 1"):
        two(S @ W @ S, S @ W @ S, M)
    with pytest.raises(InvalidArgument, match="order"):
        two(SH, SH, M).check_series(0)


def test_str_and_latex():
    tp = two(SH, SH, M)
    assert isinstance(tp, TwoPoint)
    text = str(tp)
    assert "operator_valued_subordination" in text and "kappa'" in text
    assert tp._repr_latex_().startswith("$\\begin{aligned}")


def test_series_with_scaled_matrices_and_prefactor():
    """Ridge rescaling: X.T @ X without 1/P, and 3 lam lam2 (lam + 2 A B)^-1 M (lam2 + 2 B A)^-1."""
    assert two(S @ X.T @ X, X.T @ X @ S, M).check_series(3).passed
    B = FreeMatrix("B", D, CumulantLaw("b"))
    tp = derive_two_point(3 * lam * lam2 * resolvent(2 * S @ B, lam) @ M @ resolvent(2 * B @ S, lam2))
    assert tp.prefactor == 3 and tp.coeff == 2
    assert tp.check_series(3).passed
