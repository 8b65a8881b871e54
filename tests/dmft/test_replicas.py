"""The two-replica DMFT (bias/variance over subsets of the noise) against independent sources.

* GD: the per-eigenmode recursion integrated against the Marchenko-Pastur law (written here):
  ``theta_k - theta* = b_k(S) theta* + alpha_k(S) X^T eps + q_k(S) theta_0``, three uncorrelated
  parts, so a private source moves exactly its part from the bias to the variance;
* any noise: a replica alone is the ordinary DMFT (``linear.solve``), and for a linear model
  the average over the SGD noise is the GD run (``E s_k = 1``), so the replica-averaged error
  is ``linear.solve``'s GD test loss;
* a direct simulation written here: two runs on the same data with independent multiplier
  streams (the exact finite-size counterpart of the discrete DMFT, as ``simulate``'s
  ``"multipliers"`` mode), compared within a few standard errors; the wrong replica DMFT that
  lets the replicas share the SGD noise (variance 0) is rejected.
"""

import math

import numpy as np
import pytest

from detequiv.dmft.linear import solve
from detequiv.dmft.replicas import REPLICA_SOURCES, ReplicaSolution, solve_replicas
from detequiv.dmft.system import (
    GD,
    SGF,
    BernoulliVisits,
    DMFTSystem,
    GaussianInit,
    Grid,
    HeavyBall,
    LinearTeacher,
    Logistic,
    Ridge,
    SampleSide,
    Square,
    ZeroInit,
)
from detequiv.errors import InvalidArgument

# --------------------------------------------------------------------------- references


def mp_law(delta, nodes=3000):
    """Nodes and weights of the spectral law of X^T X (rows x ~ N(0, I/d), n/d = delta)."""
    a, b = (np.sqrt(delta) - 1) ** 2, (np.sqrt(delta) + 1) ** 2
    c, r = (a + b) / 2, (b - a) / 2
    phi = (np.arange(nodes) + 0.5) * np.pi / nodes
    s = c + r * np.cos(phi)
    w = r**2 * np.sin(phi) ** 2 / (2 * np.pi * s) * np.pi / nodes
    if delta < 1:
        s, w = np.append(s, 0.0), np.append(w, 1 - delta)
    return s, w


def gd_parts(delta, dt, steps, *, lam=0.0, beta=0.0, rho=1.0, sigma2=0.0, var0=0.0):
    """Teacher, label-noise and init parts of |theta_k - theta*|^2 / d for GD / heavy ball:
    theta_k = alpha_k(S) X^T y + q_k(S) theta_0 per eigenmode s of S = X^T X."""
    s, w = mp_law(delta)
    al, al_prev = np.zeros_like(s), np.zeros_like(s)
    q, q_prev = np.ones_like(s), np.ones_like(s)
    parts = {"teacher": [], "labels": [], "init": [], "mean_b": [], "mean_q": []}
    for _ in range(steps + 1):
        parts["mean_b"].append(w @ (s * al - 1))
        parts["mean_q"].append(w @ q)
        parts["teacher"].append(rho * w @ (s * al - 1) ** 2)
        parts["labels"].append(sigma2 * w @ (s * al**2))
        parts["init"].append(var0 * w @ q**2)
        al, al_prev = al - dt * ((s + lam) * al - 1) + beta * (al - al_prev), al
        q, q_prev = q - dt * (s + lam) * q + beta * (q - q_prev), q
    return {k: np.array(v) for k, v in parts.items()}


