"""Additive layers with scaled terms (issue 19): a positive coefficient on a term, or a Gram
term normalized by a size other than its own row count, makes the outer ridge of a layer a
compound ``c * kappa``; composing the layers inverts each one for that ridge.

Witnesses:

* exact: the 1/lam series of the derived equivalent equals the planar diagram sums, to order 6;
* an independent formula: for ``A = sum_k (1/n_k) C_k^(1/2) Z_k.T Z_k C_k^(1/2)`` (independent
  Gaussian ``Z_k``, ``n_k x D``) the equivalent of ``(lam + A)^-1`` is
  ``(lam + sum_k C_k / (1 + delta_k))^-1`` with ``delta_k = (1/n_k) Tr C_k (lam + ...)^-1``
  (Couillet and Debbah, Random Matrix Methods for Wireless Communications (2011), Thm. 6.1;
  Wagner, Couillet, Debbah, Slock, IEEE Trans. Inf. Theory 58 (2012)), solved here with numpy
  at a strongly anisotropic, rotated covariance;
* Monte Carlo at several sizes with the covariance rotated (not diagonal), which also rejects
  the plausible wrong equivalent that normalizes each Gram term by its own row count.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import detequiv as de
from detequiv.derivations.derivation import FixedPoint
from detequiv.derivations.onepoint import with_fixed_points

lam = sp.Symbol("lam", positive=True)
D, P, P1, P2 = sp.symbols("D P P1 P2", positive=True)
p1 = sp.Symbol("p1", positive=True)
S2 = de.Deterministic("S2", D)
X1, X2 = de.Gaussian("X1", (P1, D)), de.Gaussian("X2", (P2, D))
B = de.FreeMatrix("B", D, de.Wishart(D / P1))

# the two shapes of the issue
SUM_OF_GRAMS = lam * de.resolvent(X1.T @ X1 / P + S2.sqrt() @ X2.T @ X2 @ S2.sqrt() / P2, lam)
FREE_PLUS_GRAM = lam * de.resolvent(p1 * B + S2.sqrt() @ X2.T @ X2 @ S2.sqrt() / P, lam)


def rotated(n: int, seed: int = 7) -> np.ndarray:
    """A strongly anisotropic covariance (eigenvalues 0.05 .. 4, geometric) in a random basis."""
    q, _ = np.linalg.qr(np.random.default_rng(seed + n).standard_normal((n, n)))
    return (q * np.geomspace(0.05, 4.0, n)) @ q.T


def reference(lam_value: complex, covariances: list[np.ndarray], rows: list[float]) -> np.ndarray:
    """``(lam + sum_k C_k / (1 + delta_k))^-1`` with the deltas solved by damped iteration
    (and polished by Newton-free fixed-point steps to 1e-15)."""
    n = covariances[0].shape[0]
    delta = np.zeros(len(covariances), dtype=complex)
    for _ in range(20000):
        t = np.linalg.inv(
            lam_value * np.eye(n) + sum(c / (1 + d) for c, d in zip(covariances, delta, strict=True))
        )
        new = np.array([np.trace(c @ t) / m for c, m in zip(covariances, rows, strict=True)])
        if np.max(np.abs(new - delta)) < 1e-15 * max(1.0, np.max(np.abs(new))):
            delta = new
            break
        delta = 0.5 * delta + 0.5 * new
    else:  # pragma: no cover
        raise AssertionError("the reference iteration did not converge")
    return np.linalg.inv(
        lam_value * np.eye(n) + sum(c / (1 + d) for c, d in zip(covariances, delta, strict=True))
    )


@pytest.fixture(scope="module")
def sum_of_grams():
    return de.derive(SUM_OF_GRAMS)


@pytest.fixture(scope="module")
def free_plus_gram():
    return de.derive(FREE_PLUS_GRAM)


def test_both_shapes_derive_with_a_composed_layer(sum_of_grams, free_plus_gram):
    for eq in (sum_of_grams, free_plus_gram):
        assert eq.derivation.rules[-1] == "layer_composition"
        assert "additive_subordination" in eq.derivation.rules
        assert [str(fp.symbol) for fp in eq.fixed_points] == ["kappa_2", "kappa_1"]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["sum_of_grams", "free_plus_gram"])
def test_series_to_order_6(which, request):
    assert request.getfixturevalue(which).check_series(6).passed


def test_series_to_order_4(sum_of_grams, free_plus_gram):
    assert sum_of_grams.check_series(4).passed
    assert free_plus_gram.check_series(4).passed


@pytest.mark.parametrize("lam_value", [0.3, 0.02, 1.5, 0.1 + 0.4j])
def test_sum_of_grams_matches_the_independent_formula(sum_of_grams, lam_value):
    n, sizes = 60, {"P": 90, "P1": 120, "P2": 180}
    s2 = rotated(n)
    t = rotated(n, seed=11)  # a non-commuting test matrix
    value = sum_of_grams.evaluate({"S2": s2, lam: lam_value, D: n, **sizes})
    # (1/P) X1'X1 = (1/P1) (sqrt(P1/P) X1)'(sqrt(P1/P) X1): C_1 = (P1/P) I, n_1 = P1; C_2 = S2, n_2 = P2
    ref = lam_value * reference(
        lam_value, [sizes["P1"] / sizes["P"] * np.eye(n), s2], [sizes["P1"], sizes["P2"]]
    )
    got = value.trace(t)
    want = np.trace(t @ ref) / n
    assert abs(got - want) <= 1e-10 * abs(want), (got, want)


@pytest.mark.parametrize("lam_value", [0.3, 0.05, 0.2 - 0.3j])
def test_free_plus_gram_matches_the_independent_formula(free_plus_gram, lam_value):
    n, p1v, sizes = 50, 0.7, {"P": 40, "P1": 100, "P2": 75}
    s2 = rotated(n, seed=3)
    t = rotated(n, seed=5)
    value = free_plus_gram.evaluate({"S2": s2, lam: lam_value, p1: p1v, D: n, **sizes})
    # p1 B, B ~ Wishart(D/P1): C_1 = p1 I, n_1 = P1; (1/P) S2^.5 X2'X2 S2^.5: C_2 = (P2/P) S2, n_2 = P2
    covs = [p1v * np.eye(n), sizes["P2"] / sizes["P"] * s2]
    ref = lam_value * reference(lam_value, covs, [sizes["P1"], sizes["P2"]])
    got, want = value.trace(t), np.trace(t @ ref) / n
    assert abs(got - want) <= 1e-10 * abs(want), (got, want)


def _own_normalization(eq):
    """The plausible wrong equivalent: each Gram term normalized by its own row count (the
    coefficient P1/P of the first term dropped)."""
    fps = [
        FixedPoint(fp.symbol, sp.Eq(fp.symbol, fp.rhs.subs(P, P1)), fp.depends_on) for fp in eq.fixed_points
    ]
    return with_fixed_points(eq, fps)


def test_monte_carlo_with_a_rotated_covariance_and_a_rejected_wrong_formula(sum_of_grams):
    common = dict(
        n_samples=6,
        spectra={"S2": rotated},
        dims={"P": 1.5, "P1": 2.0, "P2": 3.0},
        lams=(0.3, 0.2 + 0.3j),
    )
    right = sum_of_grams.check_monte_carlo((50, 100, 200), rng=np.random.default_rng(19), **common)
    assert right.passed, str(right)
    wrong = _own_normalization(sum_of_grams).check_monte_carlo(
        (50, 100, 200), rng=np.random.default_rng(19), **common
    )
    assert not wrong.passed


@settings(max_examples=8, deadline=None)
@given(
    c1=st.fractions(min_value=sp.Rational(1, 5), max_value=5).filter(lambda x: x > 0),
    c2=st.fractions(min_value=sp.Rational(1, 5), max_value=5).filter(lambda x: x > 0),
)
def test_property_any_positive_coefficients_compose(c1, c2):
    """``c1 B + c2 S2^(1/2) W S2^(1/2)`` for random positive rational coefficients: derives
    (no RecursionError, no 'cannot invert'), its series holds to order 3, and its value is the
    independent formula's."""
    c1, c2 = sp.Rational(c1.numerator, c1.denominator), sp.Rational(c2.numerator, c2.denominator)
    eq = de.derive(lam * de.resolvent(c1 * B + c2 * S2.sqrt() @ X2.T @ X2 @ S2.sqrt() / P2, lam))
    assert eq.check_series(3).passed
    n, sizes = 30, {"P1": 45, "P2": 60}
    s2 = rotated(n, seed=2)
    value = eq.evaluate({"S2": s2, lam: 0.4, D: n, **sizes}).trace()
    covs = [float(c1) * np.eye(n), float(c2) * s2]
    want = 0.4 * np.trace(reference(0.4, covs, [sizes["P1"], sizes["P2"]])) / n
    assert abs(value - want) <= 1e-10 * abs(want)


def test_an_outer_ridge_that_is_not_a_multiple_of_one_ridge_is_refused_clearly():
    from detequiv.derivations.additive import _invert_layer

    k1, k2 = sp.symbols("kappa_1 kappa_2")
    with pytest.raises(de.errors.InvalidArgument, match="not a multiple of one ridge"):
        _invert_layer(sp.Eq(k2, k1 + lam), k1 + lam, [k1, k2, lam])
    with pytest.raises(de.errors.InvalidArgument, match="not c \\*"):
        _invert_layer(sp.Eq(k2, k1**2), k1**2, [k1, k2, lam])
