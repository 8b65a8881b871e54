"""Benchmark: free moments <-> cumulants, all figures and baselines measured in one run.

1. ``moments_from_cumulants(40)`` with the default symbols (the full tuple m_1..m_40,
   215 307 terms, as sympy expressions), split into polynomial construction, conversion
   to sympy, and the rest (freeing temporaries, the garbage collector); the same for
   ``cumulants_from_moments(40)``. For the conversion, the alternatives (sympy's
   ``PolyElement.as_expr`` on a ring built with ``from_dict``, and ``Add(*terms)`` of
   ``Mul(coeff, Pow, ...)``) are timed on the same polynomials at a smaller order and
   checked to give identical expressions.
2. Order 14 against plain sympy-expression baselines written below: the functional
   equation ``m_n = sum_s kappa_s [z^(n-s)] M(z)^s`` iterated with ``sp.expand``
   (``P[s][j]`` table), the same with the inner sum written over compositions, and
   optionally (``--naive``) the sum over NC(14) building ``Mul``/``Add`` products.
3. Marchenko-Pastur moments with a symbolic ratio ``q`` to order 20, side by side with
   RMTool's Python port (PyPI ``rmtool``, ``Lmz2MomS(wishartpol(c), 20)``), installed
   for this run only into a temporary directory if it is not importable; the
   polynomials are checked to be identical after mapping ``c -> q``.
4. Numbers-only inputs (rationals) at order 40, both directions.

Fast calls report the best of a few repeats (the machine may be shared); baselines run
once. Nothing here is asserted by the test suite.

Usage: ``python benchmarks/bench_moments.py [--skip-rmtool] [--naive]
[--rmtool-dir DIR] [--convert-order 30]``
"""

from __future__ import annotations

import argparse
import gc
import importlib
import itertools
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sympy as sp  # noqa: E402

from detequiv.derivations import cumulants as C  # noqa: E402
from detequiv.derivations.cumulants import (  # noqa: E402
    cumulant_symbols,
    cumulants_from_moments,
    moments_from_cumulants,
)


