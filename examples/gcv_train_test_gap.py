r"""The train-test gap is the S-transform: ridge regression against the ridge, theory and simulation.

Ridge regression with covariance eigenvalues :math:`\lambda_k=k^{-\alpha}`, target
:math:`\beta_k^2=k^{-b}` (``k = 1..D``), label noise :math:`\sigma^2` and ``P`` samples
(MATH.md 4.2). In the proportional limit the test and training errors differ by a factor
that depends on the spectrum only through the effective ridge :math:`\kappa(\lambda)`:

.. math:: E_{test}=S^2E_{train},\qquad S=\kappa/\lambda=S_W(-\mathrm{df}_1(\kappa)),

the S-transform of the white Wishart (ratio ``D/P``) at minus the degrees of freedom. Its
data-side estimate :math:`(1-\widehat{\mathrm{df}}/P)^{-1}` with
:math:`\widehat{\mathrm{df}}=\operatorname{Tr}\hat\Sigma(\hat\Sigma+\lambda)^{-1}` turns the
training error into the GCV estimator :math:`E_{train}/(1-\widehat{\mathrm{df}}/P)^2`, an
estimate of the test error from the training data alone. The script

1. derives :math:`E_{test}` and :math:`E_{train}` (:class:`detequiv.RidgeRegression`),
   writes their numpy evaluators with :func:`detequiv.loss_to_module` and evaluates them on
   a grid of ``lam`` (the evaluator also returns :math:`\kappa`);
2. derives the relation with :func:`detequiv.train_test_relation` (the engine's
   :math:`E_{test}/E_{train}` in closed form, checked to be :math:`S^2` by exact
   cancellation) and the GCV equivalent with :func:`detequiv.gcv_estimator`, and evaluates
   both next to the evaluator curves (printed: the largest relative differences);
3. simulates ``--seeds`` data sets at a few ridges
   (:func:`detequiv.models.kernel_mc.simulate_gcv`): mean +- s.e. of :math:`E_{test}`,
   :math:`E_{train}`, the per-data-set ratio :math:`E_{test}/E_{train}`, the data-side
   :math:`(1-\widehat{\mathrm{df}}/P)^{-2}` (against :math:`S^2`) and GCV (against
   :math:`E_{test}`);
4. draws the errors and GCV (left) and the ratio against :math:`S^2` (right) in
   ``examples/out/gcv_train_test_gap.png`` (without matplotlib: the table only).

Agreement rule (the project's Monte Carlo rule, MATH.md):
``|mean - theory| < 4 s.e. + 5 |theory| / min(D, P)`` for every simulated quantity.
``main`` returns 0 when every simulated point passes, 1 otherwise. The data-side
:math:`(1-\widehat{\mathrm{df}}/P)^{-2}` barely fluctuates (s.e. ~0.4 %), so its
``O(1/P)`` finite-size bias shows as ``z`` of 3-6 at the smallest ridge (about 2 % at
``lam = 1e-4``, ``P = 150``): inside the ``5 |theory| / P`` term of the rule.

Run ``python examples/gcv_train_test_gap.py --help``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # threaded BLAS is slow on a loaded machine

import argparse
import functools
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp

import detequiv as de
from detequiv.models.kernel_mc import simulate_gcv
from detequiv.plotting import figure_style

N_SE = 4.0
C_FINITE = 5.0
#: simulated quantity -> the theory curve it is compared with
COMPARED = {
    "E_test": "E_test",
    "E_train": "E_train",
    "gcv": "E_test",
    "ratio": "S2",
    "inverse_shrink2": "S2",
}
LABELS = {
    "E_test": "E_test",
    "E_train": "E_train",
    "gcv": "GCV",
    "ratio": "E_test/E_train",
    "inverse_shrink2": "(1-df^/P)^-2",
}


@functools.cache
def derive() -> dict[str, Any]:
    """The model, its two evaluators (generated source, executed), the relation and the GCV (cached)."""
    d, p = sp.symbols("D P", positive=True)
    model = de.RidgeRegression(
        de.Deterministic("Sigma", d), de.Gaussian("X", (p, d)), de.DeterministicVector("beta", d)
    )
    evaluators = {}
    for name, loss in (("E_test", model.test_error()), ("E_train", model.training_error())):
        namespace: dict[str, Any] = {}
        source = de.loss_to_module(loss, f"ridge_{name}")
        exec(compile(source, f"ridge_{name}", "exec"), namespace)  # noqa: S102
        evaluators[name] = namespace["evaluate"]
    return {
        "model": model,
        "evaluators": evaluators,
        "relation": de.train_test_relation(model),
        "gcv": de.gcv_estimator(model),
    }


def _problem(d: int, alpha: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(1, d + 1, dtype=float)
    return k**-alpha, np.sqrt(k**-b)


def _atom_value(name: str, kappa: np.ndarray, spectrum: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """A trace atom of :func:`detequiv.train_test_relation` (``tr[R^j]`` or ``b.R^j.b``) at ``kappa``."""
    match = re.fullmatch(r"(tr\[R\^(\d+)\])|(b\.R\^(\d+)\.b)", name)
    if match is None:
        raise ValueError(f"unknown trace atom {name!r} in the derived relation")
    power = int(match.group(2) or match.group(4))
    resolvent = 1.0 / (kappa[:, None] + spectrum[None, :]) ** power
    return resolvent.mean(axis=1) if match.group(1) else resolvent @ beta**2


def theory(
    lams: Any, *, spectrum: np.ndarray, beta: np.ndarray, p: int, sigma2: float
) -> dict[str, np.ndarray]:
    r"""Theory on a grid of ridges: ``E_test``, ``E_train``, ``kappa`` (generated evaluators),
    ``S2`` :math:`=(\kappa/\lambda)^2` and ``ratio_derived`` (the engine's closed-form
    :math:`E_{test}/E_{train}` from :func:`detequiv.train_test_relation` at the same
    :math:`\kappa`)."""
    parts = derive()
    lam = np.atleast_1d(np.asarray(lams, dtype=float))
    d = spectrum.size
    common = {"Sigma": spectrum, "beta": beta, "D": d, "P": p, "sigma2": sigma2}
    test = parts["evaluators"]["E_test"](lam, **common)
    train = parts["evaluators"]["E_train"](lam, **common)
    kappa = np.atleast_1d(np.asarray(test["kappa"], dtype=float))
    relation = parts["relation"]
    symbols = sorted(relation.ratio.free_symbols, key=str)
    values: list[Any] = []
    for s in symbols:
        if str(s) == "kappa":
            values.append(kappa)
        elif str(s) == "D":
            values.append(float(d))
        elif str(s) == "P":
            values.append(float(p))
        else:
            values.append(_atom_value(str(s), kappa, spectrum, beta))
    derived = sp.lambdify(symbols, relation.ratio, "numpy")(*values)
    return {
        "lam": lam,
        "E_test": np.atleast_1d(test["total"]),
        "E_train": np.atleast_1d(train["total"]),
        "kappa": kappa,
        "S2": (kappa / lam) ** 2,
        "ratio_derived": np.broadcast_to(np.asarray(derived, dtype=float), lam.shape).copy(),
    }


def gcv_equivalent(lam: float, *, spectrum: np.ndarray, beta: np.ndarray, p: int, sigma2: float) -> float:
    """The deterministic equivalent of GCV (:func:`detequiv.gcv_estimator`) at one ridge."""
    values = {"Sigma": spectrum, "beta": beta, "lam": lam, "D": spectrum.size, "P": p, "sigma2": sigma2}
    return float(np.real(derive()["gcv"].evaluate(values)["total"]))


def _simulate(
    spectrum: np.ndarray, beta: np.ndarray, p: int, lam: float, sigma2: float, seeds: int, seed: int
) -> dict[str, np.ndarray]:
    """Per-data-set values of every compared quantity."""
    rng = np.random.default_rng(seed)
    draws = [simulate_gcv(spectrum, beta, p, lam, sigma2, rng) for _ in range(seeds)]
    out = {key: np.array([row[key] for row in draws]) for key in ("E_test", "E_train", "gcv", "df_hat")}
    out["ratio"] = out["E_test"] / out["E_train"]
    out["inverse_shrink2"] = (1 - out["df_hat"] / p) ** -2.0
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--D", type=int, default=300, help="dimension (default 300)")
    parser.add_argument("--P", type=int, default=150, help="samples (default 150)")
    parser.add_argument("--alpha", type=float, default=1.2, help="eigenvalues k^-alpha (default 1.2)")
    parser.add_argument("--b", type=float, default=0.9, help="target beta_k^2 = k^-b (default 0.9)")
    parser.add_argument("--noise", type=float, default=0.09, help="label noise sigma^2 (default 0.09)")
    parser.add_argument("--seeds", type=int, default=30, help="data sets per simulated ridge (default 30)")
    parser.add_argument(
        "--lams", default="1e-4,1e-3,1e-2,0.1,1", help="simulated ridges (default 1e-4,1e-3,1e-2,0.1,1)"
    )
    parser.add_argument("--low", type=float, default=1e-5, help="smallest ridge of the grid (default 1e-5)")
    parser.add_argument("--high", type=float, default=10.0, help="largest ridge of the grid (default 10)")
    parser.add_argument("--points", type=int, default=80, help="theory grid points (default 80)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "out"), help="folder of the PNG")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Print theory against simulation, draw the figure; 0 when every simulated point agrees."""
    args = _parser().parse_args(argv)
    try:
        sim_lams = [float(v) for v in args.lams.split(",")]
    except ValueError:
        print(f"--lams {args.lams!r} must be comma-separated numbers", file=sys.stderr)
        return 2
    if (
        args.D < 2
        or args.P < 2
        or args.seeds < 2
        or args.points < 2
        or not 0 < args.low < args.high
        or min(sim_lams) <= 0
    ):
        print(
            f"need --D >= 2, --P >= 2, --seeds >= 2, --points >= 2, 0 < --low < --high and ridges > 0; "
            f"got --D {args.D} --P {args.P} --seeds {args.seeds} --points {args.points} "
            f"--low {args.low} --high {args.high} --lams {args.lams}",
            file=sys.stderr,
        )
        return 2
    d, p, sigma2 = args.D, args.P, args.noise
    spectrum, beta = _problem(d, args.alpha, args.b)
    problem = {"spectrum": spectrum, "beta": beta, "p": p, "sigma2": sigma2}
    relation = derive()["relation"]
    grid = np.geomspace(args.low, args.high, args.points)
    curves = theory(grid, **problem)
    n_min = min(d, p)
    print(
        f"# ridge: D = {d}, P = {p}, lambda_k = k^-{args.alpha:g}, beta_k^2 = k^-{args.b:g}, "
        f"sigma^2 = {sigma2:g}"
    )
    print(f"# derived: E_test / E_train = {relation.ratio}  (= S^2 by exact cancellation: {relation.holds})")
    print(
        f"# {args.seeds} data sets per ridge; rule |mean - theory| < 4 s.e. + 5 |theory| / {n_min} "
        "(min(D, P))"
    )
    ratio = curves["E_test"] / curves["E_train"]
    gap_s2 = float(np.max(np.abs(ratio / curves["S2"] - 1)))
    gap_derived = float(np.max(np.abs(curves["ratio_derived"] / curves["S2"] - 1)))

    worst_z, passed = 0.0, True
    rows: list[str] = []
    sims: dict[float, dict[str, np.ndarray]] = {}
    gcv_gap = 0.0
    for i, lam in enumerate(sim_lams):
        sim = _simulate(spectrum, beta, p, lam, sigma2, args.seeds, args.seed + 1000 * i)
        sims[lam] = sim
        th = {key: float(v[0]) for key, v in theory([lam], **problem).items()}
        gcv_th = gcv_equivalent(lam, **problem)
        gcv_gap = max(gcv_gap, abs(gcv_th / th["E_test"] - 1))
        for key, target in COMPARED.items():
            values = sim[key]
            mean, se = float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))
            exact = th[target]
            z = abs(mean - exact) / se if se > 0 else (0.0 if mean == exact else np.inf)
            ok = abs(mean - exact) <= N_SE * se + C_FINITE * abs(exact) / n_min
            worst_z, passed = max(worst_z, z), passed and ok
            rows.append(
                f"lam={lam:<7.3g} {LABELS[key]:<15} theory {exact:11.5g} ({target:<7}) sim {mean:11.5g} "
                f"+- {se:8.2g}  z {z:5.2f}  {'ok' if ok else 'FAIL'}"
            )
    print("\n".join(rows))
    print(f"max |theory - simulation| / s.e. = {worst_z:.3f} over {len(rows)} points")
    print(
        f"theory on {args.points} ridges in [{args.low:g}, {args.high:g}]: "
        f"max |(E_test/E_train) / S^2 - 1| = {gap_s2:.3g} (generated evaluators), "
        f"max |derived ratio / S^2 - 1| = {gap_derived:.3g} (train_test_relation)"
    )
    print(
        "GCV equivalent (gcv_estimator) against E_test at the simulated ridges: "
        f"max relative gap {gcv_gap:.3g}"
    )
    limit = (
        f"ridgeless limit 1/(1 - D/P)^2 = {(1 - d / p) ** -2:.4g}"
        if d < p
        else "diverges as lam -> 0 (D >= P)"
    )
    print(
        f"the gap S^2 = (kappa/lam)^2 over the grid: [{curves['S2'].min():.4g}, {curves['S2'].max():.4g}] "
        f"({limit})"
    )
    best = int(np.argmin(curves["E_test"]))
    print(f"optimal ridge on the grid: lam = {grid[best]:.3g}, E_test = {curves['E_test'][best]:.5g}")
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib not installed (pip install matplotlib): table only, no figure")
    else:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "gcv_train_test_gap.png"
        _draw(Figure, path, curves, sims, args)
        print(f"wrote {path}")
    print("agreement: " + ("PASS" if passed else "FAIL"))
    return 0 if passed else 1


