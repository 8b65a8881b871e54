"""Gradient flow of linear random features on a finite data set (MATH.md 5.5).

Expected values are independent of the code under test: ``beta' Sigma beta`` at t = 0, the
ridgeless random-feature error of MATH.md 4.5 (its display written here, kappa_2 by brentq),
the sum of exponentials when N, P -> infinity, and simulations of the flow itself
(:func:`detequiv.models.gradient_flow_mc.simulate_random_feature_flow`, checked against explicit
time stepping). Two plausible wrong curves (the feature layer's correction dropped, and the
plain gradient flow with ``Sigma_hat`` only) are rejected by the same simulations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import brentq

from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian
from detequiv.derivations.laplace import LossCurve, talbot_nodes
from detequiv.errors import InvalidArgument
from detequiv.models.gradient_flow import GradientFlow, RandomFeatureGradientFlow
from detequiv.models.gradient_flow_mc import check_monte_carlo, simulate_random_feature_flow

D, N, P = sp.symbols("D N P", positive=True)
SIGMA = Deterministic("Sigma", D)
X = Gaussian("X", (P, D))
F = Gaussian("F", (N, D))
BETA = DeterministicVector("beta", D)
# MATH.md 5.5's sizes at D = 300: (N, P) in {(100, 200), (400, 150)}
SIZES = [(1 / 3, 2 / 3), (4 / 3, 0.5)]  # (N/D, P/D)
TIMES = (0.3, 3.0, 30.0, 300.0, 3000.0)


@pytest.fixture(scope="module")
def rf() -> RandomFeatureGradientFlow:
    return RandomFeatureGradientFlow(SIGMA, X, F, BETA)


@pytest.fixture(scope="module")
def curve(rf: RandomFeatureGradientFlow) -> LossCurve:
    return rf.test_loss()


@pytest.fixture(scope="module")
def no_outer(rf: RandomFeatureGradientFlow) -> LossCurve:
    return rf.test_loss(rf.two_point().without_outer())


def power_law(d: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(1, d + 1, dtype=float)
    return k**-1.2, k**-0.4


def values(spec: np.ndarray, beta: np.ndarray, n: float, p: float) -> dict[str, object]:
    return {"Sigma": spec, "beta": beta, "N": n, "P": p}


def ridgeless_rf_4_5(spec: np.ndarray, beta: np.ndarray, n: int, p: int) -> float:
    """MATH.md 4.5 at lam -> 0, written here: lam = kappa_2 (1 - n/P)(1 - n/N) -> 0 gives
    n(kappa_2) = min(N, P) when that is below D (kappa_2 = 0 and a zero error otherwise);
    E_g = (B + V_F) / (1 - gamma_1) without label noise."""
    m = min(n, p)
    if m >= spec.size:
        return 0.0
    k2 = brentq(lambda k: np.sum(spec / (spec + k)) - m, 1e-14, 1e8, xtol=1e-15, rtol=1e-15)
    r = 1 / (spec + k2)
    n1, n2 = np.sum(spec * r), np.sum(spec**2 * r**2)
    gamma1 = (n2 + (n1 - n2) ** 2 / (n - n2)) / p
    bias = k2**2 * np.sum(beta**2 * spec * r**2)
    v_f = k2 * (n1 - n2) / (n - n2) * np.sum(beta**2 * spec**2 * r**2)
    return float((bias + v_f) / (1 - gamma1))


# ---------------------------------------------------------------------------
# structure: derived from the layered engine, named steps
# ---------------------------------------------------------------------------


def test_named_steps_and_ridges(rf: RandomFeatureGradientFlow, curve: LossCurve) -> None:
    rules = [s.rule.name for s in curve.derivation]
    assert rules[0] == "laplace_representation"
    assert rules[-1] == "inverse_laplace"
    for rule in (
        "layered_chain",
        "free_factor_renormalization",
        "operator_valued_subordination",
        "one_point_chain",
        "two_point_single_layer",
        "trace_of_equivalence",
        "two_point_equivalent",
    ):
        assert rule in rules
    # the layered equivalent's own steps, in its order
    tp_rules = [s.rule.name for s in rf.two_point().derivation]
    i = rules.index(tp_rules[0])
    assert rules[i : i + len(tp_rules)] == tp_rules
    piece = curve.terms["forcing"][0]
    assert [str(k) for k in piece.ridges] == ["kappa_2", "kappa_2'"]
    assert piece.variables == (rf.lam, rf.lam2)
    names = {str(s) for s in piece.transform.free_symbols}
    assert {"kappa_1", "kappa_1'"}.isdisjoint(names)  # the intermediate ridges are eliminated
    assert {"N", "P", "D"} <= names
    assert [str(fp.symbol) for fp in curve.fixed_points] == ["kappa_2", "kappa_1", "kappa_2'", "kappa_1'"]
    assert "L_test(t) = noise + forcing" in str(curve)


def test_bad_inputs(rf: RandomFeatureGradientFlow, curve: LossCurve) -> None:
    spec, beta = power_law(20)
    with pytest.raises(InvalidArgument, match="features N"):
        curve.evaluate({"Sigma": spec, "beta": beta, "P": 40}, [1.0])
    with pytest.raises(InvalidArgument, match="columns"):
        RandomFeatureGradientFlow(SIGMA, X, Gaussian("F", (N, P)), BETA)
    with pytest.raises(InvalidArgument, match="independent"):
        RandomFeatureGradientFlow(SIGMA, X, Gaussian("X", (N, D)), BETA)
    with pytest.raises(InvalidArgument, match=r"F \(N x D\) must be Gaussian"):
        RandomFeatureGradientFlow(SIGMA, X, SIGMA, BETA)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="noise-free"):  # a noise-free curve refuses noise
        check_monte_carlo(curve, (40,), rng=np.random.default_rng(0), noise=0.1)
    with pytest.raises(InvalidArgument, match="times"):
        curve.evaluate(values(spec, beta, 10, 30), [-1.0])


def test_kappa_on_contour_matches_engine(rf: RandomFeatureGradientFlow, curve: LossCurve) -> None:
    """The vectorized Newton continuation of kappa_2 agrees with the engine's own one-point
    chain evaluated at complex nodes (a different solver)."""
    from detequiv.derivations.laplace import _KappaSolver, _spectral

    spec, beta = power_law(60)
    chain = rf.two_point().left_chain
    for n, p in ((20, 40), (80, 30)):
        v = values(spec, beta, n, p)
        solver = _KappaSolver(curve.fixed_points[0], rf.lam, _spectral(curve, v), "Sigma")
        lam, _ = talbot_nodes([0.1, 1000.0], 16)
        kap = solver.contour(lam, (60 / n + 60 / p) * spec.mean())
        for i, j in ((0, 0), (0, 9), (1, 3), (1, 15)):
            ref = chain.evaluate({"Sigma": spec, "D": 60, "N": n, "P": p, chain.lam: complex(lam[i, j])})
            assert abs(kap[i, j] - ref.ridge) <= 1e-9 * abs(ref.ridge)


# ---------------------------------------------------------------------------
# exact limits
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "p"), [(100, 200), (400, 150)])
def test_initial_value(curve: LossCurve, n: int, p: int) -> None:
    """w(0) = 0: L(0) = beta' Sigma beta exactly, and Talbot at a small time approaches it."""
    spec, beta = power_law(300)
    expected = float(np.sum(beta**2 * spec))
    v = values(spec, beta, n, p)
    assert curve.evaluate(v, [0.0])["total"][0] == pytest.approx(expected, rel=1e-9)
    assert curve.evaluate(v, [1e-7])["total"][0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("n", "p"), [(100, 200), (400, 150), (150, 100), (100, 600), (500, 400)])
