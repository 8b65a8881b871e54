"""The exact linear DMFT against independent sources.

* GD / heavy ball, any init: the per-eigenmode recursion integrated against the
  Marchenko-Pastur law by quadrature (written here, DMFT.md 2.4) -- exact at every dt;
* gradient flow: the engine's resolvent-derived curves (GradientFlow, MATH.md conventions,
  t_MATH = delta t) as dt -> 0;
* SGF: the engine's continuous-time multi-pass SGD equivalent (multipass_sgd_de) and the
  homogenised-SGD Volterra equation solved here; error O(dt), and the DMFT without the Ito
  cross-term is rejected;
* a naive matrix-form Picard solver of DMFT.md 2.2 written here;
* direct simulation of the finite system (GD and batch-1 SGD).
"""

import numpy as np
import pytest
import sympy as sp

from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian
from detequiv.dmft.linear import DMFTSolution, solve, to_math_conventions
from detequiv.dmft.system import (
    SGF,
    BernoulliVisits,
    CustomLoss,
    DMFTSystem,
    GaussianInit,
    Grid,
    HeavyBall,
    LinearTeacher,
    Logistic,
    Ridge,
    SampleSide,
    SignTeacher,
    Square,
)
from detequiv.errors import InvalidArgument
from detequiv.models.gradient_flow import GradientFlow
from detequiv.models.sgd import multipass_sgd_de

# --------------------------------------------------------------------------- references


def mp_law(delta, nodes=3000):
    """Nodes and weights of the spectral law of X^T X, rows x ~ N(0, I/d), n/d = delta:
    density sqrt((b - s)(s - a)) / (2 pi s) on [(sqrt(delta) -+ 1)^2], atom 1 - delta at 0."""
    a, b = (np.sqrt(delta) - 1) ** 2, (np.sqrt(delta) + 1) ** 2
    c, r = (a + b) / 2, (b - a) / 2
    phi = (np.arange(nodes) + 0.5) * np.pi / nodes  # s = c + r cos(phi): smooth periodic integrand
    s = c + r * np.cos(phi)
    w = r**2 * np.sin(phi) ** 2 / (2 * np.pi * s) * np.pi / nodes
    if delta < 1:
        s, w = np.append(s, 0.0), np.append(w, 1 - delta)
    return s, w


def spectral_curves(delta, dt, steps, *, lam=0.0, beta=0.0, rho=1.0, sigma2=0.0, var0=0.0):
    """Train and test loss of GD / heavy ball per eigenmode: theta_k = alpha_k(S) X^T y + q_k(S) theta_0
    with alpha_{k+1} = alpha_k - dt((s + lam) alpha_k - 1) + beta (alpha_k - alpha_{k-1}) (same for q)."""
    s, w = mp_law(delta)
    al, al_prev = np.zeros_like(s), np.zeros_like(s)
    q, q_prev = np.ones_like(s), np.ones_like(s)
    pos = s > 0
    train, test = [], []
    for _ in range(steps + 1):
        b = s * al - 1
        test.append(rho * w @ b**2 + sigma2 * w @ (s * al**2) + var0 * w @ q**2)
        noise = (w[pos] @ b[pos] ** 2) / delta + max(0.0, 1 - 1 / delta)
        train.append(0.5 * ((rho / delta) * w @ (s * b**2) + sigma2 * noise + var0 / delta * w @ (s * q**2)))
        al, al_prev = al - dt * ((s + lam) * al - 1) + beta * (al - al_prev), al
        q, q_prev = q - dt * (s + lam) * q + beta * (q - q_prev), q
    return np.array(train), np.array(test)


