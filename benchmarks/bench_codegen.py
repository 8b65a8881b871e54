"""Benchmark: generated numpy evaluators (``codegen.to_module``), all figures in one run.

1. Time to generate the module (sympy: derive not included) for the sample covariance
   ``lam (lam + Sigma_hat)^-1``, its trace against a test matrix, and the two-layer
   random-feature chain ``lam (lam + W_F Sigma_hat)^-1`` (MATH.md 2.4).
2. The generated evaluator against per-point ``scipy.optimize.brentq`` loops on the same
   1e3-point lam grid (target: >= 50x), with the largest relative difference of the
   answers: (a) a lean loop written below (``kappa_0`` computed once for the grid, then
   ``brentq`` on ``[kappa_0, hi]`` per point, ``df1`` by ``numpy.mean``), the strongest
   baseline; (b) the engine's reference solver ``result.evaluate`` per point (brentq after
   a scan for ``kappa_0``, what a user of the library calls without codegen), timed on
   ``--reference-points`` points of the grid and scaled to the grid.
3. The evaluator on a D = 1e5 power-law spectrum with a 1e3-point grid (target: <= 2 s),
   for the sample covariance and the random-feature chain, with the largest relative
   difference against brentq on 20 points of the grid.

Fast calls report the best of a few repeats, the brentq loops the best of two (the
machine may be shared); the reference solver runs once. Nothing here is asserted by the
test suite.

Usage: ``python benchmarks/bench_codegen.py [--d-small 1000] [--d-sweep 100 1000 10000]
[--reference-points 50] [--d-large 100000] [--grid 1000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402
from scipy.optimize import brentq  # noqa: E402

import detequiv as de  # noqa: E402
from detequiv.codegen.pycode import to_module  # noqa: E402

lam = sp.Symbol("lam", positive=True)
D, N, P = sp.symbols("D N P", positive=True)
Sigma, T = de.Deterministic("Sigma", D), de.Deterministic("T", D)
X, F = de.Gaussian("X", (P, D)), de.Gaussian("F", (N, D))
SIGMA_HAT = Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P
MODELS = {
    "sample covariance": lam * de.resolvent(SIGMA_HAT, lam),
    "trace tr(T R)": de.trace(T @ (lam * de.resolvent(SIGMA_HAT, lam))),
    "random features (2 layers)": lam * de.resolvent(F.T @ F @ SIGMA_HAT / N, lam),
}


def best_of(fn, repeats):
    times, value = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return min(times), value


def load(source, name, folder):
    path = Path(folder) / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def brentq_loop(spec, grid, factors):
    """Per-point physical root of lam = k prod_i (1 - r_i df1(k)) (MATH.md 2.1, 2.4)."""

    def df(k):
        return float(np.mean(spec / (spec + k)))

    def h(k):
        d = df(k)
        out = k
        for r in factors:
            out *= 1 - r * d
        return out

    out = np.empty(grid.shape)
    lo = 0.0
    threshold = 1 / max(factors)
    if threshold < 1:  # kappa_0: df1(kappa_0) = 1 / max ratio, once for the whole grid
        lo = brentq(lambda k: df(k) - threshold, 1e-300, 1e8, xtol=1e-300, rtol=1e-14)
    for i, x in enumerate(grid):
        if x == 0:
            out[i] = lo
            continue
        hi = max(2 * lo, 1.0)
        while h(hi) < x:
            hi *= 2
        out[i] = brentq(lambda k, x=x: h(k) - x, lo, hi, xtol=1e-300, rtol=1e-14)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--d-small", type=int, default=1000)
    parser.add_argument("--d-sweep", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--reference-points", type=int, default=50)
    parser.add_argument("--d-large", type=int, default=100_000)
    parser.add_argument("--grid", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, sympy {sp.__version__}")
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}\n")

    folder = tempfile.mkdtemp(prefix="bench_codegen_")
    results = {name: de.derive(expr) for name, expr in MODELS.items()}
    modules: dict[str, Any] = {}
    print("1. generating the module (to_module, after derive)")
    for name, result in results.items():
        seconds, source = best_of(lambda r=result: to_module(r, "evaluator"), args.repeats)
        modules[name] = load(source, f"m{len(modules)}", folder)
        print(f"   {name:28s} {seconds * 1e3:8.1f} ms   {len(source.splitlines())} lines")

    grid = np.concatenate([[0.0], np.geomspace(1e-6, 1e2, args.grid - 1)])
    print(f"\n2. evaluator vs per-point brentq loops, {grid.size}-point lam grid, spectrum k^-1.2")
    print("   (a) lean brentq loop (kappa_0 once), full grid")
    sample = results["sample covariance"]
    for d_value in args.d_sweep:
        spec = np.arange(1, d_value + 1, dtype=float) ** -1.2
        for p_value in (d_value // 2, 2 * d_value):
            evaluate = modules["sample covariance"].evaluate
            t_gen, out = best_of(lambda p=p_value, s=spec, e=evaluate: e(grid, Sigma=s, P=p), args.repeats)
            t_ref, ref = best_of(lambda p=p_value, s=spec, d=d_value: brentq_loop(s, grid, [d / p]), 2)
            err = np.max(np.abs(out["kappa"] - ref) / np.maximum(ref, 1e-300))
            print(
                f"   D = {d_value:6d}, P = {p_value:6d}: evaluator {t_gen * 1e3:8.1f} ms, brentq loop "
                f"{t_ref * 1e3:8.1f} ms, ratio {t_ref / t_gen:6.1f}x, max rel diff {err:.1e}"
            )
    spec = np.arange(1, args.d_small + 1, dtype=float) ** -1.2
    evaluate = modules["random features (2 layers)"].evaluate
    n_feat, p_value = args.d_small // 2, args.d_small // 4 * 3
    t_gen, out = best_of(lambda: evaluate(grid, Sigma=spec, N=n_feat, P=p_value), args.repeats)
    t_ref, ref = best_of(lambda: brentq_loop(spec, grid, [args.d_small / n_feat, args.d_small / p_value]), 2)
    err = np.max(np.abs(out["kappa_2"] - ref) / np.maximum(ref, 1e-300))
    print(
        f"   RF D = {args.d_small}, N = {n_feat}, P = {p_value}: evaluator {t_gen * 1e3:8.1f} ms, brentq "
        f"loop {t_ref * 1e3:8.1f} ms, ratio {t_ref / t_gen:6.1f}x, max rel diff {err:.1e}"
    )
    print(f"   (b) the engine's reference solver result.evaluate, {args.reference_points} points scaled")
    pick = np.linspace(1, grid.size - 1, args.reference_points).astype(int)
    for p_value in (args.d_small // 2, 2 * args.d_small):
        evaluate = modules["sample covariance"].evaluate
        t_gen, out = best_of(lambda p=p_value, e=evaluate: e(grid, Sigma=spec, P=p), args.repeats)
        t0 = time.perf_counter()
        ref = np.array(
            [sample.evaluate({Sigma: spec, lam: grid[i], D: args.d_small, P: p_value})["kappa"] for i in pick]
        )
        t_ref = (time.perf_counter() - t0) * grid.size / pick.size
        err = np.max(np.abs(out["kappa"][pick] - ref) / ref)
        print(
            f"   D = {args.d_small:6d}, P = {p_value:6d}: evaluator {t_gen * 1e3:8.1f} ms, reference "
            f"{t_ref:8.2f} s (scaled), ratio {t_ref / t_gen:8.0f}x, max rel diff {err:.1e}"
        )

    print(f"\n3. D = {args.d_large} power-law spectrum (k^-1.2), {grid.size}-point lam grid")
    spec = np.arange(1, args.d_large + 1, dtype=float) ** -1.2
    check = np.linspace(0, grid.size - 1, 20).astype(int)
    cases = [
        ("sample covariance", {"P": args.d_large // 4}, [4.0], "kappa"),
        ("sample covariance", {"P": 4 * args.d_large}, [0.25], "kappa"),
        (
            "random features (2 layers)",
            {"N": args.d_large // 2, "P": args.d_large // 5},
            [2.0, 5.0],
            "kappa_2",
        ),
    ]
    for name, params, factors, key in cases:
        evaluate = modules[name].evaluate
        seconds, out = best_of(lambda e=evaluate, p=params: e(grid, Sigma=spec, **p), args.repeats)
        ref = brentq_loop(spec, grid[check], factors)
        err = np.max(np.abs(out[key][check] - ref) / np.maximum(ref, 1e-300))
        label = ", ".join(f"{k}={v}" for k, v in params.items())
        print(
            f"   {name:28s} {label:18s} {seconds:6.2f} s (target <= 2 s), max rel diff on 20 points {err:.1e}"
        )


if __name__ == "__main__":
    main()