def test_long_time_limit_is_ridgeless_rf(curve: LossCurve, n: int, p: int) -> None:
    """t -> infinity equals the ridgeless random-feature error of MATH.md 4.5 (computed here);
    zero when N, P >= D (the flow recovers beta)."""
    spec, beta = power_law(300)
    got = curve.evaluate(values(spec, beta, n, p), [1e7, 1e8])["total"]
    expected = ridgeless_rf_4_5(spec, beta, n, p)
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-12)


def test_isotropic_projection_limit(curve: LossCurve) -> None:
    """Sigma = I, P -> infinity: beta_hat -> projection of beta on the N feature directions,
    L(inf) = |beta|^2 (1 - N/D) for N < D (rotation invariance)."""
    d, n = 200, 50
    beta = np.full(d, np.sqrt(0.8 / d))
    got = curve.evaluate(values(np.ones(d), beta, n, 1e13), [1e8])["total"][0]
    assert got == pytest.approx(0.8 * (1 - n / d), rel=1e-8)


def test_infinite_features_and_data(curve: LossCurve) -> None:
    """N, P -> infinity: W_F, Sigma_hat -> I, Sigma and L(t) = sum_k beta_k^2 l_k e^{-2 t l_k}
    (a double inversion of the whole layered transform)."""
    spec, beta = power_law(200)
    t = np.array([0.1, 1.0, 10.0, 100.0, 1000.0])
    exact = (beta**2 * spec * np.exp(-2 * np.outer(t, spec))).sum(axis=1)
    got = curve.evaluate(values(spec, beta, 1e13, 1e13), t)["total"]
    np.testing.assert_allclose(got, exact, rtol=1e-7)


