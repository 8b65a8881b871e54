"""Non-symmetric deterministic matrices: ``Deterministic(..., symmetric=False)`` and ``.T``."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import detequiv as de
from detequiv.errors import InvalidArgument

lam = sp.Symbol("lam", positive=True)
D, P = sp.symbols("D P", positive=True)
Sigma = de.Deterministic("Sigma", D)
M = de.Deterministic("M", D, symmetric=False)
X = de.Gaussian("X", (P, D))
R = lam * de.resolvent(Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P, lam)


def general_matrix(n: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    return np.eye(n) + rng.standard_normal((n, n)) / np.sqrt(n)


def test_declaration_and_transpose():
    assert M.T != M and M.T.T == M
    assert Sigma.T is Sigma
    assert repr(M) == "Deterministic(name='M', dim=D, symmetric=False)"
    assert str(M.T @ Sigma @ M) == "M.T*Sigma*M"
    with pytest.raises(InvalidArgument, match="symmetric=False"):
        M.sqrt()
    with pytest.raises(InvalidArgument, match="True or False"):
        de.Deterministic("A", D, symmetric="no")
    with pytest.raises(InvalidArgument, match="non-symmetric Deterministic only"):
        de.derivations.expressions.Transpose(Sigma)


def test_trace_with_a_transpose_series_and_monte_carlo():
    eq = de.derive(de.trace(M.T @ Sigma @ M @ R))
    assert eq.check_series(6).passed
    check = eq.check_monte_carlo(
        sizes=(80, 160, 320), rng=np.random.default_rng(3), spectra={"M": general_matrix}
    )
    assert check.passed, str(check)
    # M.T is not M: with a non-symmetric M the two traces differ (independent numbers)
    n = 200
    spec = np.linspace(0.5, 2.0, n)
    m = general_matrix(n)
    values = {Sigma: spec, "M": m, lam: 0.3, D: n, P: 2 * n}
    same = de.derive(de.trace(M @ Sigma @ M @ R)).evaluate(values)
    right = eq.evaluate(values)
    kappa = de.derive(R).evaluate(values)["kappa"]
    res = kappa / (kappa + spec)
    assert right == pytest.approx(np.trace(m.T @ np.diag(spec) @ m @ np.diag(res)) / n, rel=1e-10)
    assert abs(right - same) > 0.05 * abs(right)


def test_non_symmetric_factor_inside_the_resolvent():
    eq = de.derive(lam * de.resolvent(M @ Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() @ M.T / P, lam))
    assert eq.check_series(6).passed
    check = eq.check_monte_carlo(sizes=(80, 160, 320), rng=np.random.default_rng(4))
    assert check.passed, str(check)
