"""Benchmark: the exact linear DMFT solver (``detequiv.dmft.linear.solve``), all figures in one run.

1. The causal sweep at ``T = 100 / 200 / 400 / 800`` grid steps, for GD and for SGF
   (``tau = 0.5``), with the fitted exponent of the cost in ``T`` (``O(T^3)`` flops).
2. Baseline measured in the same run: the matrix-form Picard iteration of DMFT.md 2.2
   (what the reference scripts of DMFT.md 4.3 did: full-horizon inverses and ``R B R^T``
   products per iteration, iterated to a 1e-13 fixed point; ``iters`` counts the response
   and the correlation iterations together), at the same sizes, with the
   largest relative difference of the loss curves.
3. Second baseline: the engine's resolvent-derived gradient-flow curves
   (``GradientFlow.test_loss().evaluate`` / ``training_loss``) on the same 801 times, and the
   gap between the GD-DMFT at ``dt`` and that continuous-time curve (O(dt), converted with
   ``to_math_conventions``: ``t_MATH = delta t``).

Best of ``--repeats`` runs for the fast calls; Picard runs once per size. Nothing here is
asserted by the test suite.

Usage: ``python benchmarks/bench_dmft_linear.py [--sizes 100 200 400 800] [--repeats 3]
[--picard-max 800]``
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian  # noqa: E402
from detequiv.dmft.linear import solve, to_math_conventions  # noqa: E402
from detequiv.dmft.system import SGF, DMFTSystem, Grid, LinearTeacher, Ridge, SampleSide, Square  # noqa: E402
from detequiv.models.gradient_flow import GradientFlow  # noqa: E402

DELTA, LAM, RHO, SIGMA2, TAU, HORIZON = 2.0, 0.0, 1.0, 0.25, 0.5, 10.0


def best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def picard(
    delta: float, dt: float, steps: int, v: float, tol: float = 1e-13
) -> tuple[np.ndarray, np.ndarray, int]:
    """DMFT.md 2.2 in matrix form (square loss, ridge LAM), Picard to a fixed point."""
    n = steps + 1
    eye, shift, low = np.eye(n), np.eye(n, k=-1), np.tri(n, k=-1)
    R = eye.copy()
    iters = 0
    for iters in range(1, n + 2):  # noqa: B007
        L = (R @ shift) * low
        A = np.linalg.solve(eye + dt * L, eye)
        M = eye - (1 - dt * LAM) * shift
        M[1:, :] += dt * delta * A[:-1, :]
        new = np.linalg.solve(M, eye)
        done = np.max(np.abs(new - R)) < tol
        R = new
        if done:
            break
    vv = shift @ (-A.sum(axis=1))
    m = -dt * delta * RHO * R @ vv
    K = dt * A @ L
    C = np.zeros((n, n))
    for _ in range(n + 1):
        ca = A @ (C - m[:, None] - m[None, :] + RHO + SIGMA2) @ A.T
        c = np.zeros(n)
        for k in range(n):
            c[k] = ca[k, k] + v * (K[k, :k] ** 2) @ c[:k]
        cg = ca + v * (K * c) @ K.T + v * np.diag(c) - v * (K * c + (K * c).T)
        B = (dt * delta) ** 2 * RHO * np.outer(vv, vv) + dt**2 * delta * shift @ cg @ shift.T
        new = R @ B @ R.T
        iters += 1
        done = np.max(np.abs(new - C)) < tol
        C = new
        if done:
            break
    return 0.5 * c, np.diag(C) - 2 * m + RHO, iters


def system(dt: float, steps: int, tau: float) -> DMFTSystem:
    noise = SGF(tau) if tau else None
    kw = {"noise": noise} if noise else {}
    return DMFTSystem(
        DELTA,
        Grid(dt, steps),
        SampleSide(Square(), LinearTeacher(SIGMA2)),
        Ridge(LAM),
        teacher_norm=RHO,
        **kw,
    )


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a / b - 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 400, 800])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--picard-max", type=int, default=800, help="largest T for the Picard baseline")
    args = parser.parse_args()
    solve(system(0.1, 5, 0.0))  # warm the sympy caches

    print(
        f"exact linear DMFT: delta={DELTA}, rho={RHO}, sigma^2={SIGMA2}, horizon t={HORIZON}, 1 BLAS thread"
    )
    print(
        f"{'T':>5} {'noise':>6} {'sweep s':>9} {'picard s':>9} {'iters':>6} "
        f"{'speed-up':>9} {'max rel diff':>13}"
    )
    sweep_times: dict[str, list[float]] = {"GD": [], "SGF": []}
    for steps in args.sizes:
        dt = HORIZON / steps
        for label, tau in (("GD", 0.0), ("SGF", TAU)):
            t_sweep, sol = best(
                lambda dt=dt, steps=steps, tau=tau: solve(system(dt, steps, tau)), args.repeats
            )
            sweep_times[label].append(t_sweep)
            if steps <= args.picard_max:
                t0 = time.perf_counter()
                train, test, iters = picard(DELTA, dt, steps, tau / dt)
                t_pic = time.perf_counter() - t0
                diff = max(rel(sol.train_loss, train), rel(sol.test_loss, test))
                print(
                    f"{steps:>5} {label:>6} {t_sweep:>9.3f} {t_pic:>9.3f} {iters:>6} "
                    f"{t_pic / t_sweep:>8.1f}x {diff:>13.2e}"
                )
            else:
                print(f"{steps:>5} {label:>6} {t_sweep:>9.3f} {'-':>9} {'-':>6} {'-':>9} {'-':>13}")
    if len(args.sizes) > 1:
        logs = np.log(np.array(args.sizes, dtype=float))
        for label, ts in sweep_times.items():
            slope = np.polyfit(logs[-2:], np.log(ts[-2:]), 1)[0]
            print(f"cost exponent in T ({label}, last two sizes): {slope:.2f}")

    # engine baseline: continuous-time gradient flow on the same times
    steps = max(args.sizes)
    dt = HORIZON / steps
    D, P = sp.symbols("D P", positive=True)
    t0 = time.perf_counter()
    flow = GradientFlow(Deterministic("Sigma", D), Gaussian("X", (P, D)), DeterministicVector("beta", D))
    test_curve, train_curve = flow.test_loss(), flow.training_loss()
    t_derive = time.perf_counter() - t0
    d = 10
    values = {
        "Sigma": np.ones(d),
        "beta": np.ones(d) * np.sqrt(RHO / d),
        "P": int(DELTA * d),
        "sigma2": SIGMA2,
    }
    times = DELTA * np.arange(1, steps + 1) * dt

    def engine() -> tuple[np.ndarray, np.ndarray]:
        return test_curve.evaluate(values, times)["total"], train_curve.evaluate(values, times)["total"]

    t_engine, (eng_test, eng_train) = best(engine, args.repeats)
    t_sweep, sol = best(lambda: solve(system(dt, steps, 0.0)), args.repeats)
    out = to_math_conventions(sol)
    print(
        f"\nengine GradientFlow curves on {steps} times: {t_engine:.3f} s "
        f"(derivation {t_derive:.2f} s, once); "
        f"GD-DMFT sweep T={steps}: {t_sweep:.3f} s ({t_sweep / t_engine:.1f}x the engine evaluation)"
    )
    half = solve(system(dt / 2, 2 * steps, 0.0))
    extrap = {k: 2 * to_math_conventions(half)[k][::2] - out[k] for k in ("test_loss", "train_loss")}
    print(
        f"GD-DMFT (dt={dt:g}) vs engine gradient flow: test {rel(out['test_loss'][1:], eng_test):.2e}, "
        f"train {rel(out['train_loss'][1:], eng_train):.2e} (O(dt)); Richardson dt, dt/2: "
        f"test {rel(extrap['test_loss'][1:], eng_test):.2e}, "
        f"train {rel(extrap['train_loss'][1:], eng_train):.2e}"
    )


if __name__ == "__main__":
    main()
