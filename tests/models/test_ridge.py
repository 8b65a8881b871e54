"""Ridge regression losses derived by the engine (MATH.md 4.1-4.3).

Independent expected values: the closed-form table of MATH.md section 7, the formulas of
MATH.md 4.1-4.3 coded here from the spectrum (kappa by brentq), the planar diagram sums
(series) and simulated ridge regression (Monte Carlo).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import brentq

import detequiv as de
import detequiv.models.ridge_mc  # noqa: F401 - registers the witness
from detequiv.derivations.traces import mtr
from detequiv.models.ridge import RidgeRegression

D, P = sp.symbols("D P", positive=True)
Sigma = de.Deterministic("Sigma", D)
X = de.Gaussian("X", (P, D))
beta = de.DeterministicVector("beta", D)
RIDGE = RidgeRegression(Sigma, X, beta)
TEST = RIDGE.test_error()
TRAIN = RIDGE.training_error()


def reference(spec, b, p, lam, s2, spec_test=None):
    """MATH.md 4.1-4.3 written from the spectrum (diagonal Sigma, Sigma')."""
    d = spec.size

    def f(k):
        return k * (1 - np.sum(spec / (spec + k)) / p) - lam

    k = brentq(f, 1e-12, 1e6, xtol=1e-15)
    r = 1 / (k + spec)
    st = spec if spec_test is None else spec_test
    gamma = np.sum(spec**2 * r**2) / p
    bias_in = k**2 * np.sum(b**2 * spec * r**2)
    e_g = (bias_in + s2) / (1 - gamma)
    shift = k**2 * np.sum(b**2 * st * r**2) + np.sum(st * spec * r**2) / p / (1 - gamma) * (bias_in + s2) + s2
    del d
    return k, e_g, shift


@pytest.mark.parametrize(
    ("q", "lam", "e_g", "e_tr"),
    [(0.5, 1.0, 0.6254594533, 0.3812874611), (2.0, 0.1, 0.9365286644, 0.0066757967)],
)
def test_isotropic_table_of_math_md(q, lam, e_g, e_tr):
    d = 200
    values = {"Sigma": np.ones(d), "beta": np.ones(d) / np.sqrt(d), "lam": lam, "D": d, "P": round(d / q)}
    values["sigma2"] = 0.25
    assert TEST.evaluate(values)["total"] == pytest.approx(e_g, abs=1e-9)
    assert TRAIN.evaluate(values)["total"] == pytest.approx(e_tr, abs=1e-9)


def test_general_spectrum_and_the_s_transform_gap():
    d, p, lam, s2 = 150, 120, 0.03, 0.09
    spec = np.arange(1, d + 1) ** -1.2
    b = np.arange(1, d + 1) ** -0.45
    values = {"Sigma": spec, "beta": b, "lam": lam, "D": d, "P": p, "sigma2": s2}
    k, e_g, _ = reference(spec, b, p, lam, s2)
    got = TEST.evaluate(values)
    assert got["total"] == pytest.approx(e_g, rel=1e-9)
    assert got["bias"] + got["variance"] + got["noise"] == pytest.approx(got["total"], rel=1e-12)
    # MATH.md 4.2: E_train = (lam / kappa)^2 E_test
    assert TRAIN.evaluate(values)["total"] == pytest.approx((lam / k) ** 2 * e_g, rel=1e-9)


def test_covariate_shift():
    sigma_t = de.Deterministic("Sigma_t", D)
    shifted = RidgeRegression(Sigma, X, beta, test_covariance=sigma_t).test_error()
    d, p, lam, s2 = 120, 200, 0.1, 0.25
    spec = np.linspace(0.2, 2, d)
    spec_t = np.linspace(2, 0.2, d) ** 2
    b = np.ones(d) / np.sqrt(d)
    values = {"Sigma": spec, "Sigma_t": spec_t, "beta": b, "lam": lam, "D": d, "P": p, "sigma2": s2}
    _, _, want = reference(spec, b, p, lam, s2, spec_t)
    assert shifted.evaluate(values)["total"] == pytest.approx(want, rel=1e-9)
    assert shifted.check_series(3).passed


def test_series_of_every_term_order_6():
    report = TEST.check_series(6)
    assert report.passed, str(report)
    # lam^-1 of the variance: (D/P) sigma2 tr(Sigma) (lam^2 tr(G Sigma_hat G) ~ tr(Sigma_hat) / lam^... )
    assert set(report.coefficients) == {"bias", "variance", "noise"}


def test_training_error_series():
    assert TRAIN.check_series(6).passed


def test_a_wrong_variance_is_rejected_by_series_and_simulation():
    lam, k = TEST.lam, TEST.kappa
    s = Sigma.to_sympy()
    naive = (
        sp.Symbol("sigma2", nonnegative=True) * D / P * k / lam * mtr(s * (k * sp.Identity(D) + s).inverse())
    )
    wrong = dataclasses.replace(TEST, terms={**TEST.terms, "variance": naive})
    report = wrong.check_series(3)
    assert not report.passed and report.failures["variance"] == 1
    kwargs = dict(sizes=(80, 160, 320), lam=0.05, ratio=1.5, n_samples=12)
    assert TEST.check_monte_carlo(rng=np.random.default_rng(5), **kwargs).passed
    bad = wrong.check_monte_carlo(rng=np.random.default_rng(5), **kwargs)
    assert not bad.passed


def test_monte_carlo_test_and_training_error():
    check = TEST.check_monte_carlo(sizes=(100, 200, 400), rng=np.random.default_rng(1), lam=0.05, ratio=0.7)
    assert check.passed, str(check)
    check = TRAIN.check_monte_carlo(sizes=(100, 200, 400), rng=np.random.default_rng(2), lam=0.2, ratio=2.0)
    assert check.passed, str(check)


def test_derivation_names_the_rules():
    rules = [s.rule.name for s in TEST.derivation]
    for rule in (
        "error_decomposition",
        "operator_valued_subordination",
        "two_point_coincidence",
        "resolvent_absorption",
        "implicit_differentiation",
    ):
        assert rule in rules
    assert "E_test" in str(TEST)
    assert TEST._repr_latex_().startswith("$\\begin{aligned}")


def test_bad_input():
    with pytest.raises(de.errors.InvalidArgument, match="columns"):
        RidgeRegression(de.Deterministic("S", P), X, beta)
    with pytest.raises(de.errors.InvalidArgument, match="DeterministicVector"):
        RidgeRegression(Sigma, X, de.DeterministicVector("b", P))
    with pytest.raises(de.errors.InvalidArgument, match="ratio"):
        TEST.check_monte_carlo(rng=np.random.default_rng(0), ratio=-1)
