"""Benchmark: gradient-flow loss curves (MATH.md 5.1) against simulating gradient flow.

Prints the time of the derived test-loss curve at 200 times (Talbot M = 16) for a
power-law spectrum with D = 1e4 modes (issue 5's SGD-curve target is <= 2 s; this is the
gradient-flow figure), the same curve at D = 400, and the time to simulate that curve by
exact gradient flow at D = 400 (one data set, and the number of data sets needed to reach
the theory's accuracy at the curve's smallest error bar), all measured in this run.

Run: ``python benchmarks/bench_dynamics.py``
"""

from __future__ import annotations

import os

# one BLAS thread: the machine is shared, and oversubscribed BLAS threads make timings erratic
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

from detequiv.codegen.dynamics_mc import simulate_gradient_flow  # noqa: E402
from detequiv.derivations.dynamics import GradientFlow  # noqa: E402
from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian  # noqa: E402


def best_of(f, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    D, P = sp.symbols("D P", positive=True)
    flow = GradientFlow(Deterministic("Sigma", D), Gaussian("X", (P, D)), DeterministicVector("beta", D))
    t0 = time.perf_counter()
    test = flow.test_loss()
    train = flow.training_loss()
    print(f"derivation (test + train curves, sympy): {time.perf_counter() - t0:.2f} s")
    times = np.logspace(-1, 4, 200)

    def vals(d: int, ratio: float) -> dict[str, object]:
        k = np.arange(1, d + 1, dtype=float)
        return {"Sigma": k**-1.2, "beta": k**-0.4, "P": round(ratio * d), "sigma2": 0.09}

    for d in (10_000, 400):
        for ratio in (0.5, 2.0):
            v = vals(d, ratio)
            t_test = best_of(lambda v=v: test.evaluate(v, times), 2 if d > 1000 else 3)
            t_train = best_of(lambda v=v: train.evaluate(v, times), 2 if d > 1000 else 3)
            print(
                f"theory D={d:>6}, P/D={ratio}: test curve {t_test:.3f} s, train curve {t_train:.3f} s "
                f"(200 times)"
            )

    d, ratio = 400, 2.0
    k = np.arange(1, d + 1, dtype=float)
    spec, beta = k**-1.2, k**-0.4
    rng = np.random.default_rng(0)
    t_theory = best_of(lambda: test.evaluate(vals(d, ratio), times))
    n_draws = 20
    t0 = time.perf_counter()
    draws = [
        simulate_gradient_flow(spec, beta, round(ratio * d), 0.09, times, rng)["L_test"]
        for _ in range(n_draws)
    ]
    t_sim = (time.perf_counter() - t0) / n_draws
    curves = np.array(draws)
    rel_se = float(np.max(curves.std(axis=0, ddof=1) / curves.mean(axis=0)))
    theory = test.evaluate(vals(d, ratio), times)["total"]
    err = float(np.max(np.abs(curves.mean(axis=0) - theory) / theory))
    # draws needed for a Monte Carlo relative s.e. of 1e-3 (the theory is exact to ~1e-9 in its limit)
    need = int(np.ceil((rel_se / 1e-3) ** 2))
    print(f"simulation D={d}, P/D={ratio}: {t_sim:.3f} s per data set (200 times), theory {t_theory:.3f} s")
    print(f"  ratio one data set / theory: {t_sim / t_theory:.1f}x")
    print(
        f"  single-draw relative s.e. up to {rel_se:.3f}; {need} data sets for a 1e-3 relative s.e.: "
        f"{need * t_sim:.1f} s, {need * t_sim / t_theory:.0f}x the theory"
    )
    print(f"  mean of {n_draws} data sets vs theory: max relative deviation {err:.3g}")


if __name__ == "__main__":
    main()
