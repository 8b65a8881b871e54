"""Sampled DMFT route (detequiv.dmft.montecarlo) against independent references.

* Square loss: the response is exact (no sampling in J), so it must equal the Marchenko-Pastur
  spectral integral ``R[k, j] = int h_{k-j}(s) dmu(s)`` (with heavy ball: the per-eigenvalue
  three-term recursion); the loss curves must match the MP spectral formulas of DMFT.md 2.4
  within the Monte Carlo error.
* Logistic regression: DMFT vs direct finite-size simulation (detequiv.dmft.simulate), GD and
  SGD, within 3 standard errors; the SGF DMFT without its Ito cross-term must be rejected by
  the same check.  Full d = 500, n = 1000 checks are marked slow.
* The population loss is checked against brute-force Monte Carlo of the teacher.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from detequiv.dmft.montecarlo import mc_relative_error, population_loss, solve_montecarlo
from detequiv.dmft.simulate import simulate
from detequiv.dmft.system import (
    SGF,
    BernoulliVisits,
    DMFTSystem,
    GaussianInit,
    Grid,
    HeavyBall,
    LinearTeacher,
    Logistic,
    LogisticTeacher,
    Ridge,
    SampleSide,
    SignTeacher,
    Square,
)
from detequiv.errors import InvalidArgument

# --------------------------------------------------------------------------- references


def mp_nodes(delta: float, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Chebyshev (2nd kind) nodes/weights of the MP law of X^T X, rows N(0, I/d), delta > 1."""
    lo, hi = (math.sqrt(delta) - 1) ** 2, (math.sqrt(delta) + 1) ** 2
    c, r = (hi + lo) / 2, (hi - lo) / 2
    i = np.arange(1, n + 1)
    x = np.cos(i * np.pi / (n + 1))
    w = np.pi / (n + 1) * np.sin(i * np.pi / (n + 1)) ** 2
    s = c + r * x
    return s, r * r / (2 * np.pi) * w / s


def spectral_reference(delta, lam, dt, steps, rho, noise_var, beta=0.0):
    """MP spectral formulas for (heavy-ball) GD on ridge regression from theta = 0.

    Per eigenvalue s the error obeys h_{k+1} = (1 + beta - dt (s + lam)) h_k - beta h_{k-1};
    a kick at step 0 has h_0 = h_{-1} = 1 (theta_{-1} = theta_0), at step j >= 1 h_j = 1,
    h_{j-1} = 0.  theta_k = (1 - h_k(s)) (A + lam)^{-1} X^T y with h from step 0.
    """
    s, w = mp_nodes(delta)
    a = 1 + beta - dt * (s + lam)

    def run(h_prev, h0):
        out = [h0]
        prev, cur = h_prev, h0
        for _ in range(steps):
            prev, cur = cur, a * cur - beta * prev
            out.append(cur)
        return np.array(out)

    h0 = run(np.ones_like(s), np.ones_like(s))
    h1 = run(np.zeros_like(s), np.ones_like(s))
    f = (1 - h0) / (s + lam)
    b = s * f - 1
    test = rho * (w * b**2).sum(1) + noise_var * (w * s * f**2).sum(1)
    noise_part = noise_var * ((w * b**2).sum(1) / delta + 1 - 1 / delta)
    train = 0.5 * (rho / delta * (w * s * b**2).sum(1) + noise_part)
    return train, test, h0 @ w, h1 @ w


def z_scores(dmft_curve, dmft_rel_err, sim_mean, sim_se, checkpoints):
    """|DMFT - sim| / combined s.e. (simulation s.e. over seeds, DMFT MC error) at the checkpoints.

    A few checkpoint times, as in the tables of DMFT.md 5.2: the maximum of |z| over a whole
    correlated curve of 20-50 points exceeds 3 far more often than a single |z| does.
    """
    k = np.asarray(checkpoints)
    se = np.sqrt(sim_se[k] ** 2 + (dmft_rel_err * dmft_curve[k]) ** 2)
    return np.abs(dmft_curve[k] - sim_mean[k]) / se


def worst_z(sol, sim, paths, checkpoints):
    """Largest z over the train and test curves."""
    err = mc_relative_error(paths)
    return max(
        float(np.max(z_scores(sol.train_loss, err, sim.train_mean, sim.train_se, checkpoints))),
        float(np.max(z_scores(sol.test_loss, err, sim.test_mean, sim.test_se, checkpoints))),
    )