def test_windowed_contours_match_talbot(curve: LossCurve) -> None:
    """The shared hyperbolic contours agree with one Talbot contour per time (an independent
    quadrature of the same double transform) at 40 times in [0.1, 1e4]."""
    spec, beta = power_law(300)
    t = np.logspace(-1, 4, 40)
    for n, p in ((100, 200), (400, 150)):
        v = values(spec, beta, n, p)
        fast = curve.evaluate(v, t)["total"]
        ref = curve.evaluate(v, t, contour="talbot")["total"]
        assert np.max(np.abs(fast - ref) / ref) < 1e-9


# ---------------------------------------------------------------------------
# simulation
# ---------------------------------------------------------------------------


def test_simulation_helper_matches_time_stepping() -> None:
    """The eigendecomposition solution equals explicit Euler integration of
    w' = -(1/P) F X' (X F' w - y) with the same draws."""
    d, n, p = 20, 12, 30
    spec, beta = power_law(d)
    out = simulate_random_feature_flow(spec, beta, n, p, [0.0, 2.0], np.random.default_rng(5))
    local = np.random.default_rng(5)
    x = local.standard_normal((p, d)) * np.sqrt(spec)
    f = local.standard_normal((n, d)) / np.sqrt(n)
    y = x @ beta
    w = np.zeros(n)
    dt = 1e-4
    for _ in range(20000):
        w -= dt * f @ (x.T @ (x @ f.T @ w - y)) / p
    err = f.T @ w - beta
    assert out["L_test"][0] == pytest.approx(float(beta @ (spec * beta)), rel=1e-12)
    assert out["L_test"][1] == pytest.approx(float(err @ (spec * err)), rel=1e-3)
    with pytest.raises(InvalidArgument, match="n >= 1"):
        simulate_random_feature_flow(spec, beta, 0, p, [1.0], np.random.default_rng(0))


@pytest.mark.parametrize(("n_ratio", "p_ratio"), SIZES)
def test_against_simulation(curve: LossCurve, n_ratio: float, p_ratio: float) -> None:
    """D = 300, (N, P) in {(100, 200), (400, 150)}, 24 seeds: the curve and the realised loss
    at t in [0.3, 3000], tolerance 4 s.e. + 5 |DE| / min(D, N, P)."""
    report = curve.check_monte_carlo(  # through the registered witness
        (300,),
        rng=np.random.default_rng(7),
        ratio=p_ratio,
        feature_ratio=n_ratio,
        times=TIMES,
        n_samples=24,
    )
    assert report.passed, str(report)
    assert max(r.max_ratio for r in report.reports) < 0.5
    assert len(report.reports) == 2 * len(TIMES)  # forcing and the realised loss at each time


