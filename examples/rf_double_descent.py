r"""Random-feature double descent: test error against N / P at fixed P, theory and simulation.

Ridge regression on ``N`` linear random features :math:`Fx/\sqrt N` of ``P`` samples
(:class:`detequiv.RandomFeatureRidge`, MATH.md 4.5), covariance eigenvalues
:math:`\lambda_k=k^{-\alpha}`, target :math:`\beta_k=k^{-b}` (``k = 1..D``), label noise
:math:`\sigma^2` and a small ridge. At ``lam -> 0`` the test error peaks at the interpolation
threshold ``N = P`` (the label-noise variance :math:`\sigma^2\gamma_1/(1-\gamma_1)` and the
feature variance blow up there) and descends again for ``N >> P`` towards plain ridge
regression. The script

1. derives the test error with its fine-grained split (bias :math:`\mathcal B`, feature
   variance :math:`\mathcal V_F`, data variance :math:`\mathcal V_X`, interaction
   :math:`\mathcal V_{XF}`, label-noise variance, noise) and evaluates it on a grid of
   ``N / P`` with the generated numpy evaluator (:func:`detequiv.loss_to_module`);
2. simulates random-feature ridge fits at a few ``N / P``
   (:func:`detequiv.models.random_features_mc.simulate_random_features`: two data sets and
   two feature matrices per seed, replica overlaps for the split), ``--seeds`` draws per
   point, means with standard-error bars;
3. draws the total (log scale) and the stacked split (``examples/out/rf_double_descent.png``;
   without matplotlib it prints the table and skips the figure).

Agreement rule (the project's Monte Carlo rule, MATH.md):
``|mean - theory| < 4 s.e. + 5 |theory| / D`` for every term and the total. ``main`` returns
0 when every simulated point passes, 1 otherwise.

Run ``python examples/rf_double_descent.py --help``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # threaded BLAS is slow on a loaded machine

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp

import detequiv as de
from detequiv.codegen import loss_to_module
from detequiv.models.random_features_mc import simulate_random_features
from detequiv.plotting import figure_style

N_SE = 4.0
C_FINITE = 5.0
#: the fine-grained split, bottom to top of the stacked panel
SPLIT = ("bias", "variance_features", "variance_data", "variance_interaction", "variance_noise", "noise")
LABELS = {
    "bias": r"$\mathcal{B}$",
    "variance_features": r"$\mathcal{V}_F$",
    "variance_data": r"$\mathcal{V}_X$",
    "variance_interaction": r"$\mathcal{V}_{XF}$",
    "variance_noise": r"$\sigma^2\gamma_1/(1-\gamma_1)$",
    "noise": r"$\sigma^2$",
}


@functools.cache
def derive_loss() -> Any:
    """The derived test error of random-feature ridge regression (cached: it takes seconds)."""
    d, n, p = sp.symbols("D N P", positive=True)
    model = de.RandomFeatureRidge(
        de.Deterministic("Sigma", d),
        de.Gaussian("X", (p, d)),
        de.Gaussian("F", (n, d)),
        de.DeterministicVector("beta", d),
    )
    return model.test_error()


def _problem(d: int, alpha: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(1, d + 1, dtype=float)
    return k**-alpha, k**-b


def _simulate(
    spectrum: np.ndarray, beta: np.ndarray, n: int, p: int, lam: float, sigma2: float, seeds: int, seed: int
) -> dict[str, np.ndarray]:
    """Per-seed values of every term, the realised ``E_test`` and the cumulative split."""
    rng = np.random.default_rng(seed)
    draws = [simulate_random_features(spectrum, beta, n, p, lam, sigma2, rng) for _ in range(seeds)]
    out = {key: np.array([row[key] for row in draws]) for key in draws[0]}
    cumulative = np.zeros(seeds)
    for key in SPLIT:
        cumulative = cumulative + out[key]
        out["up_to_" + key] = cumulative.copy()
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--D", type=int, default=300, help="input dimension (default 300)")
    parser.add_argument("--P", type=int, default=100, help="samples, fixed (default 100)")
    parser.add_argument("--alpha", type=float, default=1.0, help="eigenvalues k^-alpha (default 1.0)")
    parser.add_argument("--b", type=float, default=0.6, help="target beta_k = k^-b (default 0.6)")
    parser.add_argument("--noise", type=float, default=0.25, help="label noise sigma^2 (default 0.25)")
    parser.add_argument("--lam", type=float, default=1e-4, help="ridge (default 1e-4)")
    parser.add_argument(
        "--seeds", type=int, default=20, help="replica draws per simulated point (default 20)"
    )
    parser.add_argument(
        "--ratios", default="0.3,0.6,2,5", help="N/P of the simulated points (default 0.3,0.6,2,5)"
    )
    parser.add_argument("--points", type=int, default=200, help="theory grid points over N/P (default 200)")
    parser.add_argument("--low", type=float, default=0.1, help="smallest N/P of the grid (default 0.1)")
    parser.add_argument("--high", type=float, default=10.0, help="largest N/P of the grid (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "out"), help="folder of the PNG")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Print theory against simulation, draw the figure; 0 when every simulated point agrees."""
    args = _parser().parse_args(argv)
    if args.D < 2 or args.P < 1 or args.seeds < 2 or args.points < 2 or not args.lam > 0:
        print(
            f"need --D >= 2, --P >= 1, --seeds >= 2, --points >= 2, --lam > 0; got --D {args.D} "
            f"--P {args.P} --seeds {args.seeds} --points {args.points} --lam {args.lam}",
            file=sys.stderr,
        )
        return 2
    d, p, lam, sigma2 = args.D, args.P, args.lam, args.noise
    spectrum, beta = _problem(d, args.alpha, args.b)
    loss = derive_loss()
    # the theory curve comes from the generated numpy evaluator (vectorized over N)
    namespace: dict[str, Any] = {}
    exec(compile(loss_to_module(loss, "rf_test_error"), "rf_test_error", "exec"), namespace)  # noqa: S102
    evaluator = namespace["evaluate"]

    def theory_many(ns: Any) -> dict[str, np.ndarray]:
        n_values = np.asarray(ns, dtype=float)
        out = evaluator(lam, Sigma=spectrum, beta=beta, D=d, N=n_values, P=p, sigma2=sigma2)
        return {key: np.atleast_1d(out[key]) for key in (*SPLIT, "total")}

    def theory(n: int) -> dict[str, float]:
        return {key: float(v[0]) for key, v in theory_many([n]).items()}

    grid = np.geomspace(args.low, args.high, args.points) * p
    curves = theory_many(grid)
    sim_ns = [max(1, round(float(r) * p)) for r in args.ratios.split(",")]
    print(
        f"# random-feature ridge: D = {d}, P = {p}, lam = {lam:g}, lambda_k = k^-{args.alpha:g}, "
        f"beta_k = k^-{args.b:g}, sigma^2 = {sigma2:g}"
    )
    print(f"# {args.seeds} replica draws per point; rule |mean - theory| < 4 s.e. + 5 |theory| / D")

    worst_z, passed = 0.0, True
    rows: list[str] = []
    sims: dict[int, dict[str, np.ndarray]] = {}
    for i, n in enumerate(sim_ns):
        sim = _simulate(spectrum, beta, n, p, lam, sigma2, args.seeds, args.seed + 1000 * i)
        sims[n] = sim
        th = theory(n)
        for key in (*SPLIT, "total"):
            values = sim["E_test" if key == "total" else key]
            mean, se = float(values.mean()), float(values.std(ddof=1) / np.sqrt(args.seeds))
            if se <= 1e-12 * max(abs(mean), 1.0):  # a constant (the noise): rounding only
                se = 0.0
                mean = th[key] if abs(mean - th[key]) <= 1e-12 * max(abs(mean), 1.0) else mean
            z = abs(mean - th[key]) / se if se > 0 else (0.0 if mean == th[key] else np.inf)
            ok = abs(mean - th[key]) <= N_SE * se + C_FINITE * abs(th[key]) / d
            worst_z, passed = max(worst_z, z), passed and ok
            rows.append(
                f"N/P={n / p:<6.3g} {key:<21} theory {th[key]:11.5g}  sim {mean:11.5g} +- {se:8.2g}"
                f"  z {z:5.2f}  {'ok' if ok else 'FAIL'}"
            )
    peak = grid[int(np.argmax(curves["total"]))]
    print("\n".join(rows))
    print(f"max |theory - simulation| / s.e. = {worst_z:.3f} over {len(rows)} terms at {len(sim_ns)} points")
    print(
        f"theory peak of the test error on the grid: N/P = {peak / p:.3g} "
        f"(E_test = {curves['total'].max():.4g}; interpolation threshold N = P)"
    )
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib not installed (pip install matplotlib): table only, no figure")
    else:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "rf_double_descent.png"
        _draw(Figure, path, grid, curves, sims, p, args)
        print(f"wrote {path}")
    print("agreement: " + ("PASS" if passed else "FAIL"))
    return 0 if passed else 1


