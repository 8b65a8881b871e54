"""derive(): named rules, fixed points, and the exact series witness.

Expected values come from the planar diagram sums (mixed_moment, the foundation layer)
and from closed forms of MATH.md (low-order coefficients, S-transforms), never from the
engine's own output. Negative controls show that the series check can fail.
"""

from __future__ import annotations

import dataclasses

import pytest
import sympy as sp

from detequiv.derivations.derivation import FixedPoint, solve_order
from detequiv.derivations.derive import derive
from detequiv.derivations.expressions import Deterministic, FreeMatrix, Gaussian, resolvent
from detequiv.derivations.laws import CumulantLaw, FreePoisson, Semicircle, Wishart
from detequiv.derivations.onepoint import OnePoint
from detequiv.derivations.quantities import df1, tr
from detequiv.derivations.series import TEST_LETTER, series_coefficients
from detequiv.errors import InvalidArgument, InvalidWord, UndefinedTransform, VerificationError

lam = sp.Symbol("lam", positive=True)
D, P, N, K = sp.symbols("D P N K", positive=True)
q1, q2, q3 = sp.symbols("q1 q2 q3", positive=True)
Sigma = Deterministic("Sigma", D)
X = Gaussian("X", (P, D))
F = Gaussian("F", (N, D))
G = Gaussian("G", (K, D))
Sigma_hat = Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P


def _rules(eq: OnePoint) -> list[str]:
    return [s.rule.name for s in eq.derivation]


def _perturb(eq: OnePoint, old, new) -> OnePoint:
    """The same equivalent with a wrong fixed-point equation (a negative control)."""
    fps = tuple(
        dataclasses.replace(fp, equation=sp.Eq(fp.symbol, fp.rhs.xreplace({old: new})))
        for fp in eq.fixed_points
    )
    return dataclasses.replace(eq, fixed_points=fps)


# -- the sample covariance -----------------------------------------------------


def test_sample_covariance_result_and_rules():
    eq = derive(lam * resolvent(Sigma_hat, lam))
    kappa = sp.Symbol("kappa")
    S = sp.MatrixSymbol("Sigma", D, D)
    assert eq.deterministic == kappa * (S + kappa * sp.Identity(D)).inverse()
    (fp,) = eq.fixed_points
    # MATH.md 2.1: kappa = lam / (1 - q df1(kappa)), q = D / P
    assert sp.simplify(fp.rhs - lam / (1 - D / P * df1(S, kappa))) == 0
    assert fp.implicit and fp.depends_on == ()
    assert _rules(eq) == ["gaussian_gram_to_wishart", "free_factor_renormalization", "merge_square_roots"]
    assert all(s.reference for s in eq.derivation)
    text = str(eq)
    assert "free_factor_renormalization" in text and "kappa" in text


def test_sample_covariance_series_to_order_8():
    result = derive(lam * resolvent(Sigma_hat, lam)).check_series(8)
    assert result.passed, str(result)
    assert len(result.coefficients) == 9


def test_low_order_coefficients_match_math_md():
    # MATH.md 6.3 / 7: lim E tr[M Sigma_hat] = tr(M Sigma), lim E tr[M Sigma_hat^2] =
    # tr(M Sigma^2) + q tr(Sigma) tr(M Sigma), with q = D/P (closed forms, independent)
    eq = derive(lam * resolvent(Sigma @ X.T @ X / P, lam))
    coeffs = series_coefficients(eq, 2)
    M, S = TEST_LETTER, sp.Symbol("Sigma", commutative=False)
    expected = [tr(M), -tr(M * S), tr(M * S**2) + D / P * tr(S) * tr(M * S)]
    for (eqv, dia), exp in zip(coeffs, expected, strict=True):
        assert sp.expand(eqv - exp) == 0
        assert sp.expand(dia - exp) == 0


@pytest.mark.parametrize(
    "build",
    [
        lambda: Sigma @ X.T @ X / P,
        lambda: X.T @ X @ Sigma / P,
        lambda: 3 * Sigma @ X.T @ X / P,
        lambda: Sigma.sqrt() @ X.T @ X @ Sigma.sqrt(),
    ],
    ids=["Sigma W", "W Sigma", "3 Sigma W", "unnormalized"],
)
def test_orders_and_scalings_series(build):
    eq = derive(lam * resolvent(build(), lam))
    assert eq.check_series(6).passed


