"""Two-point equivalent in the frequency domain (issue 4, section 2; MATH.md 3, 5.1).

lam = i w, lam' = i w' on the physical branch; the soft limit w, w' -> 0 of
(i w)(i w') F(w, w') = tr(T lam lam' G Sigma G') against ridgeless values computed here
(MATH.md 4.1 bias formula with kappa_0 from brentq, and the isotropic closed form of 4.4),
and finite-N agreement with a Monte Carlo average of the exact matrix expression.
"""

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
X = Gaussian("X", (P, D))
SH = S.sqrt() @ X.T @ X @ S.sqrt() / P


def loss_two_point():
    """lam lam' tr(T G Sigma G'), the Laplace transform of the test loss (form III, M = Sigma)."""
    return derive_two_point(lam * lam2 * resolvent(SH, lam) @ S @ resolvent(SH, lam2))


TP = loss_two_point()


def spectrum(n: int) -> np.ndarray:
    return np.linspace(0.5, 2.0, n)


def t_matrix(n: int) -> np.ndarray:
    """A dense symmetric test matrix (a target beta beta^T plus a diagonal)."""
    beta = np.cos(np.arange(n) * 0.7)
    return np.outer(beta, beta) + np.diag(np.linspace(0.0, 1.0, n))


def values(l1: complex, l2: complex, e: np.ndarray, q: float) -> dict:
    n = len(e)
    return {"lam": l1, "lam2": l2, "Sigma": e, "D": n, "P": round(n / q)}


def kappa0(e: np.ndarray, q: float) -> float:
    """Ridgeless kappa (q > 1): q df1(kappa0) = 1 (MATH.md 2.1)."""
    return brentq(lambda k: q * np.mean(e / (e + k)) - 1.0, 1e-12, 1e3, xtol=1e-15)


def static_reference(e: np.ndarray, q: float, t: np.ndarray) -> float:
    """Ridgeless bias functional kappa0^2 tr(T Sigma R^2) / (1 - q df2) (MATH.md 4.1)."""
    k = kappa0(e, q)
    df2 = np.mean(e**2 / (e + k) ** 2)
    return float(k**2 * np.trace(t @ np.diag(e / (e + k) ** 2)).real / len(e) / (1 - q * df2))


# -- soft limit ------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [1.0, 0.5, 2.0])
def test_soft_limit_overparameterized_converges_to_ridgeless(ratio):
    """(i w)(i w' ) F -> static value, with error O(w): check the decrease and the rate."""
    q, n = 2.0, 40
    e = spectrum(n)
    t = t_matrix(n)
    expected = static_reference(e, q, t)
    ws = [1e-1, 1e-2, 1e-3, 1e-4]
    errs = [abs(TP.evaluate(values(1j * w, 1j * w * ratio, e, q)).trace(t) - expected) for w in ws]
    assert errs[-1] < 1e-3 * abs(expected)
    for a, b in zip(errs[:-1], errs[1:], strict=True):
        assert b < a / 5  # roughly linear convergence: each decade cuts the error ~10x
    rates = [np.log10(a / b) for a, b in zip(errs[:-1], errs[1:], strict=True)]
    assert min(rates) > 0.8, rates


def test_soft_limit_isotropic_closed_form():
    """Sigma = I, T = I, q = 2: ridgeless bias s (1 - 1/q) = 0.5 (MATH.md 4.4)."""
    n, q = 30, 2.0
    e = np.ones(n)
    errs = [abs(TP.evaluate(values(1j * w, 2j * w, e, q)).trace() - 0.5) for w in (1e-2, 1e-3, 1e-4)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-4


def test_soft_limit_underparameterized_vanishes():
    """q < 1: Sigma-hat is invertible, so lam lam' G Sigma G' -> 0 (kappa_0 = 0)."""
    n, q = 40, 0.5
    e = spectrum(n)
    errs = [abs(TP.evaluate(values(1j * w, 0.5j * w, e, q)).trace(t_matrix(n))) for w in (1e-2, 1e-3, 1e-4)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-6


def test_imaginary_ridges_on_physical_branch():
    """kappa(i w) solves lam = kappa (1 - q df1(kappa)) with Re kappa > 0, and kappa(-i w) = conj."""
    n, q = 20, 2.0
    e = spectrum(n)
    for w in (1e-3, 0.1, 3.0):
        v = TP.evaluate(values(1j * w, -1j * w, e, q))
        k, k2 = complex(v.kappa), complex(v.kappa2)
        assert abs(k * (1 - q * np.mean(e / (e + k))) - 1j * w) < 1e-10
        assert k.real > 0 and abs(k2 - k.conjugate()) < 1e-9


# -- finite N: Monte Carlo of the exact matrix expression ------------------------------


def monte_carlo(n: int, q: float, pairs, n_samples: int, rng: np.random.Generator):
    """Mean and standard error of lam lam' tr(T G Sigma G') over Gaussian draws."""
    e = spectrum(n)
    p = round(n / q)
    t = t_matrix(n)
    root = np.sqrt(e)
    out = np.zeros((n_samples, len(pairs)), dtype=complex)
    eye = np.eye(n)
    for s in range(n_samples):
        x = rng.standard_normal((p, n))
        sh = root[:, None] * (x.T @ x / p) * root[None, :]
        for j, (l1, l2) in enumerate(pairs):
            g1 = np.linalg.inv(sh + l1 * eye)
            g2 = np.linalg.inv(sh + l2 * eye)
            out[s, j] = l1 * l2 * np.trace(t @ g1 @ np.diag(e) @ g2) / n
    return out.mean(axis=0), out.std(axis=0, ddof=1) / np.sqrt(n_samples), e, t


PAIRS = [(0.3j, 0.7j), (0.05j, -0.2j), (1e-3j, 2e-3j), (2.0j, 0.5j), (0.1 + 0.3j, 0.2 - 0.1j)]


@pytest.mark.parametrize("q", [0.5, 2.0])
def test_frequency_monte_carlo(q):
    n = 120
    mean, se, e, t = monte_carlo(n, q, PAIRS, 12, np.random.default_rng(11))
    for j, (l1, l2) in enumerate(PAIRS):
        v = TP.evaluate(values(l1, l2, e, q))
        de, naive = complex(v.trace(t)), complex(v.naive_trace(t))
        tol = 4 * se[j] + 5 * abs(de) / n
        assert abs(de - mean[j]) < tol, (l1, l2, de, mean[j], tol)
        if abs(de) > 1e-3:  # the correction term matters: the naive product is rejected
            assert abs(naive - mean[j]) > tol, (l1, l2, naive, mean[j], tol)


def test_exact_matrices_at_small_frequency_reach_the_ridgeless_value():
    """No engine involved: the Monte Carlo mean at w = 1e-3 matches the static reference (q = 2)."""
    n, q = 120, 2.0
    mean, se, e, t = monte_carlo(n, q, [(1e-3j, 2e-3j)], 12, np.random.default_rng(12))
    expected = static_reference(e, q, t)
    assert abs(mean[0] - expected) < 4 * se[0] + abs(expected) / n + 1e-3