def logistic_system(dt, steps, noise=None, lam=0.05):
    kwargs = {} if noise is None else {"noise": noise}
    return DMFTSystem(
        2.0,
        Grid(dt, steps),
        SampleSide(Logistic(), SignTeacher(noise=0.3)),
        Ridge(lam),
        teacher_norm=4.0,
        **kwargs,
    )


# --------------------------------------------------------------------------- square loss: exact pieces


# Relative MC tolerance of the square-loss curves at N = 20000.  Measured over 20 seeds at
# N = 6000 the final-time rms error was 2.6 % (train) / 2.3 % (test), i.e. ~1.4 sqrt(2/N)
# (the residual is a small difference of O(1) fields); 4 rms at N = 20000 is ~5 %.
_SQUARE_TOL = 4 * 1.4 * mc_relative_error(20000)


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_square_loss_matches_marchenko_pastur(beta):
    delta, lam, dt, steps, rho, nv = 2.0, 0.1, 0.1, 30, 1.0, 0.25
    weights = HeavyBall(beta, lam) if beta else Ridge(lam)
    system = DMFTSystem(
        delta, Grid(dt, steps), SampleSide(Square(), LinearTeacher(nv)), weights, teacher_norm=rho
    )
    sol = solve_montecarlo(system, paths=20000, seed=3)
    train, test, r_col0, r_col1 = spectral_reference(delta, lam, dt, steps, rho, nv, beta)
    # the response needs no sampling for the square loss: exact
    assert np.max(np.abs(sol.R[:, 0] - r_col0)) < 1e-9
    for j in range(1, steps):
        assert np.max(np.abs(sol.R[j:, j] - r_col1[: steps + 1 - j])) < 1e-9
    assert np.allclose(np.triu(sol.R, 1), 0.0)
    assert np.max(np.abs(sol.train_loss / train - 1)) < _SQUARE_TOL
    assert np.max(np.abs(sol.test_loss / test - 1)) < _SQUARE_TOL
    # the bound is not vacuous: a DMFT at the wrong ratio is far outside it
    wrong = solve_montecarlo(
        DMFTSystem(1.5, Grid(dt, steps), SampleSide(Square(), LinearTeacher(nv)), weights, teacher_norm=rho),
        paths=20000,
        seed=3,
    )
    assert np.max(np.abs(wrong.test_loss / test - 1)) > 3 * _SQUARE_TOL


def test_picard_reaches_the_marcher_fixed_point():
    system = logistic_system(0.5, 12)
    march = solve_montecarlo(system, paths=3000, seed=5)
    picard = solve_montecarlo(system, paths=3000, seed=5, method="picard", tol=1e-9)
    assert picard.iterations > 1 and picard.residual < 1e-9
    # same random numbers: the causal sweep is the exact fixed point of the Picard map
    for name in ("C", "R", "m", "train_loss", "test_loss"):
        assert np.max(np.abs(getattr(picard, name) - getattr(march, name))) < 1e-7, name


def test_seeded():
    system = logistic_system(0.5, 6)
    a = solve_montecarlo(system, paths=1000, seed=1)
    b = solve_montecarlo(system, paths=1000, seed=1)
    c = solve_montecarlo(system, paths=1000, seed=2)
    assert np.array_equal(a.C, b.C) and np.array_equal(a.train_loss, b.train_loss)
    assert not np.array_equal(a.C, c.C)


# --------------------------------------------------------------------------- population loss


@pytest.mark.parametrize("teacher", [SignTeacher(noise=0.3, flip=0.1), SignTeacher(), LogisticTeacher(0.7)])
def test_population_loss_against_brute_force(teacher):
    system = DMFTSystem(2.0, Grid(0.1, 1), SampleSide(Logistic(), teacher), teacher_norm=2.0)
    rng = np.random.default_rng(11)
    q, m, rho = 3.0, 1.2, 2.0
    size = 400_000
    ws = math.sqrt(rho) * rng.standard_normal(size)
    z = (m / rho) * ws + math.sqrt(q - m * m / rho) * rng.standard_normal(size)
    y = teacher.labels(ws, rng)
    vals = np.logaddexp(0.0, -y * z)
    ref, se = vals.mean(), vals.std() / math.sqrt(size)
    got = float(population_loss(system, q, m))
    assert abs(got - ref) < 4 * se
    # and vectorized over (q, m)
    grid = population_loss(system, np.array([q, 0.0]), np.array([m, 0.0]))
    assert grid.shape == (2,) and abs(grid[0] - got) < 1e-12 and abs(grid[1] - math.log(2)) < 1e-12