@figure_style()
def _draw(
    figure: Any,
    path: Path,
    grid: Any,
    curves: dict[str, np.ndarray],
    sims: dict[int, dict[str, np.ndarray]],
    p: int,
    args: Any,
) -> None:
    x = np.array(grid) / p
    fig = figure(figsize=(12, 4.6))
    left, right = fig.subplots(1, 2)
    left.loglog(x, curves["total"], color="C0", label="test error (theory)")
    left.axhline(args.noise, color="gray", ls=":", label=r"$\sigma^2$")
    left.axvline(1.0, color="k", lw=0.6, ls="--", label="N = P")
    left.axvline(args.D / p, color="k", lw=0.6, ls="-.", label="N = D")
    for n, sim in sims.items():
        e = sim["E_test"]
        left.errorbar(n / p, e.mean(), yerr=e.std(ddof=1) / np.sqrt(e.size), fmt="o", color="C0", capsize=3)
    left.set_xlabel("N / P")
    left.set_ylabel("test error")
    left.set_title(f"double descent, P = {p}, lam = {args.lam:g}")
    left.legend(fontsize=8)

    right.stackplot(x, *(curves[k] for k in SPLIT), labels=[LABELS[k] for k in SPLIT], alpha=0.55)
    for n, sim in sims.items():
        for j, key in enumerate(SPLIT):
            c = sim["up_to_" + key]
            right.errorbar(
                n / p, c.mean(), yerr=c.std(ddof=1) / np.sqrt(c.size), fmt="o", ms=3, color=f"C{j}", capsize=2
            )
    right.set_xscale("log")
    right.set_ylim(0, 1.6 * float(np.max(curves["total"][x > 2])) if np.any(x > 2) else None)
    right.set_xlabel("N / P")
    right.set_title("fine-grained split (stacked; points: cumulative simulated sums)")
    right.legend(fontsize=8, loc="upper right")
    fig.suptitle(
        rf"random features, D = {args.D}, $\lambda_k=k^{{-{args.alpha:g}}}$, $\beta_k=k^{{-{args.b:g}}}$, "
        rf"$\sigma^2$ = {args.noise:g}"
    )
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
