"""The linear random-feature model end to end (MATH.md 2.4): feature space, both averaging
orders, deeper chains.

Expected values are independent of the engine: the boxed equation of MATH.md 2.4 is
solved here with ``brentq``; the exact series side is the planar diagram sum; the Monte
Carlo side simulates the matrices.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import brentq

import detequiv as de
from detequiv.derivations.derivation import FixedPoint
from detequiv.derivations.onepoint import with_fixed_points
from detequiv.errors import InvalidArgument, InvalidWord

lam = sp.Symbol("lam", positive=True)
D, N, P = sp.symbols("D N P", positive=True)
Sigma = de.Deterministic("Sigma", D)
X = de.Gaussian("X", (P, D))
F = de.Gaussian("F", (N, D))
SIGMA_HAT = Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P
FEATURE_SPACE = lam * de.resolvent(F @ SIGMA_HAT @ F.T / N, lam)


def kappa2_reference(spec: np.ndarray, lam_value: float, n_feat: float, p: float) -> float:
    """MATH.md 2.4: lam = kappa2 (1 - n/P)(1 - n/N), n = Tr Sigma (Sigma + kappa2)^-1, physical root."""

    def n_of(k: float) -> float:
        return float(np.sum(spec / (spec + k)))

    def f(k: float) -> float:
        return k * (1 - n_of(k) / p) * (1 - n_of(k) / n_feat) - lam_value

    lo = 1e-12
    # kappa_0: the largest k where a factor vanishes (n(k) = min(P, N)), else 0
    m = min(p, n_feat)
    if n_of(0.0 + 1e-300) > m:
        lo = brentq(lambda k: n_of(k) - m, 1e-14, 1e6) * (1 + 1e-9)
    return brentq(f, lo, 1e6, xtol=1e-15, rtol=1e-14)


SPEC = np.linspace(0.2, 2.0, 120)
VALUES = {"D": 120, "N": 60, "P": 90}


@pytest.mark.parametrize("order", [None, ("F", "X"), ("X", "F")])
def test_feature_space_trace_is_n_minus_n(order):
    eq = de.derive(FEATURE_SPACE, order=order)
    assert eq.deterministic == sp.Symbol("tau") * sp.Identity(N)
    v = eq.evaluate({Sigma: SPEC, lam: 0.07, **VALUES})
    k2 = kappa2_reference(SPEC, 0.07, VALUES["N"], VALUES["P"])
    n = float(np.sum(SPEC / (SPEC + k2)))
    assert v["kappa_2"] == pytest.approx(k2, rel=1e-10)
    # Tr_N lam (lam + F Sigma_hat F^T)^-1 ~ N - n  (MATH.md 2.4)
    assert VALUES["N"] * v.trace() == pytest.approx(VALUES["N"] - n, rel=1e-10)


def test_intermediate_ridge_depends_on_the_order():
    k2 = kappa2_reference(SPEC, 0.07, VALUES["N"], VALUES["P"])
    n = float(np.sum(SPEC / (SPEC + k2)))
    data_first = de.derive(FEATURE_SPACE, order=("X", "F")).evaluate({Sigma: SPEC, lam: 0.07, **VALUES})
    features_first = de.derive(FEATURE_SPACE, order=("F",)).evaluate({Sigma: SPEC, lam: 0.07, **VALUES})
    assert data_first["kappa_1"] == pytest.approx(0.07 / (1 - n / VALUES["P"]), rel=1e-10)
    assert features_first["kappa_1"] == pytest.approx(0.07 / (1 - n / VALUES["N"]), rel=1e-10)
    assert data_first["kappa_2"] == pytest.approx(features_first["kappa_2"], rel=1e-12)


def test_order_in_input_space_too():
    """lam (lam + W_F Sigma_hat)^-1 in D-space, both orders (MATH.md 2.4, first bullet)."""
    expr = lam * de.resolvent(F.T @ F @ SIGMA_HAT / N, lam)
    for order, first in ((("X",), "P"), (("F", "X"), "N")):
        eq = de.derive(expr, order=order)
        v = eq.evaluate({Sigma: SPEC, lam: 0.05, **VALUES})
        k2 = kappa2_reference(SPEC, 0.05, VALUES["N"], VALUES["P"])
        n = float(np.sum(SPEC / (SPEC + k2)))
        assert v["kappa_1"] == pytest.approx(0.05 / (1 - n / VALUES[first]), rel=1e-10)
        assert eq.check_series(7).passed


@pytest.mark.parametrize("order", [None, ("X", "F")])
def test_feature_space_series_order_8(order):
    check = de.derive(FEATURE_SPACE, order=order).check_series(8)
    assert check.passed, str(check)
    # lam^-1: tr_N(M A) = tr M (D/N) tr(Sigma) for A = F Sigma_hat F^T / N (independent closed form)
    tr = de.derivations.quantities.tr
    m = sp.Symbol("M_test", commutative=False)
    s = sp.Symbol("Sigma_sqrt", commutative=False)
    assert sp.expand(check.coefficients[1][1] + D / N * tr(m) * tr(s**2)) == 0


def test_wrong_tau_is_rejected_by_the_series():
    eq = de.derive(FEATURE_SPACE)
    tau, k2 = sp.Symbol("tau"), sp.Symbol("kappa_2")
    df1 = de.derivations.onepoint.df1
    wrong = [
        fp if fp.symbol != tau else FixedPoint(tau, sp.Eq(tau, 1 - D / P * df1(Sigma.to_sympy(), k2)), (k2,))
        for fp in eq.fixed_points
    ]
    check = with_fixed_points(eq, wrong).check_series(4)
    assert not check.passed
    assert check.first_failure == 1


def test_three_layer_chain_in_feature_space():
    """Data through two Gram layers, then features: three ridges (not in MATH.md)."""
    Q = sp.Symbol("Q", positive=True)
    Y = de.Gaussian("Y", (Q, D))
    expr = lam * de.resolvent(F @ Sigma.sqrt() @ X.T @ X @ Y.T @ Y @ Sigma.sqrt() @ F.T / (N * P * Q), lam)
    eq = de.derive(expr, order=("Y", "X", "F"))
    assert {str(fp.symbol) for fp in eq.fixed_points} == {"kappa_1", "kappa_2", "kappa_3", "tau"}
    assert eq.check_series(6).passed
    values = {Sigma: SPEC, lam: 0.1, **VALUES, "Q": 150}
    v = eq.evaluate(values)
    # independent: lam = k3 (1 - n/P)(1 - n/Q)(1 - n/N), tau = 1 - n/N
    k3 = v["kappa_3"]
    n = float(np.sum(SPEC / (SPEC + k3)))
    assert k3 * (1 - n / 90) * (1 - n / 150) * (1 - n / 60) == pytest.approx(0.1, rel=1e-10)
    assert v["tau"] == pytest.approx(1 - n / 60, rel=1e-10)


def test_monte_carlo_feature_space_and_rejects_the_single_layer_formula():
    eq = de.derive(FEATURE_SPACE, order=("X", "F"))
    rng = np.random.default_rng(11)
    kwargs = dict(sizes=(60, 120, 240), dims={"D": 1.5, "P": 2.5}, lams=(0.05, 0.1 + 0.2j), n_samples=10)
    check = eq.check_monte_carlo(rng=rng, **kwargs)
    assert check.passed, str(check)
    # plausible wrong answer: forget the data layer (tau from kappa with lam = k (1 - n/N) only)
    tau, k2 = sp.Symbol("tau"), sp.Symbol("kappa_2")
    df1 = de.derivations.onepoint.df1
    d = df1(Sigma.to_sympy(), k2)
    wrong = (
        FixedPoint(k2, sp.Eq(k2, lam / (1 - D / N * d))),
        FixedPoint(tau, sp.Eq(tau, 1 - D / N * d), (k2,)),
    )
    bad = with_fixed_points(eq, wrong).check_monte_carlo(rng=np.random.default_rng(11), **kwargs)
    assert not bad.passed


def test_trace_contraction_in_feature_space():
    eq = de.derive(de.trace(FEATURE_SPACE))
    assert eq.evaluate({Sigma: SPEC, lam: 0.07, **VALUES}) == pytest.approx(
        1 - float(np.sum(SPEC / (SPEC + kappa2_reference(SPEC, 0.07, 60, 90)))) / 60, rel=1e-10
    )


def test_bad_order_and_bad_sandwich():
    with pytest.raises(InvalidArgument, match="not a free factor"):
        de.derive(FEATURE_SPACE, order=("Z",))
    with pytest.raises(InvalidArgument, match="twice"):
        de.derive(FEATURE_SPACE, order=("X", "W_X"))
    with pytest.raises(InvalidArgument, match="not a string"):
        de.derive(FEATURE_SPACE, order="XF")
    with pytest.raises(InvalidWord, match="inside its own sandwich"):
        de.derive(lam * de.resolvent(F @ F.T @ F @ F.T / N, lam), method="shapes")