def test_population_loss_regression_is_excess_risk():
    system = DMFTSystem(2.0, Grid(0.1, 1), SampleSide(Square(), LinearTeacher(0.3)), teacher_norm=1.5)
    assert float(population_loss(system, 2.0, 0.5)) == pytest.approx(2.0 - 1.0 + 1.5)


# --------------------------------------------------------------------------- logistic vs simulation (small)


def test_logistic_gd_matches_simulation_small():
    system = logistic_system(0.5, 20)
    paths = 8000
    sol = solve_montecarlo(system, paths=paths, seed=0)
    sim = simulate(system, d=200, seeds=16, seed=1)
    # d = 200: finite-size bias is well below the seed s.e. (DMFT.md 5.2 at delta = 2)
    assert worst_z(sol, sim, paths, [2, 6, 12, 20]) < 3


def test_sgf_needs_its_ito_cross_term():
    """Exact discrete multipliers s_k = 1 + sqrt(tau/dt) xi simulated at d = 200: the DMFT with
    the Ito term agrees, the one without it is rejected by the same 3-s.e. check."""
    tau, paths = 4.0, 8000
    good = solve_montecarlo(logistic_system(0.2, 20, SGF(tau)), paths=paths, seed=0)
    bad = solve_montecarlo(logistic_system(0.2, 20, SGF(tau, ito_cross_term=False)), paths=paths, seed=0)
    sim = simulate(logistic_system(0.2, 20, SGF(tau)), d=200, seeds=32, seed=2, algorithm="multipliers")
    checkpoints = [5, 10, 15, 20]
    assert worst_z(good, sim, paths, checkpoints) < 3
    assert worst_z(bad, sim, paths, checkpoints) > 3


# --------------------------------------------------------------------------- weight law


def test_weight_law_matches_simulated_coordinates():
    system = DMFTSystem(
        2.0,
        Grid(0.5, 10),
        SampleSide(Logistic(), SignTeacher(noise=0.3)),
        Ridge(0.05),
        teacher_norm=4.0,
        init=GaussianInit(0.5),
    )
    sol = solve_montecarlo(system, paths=8000, seed=0)
    t = 5.0
    k = sol.index(t)
    draws = sol.weight_samples(t, size=200_000, seed=1)
    # internal consistency: the samples carry C[k, k]
    assert abs(draws.var() / sol.C[k, k] - 1) < 0.02
    a, b, v = sol.weight_law(t)
    assert v > 0 and a > 0 and abs(b - sol.m[k] / 4.0) < 1e-12
    # against the simulated weights pooled over coordinates (d = 300, 8 seeds):
    sim = simulate(system, d=300, seeds=8, seed=4)
    assert abs(sim.norm[:, k].mean() / sol.C[k, k] - 1) < 0.05
    assert abs(sim.m[:, k].mean() / sol.m[k] - 1) < 0.05


def test_weight_samples_use_a_custom_teacher_law():
    system = logistic_system(0.5, 4)
    sol = solve_montecarlo(system, paths=2000, seed=0)
    a, b, v = sol.weight_law(2.0)

    def rademacher(n, rng):
        return 2.0 * rng.choice([-1.0, 1.0], n)

    draws = sol.weight_samples(2.0, size=100_000, seed=0, teacher=rademacher)
    # theta = b theta* + N(0, v) with theta* = +-2: second and fourth moments of the mixture
    var = 4 * b * b + v
    fourth = 16 * b**4 + 6 * 4 * b * b * v + 3 * v * v
    assert abs(draws.var() / var - 1) < 0.02
    assert abs(np.mean(draws**4) / fourth - 1) < 0.04
    assert 3 * var * var / fourth > 1.2  # and that is visibly not the Gaussian-teacher law


