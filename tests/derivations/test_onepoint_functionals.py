"""Traces against test matrices and quadratic forms as inputs to ``derive``.

Expected values are independent of the code: the Marchenko-Pastur fixed point
``kappa = lam / (1 - (D/P) tr Sigma (Sigma + kappa)^-1)`` solved here by bisection, the
contractions computed by hand with numpy, and simulation (the Monte Carlo witness).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import brentq

import detequiv  # noqa: F401 - registers the Monte Carlo witness
from detequiv.derivations.contraction import Contracted
from detequiv.derivations.derivation import FixedPoint
from detequiv.derivations.derive import derive
from detequiv.derivations.expressions import (
    Deterministic,
    DeterministicVector,
    Gaussian,
    resolvent,
    trace,
)
from detequiv.derivations.onepoint import with_fixed_points
from detequiv.errors import InvalidArgument

lam = sp.Symbol("lam", positive=True)
D, P = sp.symbols("D P", positive=True)
Sigma = Deterministic("Sigma", D)
T = Deterministic("T", D)
X = Gaussian("X", (P, D))
u = DeterministicVector("u", D)
R = lam * resolvent(Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P, lam)
kappa = sp.Symbol("kappa")

SIZES = (50, 100, 200)


def _kappa(spectrum: np.ndarray, ratio: float, lam_value: float) -> float:
    """The sample ridge, by bisection on its defining equation (kappa > lam > 0)."""

    def h(k: float) -> float:
        return k * (1 - ratio * np.mean(spectrum / (spectrum + k))) - lam_value

    return brentq(h, 1e-12, 1e6, xtol=1e-14)


def _setting(n: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    s = np.linspace(0.5, 2.0, n)
    t = np.diag(np.arange(n, dtype=float)) + 0.3 * (np.eye(n, k=1) + np.eye(n, k=-1))
    v = np.cos(np.arange(n))
    return s, t, v / np.linalg.norm(v), _kappa(s, 0.5, 0.7)


# -- symbolic ------------------------------------------------------------


def test_vector_shapes_and_transpose():
    assert u.shape == (D, 1) and u.T.shape == (1, D)
    assert u.T.T == u and u.T != u
    assert (u.T @ T @ u).shape == (1, 1)


def test_trace_against_test_matrix_is_the_contracted_equivalent():
    eq = derive(trace(T @ R))
    assert isinstance(eq, Contracted) and eq.kind == "trace"
    Ts, Ss = sp.MatrixSymbol("T", D, D), sp.MatrixSymbol("Sigma", D, D)
    expected = sp.Trace(Ts * (kappa * (kappa * sp.Identity(D) + Ss).inverse())) / D
    assert sp.expand(eq.deterministic - expected) == 0
    assert str(eq.fixed_points[0].equation) == "Eq(kappa, lam/(-D*df1(Sigma, kappa)/P + 1))"
    inner_rules = [s.rule.name for s in derive(R).derivation]
    assert [s.rule.name for s in eq.derivation] == [*inner_rules, "contract_equivalence"]


def test_trace_with_test_matrix_on_the_right_is_the_same_by_cyclicity():
    assert derive(trace(R @ T)).deterministic == derive(trace(T @ R)).deterministic


def test_quadratic_form_is_the_contracted_equivalent():
    eq = derive(u.T @ R @ u)
    assert eq.kind == "quadratic"
    us, Ss = sp.MatrixSymbol("u", D, 1), sp.MatrixSymbol("Sigma", D, D)
    expected = sp.Trace(sp.MatMul(us.T, kappa * (kappa * sp.Identity(D) + Ss).inverse(), us))
    assert sp.expand(eq.deterministic - expected) == 0
    assert eq.derivation[-1].rule.name == "contract_equivalence"


def test_printing_names_the_contraction_and_the_fixed_point():
    eq = derive(u.T @ R @ u)
    assert "contract_equivalence" in str(eq) and "kappa = " in str(eq)
    tex = eq._repr_latex_()
    assert tex.startswith("$\\begin{aligned}") and "\\simeq" in tex and "\\kappa &=" in tex


def test_series_check_of_a_contraction_passes():
    assert derive(trace(T @ R)).check_series(4).passed
    assert derive(u.T @ R @ u).check_series(4).passed


@pytest.mark.parametrize(
    "bad",
    [
        lambda: trace(R @ R),
        lambda: trace(X.T @ X @ R),
        lambda: R @ u,
        lambda: u.T @ R @ T @ T @ R @ u,
    ],
)
def test_bad_contractions_are_rejected(bad):
    with pytest.raises(InvalidArgument):
        derive(bad(), method="shapes")


# -- numbers -------------------------------------------------------------


def test_evaluate_trace_matches_hand_computation():
    s, t, _, k = _setting()
    n = len(s)
    eq = derive(trace(T @ R))
    value = eq.evaluate({"Sigma": s, "T": t, "D": n, "P": 2 * n, "lam": 0.7})
    expected = np.trace(t @ np.diag(k / (k + s))) / n
    assert value == pytest.approx(expected, rel=1e-9)
    right = derive(trace(R @ T)).evaluate({"Sigma": s, "T": t, "D": n, "P": 2 * n, "lam": 0.7})
    assert right == pytest.approx(expected, rel=1e-9)


def test_evaluate_quadratic_form_matches_hand_computation():
    s, _, v, k = _setting()
    n = len(s)
    eq = derive(u.T @ R @ u)
    value = eq.evaluate({"Sigma": s, u: v, "D": n, "P": 2 * n, "lam": 0.7})
    assert value == pytest.approx(float(np.sum(v**2 * k / (k + s))), rel=1e-9)


def test_evaluate_bilinear_form_with_a_test_matrix_inside():
    s, t, v, k = _setting()
    n = len(s)
    w = DeterministicVector("w", D)
    eq = derive(u.T @ T @ R @ w)
    wv = np.linspace(1, 2, n) / n
    value = eq.evaluate({"Sigma": s, "T": t, u: v, "w": wv, "D": n, "P": 2 * n, "lam": 0.7})
    assert value == pytest.approx(float(v @ t @ np.diag(k / (k + s)) @ wv), rel=1e-9)


# -- Monte Carlo ---------------------------------------------------------


def _wrong(eq: Contracted) -> Contracted:
    """kappa replaced by lam: the naive plug-in lam (lam + Sigma)^-1."""
    return replace(eq, inner=with_fixed_points(eq.inner, [FixedPoint(kappa, sp.Eq(kappa, lam))]))


def test_monte_carlo_witness_of_a_trace_and_its_rejection_of_a_wrong_formula():
    eq = derive(trace(T @ R))
    assert eq.check_monte_carlo(SIZES, rng=np.random.default_rng(11), lams=(0.5,)).passed
    assert not _wrong(eq).check_monte_carlo(SIZES, rng=np.random.default_rng(11), lams=(0.5,)).passed


def test_monte_carlo_witness_of_a_quadratic_form_and_its_rejection_of_a_wrong_formula():
    eq = derive(u.T @ R @ u)
    good = eq.check_monte_carlo(SIZES, rng=np.random.default_rng(12), n_samples=40)
    assert good.passed
    bad = _wrong(eq).check_monte_carlo(SIZES, rng=np.random.default_rng(12), n_samples=40)
    assert not bad.passed
