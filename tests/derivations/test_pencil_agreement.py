"""The general engine agrees with the shape engine wherever both apply.

For every expression both routes derive (the sample covariance in its three placements, a
trace against a test matrix, random-feature layers in weight and feature space with both
averaging orders, two-point forms I, II and III, a Gram sandwich between two resolvents, an
additive layer with a semicircular matrix), the two results are compared

* numerically, as dense matrices (or traces), at a strongly anisotropic rotated ``Sigma`` and
  rotated test matrices, real and complex ridges: to 1e-10;
* exactly: both series witnesses pass against the same planar diagram sums, so the two
  expansions agree coefficient by coefficient in exact rationals; where the pencil reduces to a
  renormalized ridge (``ridge_form``), its fixed point equals the shape engine's symbolically.
"""

import numpy as np
import pytest
import sympy as sp

import detequiv as de
from detequiv.derivations.derivation import FixedPoint
from detequiv.derivations.expressions import Deterministic, FreeMatrix, Gaussian, resolvent, trace
from detequiv.derivations.general import PencilEquivalent
from detequiv.derivations.laws import Semicircle
from detequiv.derivations.onepoint import OnePoint

lam, lam2 = sp.symbols("lam lam2", positive=True)
D, P, N = sp.symbols("D P N", positive=True)
S, T, M = Deterministic("Sigma", D), Deterministic("T", D), Deterministic("M", D)
X, F = Gaussian("X", (P, D)), Gaussian("F", (N, D))
H = FreeMatrix("H", D, Semicircle(sp.Rational(1, 2)))
SH = S.sqrt() @ X.T @ X @ S.sqrt() / P
W = X.T @ X / P

CASES = {
    "sample covariance": (lam * resolvent(SH, lam), None),
    "sample covariance, W Sigma": (lam * resolvent(W @ S, lam), None),
    "sample covariance, Sigma W": (lam * resolvent(S @ W, lam), None),
    "trace against T": (trace(T @ (lam * resolvent(SH, lam))), None),
    "random features, data first": (lam * resolvent(F.T @ F @ SH / N, lam), ("X", "F")),
    "random features, features first": (lam * resolvent(F.T @ F @ SH / N, lam), ("F", "X")),
    "random features, feature space": (lam * resolvent(F @ SH @ F.T / N, lam), None),
    "two-point, form III": (lam * lam2 * resolvent(SH, lam) @ M @ resolvent(SH, lam2), None),
    "two-point, form I": (lam * lam2 * resolvent(S @ W, lam) @ M @ resolvent(W @ S, lam2), None),
    "two-point, form II": (lam * lam2 * resolvent(W @ S, lam) @ M @ resolvent(S @ W, lam2), None),
    "sandwich": (lam * lam2 * resolvent(SH, lam) @ SH @ resolvent(SH, lam2), None),
    "additive layer": (lam * resolvent(W @ (S + H), lam), None),
}


def _rotated(rng, eigenvalues):
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return (q * eigenvalues) @ q.T


def _values(n=24, low=0.02):
    rng = np.random.default_rng(11)
    m = rng.standard_normal((n, n))
    return {
        "Sigma": _rotated(rng, np.geomspace(low, 400 * low, n)),  # condition number 400
        "T": rng.standard_normal((n, n)),
        "M": m + m.T,
        "D": n,
        "P": 2 * n,
        "N": 3 * n // 2,
    }


def _number(value, test):
    """One number of an evaluated result: tr(test E) for a matrix, the value for a trace."""
    if isinstance(value, (int, float, complex)):
        return value
    if hasattr(value, "value") and np.ndim(value.value) == 0:
        return value.value
    return value.trace(test)


def _matrix(value):
    return np.asarray(value.matrix)


@pytest.fixture(scope="module")
def derived():
    out = {}
    for name, (expr, order) in CASES.items():
        shapes = de.derive(expr, order=order, method="shapes")
        pencil = de.derive(expr, method="pencil")
        out[name] = (shapes, pencil)
    return out


@pytest.mark.parametrize("z", [0.07, 1.3, 0.1 + 0.3j], ids=["small", "large", "complex"])
@pytest.mark.parametrize("name", list(CASES))
def test_the_two_engines_agree_numerically(derived, name, z):
    shapes, pencil = derived[name]
    assert "linearize" in pencil.derivation.rules
    # Sigma + H must stay positive (H semicircular, radius 1.41): else lam + A is singular on the
    # positive axis and no real ridge has an equivalent
    low = 2.0 if name == "additive layer" else 0.02
    values = {**_values(low=low), "lam": z, "lam2": 0.4 if np.isreal(z) else 0.4 + 0.2j}
    a, b = shapes.evaluate(values), pencil.evaluate(values)
    if not hasattr(a, "matrix"):  # a trace
        assert abs(_number(a, None) - _number(b, None)) <= 1e-10 * abs(_number(a, None))
        return
    ma, mb = _matrix(a), _matrix(b)
    assert np.max(np.abs(ma - mb)) <= 1e-10 * np.max(np.abs(ma)), name


@pytest.mark.parametrize("name", list(CASES))
def test_both_series_match_the_same_planar_sums(derived, name):
    shapes, pencil = derived[name]
    order = 4 if "two-point" in name or "sandwich" in name else 5
    assert pencil.check_series(order).passed
    assert shapes.check_series(min(order, 4)).passed


def test_the_pencil_ridge_form_is_the_kappa_equation():
    """The sample covariance through its pencil reduces to the shape engine's fixed point, as sympy
    expressions: kappa = lam / (1 - (D/P) df1(Sigma, kappa))."""
    shapes = de.derive(lam * resolvent(SH, lam), method="shapes")
    pencil = de.derive(lam * resolvent(SH, lam), method="pencil")
    assert isinstance(pencil, OnePoint) and pencil.derivation.rules[-1] == "ridge_form"
    (a,), (b,) = shapes.fixed_points, pencil.fixed_points
    assert sp.simplify(a.rhs - b.rhs.subs(b.symbol, a.symbol)) == 0
    assert shapes.deterministic == pencil.deterministic.subs(b.symbol, a.symbol)


def test_a_wrong_pencil_is_caught_by_the_comparison():
    """Dropping one coupling of eta (an unknown set to 0 in the other equations) moves the answer
    far beyond the tolerance: the comparison can fail."""
    shapes, pencil = (
        de.derive(CASES["random features, data first"][0], order=o, method=m)
        for o, m in (
            (("X", "F"), "shapes"),
            (None, "pencil"),
        )
    )
    assert isinstance(pencil, PencilEquivalent)
    g = pencil.unknowns[-1]
    kept = [fp for fp in pencil.fixed_points if fp.symbol != g]
    broken = PencilEquivalent(
        random=pencil.random,
        deterministic=pencil.deterministic.subs(g, 0),
        fixed_points=tuple(
            FixedPoint(
                fp.symbol, sp.Eq(fp.symbol, fp.rhs.subs(g, 0)), tuple(d for d in fp.depends_on if d != g)
            )
            for fp in kept
        ),
        derivation=(),
        lams=pencil.lams,
        pencil=pencil.pencil,
    )
    values = {**_values(), "lam": 0.3}
    good = np.max(np.abs(_matrix(shapes.evaluate(values)) - _matrix(pencil.evaluate(values))))
    bad = np.max(np.abs(_matrix(shapes.evaluate(values)) - _matrix(broken.evaluate(values))))
    assert good < 1e-10 < 1e-3 < bad
