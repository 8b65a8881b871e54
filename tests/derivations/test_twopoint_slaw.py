"""The two-point engine with a free factor given only by its S-transform (issue 4: "any
free rotation-invariant factor B (through its S-transform)"; MATH.md 3.2)."""

from __future__ import annotations

import numpy as np
import sympy as sp

import detequiv as de

lam, lam2 = sp.symbols("lam lam2", positive=True)
D = sp.Symbol("D", positive=True)
t = sp.Symbol("t")
# S of the free product of white Wisharts with ratios 1 and 1/3 (MATH.md 1.5: S multiplies)
LAW = de.STransformLaw(1 / ((1 + t) * (1 + t / 3)), t)
S = de.Deterministic("Sigma", D)
M = de.Deterministic("M", D)
B = de.FreeMatrix("B", D, LAW)
SH = S.sqrt() @ B @ S.sqrt()
TP = de.derive_two_point(lam * lam2 * de.resolvent(SH, lam) @ M @ de.resolvent(SH, lam2))


def test_series_and_general_form():
    # only kappa(lam) enters: the correction is the divided difference of MATH.md 3.2
    assert TP.scale.has(de.derivations.twopoint.divided_difference)
    check = TP.check_series(4)
    assert check.passed, str(check)


def test_monte_carlo_with_the_product_of_two_wisharts():
    """B realised as W1 W2 symmetrised: Haar-rotated spectrum of the free product, sampled
    from the law by numerical inversion of S; the naive product is rejected."""
    check = TP.check_monte_carlo(sizes=(80, 160, 320), rng=np.random.default_rng(7), lams=((0.3, 0.6),))
    assert check.passed, str(check)