def simulate_pair(system, d, seeds, seed, *, private):
    """Two runs per seed with the same theta* (|theta*|^2 = rho d exactly); data, labels, init and
    multipliers shared or drawn per replica. Returns per-seed arrays (seeds, K) of
    |theta_a - theta*|^2/d, (theta_a - theta*).(theta_b - theta*)/d, |theta_a - theta_b|^2/(2d)."""
    rng = np.random.default_rng(seed)
    n = int(round(system.delta * d))
    K, dt, lam, rho = system.grid.size, system.grid.dt, system.lam, system.teacher_norm
    beta = system.weight_side.beta if isinstance(system.weight_side, HeavyBall) else 0.0
    X = rng.standard_normal((seeds, 2 if "data" in private else 1, n, d)) / math.sqrt(d)
    X = np.broadcast_to(X, (seeds, 2, n, d))
    tstar = rng.standard_normal((seeds, d))
    tstar *= math.sqrt(rho * d) / np.linalg.norm(tstar, axis=1, keepdims=True)
    sigma = math.sqrt(system.sample_side.teacher.noise_var)
    eps = sigma * rng.standard_normal((seeds, 1 if "labels" not in private else 2, n))
    y = np.einsum("srnd,sd->srn", X, tstar) + eps  # (seeds, 2, n)
    var0 = system.init.variance
    theta = math.sqrt(var0) * rng.standard_normal((seeds, 1 if "init" not in private else 2, d))
    theta = np.broadcast_to(theta, (seeds, 2, d)).copy()
    prev = theta.copy()
    total, cross, half = (np.empty((seeds, K)) for _ in range(3))
    for k in range(K):
        diff = theta - tstar[:, None, :]
        total[:, k] = np.einsum("sd,sd->s", diff[:, 0], diff[:, 0]) / d
        cross[:, k] = np.einsum("sd,sd->s", diff[:, 0], diff[:, 1]) / d
        gap = theta[:, 0] - theta[:, 1]
        half[:, k] = np.einsum("sd,sd->s", gap, gap) / (2 * d)
        if k + 1 == K:
            break
        e = np.einsum("srnd,srd->srn", X, theta) - y
        s = system.noise.multipliers((seeds, 2, n), dt, rng)
        grad = lam * theta + np.einsum("srnd,srn->srd", X, s * e)
        new = theta - dt * grad + (beta * (theta - prev) if k else 0.0)
        prev, theta = theta, new
    return total, cross, half


def z_scores(sim, theory):
    mean = sim.mean(axis=0)
    se = sim.std(axis=0, ddof=1) / math.sqrt(sim.shape[0])
    return mean, se, (mean - theory) / se


def make(delta=2.0, dt=0.1, steps=40, *, lam=0.1, sigma2=0.25, noise=None, weights=None, init=None):
    return DMFTSystem(
        delta,
        Grid(dt, steps),
        SampleSide(Square(), LinearTeacher(sigma2)),
        weights if weights is not None else Ridge(lam),
        noise=noise if noise is not None else GD(),
        init=init if init is not None else ZeroInit(),
    )


# --------------------------------------------------------------------------- exact checks


@pytest.mark.parametrize("init", [ZeroInit(), GaussianInit(0.5)])
@pytest.mark.parametrize("weights", [Ridge(0.1), HeavyBall(0.4, 0.05)])
def test_gd_shared_init_has_no_variance_and_is_the_ordinary_dmft(init, weights):
    system = make(steps=120, weights=weights, init=init)
    rep = solve_replicas(system)  # private SGD noise, but GD has none
    assert isinstance(rep, ReplicaSolution) and rep.private == ("sgd_noise",)
    assert np.max(np.abs(rep.variance)) < 1e-12
    assert np.max(np.abs(rep.total - solve(system).test_loss)) < 1e-12
    beta = weights.beta if isinstance(weights, HeavyBall) else 0.0
    parts = gd_parts(2.0, 0.1, 120, lam=weights.lam, beta=beta, sigma2=0.25, var0=init.variance)
    assert np.max(np.abs(rep.total - parts["teacher"] - parts["labels"] - parts["init"])) < 1e-10


@pytest.mark.parametrize(
    ("private", "variance_parts"),
    [(("init",), ("init",)), (("labels",), ("labels",)), (("labels", "init"), ("labels", "init"))],
)
@pytest.mark.parametrize(("delta", "beta"), [(2.0, 0.0), (0.6, 0.0), (2.0, 0.4)])
def test_gd_private_labels_or_init_split_the_spectral_parts(private, variance_parts, delta, beta):
    lam, sigma2, var0, steps = 0.05, 0.3, 0.7, 150
    weights = HeavyBall(beta, lam) if beta else Ridge(lam)
    system = make(delta, steps=steps, sigma2=sigma2, weights=weights, init=GaussianInit(var0))
    rep = solve_replicas(system, private=private)
    parts = gd_parts(delta, 0.1, steps, lam=lam, beta=beta, sigma2=sigma2, var0=var0)
    variance = sum(parts[p] for p in variance_parts)
    bias = sum(parts[p] for p in ("teacher", "labels", "init") if p not in variance_parts)
    assert np.max(np.abs(rep.variance - variance)) < 1e-10
    assert np.max(np.abs(rep.mean_predictor_error - bias)) < 1e-10
    assert np.max(np.abs(rep.total - parts["teacher"] - parts["labels"] - parts["init"])) < 1e-10