def volterra(delta, tau, tmax, h, *, rho=1.0, sigma2=0.0):
    """Homogenised SGD (DMFT.md 2.4), lam = 0, delta > 1, trapezoid rule on step h:
    L = L_GF + tau K2 * L, E = E_GF + 2 tau K1 * L."""
    s, w = mp_law(delta, 1500)
    t = np.arange(int(round(tmax / h)) + 1) * h
    e1 = np.exp(-s[None, :] * t[:, None])
    f = (1 - e1) / s
    b = s * f - 1
    l_gf = 0.5 * ((rho / delta) * (b**2 * s) @ w + sigma2 * ((b**2) @ w / delta + 1 - 1 / delta))
    e_gf = rho * (b**2) @ w + sigma2 * (s * f**2) @ w
    k2 = (e1**2 * s**2) @ w / delta
    k1 = (e1**2 * s) @ w
    lv = np.zeros(t.size)
    lv[0] = l_gf[0]
    for i in range(1, t.size):
        acc = l_gf[i] + tau * h * (0.5 * k2[i] * lv[0] + k2[i - 1 : 0 : -1] @ lv[1:i])
        lv[i] = acc / (1 - 0.5 * tau * h * k2[0])
    ev = e_gf.copy()
    for i in range(1, t.size):
        ev[i] += 2 * tau * h * (0.5 * k1[i] * lv[0] + k1[i - 1 : 0 : -1] @ lv[1:i] + 0.5 * k1[0] * lv[i])
    return t, lv, ev


def naive_dmft(delta, dt, steps, *, lam, beta, rho, sigma2, var0, v, ito):
    """DMFT.md 2.2 in matrix form, Picard iteration to the fixed point (square loss)."""
    n = steps + 1
    eye = np.eye(n)
    shift = np.eye(n, k=-1)
    R = eye.copy()
    for _ in range(n + 1):
        L = (R @ shift) * np.tri(n, k=-1)  # L[k, j] = R[k, j + 1], j < k
        A = np.linalg.inv(eye + dt * L)
        M = eye.copy()
        for k in range(n - 1):
            M[k + 1, k] -= 1 + (beta if k else 0.0) - dt * lam
            if k:
                M[k + 1, k - 1] += beta
            M[k + 1, : k + 1] += dt * delta * A[k, : k + 1]
        R = np.linalg.inv(M)
    vv = shift @ (-A.sum(axis=1))
    m = -dt * delta * rho * R @ vv
    K = dt * A @ L
    C = np.zeros((n, n))
    for _ in range(n + 1):
        sz = C - m[:, None] - m[None, :] + rho + sigma2
        ca = A @ sz @ A.T
        c = np.zeros(n)
        for k in range(n):
            c[k] = ca[k, k] + v * (K[k, :k] ** 2) @ c[:k]
        ce = ca + v * K @ np.diag(c) @ K.T
        cg = ce + v * np.diag(c) - ito * v * (K @ np.diag(c) + np.diag(c) @ K.T)
        B = var0 * np.outer(eye[0], eye[0]) + (dt * delta) ** 2 * rho * np.outer(vv, vv)
        B += dt**2 * delta * shift @ cg @ shift.T
        C = R @ B @ R.T
    return 0.5 * c, np.diag(C) - 2 * m + rho, C, R, m


def system(delta, dt, steps, *, lam=0.0, sigma2=0.25, rho=1.0, noise=None, weights=None, init=None):
    kw = {}
    if noise is not None:
        kw["noise"] = noise
    if init is not None:
        kw["init"] = init
    return DMFTSystem(
        delta,
        Grid(dt, steps),
        SampleSide(Square(), LinearTeacher(sigma2)),
        weight_side=weights if weights is not None else Ridge(lam),
        teacher_norm=rho,
        **kw,
    )


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a) / np.asarray(b) - 1)))


# --------------------------------------------------------------------------- GD / heavy ball: exact


@pytest.mark.parametrize(
    ("delta", "lam", "beta", "rho", "sigma2", "var0"),
    [
        (2.0, 0.0, 0.0, 1.0, 0.25, 0.0),
        (2.0, 0.1, 0.0, 1.0, 0.25, 0.0),
        (0.8, 0.1, 0.0, 1.0, 0.25, 0.0),
        (0.5, 0.0, 0.0, 2.0, 0.5, 0.0),
        (3.0, 0.05, 0.0, 1.0, 0.1, 0.7),
        (2.0, 0.1, 0.5, 1.0, 0.25, 0.0),
        (0.5, 0.0, 0.3, 1.0, 0.25, 0.3),
    ],
)
def test_gd_and_heavy_ball_match_marchenko_pastur(delta, lam, beta, rho, sigma2, var0):
    dt, steps = 0.1, 200
    weights = HeavyBall(beta, lam) if beta else Ridge(lam)
    init = GaussianInit(var0) if var0 else None
    sol = solve(system(delta, dt, steps, sigma2=sigma2, rho=rho, weights=weights, init=init))
    train, test = spectral_curves(delta, dt, steps, lam=lam, beta=beta, rho=rho, sigma2=sigma2, var0=var0)
    assert rel(sol.train_loss, train) < 1e-10
    assert rel(sol.test_loss, test) < 1e-10


