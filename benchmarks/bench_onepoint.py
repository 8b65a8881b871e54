"""Benchmark: derive + check_series(order) for one-point equivalents, measured in one run.

For each model it prints the time of ``derive``, of ``check_series(order)`` (the whole
exact witness: series solution of the fixed points in the Laurent polynomial ring, the
expansion of the equivalent, the planar diagram sums, and the comparison), and, as a
baseline measured in the same run, the time of the diagram sums alone
(``mixed_moment`` of ``M A^k`` for ``k = 0..order``, fresh caches). The ratio
``check / baseline`` is the cost of the witness relative to computing the ground truth.
Issue 3 asks for derive + check_series(8) of the random-feature model in <= 10 s.

Usage: ``PYTHONPATH=. python benchmarks/bench_onepoint.py [--order 8] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import time

import sympy as sp

import detequiv as de
from detequiv.derivations.algebra import gaussian_gram_to_wishart, product_factors, resolvent_parts
from detequiv.derivations.mixed import mixed_moment
from detequiv.derivations.series import TEST_LETTER, factor_letters


def models() -> dict[str, object]:
    lam = sp.Symbol("lam", positive=True)
    D, P, N, K = sp.symbols("D P N K", positive=True)
    Sigma = de.Deterministic("Sigma", D)
    X, F, G = de.Gaussian("X", (P, D)), de.Gaussian("F", (N, D)), de.Gaussian("G", (K, D))
    B = de.FreeMatrix("B", D, de.CumulantLaw("B"))
    s = Sigma.sqrt()
    return {
        "sample covariance": lam * de.resolvent(s @ X.T @ X @ s / P, lam),
        "random features, features first": lam * de.resolvent((F.T @ F / N) @ s @ X.T @ X @ s / P, lam),
        "random features, data first": lam * de.resolvent(s @ X.T @ X @ s @ (F.T @ F) / (P * N), lam),
        "RF feature space, features first": lam * de.resolvent(F @ s @ X.T @ X @ s @ F.T / (N * P), lam),
        "RF feature space, data first": (
            lam * de.resolvent(F @ s @ X.T @ X @ s @ F.T / (N * P), lam),
            ("X", "F"),
        ),
        "three Gram layers": lam * de.resolvent(s @ (G.T @ G / K) @ (F.T @ F / N) @ (X.T @ X / P) @ s, lam),
        "symbolic free law B": lam * de.resolvent(s @ B @ s, lam),
    }


def baseline(expr: object, order: int) -> float:
    _, res = resolvent_parts(expr)
    coeff, factors = product_factors(res.arg)
    if isinstance(factors[0], de.Gaussian):  # feature space: rotate F Y F^T to Y F^T F (cyclicity)
        factors = (*factors[1:], factors[0])
    coeff, factors, _ = gaussian_gram_to_wishart(coeff, factors)
    names = {f.base.name for f in factors if isinstance(f, de.derivations.expressions.Sqrt)}
    word, laws = factor_letters(factors, names)
    t = time.perf_counter()
    for k in range(order + 1):
        mixed_moment(sp.Mul(TEST_LETTER, *(word * k)), laws)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"order {args.order}, best of {args.repeat}")
    print(f"{'model':36} {'derive s':>9} {'check s':>9} {'total s':>9} {'baseline s':>10} {'check/base':>10}")
    for name, model in models().items():
        expr, order = model if isinstance(model, tuple) else (model, None)
        best_d = best_c = best_b = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            eq = de.derive(expr, order=order)
            t1 = time.perf_counter()
            ok = eq.check_series(args.order).passed
            t2 = time.perf_counter()
            best_d, best_c = min(best_d, t1 - t0), min(best_c, t2 - t1)
            best_b = min(best_b, baseline(expr, args.order))
            assert ok, name
        total = best_d + best_c
        print(f"{name:36} {best_d:9.3f} {best_c:9.3f} {total:9.3f} {best_b:10.3f} {best_c / best_b:10.1f}")


if __name__ == "__main__":
    main()
