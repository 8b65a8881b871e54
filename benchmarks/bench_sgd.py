"""Benchmark: the online-SGD loss curve (MATH.md 5.2) from a spectrum.

Prints, in one run:

1. the exact per-mode recursion for T = 1e4 steps and D = 1e4 modes (issue 5 target:
   <= 2 s), with the Volterra form (F_t, K_tau, then direct O(T^2) convolution) on the
   same inputs as the baseline, and their largest relative difference;
2. the theory against the simulation it predicts (D = 300, T = 3000, 200 SGD chains):
   wall times, their ratio, the simulation's relative standard error at the end, and
   the ratio extrapolated to a simulation s.e. of 1e-3 (s.e. ~ 1/sqrt(chains)).

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_sgd.py [T] [D]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np

from detequiv.codegen.sgd_mc import run_online_sgd
from detequiv.derivations.sgd import OnlineSGD


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


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*args)
