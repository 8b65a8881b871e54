"""Rectangular chains with fixed (deterministic) features: the data-first conditional
equivalent of MATH.md 2.4, lam (lam + F Sigma_hat F^T / N)^-1 ~ k (k + F Sigma F^T / N)^-1."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import brentq

import detequiv as de
from detequiv.derivations.derivation import FixedPoint
from detequiv.derivations.onepoint import with_fixed_points
from detequiv.derivations.series import _rotated
from detequiv.errors import InvalidArgument

lam = sp.Symbol("lam", positive=True)
D, N, P = sp.symbols("D N P", positive=True)
Sigma = de.Deterministic("Sigma", D)
X = de.Gaussian("X", (P, D))
F = de.Rectangular("F", (N, D))
EXPR = lam * de.resolvent(F @ Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() @ F.T / (N * P), lam)


def test_rotation_into_the_inner_space():
    f, ft, m, s, w = sp.symbols("F F.T M S W", commutative=False)
    rect = {f: (N, D), ft: (D, N)}
    # tr_N(M F S W S F^T) = (D/N) tr_D(S W S (F^T M F))
    factor, word = _rotated((m, f, s, w, s, ft), rect)
    assert factor == D / N
    assert [x.name for x in word] == ["S", "W", "S", "(F.T*M*F)"]
    # already in D-space: factor 1
    factor, word = _rotated((s, ft, f), rect)
    assert factor == 1 and [x.name for x in word] == ["S", "(F.T*F)"]


def test_series_and_the_conditional_fixed_point():
    eq = de.derive(EXPR)
    assert eq.check_series(7).passed
    # independent: kappa / N = lam / (1 - n_F / P), n_F = Tr_D[Sigma F^T F/N (k + Sigma F^T F/N)^-1]
    n_f, d, p = 80, 120, 200
    f = np.random.default_rng(3).standard_normal((n_f, d))
    spec = np.linspace(0.3, 2.0, d)
    g = np.diag(np.sqrt(spec)) @ f.T @ f @ np.diag(np.sqrt(spec)) / n_f
    e = np.linalg.eigvalsh(g)

    def lhs(k1: float) -> float:
        return k1 * (1 - np.sum(e / (e + k1)) / p) - 0.05

    k1 = brentq(lhs, 1e-9, 1e3, xtol=1e-15)
    v = eq.evaluate({Sigma: spec, "F": f, lam: 0.05, D: d, N: n_f, P: p})
    assert v["kappa"] / n_f == pytest.approx(k1, rel=1e-9)


def test_wrong_fixed_point_is_rejected():
    eq = de.derive(EXPR)
    k = sp.Symbol("kappa")
    wrong = with_fixed_points(eq, (FixedPoint(k, sp.Eq(k, N * lam)),))  # Sigma_hat -> Sigma
    assert not wrong.check_series(3).passed
    kwargs = dict(sizes=(60, 120, 240), dims={"D": 1.5, "P": 2.0}, n_samples=10, lams=(0.2, 0.1 + 0.2j))
    assert eq.check_monte_carlo(rng=np.random.default_rng(2), **kwargs).passed
    assert not wrong.check_monte_carlo(rng=np.random.default_rng(2), **kwargs).passed


def test_bad_rectangular_input():
    with pytest.raises(InvalidArgument, match="shape"):
        de.Rectangular("F", N)
    eq = de.derive(EXPR)
    with pytest.raises(InvalidArgument, match="shape"):
        eq.evaluate({Sigma: np.ones(10), "F": np.ones((4, 9)), lam: 0.1, D: 10, N: 4, P: 20})
