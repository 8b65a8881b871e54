"""Benchmark: the random-feature two-point function, derive + check_series(K), against a 30 s target.

Prints, for the layered RF two-point function
``lam lam2 (lam + Sh W_F)^-1 M (lam2 + W_F Sh)^-1`` (MATH.md 3.5) in both averaging orders,
the wall time of ``derive_layered_two_point`` + ``check_series(K)`` (total order K, default 6),
its ratio to the 30 s target, and, as a baseline measured in the same run, the single-layer
two-point function (form III, ``derive_two_point`` + ``check_series(K)``). Usage:

    python benchmarks/bench_twopoint_rf.py [K]
"""

from __future__ import annotations

import sys
import time

import sympy as sp

from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
from detequiv.derivations.layered import derive_layered_two_point
from detequiv.derivations.sandwich import derive_two_point

TARGET_SECONDS = 30.0


def main(order: int = 6) -> None:
    lam, lam2 = sp.symbols("lam lam2", positive=True)
    D, N, P = sp.symbols("D N P", positive=True)
    S, M = Deterministic("Sigma", D), Deterministic("M", D)
    X, F = Gaussian("X", (P, D)), Gaussian("F", (N, D))
    WX, WF = X.T @ X / P, F.T @ F / N
    SH = S.sqrt() @ WX @ S.sqrt()
    AP = S.sqrt() @ WF @ S.sqrt()
    models = {
        "single layer (III), baseline": (SH, SH, None),
        "RF, features first": (SH @ WF, WF @ SH, None),
        "RF, data first (outer=W_X)": (SH @ WF, WF @ SH, "W_X"),
        "RF, data first, W_X A' form": (WX @ AP, AP @ WX, None),
    }
    print(
        f"{'model':<30} {'K':>2} {'derive (s)':>10} {'check (s)':>10} {'total (s)':>10} "
        f"{'/target':>8} {'/baseline':>9}  passed"
    )
    baseline = None
    for name, (x1, x2, outer) in models.items():
        t0 = time.perf_counter()
        expr = lam * lam2 * resolvent(x1, lam) @ M @ resolvent(x2, lam2)
        tp = derive_two_point(expr) if outer is None else derive_layered_two_point(expr, outer=outer)
        t1 = time.perf_counter()
        result = tp.check_series(order)
        t2 = time.perf_counter()
        total = t2 - t0
        baseline = baseline or total
        print(
            f"{name:<30} {order:>2} {t1 - t0:>10.2f} {t2 - t1:>10.2f} {total:>10.2f} "
            f"{total / TARGET_SECONDS:>8.2f} {total / baseline:>9.1f}  {result.passed}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
