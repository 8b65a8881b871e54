"""Gradient flow on a finite data set (MATH.md 5.1): limits, Laplace inversion, simulation.

Expected values come from closed forms written here (MATH.md 4.1, 4.4 ridgeless errors,
sums of exponentials at P -> infinity) or from the simulation of gradient flow itself
(:mod:`detequiv.models.gradient_flow_mc`), never from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import brentq

from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian
from detequiv.derivations.laplace import (
    LossCurve,
    hyperbolic_nodes,
    inverse_laplace,
    talbot_nodes,
    time_windows,
)
from detequiv.errors import InvalidArgument
from detequiv.models.gradient_flow import GradientFlow
from detequiv.models.gradient_flow_mc import check_monte_carlo, simulate_gradient_flow
from detequiv.models.ridge import RidgeRegression

D, P = sp.symbols("D P", positive=True)
SIGMA2 = 0.09


@pytest.fixture(scope="module")
def flow() -> GradientFlow:
    return GradientFlow(Deterministic("Sigma", D), Gaussian("X", (P, D)), DeterministicVector("beta", D))


@pytest.fixture(scope="module")
def test_curve(flow: GradientFlow) -> LossCurve:
    return flow.test_loss()


@pytest.fixture(scope="module")
def train_curve(flow: GradientFlow) -> LossCurve:
    return flow.training_loss()


def power_law(d: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(1, d + 1, dtype=float)
    return k**-1.2, k**-0.4


def values(spec: np.ndarray, beta: np.ndarray, p: float, noise: float = SIGMA2) -> dict[str, object]:
    return {"Sigma": spec, "beta": beta, "P": p, "sigma2": noise}


def ridgeless_4_1(spec: np.ndarray, beta: np.ndarray, p: int, noise: float) -> float:
    """MATH.md 4.1 at lam -> 0, written here: kappa_0 from Tr Sigma (Sigma + kappa_0)^-1 = P (D > P)."""
    d = spec.size
    if d < p:
        return noise / (1 - d / p)
    k0 = brentq(lambda k: np.sum(spec / (spec + k)) - p, 1e-14, 1e6, xtol=1e-15, rtol=1e-15)
    r = 1 / (spec + k0)
    gamma = np.sum(spec**2 * r**2) / p
    return float((k0**2 * np.sum(beta**2 * spec * r**2) + noise) / (1 - gamma))


# ---------------------------------------------------------------------------
# structure: derived from the engine, named steps
# ---------------------------------------------------------------------------


def test_named_steps_and_terms(flow: GradientFlow, test_curve: LossCurve, train_curve: LossCurve) -> None:
    rules = [s.rule.name for s in test_curve.derivation]
    for rule in ("laplace_representation", "operator_valued_subordination", "two_point_equivalent"):
        assert rule in rules
    assert rules[-1] == "inverse_laplace"
    assert "one_point_equivalents" in [s.rule.name for s in train_curve.derivation]
    forcing = test_curve.terms["forcing"][0]
    assert forcing.variables == (flow.lam, flow.lam2)
    # the forcing transform is the engine's two-point equivalent divided by lam lam2
    tp = flow.two_point()
    assert forcing.ridges == (tp.kappa, tp.kappa2)
    assert D in forcing.transform.free_symbols  # the correction scalar (D/P) ...
    naive = flow.test_loss(tp.with_scale(0)).terms["forcing"][0].transform
    assert naive != forcing.transform
    assert "L_test(t) = noise + forcing + variance" in str(test_curve)


def test_from_ridge_and_bad_inputs(flow: GradientFlow, test_curve: LossCurve) -> None:
    ridge = RidgeRegression(Deterministic("Sigma", D), Gaussian("X", (P, D)), DeterministicVector("beta", D))
    assert GradientFlow.from_ridge(ridge) == flow
    spec, beta = power_law(20)
    with pytest.raises(InvalidArgument, match="times"):
        test_curve.evaluate(values(spec, beta, 40), [-1.0])
    with pytest.raises(InvalidArgument, match="P"):
        test_curve.evaluate({"Sigma": spec, "beta": beta, "sigma2": 0.1}, [1.0])
    with pytest.raises(InvalidArgument, match="sigma2"):
        test_curve.evaluate({"Sigma": spec, "beta": beta, "P": 40}, [1.0])
    with pytest.raises(InvalidArgument, match="equal length"):
        test_curve.evaluate(values(spec, beta[:-1], 40), [1.0])
    with pytest.raises(InvalidArgument, match="nodes"):
        talbot_nodes([1.0], 1)
    with pytest.raises(InvalidArgument, match="t > 0"):
        talbot_nodes([0.0])
    with pytest.raises(InvalidArgument, match="dimension"):
        GradientFlow(Deterministic("Sigma", D), Gaussian("X", (P, D)), DeterministicVector("beta", P))


# ---------------------------------------------------------------------------
# exact limits
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_initial_value(test_curve: LossCurve, train_curve: LossCurve, ratio: float) -> None:
    """w(0) = 0: L(0) = sigma^2 + beta' Sigma beta and the training loss starts at the same value."""
    spec, beta = power_law(300)
    expected = SIGMA2 + np.sum(beta**2 * spec)
    v = values(spec, beta, ratio * 300)
    assert test_curve.evaluate(v, [0.0])["total"][0] == pytest.approx(expected, rel=1e-9)
    assert train_curve.evaluate(v, [0.0])["total"][0] == pytest.approx(expected, rel=1e-9)
    # and Talbot at a small positive time approaches it
    assert test_curve.evaluate(v, [1e-7])["total"][0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("p", [150, 600])
def test_soft_limit_power_law(test_curve: LossCurve, train_curve: LossCurve, p: int) -> None:
    """t -> infinity equals the ridgeless static error of MATH.md 4.1 (computed here)."""
    spec, beta = power_law(300)
    t_inf = [1e7, 1e8]
    got = test_curve.evaluate(values(spec, beta, p), t_inf)["total"]
    expected = ridgeless_4_1(spec, beta, p, SIGMA2)
    np.testing.assert_allclose(got, expected, rtol=1e-7)
    if p == 600:  # underparameterised: any Sigma gives sigma^2 / (1 - D/P)
        assert expected == pytest.approx(SIGMA2 / (1 - 300 / 600))
    train = train_curve.evaluate(values(spec, beta, p), t_inf)["total"]
    np.testing.assert_allclose(train, max(SIGMA2 * (1 - 300 / p), 0.0), atol=1e-9)


@pytest.mark.parametrize("q", [0.25, 2.0, 4.0])
def test_soft_limit_isotropic(test_curve: LossCurve, q: float) -> None:
    """MATH.md 4.4: sigma^2/(1-q) for q < 1, s(1 - 1/q) + sigma^2 q/(q - 1) for q > 1."""
    d, s, noise = 100, 1.7, 0.3
    beta = np.full(d, np.sqrt(s / d))
    got = test_curve.evaluate(values(np.ones(d), beta, d / q, noise), [1e6])["total"][0]
    expected = noise / (1 - q) if q < 1 else s * (1 - 1 / q) + noise * q / (q - 1)
    assert got == pytest.approx(expected, rel=1e-8)


def test_kappa_on_contour_matches_engine(flow: GradientFlow, test_curve: LossCurve) -> None:
    """The vectorized Newton continuation agrees with OnePoint.evaluate at complex nodes."""
    from detequiv.derivations.laplace import _KappaSolver, _spectral

    spec, beta = power_law(60)
    for p in (30, 120):
        sp_ = _spectral(test_curve, values(spec, beta, p))
        solver = _KappaSolver(test_curve.fixed_points[0], flow.lam, sp_, "Sigma")
        lam, _ = talbot_nodes([0.1, 1000.0], 16)
        kap = solver.contour(lam, 60 / p * spec.mean())
        one = flow.two_point().left
        for i, j in ((0, 0), (0, 9), (1, 3), (1, 15)):
            ref = one.evaluate({"Sigma": spec, "D": 60, "P": p, one.lam: complex(lam[i, j])}).ridge
            assert abs(kap[i, j] - ref) <= 1e-9 * abs(ref)


# ---------------------------------------------------------------------------
# Laplace inversion accuracy
# ---------------------------------------------------------------------------


def test_talbot_sum_of_exponentials() -> None:
    """M = 16 inverts sums of exponentials (an atom at 0, rates down to 1e-6) to ~1e-10 (MATH.md 5.6)."""
    rates = np.array([0.0, 1e-6, 1e-3, 0.5, 2.0])
    amps = np.array([0.3, 1.0, 0.7, 0.2, 1.1])
    t = np.logspace(-1, 3, 9)
    exact = (amps * np.exp(-np.outer(t, rates))).sum(axis=1)
    got = inverse_laplace(lambda s: (amps / (s[..., None] + rates)).sum(axis=-1), t, 16)
    assert np.max(np.abs(got - exact) / np.abs(exact)) < 1e-9


def test_hyperbolic_window_sum_of_exponentials() -> None:
    """One hyperbolic contour inverts sums of exponentials (an atom at 0, rates 1e-6 .. 1e3, a double
    pole) at every time of its window [t0, 10 t0] to ~1e-12, and the error falls with M."""
    rates = np.array([0.0, 1e-6, 1e-3, 0.5, 2.0, 1e3])
    amps = np.array([0.3, 1.0, 0.7, 0.2, 1.1, 0.4])
    errors = {}
    for t0 in (1e-3, 0.7, 300.0):
        t = np.geomspace(t0, 10 * t0, 13)
        exact = (amps * np.exp(-np.outer(t, rates))).sum(axis=1) + t * np.exp(-0.5 * t)  # + L^-1[1/(s+.5)^2]
        for m in (8, 12, 16):
            lam, w = hyperbolic_nodes([t0], m)
            f = (amps / (lam[0][:, None] + rates)).sum(axis=1) + 1 / (lam[0] + 0.5) ** 2
            got = 2 * np.real((w[0] * np.exp(np.outer(t, lam[0]))) @ f)
            errors[t0, m] = float(np.max(np.abs(got - exact)))
        assert errors[t0, 8] > errors[t0, 12] > errors[t0, 16]
        assert errors[t0, 16] < 1e-12 * max(1.0, t0)


def test_time_windows_cover_each_time_once() -> None:
    t = np.array([3e3, 0.1, 0.99, 1.0, 1.01, 7.0, 10.0, 10.1, 50.0])
    windows = time_windows(t)
    assert sorted(np.concatenate(windows).tolist()) == list(range(t.size))
    for w in windows:
        assert t[w].max() <= 10 * t[w].min() * (1 + 1e-12)
    assert [sorted(t[w].tolist()) for w in windows] == [
        [0.1, 0.99, 1.0],
        [1.01, 7.0, 10.0, 10.1],
        [50.0],
        [3e3],
    ]
    with pytest.raises(InvalidArgument, match="nodes"):
        hyperbolic_nodes([1.0], 1)
    with pytest.raises(InvalidArgument, match="t > 0"):
        hyperbolic_nodes([0.0])


@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_windowed_contours_match_talbot(test_curve: LossCurve, train_curve: LossCurve, ratio: float) -> None:
    """The shared hyperbolic contours agree with one Talbot contour per time (an independent
    quadrature) on a power-law curve at 60 times in [0.1, 1e4], every term, to 1e-9 of the loss."""
    spec, beta = power_law(300)
    t = np.concatenate([[0.0], np.logspace(-1, 4, 60)])
    v = values(spec, beta, ratio * 300)
    for curve in (test_curve, train_curve):
        fast = curve.evaluate(v, t)
        ref = curve.evaluate(v, t, contour="talbot")
        scale = np.abs(ref["total"]) + SIGMA2
        for name in ref:
            assert np.max(np.abs(fast[name] - ref[name]) / scale) < 1e-9, name
    with pytest.raises(InvalidArgument, match="contour"):
        test_curve.evaluate(v, t, contour="parabolic")


def test_laplace_accuracy_vs_nodes(test_curve: LossCurve, train_curve: LossCurve) -> None:
    """P -> infinity: the forcing is sum beta_k^2 l_k e^{-2 t l_k} (double inversion); error falls with M."""
    spec, beta = power_law(200)
    t = np.array([0.1, 1.0, 10.0, 100.0, 1000.0])
    exact = (beta**2 * spec * np.exp(-2 * np.outer(t, spec))).sum(axis=1)
    errors = {}
    for m in (4, 8, 12, 16):
        got = test_curve.evaluate(values(spec, beta, 1e13), t, nodes=m)["forcing"]
        errors[m] = float(np.max(np.abs(got - exact) / exact))
    assert errors[4] > errors[8] > errors[12] > errors[16]
    assert errors[16] < 1e-8
    train = train_curve.evaluate(values(spec, beta, 1e13), t)["signal"]
    np.testing.assert_allclose(
        train, exact, rtol=1e-8, atol=1e-11 * exact[0]
    )  # Talbot: absolute ~1e-12 of scale


# ---------------------------------------------------------------------------
# simulation
# ---------------------------------------------------------------------------


def test_simulation_helper_matches_time_stepping() -> None:
    """The exact eigendecomposition solution equals explicit Euler integration of w' = -X'(Xw - y)/P."""
    rng = np.random.default_rng(3)
    d, p = 20, 30
    spec, beta = power_law(d)
    out = simulate_gradient_flow(spec, beta, p, 0.0, [2.0], np.random.default_rng(5))
    local = np.random.default_rng(5)
    x = local.standard_normal((p, d)) * np.sqrt(spec)
    y = x @ beta + 0.0 * local.standard_normal(p)
    w = np.zeros(d)
    dt = 1e-4
    for _ in range(20000):
        w -= dt * x.T @ (x @ w - y) / p
    assert out["L_test"][0] == pytest.approx((w - beta) @ (spec * (w - beta)), rel=1e-3)
    assert out["forcing"][0] == pytest.approx(out["L_test"][0], rel=1e-10)
    del rng


@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_against_simulation(test_curve: LossCurve, train_curve: LossCurve, ratio: float) -> None:
    """Power law k^-1.2, beta_k = k^-0.4, sigma = 0.3, D in {200, 400}: every term and the realised losses."""
    for curve in (test_curve, train_curve):
        report = check_monte_carlo(
            curve,
            (200, 400),
            rng=np.random.default_rng(11),
            ratio=ratio,
            noise=SIGMA2,
            times=(0.3, 3.0, 30.0, 300.0),
            n_samples=12,
        )
        assert report.passed, str(report)
        assert max(r.max_ratio for r in report.reports) < 1.0


@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_naive_product_rejected(flow: GradientFlow, ratio: float) -> None:
    """Without the two-point correction (scale 0) the forcing is rejected by the same simulation."""
    naive = flow.test_loss(flow.two_point().with_scale(0))
    report = check_monte_carlo(
        naive,
        (200, 400),
        rng=np.random.default_rng(11),
        ratio=ratio,
        noise=SIGMA2,
        times=(30.0, 300.0),
        n_samples=12,
        terms=["forcing"],
    )
    assert not report.passed
    assert max(r.max_ratio for r in report.reports) > 2.0


@pytest.mark.slow
@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_against_simulation_long(test_curve: LossCurve, train_curve: LossCurve, ratio: float) -> None:
    """MATH.md 5.1's run: D in {300, 600}, 48 data sets, t up to 3162, several seeds."""
    for seed in (1, 2):
        for curve in (test_curve, train_curve):
            report = check_monte_carlo(
                curve,
                (300, 600),
                rng=np.random.default_rng(seed),
                ratio=ratio,
                noise=SIGMA2,
                times=(0.1, 1.0, 10.0, 100.0, 1000.0, 3162.0),
                n_samples=48,
            )
            assert report.passed, str(report)
