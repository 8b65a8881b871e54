"""Benchmark: the online-SGD loss curve (MATH.md 5.2) from a spectrum.

Prints, in one run:

1. the exact per-mode recursion for T = 1e4 steps and D = 1e4 modes (issue 5 target:
   <= 2 s), with the Volterra form (F_t, K_tau, then direct O(T^2) convolution) on the
   same inputs as the baseline, and their largest relative difference;
2. the theory against the simulation it predicts (D = 300, T = 3000, 200 SGD chains):
   wall times, their ratio, the simulation's relative standard error at the end, and
   the ratio extrapolated to a simulation s.e. of 1e-3 (s.e. ~ 1/sqrt(chains));
3. multi-pass SGD (MATH.md 5.4): the closed Volterra system against the exact moment
   recursion on the same data set (time and accuracy);
4. the random-feature DE (MATH.md 5.3) against 30 conditional curves.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_sgd.py [T] [D]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np

from detequiv.models.sgd import (
    MultiPassSGD,
    OnlineSGD,
    random_features_online_sgd,
    random_features_online_sgd_de,
)
from detequiv.models.sgd_mc import run_online_sgd


def _best(fn: Callable[[], np.ndarray], repeat: int = 3) -> tuple[float, np.ndarray]:
    best, out = float("inf"), np.empty(0)
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(steps: int = 10_000, d: int = 10_000) -> None:
    k = np.arange(1, d + 1, dtype=float)
    model = OnlineSGD(k**-1.2, k**-0.4, eta=0.2, batch=1, noise=0.04)
    t_rec, rec = _best(lambda: model.loss_curve(steps))
    t_vol, vol = _best(lambda: model.loss_curve(steps, method="volterra"), repeat=1)
    diff = float(np.max(np.abs(rec - vol) / vol))
    print(f"online SGD curve, T={steps}, D={d}, eta=0.2, B=1, lambda_k = k^-1.2")
    print(f"  recursion (O(T D))         {t_rec:8.3f} s   (target <= 2 s)")
    print(
        f"  Volterra (O(T^2 + T D))    {t_vol:8.3f} s   ratio {t_vol / t_rec:6.1f}x   max rel diff {diff:.1e}"
    )
    print(f"  L_T = {rec[-1]:.6f}, floor L_inf = {model.floor():.6f}, Sum K = {model.kernel_sum():.4f}")

    d2, t2, runs = 300, 3000, 200
    k2 = np.arange(1, d2 + 1, dtype=float)
    small = OnlineSGD(k2**-1.5, k2**-0.25, eta=0.2, batch=1, noise=0.04)
    t_th, curve = _best(lambda: small.loss_curve(t2))
    t0 = time.perf_counter()
    sim = run_online_sgd(small, [t2], n_runs=runs, rng=np.random.default_rng(0))
    t_sim = time.perf_counter() - t0
    rel_se = float(sim.se[-1] / sim.mean[-1])
    z = float((sim.mean[-1] - curve[-1]) / sim.se[-1])
    print(f"theory vs simulation, D={d2}, T={t2}, {runs} chains")
    print(
        f"  theory {t_th:.4f} s, simulation {t_sim:.2f} s, ratio {t_sim / t_th:8.0f}x; "
        f"simulation rel. s.e. {rel_se:.1e} (z = {z:+.2f}) vs theory exact to ~1e-15"
    )
    # s.e. ~ 1/sqrt(runs): chains needed for a 1e-3 relative s.e., extrapolated
    factor = (rel_se / 1e-3) ** 2
    print(
        f"  at equal accuracy 1e-3 (extrapolated, {factor:.0f}x the chains): "
        f"ratio {factor * t_sim / t_th:.1e}x"
    )

    # multi-pass SGD: closed Volterra system vs the exact moment recursion on one data set
    rng = np.random.default_rng(0)
    d3, p3, t3 = 100, 200, 600
    k3 = np.arange(1, d3 + 1, dtype=float)
    lams3, beta3 = k3**-1.2, k3**-0.4
    x = rng.standard_normal((p3, d3)) * np.sqrt(lams3)
    y = x @ beta3 + 0.3 * rng.standard_normal(p3)
    mp = MultiPassSGD(x, y, lams3, beta3, eta=0.2, batch=1, noise=0.09)
    t_ex, (ex_test, ex_train) = _best_pair(lambda: mp.exact_curves(t3))
    t_cl, (cl_test, cl_train) = _best_pair(lambda: mp.closed_curves(t3))
    rel_t = np.abs(cl_test / ex_test - 1)
    rel_r = np.abs(cl_train / ex_train - 1)
    print(f"multi-pass SGD, D={d3}, P={p3}, T={t3}, eta=0.2, B=1")
    print(f"  exact O(P D^2)/step {t_ex:.3f} s, closed Volterra {t_cl:.4f} s, ratio {t_ex / t_cl:.0f}x")
    print(
        f"  closed vs exact: max rel err test {rel_t.max():.3f}, train {rel_r.max():.3f}; "
        f"for t >= 50: {rel_t[50:].max():.3f}, {rel_r[50:].max():.3f}"
    )

    # random features: DE averaged over F vs 30 conditional exact curves (continuous time)
    d4, n4, draws = 300, 100, 30
    k4 = np.arange(1, d4 + 1, dtype=float)
    tc = np.array([0.1, 1.0, 10.0, 100.0])
    t0 = time.perf_counter()
    de = random_features_online_sgd_de(k4**-1.3, k4**-0.25, n4, tc, eta=0.1, noise=0.04)
    t_de = time.perf_counter() - t0
    t0 = time.perf_counter()
    cond = np.array(
        [
            random_features_online_sgd(
                rng.standard_normal((n4, d4)) / np.sqrt(n4), k4**-1.3, k4**-0.25, eta=0.1, noise=0.04
            ).continuous_curve(tc)
            for _ in range(draws)
        ]
    )
    t_cond = time.perf_counter() - t0
    se = cond.std(axis=0, ddof=1) / np.sqrt(draws)
    print(
        f"random-feature online SGD, D={d4}, N={n4}: "
        f"DE {t_de:.3f} s vs {draws} conditional curves {t_cond:.2f} s"
    )
    print(f"  max |avg - DE| = {np.abs(cond.mean(axis=0) - de).max():.4f} (F-to-F s.e. up to {se.max():.4f})")


def _best_pair(
    fn: Callable[[], tuple[np.ndarray, np.ndarray]], repeat: int = 2
) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    best, out = float("inf"), (np.empty(0), np.empty(0))
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*args)
