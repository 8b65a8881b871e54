"""Benchmark: the general engine (linear pencils), all figures in one run.

1. Derivation of each expression of issue 14 (the ones the shape rules refuse): time, pencil
   blocks, unknowns, and the time of its exact witness (the 1/lam series against the planar
   pairings; order 6 one-point, 4 for products of resolvents). Targets: derivation <= 10 s,
   pencils <= 12 blocks.
2. ``evaluate`` at D = 1000 with rotated (non-commuting) covariances, sum of two sample
   covariances, per ridge (target: <= 1 s), against two baselines in the same run: one dense
   1000 x 1000 inverse (the unit of work), and a damped fixed-point iteration of the same
   equations to the same accuracy (what a hand-written solver does).
3. The generated module on a 1e3-point ridge grid with commuting spectra at D = 1e5 (target:
   <= 2 s), against per-point ``evaluate`` on 20 points scaled to the grid, and the largest
   relative difference of the two.
4. Against dense Monte Carlo of the same trace at D = 1000: the draws needed for a standard
   error of 1e-4 (relative) times the time of one draw, over the time of ``evaluate``
   (target: >= 100x).

Nothing here is asserted by the test suite. Usage: ``python benchmarks/bench_pencil.py
[--dense 1000] [--large 100000] [--grid 1000] [--draws 20]``
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

import detequiv as de  # noqa: E402
from detequiv.codegen.pencil_module import pencil_to_module  # noqa: E402
from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent, trace  # noqa: E402

lam, lam2, lam3 = sp.symbols("lam lam2 lam3", positive=True)
D, P, P1, P2, N1, N2 = sp.symbols("D P P1 P2 N1 N2", positive=True)
S, S1, S2 = Deterministic("Sigma", D), Deterministic("Sigma1", D), Deterministic("Sigma2", D)
X, X1, X2, XP = (
    Gaussian("X", (P, D)),
    Gaussian("X1", (P1, D)),
    Gaussian("X2", (P2, D)),
    Gaussian("Xp", (P2, D)),
)
F1, F2 = Gaussian("F1", (N1, D)), Gaussian("F2", (N2, N1))
K, OM, M, NN = Deterministic("K", P), Deterministic("Omega", D), Deterministic("M", D), Deterministic("N", D)
SH = S.sqrt() @ X.T @ X @ S.sqrt() / P
SUM = S1.sqrt() @ X1.T @ X1 @ S1.sqrt() / P1 + S2.sqrt() @ X2.T @ X2 @ S2.sqrt() / P2

EXPRESSIONS = {
    "sum of two covariances": (lam * resolvent(SUM, lam), 6),
    "deep linear random features": (lam * resolvent(F2 @ F1 @ SH @ F1.T @ F2.T / (N1 * N2), lam), 6),
    "deep RF, weight space": (
        lam * resolvent(X @ S.sqrt() @ F1.T @ F2.T @ F2 @ F1 @ S.sqrt() @ X.T / (P * N1 * N2), lam),
        6,
    ),
    "correlated samples": (lam * resolvent(S.sqrt() @ X.T @ K @ X @ S.sqrt() / P, lam), 6),
    "generalized ridge": (lam * resolvent(OM + SH, lam), 6),
    "two-point, two covariances": (
        trace(
            M
            @ resolvent(S1.sqrt() @ X.T @ X @ S1.sqrt() / P, lam)
            @ NN
            @ resolvent(S2.sqrt() @ X.T @ X @ S2.sqrt() / P, lam2)
        ),
        4,
    ),
    "two-point, independent data": (
        trace(M @ resolvent(SH, lam) @ NN @ resolvent(S.sqrt() @ XP.T @ XP @ S.sqrt() / P2, lam2)),
        4,
    ),
    "three resolvents": (trace(resolvent(SH, lam) @ M @ resolvent(SH, lam2) @ NN @ resolvent(SH, lam3)), 4),
    "square of a resolvent": (lam**2 * resolvent(SH, lam) @ resolvent(SH, lam), 6),
}


def rotated(rng: np.random.Generator, eigenvalues: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return (q * eigenvalues) @ q.T


def derivations() -> None:
    print("1. derivations (the shape rules refuse these)")
    print(f"   {'expression':30s} {'derive':>8s} {'blocks':>6s} {'unknowns':>8s} {'series':>12s}")
    for name, (expr, order) in EXPRESSIONS.items():
        t = time.perf_counter()
        eq = de.derive(expr)
        derive_time = time.perf_counter() - t
        t = time.perf_counter()
        check = eq.check_series(order)
        series_time = time.perf_counter() - t
        status = "passed" if check.passed else "FAILED"
        print(
            f"   {name:30s} {derive_time:7.2f}s {len(eq.pencil.dims):6d} {len(eq.fixed_points):8d} "
            f"{series_time:6.2f}s o{order} {status}"
        )


def fixed_point_baseline(s1, s2, n, p1, p2, z, tol=1e-12):
    """Damped fixed-point iteration of the same two equations (one dense inverse per step)."""
    e, steps = np.zeros(2), 0
    while True:
        r = np.linalg.inv(z * np.eye(n) + s1 / (1 + n / p1 * e[0]) + s2 / (1 + n / p2 * e[1]))
        new = np.array([np.einsum("ij,ji->", r, s1), np.einsum("ij,ji->", r, s2)]) / n
        steps += 1
        if np.max(abs(new - e)) <= tol * np.max(abs(new)) or steps > 5000:
            return z * np.trace(r) / n, steps
        e = 0.5 * e + 0.5 * new


def dense(n: int, draws: int) -> None:
    print(f"\n2. evaluate, sum of two covariances, D = {n}, rotated covariances (non-commuting)")
    rng = np.random.default_rng(0)
    s1, s2 = rotated(rng, np.linspace(0.1, 3.0, n)), rotated(rng, np.geomspace(0.05, 5.0, n))
    p1, p2 = 2 * n // 3, 3 * n // 2
    eq = de.derive(EXPRESSIONS["sum of two covariances"][0])
    a = s1 + s2 + np.eye(n)
    t = time.perf_counter()
    for _ in range(3):
        np.linalg.inv(a)
    inverse = (time.perf_counter() - t) / 3
    print(f"   one dense inverse: {inverse * 1e3:.1f} ms")
    times = {}
    for z in (1.0, 0.05, 1e-3, 0.05 + 0.1j):
        t = time.perf_counter()
        value = eq.evaluate({"Sigma1": s1, "Sigma2": s2, "D": n, "P1": p1, "P2": p2, "lam": z}).trace()
        times[z] = time.perf_counter() - t
        t = time.perf_counter()
        reference, steps = fixed_point_baseline(s1, s2, n, p1, p2, z)
        base = time.perf_counter() - t
        print(
            f"   lam = {z!s:12s} evaluate {times[z]:6.2f} s ({times[z] / inverse:5.1f} inverses); "
            f"fixed-point loop {base:6.2f} s ({steps} steps), ratio {base / times[z]:6.1f}x, "
            f"|difference| {abs(value - reference) / abs(reference):.1e}"
        )
    z = 0.05
    t = time.perf_counter()
    samples = []
    for _ in range(draws):
        x1 = rng.standard_normal((p1, n))
        x2 = rng.standard_normal((p2, n))
        r1, r2 = np.linalg.cholesky(s1), np.linalg.cholesky(s2)
        a = r1 @ (x1.T @ x1) @ r1.T / p1 + r2 @ (x2.T @ x2) @ r2.T / p2
        samples.append(z * np.trace(np.linalg.inv(z * np.eye(n) + a)) / n)
    per_draw = (time.perf_counter() - t) / draws
    mean, sd = float(np.mean(samples)), float(np.std(samples, ddof=1))
    needed = max(1.0, (sd / (1e-4 * abs(mean))) ** 2)
    print(
        f"\n4. Monte Carlo at D = {n}, lam = {z}: {per_draw:.2f} s per draw, "
        f"sd {sd / abs(mean):.1e} (relative); "
        f"{needed:.0f} draws for a standard error of 1e-4 -> {needed * per_draw:.1f} s, "
        f"{needed * per_draw / times[z]:.0f}x the time of evaluate"
    )


def module(n: int, grid: int) -> None:
    print(f"\n3. generated module, sum of two covariances, D = {n} spectra, {grid}-point grid")
    eq = de.derive(EXPRESSIONS["sum of two covariances"][0])
    namespace: dict = {}
    exec(compile(pencil_to_module(eq, "bench"), "bench.py", "exec"), namespace)  # noqa: S102
    s1, s2 = np.arange(1, n + 1) ** -1.2, np.linspace(0.1, 1.0, n)
    lams = np.logspace(-4, 1, grid)
    evaluate = namespace["evaluate"]
    evaluate(lams[:5], Sigma1=s1, Sigma2=s2, P1=n // 2, P2=2 * n)
    t = time.perf_counter()
    out = evaluate(lams, Sigma1=s1, Sigma2=s2, P1=n // 2, P2=2 * n)["value"]
    module_time = time.perf_counter() - t
    points = np.linspace(0, grid - 1, 20).astype(int)
    t = time.perf_counter()
    worst = 0.0
    for i in points:
        v = eq.evaluate(
            {"Sigma1": s1, "Sigma2": s2, "D": n, "P1": n // 2, "P2": 2 * n, "lam": lams[i]}
        ).trace()
        worst = max(worst, abs(out[i] - v) / abs(v))
    per_point = (time.perf_counter() - t) / len(points)
    print(
        f"   module {module_time:.2f} s for the grid; evaluate per point {per_point:.3f} s "
        f"({per_point * grid:.1f} s for the grid): {per_point * grid / module_time:.0f}x; "
        f"largest relative difference {worst:.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100000)
    parser.add_argument("--grid", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=20)
    args = parser.parse_args()
    derivations()
    dense(args.dense, args.draws)
    module(args.large, args.grid)


if __name__ == "__main__":
    main()
