"""Monte Carlo witness of one-point equivalents (simulation is the independent source)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import sympy as sp

import detequiv.witnesses.onepoint  # noqa: F401 - registers OnePoint.check_monte_carlo
from detequiv.derivations.derive import derive
from detequiv.derivations.expressions import Deterministic, FreeMatrix, Gaussian, resolvent
from detequiv.derivations.laws import CumulantLaw, FreePoisson, Wishart
from detequiv.errors import InvalidArgument, VerificationError

lam = sp.Symbol("lam", positive=True)
D, P, N, K = sp.symbols("D P N K", positive=True)
q1 = sp.Symbol("q1", positive=True)
Sigma = Deterministic("Sigma", D)
X = Gaussian("X", (P, D))
F = Gaussian("F", (N, D))
G = Gaussian("G", (K, D))
EQ = derive(lam * resolvent(Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P, lam))
SMALL = {"sizes": (100, 200), "n_samples": 10}


def _perturb(eq, old, new):
    fps = tuple(
        dataclasses.replace(fp, equation=sp.Eq(fp.symbol, fp.rhs.xreplace({old: new})))
        for fp in eq.fixed_points
    )
    return dataclasses.replace(eq, fixed_points=fps)


def test_sample_covariance_passes_at_real_and_complex_lam():
    check = EQ.check_monte_carlo(rng=np.random.default_rng(5), **SMALL)
    assert check.passed, str(check)
    assert len(check.reports) == 4  # 2 ridges x 2 test matrices
    assert any(isinstance(r.rows[0].exact, complex) for r in check.reports)
    check.raise_if_failed()


@pytest.mark.parametrize("factor", [sp.Rational(5, 6), sp.oo], ids=["q * 1.2", "no renormalization"])
def test_wrong_fixed_point_fails(factor):
    wrong = _perturb(EQ, P, P * factor)
    check = wrong.check_monte_carlo(rng=np.random.default_rng(5), **SMALL)
    assert not check.passed
    with pytest.raises(VerificationError, match="Monte Carlo"):
        check.raise_if_failed()


def test_three_gram_layers():
    # an equivalent that appears nowhere as a formula: three Wishart layers, sampled
    A = Sigma.sqrt() @ (G.T @ G / K) @ (F.T @ F / N) @ (X.T @ X / P) @ Sigma.sqrt()
    eq = derive(lam * resolvent(A, lam))
    check = eq.check_monte_carlo(rng=np.random.default_rng(6), dims={P: 3, N: 2, K: 4}, **SMALL)
    assert check.passed, str(check)


def test_free_poisson_factor_and_non_symmetric_order():
    Z = FreeMatrix("Z", D, FreePoisson(sp.Rational(3, 2), sp.Rational(1, 2)))
    eq = derive(lam * resolvent(Z @ Sigma, lam))
    check = eq.check_monte_carlo(rng=np.random.default_rng(7), **SMALL)
    assert check.passed, str(check)


def test_symbolic_ratio_given_in_values():
    W1 = FreeMatrix("W1", D, Wishart(q1))
    eq = derive(lam * resolvent(Sigma @ W1 @ X.T @ X / P, lam))
    check = eq.check_monte_carlo(rng=np.random.default_rng(8), values={q1: 0.7}, **SMALL)
    assert check.passed, str(check)


def test_law_without_matrix_model_needs_a_sampler():
    eq = derive(lam * resolvent(Sigma @ FreeMatrix("B", D, CumulantLaw("B")), lam))
    with pytest.raises(InvalidArgument):
        eq.check_monte_carlo(rng=np.random.default_rng(0), **SMALL)


def test_rng_must_be_a_generator():
    with pytest.raises(InvalidArgument, match="Generator"):
        EQ.check_monte_carlo(rng=0, **SMALL)


@pytest.mark.slow
def test_sample_covariance_large_sizes():
    check = EQ.check_monte_carlo(sizes=(200, 400, 800), rng=np.random.default_rng(9), n_samples=20)
    assert check.passed, str(check)
