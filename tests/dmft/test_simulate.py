"""Direct finite-size simulation (detequiv.dmft.simulate) against closed forms that share no code
with the package: Marchenko-Pastur spectral integrals for (heavy-ball) GD on ridge regression
(DMFT.md 2.4) and the homogenised-SGD Volterra equations for batch SGD (Paquette et al.,
DMFT.md 2.4), within 3 standard errors over seeds at a few checkpoint times."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detequiv.dmft.simulate import simulate
from detequiv.dmft.system import (
    GD,
    SGF,
    DMFTSystem,
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


def mp_nodes(delta: float, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Chebyshev (2nd kind) nodes/weights of the MP law of X^T X, rows N(0, I/d), delta > 1."""
    lo, hi = (math.sqrt(delta) - 1) ** 2, (math.sqrt(delta) + 1) ** 2
    c, r = (hi + lo) / 2, (hi - lo) / 2
    i = np.arange(1, n + 1)
    x = np.cos(i * np.pi / (n + 1))
    w = np.pi / (n + 1) * np.sin(i * np.pi / (n + 1)) ** 2
    s = c + r * x
    return s, r * r / (2 * np.pi) * w / s


def curves_from_h(h, s, w, delta, lam, rho, noise_var):
    """Train and test-excess curves of theta_k = (1 - h_k(s)) (A + lam)^{-1} X^T y."""
    f = (1 - h) / (s + lam)
    b = s * f - 1
    test = rho * (w * b**2).sum(1) + noise_var * (w * s * f**2).sum(1)
    noise_part = noise_var * ((w * b**2).sum(1) / delta + 1 - 1 / delta)
    train = 0.5 * (rho / delta * (w * s * b**2).sum(1) + noise_part)
    return train, test


def heavy_ball_reference(delta, lam, dt, steps, rho, noise_var, beta):
    s, w = mp_nodes(delta)
    a = 1 + beta - dt * (s + lam)
    h = [np.ones_like(s)]
    prev = np.ones_like(s)
    for _ in range(steps):
        prev, cur = h[-1], a * h[-1] - beta * prev
        h.append(cur)
    return curves_from_h(np.array(h), s, w, delta, lam, rho, noise_var)


def volterra_reference(delta, lam, rho, noise_var, tau, times, h=0.0025):
    """Homogenised SGD: L = L_GF + tau K2 * L, E = E_GF + 2 tau K1 * L (trapezoid rule)."""
    s, w = mp_nodes(delta)
    ts = np.arange(0.0, times[-1] + h / 2, h)
    decay = np.exp(-(s + lam) * ts[:, None])
    train_gf, test_gf = curves_from_h(decay, s, w, delta, lam, rho, noise_var)
    k2 = (w * s**2 * decay**2).sum(1) / delta
    k1 = (w * s * decay**2).sum(1)
    train, test = np.empty_like(ts), np.empty_like(ts)
    train[0], test[0] = train_gf[0], test_gf[0]
    for i in range(1, ts.size):
        wts = np.full(i + 1, h)
        wts[0] = wts[-1] = h / 2
        acc = np.sum(wts[:-1] * k2[i:0:-1] * train[:i])
        train[i] = (train_gf[i] + tau * acc) / (1 - tau * wts[-1] * k2[0])
        test[i] = test_gf[i] + 2 * tau * np.sum(wts * k1[i::-1] * train[: i + 1])
    idx = np.rint(np.asarray(times) / h).astype(int)
    return train[idx], test[idx]


def worst_z(sim, train, test, checkpoints):
    k = np.asarray(checkpoints)
    z_train = np.abs(sim.train_mean[k] - train[k]) / sim.train_se[k]
    z_test = np.abs(sim.test_mean[k] - test[k]) / sim.test_se[k]
    return float(max(z_train.max(), z_test.max()))


def square_system(dt, steps, weights, noise=None, nv=0.25):
    kwargs = {} if noise is None else {"noise": noise}
    return DMFTSystem(2.0, Grid(dt, steps), SampleSide(Square(), LinearTeacher(nv)), weights, **kwargs)


@pytest.mark.parametrize("beta", [0.0, 0.6])
def test_gd_matches_marchenko_pastur(beta):
    lam, dt, steps = 0.1, 0.1, 40
    weights = HeavyBall(beta, lam) if beta else Ridge(lam)
    sim = simulate(square_system(dt, steps, weights), d=300, seeds=12, seed=0)
    train, test = heavy_ball_reference(2.0, lam, dt, steps, 1.0, 0.25, beta)
    assert sim.train_loss.shape == (12, steps + 1) and sim.n == 600
    assert np.allclose(sim.test_loss[:, 0], 1.0)  # theta = 0 and |theta*|^2 = d exactly
    assert worst_z(sim, train, test, [5, 10, 20, 40]) < 3
    # not vacuous: the curve without momentum is rejected when beta > 0, and vice versa
    other = heavy_ball_reference(2.0, lam, dt, steps, 1.0, 0.25, 0.6 - beta)
    assert worst_z(sim, *other, [5, 10, 20, 40]) > 3


@pytest.mark.parametrize("batch", [1, 4])
def test_batch_sgd_matches_homogenised_volterra(batch):
    tau, dt, steps = 0.5, 0.1, 30
    system = square_system(dt, steps, Ridge(0.0), SGF(tau))
    sim = simulate(system, d=200, seeds=16, seed=1, batch=batch)
    assert sim.algorithm == "sgd"
    train, test = volterra_reference(2.0, 0.0, 1.0, 0.25, tau, system.grid.times)
    assert worst_z(sim, train, test, [10, 20, 30]) < 3
    # the gradient-flow curves (tau = 0) are rejected: SGD noise raises the losses by ~30 %
    gf = volterra_reference(2.0, 0.0, 1.0, 0.25, 0.0, system.grid.times)
    assert worst_z(sim, *gf, [10, 20, 30]) > 3


def test_gd_noise_multipliers_are_plain_gd():
    system = DMFTSystem(2.0, Grid(0.5, 5), SampleSide(Logistic(), SignTeacher(0.3)), Ridge(0.05))
    a = simulate(system, d=40, seeds=3, seed=9)
    b = simulate(system, d=40, seeds=3, seed=9, algorithm="multipliers")
    assert a.algorithm == "gd" and np.array_equal(a.train_loss, b.train_loss)
    c = simulate(system, d=40, seeds=3, seed=10)
    assert not np.array_equal(a.train_loss, c.train_loss)
    one = simulate(system, d=40, seeds=1, seed=9)
    assert np.all(np.isinf(one.train_se))


def test_bad_arguments():
    system = square_system(0.1, 5, Ridge(0.1))
    with pytest.raises(InvalidArgument, match="d=1"):
        simulate(system, d=1)
    with pytest.raises(InvalidArgument, match="algorithm='adam'"):
        simulate(system, d=10, algorithm="adam")
    with pytest.raises(InvalidArgument, match="tau > 0"):
        simulate(system, d=10, algorithm="sgd")
    with pytest.raises(InvalidArgument, match="whole number of SGD steps"):
        simulate(square_system(0.1, 5, Ridge(0.1), SGF(0.3)), d=7)
    with pytest.raises(InvalidArgument, match="heavy ball"):
        simulate(square_system(0.1, 5, HeavyBall(0.5), SGF(0.5)), d=10)
    with pytest.raises(InvalidArgument, match="seeds=0"):
        simulate(square_system(0.1, 5, Ridge(0.1), GD()), d=10, seeds=0)