T_ = Deterministic("T", D)
Sp_ = Deterministic("Sp", P)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Sp_ @ X @ X.T / D,
        lambda: Sigma @ X.T @ X @ T_ / P,
        lambda: T_.sqrt() @ Sigma @ X.T @ X @ T_.sqrt() / P,
    ],
    ids=["Gram on the sample space", "Sigma W T", "T^1/2 Sigma W T^1/2"],
)
def test_other_placements_series(build):
    eq = derive(lam * resolvent(build(), lam))
    assert eq.check_series(5).passed


def test_repr_latex_of_result():
    tex = derive(lam * resolvent(Sigma_hat, lam))._repr_latex_()
    assert tex.startswith("$\\begin{aligned}") and r"\simeq" in tex


def test_plain_resolvent_has_prefactor():
    eq = derive(resolvent(Sigma_hat, lam))
    assert eq.prefactor == 1 / lam
    assert eq.check_series(4).passed


# -- general free factors ---------------------------------------------------------


@pytest.mark.parametrize("where", ["sym", "left", "right"])
def test_symbolic_cumulant_law_series(where):
    B = FreeMatrix("B", D, CumulantLaw("B"))
    A = {"sym": Sigma.sqrt() @ B @ Sigma.sqrt(), "left": B @ Sigma, "right": Sigma @ B}[where]
    eq = derive(lam * resolvent(A, lam))
    (fp,) = eq.fixed_points
    assert sp.Function("S_B") in {f.func for f in fp.rhs.atoms(sp.Function)}
    assert "series" in eq.derivation[0].note
    result = eq.check_series(6)
    assert result.passed, str(result)


def test_free_poisson_closed_form_series():
    r, a = sp.symbols("r a", positive=True)
    Z = FreeMatrix("Z", D, FreePoisson(r, a))
    eq = derive(lam * resolvent(Sigma @ Z, lam))
    assert eq.check_series(6).passed


def test_pure_free_resolvent_series():
    W = FreeMatrix("W", D, Wishart(q1))
    assert derive(lam * resolvent(W, lam)).check_series(8).passed


# -- layered renormalization --------------------------------------------------------


def test_two_free_wishart_factors_layers_and_series():
    W1, W2 = FreeMatrix("W1", D, Wishart(q1)), FreeMatrix("W2", D, Wishart(q2))
    eq = derive(lam * resolvent(Sigma @ W1 @ W2, lam))
    k1, k2 = sp.symbols("kappa_1 kappa_2")
    assert [fp.symbol for fp in eq.fixed_points] == [k2, k1]
    inner, outer = eq.fixed_points
    S = sp.MatrixSymbol("Sigma", D, D)
    d = df1(S, k2)
    # MATH.md 2.3: lam = kappa prod_i (1 - q_i df1(kappa))
    assert sp.simplify(inner.rhs - lam / ((1 - q1 * d) * (1 - q2 * d))) == 0
    assert outer.depends_on == (k2,)
    assert "layer_composition" in _rules(eq) and "trace_invariance" in _rules(eq)
    assert eq.check_series(6).passed


def test_three_wishart_layers_from_gaussians_series():
    # an equivalent written nowhere as a formula: three Gram layers around Sigma
    A = Sigma.sqrt() @ (G.T @ G / K) @ (F.T @ F / N) @ (X.T @ X / P) @ Sigma.sqrt()
    eq = derive(lam * resolvent(A, lam))
    assert len(eq.fixed_points) == 3
    result = eq.check_series(6)
    assert result.passed, str(result)


def test_wishart_times_symbolic_law_series():
    B = FreeMatrix("B", D, CumulantLaw("B"))
    eq = derive(lam * resolvent(Sigma @ B @ (X.T @ X) / P, lam))
    assert eq.check_series(5).passed


@pytest.mark.slow
@pytest.mark.parametrize("n_wisharts", [2, 3])
def test_free_wishart_products_order_8(n_wisharts):
    ws = [FreeMatrix(f"W{i}", D, Wishart(q)) for i, q in enumerate((q1, q2, q3)[:n_wisharts], start=1)]
    A = Sigma
    for w in ws:
        A = A @ w
    assert derive(lam * resolvent(A, lam)).check_series(8).passed


