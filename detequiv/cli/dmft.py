r"""``detequiv dmft MODEL ...``: DMFT loss curves with a small simulation overlay.

``MODEL`` is ``logistic`` (logistic loss, sign teacher with Gaussian label noise) or
``linear`` (square loss, linear teacher with label-noise variance).  The DMFT is solved by the
exact Gaussian route (:mod:`detequiv.dmft.linear`) when the system is linear, otherwise by the
sampled route (:func:`~detequiv.dmft.montecarlo.solve_montecarlo`); ``--simulate D`` adds a
direct simulation at dimension ``D`` (``n = delta D``, ``--seeds`` runs; ``0`` turns it off).
``--plot FILE`` draws both (needs matplotlib).  Conventions: DMFT.md 1 (loss summed over
samples, SGD temperature ``tau = gamma n / B``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..dmft.system import (
    GD,
    SGF,
    BernoulliVisits,
    DMFTSystem,
    Grid,
    HeavyBall,
    LinearTeacher,
    Logistic,
    Ridge,
    SampleSide,
    SignTeacher,
    Square,
)
from ..errors import DetEquivError, InvalidArgument
from ..plotting import figure_style, require_matplotlib

__all__ = ["dmft_main", "build_system"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="detequiv dmft",
        description="DMFT train/test loss curves of GD or SGD on a GLM, with a small simulation overlay",
    )
    p.add_argument(
        "model", choices=("logistic", "linear"), help="logistic regression or linear (square-loss) regression"
    )
    p.add_argument("--delta", type=float, default=2.0, help="sample ratio n/d (default 2)")
    p.add_argument("--lam", type=float, default=0.01, help="ridge coefficient (default 0.01)")
    p.add_argument("--beta", type=float, default=0.0, help="heavy-ball momentum in [0, 1) (default 0)")
    p.add_argument("--dt", type=float, default=0.1, help="step of the discrete algorithm (default 0.1)")
    p.add_argument("--steps", type=int, default=100, help="number of grid steps (default 100)")
    p.add_argument("--sgd", action="store_true", help="SGD: stochastic gradient flow at temperature --tau")
    p.add_argument("--tau", type=float, default=0.5, help="SGD temperature gamma n / B (default 0.5)")
    p.add_argument(
        "--bernoulli", action="store_true", help="with --sgd: Bernoulli-visit noise instead of Gaussian SGF"
    )
    p.add_argument("--rho", type=float, help="teacher norm |theta*|^2/d (default 4 logistic, 1 linear)")
    p.add_argument(
        "--noise", type=float, help="label noise: logistic std (default 0.3), linear variance (default 0.25)"
    )
    p.add_argument(
        "--paths", type=int, default=16000, help="Monte Carlo paths of the sampled route (default 16000)"
    )
    p.add_argument("--method", choices=("march", "picard"), default="march", help="sampled-route solver")
    p.add_argument(
        "--simulate", type=int, default=200, metavar="D", help="simulation dimension (0: none; default 200)"
    )
    p.add_argument("--seeds", type=int, default=8, help="simulation seeds (default 8)")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--rows", type=int, default=11, help="rows of the printed table (default 11)")
    p.add_argument("--plot", metavar="FILE", help="draw the curves (PNG/SVG/PDF; needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def build_system(args: argparse.Namespace) -> DMFTSystem:
    """The :class:`DMFTSystem` described by parsed ``detequiv dmft`` arguments."""
    if args.model == "logistic":
        side = SampleSide(Logistic(), SignTeacher(noise=0.3 if args.noise is None else args.noise))
        rho = 4.0 if args.rho is None else args.rho
    else:
        side = SampleSide(Square(), LinearTeacher(0.25 if args.noise is None else args.noise))
        rho = 1.0 if args.rho is None else args.rho
    weights = HeavyBall(args.beta, args.lam) if args.beta else Ridge(args.lam)
    if args.bernoulli and not args.sgd:
        raise InvalidArgument("--bernoulli chooses the SGD noise model; add --sgd (and --tau)")
    noise: Any = GD()
    if args.sgd:
        noise = BernoulliVisits(args.tau) if args.bernoulli else SGF(args.tau)
    return DMFTSystem(args.delta, Grid(args.dt, args.steps), side, weights, noise=noise, teacher_norm=rho)


def _solve(system: DMFTSystem, args: argparse.Namespace) -> tuple[Any, str]:
    if system.is_linear:
        try:
            from ..dmft.linear import solve
        except ImportError:  # pragma: no cover - the exact route ships with the package
            pass
        else:
            return solve(system), "exact linear DMFT"
    from ..dmft.montecarlo import solve_montecarlo

    sol = solve_montecarlo(
        system, paths=args.paths, method=args.method, seed=args.seed, progress=not args.quiet
    )
    return sol, f"Monte Carlo DMFT ({args.method}, N = {args.paths})"


def _simulate(system: DMFTSystem, args: argparse.Namespace) -> tuple[Any, str]:
    from ..dmft.simulate import simulate

    algorithm = None
    note = ""
    if system.tau > 0:
        n = max(1, int(round(system.delta * args.simulate)))
        per = system.grid.dt * n / system.tau
        if abs(per - round(per)) > 1e-6 * per or round(per) < 1:
            algorithm = "multipliers"
            note = (
                f" (dt n / tau = {per:.4g} is not whole: simulating the discrete multipliers instead of SGD)"
            )
    sim = simulate(
        system,
        args.simulate,
        seeds=args.seeds,
        seed=args.seed + 1,
        algorithm=algorithm,
        progress=not args.quiet,
    )
    return sim, f"simulation d = {sim.d}, n = {sim.n}, {args.seeds} seeds, {sim.algorithm}{note}"


def _fmt(x: float) -> str:
    return f"{x:.5g}"


@figure_style()
def _plot(path: str, theory: Any, sim: Any, title: str) -> None:
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(theory.times, theory.train_loss, color="C0", label="train (DMFT)")
    ax.plot(theory.times, theory.test_loss, color="C1", label="test (DMFT)")
    if sim is not None:
        for name, mean, se, marker, color in (
            ("train", sim.train_mean, sim.train_se, "o", "C0"),
            ("test", sim.test_mean, sim.test_se, "s", "C1"),
        ):
            label = f"{name} (sim, d = {sim.d})"
            ax.errorbar(sim.times, mean, yerr=se, fmt=marker, ms=3, color=color, alpha=0.6, label=label)
    ax.set_xlabel("t")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def dmft_main(argv: Sequence[str] | None = None) -> int:
    r"""``detequiv dmft logistic|linear [--delta --lam --dt --steps --sgd --tau --simulate D --plot FILE]``.

    Prints the DMFT train and test loss curves as a table at ``--rows`` times, next to the
    mean +- standard error of a small direct simulation, and optionally draws them.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after ``dmft`` (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 on a bad argument (one line on stderr says what to fix).

    Examples
    --------
    >>> dmft_main(["linear", "--delta", "2", "--lam", "0.1", "--dt", "0.2", "--steps", "10",
    ...            "--simulate", "0", "--rows", "3"])  # doctest: +NORMALIZE_WHITESPACE
    # linear: delta = 2, lam = 0.1, dt = 0.2, 10 steps, GD, rho = 1; exact linear DMFT
    t train_dmft test_dmft
    0 0.625 1
    1 0.088584 0.20947
    2 0.072775 0.18047
    0
    """
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        _check_counts(args)
        system = build_system(args)
        t0 = time.perf_counter()
        theory, how = _solve(system, args)
        t_theory = time.perf_counter() - t0
        sim, sim_how = (None, "")
        if args.simulate:
            t0 = time.perf_counter()
            sim, sim_how = _simulate(system, args)
            t_sim = time.perf_counter() - t0
        head = _header(args, system, how)
        print(head)
        if sim is not None:
            print(f"# {sim_how}; DMFT {t_theory:.2f} s, simulation {t_sim:.2f} s")
        _print_table(theory, sim, args.rows)
        if sim is not None:
            _print_agreement(theory, sim)
        if args.plot:
            _plot(args.plot, theory, sim, head.lstrip("# ").replace("; ", "\n"))
            print(f"# plot written to {args.plot}")
    except DetEquivError as exc:
        print(f"detequiv dmft: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _check_counts(args: argparse.Namespace) -> None:
    """The count options argparse cannot bound: paths, seeds, rows and the simulation dimension."""
    for name, low in (("paths", 2), ("seeds", 1), ("rows", 2), ("simulate", 0)):
        if getattr(args, name) < low:
            raise InvalidArgument(f"--{name} {getattr(args, name)} is too small; give a number >= {low}")
    if 0 < args.simulate < 2:
        raise InvalidArgument(
            f"--simulate {args.simulate} is too small; give a dimension >= 2 (or 0 for none)"
        )


def _header(args: argparse.Namespace, system: DMFTSystem, how: str) -> str:
    """The first printed line: the model, its parameters and the DMFT route taken."""
    noise = "GD" if system.tau == 0 else f"{type(system.noise).__name__}(tau = {_fmt(system.tau)})"
    return (
        f"# {args.model}: delta = {_fmt(system.delta)}, lam = {_fmt(system.lam)}, "
        f"dt = {_fmt(system.grid.dt)}, {system.grid.steps} steps, {noise}, "
        f"rho = {_fmt(system.teacher_norm)}; {how}"
    )


def _print_table(theory: Any, sim: Any, rows: int) -> None:
    """The loss curves at ``rows`` evenly spread grid times, the simulation's mean and standard
    error beside the DMFT's when there is a simulation."""
    K = theory.times.size
    ks = sorted(set(np.linspace(0, K - 1, min(rows, K)).round().astype(int).tolist()))
    cols = ["t", "train_dmft", "test_dmft"]
    if sim is not None:
        cols = ["t", "train_dmft", "train_sim", "train_se", "test_dmft", "test_sim", "test_se"]
    print(" ".join(cols))
    for k in ks:
        vals = [theory.times[k], theory.train_loss[k]]
        if sim is not None:
            vals += [sim.train_mean[k], sim.train_se[k]]
        vals.append(theory.test_loss[k])
        if sim is not None:
            vals += [sim.test_mean[k], sim.test_se[k]]
        print(" ".join(_fmt(float(v)) for v in vals))


def _print_agreement(theory: Any, sim: Any) -> None:
    """The largest distance of the DMFT curves from the simulation's means, in simulation
    standard errors, over the grid after ``t = 0`` (steps with no spread are skipped)."""
    se_tr = np.where(np.isfinite(sim.train_se) & (sim.train_se > 0), sim.train_se, np.inf)
    se_te = np.where(np.isfinite(sim.test_se) & (sim.test_se > 0), sim.test_se, np.inf)
    z = max(
        float(np.max(np.abs(theory.train_loss - sim.train_mean)[1:] / se_tr[1:])),
        float(np.max(np.abs(theory.test_loss - sim.test_mean)[1:] / se_te[1:])),
    )
    print(f"# largest |DMFT - sim| / sim s.e. over the grid: {z:.2f} (DMFT Monte Carlo error not included)")


def _main() -> int:  # pragma: no cover
    return dmft_main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())
