"""Monte Carlo witness of the two-point engine (MATH.md 3.1 and the acceptance rule)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import detequiv.witnesses.twopoint  # noqa: F401 - registers the witness
from detequiv.derivations.expressions import Deterministic, FreeMatrix, Gaussian, resolvent
from detequiv.derivations.laws import FreePoisson
from detequiv.derivations.sandwich import derive_two_point
from detequiv.errors import InvalidArgument
from detequiv.witnesses.twopoint import check_monte_carlo

lam, lam2 = sp.symbols("lam lam2", positive=True)
D, P = sp.symbols("D P", positive=True)
S = Deterministic("Sigma", D)
M = Deterministic("M", D)
C = Deterministic("C", D)
X = Gaussian("X", (P, D))
W = X.T @ X / P
SH = S.sqrt() @ X.T @ X @ S.sqrt() / P
FORMS = {"III": (SH, SH), "I": (S @ W, W @ S), "II": (W @ S, S @ W)}


def two(x1, x2, *mid):
    expr = lam * lam2 * resolvent(x1, lam)
    for m in mid:
        expr = expr @ m
    return derive_two_point(expr @ resolvent(x2, lam2))


def test_form_iii_real_and_complex_and_naive_rejected(capsys):
    tp = two(*FORMS["III"], M, C)  # M C: dense, non-symmetric
    result = tp.check_monte_carlo(
        (60, 120),
        rng=np.random.default_rng(3),
        n_samples=8,
        lams=((0.02, 0.5), (0.1 + 0.3j, 0.2 - 0.1j)),
        tests=("T",),
    )
    print(result)
    assert result.passed, str(result)
    for r in result.reports:
        assert r.report.passed and not r.naive.passed
        assert 0.03 < r.correction < 0.6
    out = capsys.readouterr().out
    assert "correction term" in out and "naive product" in out


def test_wrong_exponent_is_rejected():
    """Negative control: drop Sigma from the correction's trace (a = 0 in form III)."""
    tp = two(*FORMS["III"], M).with_exponent(0)
    result = check_monte_carlo(
        tp, (60, 120), rng=np.random.default_rng(4), n_samples=8, lams=((0.02, 0.5),), tests=("T",)
    )
    assert not result.reports[0].report.passed


def test_rng_is_required():
    with pytest.raises(InvalidArgument, match="Generator"):
        check_monte_carlo(two(*FORMS["III"], M), rng=0)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["III", "I", "II"])
@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_all_forms_several_sizes(form, ratio, capsys):
    tp = two(*FORMS[form], M, C)
    result = tp.check_monte_carlo(
        (100, 200, 400),
        rng=np.random.default_rng(7),
        n_samples=10,
        dims={"P": 1 / ratio},
        lams=((0.02, 0.5), (1e-3 + 0j, 1e-3 + 0j), (0.1 + 0.3j, 0.2 - 0.1j)),
    )
    print(result)
    assert result.passed, str(result)


@pytest.mark.slow
def test_general_law_free_poisson():
    """A non-Wishart free factor (scaled Wishart as FreePoisson(rate 2, jump 0.7))."""
    B = FreeMatrix("B", D, FreePoisson(2, sp.Rational(7, 10)))
    tp = two(S @ B, B @ S, M)
    result = tp.check_monte_carlo((100, 200), rng=np.random.default_rng(8), n_samples=10)
    assert result.passed, str(result)