def _errorbar(ax: Any, x: float, values: np.ndarray, **kwargs: Any) -> None:
    ax.errorbar(x, values.mean(), yerr=values.std(ddof=1) / np.sqrt(values.size), capsize=3, **kwargs)


@figure_style()
def _draw(
    figure: Any,
    path: Path,
    curves: dict[str, np.ndarray],
    sims: dict[float, dict[str, np.ndarray]],
    args: Any,
) -> None:
    lam = curves["lam"]
    fig = figure(figsize=(12, 4.6))
    left, right = fig.subplots(1, 2)
    left.loglog(lam, curves["E_test"], color="C0", label="E_test (theory)")
    left.loglog(lam, curves["E_train"], color="C1", label="E_train (theory)")
    left.axhline(args.noise, color="gray", ls=":", label=r"$\sigma^2$")
    for i, (x, sim) in enumerate(sims.items()):
        first = i == 0
        _errorbar(left, x, sim["E_test"], fmt="o", color="C0", ms=5, label="E_test (sim)" if first else None)
        _errorbar(
            left, x, sim["E_train"], fmt="s", color="C1", ms=4, label="E_train (sim)" if first else None
        )
        _errorbar(left, x, sim["gcv"], fmt="x", color="C3", ms=7, label="GCV (sim)" if first else None)
    left.set_xlabel("ridge lam")
    left.set_ylabel("error")
    left.set_title(f"ridge, D = {args.D}, P = {args.P}: test, train and GCV")
    left.legend(fontsize=8)

    right.loglog(
        lam, curves["E_test"] / curves["E_train"], color="C2", lw=3, alpha=0.5, label="E_test / E_train"
    )
    right.loglog(lam, curves["S2"], color="k", ls="--", label=r"$S^2=(\kappa/\lambda)^2$")
    for i, (x, sim) in enumerate(sims.items()):
        first = i == 0
        _errorbar(
            right, x, sim["ratio"], fmt="o", color="C2", ms=5, label="E_test/E_train (sim)" if first else None
        )
        _errorbar(
            right,
            x * 1.15,
            sim["inverse_shrink2"],
            fmt="x",
            color="k",
            ms=7,
            label=r"$(1-\widehat{df}/P)^{-2}$ (sim)" if first else None,
        )
    right.set_xlabel("ridge lam")
    right.set_title("the train-test gap is the S-transform")
    right.legend(fontsize=8)
    fig.suptitle(
        rf"$\lambda_k=k^{{-{args.alpha:g}}}$, $\beta_k^2=k^{{-{args.b:g}}}$, $\sigma^2$ = {args.noise:g}, "
        f"{args.seeds} data sets per point"
    )
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
