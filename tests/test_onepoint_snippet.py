"""The example of issue 3, as written (public API of detequiv)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import detequiv as de


def test_issue_example_as_written():
    lam = sp.Symbol("lam", positive=True)
    D, P = sp.symbols("D P", positive=True)
    Sigma = de.Deterministic("Sigma", D)
    X = de.Gaussian("X", (P, D))
    Sigma_hat = Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P
    eq = de.derive(lam * de.resolvent(Sigma_hat, lam))
    assert isinstance(eq, de.OnePoint)
    kappa = sp.Symbol("kappa")
    S = sp.MatrixSymbol("Sigma", D, D)
    assert eq.deterministic == kappa * (S + kappa * sp.Identity(D)).inverse()
    (fp,) = eq.fixed_points
    df = eq.fixed_points[0].rhs.atoms(de.derivations.onepoint.df1).pop()
    assert df.args == (S, kappa)
    assert sp.simplify(fp.rhs - lam / (1 - df * D / P)) == 0
    assert eq.check_series(8).passed
    assert eq.check_monte_carlo(sizes=(100, 200), rng=np.random.default_rng(1), n_samples=10).passed
    value = eq.evaluate({Sigma: np.ones(400), lam: 0.1, D: 400, P: 800})
    assert value.ridge == pytest.approx(0.1741657387, abs=1e-9)  # MATH.md 7