def best(fn, repeats=3):
    """Best wall time over ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        result = None
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def once(fn):
    gc.collect()
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def fmt(seconds):
    if seconds >= 1:
        return f"{seconds:8.3f} s "
    if seconds >= 1e-3:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds * 1e6:8.1f} us"


# --------------------------------------------------------------------------- baselines


def baseline_recursion(order):
    """Plain sympy: M = 1 + sum_s kappa_s z^s M^s with P[s][j] = [z^j] M^s, sp.expand."""
    kap = [None, *cumulant_symbols(order)]
    m = [sp.S.One] + [sp.S.Zero] * order
    P = [[sp.S.One] + [sp.S.Zero] * order for _ in range(order + 1)]
    for n in range(1, order + 1):
        m[n] = sp.expand(sp.Add(*[kap[s] * P[s][n - s] for s in range(1, n + 1)]))
        for s in range(1, order - n + 1):
            P[s][n] = sp.expand(sp.Add(*[m[i] * P[s - 1][n - i] for i in range(n + 1)]))
    return tuple(m[1:])


def _weak_compositions(total, parts):
    for cut in itertools.combinations(range(total + parts - 1), parts - 1):
        prev, out = -1, []
        for c in (*cut, total + parts - 1):
            out.append(c - prev - 1)
            prev = c
        yield out


def baseline_compositions(order):
    """Plain sympy: m_n = sum_s kappa_s sum over compositions of n-s into s parts."""
    kap = [None, *cumulant_symbols(order)]
    m = [sp.S.One]
    for n in range(1, order + 1):
        terms = []
        for s in range(1, n + 1):
            inner = [sp.Mul(*[m[i] for i in comp]) for comp in _weak_compositions(n - s, s)]
            terms.append(kap[s] * sp.Add(*inner))
        m.append(sp.expand(sp.Add(*terms)))
    return tuple(m[1:])


def _nc_partitions(n):
    """Non-crossing partitions of 0..n-1 as lists of block sizes (a stack recursion)."""

    def rec(i, open_blocks, sizes):
        # open_blocks: indices into sizes of blocks still allowed to grow (a stack)
        if i == n:
            yield sizes
            return
        for depth in range(len(open_blocks)):
            b = open_blocks[depth]
            sizes[b] += 1
            yield from rec(i + 1, open_blocks[: depth + 1], sizes)
            sizes[b] -= 1
        sizes.append(1)
        yield from rec(i + 1, (*open_blocks, len(sizes) - 1), sizes)
        sizes.pop()

    yield from rec(0, (), [])


def baseline_naive_nc(order):
    """Plain sympy: m_n = sum over NC(n) of prod kappa_|V|, one Mul per partition."""
    kap = [None, *cumulant_symbols(order)]
    return tuple(
        sp.Add(*[sp.Mul(*[kap[s] for s in sizes]) for sizes in _nc_partitions(n)])
        for n in range(1, order + 1)
    )


# --------------------------------------------------------------------------- conversions


def _sparse_polys(order):
    """The polynomials m_1..m_order as {exponent tuple: int}, from the construction."""
    gens = cumulant_symbols(order)
    index = {g: i for i, g in enumerate(gens)}
    terms, _ = C._partition_terms(order, gens, "moments")
    polys = []
    for n in range(1, order + 1):
        poly = {}
        for by_len in terms[n]:
            for c, mono in by_len:
                exps = [0] * order
                for f in mono:
                    base, e = (f.base, int(f.exp)) if f.is_Pow else (f, 1)
                    exps[index[base]] = e
                poly[tuple(exps)] = c
        polys.append(poly)
    return gens, polys


def convert_ring(gens, polys):
    from sympy.polys.domains import ZZ
    from sympy.polys.rings import PolyRing

    ring = PolyRing(gens, ZZ)
    return tuple(ring.from_dict(p).as_expr() for p in polys)


def convert_add_mul(gens, polys):
    return tuple(
        sp.Add(
            *[
                sp.Mul(sp.Integer(c), *[g**e for g, e in zip(gens, mon, strict=True) if e])
                for mon, c in p.items()
            ]
        )
        for p in polys
    )


# --------------------------------------------------------------------------- rmtool


def import_rmtool(target):
    try:
        return importlib.import_module("rmtool"), "already importable"
    except ImportError:
        pass
    if target is None:
        target = tempfile.mkdtemp(prefix="rmtool-")
    if not os.path.isdir(os.path.join(target, "rmtool")):
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
        cmd += ["--disable-pip-version-check", "--target", target, "rmtool"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return None, f"pip install failed: {done.stderr.strip()[-300:]}"
    sys.path.append(target)  # appended: our sympy/numpy keep precedence
    return importlib.import_module("rmtool"), f"installed for this run in {target}"


# --------------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip-rmtool", action="store_true")
    ap.add_argument("--naive", action="store_true", help="also time the NC(14) sum")
    ap.add_argument("--rmtool-dir", default=None)
    ap.add_argument("--convert-order", type=int, default=30)
    args = ap.parse_args(argv)

    print(f"python {sys.version.split()[0]}, sympy {sp.__version__}")

    # 1. order 40, default symbols ---------------------------------------------------
    print("\n1. default symbols, order 40 (the full tuple m_1..m_40)")
    t_m40, m40 = best(lambda: moments_from_cumulants(40))
    nterms = sum(len(sp.Add.make_args(e)) for e in m40)
    print(f"   moments_from_cumulants(40)   {fmt(t_m40)}   ({nterms} terms)")
    del m40
    t_k40, k40 = best(lambda: cumulants_from_moments(40))
    print(f"   cumulants_from_moments(40)   {fmt(t_k40)}")
    del k40

    gens = cumulant_symbols(40)
    splits = []
    for _ in range(3):
        gc.collect()
        with C._gc_paused():
            t0 = time.perf_counter()
            terms, _ = C._partition_terms(40, gens, "moments")
            t1 = time.perf_counter()
            ints = {}
            out = tuple(C._assemble_partition_terms(terms[n], ints) for n in range(1, 41))
            t2 = time.perf_counter()
            del terms
        gc.enable()
        [[] for _ in range(1000)]  # let the collector run (it would in the real call)
        t3 = time.perf_counter()
        splits.append((t1 - t0, t2 - t1, t3 - t2))
        del out
    cons, conv, rest = min(splits, key=sum)
    print(f"   split: polynomial construction {fmt(cons)}, conversion to sympy {fmt(conv)},")
    print(f"          freeing temporaries + collector {fmt(rest)}")

    co = args.convert_order
    gens_c, polys = _sparse_polys(co)
    n_c = sum(len(p) for p in polys)
    print(f"   conversion alternatives on the same polynomials, order {co} ({n_c} terms):")
    t_ours, ours = best(lambda: moments_from_cumulants(co))
    t_ring, ring = once(lambda: convert_ring(gens_c, polys))
    t_addmul, addmul = once(lambda: convert_add_mul(gens_c, polys))
    same = ours == ring == addmul
    print(f"     ours (construction + canonical assembly) {fmt(t_ours)}")
    print(f"     ring.from_dict(...).as_expr()            {fmt(t_ring)}  x{t_ring / t_ours:.0f}")
    print(f"     Add(*[Mul(coeff, Pow...)])               {fmt(t_addmul)}  x{t_addmul / t_ours:.0f}")
    print(f"     identical expressions: {same}")

    # 2. order 14 against plain sympy ---------------------------------------------
    print("\n2. order 14 against plain sympy-expression baselines")
    t14, m14 = best(lambda: moments_from_cumulants(14), repeats=7)
    print(f"   moments_from_cumulants(14)            {fmt(t14)}")
    t_rec, rec = once(lambda: baseline_recursion(14))
    print(f"   baseline: P[s][j] recursion + expand  {fmt(t_rec)}  ratio x{t_rec / t14:.0f}")
    t_comp, comp = once(lambda: baseline_compositions(14))
    print(f"   baseline: compositions + expand       {fmt(t_comp)}  ratio x{t_comp / t14:.0f}")
    print(f"   identical results: {m14 == rec == comp}")
    if args.naive:
        t_nc, nc = once(lambda: baseline_naive_nc(14))
        print(f"   baseline: sum over NC(n) (naive)      {fmt(t_nc)}  ratio x{t_nc / t14:.0f}")
        print(f"   identical results: {m14 == nc}")
    else:
        t_nc, nc = once(lambda: baseline_naive_nc(10))
        t10, m10 = best(lambda: moments_from_cumulants(10), repeats=7)
        print(
            f"   baseline: sum over NC(n) (naive), order 10 only: {fmt(t_nc)} vs "
            f"{fmt(t10)}  ratio x{t_nc / t10:.0f}  identical: {m10 == nc}  "
            "(--naive: order 14)"
        )

    # 3. Marchenko-Pastur, symbolic q, order 20 ----------------------------------------
    print("\n3. Marchenko-Pastur moments, symbolic ratio q, order 20")
    q = sp.Symbol("q")
    t_mp, mp = best(lambda: moments_from_cumulants(20, lambda n: q ** (n - 1)), repeats=5)
    print(f"   moments_from_cumulants(20, q**(n-1))   {fmt(t_mp)}")
    if args.skip_rmtool:
        print("   rmtool: skipped (--skip-rmtool)")
    else:
        rmtool, how = import_rmtool(args.rmtool_dir)
        print(f"   rmtool: {how}")
        if rmtool is not None:
            c = importlib.import_module("rmtool.symbols").c
            t_rm, rm = once(lambda: rmtool.Lmz2MomS(rmtool.wishartpol(c), 20))
            identical = len(rm) == 21 and all(
                sp.expand(sp.sympify(a).subs(c, q) - b) == 0 for a, b in zip(rm[1:], mp, strict=True)
            )
            print(f"   rmtool Lmz2MomS(wishartpol(c), 20)     {fmt(t_rm)}")
            print(f"   identical polynomials (c -> q): {identical};  ratio x{t_rm / t_mp:.0f}")

    # 4. numbers only ---------------------------------------------------------------
    print("\n4. numbers only, order 40")
    half = [Fraction(1, 2) ** (n - 1) for n in range(1, 41)]
    t_num, mom = best(lambda: moments_from_cumulants(40, half), repeats=5)
    print(f"   MP(1/2) moments                        {fmt(t_num)}")
    t_inv, back = best(lambda: cumulants_from_moments(40, mom), repeats=5)
    print(
        f"   ... and back to cumulants              {fmt(t_inv)}  round trip: "
        f"{list(back) == [sp.Rational(x) for x in half]}"
    )
    t_sub, sub = once(
        lambda: tuple(e.xreplace(dict(zip(gens, half, strict=True))) for e in moments_from_cumulants(20))
    )
    print(f"   (substituting into the generic order-20 tuple instead: {fmt(t_sub)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
