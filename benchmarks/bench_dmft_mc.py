"""Benchmark: the sampled (Monte Carlo) DMFT route, detequiv.dmft.montecarlo.

Prints, in one run (logistic regression, sign teacher with label noise 0.3, rho = 4,
lam = 0.05, delta = 2, the calibration case of DMFT.md 5.2):

1. marcher cost per 1,000 paths per 100 steps (N = 4000, N_J = 1000, T = 100), with the
   split into the O(N K^2) path part and the O(N_J K^3) tangent part (N_J = 250 run);
2. marcher vs damped Picard (mixing 0.7, tol 1e-6) at T = 40 and 80, N = 16000 -- the
   baseline measured in the same run; DMFT.md 4.3 reports a 7-9x ratio;
3. the d = 500, n = 1000 simulation checks (24 seeds): worst |DMFT - sim| / s.e. at the
   checkpoint times for GD and batch-1 SGD (SGF, Bernoulli visits), and the same figure for
   the SGF DMFT without its Ito cross-term (the rejection factor); simulation wall times.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_dmft_mc.py [--quick]
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from detequiv.dmft.montecarlo import mc_relative_error, solve_montecarlo  # noqa: E402
from detequiv.dmft.simulate import simulate  # noqa: E402
from detequiv.dmft.system import (  # noqa: E402
    SGF,
    BernoulliVisits,
    DMFTSystem,
    Grid,
    Logistic,
    Ridge,
    SampleSide,
    SignTeacher,
)


def logistic(dt: float, steps: int, noise=None) -> DMFTSystem:
    kwargs = {} if noise is None else {"noise": noise}
    return DMFTSystem(
        2.0, Grid(dt, steps), SampleSide(Logistic(), SignTeacher(noise=0.3)), Ridge(0.05), teacher_norm=4.0,
        **kwargs,
    )


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def worst_z(sol, sim, checkpoints) -> float:
    err = mc_relative_error(sol.paths)
    k = np.asarray(checkpoints)
    out = 0.0
    curves = ((sol.train_loss, sim.train_mean, sim.train_se), (sol.test_loss, sim.test_mean, sim.test_se))
    for dm, mean, se in curves:
        total = np.sqrt(se[k] ** 2 + (err * dm[k]) ** 2)
        out = max(out, float(np.max(np.abs(dm[k] - mean[k]) / total)))
    return out


def main(quick: bool = False) -> None:
    print("1. marcher cost (logistic GD, dt = 0.2, T = 100)")
    system = logistic(0.2, 100)
    t_full, _ = timed(lambda: solve_montecarlo(system, paths=4000, response_paths=1000, seed=0))
    t_small, _ = timed(lambda: solve_montecarlo(system, paths=4000, response_paths=250, seed=0))
    tangent = (t_full - t_small) / 0.75  # the N_J = 1000 share, from the N_J = 1000 vs 250 difference
    paths_part = t_full - tangent
    print(f"   N = 4000: N_J = 1000 {t_full:.2f} s, N_J = 250 {t_small:.2f} s")
    print(f"   -> {t_full / 4:.3f} s per 1,000 paths per 100 steps at N_J = 1000 (N = 4000);")
    print(f"      path part (O(N K^2)) {paths_part / 4:.3f} s per 1,000 paths per 100 steps,")
    print(f"      tangent part (O(N_J K^3)) {tangent:.2f} s per 1,000 response paths at K = 101")

    print("2. marcher vs damped Picard (N = 16000, N_J = 1000, mixing 0.7, tol 1e-6)")
    for steps in (40,) if quick else (40, 80):
        sys_t = logistic(0.5, steps)
        t_march, march = timed(lambda sys_t=sys_t: solve_montecarlo(sys_t, paths=16000, seed=0))
        t_pic, pic = timed(
            lambda sys_t=sys_t: solve_montecarlo(sys_t, paths=16000, seed=0, method="picard", tol=1e-6)
        )
        diff = float(np.max(np.abs(pic.train_loss - march.train_loss)))
        print(
            f"   T = {steps}: march {t_march:.2f} s, Picard {t_pic:.2f} s ({pic.iterations} iterations), "
            f"ratio {t_pic / t_march:.1f}x; max |train difference| {diff:.1e}"
        )

    if quick:
        return
    print("3. d = 500, n = 1000, 24 seeds, N = 16000 paths (worst z over train/test at checkpoints)")
    system = logistic(0.5, 40)
    t_sim, sim = timed(lambda: simulate(system, d=500, seeds=24, seed=1))
    t_dm, sol = timed(lambda: solve_montecarlo(system, paths=16000, seed=0))
    print(f"   GD (dt = 0.5, t = 2, 5, 10, 20): z = {worst_z(sol, sim, [4, 10, 20, 40]):.2f}; "
          f"DMFT {t_dm:.2f} s, simulation {t_sim:.2f} s")
    tau = 2.0
    t_sim, sim = timed(lambda: simulate(logistic(0.1, 50, SGF(tau)), d=500, seeds=24, seed=1))
    print(f"   batch-1 SGD, tau = {tau}, step tau/n, 50,000 steps x 24 seeds: simulation {t_sim:.2f} s")
    for name, noise in (
        ("SGF DMFT (dt = 0.1)", SGF(tau)),
        ("Bernoulli-visit DMFT (dt = 0.1)", BernoulliVisits(tau)),
        ("SGF DMFT without the Ito term", SGF(tau, ito_cross_term=False)),
    ):
        t_dm, sol = timed(lambda noise=noise: solve_montecarlo(logistic(0.1, 50, noise), paths=16000, seed=0))
        print(f"   {name:<33} t = 1, 3, 5: z = {worst_z(sol, sim, [10, 30, 50]):.2f} ({t_dm:.2f} s)")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
