"""A three-layer two-point chain (not in MATH.md): Monte Carlo witness (slow; the exact
series of the same chain runs in tests/test_twopoint_layers.py)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import detequiv as de


@pytest.mark.slow
def test_three_layer_two_point_monte_carlo():
    lam, lam2 = sp.symbols("lam lam2", positive=True)
    D, N, P, K = sp.symbols("D N P K", positive=True)
    s, m = de.Deterministic("Sigma", D), de.Deterministic("M", D)
    x, f, g = de.Gaussian("X", (P, D)), de.Gaussian("F", (N, D)), de.Gaussian("G", (K, D))
    sh, wf, wg = s.sqrt() @ x.T @ x @ s.sqrt() / P, f.T @ f / N, g.T @ g / K
    tp = de.derive_two_point(
        lam * lam2 * de.resolvent(sh @ wf @ wg, lam) @ m @ de.resolvent(wg @ sh @ wf, lam2)
    )
    assert len(tp.fixed_points) == 6
    check = tp.check_monte_carlo(sizes=(60, 120, 240), rng=np.random.default_rng(3))
    assert check.passed, str(check)  # includes: the result without the outer correction is rejected