@pytest.mark.parametrize(("n_ratio", "p_ratio"), SIZES)
def test_wrong_curves_rejected(
    rf: RandomFeatureGradientFlow, no_outer: LossCurve, n_ratio: float, p_ratio: float
) -> None:
    """The same simulation rejects the curve without the feature layer's correction (the inner
    two-point function alone) and the plain gradient flow on Sigma_hat (the feature layer
    dropped), at the late times where they differ."""
    plain = GradientFlow(SIGMA, X, BETA).test_loss()
    common = dict(
        rng=np.random.default_rng(7),
        ratio=p_ratio,
        feature_ratio=n_ratio,
        times=(300.0, 3000.0),
        n_samples=24,
    )
    wrong = check_monte_carlo(no_outer, (300,), terms=["forcing"], **common)  # type: ignore[arg-type]
    assert not wrong.passed
    assert max(r.max_ratio for r in wrong.reports) > 2.0
    dropped = check_monte_carlo(
        plain,
        (300,),
        terms=["L_test"],
        simulate_model=rf,
        noise=0.0,
        **common,  # type: ignore[arg-type]
    )
    assert not dropped.passed
    assert max(r.max_ratio for r in dropped.reports) > 2.0


@pytest.mark.slow
@pytest.mark.parametrize(("n_ratio", "p_ratio"), SIZES)
def test_against_simulation_long(curve: LossCurve, n_ratio: float, p_ratio: float) -> None:
    """MATH.md 5.5's run: D = 300, 48 seeds, t from 0.1 to 3162, two master seeds; and D = 600."""
    for seed in (1, 2):
        report = check_monte_carlo(
            curve,
            (300, 600),
            rng=np.random.default_rng(seed),
            ratio=p_ratio,
            feature_ratio=n_ratio,
            times=(0.1, 1.0, 10.0, 100.0, 1000.0, 3162.0),
            n_samples=48,
        )
        assert report.passed, str(report)


# ---------------------------------------------------------------------------
# label noise: y = X beta + eps, Var eps = sigma2
# ---------------------------------------------------------------------------

SIGMA2 = sp.Symbol("sigma2", nonnegative=True)


@pytest.fixture(scope="module")
def noisy_rf() -> RandomFeatureGradientFlow:
    return RandomFeatureGradientFlow(SIGMA, X, F, BETA, SIGMA2)


@pytest.fixture(scope="module")
def noisy(noisy_rf: RandomFeatureGradientFlow) -> LossCurve:
    return noisy_rf.test_loss()


def noisy_values(
    spec: np.ndarray, beta: np.ndarray, n: float, p: float, s2: float = 0.25
) -> dict[str, object]:
    return {"Sigma": spec, "beta": beta, "N": n, "P": p, "sigma2": s2}


def ridgeless_rf_noise_4_5(
    spec: np.ndarray, beta: np.ndarray, n: int, p: int, s2: float
) -> tuple[float, float]:
    """MATH.md 4.5 at lam -> 0, written here: ``(E_g, label-noise variance)`` with
    E_g = (B + V_F + sigma2) / (1 - gamma_1), the variance sigma2 gamma_1 / (1 - gamma_1);
    n(kappa_2) = min(N, P) below D, else kappa_2 = 0 (n = n_2 = D, gamma_1 = D/P: least squares)."""
    m = min(n, p)
    if m >= spec.size:
        if n == spec.size:
            raise ValueError("N = D: gamma_1 is 0/0 at kappa_2 = 0")
        gamma1 = spec.size / p
        return s2 / (1 - gamma1), s2 * gamma1 / (1 - gamma1)
    k2 = brentq(lambda k: np.sum(spec / (spec + k)) - m, 1e-14, 1e8, xtol=1e-15, rtol=1e-15)
    r = 1 / (spec + k2)
    n1, n2 = np.sum(spec * r), np.sum(spec**2 * r**2)
    gamma1 = (n2 + (n1 - n2) ** 2 / (n - n2)) / p
    bias = k2**2 * np.sum(beta**2 * spec * r**2)
    v_f = k2 * (n1 - n2) / (n - n2) * np.sum(beta**2 * spec**2 * r**2)
    return float((bias + v_f + s2) / (1 - gamma1)), float(s2 * gamma1 / (1 - gamma1))


