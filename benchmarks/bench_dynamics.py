"""Benchmark: gradient-flow loss curves (MATH.md 5.1) against simulating gradient flow.

Prints the time of the derived test- and training-loss curves at 200 log-spaced times in
[0.1, 1e4] (M = 16) for a power-law spectrum with D = 1e4 modes (target <= 2 s for the test
curve) and at D = 400, each with the windowed hyperbolic contours (the default: one contour
per window [t0, 10 t0]) and with the baseline, one Talbot contour per time
(``contour="talbot"``, the previous implementation), both measured in this run, and the
largest difference between the two curves relative to the loss. Then the time to simulate
the curve by exact gradient flow at D = 400 (one data set, and the number of data sets
needed for a 1e-3 relative standard error) and its ratio to each theory time.

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

from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian  # noqa: E402
from detequiv.models.gradient_flow import GradientFlow, RandomFeatureGradientFlow  # noqa: E402
from detequiv.models.gradient_flow_mc import simulate_gradient_flow, simulate_random_feature_flow  # noqa: E402


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

    fast_time: dict[tuple[int, float], float] = {}
    slow_time: dict[tuple[int, float], float] = {}
    for d in (10_000, 400):
        for ratio in (0.5, 2.0):
            v = vals(d, ratio)
            rep = 2 if d > 1000 else 3
            for name, curve in (("test", test), ("train", train)):
                t_fast = best_of(lambda v=v, c=curve: c.evaluate(v, times), rep)
                t_slow = best_of(lambda v=v, c=curve: c.evaluate(v, times, contour="talbot"), rep)
                fast, slow = curve.evaluate(v, times), curve.evaluate(v, times, contour="talbot")
                scale = np.abs(slow["total"])
                dev = max(float(np.max(np.abs(fast[k] - slow[k]) / scale)) for k in slow)
                dev0 = max(float(np.max(np.abs(fast[k] - slow[k]))) for k in slow) / abs(slow["total"][0])
                if name == "test":
                    fast_time[d, ratio], slow_time[d, ratio] = t_fast, t_slow
                print(
                    f"theory D={d:>6}, P/D={ratio}: {name:>5} curve {t_fast:.3f} s windowed, "
                    f"{t_slow:.3f} s Talbot per time (baseline), speed-up {t_slow / t_fast:.1f}x, "
                    f"max |windowed - baseline| / L(t) = {dev:.2e}, / L(0.1) = {dev0:.2e} (200 times)"
                )
                if d > 1000 and name == "test":
                    # which of the two is closer to the truth: both against windowed contours with M = 20
                    ref = curve.evaluate(v, times, nodes=20)["total"]
                    e_fast = float(np.max(np.abs(fast["total"] - ref) / np.abs(ref)))
                    e_slow = float(np.max(np.abs(slow["total"] - ref) / np.abs(ref)))
                    print(
                        f"    against M = 20: windowed {e_fast:.2e}, baseline {e_slow:.2e} (relative to L(t))"
                    )

    d, ratio = 400, 2.0
    k = np.arange(1, d + 1, dtype=float)
    spec, beta = k**-1.2, k**-0.4
    rng = np.random.default_rng(0)
    t_theory = fast_time[d, ratio]
    t_base = slow_time[d, ratio]
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
    print(
        f"simulation D={d}, P/D={ratio}: {t_sim:.3f} s per data set (200 times); "
        f"theory {t_theory:.4f} s windowed, {t_base:.3f} s baseline"
    )
    print(f"  ratio one data set / theory: {t_sim / t_theory:.1f}x (baseline {t_sim / t_base:.1f}x)")
    print(
        f"  single-draw relative s.e. up to {rel_se:.3f}; {need} data sets for a 1e-3 relative s.e.: "
        f"{need * t_sim:.1f} s, {need * t_sim / t_theory:.0f}x the windowed theory "
        f"(baseline {need * t_sim / t_base:.0f}x)"
    )
    print(f"  mean of {n_draws} data sets vs theory: max relative deviation {err:.3g}")
    print(
        "  (a training loss that decays to ~1e-6, P < D, makes the relative-to-L(t) deviation large: "
        "there the baseline's own Talbot error, ~1e-12 of L(0), dominates)"
    )

    # random features (MATH.md 5.5): N = D/3, P = 2D/3, no label noise
    Dn, Nn, Pn = sp.symbols("D N P", positive=True)
    rf = RandomFeatureGradientFlow(
        Deterministic("Sigma", Dn),
        Gaussian("X", (Pn, Dn)),
        Gaussian("F", (Nn, Dn)),
        DeterministicVector("beta", Dn),
    )
    t0 = time.perf_counter()
    rf_curve = rf.test_loss()
    print(f"random features: derivation (layered two-point, sympy) {time.perf_counter() - t0:.2f} s")
    rf_time: dict[int, float] = {}
    for d in (10_000, 300):
        k = np.arange(1, d + 1, dtype=float)
        v = {"Sigma": k**-1.2, "beta": k**-0.4, "N": d // 3, "P": 2 * d // 3}
        rep = 2 if d > 1000 else 3
        t_fast = best_of(lambda v=v: rf_curve.evaluate(v, times), rep)
        t_slow = best_of(lambda v=v: rf_curve.evaluate(v, times, contour="talbot"), rep)
        fast = rf_curve.evaluate(v, times)["total"]
        slow = rf_curve.evaluate(v, times, contour="talbot")["total"]
        rf_time[d] = t_fast
        print(
            f"  theory D={d:>6}, N=D/3, P=2D/3: {t_fast:.3f} s windowed, {t_slow:.3f} s Talbot per time, "
            f"speed-up {t_slow / t_fast:.1f}x, "
            f"max relative difference {np.max(np.abs(fast - slow) / slow):.2e}"
        )
    d = 300
    k = np.arange(1, d + 1, dtype=float)
    t0 = time.perf_counter()
    rf_draws = np.array(
        [
            simulate_random_feature_flow(k**-1.2, k**-0.4, d // 3, 2 * d // 3, times, rng)["L_test"]
            for _ in range(n_draws)
        ]
    )
    t_sim = (time.perf_counter() - t0) / n_draws
    rel_se = float(np.max(rf_draws.std(axis=0, ddof=1) / rf_draws.mean(axis=0)))
    need = int(np.ceil((rel_se / 1e-3) ** 2))
    print(
        f"  simulation D={d}: {t_sim:.3f} s per draw of (X, F); {need} draws for a 1e-3 relative s.e.: "
        f"{need * t_sim:.1f} s, {need * t_sim / rf_time[d]:.0f}x the windowed theory"
    )


if __name__ == "__main__":
    main()