@pytest.mark.slow
def test_symbolic_cumulant_law_order_8():
    B = FreeMatrix("B", D, CumulantLaw("B"))
    assert derive(lam * resolvent(Sigma.sqrt() @ B @ Sigma.sqrt(), lam)).check_series(8).passed


def test_edited_deterministic_field_is_refused():
    eq = derive(lam * resolvent(Sigma_hat, lam))
    edited = dataclasses.replace(eq, deterministic=2 * eq.deterministic)
    with pytest.raises(InvalidArgument, match="deterministic"):
        edited.check_series(2)


# -- negative controls ------------------------------------------------------------------


def test_perturbed_ratio_is_caught():
    eq = derive(lam * resolvent(Sigma_hat, lam))
    wrong = _perturb(eq, D, D * sp.Rational(101, 100))
    result = wrong.check_series(6)
    assert not result.passed
    assert result.first_failure == 2  # q first enters at lam^-2
    eqv, dia = result.coefficients[2]
    assert sp.expand(eqv - dia) != 0
    assert "FAILED" in str(result)
    with pytest.raises(VerificationError, match="lam\\^-2"):
        wrong.verify_series(6)


def test_s_transform_replaced_by_one_is_caught():
    B = FreeMatrix("B", D, CumulantLaw("B"))
    eq = derive(lam * resolvent(Sigma @ B, lam))
    (fp,) = eq.fixed_points
    wrong = dataclasses.replace(
        eq, fixed_points=(dataclasses.replace(fp, equation=sp.Eq(fp.symbol, lam)),), transforms=()
    )
    assert not wrong.check_series(4).passed


def test_dropping_sigma_in_df_is_caught():
    eq = derive(lam * resolvent(Sigma_hat, lam))
    kappa = sp.Symbol("kappa")
    S = sp.MatrixSymbol("Sigma", D, D)
    wrong = _perturb(eq, df1(S, kappa), df1(sp.Identity(D), kappa))
    assert not wrong.check_series(4).passed


def test_dropping_one_layer_is_caught():
    W1, W2 = FreeMatrix("W1", D, Wishart(q1)), FreeMatrix("W2", D, Wishart(q2))
    eq = derive(lam * resolvent(Sigma @ W1 @ W2, lam))
    assert not _perturb(eq, q2, 0).check_series(4).passed


# -- fixed-point graph and errors -----------------------------------------------------------


def test_solve_order_rejects_cycles_and_undefined():
    a, b, c = sp.symbols("a b c")
    with pytest.raises(InvalidArgument, match="cyclic"):
        solve_order([FixedPoint(a, sp.Eq(a, b), (b,)), FixedPoint(b, sp.Eq(b, a), (a,))])
    with pytest.raises(InvalidArgument, match="underdetermined"):
        solve_order([FixedPoint(a, sp.Eq(a, c), (c,))])


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: derive(Sigma_hat), InvalidArgument, "resolvent"),
        (
            lambda: derive(lam * resolvent(Sigma + Sigma_hat, lam), method="shapes"),
            InvalidArgument,
            "additive",
        ),
        (lambda: derive(lam * resolvent(X.T @ Sigma_p @ X / P, lam), method="shapes"), InvalidWord, "Gram"),
        (lambda: derive(lam * resolvent(W1_ @ Sigma @ W1_, lam), method="shapes"), InvalidWord, "not free"),
        (lambda: derive(lam * resolvent(Sigma @ GOE_, lam), method="shapes"), UndefinedTransform, "mean 0"),
    ],
    ids=["not a resolvent", "sum", "gaussian sandwich", "repeated free factor", "centred law"],
)
def test_derive_errors(build, error, message):
    """The shape rules' refusals name the reason (``method="auto"`` then falls back to the general
    engine, see tests/derivations/test_general_engine.py)."""
    with pytest.raises(error, match=message):
        build()


Sigma_p = Deterministic("Sigma_p", P)
W1_ = FreeMatrix("W1", D, Wishart(q1))
GOE_ = FreeMatrix("H", D, Semicircle())


def test_check_series_rejects_bad_order():
    eq = derive(lam * resolvent(Sigma_hat, lam))
    with pytest.raises(InvalidArgument):
        eq.check_series(0)