@pytest.mark.parametrize(("delta", "lam"), [(2.0, 0.0), (0.8, 0.1)])
def test_response_is_the_marchenko_pastur_resolvent_and_toeplitz(delta, lam):
    dt, steps = 0.1, 120
    sol = solve(system(delta, dt, steps, lam=lam))
    s, w = mp_law(delta)
    k = np.arange(steps + 1)
    expected = (1 - dt * (s[None, :] + lam)) ** k[:, None] @ w
    assert np.max(np.abs(sol.R[:, 0] - expected)) < 1e-12
    # time-translation invariance: R[k, j] = R[k - j, 0]
    for j in (1, 17, 60):
        assert np.max(np.abs(sol.R[j:, j] - sol.R[: steps + 1 - j, 0])) < 1e-12
    assert np.all(np.triu(sol.R, 1) == 0) and np.all(np.diag(sol.R) == 1)
    assert np.allclose(sol.C, sol.C.T, rtol=0, atol=0)


def test_response_generating_function_is_the_engine_resolvent():
    """DMFT.md 2.4: sum_k R[k, 0] z^k = int dmu(s) / (1 - z (1 - dt (s + lam))) = g(-w) / (z dt) with
    w = (1 - z (1 - dt lam)) / (z dt); the engine's one-point equivalent of lam (lam + X^T X / P)^-1
    (X^T X / P = S / delta) gives g(-w) = T(w / delta) / w. Coefficients by FFT on |z| = 0.6."""
    from detequiv.derivations.derive import derive
    from detequiv.derivations.expressions import resolvent
    from detequiv.models.ridge import sample_covariance

    delta, dt, lam = 2.0, 0.1, 0.1
    D, P = sp.symbols("D P", positive=True)
    ridge = sp.Symbol("lam")
    onepoint = derive(
        ridge * resolvent(sample_covariance(Deterministic("Sigma", D), Gaussian("X", (P, D))), ridge)
    )
    d = 10
    radius, nodes = 0.6, 64
    z = radius * np.exp(2j * np.pi * np.arange(nodes) / nodes)
    F = np.empty(nodes, complex)
    for j in range(nodes // 2 + 1):  # F(conj z) = conj F(z)
        w = (1 - z[j] * (1 - dt * lam)) / (z[j] * dt)
        trace = onepoint.evaluate(
            {"Sigma": np.ones(d), "P": int(delta * d), "D": d, "lam": w / delta}
        ).trace()
        F[j] = trace / w / (z[j] * dt)
        F[-j] = np.conj(F[j])
    coefficients = (np.fft.fft(F) / nodes).real / radius ** np.arange(nodes)
    sol = solve(system(delta, dt, 12, lam=lam))
    assert np.max(np.abs(coefficients[:13] - sol.R[:, 0])) < 1e-12


# --------------------------------------------------------------------------- engine: gradient flow


@pytest.fixture(scope="module")
def engine_gf():
    D, P = sp.symbols("D P", positive=True)
    flow = GradientFlow(Deterministic("Sigma", D), Gaussian("X", (P, D)), DeterministicVector("beta", D))
    return flow.test_loss(), flow.training_loss()


def test_engine_gradient_flow_is_the_continuous_limit(engine_gf):
    """GD-DMFT -> GradientFlow (t_MATH = delta t, test + sigma^2, 2 train): error O(dt), and the
    Richardson extrapolation from dt = 0.02, 0.01 meets the engine to < 1e-4."""
    delta, sigma2 = 2.0, 0.25
    test_curve, train_curve = engine_gf
    d = 10
    values = {"Sigma": np.ones(d), "beta": np.ones(d) / np.sqrt(d), "P": int(delta * d), "sigma2": sigma2}
    ts = np.array([0.4, 1.0, 2.0, 3.0, 5.0])
    eng_test = test_curve.evaluate(values, delta * ts)["total"]
    eng_train = train_curve.evaluate(values, delta * ts)["total"]
    # the engine vs the continuous MP closed form (an independent check of the conversion)
    s, w = mp_law(delta)
    f = (1 - np.exp(-s[None, :] * ts[:, None])) / s
    b = s * f - 1
    mp_test = b**2 @ w + sigma2 * (s * f**2) @ w + sigma2
    mp_train = (s * b**2) @ w / delta + sigma2 * ((b**2) @ w / delta + 1 - 1 / delta)
    assert rel(eng_test, mp_test) < 1e-8 and rel(eng_train, mp_train) < 1e-8
    errors, curves = [], []
    for dt in (0.04, 0.02, 0.01):
        out = to_math_conventions(solve(system(delta, dt, int(round(5.0 / dt)), sigma2=sigma2)))
        idx = np.round(ts / dt).astype(int)
        assert np.allclose(out["times"][idx], delta * ts)
        curves.append((out["test_loss"][idx], out["train_loss"][idx]))
        errors.append((rel(curves[-1][0], eng_test), rel(curves[-1][1], eng_train)))
    for (e_test, e_train), (h_test, h_train) in zip(errors, errors[1:], strict=False):
        assert 1.8 < e_test / h_test < 2.2 and 1.8 < e_train / h_train < 2.2
    assert errors[-1][0] < 5e-3
    extrapolated = [2 * curves[2][i] - curves[1][i] for i in range(2)]
    assert rel(extrapolated[0], eng_test) < 1e-4 and rel(extrapolated[1], eng_train) < 1e-4


def test_richardson_extrapolated_gd_meets_engine_gradient_flow_to_1e_8(engine_gf):
    """GD at dt = 0.02 ... 0.0025 (horizon t = 2), Richardson table on the smooth dt-expansion
    of (1 - dt s)^(t/dt): three eliminations reach the engine's resolvent curves to ~4e-9."""
    delta, sigma2 = 2.0, 0.25
    test_curve, train_curve = engine_gf
    d = 10
    values = {"Sigma": np.ones(d), "beta": np.ones(d) / np.sqrt(d), "P": int(delta * d), "sigma2": sigma2}
    ts = np.array([0.4, 1.0, 2.0])
    ref = np.concatenate(
        [test_curve.evaluate(values, delta * ts)["total"], train_curve.evaluate(values, delta * ts)["total"]]
    )
    table = []
    for dt in (0.02, 0.01, 0.005, 0.0025):
        out = to_math_conventions(solve(system(delta, dt, int(round(2.0 / dt)), sigma2=sigma2)))
        idx = np.round(ts / dt).astype(int)
        table.append(np.concatenate([out["test_loss"][idx], out["train_loss"][idx]]))
    errors = [rel(table[-1], ref)]
    for j in (1, 2, 3):
        table = [(2**j * fine - coarse) / (2**j - 1) for coarse, fine in zip(table, table[1:], strict=False)]
        errors.append(rel(table[-1], ref))
    assert errors[0] > 1e-3  # the raw GD curve is not the flow
    assert all(b < a / 4 for a, b in zip(errors, errors[1:], strict=False))
    assert errors[-1] < 2e-8


# --------------------------------------------------------------------------- SGF


@pytest.fixture(scope="module")
def sgf_reference():
    delta, tau, sigma2, tmax = 2.0, 0.5, 0.25, 5.0
    ts = np.array([0.5, 1.0, 2.0, 3.0, 5.0])
    d = 10
    eng_test, eng_train = multipass_sgd_de(
        np.ones(d), np.ones(d) / np.sqrt(d), int(delta * d), delta * ts, eta=tau / d, batch=1, noise=sigma2
    )
    h = 0.0025
    t, lv, ev = volterra(delta, tau, tmax, h, sigma2=sigma2)
    idx = np.round(ts / h).astype(int)
    return {
        "delta": delta, "tau": tau, "sigma2": sigma2, "ts": ts,
        "test": eng_test - sigma2, "train": eng_train / 2, "volterra": (lv[idx], ev[idx]),
    }  # fmt: skip


def test_engine_multipass_de_is_the_homogenised_volterra(sgf_reference):
    ref = sgf_reference
    lv, ev = ref["volterra"]
    assert rel(ref["train"], lv) < 3e-5 and rel(ref["test"], ev) < 3e-5


def _sgf_errors(ref, ito, dts=(0.1, 0.05, 0.025)):
    out = []
    for dt in dts:
        noise = SGF(ref["tau"], ito_cross_term=ito)
        sol = solve(system(ref["delta"], dt, int(round(5.0 / dt)), sigma2=ref["sigma2"], noise=noise))
        idx = np.round(ref["ts"] / dt).astype(int)
        out.append((sol.train_loss[idx], sol.test_loss[idx]))
    return out


def test_sgf_converges_at_rate_dt_to_homogenised_sgd(sgf_reference):
    ref = sgf_reference
    curves = _sgf_errors(ref, True)
    errs = [(rel(tr, ref["train"]), rel(te, ref["test"])) for tr, te in curves]
    # DMFT.md 5.1: 6.6 / 2.8 / 1.3 % (train), 5.2 / 2.2 / 1.0 % (test)
    assert errs[-1][0] < 0.02 and errs[-1][1] < 0.015
    for big, small in zip(errs, errs[1:], strict=False):
        assert 1.7 < big[0] / small[0] < 2.6 and 1.7 < big[1] / small[1] < 2.6
    rich = [2 * curves[2][i] - curves[1][i] for i in range(2)]
    assert rel(rich[0], ref["train"]) < 5e-3 and rel(rich[1], ref["test"]) < 5e-3


def test_sgf_without_ito_cross_term_is_rejected(sgf_reference):
    ref = sgf_reference
    right = _sgf_errors(ref, True)
    wrong = _sgf_errors(ref, False)
    for (tr_ok, te_ok), (tr_bad, te_bad) in zip(right, wrong, strict=False):
        e_ok = max(rel(tr_ok, ref["train"]), rel(te_ok, ref["test"]))
        e_bad = min(rel(tr_bad, ref["train"]), rel(te_bad, ref["test"]))
        assert e_bad > 0.2 and e_bad > 3 * e_ok
    # and it does not go away as dt -> 0
    assert rel(wrong[-1][1], ref["test"]) > 0.35


def test_bernoulli_visits_have_the_sgf_second_moments():
    a = solve(system(2.0, 0.1, 40, noise=SGF(0.5)))
    b = solve(system(2.0, 0.1, 40, noise=BernoulliVisits(0.5)))
    assert np.allclose(a.C, b.C, rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------- naive solver


@pytest.mark.parametrize("ito", [True, False])
def test_march_matches_naive_matrix_picard(ito):
    delta, dt, steps, lam, beta, rho, sigma2, var0, tau = 1.5, 0.2, 30, 0.1, 0.4, 1.3, 0.2, 0.5, 0.3
    sol = solve(
        system(
            delta, dt, steps, lam=lam, sigma2=sigma2, rho=rho, weights=HeavyBall(beta, lam),
            noise=SGF(tau, ito_cross_term=ito), init=GaussianInit(var0),
        )
    )  # fmt: skip
    train, test, C, R, m = naive_dmft(
        delta, dt, steps, lam=lam, beta=beta, rho=rho, sigma2=sigma2, var0=var0, v=tau / dt, ito=float(ito)
    )
    assert rel(sol.train_loss, train) < 1e-11 and rel(sol.test_loss, test) < 1e-11
    assert np.max(np.abs(sol.C - C)) < 1e-11 and np.max(np.abs(sol.R - R)) < 1e-11
    assert np.max(np.abs(sol.m - m)) < 1e-11


def test_scaled_square_loss_is_a_time_rescaling():
    """l = a (r - y)^2 / 2 with ridge a lam is GD on the square loss with step a dt (losses times a)."""
    r, y = sp.symbols("r y")
    a = 3.0
    scaled = DMFTSystem(
        2.0, Grid(0.05, 30), SampleSide(CustomLoss(a * (r - y) ** 2 / 2, r, y), LinearTeacher(0.25)),
        weight_side=Ridge(a * 0.1),
    )  # fmt: skip
    sol = solve(scaled)
    train, test = spectral_curves(2.0, a * 0.05, 30, lam=0.1, sigma2=0.25)
    assert rel(sol.test_loss, test) < 1e-10 and rel(sol.train_loss, a * train) < 1e-10


# --------------------------------------------------------------------------- simulation


def _simulate(n, d, dt, steps, *, sigma2, rho, seeds, tau=0.0, rng):
    """Finite system in the DMFT.md 1 convention; tau > 0: batch-1 SGD with replacement,
    step gamma = tau / n (one sample per step, multiplier n)."""
    trains, tests = [], []
    for _ in range(seeds):
        x = rng.standard_normal((n, d)) / np.sqrt(d)
        star = rng.standard_normal(d)
        star *= np.sqrt(rho * d) / np.linalg.norm(star)
        yv = x @ star + np.sqrt(sigma2) * rng.standard_normal(n)
        theta = np.zeros(d)
        tr, te = [], []
        if tau == 0.0:
            for _ in range(steps + 1):
                res = x @ theta - yv
                tr.append(0.5 * np.mean(res**2))
                te.append(np.sum((theta - star) ** 2) / d)
                theta -= dt * (x.T @ res)
        else:
            gamma = tau / n
            per = int(round(dt / gamma))
            picks = rng.integers(0, n, size=steps * per)
            for k in range(steps + 1):
                res = x @ theta - yv
                tr.append(0.5 * np.mean(res**2))
                te.append(np.sum((theta - star) ** 2) / d)
                if k < steps:
                    for mu in picks[k * per : (k + 1) * per]:
                        theta -= gamma * n * x[mu] * (x[mu] @ theta - yv[mu])
        trains.append(tr)
        tests.append(te)
    return np.array(trains), np.array(tests)


def test_gd_matches_finite_simulation(rng):
    delta, dt, steps = 2.0, 0.1, 60
    sol = solve(system(delta, dt, steps, sigma2=0.25))
    train, test = _simulate(800, 400, dt, steps, sigma2=0.25, rho=1.0, seeds=6, rng=rng)
    for sim, theory in ((train, sol.train_loss), (test, sol.test_loss)):
        mean, sem = sim.mean(axis=0), sim.std(axis=0, ddof=1) / np.sqrt(sim.shape[0])
        k = [10, 30, 60]
        assert np.all(np.abs(mean[k] - theory[k]) < 3 * sem[k] + 0.03 * theory[k])


def test_batch_one_sgd_matches_sgf_dmft(rng):
    """Real batch-1 SGD (d = 300, n = 600, tau = 0.5) vs the Richardson-extrapolated SGF DMFT."""
    delta, tau, sigma2 = 2.0, 0.5, 0.25
    coarse = solve(system(delta, 0.05, 60, sigma2=sigma2, noise=SGF(tau)))
    fine = solve(system(delta, 0.025, 120, sigma2=sigma2, noise=SGF(tau)))
    theory_train = 2 * fine.train_loss[::2] - coarse.train_loss
    theory_test = 2 * fine.test_loss[::2] - coarse.test_loss
    gd = solve(system(delta, 0.05, 60, sigma2=sigma2))
    train, test = _simulate(600, 300, 0.05, 60, sigma2=sigma2, rho=1.0, seeds=8, tau=tau, rng=rng)
    k = [20, 60]
    for sim, theory, base in ((train, theory_train, gd.train_loss), (test, theory_test, gd.test_loss)):
        mean, sem = sim.mean(axis=0), sim.std(axis=0, ddof=1) / np.sqrt(sim.shape[0])
        assert np.all(np.abs(mean[k] - theory[k]) < 3 * sem[k] + 0.03 * theory[k])
        assert np.all(mean[k] > base[k] * 1.1)  # SGD noise is visible: the GD curve is rejected


# --------------------------------------------------------------------------- API


def test_solution_fields_and_errors():
    sol = solve(system(2.0, 0.1, 10, sigma2=0.0))
    assert isinstance(sol, DMFTSolution)
    assert sol.times.shape == sol.train_loss.shape == sol.m.shape == (11,)
    assert np.allclose(sol.norm, np.diag(sol.C))
    assert sol.overlap[0] == 0.0 and 0 < sol.overlap[-1] <= 1
    with pytest.raises(InvalidArgument, match="teacher=SignTeacher"):
        solve(DMFTSystem(2.0, Grid(0.1, 5), SampleSide(Square(), SignTeacher())))
    with pytest.raises(InvalidArgument, match="loss=Logistic"):
        solve(DMFTSystem(2.0, Grid(0.1, 5), SampleSide(Logistic(), LinearTeacher())))
    with pytest.raises(InvalidArgument, match="system=3"):
        solve(3)
