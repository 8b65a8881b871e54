r"""Ridge regression learning curves: theory (generated evaluator) overlaid with simulation.

The covariance has eigenvalues :math:`\lambda_k=k^{-\alpha}` and the target coefficients
:math:`\beta_k^2=k^{-b}` (``k = 1..D``), label noise :math:`\sigma^2`. The script

1. derives the test and training errors of :class:`detequiv.RidgeRegression` and writes
   their standalone numpy evaluators with :func:`detequiv.loss_to_module` (imported back
   from files, as a user would);
2. draws the learning curves over ``P / D`` in ``[0.1, 4]`` at a small ridge and at
   ``lam = 1e-4`` (ridge ~0), and the bias / variance / noise split against ``lam`` at
   fixed ``P``;
3. overlays ridge regressions fitted on sampled data
   (:func:`detequiv.models.ridge_mc.simulate_ridge`, ``--seeds`` data sets per point):
   means with standard-error bars;
4. prints the power-law exponents (see :func:`scaling_exponents`).

Agreement rule (the project's Monte Carlo rule, MATH.md):
``|mean - theory| < 4 s.e. + 5 |theory| / D``. ``main`` returns 0 when every simulated
point passes, 1 otherwise.

Run ``python examples/ridge_learning_curves.py --help``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp

import detequiv as de
from detequiv.models.ridge_mc import simulate_ridge
from detequiv.plotting import figure_style

N_SE = 4.0
C_FINITE = 5.0


def _load_evaluators() -> dict[str, Any]:
    """Generate the test- and training-error modules, write them to files and import them."""
    d, p = sp.symbols("D P", positive=True)
    model = de.RidgeRegression(
        de.Deterministic("Sigma", d), de.Gaussian("X", (p, d)), de.DeterministicVector("beta", d)
    )
    losses = {"ridge_test_error": model.test_error(), "ridge_training_error": model.training_error()}
    modules: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, loss in losses.items():
            path = Path(folder) / f"{name}.py"
            path.write_text(de.loss_to_module(loss, name))
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            modules[name] = module
    return modules


def _problem(d: int, alpha: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(1, d + 1, dtype=float)
    return k**-alpha, np.sqrt(k**-b)


def _fit_exponent(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log x, sign flipped (y ~ x^-exponent)."""
    return float(-np.polyfit(np.log(x), np.log(y), 1)[0])


def scaling_exponents(
    test_error: Any, alpha: float, b: float, sigma2: float, d: int, lam0: float
) -> dict[str, float]:
    r"""Fitted and predicted power-law exponents of the learning curve.

    * ``bias_fit`` / ``bias_theory``: the noise-free part (the bias) decays as
      :math:`P^{-\min(\alpha+b-1,\,2\alpha)}` for :math:`D\gg P\gg1` at ridge ~0 (capacity
      :math:`\alpha`, source exponent :math:`b`: the modes :math:`k\lesssim P` are learned,
      :math:`\kappa\sim P^{-\alpha}`, and the tail :math:`\sum_{k>P}\lambda_k\beta_k^2` is left;
      saturation at :math:`\kappa^2`). Fitted on the evaluator at ``D = 200000``,
      ``P`` in ``[200, 2000]``, so that finite ``D`` does not bend it.
    * ``excess_fit`` / ``excess_theory``: :math:`E_{test}-\sigma^2` at ``lam0`` for ``P``
      in ``[2D, 4D]`` (the plotted ``D``). There it is variance-limited: at ``lam -> 0``
      and ``P > D`` the bias vanishes and the variance is exactly
      :math:`\sigma^2q/(1-q)`, ``q = D / P``; ``excess_theory`` is the slope of that
      closed form over the same range (with noise the excess does not decay with the
      source/capacity rate). ``ridge_over_smallest`` is ``lam0 / D^-alpha``: unless it
      is small, ``lam0`` still regularizes the smallest modes (the effective ridge is
      about ``lam0 / (1 - q)``), lowers the variance and flattens the fitted slope.
    """
    big = 200_000
    spectrum, beta = _problem(big, alpha, b)
    ps_big = np.geomspace(200, 2000, 12)
    bias = test_error.evaluate(lam0, Sigma=spectrum, beta=beta, D=big, P=ps_big, sigma2=sigma2)["bias"]
    spectrum, beta = _problem(d, alpha, b)
    ps = np.geomspace(2 * d, 4 * d, 12)
    total = test_error.evaluate(lam0, Sigma=spectrum, beta=beta, D=d, P=ps, sigma2=sigma2)["total"]
    q = d / ps
    return {
        "bias_fit": _fit_exponent(ps_big, bias),
        "bias_theory": min(alpha + b - 1, 2 * alpha),
        "excess_fit": _fit_exponent(ps, total - sigma2),
        "excess_theory": _fit_exponent(ps, sigma2 * q / (1 - q)),
        "ridge_over_smallest": lam0 / float(spectrum.min()),
    }