# --------------------------------------------------------------------------- errors


def test_bad_arguments():
    system = logistic_system(0.5, 4)
    with pytest.raises(InvalidArgument, match="paths=1"):
        solve_montecarlo(system, paths=1)
    with pytest.raises(InvalidArgument, match="method='newton'"):
        solve_montecarlo(system, paths=100, method="newton")
    with pytest.raises(InvalidArgument, match="response_paths=500"):
        solve_montecarlo(system, paths=100, response_paths=500)
    with pytest.raises(InvalidArgument, match="mixing=0"):
        solve_montecarlo(system, paths=100, method="picard", mixing=0)
    with pytest.raises(InvalidArgument, match="max_iter=0"):
        solve_montecarlo(system, paths=100, method="picard", max_iter=0)
    with pytest.raises(InvalidArgument, match="must be a DMFTSystem"):
        solve_montecarlo("logistic")  # type: ignore[arg-type]
    sol = solve_montecarlo(system, paths=100)
    with pytest.raises(InvalidArgument, match="t=0.3 is not a grid time"):
        sol.weight_law(0.3)
    with pytest.raises(InvalidArgument, match="size=0"):
        sol.weight_samples(1.0, size=0)


# --------------------------------------------------------------------------- full checks (slow)


@pytest.mark.slow
def test_logistic_gd_matches_simulation_d500():
    """DMFT.md 5.2: d = 500, n = 1000, GD, 24 seeds, N = 16000 paths."""
    system = logistic_system(0.5, 40)
    paths = 16000
    sol = solve_montecarlo(system, paths=paths, seed=0)
    sim = simulate(system, d=500, seeds=24, seed=1)
    assert worst_z(sol, sim, paths, [4, 10, 20, 40]) < 3  # t = 2, 5, 10, 20


@pytest.mark.slow
def test_logistic_sgd_batch1_matches_simulation_d500_and_rejects_no_ito():
    """Real batch-1 SGD with replacement (tau = 2, step tau/n) at d = 500, n = 1000, 24 seeds,
    against the SGF DMFT at dt = 0.1 and the Bernoulli-visit DMFT; the SGF DMFT without its Ito
    cross-term must fail the same check."""
    paths, tau = 16000, 2.0
    sim = simulate(logistic_system(0.1, 50, SGF(tau)), d=500, seeds=24, seed=1)

    def worst(noise):
        sol = solve_montecarlo(logistic_system(0.1, 50, noise), paths=paths, seed=0)
        return worst_z(sol, sim, paths, [10, 30, 50])  # t = 1, 3, 5

    assert worst(SGF(tau)) < 3
    assert worst(BernoulliVisits(tau)) < 3
    assert worst(SGF(tau, ito_cross_term=False)) > 3


# --------------------------------------------------------------------------- three-way: exact linear route


def test_square_loss_sgf_matches_the_exact_linear_route():
    """For the square loss the exact Gaussian route (detequiv.dmft.linear, no sampling) is the
    authority; the sampled route must agree with it under SGF noise, Ito term included, and the
    sampled route without the Ito term must not."""
    from detequiv.dmft.linear import solve

    def system(noise):
        return DMFTSystem(
            2.0, Grid(0.1, 30), SampleSide(Square(), LinearTeacher(0.25)), Ridge(0.05), noise=noise
        )

    # Measured over 12 seeds at N = 20000: the largest error along the curve has rms 3.3 % (train)
    # / 3.0 % (test) under SGF noise; the tolerance is 3 rms.  Without the Ito term: ~38 % (test).
    tol = 0.10
    exact = solve(system(SGF(0.5)))
    sampled = solve_montecarlo(system(SGF(0.5)), paths=20000, seed=2)
    assert np.max(np.abs(sampled.R - exact.R)) < 0.02  # J is sampled under SGF noise
    assert np.max(np.abs(sampled.train_loss / exact.train_loss - 1)) < tol
    assert np.max(np.abs(sampled.test_loss / exact.test_loss - 1)) < tol
    no_ito = solve_montecarlo(system(SGF(0.5, ito_cross_term=False)), paths=20000, seed=2)
    assert np.max(np.abs(no_ito.test_loss / exact.test_loss - 1)) > 2 * tol
    # the same names as the exact route
    assert sampled.sample_correlation.shape == exact.sample_correlation.shape
    assert np.allclose(sampled.overlap, exact.overlap, atol=0.03)