def test_noise_structure(noisy_rf: RandomFeatureGradientFlow, noisy: LossCurve, curve: LossCurve) -> None:
    """sigma2 is the constant; the variance is two single transforms (t and 2t, coefficients
    2 sigma2/P and -sigma2/P) in the forcing's ridge kappa_2, from the engine's named steps."""
    assert dict(noisy.constant) == {"noise": SIGMA2}
    assert list(noisy.terms) == ["forcing", "variance"]
    assert noisy.terms["forcing"] == curve.terms["forcing"]  # the noise does not touch the forcing
    first, second = noisy.terms["variance"]
    assert (first.time_factor, second.time_factor) == (1, 2)
    assert sp.simplify(first.coeff - 2 * SIGMA2 / P) == 0 and sp.simplify(second.coeff + SIGMA2 / P) == 0
    assert first.transform == second.transform
    assert first.variables == (noisy_rf.lam,) and [str(k) for k in first.ridges] == ["kappa_2"]
    names = {str(s) for s in first.transform.free_symbols}
    assert "kappa_1" not in names and {"N", "D", "lam", "kappa_2"} <= names
    rules = [s.rule.name for s in noisy.derivation]
    assert rules.count("laplace_representation") == 2 and rules[-1] == "inverse_laplace"
    i = rules.index("laplace_representation", 1)
    assert rules[i + 1 :].index("trace_concentration") < rules[i + 1 :].index("resolvent_identity")
    assert "L_test(t) = noise + forcing + variance" in str(noisy)
    # the noise-free model keeps a zero noise and no variance; negative variances are refused
    assert curve.model.noise == 0 and list(curve.terms) == ["forcing"]
    with pytest.raises(InvalidArgument, match="noise=-1"):
        RandomFeatureGradientFlow(SIGMA, X, F, BETA, -1)


@pytest.mark.parametrize(("n", "p"), [(100, 200), (400, 150), (150, 100), (100, 600), (500, 400)])
def test_noise_long_time_limit_is_ridgeless_rf(noisy: LossCurve, n: int, p: int) -> None:
    """t -> infinity (the lam -> 0 soft limit) equals MATH.md 4.5's ridgeless E_g with the
    label-noise term sigma2 gamma_1 / (1 - gamma_1) (written in this file, kappa_2 by brentq)."""
    spec, beta = power_law(300)
    out = noisy.evaluate(noisy_values(spec, beta, n, p), [1e7, 1e8])
    total, var = ridgeless_rf_noise_4_5(spec, beta, n, p, 0.25)
    np.testing.assert_allclose(out["total"], total, rtol=1e-7)
    np.testing.assert_allclose(out["variance"], var, rtol=1e-7)


def test_noise_initial_value(noisy: LossCurve) -> None:
    """w(0) = 0: the variance vanishes at t = 0 (initial-value theorem), L(0) = beta'Sigma beta + sigma2."""
    spec, beta = power_law(300)
    out = noisy.evaluate(noisy_values(spec, beta, 100, 200), [0.0])
    assert abs(out["variance"][0]) < 1e-10
    assert out["total"][0] == pytest.approx(float(np.sum(beta**2 * spec)) + 0.25, rel=1e-9)


