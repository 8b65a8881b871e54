"""Benchmark: two-point derive + check_series(order) against the diagram sums alone.

Prints, per model, the wall time of derive_two_point + check_series at total order K
and, as a baseline measured in the same run, the time of the exact side alone
(mixed_moment of every word N X1^a M X2^b, a + b <= K, fresh caches). Usage:

    python benchmarks/bench_twopoint.py [K]
"""

from __future__ import annotations

import sys
import time

import sympy as sp

from detequiv.derivations.expressions import Deterministic, FreeMatrix, Gaussian, resolvent
from detequiv.derivations.laws import CumulantLaw, Wishart
from detequiv.derivations.mixed import mixed_moment
from detequiv.derivations.sandwich import derive_two_point


def main(order: int = 6) -> None:
    lam, lam2 = sp.symbols("lam lam2", positive=True)
    D, P = sp.symbols("D P", positive=True)
    S, M, C = (Deterministic(n, D) for n in ("Sigma", "M", "C"))
    X = Gaussian("X", (P, D))
    W = X.T @ X / P
    SH = S.sqrt() @ X.T @ X @ S.sqrt() / P
    B = FreeMatrix("B", D, CumulantLaw("b"))
    models = {
        "III Wishart, M C": (SH, SH, Wishart(D / P), order),
        "I Wishart, M C": (S @ W, W @ S, Wishart(D / P), order),
        "II Wishart, M C": (W @ S, S @ W, Wishart(D / P), order),
        "I symbolic cumulants": (S @ B, B @ S, CumulantLaw("b"), min(order, 4)),
    }
    print(f"{'model':<24} {'K':>2} {'derive+check (s)':>17} {'diagram sums (s)':>17} {'ratio':>6}  passed")
    for name, (x1, x2, law, k) in models.items():
        t0 = time.perf_counter()
        tp = derive_two_point(lam * lam2 * resolvent(x1, lam) @ M @ C @ resolvent(x2, lam2))
        result = tp.check_series(k)
        t1 = time.perf_counter()
        # baseline: the exact side alone, same words
        n, s, m, c = sp.symbols("N_test Sigma_sqrt M C", commutative=False)
        f = sp.Symbol(tp.free.name, commutative=False)
        half = tp.form == "III"
        a = (s, s) if not half else (s,)
        x1w = {"III": (*a, f, *a), "I": (s, s, f), "II": (f, s, s)}[tp.form]
        x2w = {"III": (*a, f, *a), "I": (f, s, s), "II": (s, s, f)}[tp.form]
        t2 = time.perf_counter()
        for total in range(k + 1):
            for i in range(total + 1):
                mixed_moment(sp.Mul(n, *(x1w * i), m, c, *(x2w * (total - i))), {f: law})
        t3 = time.perf_counter()
        base = t3 - t2
        print(f"{name:<24} {k:>2} {t1 - t0:>17.2f} {base:>17.2f} {(t1 - t0) / base:>6.1f}  {result.passed}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
