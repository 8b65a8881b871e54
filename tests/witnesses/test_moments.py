"""The symbolic-to-Monte-Carlo bridge: derived mixed moments against simulation."""

import numpy as np
import pytest
import sympy as sp

from detequiv.derivations.laws import CumulantLaw, FreePoisson, Semicircle, Wishart
from detequiv.derivations.quantities import tr
from detequiv.errors import InvalidArgument
from detequiv.witnesses.moments import evaluate_traces, sampler_for_law, verify_mixed_moment

S, B, W, G = sp.symbols("S B W G", commutative=False)
q = sp.Symbol("q", positive=True)
SPEC = {S: lambda N: np.linspace(0.25, 2.0, N)}


def test_evaluate_traces_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 5, 5))
    expr = 3 * tr(S * B * S) * q + tr(B)
    want = 3 * np.trace(a @ b @ a) / 5 * 0.5 + np.trace(b) / 5
    assert evaluate_traces(expr, {S: a, B: b}, {q: 0.5}) == pytest.approx(want, rel=1e-12)
    with pytest.raises(InvalidArgument, match="needs matrices"):
        evaluate_traces(expr, {S: a}, {q: 0.5})
    with pytest.raises(InvalidArgument, match="no value for"):
        evaluate_traces(expr, {S: a, B: b})


@pytest.mark.parametrize("ratio", [sp.Rational(1, 2), sp.Integer(2)])
def test_sample_covariance_cube_passes_and_commuting_answer_fails(ratio):
    rng = np.random.default_rng(11)
    word = (S * W) ** 3
    kwargs = dict(deterministic=SPEC, values={q: ratio}, sizes=(100, 200, 400), n_samples=10, rng=rng)
    good = verify_mixed_moment(word, {W: Wishart(q)}, **kwargs)
    assert good.passed, str(good)
    wrong = tr(S**3) * (1 + 3 * q + q**2)  # tr(S^3 W^3): S and W treated as commuting
    bad = verify_mixed_moment(word, {W: Wishart(q)}, exact=wrong, **kwargs)
    assert not bad.passed, str(bad)
    assert bad.max_ratio > 2


def test_semicircle_sandwich_with_goe():
    rng = np.random.default_rng(5)
    spec = {S: lambda N: np.linspace(0.25, 2.0, N), B: lambda N: 1.0 + 0.5 * np.cos(np.arange(N))}
    rep = verify_mixed_moment(
        S * G * B * G * S * G * G,
        {G: Semicircle(sp.Rational(3, 2))},
        deterministic=spec,
        sizes=(100, 200, 400),
        n_samples=10,
        rng=rng,
    )
    assert rep.passed, str(rep)


def test_free_poisson_sampler_moments():
    # free Poisson(rate r, jump a): kappa_n = r a^n, so m_2 = r a^2 + r^2 a^2
    law = FreePoisson(2, sp.Rational(1, 2))
    rng = np.random.default_rng(3)
    rep = verify_mixed_moment(W * W, {W: law}, sizes=(100, 200, 400), n_samples=10, rng=rng)
    assert rep.rows[0].exact == pytest.approx(2 * 0.25 + 4 * 0.25)
    assert rep.passed, str(rep)


def test_bridge_errors():
    with pytest.raises(InvalidArgument, match="no built-in matrix model"):
        sampler_for_law(CumulantLaw("b"))
    with pytest.raises(InvalidArgument, match="symbolic"):
        sampler_for_law(Wishart(q))
    with pytest.raises(InvalidArgument, match="need matrices"):
        verify_mixed_moment(S * W, {W: Wishart(1)}, rng=np.random.default_rng(0))