def _f_by_hand(spec: np.ndarray, n: int, p: int, lam: float) -> float:
    """f(lam) = lam Tr(W_F Sigma (lam + W_F S^)^-1), derived here by conditioning on W_F:
    with A = W_F^1/2 Sigma W_F^1/2 it is lam Tr A (lam + A_hat)^-1
    ~ kappa_1 Tr W_F Sigma (kappa_1 + W_F Sigma)^-1
    (MATH.md 2.1, kappa_1 = lam / (1 - n/P)), and kappa_1 (kappa_1 + W_F Sigma)^-1 ~ kappa_2 R with
    kappa_1 = kappa_2 (1 - n/N) (2.4): f = kappa_2 (1 - n/N) n(kappa_2),
    lam = kappa_2 (1 - n/N)(1 - n/P); kappa_2 by brentq (real lam > 0)."""
    m = min(n, p)

    def eq(k: float) -> float:
        nk = np.sum(spec / (spec + k))
        return k * (1 - nk / n) * (1 - nk / p) - lam

    # the physical root lies where n(kappa_2) < min(N, P)
    lo = brentq(lambda k: np.sum(spec / (spec + k)) - m, 1e-14, 1e12) if m < spec.size else 1e-300
    k2 = brentq(eq, lo * (1 + 1e-12), lam + spec.sum() * (1 / n + 1 / p) * 2 + 1, xtol=1e-300, rtol=1e-15)
    nk = np.sum(spec / (spec + k2))
    return float(k2 * (1 - nk / n) * nk)