def _simulate(
    spectrum: np.ndarray, beta: np.ndarray, p: int, lam: float, sigma2: float, seeds: int, seed: int
) -> dict[str, tuple[float, float]]:
    """Mean and standard error of each simulated term over ``seeds`` data sets."""
    rng = np.random.default_rng(seed)
    draws = [simulate_ridge(spectrum, beta, p, lam, sigma2, rng) for _ in range(seeds)]
    out = {}
    for key in draws[0]:
        values = np.array([row[key] for row in draws])
        out[key] = (float(values.mean()), float(values.std(ddof=1) / np.sqrt(seeds)))
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--D", type=int, default=500, help="dimension (default 500)")
    parser.add_argument("--alpha", type=float, default=1.2, help="eigenvalues k^-alpha (default 1.2)")
    parser.add_argument("--b", type=float, default=0.9, help="target beta_k^2 = k^-b (default 0.9)")
    parser.add_argument("--noise", type=float, default=0.09, help="label noise sigma^2 (default 0.09)")
    parser.add_argument("--lam", type=float, default=1e-2, help="the small ridge (default 1e-2)")
    parser.add_argument("--lam0", type=float, default=1e-4, help="the ridge ~0 (default 1e-4)")
    parser.add_argument("--seeds", type=int, default=20, help="data sets per simulated point (default 20)")
    parser.add_argument(
        "--ratios", default="0.25,0.5,2,4", help="P/D of the simulated points (default 0.25,0.5,2,4)"
    )
    parser.add_argument("--lams", type=int, default=4, help="simulated ridges in the lam panel (default 4)")
    parser.add_argument("--points", type=int, default=60, help="theory grid points (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "out"), help="folder of the PNGs")
    return parser


@figure_style()  # the figure is made along the way
def main(argv: Sequence[str] | None = None) -> int:
    """Draw the figures, print the agreement and exponents; 0 when theory and simulation agree."""
    args = _parser().parse_args(argv)
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("this example needs matplotlib: pip install matplotlib", file=sys.stderr)
        return 2
    if args.D < 2 or args.seeds < 2:
        print(f"--D {args.D} and --seeds {args.seeds} must both be >= 2", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    d, sigma2 = args.D, args.noise
    spectrum, beta = _problem(d, args.alpha, args.b)
    modules = _load_evaluators()
    test, train = modules["ridge_test_error"], modules["ridge_training_error"]
    common = {"Sigma": spectrum, "beta": beta, "D": d, "sigma2": sigma2}
    ratios = np.geomspace(0.1, 4, args.points)
    sim_ratios = [float(r) for r in args.ratios.split(",")]
    sim_ps = [max(2, round(r * d)) for r in sim_ratios]
    print(f"# ridge: D = {d}, lambda_k = k^-{args.alpha:g}, beta_k^2 = k^-{args.b:g}, sigma^2 = {sigma2:g}")
    print(f"# {args.seeds} simulated data sets per point; rule |mean - theory| < 4 s.e. + 5 |theory| / D")

    worst_z, passed = 0.0, True
    rows: list[str] = []

    def compare(label: str, theory: float, mean: float, se: float) -> None:
        nonlocal worst_z, passed
        z = abs(mean - theory) / se if se > 0 else (0.0 if mean == theory else np.inf)
        ok = abs(mean - theory) <= N_SE * se + C_FINITE * abs(theory) / d
        worst_z, passed = max(worst_z, z), passed and ok
        verdict = "ok" if ok else "FAIL"
        rows.append(
            f"{label:<34} theory {theory:10.5g}  sim {mean:10.5g} +- {se:8.2g}  z {z:5.2f}  {verdict}"
        )

    fig = Figure(figsize=(12, 4.4))
    axes = fig.subplots(1, 3)
    for ax, lam in zip(axes[:2], (args.lam, args.lam0), strict=True):
        e_test = test.evaluate(lam, P=ratios * d, **common)["total"]
        e_train = train.evaluate(lam, P=ratios * d, **common)["total"]
        ax.loglog(ratios, e_test, color="C0", label="test (theory)")
        ax.loglog(ratios, e_train, color="C1", label="train (theory)")
        ax.axhline(sigma2, color="gray", ls=":", label=r"$\sigma^2$")
        for i, p in enumerate(sim_ps):
            sim = _simulate(spectrum, beta, p, lam, sigma2, args.seeds, args.seed + 1000 * i)
            th_test = float(test.evaluate(lam, P=p, **common)["total"])
            th_train = float(train.evaluate(lam, P=p, **common)["total"])
            compare(f"lam={lam:g} P={p} E_test", th_test, *sim["E_test"])
            compare(f"lam={lam:g} P={p} E_train", th_train, *sim["E_train"])
            for key, color in (("E_test", "C0"), ("E_train", "C1")):
                mean, se = sim[key]
                ax.errorbar(p / d, mean, yerr=se, fmt="o", color=color, ms=4, capsize=3)
        ax.set_xlabel("P / D")
        ax.set_ylabel("error")
        ax.set_title(f"learning curve, lam = {lam:g}")
        ax.legend(fontsize=8)

    p_fixed = max(2, round(d / 2))
    lams = np.geomspace(1e-4, 10, args.points)
    terms = test.evaluate(lams, P=p_fixed, **common)
    ax = axes[2]
    for key, color in (("bias", "C2"), ("variance", "C3"), ("noise", "gray"), ("total", "C0")):
        ax.loglog(lams, np.broadcast_to(terms[key], lams.shape), color=color, label=key)
    for j, lam in enumerate(np.geomspace(1e-3, 1, args.lams)):
        sim = _simulate(spectrum, beta, p_fixed, float(lam), sigma2, args.seeds, args.seed + 7 + 1000 * j)
        th = test.evaluate(float(lam), P=p_fixed, **common)
        for key, color in (("bias", "C2"), ("variance", "C3")):
            compare(f"P={p_fixed} lam={lam:.3g} {key}", float(th[key]), *sim[key])
            ax.errorbar(lam, sim[key][0], yerr=sim[key][1], fmt="o", color=color, ms=4, capsize=3)
    ax.set_xlabel("lam")
    ax.set_title(f"test error terms, P = {p_fixed}")
    ax.legend(fontsize=8)
    fig.suptitle(rf"ridge, D = {d}, $\lambda_k=k^{{-{args.alpha:g}}}$, $\beta_k^2=k^{{-{args.b:g}}}$")
    fig.tight_layout()
    path = out / "ridge_learning_curves.png"
    fig.savefig(path)

    print("\n".join(rows))
    print(f"max |theory - simulation| / s.e. = {worst_z:.3f} over {len(rows)} points")
    exps = scaling_exponents(test, args.alpha, args.b, sigma2, d, args.lam0)
    print(
        f"bias exponent (D >> P, lam = {args.lam0:g}): fitted {exps['bias_fit']:.3f}, "
        f"source/capacity prediction min(alpha + b - 1, 2 alpha) = {exps['bias_theory']:.3f}"
    )
    print(
        f"E_test - sigma^2 exponent over P/D in [2, 4] (lam = {args.lam0:g}): "
        f"fitted {exps['excess_fit']:.3f}, "
        f"variance-limited sigma^2 q/(1-q) (lam -> 0) gives {exps['excess_theory']:.3f}; "
        f"lam / smallest eigenvalue = {exps['ridge_over_smallest']:.2g}"
    )
    print(f"wrote {path}")
    print("agreement: " + ("PASS" if passed else "FAIL"))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