# --------------------------------------------------------------------------- command line


def test_cli_linear_table_matches_marchenko_pastur(capsys):
    from detequiv.cli.dmft import dmft_main

    status = dmft_main(
        ["linear", "--lam", "0.1", "--dt", "0.1", "--steps", "20", "--simulate", "0", "--rows", "5"]
    )
    out = capsys.readouterr().out.splitlines()
    assert status == 0 and out[1] == "t train_dmft test_dmft"
    table = np.array([[float(v) for v in line.split()] for line in out[2:]])
    train, test, _, _ = spectral_reference(2.0, 0.1, 0.1, 20, 1.0, 0.25)
    k = np.rint(table[:, 0] / 0.1).astype(int)
    assert np.allclose(table[:, 1], train[k], rtol=1e-4) and np.allclose(table[:, 2], test[k], rtol=1e-4)


def test_cli_logistic_sgd_with_simulation_and_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    from detequiv.cli.dmft import dmft_main

    png = tmp_path / "curves.png"
    argv = [
        "logistic",
        "--sgd",
        "--tau",
        "0.7",
        "--dt",
        "0.25",
        "--steps",
        "8",
        "--paths",
        "1500",
        "--simulate",
        "30",
        "--seeds",
        "3",
        "--quiet",
        "--plot",
        str(png),
    ]
    assert dmft_main(argv) == 0
    out = capsys.readouterr().out
    assert "Monte Carlo DMFT (march, N = 1500)" in out and "SGF(tau = 0.7)" in out
    # dt n / tau = 0.25 * 60 / 0.7 is not whole: the simulation falls back to the exact multipliers
    assert "multipliers" in out and "t train_dmft train_sim train_se test_dmft test_sim test_se" in out
    assert png.stat().st_size > 1000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["logistic", "--paths", "1"], "--paths 1 is too small"),
        (["logistic", "--bernoulli"], "add --sgd"),
        (["linear", "--delta", "-1", "--simulate", "0"], "delta=-1.0 must be > 0"),
        (["logistic", "--simulate", "1"], "--simulate 1 is too small"),
    ],
)
def test_cli_bad_arguments(argv, message, capsys):
    from detequiv.cli.dmft import dmft_main

    assert dmft_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("detequiv dmft: error:") and message in err


def test_picard_reports_non_convergence_and_progress_bar(monkeypatch):
    import sys
    import types

    updates = []

    class FakeBar:
        def __init__(self, total, **kwargs):
            updates.append(("total", total))

        def set_postfix(self, **kw):
            updates.append(("postfix", tuple(kw)))

        def update(self, n):
            updates.append(("update", n))

        def close(self):
            updates.append(("close", 0))

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeBar))
    system = logistic_system(0.5, 8)
    sol = solve_montecarlo(system, paths=500, method="picard", max_iter=2, progress=True)
    assert sol.iterations == 2 and not sol.converged and sol.residual > 1e-6
    assert updates[0] == ("total", 2) and updates[-1] == ("close", 0)
    assert sum(1 for u in updates if u[0] == "update") == 2
    updates.clear()
    march = solve_montecarlo(system, paths=500, progress=True)
    assert march.converged and sum(1 for u in updates if u[0] == "update") == system.grid.size
    updates.clear()
    solve_montecarlo(system, paths=500)  # progress off by default
    assert updates == []


def test_bernoulli_visits_match_their_discrete_simulation():
    """s_k = Bernoulli(p)/p, p = dt/(tau + dt): the DMFT of exactly that discrete algorithm."""
    tau, paths = 4.0, 8000
    system = logistic_system(0.2, 20, BernoulliVisits(tau))
    sol = solve_montecarlo(system, paths=paths, seed=0)
    sim = simulate(system, d=200, seeds=32, seed=3, algorithm="multipliers")
    assert worst_z(sol, sim, paths, [5, 10, 15, 20]) < 3
    # not vacuous: plain GD on the same grid is rejected
    gd = solve_montecarlo(logistic_system(0.2, 20), paths=paths, seed=0)
    assert worst_z(gd, sim, paths, [5, 10, 15, 20]) > 3
