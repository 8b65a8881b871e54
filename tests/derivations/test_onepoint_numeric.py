"""OnePoint.evaluate: the physical branch against MATH.md's table and independent solvers."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy.integrate import quad

from detequiv.derivations.derive import derive
from detequiv.derivations.expressions import Deterministic, FreeMatrix, Gaussian, resolvent
from detequiv.derivations.laws import CumulantLaw, Wishart
from detequiv.derivations.numeric import physical_ridge
from detequiv.errors import InvalidArgument, UndefinedTransform

lam = sp.Symbol("lam", positive=True)
D, P = sp.symbols("D P", positive=True)
q1, q2 = sp.symbols("q1 q2", positive=True)
Sigma = Deterministic("Sigma", D)
X = Gaussian("X", (P, D))
EQ = derive(lam * resolvent(Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P, lam))


@pytest.mark.parametrize(
    "q, ridge, kappa",
    [
        (0.5, 0.1, 0.1741657387),
        (0.5, 1, 1.2807764064),
        (2, 0, 1.0),
        (2, 0.1, 1.1844288770),
        (2, 1, 2.4142135624),
    ],
)
def test_isotropic_kappa_table(q, ridge, kappa):
    # MATH.md section 7, "Isotropic kappa" (an independent source)
    value = EQ.evaluate({Sigma: np.ones(50), lam: ridge, D: 50, P: 50 / q})
    assert value.ridge == pytest.approx(kappa, abs=2e-10)
    assert value[sp.Symbol("kappa")] == value.ridge


def _mp_stieltjes(q: float, z: complex) -> complex:
    """lam * int rho_MP(x) / (lam + x) dx by quadrature of the Marchenko-Pastur density.

    For q > 1 the law has an atom of mass 1 - 1/q at 0, which contributes 1 - 1/q.
    """
    a, b = (1 - np.sqrt(q)) ** 2, (1 + np.sqrt(q)) ** 2
    atom = max(1 - 1 / q, 0.0)

    def rho(x: float) -> float:
        return np.sqrt(max((b - x) * (x - a), 0.0)) / (2 * np.pi * q * x)

    re = quad(lambda x: (z / (z + x)).real * rho(x), a, b, limit=200)[0]
    im = quad(lambda x: (z / (z + x)).imag * rho(x), a, b, limit=200)[0]
    return atom + complex(re, im)


@pytest.mark.parametrize("q", [0.5, 2.0])
@pytest.mark.parametrize("z", [0.05, 1.0, 0.3 + 0.4j, -0.02 + 0.05j, 0.5 - 1.5j])
def test_trace_matches_marchenko_pastur_quadrature(z, q):
    value = EQ.evaluate({Sigma: np.ones(40), lam: z, D: 40, P: 40 / q})
    assert value.trace() == pytest.approx(_mp_stieltjes(q, z), abs=1e-8)
    if isinstance(z, complex):
        assert np.sign(complex(value.ridge).imag) == np.sign(z.imag)


def test_complex_conjugate_symmetry():
    spec = np.linspace(0.5, 2.0, 60)
    a = EQ.evaluate({Sigma: spec, lam: 0.2 + 0.7j, D: 60, P: 90}).ridge
    b = EQ.evaluate({Sigma: spec, lam: 0.2 - 0.7j, D: 60, P: 90}).ridge
    assert complex(a) == pytest.approx(complex(b).conjugate(), rel=1e-10)


def test_two_layers_against_polynomial_roots():
    # isotropic Sigma = I: lam (1 + k)^2 = k (1 + k - q1)(1 + k - q2); physical = largest real root
    W1, W2 = FreeMatrix("W1", D, Wishart(q1)), FreeMatrix("W2", D, Wishart(q2))
    eq = derive(lam * resolvent(Sigma @ W1 @ W2, lam))
    for a, b, ridge in [(0.5, 0.3, 0.1), (2.0, 0.5, 0.05), (1.5, 3.0, 1.0)]:
        value = eq.evaluate({Sigma: np.ones(30), lam: ridge, q1: a, q2: b})
        k = np.polynomial.Polynomial([0, 1]).copy()
        poly = k * (1 + k - a) * (1 + k - b) - ridge * (1 + k) ** 2
        roots = poly.roots()
        best = max(r.real for r in roots if abs(r.imag) < 1e-9)
        assert value.ridge == pytest.approx(best, rel=1e-10)
        # the intermediate ridge kappa_1 = lam / (1 - q2 df1(kappa_2))
        df = 1 / (1 + best)
        assert value[sp.Symbol("kappa_1")] == pytest.approx(ridge / (1 - b * df), rel=1e-10)


def test_matrix_and_spectrum_give_the_same_trace():
    rng = np.random.default_rng(3)
    spec = np.linspace(0.2, 3.0, 40)
    o, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    mat = (o * spec) @ o.T
    a = EQ.evaluate({Sigma: spec, lam: 0.3, D: 40, P: 100})
    b = EQ.evaluate({"Sigma": mat, lam: 0.3, D: 40, P: 100})
    assert a.ridge == pytest.approx(b.ridge, rel=1e-10)
    assert b.trace(mat) == pytest.approx(a.trace(np.diag(spec)), rel=1e-9)
    assert np.allclose(b.matrix, b.ridge * np.linalg.inv(mat + b.ridge * np.eye(40)))


def test_physical_ridge_doctest_value_isotropic():
    assert physical_ridge(lambda d: 1 - 2 * d, lambda d: -2.0, np.ones(4), 1.0) == pytest.approx(
        1 + np.sqrt(2)
    )


@pytest.mark.parametrize(
    "values, error, message",
    [
        ({Sigma: np.ones(5), lam: -0.1, D: 5, P: 10}, InvalidArgument, "< 0"),
        ({Sigma: np.ones(5), D: 5, P: 10}, InvalidArgument, "no entry for lam"),
        ({Sigma: np.ones(5), lam: 0.1, D: 6, P: 10}, InvalidArgument, "size 5"),
        ({lam: 0.1, D: 5, P: 10}, InvalidArgument, "no matrix or spectrum for Sigma"),
        ({Sigma: np.ones(5), lam: float("nan"), D: 5, P: 10}, InvalidArgument, "not finite"),
    ],
)
def test_evaluate_errors(values, error, message):
    with pytest.raises(error, match=message):
        EQ.evaluate(values)


def test_no_closed_form_s_transform_cannot_be_evaluated():
    eq = derive(lam * resolvent(Sigma @ FreeMatrix("B", D, CumulantLaw("B")), lam))
    with pytest.raises(UndefinedTransform, match="S_B"):
        eq.evaluate({Sigma: np.ones(5), lam: 0.1})


def test_evaluate_rejects_invalid_spectra():
    import numpy as np
    import sympy as sp

    import detequiv as de
    from detequiv.errors import InvalidArgument

    lam = sp.Symbol("lam", positive=True)
    D, P = sp.symbols("D P", positive=True)
    Sigma = de.Deterministic("Sigma", D)
    X = de.Gaussian("X", (P, D))
    eq = de.derive(lam * de.resolvent(Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P, lam))
    with pytest.raises(InvalidArgument, match="positive semidefinite"):
        eq.evaluate({Sigma: np.array([1.0, -3.0]), lam: 1, D: 2, P: 4})
    with pytest.raises(InvalidArgument, match="non-finite"):
        eq.evaluate({Sigma: np.array([1.0, np.nan]), lam: 1, D: 2, P: 4})
