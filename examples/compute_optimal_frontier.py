r"""Compute-optimal frontier of online SGD on random features: theory curves, frontier, simulation.

Inputs :math:`x\sim\mathcal N(0,\Sigma)` with eigenvalues :math:`\lambda_k=k^{-\alpha}`
(``k = 1..D``), target :math:`y=\beta\cdot x+\varepsilon`, :math:`\beta_k^2=k^{-b}`, label
noise :math:`\sigma^2`; the model is linear in ``N`` random features :math:`z=Fx`
(``F`` with iid :math:`\mathcal N(0,1/N)` entries) trained by one-pass SGD, batch ``B``,
learning rate :math:`\eta`, from :math:`w=0` (MATH.md 5.3). The loss after ``t`` steps is
the population loss :math:`(F^\top w-\beta)^\top\Sigma(F^\top w-\beta)+\sigma^2`, and one
step costs :math:`\propto NB`, so the compute is :math:`C=N\,B\,t`. For each model size
``N`` the loss falls with ``C`` until the model size limits it; the **compute-optimal
frontier** is the lower envelope over ``N``. The script

1. draws the deterministic-equivalent loss curves
   (:func:`detequiv.models.sgd.random_features_online_sgd_de`, continuous time
   :math:`t_c=\eta t`, averaged over ``F``) for the model sizes ``--ns`` against ``C``;
2. takes their lower envelope on a grid of ``C`` and fits its power law
   :math:`L^*\propto C^{-e}` and the optimal size :math:`N^*\propto C^{c}` over the
   compute range where neither the smallest nor the largest ``N`` is optimal; it prints
   them next to the bottleneck prediction: :math:`L\approx N^{-a}+t^{-a/\alpha}` with
   :math:`a=\alpha+b-1` (``b < 1``: the modes ``k > N`` are not representable, the mode
   ``k`` is learned at :math:`t\sim k^\alpha`), balanced at :math:`t\sim N^\alpha`, so
   :math:`N^*\sim C^{1/(1+\alpha)}`, :math:`t^*\sim C^{\alpha/(1+\alpha)}` (steps grow
   faster than parameters) and :math:`e=a/(1+\alpha)`;
3. simulates the SGD itself in input space for the sizes ``--sim-ns``
   (:func:`detequiv.models.sgd_mc.simulate_random_feature_sgd`: ``--draws`` feature maps,
   ``--runs`` chains each; the standard error is over the feature-map means) at a few
   steps, and overlays mean +- s.e.; it also prints the distance to the exact discrete
   conditional theory averaged over the same feature maps
   (:func:`detequiv.models.sgd.random_features_online_sgd`, MATH.md 5.2 given ``F``);
4. writes ``examples/out/compute_optimal_frontier.png`` (without matplotlib: the table
   only).

Agreement rule (the project's Monte Carlo rule, MATH.md): every simulated point against the
plotted equivalent, ``|mean - theory| < 4 s.e. + 5 |theory| / N`` (``N = min(N, D)``, the
smallest dimension). ``main`` returns 0 when every simulated point passes, 1 otherwise.

Run ``python examples/compute_optimal_frontier.py --help``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # threaded BLAS is slow on a loaded machine

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detequiv.models.sgd import random_features_online_sgd, random_features_online_sgd_de
from detequiv.models.sgd_mc import simulate_random_feature_sgd
from detequiv.plotting import figure_style

N_SE = 4.0
C_FINITE = 5.0


def _problem(d: int, alpha: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(1, d + 1, dtype=float)
    return k**-alpha, np.sqrt(k**-b)


def theory_curves(
    eigenvalues: np.ndarray,
    beta: np.ndarray,
    ns: Sequence[int],
    steps: np.ndarray,
    *,
    eta: float,
    batch: int,
    noise: float,
) -> dict[int, np.ndarray]:
    """The equivalent loss of each model size ``N`` after ``steps`` SGD steps (``t_c = eta * steps``)."""
    tc = eta * np.asarray(steps, dtype=float)
    return {
        int(n): random_features_online_sgd_de(
            eigenvalues, beta, int(n), tc, eta=eta, batch=batch, noise=noise
        )
        for n in ns
    }


def frontier(
    curves: dict[int, np.ndarray], steps: np.ndarray, batch: int, points: int = 200
) -> dict[str, np.ndarray]:
    r"""Lower envelope over ``N`` of the loss against the compute ``C = N B t``.

    Each curve is interpolated in :math:`\log L` against :math:`\log C` on a common grid
    of ``C`` (inside its own range; outside it, +inf). Returns ``compute``, ``loss`` (the
    envelope) and ``best_n`` (the optimal size at each ``C``).
    """
    ns = sorted(curves)
    lo = max(ns[0] * batch * float(steps[0]), 1e-300)
    hi = ns[-1] * batch * float(steps[-1])
    grid = np.geomspace(lo, hi, points)
    table = np.full((len(ns), points), np.inf)
    for i, n in enumerate(ns):
        c = n * batch * np.asarray(steps, dtype=float)
        inside = (grid >= c[0]) & (grid <= c[-1])
        table[i, inside] = np.exp(np.interp(np.log(grid[inside]), np.log(c), np.log(curves[n])))
    best = np.argmin(table, axis=0)
    return {"compute": grid, "loss": table[best, np.arange(points)], "best_n": np.array(ns)[best]}


def fit_frontier(front: dict[str, np.ndarray], skip: int = 2) -> dict[str, float]:
    """Power laws of the envelope and of the optimal size over the scaling range of compute.

    ``loss_exponent`` e in ``L* ~ C^-e`` and ``size_exponent`` c in ``N* ~ C^c``: least
    squares in log-log from the compute where the size ``sizes[skip]`` becomes optimal (the
    ``skip`` smallest sizes cover the early transient, before any mode is learned) to the
    compute where the largest size becomes optimal (beyond it the envelope is that single
    curve, which saturates). Both ends are switches of the optimal size, so the fit of the
    step function ``N*`` is not biased by a partial step. ``low`` and ``high`` are the range.
    """
    sizes = np.unique(front["best_n"])
    if sizes.size < skip + 2:
        raise ValueError(
            f"only the sizes {sizes.tolist()} are ever optimal: the fit needs {skip + 2}; "
            "pass more or wider --ns"
        )
    start = int(np.argmax(front["best_n"] == sizes[skip]))
    stop = int(np.argmax(front["best_n"] == sizes[-1]))
    if stop - start < 3:
        raise ValueError("too few compute points in the scaling range: pass more or wider --ns")
    c, loss, best = (front[key][start:stop] for key in ("compute", "loss", "best_n"))
    loss_fit = np.polyfit(np.log(c), np.log(loss), 1)
    size_fit = np.polyfit(np.log(c), np.log(best), 1)
    return {
        "loss_exponent": float(-loss_fit[0]),
        "size_exponent": float(size_fit[0]),
        "loss_log_prefactor": float(loss_fit[1]),
        "size_log_prefactor": float(size_fit[1]),
        "low": float(c[0]),
        "high": float(c[-1]),
    }


def _simulate(
    eigenvalues: np.ndarray, beta: np.ndarray, n: int, times: np.ndarray, args: Any, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature-map mean losses at ``times`` (shape ``(draws, len(times))``) and the exact
    discrete conditional curves of the same maps."""
    rng = np.random.default_rng(seed)
    d = eigenvalues.size
    sims, exact = [], []
    for _ in range(args.draws):
        f = rng.standard_normal((n, d)) / np.sqrt(n)
        runs = simulate_random_feature_sgd(
            f,
            eigenvalues,
            beta,
            eta=args.eta,
            batch=args.batch,
            noise=args.noise,
            times=times,
            n_runs=args.runs,
            rng=rng,
        )
        sims.append(runs.mean(axis=0))
        model = random_features_online_sgd(
            f, eigenvalues, beta, eta=args.eta, batch=args.batch, noise=args.noise
        )
        exact.append(model.loss_curve(int(times[-1]))[times])
    return np.array(sims), np.array(exact)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--D", type=int, default=2000, help="input dimension (default 2000)")
    parser.add_argument("--alpha", type=float, default=1.5, help="eigenvalues k^-alpha (default 1.5)")
    parser.add_argument("--b", type=float, default=0.5, help="target beta_k^2 = k^-b (default 0.5)")
    parser.add_argument("--noise", type=float, default=0.0, help="label noise sigma^2 (default 0)")
    parser.add_argument("--eta", type=float, default=0.2, help="learning rate (default 0.2)")
    parser.add_argument("--batch", type=int, default=1, help="batch size B (default 1)")
    parser.add_argument(
        "--ns", default="8,16,32,64,128,256", help="model sizes of the theory curves (default 8,16,...,256)"
    )
    parser.add_argument(
        "--max-steps", type=float, default=1e5, help="last step of the theory curves (default 1e5)"
    )
    parser.add_argument("--times", type=int, default=30, help="theory points per curve (default 30)")
    parser.add_argument("--sim-ns", default="16,64", help="simulated model sizes (default 16,64)")
    parser.add_argument("--steps", type=int, default=1000, help="simulated SGD steps (default 1000)")
    parser.add_argument("--sim-times", type=int, default=6, help="recorded steps, log-spaced (default 6)")
    parser.add_argument("--draws", type=int, default=12, help="feature maps per simulated size (default 12)")
    parser.add_argument("--runs", type=int, default=3, help="SGD chains per feature map (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "out"), help="folder of the PNG")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Print the frontier fit and theory against simulation, draw the figure; 0 when they agree."""
    args = _parser().parse_args(argv)
    try:
        ns = sorted({int(v) for v in args.ns.split(",")})
        sim_ns = sorted({int(v) for v in args.sim_ns.split(",")})
    except ValueError:
        print(
            f"--ns {args.ns!r} and --sim-ns {args.sim_ns!r} must be comma-separated integers", file=sys.stderr
        )
        return 2
    if (
        args.D < 2
        or len(ns) < 4
        or min(ns + sim_ns) < 1
        or args.draws < 2
        or args.runs < 2
        or args.steps < 1
        or args.sim_times < 1
        or args.times < 2
        or args.batch < 1
        or not args.eta > 0
        or args.noise < 0
    ):
        print(
            "need --D >= 2, at least 4 sizes in --ns, sizes >= 1, --draws >= 2, --runs >= 2, --steps >= 1, "
            "--sim-times >= 1, --times >= 2, --batch >= 1, --eta > 0, --noise >= 0",
            file=sys.stderr,
        )
        return 2
    eigenvalues, beta = _problem(args.D, args.alpha, args.b)
    if args.eta / args.batch * eigenvalues.sum() / 2 >= 1:
        print(
            f"--eta {args.eta} is unstable: need (eta/B) Tr(Sigma)/2 < 1, i.e. eta < "
            f"{2 * args.batch / eigenvalues.sum():.4g}",
            file=sys.stderr,
        )
        return 2
    print(
        f"# online SGD on N random features: D = {args.D}, lambda_k = k^-{args.alpha:g}, "
        f"beta_k^2 = k^-{args.b:g}, sigma^2 = {args.noise:g}, eta = {args.eta:g}, B = {args.batch}"
    )
    steps = np.geomspace(1, args.max_steps, args.times)
    curves = theory_curves(eigenvalues, beta, ns, steps, eta=args.eta, batch=args.batch, noise=args.noise)
    front = frontier(curves, steps, args.batch)
    try:
        fit = fit_frontier(front)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    a = min(args.alpha + args.b - 1, args.alpha)
    print(
        f"frontier L* ~ C^-e over C in [{fit['low']:.3g}, {fit['high']:.3g}]: "
        f"fitted e = {fit['loss_exponent']:.3f}, "
        f"bottleneck prediction a / (1 + alpha) = {a / (1 + args.alpha):.3f} (a = {a:g})"
    )
    print(
        f"optimal size N* ~ C^c: fitted c = {fit['size_exponent']:.3f}, prediction 1 / (1 + alpha) = "
        f"{1 / (1 + args.alpha):.3f} (so steps t* ~ C^{1 - fit['size_exponent']:.3f}: they grow faster "
        "than the model)"
    )
    first = {
        int(n): float(front["compute"][np.argmax(front["best_n"] == n)]) for n in np.unique(front["best_n"])
    }
    print("compute-optimal from C = " + ", ".join(f"{c:.3g}: N = {n}" for n, c in first.items()))

    print(
        f"# simulation: {args.draws} feature maps x {args.runs} chains per size; rule |mean - theory| < "
        "4 s.e. + 5 |theory| / min(N, D)"
    )
    times = np.unique(np.geomspace(1, args.steps, args.sim_times).round().astype(int))
    worst_z, worst_exact_z, passed = 0.0, 0.0, True
    rows: list[str] = []
    sims: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for i, n in enumerate(sim_ns):
        per_map, exact = _simulate(eigenvalues, beta, n, times, args, args.seed + 1000 * i)
        mean, se = per_map.mean(axis=0), per_map.std(axis=0, ddof=1) / np.sqrt(per_map.shape[0])
        de_curve = theory_curves(
            eigenvalues, beta, [n], times, eta=args.eta, batch=args.batch, noise=args.noise
        )[n]
        sims[n] = (times, mean, se)
        # the same maps, the exact discrete theory given F: only the SGD noise separates it from the mean
        exact_mean = exact.mean(axis=0)
        diff = per_map - exact
        exact_se = diff.std(axis=0, ddof=1) / np.sqrt(diff.shape[0])
        n_min = min(n, args.D)
        for j, t in enumerate(times):
            z = abs(mean[j] - de_curve[j]) / se[j] if se[j] > 0 else np.inf
            ok = abs(mean[j] - de_curve[j]) <= N_SE * se[j] + C_FINITE * abs(de_curve[j]) / n_min
            ez = abs(mean[j] - exact_mean[j]) / exact_se[j] if exact_se[j] > 0 else np.inf
            worst_z, worst_exact_z, passed = max(worst_z, z), max(worst_exact_z, ez), passed and ok
            rows.append(
                f"N={n:<5} step {t:<6} C={n * args.batch * t:<9.3g} theory {de_curve[j]:10.5g}  sim "
                f"{mean[j]:10.5g} +- {se[j]:8.2g}  z {z:5.2f}  {'ok' if ok else 'FAIL'}  "
                f"(exact given F: {exact_mean[j]:.5g}, z {ez:5.2f})"
            )
    print("\n".join(rows))
    print(f"max |theory - simulation| / s.e. = {worst_z:.3f} over {len(rows)} points")
    print(
        f"max |exact given F - simulation| / s.e. (same feature maps) = {worst_exact_z:.3f} "
        f"over {len(rows)} points"
    )
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib not installed (pip install matplotlib): table only, no figure")
    else:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "compute_optimal_frontier.png"
        _draw(Figure, path, curves, steps, front, fit, sims, args)
        print(f"wrote {path}")
    print("agreement: " + ("PASS" if passed else "FAIL"))
    return 0 if passed else 1


@figure_style()
def _draw(
    figure: Any,
    path: Path,
    curves: dict[int, np.ndarray],
    steps: np.ndarray,
    front: dict[str, np.ndarray],
    fit: dict[str, float],
    sims: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
    args: Any,
) -> None:
    fig = figure(figsize=(12, 4.6))
    left, right = fig.subplots(1, 2)
    ns = sorted(curves)
    colors = {n: f"C{i % 10}" for i, n in enumerate(ns)}
    for n in ns:
        left.loglog(n * args.batch * steps, curves[n], color=colors[n], lw=1.2, label=f"N = {n}")
    left.loglog(front["compute"], front["loss"], color="k", lw=3, alpha=0.35, label="frontier (envelope)")
    span = (front["compute"] >= fit["low"]) & (front["compute"] <= fit["high"])
    c = front["compute"][span]
    line = np.exp(fit["loss_log_prefactor"]) * c ** -fit["loss_exponent"]
    left.loglog(c, line * 0.7, color="k", ls="--", lw=1, label=f"fit C^-{fit['loss_exponent']:.3f} (shifted)")
    for n, (times, mean, se) in sims.items():
        color = colors.get(n, "k")
        left.errorbar(n * args.batch * times, mean, yerr=se, fmt="o", ms=4, color=color, capsize=2)
    left.set_xlabel("compute C = N B t")
    left.set_ylabel("population loss")
    left.set_title("loss against compute (points: simulated SGD, mean +- s.e.)")
    left.legend(fontsize=7, ncol=2)

    right.loglog(front["compute"], front["best_n"], color="k", drawstyle="steps-post", label="optimal N")
    line = np.exp(fit["size_log_prefactor"]) * c ** fit["size_exponent"]
    right.loglog(c, line, color="C3", ls="--", label=f"fit C^{fit['size_exponent']:.3f}")
    right.set_xlabel("compute C")
    right.set_ylabel("compute-optimal N")
    right.set_title("compute-optimal model size")
    right.legend(fontsize=8)
    fig.suptitle(
        rf"random-feature online SGD, D = {args.D}, $\lambda_k=k^{{-{args.alpha:g}}}$, "
        rf"$\beta_k^2=k^{{-{args.b:g}}}$, $\eta$ = {args.eta:g}, B = {args.batch}"
    )
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
