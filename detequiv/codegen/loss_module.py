r"""Standalone numpy evaluators of derived loss formulas: :func:`loss_to_module` (issue 5).

:func:`loss_to_module` turns a :class:`~detequiv.models.ridge.LossFormula` (the
test error of ridge regression split into bias, variance and noise, its training error,
the covariate-shifted test error) into the source of a Python module that needs only
numpy at run time and evaluates every term on a grid of ridges ``lam``.

All matrices of a ridge loss commute: ``Sigma`` and a test covariance ``Sigma_t`` are
given by their eigenvalues in one eigenbasis and the target ``beta`` by its coordinates
in it. Every :class:`~detequiv.models.ridge.mtr` atom of the formula is then a
spectral sum, written by sympy (matrices replaced by scalars, :math:`(\kappa I+\Sigma)^{-1}`
by :math:`1/(\kappa+s)`):

* a normalized trace :math:`\operatorname{tr}f(\Sigma,\Sigma_t)` is
  :math:`\operatorname{mean}_k f(s_k,t_k)`;
* a quadratic form :math:`\beta^\top f(\Sigma,\Sigma_t)\beta` is :math:`\sum_k\beta_k^2f(s_k,t_k)`.

The ridge ``lam`` is eliminated from the terms with the fixed point
:math:`\lambda=\kappa\,g(\mathrm{df}_1(\kappa))` (exact on the physical branch; sympy
``cancel`` then removes the ``1/lam`` of the derivatives), so the terms are rational
functions of :math:`\kappa` and the sums, and the ridgeless limit ``lam = 0`` is their
value at :math:`\kappa_0` (on both sides of the interpolation threshold; a divergent
limit is a ``ValueError``). Linear combinations of sums with coefficients in
:math:`\kappa` (times a common factor) are merged into one sum whose summand sympy
simplifies, e.g.
:math:`\operatorname{tr}\Sigma R-\kappa\operatorname{tr}\Sigma R^2=\operatorname{tr}\Sigma^2R^2`,
which avoids the cancellation at large ``lam`` and prints the familiar forms
(variance :math:`\sigma^2\gamma/(1-\gamma)`, training signal
:math:`(1-q\,\mathrm{df}_1)^2` times the bias).

The printing reuses :mod:`detequiv.codegen.pycode`: its printer, its
``cse`` + :mod:`sympy.codegen.ast` function definitions, its run-time scaffolding (input
checks, the vectorized safeguarded Newton iteration, the ridgeless :math:`\kappa_0`,
the physical-branch solver) and its plan of the implicit fixed point. Each sum is a
:math:`\kappa`-free weight vector times a kernel in :math:`1/(\kappa+s)`, summed by
matrix products in small blocks. For many ``lam`` with one parameter set, the sums
(with :math:`\mathrm{df}_1` and its slope) are computed once on Chebyshev nodes of
:math:`\log\kappa` over :math:`[\kappa(\min\lambda),\kappa(\max\lambda)]` (each sum
is analytic in :math:`|\operatorname{Im}\log\kappa|<\pi`, ~1e-15 relative) and
:math:`\kappa` is the root of the interpolated fixed point by numpy_module's
safeguarded Newton, so the cost hardly grows with the grid; otherwise numpy_module
solves :math:`\kappa` point by point.

>>> import numpy as np, sympy as sp
>>> from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian
>>> from detequiv.models.ridge import RidgeRegression
>>> D, P = sp.symbols("D P", positive=True)
>>> ridge = RidgeRegression(Deterministic("Sigma", D), Gaussian("X", (P, D)), DeterministicVector("beta", D))
>>> source = loss_to_module(ridge.test_error(), "ridge_test_error")
>>> "import sympy" in source
False
>>> namespace = {}
>>> exec(compile(source, "ridge_test_error.py", "exec"), namespace)
>>> out = namespace["evaluate"](np.array([0.0, 1.0]), Sigma=np.ones(4), beta=np.full(4, 0.5),
...                             D=1, P=2, sigma2=0.25)
>>> np.round(out["total"], 10)   # MATH.md 7: isotropic q = 0.5, ridgeless and lam = 1
array([0.5       , 0.62545945])

References
----------
MATH.md sections 2.1 (fixed point, physical branch, ridgeless limit), 4.1-4.4 (the
losses), 5.6 (numerical recipe), 7 (isotropic values).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy as sp
from sympy.codegen.ast import Assignment, FunctionCall, FunctionDefinition
from sympy.printing.precedence import PRECEDENCE

from ..derivations.expressions import Deterministic, DeterministicVector, Gaussian
from ..errors import InvalidArgument
from ..models.ridge import LossFormula, RidgeRegression, _to_atoms, mtr
from ..plotting import figure_style
from .pycode import (
    _RUNTIME,
    _assemble,
    _cse_function,
    _docstring_text,
    _elementwise,
    _implicit,
    _name_ok,
    _Plan,
    _Printer,
    _sorted,
    _spectral_symbol,
)

__all__ = ["loss_to_module", "curve_main"]


class _LossPrinter(_Printer):
    """numpy_module's printer; ``x**-n`` as ``1/x**n`` (integer powers take numpy's fast paths)."""

    def _print_Pow(self, expr: Any, rational: bool = False) -> str:
        if expr.exp.is_Integer and expr.exp < -1:
            return f"1/{self.parenthesize(expr.base, PRECEDENCE['Pow'])}**{-int(expr.exp)}"
        return super()._print_Pow(expr, rational=rational)


# ---------------------------------------------------------------------------
# run-time additions (fixed scaffolding; no formula in here)
# ---------------------------------------------------------------------------

_LOSS_RUNTIME = r'''
def _loss_grid(lam_name, lam, positive, nonnegative):
    """Broadcast the real grid lam >= 0, the positive parameters and the nonnegative ones."""
    if numpy.iscomplexobj(numpy.asarray(lam)):
        raise ValueError(f"{lam_name} must be real (>= 0): a loss is evaluated at real ridges")
    checked = []
    for name, value in nonnegative:
        if value is None:
            raise ValueError(f"missing {name}: pass {name}=... (a number or array >= 0)")
        a = numpy.asarray(value)
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be a real number or array, got dtype {a.dtype}")
        a = a.astype(float)
        if not numpy.all(numpy.isfinite(a)):
            raise ValueError(f"{name} has non-finite values (nan or inf); pass finite numbers")
        if a.size and a.min() < 0:
            raise ValueError(f"{name} = {a.min():.6g} must be >= 0 (a noise variance)")
        checked.append(a)
    try:
        shape = numpy.broadcast_shapes(
            numpy.shape(lam), *[numpy.shape(v) for _, v in positive], *[a.shape for a in checked]
        )
    except ValueError:
        shapes = {n: numpy.shape(v) for n, v in [(lam_name, lam), *positive, *nonnegative]}
        raise ValueError(
            f"the shapes {shapes} do not broadcast together; use scalars or matching grids"
        ) from None
    lam = numpy.broadcast_to(numpy.asarray(lam), shape)
    positive = [(n, numpy.broadcast_to(numpy.asarray(v), shape)) for n, v in positive if v is not None] + [
        (n, v) for n, v in positive if v is None
    ]
    shape, flat = _grid(lam_name, lam, positive)
    rest = [numpy.ascontiguousarray(numpy.broadcast_to(a, shape)).reshape(-1) for a in checked]
    return shape, flat + rest


# the kernels allocate temporaries: blocks below glibc's mmap threshold (128 KiB) avoid
# a fresh mmap per temporary, 10x slower on large blocks
_KERNEL_BLOCK = 1 << 13
_KERNEL_COLUMNS = 1024


def _check_ridgeless(lam, names, denominators):
    """A term whose denominator vanishes (to rounding) at lam = 0 has a divergent ridgeless limit."""
    for j, name in enumerate(names):
        value, scale = denominators[2 * j], denominators[2 * j + 1]
        bad = (lam == 0) & (numpy.abs(value) <= 1e-12 * numpy.abs(scale))
        if numpy.any(bad):
            raise ValueError(
                f"{name} has no finite ridgeless value here: its denominator vanishes at lam = 0 (the "
                "interpolation threshold, e.g. P = D, where the limit diverges or is 0/0); use lam > 0"
            )


def _weight_vectors(weights, kinds, spectra, n):
    """The kappa-free factor of each summand as a length-n array (divided by n for a mean)."""
    values = weights(*spectra)
    if not isinstance(values, tuple):
        values = (values,)
    return [
        numpy.ascontiguousarray(numpy.broadcast_to(numpy.asarray(w, dtype=float), (n,))) / (n if mean else 1)
        for w, mean in zip(values, kinds)
    ]


def _exact_spectral_sums(kernels, which, weights, k, spectra):
    """Row j: sum_i weights[j][i] K_which[j](k, spectra_i) for each k, in cache-sized blocks
    (one matrix product per kernel with the weights of all its sums)."""
    n = spectra[0].shape[0]
    groups = {}
    for j, i in enumerate(which):
        groups.setdefault(i, []).append(j)
    stacked = {i: numpy.stack([weights[j] for j in rows], axis=1) for i, rows in groups.items()}
    sums = {i: numpy.zeros((k.shape[0], len(rows))) for i, rows in groups.items()}
    cols_per = min(n, _KERNEL_COLUMNS)
    rows_per = max(1, _KERNEL_BLOCK // cols_per)
    for c0 in range(0, n, cols_per):
        cols = slice(c0, c0 + cols_per)
        parts = [s[None, cols] for s in spectra]
        width = parts[0].shape[1]
        for r0 in range(0, k.shape[0], rows_per):
            rows = slice(r0, r0 + rows_per)
            kk = k[rows][:, None]
            blocks = kernels(kk, *parts)
            if not isinstance(blocks, tuple):
                blocks = (blocks,)
            for i, total in sums.items():
                b = blocks[i]
                if numpy.shape(b) != (kk.shape[0], width):
                    b = numpy.broadcast_to(b, (kk.shape[0], width))
                total[rows] += b @ stacked[i][cols]
    out = numpy.empty((len(which), k.shape[0]))
    for i, rows in groups.items():
        out[rows] = sums[i].T
    return out


def _pieces(low, high):
    """Chebyshev pieces of log k covering [low, high]: (centers, half-length)."""
    pieces = max(1, int(numpy.ceil((high - low) / _PIECE)))
    half = max((high - low) / pieces, 1e-12) / 2
    return low + half * (2 * numpy.arange(pieces) + 1), half


def _table(kernels, which, weights, spectra, centers, half):
    """Exact sums at the Chebyshev nodes of the pieces: (atoms, pieces, _NODES)."""
    nodes = (centers[:, None] + half * _CHEB[None, :]).reshape(-1)
    values = _exact_spectral_sums(kernels, which, weights, numpy.exp(nodes), spectra)
    return values.reshape(len(which), centers.shape[0], _NODES)


def _interpolate(table, centers, half, logs, rows=None):
    """Barycentric interpolation of the tabulated sums at the points log k (rows: atoms)."""
    low = centers[0] - half
    piece = numpy.clip(((logs - low) / (2 * half)).astype(int), 0, centers.shape[0] - 1)
    x = (logs - centers[piece]) / half
    diff = x[:, None] - _CHEB[None, :]
    diff[diff == 0] = 1e-300  # a node: its term dominates the others
    terms = _BARY[None, :] / diff
    den = terms.sum(axis=1)
    rows = range(table.shape[0]) if rows is None else rows
    return numpy.array([(terms * table[j][piece]).sum(axis=1) / den for j in rows])


def _spectral_sums(kernels, which, weights, k, spectra):
    """The spectral sums of every atom at each ridge k >= 0 (rows: atoms).

    Each sum is a rational function of k with poles at k = -s_i only, hence analytic in
    log k in the strip |Im log k| < pi; many k are served by Chebyshev interpolation in
    log k from exact sums at the nodes (as for df1), few k and k = 0 exactly.
    """
    positive = k > 0
    out = numpy.empty((len(which), k.shape[0]))
    zero = numpy.flatnonzero(~positive)
    if zero.size:
        out[:, zero] = _exact_spectral_sums(kernels, which, weights, numpy.zeros(1), spectra)
    kp = k[positive]
    if kp.size == 0:
        return out
    logs = numpy.log(kp)
    centers, half = _pieces(logs.min(), logs.max())
    if kp.size <= 4 * _NODES or 2 * centers.shape[0] * _NODES > kp.size:
        out[:, positive] = _exact_spectral_sums(kernels, which, weights, kp, spectra)
    else:
        table = _table(kernels, which, weights, spectra, centers, half)
        out[:, positive] = _interpolate(table, centers, half, logs)
    return out


def _ridge_and_sums(branch, args, lam, y, dstar, what, kernels, which, weights, spectra, rows):
    """kappa on the physical branch (k g(df1(y, k)) = lam, k >= kappa_0) and the sums at it.

    ``rows`` are the atoms df1 = mean(y / (y + k)) and mean(y / (y + k)^2). Many points
    with one parameter set: kappa increases with lam on the branch, so the sums are
    tabulated once on Chebyshev nodes of log k over [kappa(min lam), kappa(max lam)]
    (kappa_0 included; the two ends by numpy_module's _solve_ridge) and kappa is the root
    of the interpolated equation by numpy_module's safeguarded Newton: no other sum over
    the spectrum. Otherwise _solve_ridge at every point, then _spectral_sums.
    """
    positive = numpy.flatnonzero(lam > 0)
    same = all(numpy.all(a == a[:1]) for a in [dstar, *args])
    if not same or positive.size <= 4 * _NODES:
        kappa = _solve_ridge(branch, args, lam, y, dstar, what)
        return kappa, _spectral_sums(kernels, which, weights, kappa, spectra)
    kappa0 = _threshold(y, dstar[:1])[0]
    target = lam[positive]
    ends = numpy.array([target.min(), target.max()])
    k_ends = _solve_ridge(branch, [a[:2] for a in args], ends, y, dstar[:2], what)
    low = numpy.log(min(k_ends[0], kappa0) if kappa0 > 0 else k_ends[0])
    centers, half = _pieces(low, numpy.log(k_ends[1]))
    if 2 * centers.shape[0] * _NODES > positive.size:
        kappa = _solve_ridge(branch, args, lam, y, dstar, what)
        return kappa, _spectral_sums(kernels, which, weights, kappa, spectra)
    table = _table(kernels, which, weights, spectra, centers, half)
    params = [a[:1] for a in args]
    nodes = (centers[:, None] + half * _CHEB[None, :]).reshape(-1)
    lam_nodes = numpy.exp(nodes) * branch(table[rows[0]].reshape(-1), *params)[0]
    ok = lam_nodes > 0
    order = numpy.argsort(lam_nodes[ok])
    guess = numpy.exp(numpy.interp(numpy.log(target), numpy.log(lam_nodes[ok][order]), nodes[ok][order]))

    def fun(k, idx):
        d, slope = _interpolate(table, centers, half, numpy.log(k), rows)
        g, dg = branch(d, *params)
        return k * g - target[idx], g - k * dg * slope  # d df1 / dk = -mean(y / (y + k)^2)

    lo = numpy.full(target.shape, max(kappa0, k_ends[0] * (1 - 1e-12)))
    hi = numpy.full(target.shape, k_ends[1] * (1 + 1e-12))
    guess = numpy.clip(guess, lo, hi)
    kappa = numpy.full(lam.shape, kappa0)
    kappa[positive] = _newton(fun, lo, hi, guess, what)
    out = numpy.empty((len(which), lam.shape[0]))
    if kappa0 > 0 or positive.size == lam.shape[0]:
        out[:] = _interpolate(table, centers, half, numpy.log(kappa))
    else:
        out[:, positive] = _interpolate(table, centers, half, numpy.log(kappa[positive]))
        out[:, lam <= 0] = _exact_spectral_sums(kernels, which, weights, numpy.zeros(1), spectra)
    return kappa, out
'''


# ---------------------------------------------------------------------------
# the plan: atoms as spectral sums, terms as rational functions of them
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sum:
    """A spectral sum: ``mean_i summand`` (``mean``) or ``sum_i summand`` (quadratic forms)."""

    mean: bool
    summand: sp.Expr


@dataclass
class _LossPlan:
    plan: _Plan
    kappa: sp.Symbol
    sums: list[_Sum] = field(default_factory=list)
    symbols: list[sp.Symbol] = field(default_factory=list)  # _a0, _a1, ... one per sum
    vectors: dict[str, sp.Symbol] = field(default_factory=dict)
    nonnegative: set[sp.Symbol] = field(default_factory=set)
    solver_rows: tuple[int, ...] = ()  # the sums df1 and -d df1/dkappa

    def atom(self, s: _Sum) -> sp.Expr:
        """A number times the variable of a spectral sum (one variable per distinct summand)."""
        summand = sp.factor(sp.cancel(s.summand))
        if summand == 0:
            return sp.S.Zero
        # kappa-only factors and numbers go outside the sum: one variable per summand shape
        outside, summand = summand.as_independent(*(summand.free_symbols - {self.kappa}), as_Add=False)
        number, rest = summand.as_coeff_Mul()
        key = _Sum(s.mean, rest)
        if key not in self.sums:
            self.sums.append(key)
            self.symbols.append(sp.Symbol(f"_a{len(self.symbols)}"))
        return outside * number * self.symbols[self.sums.index(key)]


def _deterministic(loss: LossFormula) -> dict[str, Deterministic | DeterministicVector]:
    model = loss.model
    if model is None or not all(hasattr(model, a) for a in ("sigma", "beta", "test_covariance")):
        raise InvalidArgument(
            f"loss_to_module needs a loss derived from a model (RidgeRegression(...).test_error() "
            f"or .training_error()), got a LossFormula {loss.name!r} without one"
        )
    leaves = [model.sigma, model.beta]
    if model.test_covariance is not None:
        leaves.append(model.test_covariance)
    return {leaf.name: leaf for leaf in leaves}


def _eigen(lp: _LossPlan, m: sp.Basic, deterministic: dict[str, Any]) -> sp.Expr:
    """Eigenvalues of a matrix expression of commuting matrices whose coefficients may hold
    ``kappa`` (``(kappa I + Sigma)^-1`` becomes ``1/(kappa + Sigma)``)."""
    if isinstance(m, sp.MatMul):
        coeff, mats = m.as_coeff_matrices()
        return coeff * sp.Mul(*[_eigen(lp, f, deterministic) for f in mats])
    if isinstance(m, sp.MatAdd):
        return sp.Add(*[_eigen(lp, a, deterministic) for a in m.args])
    if isinstance(m, sp.Inverse):
        return 1 / _eigen(lp, m.arg, deterministic)
    if isinstance(m, sp.MatPow):
        return _eigen(lp, m.args[0], deterministic) ** m.args[1]
    if isinstance(m, sp.Transpose):
        return _eigen(lp, m.arg, deterministic)
    return _elementwise(lp.plan, m, deterministic, test=False)


def _summand(lp: _LossPlan, atom: mtr, deterministic: dict[str, Any]) -> _Sum:
    """An :class:`mtr` atom as a spectral sum (matrices by their eigenvalues)."""
    m = atom.args[0]
    coeff, mats = m.as_coeff_matrices() if isinstance(m, sp.MatMul) else (sp.S.One, [m])
    mats = list(mats)
    if m.shape == (1, 1):
        first, last = mats[0], mats[-1] if len(mats) > 1 else None
        if not (
            isinstance(first, sp.Transpose)
            and isinstance(first.arg, sp.MatrixSymbol)
            and isinstance(last, sp.MatrixSymbol)
            and first.arg == last
            and last.name in lp.vectors
        ):
            raise InvalidArgument(
                f"the scalar atom {atom} is not a quadratic form v.T M v of the target vector; "
                "it is outside the class of the generated evaluator"
            )
        middle = mats[1:-1]
        inner = sp.MatMul(*middle).doit() if len(middle) > 1 else (middle[0] if middle else None)
        value = sp.S.One if inner is None else _eigen(lp, inner, deterministic)
        return _Sum(False, coeff * lp.vectors[last.name] ** 2 * value)
    return _Sum(True, coeff * _eigen(lp, m, deterministic))


def _merge(expr: sp.Expr, lp: _LossPlan) -> sp.Expr:
    """Merge linear combinations of sums of one kind, with coefficients in ``kappa`` times a
    common factor (which may hold other sums), into a single sum whose summand sympy
    simplifies; bottom-up through the expression."""
    if not expr.args:
        return expr
    expr = expr.func(*[_merge(a, lp) for a in expr.args])
    if not isinstance(expr, sp.Add):
        return expr
    by_symbol = dict(zip(lp.symbols, lp.sums, strict=True))
    candidates: list[list[tuple[tuple[bool, sp.Expr], sp.Expr, _Sum]]] = []
    for term in expr.args:
        options = []
        for atom, power in sorted(term.as_powers_dict().items(), key=str):
            if atom not in by_symbol or power != 1:
                continue
            outside, inside = (term / atom).as_independent(lp.kappa, as_Add=False)
            if inside.free_symbols - {lp.kappa}:
                continue
            number, outside = outside.as_coeff_Mul()
            s = by_symbol[atom]
            options.append(((s.mean, outside), number * inside, s))
        candidates.append(options)
    count: dict[tuple[bool, sp.Expr], int] = {}
    for options in candidates:
        for key, _, _ in options:
            count[key] = count.get(key, 0) + 1
    groups: dict[tuple[bool, sp.Expr], list[tuple[sp.Expr, _Sum]]] = {}
    out = []
    for term, options in zip(expr.args, candidates, strict=True):
        shared = [o for o in options if count[o[0]] > 1]
        if not shared:
            out.append(term)
            continue
        key, c, s = max(shared, key=lambda o: count[o[0]])
        groups.setdefault(key, []).append((c, s))
    for (mean, outside), members in groups.items():
        summand = sp.Add(*[c * s.summand for c, s in members])
        out.append(outside * lp.atom(_Sum(mean, summand)))
    return sp.Add(*out)


def _merged(expr: sp.Expr, lp: _LossPlan) -> sp.Expr:
    """Merge sums inside the factors of ``expr`` and in its expansion, until nothing changes."""
    for _ in range(4):
        new = sp.factor(_merge(sp.factor(_merge(sp.expand(expr), lp)), lp))
        if new == expr:
            break
        expr = new
    return expr


def _plan_loss(loss: LossFormula) -> tuple[_LossPlan, dict[str, sp.Expr], dict[str, sp.Expr]]:
    """The kappa solve (numpy_module's plan) and each term as a function of kappa and sums."""
    if not isinstance(loss, LossFormula):
        raise InvalidArgument(
            f"loss_to_module takes a LossFormula (e.g. RidgeRegression(...).test_error()), got "
            f"{type(loss).__name__}"
        )
    deterministic = _deterministic(loss)
    lam, kappa = loss.lam, loss.kappa
    if len(loss.fixed_points) != 1 or not loss.fixed_points[0].implicit:
        raise InvalidArgument(
            f"the loss {loss.name} has the fixed points {list(loss.fixed_points)}; the generated "
            "evaluator handles one implicit ridge kappa = lam / g(df1(Sigma, kappa)); use "
            "loss.evaluate for it"
        )
    fp = loss.fixed_points[0]
    if fp.symbol != kappa:
        raise InvalidArgument(f"the fixed point solves {fp.symbol} but the terms use {kappa}")
    plan = _Plan(lam=lam)
    plan.reserved = set(deterministic)
    dims = {leaf.dim for leaf in deterministic.values()}
    if len(dims) > 1:
        raise InvalidArgument(
            f"the matrices live in spaces of different sizes {sorted(map(str, dims))}; the "
            "generated evaluator needs them all in one eigenbasis"
        )
    plan.dims = [d for d in dims if isinstance(d, sp.Symbol)]
    _name_ok(plan, lam)
    _name_ok(plan, kappa)
    for leaf in deterministic.values():
        if isinstance(leaf, DeterministicVector):
            plan.vectors.add(leaf.name)
            plan.spectra[leaf.name] = False
    _implicit(plan, fp, deterministic, set())
    lp = _LossPlan(plan=plan, kappa=kappa, vectors={v: sp.Symbol(v, real=True) for v in sorted(plan.vectors)})
    # lam = kappa g(df1): the df1 variable of numpy_module's plan is a spectral sum here
    ((key, d_symbol),) = plan.atoms.items()
    y = plan.ys[key[0]]
    df1_sum = lp.atom(_Sum(True, y / (y + kappa)))
    slope_sum = lp.atom(_Sum(True, y / (y + kappa) ** 2))  # -d df1 / d kappa, for the Newton solve
    g = plan.branches[kappa].xreplace({d_symbol: df1_sum})
    fixed_params = set(plan.params)
    originals: dict[str, sp.Expr] = {}
    terms: dict[str, sp.Expr] = {}
    for name, expr in loss.terms.items():
        e = _to_atoms(sp.sympify(expr))
        originals[name] = e
        rep = {a: lp.atom(_summand(lp, a, deterministic)) for a in sorted(e.atoms(mtr), key=str)}
        e = e.xreplace(rep)
        eliminated = sp.factor(sp.cancel(sp.together(e.xreplace({lam: kappa * g}))))
        e = eliminated if lam not in eliminated.free_symbols else e
        terms[name] = _merged(sp.numer(e), lp) / _merged(sp.denom(e), lp)
    # only the sums the terms use
    solver_sums = (df1_sum, slope_sum)
    if not all(isinstance(a, sp.Symbol) for a in solver_sums):  # pragma: no cover - unit summands
        raise InvalidArgument(f"unexpected spectral sums {solver_sums} for the fixed point")
    used = set().union(*[t.free_symbols for t in terms.values()], solver_sums)
    keep = [i for i, s in enumerate(lp.symbols) if s in used]
    renumber = {lp.symbols[i]: sp.Symbol(f"_a{j}") for j, i in enumerate(keep)}
    lp.sums = [lp.sums[i] for i in keep]
    lp.symbols = [renumber[lp.symbols[i]] for i in keep]
    terms = {n: t.xreplace(renumber) for n, t in terms.items()}
    lp.solver_rows = tuple(lp.symbols.index(renumber[a]) for a in solver_sums)
    spectral = {_spectral_symbol(s) for s in plan.spectra} | set(lp.vectors.values())
    for name, t in terms.items():
        for s in t.free_symbols - set(lp.symbols) - {kappa, lam} - spectral:
            _name_ok(plan, s)
            if s not in fixed_params and s not in plan.dims:
                lp.nonnegative.add(s)
            else:
                plan.params.add(s)
        if name in ("total", kappa.name) or not name.isidentifier():
            raise InvalidArgument(f"the term name {name!r} clashes with an output; rename the term")
    plan.params -= {lam}
    return lp, originals, terms


def _magnitude(expr: sp.Expr) -> sp.Expr:
    """The sum of the absolute values of the monomials: the scale a cancellation is measured on."""
    if isinstance(expr, sp.Add):
        return sp.Add(*[_magnitude(a) for a in expr.args])
    if isinstance(expr, sp.Mul):
        return sp.Mul(*[_magnitude(a) for a in expr.args])
    if isinstance(expr, sp.Pow) and expr.exp.is_Integer:
        return _magnitude(expr.base) ** expr.exp
    return sp.Abs(expr)


# ---------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------


def _describe(loss: LossFormula, lp: _LossPlan, originals: dict[str, sp.Expr], terms: dict[str, Any]) -> str:
    lines = [f"{loss.name} = {' + '.join(loss.terms)}", ""]
    for name, e in originals.items():
        lines.append(f"{name} = {e}")
    fp = loss.fixed_points[0]
    lines += ["", f"{fp.symbol} = {fp.rhs}   (physical branch)", "", "evaluated as (lam eliminated):", ""]
    for name, t in terms.items():
        lines.append(f"{name} = {t}")
    lines.append("")
    for s, a in zip(lp.symbols, lp.sums, strict=True):
        kind = "mean_k" if a.mean else "sum_k"
        lines.append(f"{s} = {kind} {a.summand}")
    return "\n".join(lines)


def _kernel_function(args: list[sp.Symbol], kernels: list[sp.Expr], shifted: sp.Expr) -> Any:
    """``def _kernels(kappa, spectra)``: the kernels with ``1/(y + kappa)^n`` as powers of one
    reciprocal ``_r`` (one division per entry, then products), common subexpressions shared."""
    r = sp.Symbol("_r", positive=True)
    powers = {
        p: r ** (-p.exp)
        for e in kernels
        for p in e.atoms(sp.Pow)
        if p.base == shifted and p.exp.is_Integer and p.exp < 0
    }
    definition = _cse_function("_kernels", args, [k.xreplace(powers) for k in kernels])
    if not powers:
        return definition
    body = [Assignment(r, 1 / shifted), *definition.body.args]
    return FunctionDefinition(definition.return_type, definition.name, definition.parameters, body)


def loss_to_module(loss: LossFormula, name: str = "loss_evaluator") -> str:
    r"""The source of a standalone numpy module that evaluates a loss formula on ``lam`` grids.

    Parameters
    ----------
    loss : LossFormula
        A derived ridge loss: ``RidgeRegression(...).test_error()`` (bias, variance,
        noise; with ``test_covariance`` the covariate-shifted error) or
        ``.training_error()``. Its matrices must commute (given by eigenvalues in one
        eigenbasis) and its fixed point must be one implicit ridge
        ``kappa = lam / g(df1(Sigma, kappa))``.
    name : str
        The module's name (a Python identifier), used in its docstring.

    Returns
    -------
    str
        Python source with ``evaluate(lam, *, <matrices>, <vector>, <parameters>)``:
        ``lam`` real ``>= 0`` (number or array; 0 is the ridgeless limit), each
        covariance by its eigenvalues and the target by its coordinates in the common
        eigenbasis (1-D arrays of one length), dimensions (``D`` defaults to the
        spectrum length) and ratios ``> 0``, noise variances ``>= 0``, all broadcasting
        with ``lam``. It returns a dict of arrays of the broadcast shape: every term,
        ``total`` and ``kappa``. Bad inputs (and a divergent ridgeless limit) raise
        ``ValueError``.

    Raises
    ------
    InvalidArgument
        If ``loss`` is not a model's LossFormula in the class above or ``name`` is not
        an identifier.

    Examples
    --------
    >>> import sympy as sp
    >>> from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian
    >>> from detequiv.models.ridge import RidgeRegression
    >>> D, P = sp.symbols("D P", positive=True)
    >>> S, X = Deterministic("Sigma", D), Gaussian("X", (P, D))
    >>> model = RidgeRegression(S, X, DeterministicVector("beta", D))
    >>> src = loss_to_module(model.training_error(), "ridge_train")
    >>> "def evaluate(lam, *, Sigma=None, beta=None, D=None, P=None, sigma2=None):" in src
    True
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise InvalidArgument(f"module name {name!r} must be a Python identifier such as 'loss_evaluator'")
    lp, originals, terms = _plan_loss(loss)
    plan, kappa, lam = lp.plan, lp.kappa, loss.lam
    printer = _LossPrinter({"fully_qualified_modules": True})

    spectra = sorted(plan.spectra)
    spectral_symbols = [lp.vectors[s] if s in lp.vectors else _spectral_symbol(s) for s in spectra]
    defs = [_cse_function(f"_spectrum_{i}", _sorted(y.free_symbols), [y]) for i, y in enumerate(plan.ys)]
    defs += plan.functions
    split = [a.summand.as_independent(kappa, as_Add=False) for a in lp.sums]
    kernels: list[sp.Expr] = []
    for _, kernel in split:
        if kernel not in kernels:
            kernels.append(kernel)
    which = [kernels.index(kernel) for _, kernel in split]
    defs.append(_cse_function("_weights", spectral_symbols, [w for w, _ in split]))
    defs.append(_kernel_function([kappa, *spectral_symbols], kernels, plan.ys[0] + kappa))
    params = _sorted(plan.params)
    nonnegative = _sorted(lp.nonnegative)
    term_args = [kappa, *lp.symbols, *params, *nonnegative]
    defs.append(_cse_function("_terms", term_args, [sp.Tuple(*terms.values())]))
    denominators = [sp.denom(t) for t in terms.values()]
    checked = [i for i, d in enumerate(denominators) if d.free_symbols]
    pairs = [(denominators[i], _magnitude(denominators[i])) for i in checked]
    defs.append(_cse_function("_denominators", term_args, [sp.Tuple(*[x for pair in pairs for x in pair])]))
    generated = "\n\n\n".join(printer.doprint(f) for f in defs)

    dims = [d for d in params if d in plan.dims]
    signature = ", ".join(
        [lam.name, "*", *[f"{s}=None" for s in spectra], *[f"{p.name}=None" for p in (*params, *nonnegative)]]
    )
    body = [f"{s} = _spectrum({s!r}, {s}, {plan.spectra[s]})" for s in spectra]
    body.append("_n = _same_length({" + ", ".join(f"{s!r}: {s}" for s in spectra) + "})")
    for d in dims:
        body.append(f"if {d.name} is None:\n        {d.name} = _n")
    names = [lam.name, *[p.name for p in params], *[p.name for p in nonnegative]]
    pos = "[" + ", ".join(f"({p.name!r}, {p.name})" for p in params) + "]"
    nonneg = "[" + ", ".join(f"({p.name!r}, {p.name})" for p in nonnegative) + "]"
    body.append(f"_shape, ({', '.join(names)},) = _loss_grid({lam.name!r}, {lam.name}, {pos}, {nonneg})")
    body.append(f"_size = {lam.name}.shape[0]")
    solver = [
        f"_y{i} = _eigenvalues(_spectrum_{i}({', '.join(s.name for s in _sorted(y.free_symbols))}), _n)"
        for i, y in enumerate(plan.ys)
    ]
    *before, solve = plan.statements
    if not (
        isinstance(solve.rhs, FunctionCall) and str(solve.rhs.name) == "_solve_ridge" and solve.lhs == kappa
    ):
        raise InvalidArgument(f"unexpected solver statement {solve}")  # pragma: no cover
    solver += [printer.doprint(st) for st in before]
    kinds = "(" + "".join(f"{a.mean}, " for a in lp.sums) + ")"
    spectra_tuple = f"({', '.join(spectra)},)"
    solver.append(f"_w = _weight_vectors(_weights, {kinds}, {spectra_tuple}, _n)")
    call = ", ".join(printer.doprint(a) for a in solve.rhs.function_args)
    solver.append(
        f"{kappa.name}, _sums = _ridge_and_sums({call}, _kernels, {tuple(which)!r}, _w, {spectra_tuple}, "
        f"{lp.solver_rows!r})"
    )
    solver.append(f"({', '.join(s.name for s in lp.symbols)},) = _sums")
    term_vars = [f"_term{i}" for i in range(len(terms))]
    solver.append(f"({', '.join(term_vars)},) = _terms({', '.join(s.name for s in term_args)})")
    names_checked = tuple(list(terms)[i] for i in checked)
    arguments = ", ".join(s.name for s in term_args)
    solver.append(f"_check_ridgeless({lam.name}, {names_checked!r}, _denominators({arguments}))")
    body.append('with numpy.errstate(all="ignore"):\n' + "\n".join("        " + line for line in solver))
    outputs = [f"{n!r}: {v}" for n, v in zip(terms, term_vars, strict=True)]
    outputs.append(f"'total': {' + '.join(term_vars)}")
    outputs.append(f"{kappa.name!r}: {kappa.name}")
    body.append(f"return _finish(_shape, {lam.name}, {{{', '.join(outputs)}}})")

    def _describe_input(s: str) -> str:
        if s in lp.vectors:
            meaning = f"The coordinates of the vector {s} in the common eigenbasis."
        else:
            meaning = f"Eigenvalues of {s} (>= 0), in the common eigenbasis."
        return f"    {s} : array of shape (n,)\n        {meaning}"

    scalars = "\n".join(
        f"    {p.name} : positive number or array"
        + (", optional\n        Defaults to the spectrum length n." if p in dims else "")
        for p in params
    )
    scalars += "".join(f"\n    {p.name} : number or array >= 0" for p in nonnegative)
    doc = (
        f"Evaluate the loss on a grid of {lam.name}.\n\n    Parameters\n    ----------\n"
        f"    {lam.name} : number or array, real >= 0\n        The ridge; {lam.name} = 0 is the "
        "ridgeless limit.\n"
        + "\n".join(_describe_input(s) for s in spectra)
        + f"\n{scalars}\n\n    Returns\n    -------\n    dict of numpy arrays (broadcast shape)\n"
        f"        The terms {', '.join(repr(t) for t in terms)}, 'total' and the ridge "
        f"{kappa.name!r}.\n\n    Raises\n    ------\n    ValueError\n        For bad inputs, "
        "or where a value is not finite (a divergent ridgeless limit).\n"
    )
    header = (
        f'r"""{name}: evaluator of the loss {loss.name}, generated by detequiv.codegen.loss_to_module.\n\n'
        "Only numpy is needed at run time. The terms (tr = Tr/n; a quadratic form b.T M b is\n"
        "sum_k b_k^2 m_k in the common eigenbasis) and the fixed point (MATH.md 2.1, 4.1-4.3):\n\n"
        f"{_docstring_text(_describe(loss, lp, originals, terms))}\n\n"
        "Call ``evaluate(lam, *, matrices..., parameters...)``.\n"
        '"""\n'
    )
    return _assemble(header, printer, (_RUNTIME, _LOSS_RUNTIME), generated, signature, doc, body)


# ---------------------------------------------------------------------------
# command line: detequiv curve ridge --spectrum powerlaw:ALPHA --D ... [--plot out.png]
# ---------------------------------------------------------------------------

_CURVE_MODELS = ("ridge", "rf", "sgd")


def model_loss(name: str) -> LossFormula:
    """The derived loss of a named model: ``ridge`` (test error), ``ridge-train`` (training
    error) or ``rf`` (random-feature ridge test error with its fine-grained split).

    >>> sorted(model_loss("ridge").terms)
    ['bias', 'noise', 'variance']
    """
    from ..models.random_features import RandomFeatureRidge

    d, p, n = sp.symbols("D P N", positive=True)
    sigma, x, beta = Deterministic("Sigma", d), Gaussian("X", (p, d)), DeterministicVector("beta", d)
    if name == "ridge":
        return RidgeRegression(sigma, x, beta).test_error()
    if name == "ridge-train":
        return RidgeRegression(sigma, x, beta).training_error()
    if name in ("rf", "random-features"):
        return RandomFeatureRidge(sigma, x, Gaussian("F", (n, d)), beta).test_error()
    raise InvalidArgument(f"unknown model {name!r}; use one of ridge, ridge-train, rf")


MODEL_NAMES = ("ridge", "ridge-train", "rf", "random-features")


def _power_law(spec: str, n: int, flag: str) -> Any:
    """``powerlaw:ALPHA`` -> ``k^-ALPHA`` (k = 1..n); ``flat`` -> ``scale`` (ones or 1/n)."""
    import numpy as np

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


def _lam_grid(spec: str) -> Any:
    """``LO:HI:COUNT`` (log-spaced, LO may be 0 for the ridgeless point) -> array."""
    import numpy as np

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


def curve_main(argv: Sequence[str] | None = None) -> int:
    r"""``detequiv curve MODEL --spectrum powerlaw:ALPHA --D D --P P [...]``: loss curves.

    Derives the test error (bias, variance, noise) and the training error of the model,
    generates their numpy evaluators (:func:`loss_to_module`) and prints the curves over
    a ``lam`` grid as a table (``--csv FILE`` writes it, ``--plot FILE`` draws it; needs
    matplotlib). Models: ``ridge``. The covariance has eigenvalues ``k^-ALPHA``
    (``k = 1..D``; ``flat`` for the identity), the target coefficients
    ``beta_k^2 = k^-B`` (``--target powerlaw:B``, default ``powerlaw:0.9``; ``flat`` for
    ``beta_k^2 = 1/D``, so ``|beta|^2 = 1``), label noise ``--noise`` (default 0.09),
    ``P`` samples (default ``D / 2``). The doctest is MATH.md 7's isotropic ridge at
    ``q = 0.5`` (ridgeless ``E_g = 0.5``; ``lam = 1``: ``E_g = 0.62546``,
    ``E_tr = 0.38129``).

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
    import argparse

    import numpy as np

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
    args = parser.parse_args(list(argv) if argv is not None else None)
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

    sizes = {"D": args.D, "P": p_value}
    losses = [(model_loss("ridge"), "E_test"), (model_loss("ridge-train"), "E_train")]
    if args.model == "rf":
        n_value = args.N if args.N is not None else args.D / 4
        if not n_value > 0:
            raise InvalidArgument(f"--N {n_value}: the number of features must be > 0")
        sizes["N"] = n_value
        losses = [(model_loss("rf"), "E_test")]
    columns: dict[str, Any] = {"lam": lams}
    for loss, label in losses:
        namespace: dict[str, Any] = {}
        exec(compile(loss_to_module(loss, label), f"<{label}>", "exec"), namespace)  # noqa: S102
        try:
            out = namespace["evaluate"](lams, Sigma=spectrum, beta=beta, sigma2=args.noise, **sizes)
        except ValueError as exc:
            raise InvalidArgument(f"{label}: {exc}") from None
        if label == "E_test":
            columns.update({"kappa": out[str(loss.kappa)], **{k: out[k] for k in loss.terms}})
        columns[label] = out["total"]
    header = " ".join(columns)
    rows = [" ".join(f"{float(v[i]):.6g}" for v in columns.values()) for i in range(lams.size)]
    setting = f"spectrum {args.spectrum}, target {args.target}, noise {args.noise:g}"
    size_text = ", ".join(f"{k} = {v:g}" for k, v in sizes.items())
    print(f"# {args.model}, {size_text}, {setting}")
    print(header)
    print("\n".join(rows))
    if args.csv:
        with open(args.csv, "w") as fh:
            fh.write(",".join(columns) + "\n")
            fh.writelines(
                ",".join(f"{float(v[i]):.17g}" for v in columns.values()) + "\n" for i in range(lams.size)
            )
    if args.plot:
        _plot_curves(columns, args.plot, f"{args.model}, {size_text}, {args.spectrum}")
    return 0


def _sgd_curve(args: Any, spectrum: Any, beta: Any) -> int:
    """``curve sgd``: the exact online-SGD loss curve (MATH.md 5.2) at log-spaced steps and its floor."""
    import numpy as np

    from ..models.sgd import OnlineSGD

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
        try:
            from matplotlib.figure import Figure
        except ImportError:  # pragma: no cover - optional extra
            raise InvalidArgument("--plot needs matplotlib: pip install matplotlib") from None
        fig = Figure(figsize=(6.4, 4.4))
        ax = fig.add_subplot()
        t = np.arange(1, curve.size)
        ax.loglog(t, curve[1:], label="loss")
        ax.axhline(model.floor(), ls="--", color="gray", label="floor")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
        fig.savefig(args.plot, bbox_inches="tight")
    return 0


@figure_style()
def _plot_curves(columns: dict[str, Any], path: str, title: str) -> None:
    import numpy as np

    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - optional extra
        raise InvalidArgument("--plot needs matplotlib: pip install matplotlib") from None
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    lams = columns["lam"]
    keep = lams > 0
    for name in columns:
        if name.startswith(("E_", "bias", "variance")) and np.all(columns[name][keep] > 0):
            ax.loglog(lams[keep], columns[name][keep], label=name)
    ax.set_xlabel("lam")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.savefig(path, bbox_inches="tight")
