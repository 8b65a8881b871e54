r"""``detequiv curve MODEL ...``: loss curves of a learning model, from its generated evaluators.

``MODEL`` is ``ridge`` (test and training error against the ridge ``lam``), ``rf``
(random-feature ridge test error) or ``sgd`` (the exact online-SGD loss against the step).
The ridge models derive their losses (:func:`model_loss`), generate the numpy evaluators
(:func:`~detequiv.codegen.pycode.loss_to_module`) and evaluate them on a ``lam`` grid for
a power-law (or flat) covariance and target; ``--csv FILE`` writes the table, ``--plot
FILE`` draws it (needs matplotlib).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
import sympy as sp

from ..codegen.pycode import loss_to_module
from ..derivations.expressions import Deterministic, DeterministicVector, Gaussian
from ..derivations.formula import LossFormula
from ..errors import InvalidArgument
from ..models.random_features import RandomFeatureRidge
from ..models.ridge import RidgeRegression
from ..models.sgd import OnlineSGD
from ..plotting import figure_style, require_matplotlib

__all__ = ["curve_main", "model_loss", "MODEL_NAMES"]

#: The model names :func:`model_loss` knows (``detequiv codegen MODEL`` takes them too).
MODEL_NAMES = ("ridge", "ridge-train", "rf", "random-features")

_CURVE_MODELS = ("ridge", "rf", "sgd")


def model_loss(name: str) -> LossFormula:
    """The derived loss of a named model.

    Parameters
    ----------
    name : str
        ``ridge`` (ridge regression test error), ``ridge-train`` (its training error) or
        ``rf`` / ``random-features`` (random-feature ridge test error with its
        fine-grained split); one of :data:`MODEL_NAMES`.

    Returns
    -------
    LossFormula
        With a covariance ``Sigma`` (dimension ``D``), ``P`` samples, ``N`` features and
        the target ``beta``.

    Raises
    ------
    InvalidArgument
        For another name.

    Examples
    --------
    >>> sorted(model_loss("ridge").terms)
    ['bias', 'noise', 'variance']
    """
    d, p, n = sp.symbols("D P N", positive=True)
    sigma, x, beta = Deterministic("Sigma", d), Gaussian("X", (p, d)), DeterministicVector("beta", d)
    if name == "ridge":
        return RidgeRegression(sigma, x, beta).test_error()
    if name == "ridge-train":
        return RidgeRegression(sigma, x, beta).training_error()
    if name in ("rf", "random-features"):
        return RandomFeatureRidge(sigma, x, Gaussian("F", (n, d)), beta).test_error()
    raise InvalidArgument(f"unknown model {name!r}; use one of ridge, ridge-train, rf")


def _power_law(spec: str, n: int, flag: str) -> np.ndarray:
    """``powerlaw:ALPHA`` -> ``k^-ALPHA`` (k = 1..n); ``flat`` -> ones (``--spectrum``) or ``1/n``."""
    if spec == "flat":
        return np.full(n, 1.0 if flag == "--spectrum" else 1.0 / n)
    kind, _, value = spec.partition(":")
    try:
        alpha = float(value)
    except ValueError:
        alpha = float("nan")
    if kind != "powerlaw" or not np.isfinite(alpha):
        raise InvalidArgument(f"{flag} {spec!r}: use powerlaw:ALPHA (e.g. powerlaw:1.2) or flat")
    return np.arange(1, n + 1, dtype=float) ** -alpha


def _lam_grid(spec: str) -> np.ndarray:
    """``LO:HI:COUNT`` (log-spaced, LO may be 0 for the ridgeless point) -> array."""
    parts = spec.split(":")
    try:
        lo, hi, count = float(parts[0]), float(parts[1]), int(parts[2])
        if len(parts) != 3:
            raise ValueError
    except (ValueError, IndexError):
        raise InvalidArgument(f"--lam {spec!r}: use LO:HI:COUNT, e.g. 1e-4:10:50 (log-spaced)") from None
    if not (0 <= lo < hi and np.isfinite(hi) and count >= 2):
        raise InvalidArgument(f"--lam {spec!r}: need 0 <= LO < HI and COUNT >= 2")
    if lo == 0:
        return np.concatenate([[0.0], np.geomspace(hi * 1e-6, hi, count - 1)])
    return np.geomspace(lo, hi, count)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detequiv curve", description="loss curves of a learning model")
    parser.add_argument(
        "model",
        choices=_CURVE_MODELS,
        help="ridge (loss vs lam), rf (random-feature ridge vs lam) or sgd (online SGD loss vs step)",
    )
    parser.add_argument("--spectrum", required=True, help="powerlaw:ALPHA (eigenvalues k^-ALPHA) or flat")
    parser.add_argument("--D", type=int, required=True, help="dimension (number of eigenvalues)")
    parser.add_argument("--P", type=float, help="number of samples (default: D / 2)")
    parser.add_argument("--N", type=float, help="rf: number of features (default: D / 4)")
    parser.add_argument("--target", default="powerlaw:0.9", help="beta_k^2 = k^-B: powerlaw:B or flat")
    parser.add_argument("--noise", type=float, default=0.09, help="label noise variance sigma2 (>= 0)")
    parser.add_argument("--lam", default="1e-4:10:25", help="LO:HI:COUNT, log-spaced (LO = 0: ridgeless)")
    parser.add_argument("--eta", type=float, default=0.2, help="sgd: learning rate (default 0.2)")
    parser.add_argument("--batch", type=int, default=1, help="sgd: batch size (default 1)")
    parser.add_argument("--steps", type=int, default=10000, help="sgd: number of steps (default 1e4)")
    parser.add_argument("--csv", metavar="FILE", help="write the table as CSV")
    parser.add_argument("--plot", metavar="FILE", help="draw the curves (PNG/SVG/PDF; needs matplotlib)")
    return parser


def curve_main(argv: Sequence[str] | None = None) -> int:
    r"""``detequiv curve MODEL --spectrum powerlaw:ALPHA --D D --P P [...]``: loss curves.

    Derives the test error (bias, variance, noise) and the training error of the model,
    generates their numpy evaluators (:func:`~detequiv.codegen.pycode.loss_to_module`)
    and prints the curves over a ``lam`` grid as a table (``--csv FILE`` writes it,
    ``--plot FILE`` draws it; needs matplotlib). Models: ``ridge``, ``rf`` (``N``
    features, default ``D / 4``) and ``sgd`` (online SGD, MATH.md 5.2, against the step).
    The covariance has eigenvalues ``k^-ALPHA`` (``k = 1..D``; ``flat`` for the
    identity), the target coefficients ``beta_k^2 = k^-B`` (``--target powerlaw:B``,
    default ``powerlaw:0.9``; ``flat`` for ``beta_k^2 = 1/D``, so ``|beta|^2 = 1``), label
    noise ``--noise`` (default 0.09), ``P`` samples (default ``D / 2``). The doctest is
    MATH.md 7's isotropic ridge at ``q = 0.5`` (ridgeless ``E_g = 0.5``; ``lam = 1``:
    ``E_g = 0.62546``, ``E_tr = 0.38129``).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after ``curve`` (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success.

    Raises
    ------
    InvalidArgument
        For a bad model, spectrum, grid or size (the message says how to fix it).

    Examples
    --------
    >>> curve_main(["ridge", "--spectrum", "flat", "--D", "4", "--P", "8", "--target", "flat",
    ...             "--noise", "0.25", "--lam", "0:1:3"])  # doctest: +NORMALIZE_WHITESPACE
    # ridge, D = 4, P = 8, spectrum flat, target flat, noise 0.25
    lam kappa bias variance noise E_test E_train
    0 0 0 0.25 0.25 0.5 0.125
    1e-06 2e-06 7.9999e-12 0.249998 0.25 0.499998 0.125
    1 1.28078 0.348875 0.0265848 0.25 0.625459 0.381287
    0
    """
    args = _parser().parse_args(list(argv) if argv is not None else None)
    if args.D < 1:
        raise InvalidArgument(f"--D {args.D}: the dimension must be a positive integer")
    p_value = args.P if args.P is not None else args.D / 2
    if not p_value > 0:
        raise InvalidArgument(f"--P {p_value}: the number of samples must be > 0")
    if not args.noise >= 0:
        raise InvalidArgument(f"--noise {args.noise}: the noise variance must be >= 0")
    spectrum = _power_law(args.spectrum, args.D, "--spectrum")
    beta = np.sqrt(_power_law(args.target, args.D, "--target"))
    if args.model == "sgd":
        return _sgd_curve(args, spectrum, beta)
    lams = _lam_grid(args.lam)
    sizes: dict[str, float] = {"D": args.D, "P": p_value}
    losses = [(model_loss("ridge"), "E_test"), (model_loss("ridge-train"), "E_train")]
    if args.model == "rf":
        n_value = args.N if args.N is not None else args.D / 4
        if not n_value > 0:
            raise InvalidArgument(f"--N {n_value}: the number of features must be > 0")
        sizes["N"] = n_value
        losses = [(model_loss("rf"), "E_test")]
    columns: dict[str, Any] = {"lam": lams}
    for loss, label in losses:
        columns.update(_loss_columns(loss, label, lams, spectrum, beta, args.noise, sizes))
    setting = f"spectrum {args.spectrum}, target {args.target}, noise {args.noise:g}"
    size_text = ", ".join(f"{k} = {v:g}" for k, v in sizes.items())
    print(f"# {args.model}, {size_text}, {setting}")
    print(" ".join(columns))
    print("\n".join(" ".join(f"{float(v[i]):.6g}" for v in columns.values()) for i in range(lams.size)))
    if args.csv:
        _write_csv(args.csv, columns)
    if args.plot:
        _plot_curves(columns, args.plot, f"{args.model}, {size_text}, {args.spectrum}")
    return 0


def _loss_columns(
    loss: LossFormula,
    label: str,
    lams: np.ndarray,
    spectrum: np.ndarray,
    beta: np.ndarray,
    noise: float,
    sizes: dict[str, float],
) -> dict[str, np.ndarray]:
    """The loss's total over the grid as the column ``label``, from its generated evaluator;
    for the test error also ``kappa`` and the terms (before it)."""
    namespace: dict[str, Any] = {}
    exec(compile(loss_to_module(loss, label), f"<{label}>", "exec"), namespace)  # noqa: S102
    try:
        out = namespace["evaluate"](lams, Sigma=spectrum, beta=beta, sigma2=noise, **sizes)
    except ValueError as exc:
        raise InvalidArgument(f"{label}: {exc}") from None
    columns = {}
    if label == "E_test":
        columns = {"kappa": out[str(loss.kappa)], **{k: out[k] for k in loss.terms}}
    columns[label] = out["total"]
    return columns


def _write_csv(path: str, columns: dict[str, np.ndarray]) -> None:
    rows = len(next(iter(columns.values())))
    with open(path, "w") as fh:
        fh.write(",".join(columns) + "\n")
        fh.writelines(",".join(f"{float(v[i]):.17g}" for v in columns.values()) + "\n" for i in range(rows))


def _sgd_curve(args: argparse.Namespace, spectrum: np.ndarray, beta: np.ndarray) -> int:
    """``curve sgd``: the exact online-SGD loss curve (MATH.md 5.2) at log-spaced steps and its floor."""
    if args.steps < 1 or args.batch < 1:
        raise InvalidArgument(f"--steps {args.steps} and --batch {args.batch} must be positive integers")
    model = OnlineSGD(spectrum, beta, args.eta, batch=args.batch, noise=args.noise)
    curve = model.loss_curve(args.steps)
    steps = np.unique(np.round(np.logspace(0, np.log10(args.steps), 25)).astype(int))
    steps = np.concatenate([[0], steps])
    print(f"# online SGD, D = {args.D}, eta = {args.eta:g}, batch = {args.batch}, noise {args.noise:g}")
    print(f"# t -> infinity floor: {model.floor():.6g}")
    print("step loss")
    print("\n".join(f"{int(k)} {float(curve[k]):.6g}" for k in steps))
    if args.csv:
        with open(args.csv, "w") as fh:
            fh.write("step,loss\n")
            fh.writelines(f"{k},{float(v):.17g}\n" for k, v in enumerate(curve))
    if args.plot:
        with figure_style():
            fig, ax = _axes()
            t = np.arange(1, curve.size)
            ax.loglog(t, curve[1:], label="loss")
            ax.axhline(model.floor(), ls="--", color="gray", label="floor")
            _save(fig, ax, "step", args.plot)
    return 0


@figure_style()
def _plot_curves(columns: dict[str, np.ndarray], path: str, title: str) -> None:
    fig, ax = _axes()
    lams = columns["lam"]
    keep = lams > 0
    for name in columns:
        if name.startswith(("E_", "bias", "variance")) and np.all(columns[name][keep] > 0):
            ax.loglog(lams[keep], columns[name][keep], label=name)
    ax.set_title(title)
    _save(fig, ax, "lam", path)


def _axes() -> tuple[Any, Any]:
    """A matplotlib figure (no pyplot state) and its axes."""
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4))
    return fig, fig.add_subplot()


def _save(fig: Any, ax: Any, xlabel: str, path: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.legend()
    fig.savefig(path, bbox_inches="tight")
