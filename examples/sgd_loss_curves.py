r"""Online SGD loss curves: the exact Volterra theory overlaid with simulated SGD runs.

Gaussian inputs with covariance eigenvalues :math:`\lambda_k=k^{-\alpha}`, target
:math:`\beta_k^2=k^{-b}` (``k = 1..D``), label noise :math:`\sigma^2`, one-pass SGD on the
batch-mean gradient from :math:`w_0=0` (MATH.md 5.2). For batch sizes 1 and 32 the script
picks a stable learning rate (the largest with :math:`\sum_\tau K_\tau\le` ``--ksum`` and
:math:`\eta\lambda_{max}(1+1/B)\le1`, half the edge; heavy tails near the edge make the
run average unreliable), draws the theory curve
(:meth:`detequiv.OnlineSGD.loss_curve`) against the mean +- s.e. of ``--runs``
simulated chains (:func:`detequiv.models.sgd_mc.run_online_sgd`) on log-log axes, with
the :math:`t\to\infty` floor :math:`\sigma^2/(1-\sum_\tau K_\tau)` as a horizontal line.

Agreement rule (the project's Monte Carlo rule, MATH.md):
``|mean - theory| < 4 s.e. + 5 |theory| / D`` at every recorded step. ``main`` returns 0
when both batch sizes pass, 1 otherwise.

Run ``python examples/sgd_loss_curves.py --help``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import detequiv as de
from detequiv.models.sgd_mc import run_online_sgd
from detequiv.plotting import figure_style

BATCHES = (1, 32)


def kernel_sum(eigenvalues: np.ndarray, eta: float, batch: int) -> float:
    r""":math:`\sum_\tau K_\tau=\frac\eta B\sum_k\lambda_k/(2-\eta\lambda_k(1+1/B))` (MATH.md 5.2)."""
    return float(eta / batch * np.sum(eigenvalues / (2 - eta * eigenvalues * (1 + 1 / batch))))


def stable_eta(eigenvalues: np.ndarray, batch: int, ksum: float) -> float:
    """Largest learning rate with ``kernel_sum <= ksum`` and half the per-mode stability edge."""
    hi = 1.0 / (float(eigenvalues.max()) * (1 + 1 / batch))  # eta lambda_max (1 + 1/B) <= 1
    if kernel_sum(eigenvalues, hi, batch) <= ksum:
        return hi
    lo = 0.0
    for _ in range(60):  # the kernel sum increases with eta
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if kernel_sum(eigenvalues, mid, batch) <= ksum else (lo, mid)
    return lo


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--D", type=int, default=200, help="dimension (default 200)")
    parser.add_argument("--alpha", type=float, default=1.5, help="eigenvalues k^-alpha (default 1.5)")
    parser.add_argument("--b", type=float, default=0.5, help="target beta_k^2 = k^-b (default 0.5)")
    parser.add_argument("--noise", type=float, default=0.04, help="label noise sigma^2 (default 0.04)")
    parser.add_argument("--steps", type=int, default=1000, help="SGD steps (default 1000)")
    parser.add_argument("--runs", type=int, default=100, help="simulated chains (default 100)")
    parser.add_argument("--times", type=int, default=25, help="recorded steps, log-spaced (default 25)")
    parser.add_argument("--ksum", type=float, default=0.25, help="kernel-sum bound for eta (default 0.25)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "out"), help="folder of the PNG")
    return parser


@figure_style()  # the figure is made along the way
def main(argv: Sequence[str] | None = None) -> int:
    """Draw the figure and print the agreement; 0 when theory and simulation agree."""
    args = _parser().parse_args(argv)
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("this example needs matplotlib: pip install matplotlib", file=sys.stderr)
        return 2
    if args.D < 1 or args.runs < 2 or args.steps < 1 or not 0 < args.ksum < 1:
        print("need --D >= 1, --runs >= 2, --steps >= 1 and 0 < --ksum < 1", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    k = np.arange(1, args.D + 1, dtype=float)
    eigenvalues, beta = k**-args.alpha, np.sqrt(k**-args.b)
    # t = 0 is deterministic (every run starts at w0 = 0): not recorded
    times = np.unique(np.geomspace(1, args.steps, args.times).round().astype(int))
    print(
        f"# online SGD: D = {args.D}, lambda_k = k^-{args.alpha:g}, beta_k^2 = k^-{args.b:g}, "
        f"sigma^2 = {args.noise:g}, {args.runs} runs, {args.steps} steps"
    )
    print("# rule |mean - theory| < 4 s.e. + 5 |theory| / D at every recorded step")

    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.add_subplot()
    passed = True
    for i, batch in enumerate(BATCHES):
        eta = stable_eta(eigenvalues, batch, args.ksum)
        model = de.OnlineSGD(eigenvalues, beta, eta=eta, batch=batch, noise=args.noise)
        curve = model.loss_curve(args.steps)
        runs = run_online_sgd(model, times, n_runs=args.runs, rng=np.random.default_rng(args.seed + i))
        check = runs.compare(curve)
        passed = passed and check.passed
        rel = np.max(np.abs(check.errors) / check.theory)
        print(
            f"B = {batch:>2}: eta = {eta:.4g} (eta lambda_max (1 + 1/B) = {eta * (1 + 1 / batch):.3g}, "
            f"sum_tau K_tau = {model.kernel_sum():.3g}), floor = {model.floor():.6g}"
        )
        print(
            f"        max |theory - simulation| / s.e. = {check.max_z:.3f}, max relative deviation "
            f"{rel:.3%}, max |err| / tol = {check.max_ratio:.3f} -> {'ok' if check.passed else 'FAIL'}"
        )
        print(
            f"        at t = {args.steps}: theory {curve[-1]:.6g}, simulation {runs.mean[-1]:.6g} "
            f"+- {runs.se[-1]:.2g}"
        )
        color = f"C{i}"
        steps = np.arange(1, args.steps + 1)
        ax.loglog(steps, curve[1:], color=color, label=f"theory, B = {batch}, eta = {eta:.3g}")
        ax.errorbar(runs.times, runs.mean, yerr=runs.se, fmt="o", ms=3, color=color, capsize=2)
        ax.axhline(model.floor(), color=color, ls="--", lw=0.8, label=f"floor, B = {batch}")
    ax.axhline(args.noise, color="gray", ls=":", label=r"$\sigma^2$")
    ax.set_xlabel("step t")
    ax.set_ylabel("population loss")
    ax.set_title(f"online SGD, D = {args.D}, {args.runs} runs (points: mean +- s.e.)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "sgd_loss_curves.png"
    fig.savefig(path)
    print(f"wrote {path}")
    print("agreement: " + ("PASS" if passed else "FAIL"))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