@pytest.mark.parametrize("shared_init", [True, False])
@pytest.mark.parametrize(("delta", "beta"), [(2.0, 0.0), (0.6, 0.3)])
def test_gd_private_data_keeps_only_the_mean_over_data(shared_init, delta, beta):
    """Independent data sets: E_X b_k(S) = (int b_k dmu) I and E_X q_k(S) = (int q_k dmu) I, so the
    mean predictor's error is rho (int b_k dmu)^2 + [init] var0 (int q_k dmu)^2."""
    lam, sigma2, var0, steps = 0.05, 0.3, 0.7, 150
    weights = HeavyBall(beta, lam) if beta else Ridge(lam)
    system = make(delta, steps=steps, sigma2=sigma2, weights=weights, init=GaussianInit(var0))
    private = ("data",) if shared_init else ("data", "init")
    rep = solve_replicas(system, private=private)
    assert rep.private == tuple(s for s in REPLICA_SOURCES if s in {*private, "labels", "sgd_noise"})
    parts = gd_parts(delta, 0.1, steps, lam=lam, beta=beta, sigma2=sigma2, var0=var0)
    bias = system.teacher_norm * parts["mean_b"] ** 2 + (var0 * parts["mean_q"] ** 2 if shared_init else 0.0)
    assert np.max(np.abs(rep.mean_predictor_error - bias)) < 1e-10
    assert np.max(np.abs(rep.total - parts["teacher"] - parts["labels"] - parts["init"])) < 1e-10
    assert np.all(rep.residual_ab == 0)


@pytest.mark.parametrize("noise", [SGF(0.5), SGF(0.5, ito_cross_term=False), BernoulliVisits(1.0), SGF(0.8)])
@pytest.mark.parametrize("weights", [Ridge(0.1), HeavyBall(0.3, 0.1)])
def test_replica_alone_is_the_ordinary_dmft_and_its_average_is_gd(noise, weights):
    system = make(steps=100, noise=noise, weights=weights, init=GaussianInit(0.4))
    rep = solve_replicas(system)
    assert np.max(np.abs(rep.total - solve(system).test_loss)) < 1e-12
    gd = solve(make(steps=100, weights=weights, init=GaussianInit(0.4)))
    assert np.max(np.abs(rep.mean_predictor_error - gd.test_loss)) < 1e-12
    assert np.max(np.abs(rep.C_ab - gd.C)) < 1e-12
    assert rep.variance[0] == 0.0 and np.all(rep.variance[1:] > 0)
    assert np.allclose(rep.total, rep.mean_predictor_error + rep.variance, rtol=0, atol=1e-14)
    # sharing everything makes the replicas one run
    same = solve_replicas(system, private=())
    assert np.max(np.abs(same.C_ab - same.C_aa)) < 1e-12 and same.private == ()
    # an ensemble of M runs interpolates between one run and the mean predictor
    assert np.allclose(rep.ensemble_error(4), rep.total - 0.75 * rep.variance, rtol=0, atol=1e-14)


def test_private_noise_and_init_add_up():
    """Under SGF with a private init the GD average over init and noise is GD from zero init."""
    system = make(steps=60, noise=SGF(0.5), init=GaussianInit(0.6))
    rep = solve_replicas(system, private=("sgd_noise", "init"))
    gd0 = solve(make(steps=60))
    assert np.max(np.abs(rep.mean_predictor_error - gd0.test_loss)) < 1e-12
    assert rep.variance[0] == pytest.approx(0.6, abs=1e-15)


