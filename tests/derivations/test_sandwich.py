"""A random matrix sandwiched between two resolvents (MATH.md 3.4): exact rewriting checked
with numpy on one draw, exact double series of the ORIGINAL word against planar diagram sums
(independent of the absorption rule), Monte Carlo of the original expression with wrong
answers rejected, and the ridge-regression training-error block against a finite difference
of the one-point equivalent."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import detequiv.witnesses.sandwich  # noqa: F401 - registers the witness
from detequiv.derivations.derive import derive
from detequiv.derivations.expressions import (
    Deterministic,
    FreeMatrix,
    Gaussian,
    Identity,
    Product,
    Resolvent,
    Sqrt,
    Transpose,
    resolvent,
)
from detequiv.derivations.laws import CumulantLaw, FreePoisson
from detequiv.derivations.onepoint import OnePoint
from detequiv.derivations.quantities import tr
from detequiv.derivations.sandwich import Combination, Term, derive_sandwich, derive_two_point, is_sandwich
from detequiv.derivations.twopoint import TwoPoint
from detequiv.errors import InvalidArgument, InvalidWord, VerificationError
from detequiv.witnesses.sandwich import check_monte_carlo

lam, lam2 = sp.symbols("lam lam2", positive=True)
D, P = sp.symbols("D P", positive=True)
S = Deterministic("Sigma", D)
M = Deterministic("M", D)
X = Gaussian("X", (P, D))
Y = Gaussian("Y", (P, D))
W = X.T @ X / P
SH = S.sqrt() @ X.T @ X @ S.sqrt() / P


def sandwich(x1, x2, *mid, coeff=lam * lam2):
    expr = coeff * resolvent(x1, lam)
    for m in mid:
        expr = expr @ m
    return expr @ resolvent(x2, lam2)


CASE_A = sandwich(SH, SH, SH)  # lam lam' G Sigma_hat G'
CASE_B = sandwich(S @ W, W @ S, S @ W, M)  # lam lam' (lam + A B)^-1 A B M (lam' + B A)^-1
CASE_C = sandwich(S @ W, W @ S, M, W @ S)  # mirror: G1 M B A G2
CASE_BOTH = sandwich(S @ W, W @ S, S @ W, M, W @ S)  # G1 X1 M X2 G2


# -- the exact rewriting, checked with numpy on one draw -------------------------------


def _num(e, mats, draws, scal):
    """A naive numeric evaluator of expression trees (written for this test)."""
    if isinstance(e, Product):
        out = np.eye(mats["n"])
        for f in e.factors:
            out = out @ _num(f, mats, draws, scal)
        return complex(sp.sympify(e.coeff).subs(scal)) * out
    if isinstance(e, Resolvent):
        a = _num(e.arg, mats, draws, scal)
        return np.linalg.inv(a + complex(sp.sympify(e.lam).subs(scal)) * np.eye(a.shape[0]))
    if isinstance(e, Deterministic):
        return mats[e.name]
    if isinstance(e, Sqrt):
        return mats[e.base.name + "_sqrt"]
    if isinstance(e, Gaussian):
        return draws[e.name]
    if isinstance(e, Transpose):
        return draws[e.arg.name].T
    if isinstance(e, Identity):
        return np.eye(mats["n"])
    raise TypeError(e)


@pytest.mark.parametrize("expr", [CASE_A, CASE_B, CASE_C, CASE_BOTH], ids=["a", "b", "c", "both"])
def test_rewriting_is_exact_on_a_draw(expr):
    """sum_i coeff_i left_i (random of term i) right_i equals the input for one sample
    (n = 7, P = 11, real and complex ridges): the rules are identities, not approximations."""
    comb = derive_sandwich(expr)
    rng = np.random.default_rng(0)
    n, p = 7, 11
    e = np.linspace(0.5, 2.0, n)
    mats = {"n": n, "Sigma": np.diag(e), "Sigma_sqrt": np.diag(np.sqrt(e)), "M": rng.standard_normal((n, n))}
    draws = {"X": rng.standard_normal((p, n))}
    for l1, l2 in ((0.3, 0.7), (0.2 + 0.5j, 1.1 - 0.2j)):
        scal = {lam: l1, lam2: l2, D: n, P: p}
        total = np.zeros((n, n), dtype=complex)
        for t in comb.terms:
            body = np.eye(n) if t.result is None else _num(t.result.random, mats, draws, scal)
            for f in t.left:
                body = _num(f, mats, draws, scal) @ body
            for f in reversed(t.right):
                body = body @ _num(f, mats, draws, scal)
            total += complex(sp.sympify(t.coeff).subs(scal)) * body
        np.testing.assert_allclose(total, _num(expr, mats, draws, scal), rtol=1e-10, atol=1e-12)


# -- structure ---------------------------------------------------------------------------------


def test_case_a_is_the_divided_difference_of_one_points():
    """MATH.md 3.4, first display: lam lam' (kappa' R' - kappa R) / (lam' - lam)."""
    comb = derive_sandwich(CASE_A)
    assert [t.kind for t in comb.terms] == ["one_point", "one_point"]
    rules = [s.rule.name for s in comb.derivation]
    assert rules[:2] == ["resolvent_absorption", "resolvent_identity"]
    k, k2 = sp.Symbol("kappa"), sp.Symbol("kappa'")
    s = S.to_sympy()
    expected = (
        lam * lam2 * (k2 * (s + k2 * sp.Identity(D)).inverse() - k * (s + k * sp.Identity(D)).inverse())
    )
    diff = (comb.deterministic - expected / (lam2 - lam)).subs({S.to_sympy(): sp.diag(1, 3)}).subs(D, 2)
    assert sp.simplify(sp.Matrix(diff.doit())) == sp.zeros(2, 2)
    assert [str(fp.symbol) for fp in comb.fixed_points] == ["kappa", "kappa'"]
    assert comb.fixed_points[1].rhs.has(lam2) and not comb.fixed_points[1].rhs.has(lam)


def test_case_b_is_one_point_times_m_minus_lam_two_point():
    """MATH.md 3.4, second display, and the ridge symbols of TwoPoint."""
    comb = derive_sandwich(CASE_B)
    kinds = {t.kind: t for t in comb.terms}
    assert set(kinds) == {"one_point", "two_point"}
    one, two = kinds["one_point"], kinds["two_point"]
    assert one.coeff == lam and one.left == (M,) and one.result.lam == lam2
    assert two.coeff == -lam and isinstance(two.result, TwoPoint) and two.result.form == "I"
    tp = derive_two_point(sandwich(S @ W, W @ S, M))
    assert {(fp.symbol, fp.equation) for fp in comb.fixed_points} == {
        (fp.symbol, fp.equation) for fp in tp.fixed_points
    }
    assert "kappa'" in str(one.deterministic) and "kappa*" not in str(one.deterministic).replace("kappa'", "")


def test_both_sides_give_four_terms():
    comb = derive_sandwich(CASE_BOTH)
    assert sorted(t.kind for t in comb.terms) == ["deterministic", "one_point", "one_point", "two_point"]
    det = next(t for t in comb.terms if t.kind == "deterministic")
    assert det.coeff == lam * lam2 and det.left == (M,)


def test_printing():
    comb = derive_sandwich(CASE_B)
    text = str(comb)
    assert "resolvent_absorption" in text and "collect_terms" in text and "kappa' = " in text
    assert comb._repr_latex_().startswith(r"$\begin{aligned}")


def test_dispatch_condition():
    assert is_sandwich(CASE_A) and is_sandwich(CASE_B)
    assert not is_sandwich(sandwich(SH, SH, M)) and not is_sandwich(SH)


# -- exact series of the original word ---------------------------------------------------------


def test_case_a_series_order_6_and_lowest_coefficients_by_hand():
    check = derive_sandwich(CASE_A).check_series(6)
    assert check.passed, str(check)
    assert len(check.coefficients) == 28
    t, s = sp.symbols("T_test Sigma_sqrt", commutative=False)
    q = D / P
    by = {k: (e, d) for k, e, d in check.coefficients}
    # [x^0 y^0]: tr(T Sh) -> tr(T Sigma); [x^1 y^0]: -tr(T Sh^2) -> -(tr(T S^2) + q tr(S) tr(T S))
    assert sp.expand(by[(0, 0)][0] - tr(t * s**2)) == 0
    expected = -(tr(t * s**4) + q * tr(s**2) * tr(t * s**2))
    assert sp.expand(by[(1, 0)][0] - expected) == 0 and sp.expand(by[(1, 0)][1] - expected) == 0


def test_case_b_series_order_3_dense_m():
    """Order 6 runs with the slow tests (the two-point series dominates the cost)."""
    check = derive_sandwich(CASE_B).check_series(3)
    assert check.passed, str(check)


@pytest.mark.slow
@pytest.mark.parametrize("expr,order", [(CASE_B, 6), (CASE_C, 6), (CASE_BOTH, 4)], ids=["b", "c", "both"])
def test_series_high_order_slow(expr, order):
    check = derive_sandwich(expr).check_series(order)
    assert check.passed, str(check)


def test_mirror_and_both_series():
    assert derive_sandwich(CASE_C).check_series(2).passed
    assert derive_sandwich(CASE_BOTH).check_series(2).passed


def test_general_free_factor_series():
    """B with symbolic free cumulants (S-transform as a series): Sigma^(1/2) B Sigma^(1/2)."""
    b = FreeMatrix("B", D, CumulantLaw("b"))
    sh = S.sqrt() @ b @ S.sqrt()
    assert derive_sandwich(sandwich(sh, sh, sh)).check_series(3).passed


@pytest.mark.slow
@pytest.mark.parametrize("form", ["b", "c"])
def test_general_free_factor_two_point_series_slow(form):
    b = FreeMatrix("B", D, CumulantLaw("b"))
    expr = sandwich(S @ b, b @ S, S @ b, M) if form == "b" else sandwich(b @ S, S @ b, M, S @ b)
    check = derive_sandwich(expr).check_series(3)
    assert check.passed, str(check)


@pytest.mark.slow
def test_free_poisson_monte_carlo_slow(capsys):
    b = FreeMatrix("B", D, FreePoisson(2, sp.Rational(7, 10)))
    comb = derive_sandwich(sandwich(S @ b, b @ S, S @ b, M))
    two = next(t for t in comb.terms if t.kind == "two_point")
    one = next(t for t in comb.terms if t.kind == "one_point")
    wrong = comb.with_terms((one, Term(two.coeff, two.result.with_scale(0), D)))
    result = comb.check_monte_carlo(
        (100, 200, 400), rng=np.random.default_rng(14), n_samples=10, controls={"correction dropped": wrong}
    )
    print(result)
    assert result.passed, str(result)


def test_series_rejects_wrong_answers():
    comb = derive_sandwich(CASE_B)
    two = next(t for t in comb.terms if t.kind == "two_point")
    one = next(t for t in comb.terms if t.kind == "one_point")
    # the two-point correction dropped (naive product kappa kappa' R M R')
    naive = comb.with_terms((one, Term(two.coeff, two.result.with_scale(0), D)))
    check = naive.check_series(2)
    assert not check.passed and check.failures
    with pytest.raises(VerificationError, match="FAILED"):
        naive.verify_series(2)
    # the whole two-point term dropped: the 1/lam pole of lam M G' is left over
    check = comb.with_terms((one,)).check_series(2)
    assert check.residuals and check.residuals[0][0] == (-1, 0)
    # case (a) with Sigma_hat replaced by Sigma in the middle: lam lam' kappa kappa' R Sigma R'
    a = derive_sandwich(CASE_A)
    tp = derive_two_point(sandwich(SH, SH, S)).with_scale(0)
    assert not a.with_terms((Term(sp.S.One, tp, D),)).check_series(2).passed
    # a wrong sign in the resolvent identity
    flipped = a.with_terms(tuple(Term(-t.coeff, t.result, D, t.left, t.right, t.rename) for t in a.terms))
    assert not flipped.check_series(2).passed


# -- numbers: equal ridges and the training error --------------------------------------------


def test_training_error_block_is_the_derivative_of_the_one_point():
    """lam^2 beta^T G Sh G beta = lam^2 d/dlam [beta^T lam G beta] (G Sh G = G - lam G^2 =
    d/dlam(lam G)); the right side by a central difference of the one-point value."""
    n = 60
    e = np.linspace(0.2, 3.0, n)
    beta = np.linspace(1.0, 0.1, n)
    beta /= np.linalg.norm(beta)
    base = {D: n, P: 2 * n, "Sigma": e}
    comb = derive_sandwich(sandwich(SH, SH, SH))
    one = derive(lam * resolvent(SH, lam))
    assert isinstance(one, OnePoint)
    for l0 in (0.4, 0.05):
        value = comb.evaluate({**base, lam: l0, lam2: l0}).matrix
        h = 1e-4 * l0
        fp = one.evaluate({**base, lam: l0 + h}).matrix
        fm = one.evaluate({**base, lam: l0 - h}).matrix
        expected = l0**2 * (fp - fm) / (2 * h)
        assert abs(beta @ value @ beta - beta @ expected @ beta) < 1e-6 * abs(beta @ expected @ beta)
        np.testing.assert_allclose(np.trace(value) / n, np.trace(expected) / n, rtol=1e-6)
    # close to the equal-ridge limit from both sides
    near = comb.evaluate({**base, lam: 0.4, lam2: 0.4 * (1 + 1e-3)}).trace()
    assert abs(near - comb.evaluate({**base, lam: 0.4, lam2: 0.4}).trace()) < 1e-2 * abs(near)


def test_evaluate_two_point_term_matches_its_engine():
    comb = derive_sandwich(CASE_B)
    n = 30
    rng = np.random.default_rng(5)
    m = np.eye(n) + rng.standard_normal((n, n)) / np.sqrt(n)
    vals = {D: n, P: 2 * n, "Sigma": np.linspace(0.5, 2, n), "M": m, lam: 0.3, lam2: 0.6}
    v = comb.evaluate(vals)
    tp = derive_two_point(sandwich(S @ W, W @ S, M))
    one = derive(lam2 * resolvent(W @ S, lam2))
    expected = 0.3 * m @ one.evaluate({**vals, lam2: 0.6}).matrix - 0.3 * tp.evaluate(vals).matrix
    np.testing.assert_allclose(v.matrix, expected, rtol=1e-10)


# -- Monte Carlo of the original expression ---------------------------------------------------


def test_case_a_monte_carlo_naive_sigma_rejected(capsys):
    comb = derive_sandwich(CASE_A)
    tp = derive_two_point(sandwich(SH, SH, S)).with_scale(0)  # lam lam' kappa kappa' R Sigma R'
    wrong = comb.with_terms((Term(sp.S.One, tp, D),))
    result = check_monte_carlo(
        comb,
        (100, 200, 400),
        rng=np.random.default_rng(11),
        n_samples=5,
        lams=((0.5, 0.2), (0.1 + 0.3j, 0.2 - 0.1j)),
        tests=("T",),
        controls={"Sigma_hat -> Sigma": wrong},
    )
    print(result)
    print("worst |err|/tol:", max(r.report.max_ratio for r in result.reports))
    print("rejection |err|/tol:", min(r.rejection for r in result.reports))
    assert result.passed, str(result)
    assert all(r.report.passed and r.rejection > 3 for r in result.reports)


def test_case_b_monte_carlo_dropped_correction_rejected():
    comb = derive_sandwich(CASE_B)
    two = next(t for t in comb.terms if t.kind == "two_point")
    one = next(t for t in comb.terms if t.kind == "one_point")
    controls = {
        "two-point term dropped": comb.with_terms((one,)),
        "two-point correction dropped": comb.with_terms((one, Term(two.coeff, two.result.with_scale(0), D))),
    }
    result = comb.check_monte_carlo(
        (100, 200),
        rng=np.random.default_rng(12),
        n_samples=6,
        lams=((0.3, 0.6), (0.1 + 0.3j, 0.2 - 0.1j)),
        tests=("T",),
        controls=controls,
    )
    print(result)
    assert result.passed, str(result)


@pytest.mark.slow
@pytest.mark.parametrize("expr", [CASE_A, CASE_B, CASE_C, CASE_BOTH], ids=["a", "b", "c", "both"])
def test_monte_carlo_all_cases_slow(expr, capsys):
    comb = derive_sandwich(expr)
    result = comb.check_monte_carlo(
        (100, 200, 400),
        rng=np.random.default_rng(13),
        n_samples=10,
        lams=((0.5, 0.2), (0.1 + 0.3j, 0.2 - 0.1j), (0.3, 0.3)),
    )
    print(result)
    assert result.passed, str(result)


# -- bad input -----------------------------------------------------------------------------


def test_random_factor_not_next_to_its_resolvent_is_named():
    with pytest.raises(InvalidWord, match=r"X\.T between the resolvents is random"):
        derive_sandwich(sandwich(SH, SH, M, W, M))
    with pytest.raises(InvalidWord, match=r"Y\.T between the resolvents is random"):
        derive_sandwich(sandwich(SH, SH, Y.T @ Y / P))


def test_bad_shapes_and_ridges():
    with pytest.raises(InvalidArgument, match="ridge lam"):
        derive_sandwich(lam**2 * resolvent(SH, lam) @ SH @ resolvent(SH, lam))
    with pytest.raises(InvalidArgument, match="derive_sandwich needs"):
        derive_sandwich(SH @ resolvent(SH, lam))
    with pytest.raises(InvalidArgument, match="order must be"):
        derive_sandwich(CASE_A).check_series(0)
    with pytest.raises(InvalidArgument, match="Generator"):
        check_monte_carlo(derive_sandwich(CASE_A), rng=1)
    with pytest.raises(InvalidArgument, match="control"):
        check_monte_carlo(derive_sandwich(CASE_A), rng=np.random.default_rng(0), controls={"x": 1})
    assert isinstance(derive_sandwich(CASE_A), Combination)
