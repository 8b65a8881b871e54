"""Random-feature ridge regression (MATH.md 4.5): the engine-derived test error and its
fine-grained split against MATH.md's displays re-implemented here in numpy (brentq for
kappa_2), the N -> infinity limit against plain ridge, and the exact series of every term
against the planar diagram sums of its replica functional."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import brentq

from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian
from detequiv.errors import InvalidArgument
from detequiv.models.random_features import RandomFeatureRidge
from detequiv.models.ridge import RidgeRegression

D, N, P = sp.symbols("D N P", positive=True)
SIG = Deterministic("Sigma", D)
X = Gaussian("X", (P, D))
F = Gaussian("F", (N, D))
BETA = DeterministicVector("beta", D)


@pytest.fixture(scope="module")
def err():
    return RandomFeatureRidge(SIG, X, F, BETA).test_error()


def math_45(e, beta, n_feat, p, lam, s2):
    """MATH.md 4.5, written out: kappa_2 by brentq, then B, V_F, V_X, V_XF, noise variance."""

    def df(k):
        return np.sum(e / (e + k))

    def h(k):
        return k * (1 - df(k) / p) * (1 - df(k) / n_feat) - lam

    cap = min(p, n_feat)
    lo = brentq(lambda k: df(k) - cap, 1e-14, 1e6) if cap < len(e) else 0.0
    k2 = brentq(h, lo * (1 + 1e-12) + 1e-15, lam + 100 * e.sum(), xtol=1e-16, rtol=1e-15)
    n, n2 = df(k2), np.sum(e**2 / (e + k2) ** 2)
    r = 1 / (e + k2)
    g1 = (n2 + (n - n2) ** 2 / (n_feat - n2)) / p
    b = k2**2 * np.sum(beta**2 * e * r**2)
    vf = k2 * (n - n2) / (n_feat - n2) * np.sum(beta**2 * e**2 * r**2)
    vx = b * (n2 / p) / (1 - n2 / p)
    vxf = (b + vf) / (1 - g1) - b / (1 - n2 / p) - vf
    return {
        "bias": b,
        "variance_features": vf,
        "variance_data": vx,
        "variance_interaction": vxf,
        "variance_noise": s2 * g1 / (1 - g1),
        "total": (b + vf + s2) / (1 - g1),
    }


@pytest.mark.parametrize("n_feat, p", [(100, 150), (400, 150), (150, 600), (150, 100)])
@pytest.mark.parametrize("lam", [1e-3, 5e-2])
def test_split_matches_math_45(err, n_feat, p, lam):
    d = 200
    k = np.arange(1, d + 1, dtype=float)
    e, beta, s2 = k**-1.3, k**-0.6, 0.04
    out = err.evaluate({"Sigma": e, "beta": beta, "D": d, "N": n_feat, "P": p, "lam": lam, "sigma2": s2})
    ref = math_45(e, beta, n_feat, p, lam, s2)
    for name, value in ref.items():
        assert out[name] == pytest.approx(value, rel=1e-9, abs=1e-13), name
    # the split is not degenerate here: every part is a visible fraction of the total
    parts = (out["variance_features"], out["variance_data"], out["variance_interaction"])
    assert min(parts) > 1e-3 * out["total"]


def test_many_features_is_plain_ridge(err):
    """N -> infinity: W_F -> I, so the RF error tends to ridge regression's (MATH.md 4.5 limits)."""
    d, p, lam, s2 = 120, 200, 0.05, 0.09
    k = np.arange(1, d + 1, dtype=float)
    e, beta = k**-1.1, k**-0.5
    ridge = RidgeRegression(SIG, X, BETA).test_error()
    vals = {"Sigma": e, "beta": beta, "D": d, "P": p, "lam": lam, "sigma2": s2}
    plain = ridge.evaluate(vals)["total"]
    gaps = [abs(err.evaluate({**vals, "N": n})["total"] - plain) for n in (1e4, 1e6)]
    assert gaps[1] < gaps[0] / 50 and gaps[1] < 1e-4 * plain  # O(1/N)
    # and the feature parts vanish
    out = err.evaluate({**vals, "N": 1e7})
    assert abs(out["variance_features"]) + abs(out["variance_interaction"]) < 1e-4 * out["total"]


def test_derivation_is_engine_steps(err):
    rules = [s.rule.name for s in err.derivation]
    for rule in (
        "replica_decomposition",
        "replica_factorization",
        "conditional_equivalent",
        "trace_concentration",
        "spectral_parameter_substitution",
        "two_point_coincidence",
        "resolvent_absorption",
        "implicit_differentiation",
    ):
        assert rule in rules, rule
    assert [fp.symbol.name for fp in err.fixed_points] == ["kappa_2"]


def test_series_order_3(err):
    """The fast default; order 6 (about 4 minutes) is the slow test below."""
    report = err.check_series(3)
    assert report.passed, str(report)
    # the diagram side is not trivially zero: the interaction starts at lam^-2
    assert report.coefficients["variance_interaction"][2][1] != 0


@pytest.mark.slow
def test_series_order_6(err):
    report = err.check_series(6)
    assert report.passed, str(report)


def test_wrong_formula_fails_series(err):
    """Dropping the feature layer (plain ridge's variance) is caught by the exact witness."""
    from dataclasses import replace

    terms = dict(err.terms)
    terms["variance_features"] = sp.S.Zero
    bad = replace(err, terms=terms)
    report = bad.check_series(2)
    assert report.failures["variance_features"] == 2
    assert report.failures["bias"] is None


def test_bad_input():
    with pytest.raises(InvalidArgument, match="columns"):
        RandomFeatureRidge(SIG, Gaussian("X", (P, N)), F, BETA)
    with pytest.raises(InvalidArgument, match="different names"):
        RandomFeatureRidge(SIG, X, Gaussian("X", (N, D)), BETA)
    with pytest.raises(InvalidArgument, match="DeterministicVector"):
        RandomFeatureRidge(SIG, X, F, DeterministicVector("beta", N))