# --------------------------------------------------------------------------- simulation


def _compare(system, d, seeds, seed, private, *, tol=4.0, times=(5, 10, 20, 40)):
    rep = solve_replicas(system, private=private)
    total, cross, half = simulate_pair(system, d, seeds, seed, private=rep.private)
    idx = list(times)
    out = {}
    for name, sim, theory in (
        ("total", total, rep.total),
        ("cross", cross, rep.mean_predictor_error),
        ("half", half, rep.variance),
    ):
        mean, se, z = z_scores(sim[:, idx], theory[idx])
        # finite-d bias: measured +0.5..3 % at d = 300 (128 seeds, all |z| < 2.8); allow 3 %
        slack = np.abs(mean - theory[idx]) - tol * se - 0.03 * np.abs(theory[idx])
        assert np.all(slack < 0), (name, z, mean, theory[idx], se)
        out[name] = z
    return rep, out, (total, cross, half)


@pytest.mark.parametrize(
    ("noise", "private"),
    [
        (SGF(0.5), ("sgd_noise",)),
        (BernoulliVisits(1.0), ("sgd_noise",)),
        (SGF(0.5), ("sgd_noise", "labels")),
        (SGF(0.5), ("data", "labels", "sgd_noise")),
    ],
)
def test_simulation_of_two_runs_on_the_same_data(noise, private):
    system = make(steps=40, noise=noise)
    rep, z, (total, cross, half) = _compare(system, d=300, seeds=16, seed=11, private=private)
    # the variance is resolved, far from 0
    assert np.all(half[:, 10:].mean(axis=0) > 10 * half[:, 10:].std(axis=0, ddof=1) / math.sqrt(16))
    if private == ("sgd_noise",):
        # the wrong replica DMFT (replicas share the SGD noise: variance 0, C_ab = C_aa) is rejected
        wrong = solve_replicas(system, private=())
        assert np.all(wrong.variance == 0)
        _, _, zw = z_scores(half[:, [10, 20, 40]], wrong.variance[[10, 20, 40]])
        assert np.all(np.abs(zw) > 10), zw
        _, _, zc = z_scores(cross[:, [10, 20, 40]], wrong.mean_predictor_error[[10, 20, 40]])
        assert np.all(np.abs(zc) > 5), zc


@pytest.mark.slow
@pytest.mark.parametrize(
    ("noise", "weights", "private"),
    [
        (BernoulliVisits(2.0), HeavyBall(0.3, 0.1), ("sgd_noise", "init")),
        (SGF(1.0), Ridge(0.0), ("sgd_noise",)),
        (SGF(0.5), HeavyBall(0.3, 0.1), ("data",)),
    ],
)
def test_simulation_slow(noise, weights, private):
    system = make(steps=80, noise=noise, weights=weights, init=GaussianInit(0.5))
    _compare(system, d=400, seeds=24, seed=5, private=private, times=(10, 20, 40, 80))


# --------------------------------------------------------------------------- errors


def test_bad_arguments():
    system = make(steps=5)
    with pytest.raises(InvalidArgument, match="'weights'"):
        solve_replicas(system, private=("weights",))
    with pytest.raises(InvalidArgument, match="both shared and private"):
        solve_replicas(system, shared=("labels",), private=("labels",))
    with pytest.raises(InvalidArgument, match=r"private 'data' with shared \['sgd_noise'\]"):
        solve_replicas(system, shared=("sgd_noise",), private=("data",))
    with pytest.raises(InvalidArgument, match="tuple of source names"):
        solve_replicas(system, private=3)
    with pytest.raises(InvalidArgument, match="not a square loss"):
        solve_replicas(DMFTSystem(2.0, Grid(0.1, 5), SampleSide(Logistic(), LinearTeacher())))
    with pytest.raises(InvalidArgument, match="size=0"):
        solve_replicas(system).ensemble_error(0)
    rep = solve_replicas(system, shared=("labels",), private="init")
    assert rep.shared == ("data", "labels", "sgd_noise") and rep.private == ("init",)
    assert set(rep.shared) | set(rep.private) == set(REPLICA_SOURCES)
