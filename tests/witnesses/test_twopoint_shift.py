"""Covariate shift (MATH.md 4.3): lam lam' tr(T G Sigma' G') with a test covariance Sigma'
that does not commute with the training Sigma. Witnesses: a Monte Carlo average of the exact
matrix expression written here (several N), the MATH.md 4.3 bias formula written here in
numpy, and the exact double series with Sigma' as its own deterministic letter."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import brentq

from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
from detequiv.derivations.sandwich import derive_two_point

lam, lam2 = sp.symbols("lam lam2", positive=True)
D, P = sp.symbols("D P", positive=True)
S = Deterministic("Sigma", D)
S2 = Deterministic("Sigma_test", D)
X = Gaussian("X", (P, D))
SH = S.sqrt() @ X.T @ X @ S.sqrt() / P
TP = derive_two_point(lam * lam2 * resolvent(SH, lam) @ S2 @ resolvent(SH, lam2))


def spectrum(n: int) -> np.ndarray:
    return np.linspace(0.5, 2.0, n)


def shifted(n: int) -> np.ndarray:
    """Sigma' = O diag(reversed, stretched spectrum) O^T, O a fixed random rotation."""
    o, _ = np.linalg.qr(np.random.default_rng(1000 + n).standard_normal((n, n)))
    return (o * np.linspace(3.0, 0.2, n)) @ o.T


def t_matrix(n: int) -> np.ndarray:
    beta = np.cos(np.arange(n) * 0.7)
    return np.outer(beta, beta) + np.diag(np.linspace(0.0, 1.0, n))


def values(l1: complex, l2: complex, n: int, q: float) -> dict:
    return {"lam": l1, "lam2": l2, "Sigma": spectrum(n), "Sigma_test": shifted(n), "D": n, "P": round(n / q)}


def test_sigma_test_does_not_commute():
    e, s2 = np.diag(spectrum(30)), shifted(30)
    assert np.abs(e @ s2 - s2 @ e).max() > 0.1


def test_series_order_4_with_sigma_test_as_its_own_letter():
    result = TP.check_series(4)
    assert result.passed, str(result)
    assert len(result.coefficients) == 15


def test_series_naive_product_rejected():
    assert not TP.with_scale(0).check_series(2).passed


@pytest.mark.parametrize("q", [0.5, 2.0])
def test_matches_math_md_4_3_bias_formula(q):
    """kappa^2 tr(T R S' R) + q tr(S' S R^2) kappa^2 tr(T S R^2) / (1 - q df2), at lam = lam'."""
    n, l0 = 50, 0.1
    e, s2, t = spectrum(n), shifted(n), t_matrix(n)
    k = brentq(lambda k: k * (1 - q * np.mean(e / (e + k))) - l0, 1e-12, 100.0, xtol=1e-15)
    r = np.diag(1 / (e + k))
    gamma = q * np.mean(e**2 / (e + k) ** 2)

    def tr(a: np.ndarray) -> float:
        return float(np.trace(a)) / n

    sr2 = np.diag(e) @ r @ r
    expected = k**2 * tr(t @ r @ s2 @ r) + q * tr(s2 @ sr2) * k**2 * tr(t @ sr2) / (1 - gamma)
    got = TP.evaluate(values(l0, l0, n, q)).trace(t)
    assert got == pytest.approx(expected, rel=1e-7)


def monte_carlo(n: int, q: float, pairs, n_samples: int, rng: np.random.Generator):
    e, s2, t = spectrum(n), shifted(n), t_matrix(n)
    p = round(n / q)
    root = np.sqrt(e)
    eye = np.eye(n)
    out = np.zeros((n_samples, len(pairs)), dtype=complex)
    for s in range(n_samples):
        x = rng.standard_normal((p, n))
        sh = root[:, None] * (x.T @ x / p) * root[None, :]
        for j, (l1, l2) in enumerate(pairs):
            g1 = np.linalg.inv(sh + l1 * eye)
            g2 = np.linalg.inv(sh + l2 * eye)
            out[s, j] = l1 * l2 * np.trace(t @ g1 @ s2 @ g2) / n
    return out.mean(axis=0), out.std(axis=0, ddof=1) / np.sqrt(n_samples), t


PAIRS = [(0.02, 0.5), (0.1, 0.1), (0.1 + 0.3j, 0.2 - 0.1j), (0.2j, 0.5j)]


@pytest.mark.parametrize("q", [0.5, 2.0])
def test_monte_carlo_several_sizes_and_naive_rejected(q):
    rng = np.random.default_rng(21)
    sizes = (50, 100, 200)
    for n in sizes:
        mean, se, t = monte_carlo(n, q, PAIRS, 10, rng)
        for j, (l1, l2) in enumerate(PAIRS):
            v = TP.evaluate(values(l1, l2, n, q))
            de, naive = complex(v.trace(t)), complex(v.naive_trace(t))
            tol = 4 * se[j] + 5 * abs(de) / n
            assert abs(de - mean[j]) < tol, (n, l1, l2, de, mean[j], tol)
            if n == sizes[-1]:
                assert abs(naive - mean[j]) > tol, (n, l1, l2, naive, mean[j], tol)