def _stehfest(transform: object, t: float, terms: int = 16) -> float:
    """Gaver-Stehfest inversion: real lam > 0 only, f(t) ~ (ln 2 / t) sum_k V_k F(k ln 2 / t)."""
    half, ln2, total = terms // 2, math.log(2), 0.0
    for k in range(1, terms + 1):
        v = 0.0
        for j in range((k + 1) // 2, min(k, half) + 1):
            v += (
                j**half
                * math.factorial(2 * j)
                / (
                    math.factorial(half - j)
                    * math.factorial(j)
                    * math.factorial(j - 1)
                    * math.factorial(k - j)
                    * math.factorial(2 * j - k)
                )
            )
        total += (-1) ** (k + half) * v * transform(k * ln2 / t)  # type: ignore[operator]
    return total * ln2 / t


def test_stehfest_helper() -> None:
    """The test's own inversion on a known pair: L^-1[1/(lam (lam + a))] = (1 - e^{-a t}) / a."""
    for t in (0.3, 3.0, 30.0):
        assert _stehfest(lambda s: 1 / (s * (s + 0.7)), t) == pytest.approx(
            -math.expm1(-0.7 * t) / 0.7, rel=1e-5
        )


@pytest.mark.parametrize(("n", "p"), [(100, 200), (400, 150)])
def test_noise_variance_by_stehfest(noisy: LossCurve, n: int, p: int) -> None:
    """At every t the variance equals (sigma2/P)[2F(t) - F(2t)] with F = L^-1[f/lam^2], f derived
    by hand in this file and inverted by Gaver-Stehfest on the real axis: a different f, a
    different fixed-point solver (brentq, real lam only) and a different inversion (measured
    agreement ~1e-6, Stehfest's own accuracy)."""
    spec, beta = power_law(300)
    times = np.array([0.3, 3.0, 30.0, 300.0, 3000.0])
    got = noisy.evaluate(noisy_values(spec, beta, n, p), times)["variance"]

    def transform(lam: float) -> float:
        return _f_by_hand(spec, n, p, lam) / lam**2

    expected = [0.25 / p * (2 * _stehfest(transform, t) - _stehfest(transform, 2 * t)) for t in times]
    np.testing.assert_allclose(got, expected, rtol=2e-5)


def test_noisy_simulation_helper() -> None:
    """With label noise (drawn after X and F): the realised loss equals explicit Euler
    integration with the same draws, and the returned variance equals the exact conditional
    mean (sigma2/P^2) ||Sigma^1/2 F' g_t(K) F X'||_F^2 with g_t(K) = K^-1 (I - expm(-tK))."""
    from scipy.linalg import expm

    d, n, p, s2 = 20, 12, 30, 0.3
    spec, beta = power_law(d)
    out = simulate_random_feature_flow(spec, beta, n, p, [0.0, 2.0], np.random.default_rng(5), noise=s2)
    local = np.random.default_rng(5)
    x = local.standard_normal((p, d)) * np.sqrt(spec)
    f = local.standard_normal((n, d)) / np.sqrt(n)
    y = x @ beta + np.sqrt(s2) * local.standard_normal(p)
    w = np.zeros(n)
    dt = 1e-4
    for _ in range(20000):
        w -= dt * f @ (x.T @ (x @ f.T @ w - y)) / p
    err = f.T @ w - beta
    assert out["L_test"][0] == pytest.approx(float(beta @ (spec * beta)) + s2, rel=1e-12)
    assert out["L_test"][1] == pytest.approx(float(err @ (spec * err)) + s2, rel=1e-3)
    assert out["variance"][0] == 0.0 and np.all(out["noise"] == s2)
    k = f @ x.T @ x @ f.T / p  # N < P: K_F is invertible
    g = np.linalg.solve(k, np.eye(n) - expm(-2.0 * k))
    m = np.sqrt(spec)[:, None] * (f.T @ g @ f @ x.T)
    assert out["variance"][1] == pytest.approx(s2 / p**2 * float(np.sum(m**2)), rel=1e-10)
    # the noise-free part is the flow on y = X beta: unchanged by the noise
    clean = simulate_random_feature_flow(spec, beta, n, p, [0.0, 2.0], np.random.default_rng(5))
    np.testing.assert_allclose(out["forcing"], clean["forcing"], rtol=1e-12)
    with pytest.raises(InvalidArgument, match="noise >= 0"):
        simulate_random_feature_flow(spec, beta, n, p, [1.0], np.random.default_rng(0), noise=-0.1)


@pytest.mark.parametrize(("n_ratio", "p_ratio"), SIZES)
def test_noise_against_simulation(
    noisy_rf: RandomFeatureGradientFlow, noisy: LossCurve, n_ratio: float, p_ratio: float
) -> None:
    """D = 300, (N, P) in {(100, 200), (400, 150)}, sigma2 = 0.25, 24 seeds: forcing, variance
    and the realised loss pass; the curve with the variance dropped and the curve whose variance
    is the ridge GradientFlow's (Sigma_hat only, its own ridge kappa) are rejected."""
    common = dict(
        rng=np.random.default_rng(7), ratio=p_ratio, feature_ratio=n_ratio, noise=0.25, n_samples=24
    )
    report = noisy.check_monte_carlo((300,), times=TIMES, **common)  # type: ignore[arg-type]
    assert report.passed, str(report)
    assert max(r.max_ratio for r in report.reports) < 0.5
    assert len(report.reports) == 3 * len(TIMES)  # forcing, variance and the realised loss

    late = (300.0, 3000.0)
    dropped = LossCurve(
        "L_test", noisy.constant, {"forcing": noisy.terms["forcing"]}, noisy.fixed_points, (), noisy_rf
    )
    wrong = check_monte_carlo(dropped, (300,), times=late, terms=["L_test"], **common)  # type: ignore[arg-type]
    assert not wrong.passed
    assert max(r.max_ratio for r in wrong.reports) > 2.0
    plain = GradientFlow(SIGMA, X, BETA, SIGMA2).test_loss()
    ridge_variance = LossCurve(
        "L_test",
        noisy.constant,
        {"forcing": noisy.terms["forcing"], "variance": plain.terms["variance"]},
        (*noisy.fixed_points, *plain.fixed_points),
        (),
        noisy_rf,
    )
    wrong = check_monte_carlo(ridge_variance, (300,), times=late, terms=["variance"], **common)  # type: ignore[arg-type]
    assert not wrong.passed
    assert max(r.max_ratio for r in wrong.reports) > 2.0
