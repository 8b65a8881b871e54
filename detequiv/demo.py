"""The main job on a built-in example: ``detequiv demo``.

Walks through what the foundation does, each result with its witnesses:

1. planar combinatorics: NC(n) counted and streamed, the Kreweras complement,
   the diagrams of a trace word drawn as arcs and chords;
2. free cumulants: Marchenko-Pastur moments with a symbolic ratio (Narayana
   polynomials) and the round trip moments <-> cumulants;
3. the moments of a sample covariance ``Sigma^(1/2) W Sigma^(1/2)``, derived from the
   free product formula, checked against the planar diagram sum and by Monte
   Carlo at three sizes, together with a plausible wrong answer that the same check
   rejects; the comparison is plotted;
4. the S-transform of a product of two free Wishart matrices, multiplicative on series;
5. the one-point engine: the deterministic equivalent of a sample covariance's
   resolvent derived by named rules, printed as LaTeX, checked by its 1/lam series
   and by Monte Carlo, and evaluated on a grid of ridges against simulation (plot).
"""

from __future__ import annotations

import time
from math import comb
from pathlib import Path

import numpy as np
import sympy as sp

__all__ = ["run_demo"]


def _say(title: str) -> None:
    print()
    print(title)
    print("-" * len(title))


def run_demo(out: Path = Path("detequiv-demo"), quick: bool = False) -> int:
    """Run the demo, write figures to ``out``; returns 0 when every check passed."""
    from .codegen.witness import verify_mixed_moment
    from .derivations.cumulants import cumulants_from_moments, moments_from_cumulants
    from .derivations.laws import Wishart
    from .derivations.mixed import diagram_sum, mixed_moment
    from .derivations.quantities import tr
    from .derivations.transforms import s_series
    from .diagrams.partitions import NCPartition, catalan, iter_label_batches
    from .diagrams.words import Letter, TraceWord

    ok = True
    out.mkdir(parents=True, exist_ok=True)

    _say("1. Non-crossing partitions and planar diagrams")
    n = 14
    t0 = time.perf_counter()
    count = sum(len(b) for b in iter_label_batches(n))
    dt = time.perf_counter() - t0
    print(f"NC({n}) streamed: {count} partitions in {dt:.2f} s; Catalan({n}) = {catalan(n)}")
    ok &= count == catalan(n)
    pi = NCPartition([[0, 3], [1, 2], [4, 5]])
    sizes_sum = len(pi) + len(pi.kreweras())
    print(f"pi = {pi}, Kreweras K(pi) = {pi.kreweras()}, |pi| + |K(pi)| = {sizes_sum} = n + 1")
    word = TraceWord([Letter("S"), Letter("W", free=True)] * 3)
    diagrams = list(word.planar_diagrams())
    print(f"{word} has {len(diagrams)} planar diagrams (Catalan(3) = 5):")
    for d in diagrams:
        print(f"  {d}")

    _say("2. Free cumulants: Marchenko-Pastur moments with a symbolic ratio q")
    q = sp.Symbol("q", positive=True)
    moments = Wishart(q).moments(6)
    for k, m in enumerate(moments, start=1):
        narayana = sum(comb(k, j) * comb(k, j - 1) // k * q ** (j - 1) for j in range(1, k + 1))
        same = sp.expand(m - narayana) == 0
        ok &= same
        print(f"  m_{k} = {sp.expand(m)}   (Narayana polynomial: {'yes' if same else 'NO'})")
    back = cumulants_from_moments(6, moments)
    round_trip = all(sp.expand(c - q ** (k - 1)) == 0 for k, c in enumerate(back, start=1))
    ok &= round_trip
    print(f"  cumulants_from_moments recovers kappa_n = q^(n-1): {round_trip}")
    terms = len(moments_from_cumulants(40)[-1].args)
    print(f"  moments_from_cumulants(40) (generic symbols): m_40 has {terms} terms (p(40) = 37338)")

    _say("3. Moments of a sample covariance, derived and checked twice")
    S, W = sp.symbols("S W", commutative=False)
    expr = (S * W) ** 3
    exact = mixed_moment(expr, {W: Wishart(q)})
    print(f"  tr((S W)^3) = {exact}")
    same = sp.expand(exact - diagram_sum(expr, {W: Wishart(q)})) == 0
    ok &= same
    print(f"  planar diagram sum agrees exactly: {same}")
    wrong = tr(S**3) * (1 + 3 * q + q**2)  # as if S and W commuted: tr(S^3) tr(W^3)
    print(f"  a plausible wrong answer (S and W commuting): {wrong}")
    half = sp.Rational(1, 2)
    spectrum = {S: lambda N: np.linspace(0.25, 2.0, N)}
    sizes = (50, 100, 200) if quick else (100, 200, 400)
    rng = np.random.default_rng(2026)
    reports = {}
    for label, claim in (("derived", exact), ("wrong", wrong)):
        reports[label] = verify_mixed_moment(
            expr,
            {W: Wishart(q)},
            deterministic=spectrum,
            values={q: half},
            exact=claim,
            sizes=sizes,
            n_samples=12,
            rng=rng,
        )
        print(f"  Monte Carlo, {label} formula, q = 1/2:")
        print("    " + str(reports[label]).replace("\n", "\n    "))
    ok &= reports["derived"].passed and not reports["wrong"].passed
    _plot(reports, out / "verify.png")
    _draw(diagrams, out / "diagrams.png")
    print(f"  figures: {out / 'verify.png'}, {out / 'diagrams.png'}")

    _say("4. S-transform of a product of free Wishart matrices")
    t = sp.Symbol("t")
    p = sp.Symbol("p", positive=True)
    V = sp.Symbol("V", commutative=False)
    order = 5
    prod_moments = [mixed_moment((W * V) ** k, {W: Wishart(q), V: Wishart(p)}) for k in range(1, order + 1)]
    s_prod = s_series(prod_moments, order, t)
    closed = sp.series(1 / ((1 + q * t) * (1 + p * t)), t, 0, order).removeO()
    same = all(sp.expand((s_prod - closed).coeff(t, j)) == 0 for j in range(order))
    ok &= same
    print(f"  S_(WV)(t) = {sp.expand(s_prod)} + O(t^{order})")
    print(f"  equals S_W(t) S_V(t) = 1/((1 + q t)(1 + p t)) on the series: {same}")

    ok &= _one_point(out, quick)

    print()
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


def _plot(reports: dict, path: Path) -> None:
    try:
        from .diagrams.graphs import require_matplotlib

        plt = require_matplotlib()
    except Exception as exc:  # matplotlib is an optional extra
        print(f"  (no plot: {exc})")
        return
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for k, (label, rep) in enumerate(reports.items()):
        ns = np.array([r.N for r in rep.rows], dtype=float)
        err = np.array([abs(r.error) for r in rep.rows])
        tol = np.array([r.tolerance for r in rep.rows])
        ax.errorbar(
            ns * (1 + 0.03 * k), err, yerr=[4 * r.se for r in rep.rows], fmt="o-", label=f"|MC - {label}|"
        )
        if k == 0:
            ax.plot(ns, tol, "k--", label="tolerance 4 s.e. + 5|DE|/N")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N")
    ax.set_ylabel("error of tr((S W)^3)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _draw(diagrams: list, path: Path) -> None:
    try:
        from .diagrams.graphs import draw_diagram, require_matplotlib

        plt = require_matplotlib()
    except Exception:
        return
    fig, axes = plt.subplots(1, len(diagrams), figsize=(2.6 * len(diagrams), 3.3))
    for ax, d in zip(axes, diagrams, strict=True):
        draw_diagram(d, style="chords", ax=ax)
        ax.set_title(" ".join(str(t) for t in d.trace_factors), fontsize=8, pad=14)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _one_point(out: Path, quick: bool) -> bool:
    from . import Deterministic, Gaussian, derive, resolvent, to_latex

    _say("5. One-point deterministic equivalent of a sample covariance")
    lam = sp.Symbol("lam", positive=True)
    D, P = sp.symbols("D P", positive=True)
    Sigma = Deterministic("Sigma", D)
    X = Gaussian("X", (P, D))
    eq = derive(lam * resolvent(Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P, lam))
    print("  " + str(eq).replace("\n", "\n  "))
    print("  LaTeX:")
    print("    " + to_latex(eq, derivation=False).replace("\n", "\n    "))
    series = eq.check_series(8)
    print(f"  {series}")
    rng = np.random.default_rng(7)
    mc = eq.check_monte_carlo(sizes=(50, 100, 200) if quick else (100, 200, 400), rng=rng, n_samples=10)
    print(f"  Monte Carlo at real and complex lam, two test matrices: {'passed' if mc.passed else 'FAILED'}")
    # learning-curve-like sweep: tr lam (lam + Sigma_hat)^-1 against simulation, power-law spectrum
    n_dim, n_samp = (150, 300) if quick else (300, 600)
    spectrum = np.arange(1, n_dim + 1, dtype=float) ** -1.0
    lams = np.logspace(-3, 1, 9)
    theory = [eq.evaluate({Sigma: spectrum, lam: float(v), D: n_dim, P: n_samp}).trace() for v in lams]
    sims = []
    for v in lams:
        vals = []
        for _ in range(4):
            Z = rng.standard_normal((n_samp, n_dim)) * np.sqrt(spectrum)
            e = np.linalg.eigvalsh(Z.T @ Z / n_samp)
            vals.append(np.mean(v / (v + e)))
        sims.append((np.mean(vals), np.std(vals, ddof=1) / 2))
    worst = max(abs(t - s) / (4 * se + 5 * abs(t) / n_dim) for t, (s, se) in zip(theory, sims, strict=True))
    print(
        f"  tr lam(lam + Sigma_hat)^-1 on {len(lams)} ridges, D = {n_dim}, P = {n_samp}: "
        f"worst |err|/tol = {worst:.2f}"
    )
    grid = np.logspace(-3, 1, 60)
    curve = [eq.evaluate({Sigma: spectrum, lam: float(v), D: n_dim, P: n_samp}).trace() for v in grid]
    _plot_sweep(grid, curve, lams, sims, out / "one_point.png")
    print(f"  figure: {out / 'one_point.png'}")
    return bool(series.passed and mc.passed and worst < 1)


def _plot_sweep(grid: np.ndarray, theory: list, lams: np.ndarray, sims: list, path: Path) -> None:
    try:
        from .diagrams.graphs import require_matplotlib

        plt = require_matplotlib()
    except Exception:
        return
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(grid, theory, "-", label="deterministic equivalent  1 - df1(kappa)")
    ax.errorbar(lams, [s for s, _ in sims], yerr=[2 * e for _, e in sims], fmt="o", label="simulation")
    ax.set_xscale("log")
    ax.set_xlabel("ridge lam")
    ax.set_ylabel("tr lam (lam + Sigma_hat)^-1")
    ax.set_title("power-law spectrum k^-1, D/P = 1/2", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
