"""One result protocol: every result type answers the same calls, and after a bare
``import detequiv`` its Monte Carlo witness is found by the result's type (no registry to
fill by importing the right module first; RandomFeatureRidge's used to be unreachable).

Each witness test runs in a fresh interpreter that imports only ``detequiv``, at small
sizes: it checks that the dispatch reaches the right simulation and that it returns
evidence, not the statistics (the witness modules' own tests do that at real sizes).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import sympy as sp

import detequiv as de
from detequiv.derivations.results import Equivalence, Evidence, Result

lam, lam2 = sp.symbols("lam lam2", positive=True)
D, P, N = sp.symbols("D P N", positive=True)
Sigma, M = de.Deterministic("Sigma", D), de.Deterministic("M", D)
X, F = de.Gaussian("X", (P, D)), de.Gaussian("F", (N, D))
beta = de.DeterministicVector("beta", D)
SH = Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P

PRELUDE = """
import numpy as np, sympy as sp
import detequiv as de
lam, lam2 = sp.symbols("lam lam2", positive=True)
D, P, N = sp.symbols("D P N", positive=True)
Sigma, M = de.Deterministic("Sigma", D), de.Deterministic("M", D)
X, F = de.Gaussian("X", (P, D)), de.Gaussian("F", (N, D))
beta = de.DeterministicVector("beta", D)
SH = Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P
rng = np.random.default_rng(1)
"""

# (result type, how to build it, the witness call at small sizes)
CASES = {
    "OnePoint": (
        "de.derive(lam * de.resolvent(SH, lam))",
        "r.check_monte_carlo((20, 40), rng=rng, n_samples=2, lams=(0.5,))",
    ),
    "Contracted": (
        "de.derive(de.trace(M @ (lam * de.resolvent(SH, lam))))",
        "r.check_monte_carlo((20, 40), rng=rng, n_samples=2, lams=(0.5,))",
    ),
    "TwoPoint": (
        "de.derive_two_point(lam * lam2 * de.resolvent(SH, lam) @ M @ de.resolvent(SH, lam2))",
        "r.check_monte_carlo((20, 40), rng=rng, n_samples=2, lams=((0.5, 0.2),))",
    ),
    "LayeredTwoPoint": (
        "de.derive_two_point(lam * lam2 * de.resolvent(F.T @ F @ SH / N, lam) @ M"
        " @ de.resolvent(F.T @ F @ SH / N, lam2))",
        "r.check_monte_carlo((20, 40), rng=rng, n_samples=2, lams=((0.5, 0.2),))",
    ),
    "Combination": (
        "de.derive_sandwich(lam * lam2 * de.resolvent(SH, lam) @ SH @ de.resolvent(SH, lam2))",
        "r.check_monte_carlo((20, 40), rng=rng, n_samples=2, lams=((0.5, 0.2),))",
    ),
    "LossFormula (ridge)": (
        "de.RidgeRegression(Sigma, X, beta).test_error()",
        "r.check_monte_carlo((20, 40), rng=rng, n_samples=2)",
    ),
    "LossFormula (random features)": (
        "de.RandomFeatureRidge(Sigma, X, F, beta).test_error()",
        "r.check_monte_carlo((20, 40), rng=rng, n_samples=2)",
    ),
    "LossCurve": (
        "de.GradientFlow(Sigma, X, beta).test_loss()",
        "r.check_monte_carlo((20, 40), rng=rng, n_samples=2, times=(1.0,))",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_monte_carlo_witness_after_a_bare_import(name):
    build, call = CASES[name]
    script = PRELUDE + textwrap.dedent(
        f"""
        r = {build}
        report = {call}
        assert type(report).__module__.startswith("detequiv."), type(report)
        assert isinstance(report.passed, bool) and bool(report) == report.passed
        print(type(r).__name__, type(report).__name__, "ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok"), out.stdout


def test_every_result_type_is_a_result():
    """The seven result types share the protocol (one signature each for derivation,
    check_series, check_monte_carlo, evaluate, _repr_latex_)."""
    results = [
        de.derive(lam * de.resolvent(SH, lam)),
        de.derive(de.trace(M @ (lam * de.resolvent(SH, lam)))),
        de.derive_two_point(lam * lam2 * de.resolvent(SH, lam) @ M @ de.resolvent(SH, lam2)),
        de.derive_two_point(
            lam * lam2 * de.resolvent(F.T @ F @ SH / N, lam) @ M @ de.resolvent(F.T @ F @ SH / N, lam2)
        ),
        de.derive_sandwich(lam * lam2 * de.resolvent(SH, lam) @ SH @ de.resolvent(SH, lam2)),
        de.RidgeRegression(Sigma, X, beta).test_error(),
        de.GradientFlow(Sigma, X, beta).test_loss(),
    ]
    names = [type(r).__name__ for r in results]
    assert names == [
        "OnePoint",
        "Contracted",
        "TwoPoint",
        "LayeredTwoPoint",
        "Combination",
        "LossFormula",
        "LossCurve",
    ]
    for r in results:
        assert isinstance(r, Result)
        assert isinstance(r.derivation, de.derivations.Derivation) and len(r.derivation) > 0
        assert all(isinstance(s.rule, de.derivations.Rule) for s in r.derivation)
        tex = r._repr_latex_()
        assert tex.startswith("$\\begin{aligned}") and "\\lambda" in tex, tex[:200]
        assert "lam" not in tex.replace("\\lambda", "")
    for r in results[:5]:
        assert isinstance(r, Equivalence)


def test_check_series_returns_evidence_for_every_type():
    results = [
        de.derive(lam * de.resolvent(SH, lam)),
        de.derive_two_point(lam * lam2 * de.resolvent(SH, lam) @ M @ de.resolvent(SH, lam2)),
        de.derive_sandwich(lam * lam2 * de.resolvent(SH, lam) @ SH @ de.resolvent(SH, lam2)),
        de.RidgeRegression(Sigma, X, beta).test_error(),
        de.GradientFlow(Sigma, X, beta).test_loss(),
    ]
    for r in results:
        report = r.check_series(2)
        assert isinstance(report, Evidence) and report.passed, str(report)


def test_a_wrong_equivalent_fails_its_series_check_through_the_protocol():
    """verify_series raises with the evidence when the exact witness disagrees."""
    eq = de.derive(lam * de.resolvent(SH, lam))
    fp = eq.fixed_points[0]
    wrong = de.derivations.onepoint.with_fixed_points(
        eq, [de.derivations.FixedPoint(fp.symbol, sp.Eq(fp.symbol, fp.rhs.subs(P, 2 * P)))]
    )
    with pytest.raises(de.errors.VerificationError, match="FAILED"):
        wrong.verify_series(3)


def test_a_failed_derivation_carries_its_partial_steps():
    """derive is a collector over a generator of steps: a failure shows how far it got."""
    B = de.FreeMatrix("B", D, de.Semicircle(1))  # mean 0: no S-transform
    with pytest.raises(de.errors.UndefinedTransform) as info:
        de.derive(lam * de.resolvent(SH @ B, lam), method="shapes")
    partial = info.value.derivation
    assert partial.rules == ("gaussian_gram_to_wishart",)
    assert "derivation so far" in "".join(getattr(info.value, "__notes__", []))
