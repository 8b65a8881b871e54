r"""Standalone numpy evaluators of one-point results: :func:`to_module` (issue 5, MATH.md 2, 5.6).

:func:`to_module` turns a derived :class:`~detequiv.derivations.onepoint.OnePoint` (or a
trace :class:`~detequiv.derivations.onepoint.Contracted` ``tr(T R)``) into the source of
a Python module that needs only numpy at run time. The formulas are printed by sympy's
:class:`~sympy.printing.numpy.NumPyPrinter` from :mod:`sympy.codegen.ast` function
definitions after common-subexpression elimination (:func:`sympy.cse`); only the fixed
scaffolding (input checks, the chunked :math:`\mathrm{df}_1`, the safeguarded Newton
loop) is literal text.

The evaluators work in the *commuting class*: every deterministic matrix of the result
is given by its eigenvalues in one common eigenbasis (one covariance ``Sigma``, its
powers and square roots, a test matrix ``T`` commuting with it), so that
:math:`\mathrm{df}_1(Y,\kappa)=\operatorname{mean}_k\,y_k/(y_k+\kappa)` over the
eigenvalues :math:`y_k` of ``Y``. A single test matrix of a trace may be any matrix:
``tr(T f(Sigma))`` only sees its diagonal in the eigenbasis of ``Sigma``, which is what
its "eigen-weights" are.

The fixed points are solved in their solve order: an implicit ridge
:math:`\kappa=\lambda/g(\mathrm{df}_1(Y,\kappa))` on the physical branch (MATH.md 2.1:
for :math:`\lambda>0` the root of :math:`\kappa\,g(\mathrm{df}_1(\kappa))=\lambda` with
:math:`\kappa>\kappa_0`; for :math:`\lambda=0` the ridgeless :math:`\kappa_0`, the
largest zero of :math:`g(\mathrm{df}_1(\kappa))`, 0 if there is none, e.g.
:math:`\kappa_0=0` for :math:`P\ge D` in the sample covariance; the zeros of ``g`` are
found by sympy when the module is generated), explicit ones by their formula in terms
of the ridges already solved, rewritten with :math:`\lambda=\kappa\,g` when that removes
a ``0/0`` at :math:`\lambda=0` (the intermediate ridge of a layered chain). A complex
:math:`\lambda` is reached by Newton continuation along the arc from :math:`|\lambda|`
(MATH.md 2.1, 5.6), with exact sums.

The run-time solver is vectorized over the grid: :math:`\lambda(\kappa)` is tabulated
exactly on a log grid of :math:`\kappa-\kappa_0` and inverted by cubic Hermite pieces
for the starting points, then a safeguarded Newton iteration (bisection when a step
leaves the bracket :math:`[\kappa_0,\infty)`) usually needs one exact evaluation per
point: a step below ``1e-7 (kappa - kappa_0)`` is accepted, its error being of order
its square. For many points the spectral sums :math:`\operatorname{mean}\,w\,y/(y+k)`
are interpolated in :math:`\log k` by Chebyshev pieces (they are analytic in the strip
:math:`|\operatorname{Im}\log k|<\pi`, so 24 nodes per piece of length 2 give about
``1e-15`` relative accuracy) from exact sums at the nodes, computed in cache-sized
blocks.

>>> import importlib.util, sys, tempfile, os
>>> import numpy as np, sympy as sp
>>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
>>> from detequiv.derivations.derive import derive
>>> lam = sp.Symbol("lam", positive=True); D, P = sp.symbols("D P", positive=True)
>>> S = Deterministic("Sigma", D); X = Gaussian("X", (P, D))
>>> source = to_module(derive(lam * resolvent(S.sqrt() @ X.T @ X @ S.sqrt() / P, lam)))
>>> "import sympy" in source
False
>>> namespace = {}
>>> exec(compile(source, "evaluator.py", "exec"), namespace)
>>> out = namespace["evaluate"](np.array([0.1, 1.0]), Sigma=np.ones(4), D=1, P=2)
>>> np.round(out["kappa"], 10)   # MATH.md 7, isotropic (q, lam) = (0.5, 0.1), (0.5, 1)
array([0.17416574, 1.28077641])

References
----------
MATH.md sections 2.1-2.4 (fixed points, physical branch, ridgeless limit), 5.6
(numerical recipe); DESIGN.md 3.5 (printing and codegen).
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy as sp
from sympy.codegen.ast import (
    Assignment,
    FunctionCall,
    FunctionDefinition,
    QuotedString,
    Return,
    Variable,
    none,
)
from sympy.printing.codeprinter import CodePrinter
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import PRECEDENCE

from ..derivations.contraction import Contracted
from ..derivations.expressions import Deterministic, DeterministicVector, Sqrt
from ..derivations.onepoint import OnePoint
from ..derivations.quantities import df1
from ..errors import InvalidArgument, UndefinedTransform

__all__ = ["to_module", "numpy_function"]

_Leaf = Deterministic | DeterministicVector


class _Printer(NumPyPrinter):
    """NumPyPrinter with plain scalar assignments.

    ``NumPyPrinter._print_Assignment`` routes the right-hand side through its array
    machinery, which prints ``x0 = D/P`` as ``x0 = D`` (sympy 1.14); scalar code needs
    the generic :class:`CodePrinter` rule.
    """

    def _print_Assignment(self, expr: Any) -> str:
        return CodePrinter._print_Assignment(self, expr)

    def _print_Pow(self, expr: Any, rational: bool = False) -> str:
        if expr.exp == -1:  # 1/x rather than x**(-1.0)
            return "1/" + self.parenthesize(expr.base, PRECEDENCE["Mul"])
        return super()._print_Pow(expr, rational=rational)


# ---------------------------------------------------------------------------
# the fixed runtime scaffolding (no formula of the result in here)
# ---------------------------------------------------------------------------

_RUNTIME = r'''
_TOL = 1e-13
_QUADRATIC = 1e-7
_MAXITER = 400
_ARC = 64  # continuation steps from |lam| to a complex lam
_BLOCK = 1 << 16  # entries of a (grid, D) block: small enough for a fast cache
_COLUMNS = 8192  # eigenvalues per block
_NODES = 24  # Chebyshev points (second kind) per piece of log k
_PIECE = 2.0  # length of a piece in log k
_CHEB = numpy.cos(numpy.pi * numpy.arange(_NODES) / (_NODES - 1))
_BARY = numpy.where(numpy.arange(_NODES) % 2, -1.0, 1.0)
_BARY[[0, -1]] *= 0.5


def _spectrum(name, value, nonnegative):
    """A 1-D float array of eigenvalues (or eigen-weights), checked."""
    if value is None:
        raise ValueError(f"missing {name}: pass its eigenvalues as a 1-D array, {name}=...")
    a = numpy.asarray(value)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be real numbers (a 1-D float array), got dtype {a.dtype}")
    a = numpy.ascontiguousarray(a, dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of eigenvalues, got shape {a.shape}")
    if not numpy.all(numpy.isfinite(a)):
        raise ValueError(f"{name} has non-finite entries (nan or inf); pass finite eigenvalues")
    if nonnegative and a.min() < 0:
        raise ValueError(
            f"{name} has the negative eigenvalue {a.min():.6g}; it must be positive semidefinite "
            "(a covariance), so pass eigenvalues >= 0"
        )
    return a


def _eigenvalues(value, n):
    """The eigenvalues of a matrix of the result as a float array of length n."""
    return numpy.ascontiguousarray(numpy.broadcast_to(numpy.asarray(value, dtype=float), (n,)))


def _same_length(spectra):
    sizes = {name: a.shape[0] for name, a in spectra.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(
            f"the spectra have different lengths {sizes}; give every matrix by its eigenvalues "
            "in one common eigenbasis (same length)"
        )
    return sizes.popitem()[1] if sizes else 1


def _grid(lam_name, lam, params):
    """Broadcast lam (>= 0 or complex) and the positive parameters; flat arrays and the shape."""
    arrays = []
    for name, value in [(lam_name, lam), *params]:
        if value is None:
            raise ValueError(f"missing {name}: pass {name}=... (a positive number or array)")
        a = numpy.asarray(value)
        if a.dtype.kind == "c" and name == lam_name:
            if not numpy.all(numpy.isfinite(a)):
                raise ValueError(f"{name} has non-finite values (nan or inf); pass finite numbers")
            bad = (a.imag == 0) & (a.real < 0)
            if bad.any():
                raise ValueError(
                    f"{name} = {a.real[bad].min():.6g} < 0 on the real axis: the physical branch is "
                    f"defined for {name} > 0, {name} = 0 (ridgeless) and complex {name} off the "
                    "negative axis; pass one of those"
                )
            arrays.append(a.astype(complex) if numpy.any(a.imag != 0) else a.real.astype(float))
            continue
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be a real number or array, got dtype {a.dtype}")
        a = a.astype(float)
        if not numpy.all(numpy.isfinite(a)):
            raise ValueError(f"{name} has non-finite values (nan or inf); pass finite numbers")
        if name == lam_name and a.size and a.min() < 0:
            raise ValueError(
                f"{name} = {a.min():.6g} < 0: the physical branch is defined for {name} > 0 and the "
                f"ridgeless limit {name} = 0; pass {name} >= 0"
            )
        if name != lam_name and a.size and a.min() <= 0:
            raise ValueError(f"{name} = {a.min():.6g} must be > 0 (a dimension or a ratio)")
        arrays.append(a)
    try:
        arrays = numpy.broadcast_arrays(*arrays)
    except ValueError:
        shapes = {n: numpy.shape(v) for (n, v) in [(lam_name, lam), *params]}
        raise ValueError(
            f"the shapes {shapes} do not broadcast together; use scalars or matching grids"
        ) from None
    shape = arrays[0].shape
    return shape, [numpy.ascontiguousarray(a).reshape(-1) for a in arrays]


def _blocks(k, n):
    """(row slice, column slice) blocks of a (len(k), n) array that fit in a fast cache."""
    cols = min(n, _COLUMNS)
    rows = max(1, _BLOCK // cols)
    for c0 in range(0, n, cols):
        for r0 in range(0, k.shape[0], rows):
            yield slice(r0, r0 + rows), slice(c0, c0 + cols)


def _exact_sums(y, w, k, ridge, derivative):
    """mean(w f) and mean(w df/dk) over the eigenvalues y, f = k/(k+y) or y/(y+k), k not <= 0.

    ``w = None`` means unit weights.
    """
    n = y.shape[0]
    wy = y if w is None else w * y  # d/dk: +- w y/(y+k)^2
    wf = wy if not ridge else (numpy.ones(n) if w is None else w)  # f = w y/(y+k) or k w/(k+y)
    dtype = numpy.result_type(k, float)
    value = numpy.zeros(k.shape, dtype)
    slope = numpy.zeros(k.shape, dtype) if derivative else None
    buffer = numpy.empty(min(_BLOCK, max(k.shape[0], 1) * min(n, _COLUMNS)), dtype)
    for rows, cols in _blocks(k, n):
        kk, yy = k[rows], y[cols]
        block = buffer[: kk.shape[0] * yy.shape[0]].reshape(kk.shape[0], yy.shape[0])
        numpy.add(kk[:, None], yy, out=block)
        numpy.divide(1.0, block, out=block)
        value[rows] += block @ wf[cols]
        if derivative:
            numpy.multiply(block, block, out=block)
            slope[rows] += block @ wy[cols]
    if ridge:
        value *= k
    value /= n
    if derivative:
        slope /= n if ridge else -n
    return value, slope


def _sums(y, w, k, ridge, derivative=False):
    """mean(w f(y, k)) for each k, f = k / (k + y) (ridge) or y / (y + k), and d/dk.

    For many k the sums are interpolated in log k: each is analytic in the strip
    |Im log k| < pi (its poles are at k = -y), so Chebyshev interpolation on pieces of
    length _PIECE with _NODES points is accurate to ~1e-16 relative to the local size of
    the sum (the Bernstein ellipse of the pieces stays in 0.9 of the strip). Each piece's
    nodes are summed exactly; few k are summed exactly. ``w = None``: unit weights.
    """
    n = y.shape[0]
    if w is not None:
        w = numpy.ascontiguousarray(numpy.broadcast_to(w, (n,)), dtype=float)
    k = numpy.asarray(k)
    complex_k = k.dtype.kind == "c"
    if not complex_k and k.dtype != float:
        k = k.astype(float)
    positive = (k != 0) if complex_k else (k > 0)
    if positive.all():
        positive, kp = None, k
    else:
        kp = k[positive]
    if complex_k or kp.size <= 4 * _NODES:
        v, d = _exact_sums(y, w, kp, ridge, derivative)
    else:
        logs = numpy.log(kp)
        low, high = logs.min(), logs.max()
        pieces = max(1, int(numpy.ceil((high - low) / _PIECE)))
        if 2 * pieces * _NODES > kp.size:
            v, d = _exact_sums(y, w, kp, ridge, derivative)
        else:
            half = max((high - low) / pieces, 1e-12) / 2
            centers = low + half * (2 * numpy.arange(pieces) + 1)
            nodes = (centers[:, None] + half * _CHEB[None, :]).reshape(-1)
            fv, fd = _exact_sums(y, w, numpy.exp(nodes), ridge, derivative)
            piece = numpy.clip(((logs - low) / (2 * half)).astype(int), 0, pieces - 1)
            x = (logs - centers[piece]) / half
            diff = x[:, None] - _CHEB[None, :]
            diff[diff == 0] = 1e-300  # a node: its term dominates the others
            terms = _BARY[None, :] / diff
            den = terms.sum(axis=1)
            v = (terms * fv.reshape(pieces, _NODES)[piece]).sum(axis=1) / den
            d = (terms * fd.reshape(pieces, _NODES)[piece]).sum(axis=1) / den if derivative else None
    if positive is None:
        value, slope = v, d
    else:
        value = numpy.empty(k.shape, v.dtype)
        value[positive] = v
        zero = ~positive  # k = 0: f -> [y == 0] (ridge) or [y > 0]
        mask = (y == 0) if ridge else (y > 0)
        value[zero] = numpy.mean(mask if w is None else w * mask)
        slope = None
        if derivative:
            slope = numpy.empty(k.shape, v.dtype)
            slope[positive] = d
            slope[zero] = numpy.inf if ridge else -numpy.inf
    return (value, slope) if derivative else value


def _df1(y, k, derivative=False):
    """mean(y / (y + k)) over the eigenvalues y, for each k (and its k-derivative)."""
    return _sums(numpy.atleast_1d(numpy.asarray(y, dtype=float)), None, k, False, derivative)


def _trace_ratio(r, y, w):
    """mean(w * r / (r + y)) over the eigenvalues y, for each r (0/0 -> 1: the kernel projector)."""
    y = numpy.asarray(y, dtype=float)
    n = max(y.size, numpy.size(w))
    y = numpy.ascontiguousarray(numpy.broadcast_to(y, (n,)))
    w = None if numpy.ndim(w) == 0 and w == 1 else w
    r = numpy.asarray(r)
    value = _sums(y, w, numpy.atleast_1d(r), True)
    return value.reshape(r.shape)


def _newton(fun, lo, hi, x, what, floor=None, tol=_TOL, atol=0.0):
    """Vectorized safeguarded Newton for an increasing F with F(lo) <= 0 <= F(hi) (hi may be inf).

    fun(x, idx) returns F and F' at the points idx; a step that leaves the bracket is
    replaced by bisection (geometric when the bracket spans decades). With ``floor`` (a
    point where F is smooth and increasing to the root, kappa_0), a Newton step below
    _QUADRATIC (x - floor) is accepted without another evaluation: the error left after
    it is of order its square.
    """
    lo, hi, x = lo.copy(), hi.copy(), x.copy()
    idx = numpy.arange(x.shape[0])
    for _ in range(_MAXITER):
        if idx.size == 0:
            return x
        xa = x[idx]
        f, df = fun(xa, idx)
        positive = f > 0
        h = numpy.where(positive, numpy.minimum(hi[idx], xa), hi[idx])
        lw = numpy.where(positive, lo[idx], numpy.maximum(lo[idx], xa))
        hi[idx], lo[idx] = h, lw
        with numpy.errstate(all="ignore"):
            new = xa - f / df
            geometric = (lw > 0) & (h > 4 * lw) & (floor is not None)
            middle = numpy.where(geometric, numpy.sqrt(lw * h), 0.5 * (lw + h))
            fallback = numpy.where(numpy.isfinite(h), middle, 4 * numpy.maximum(xa, lw))
        inside = numpy.isfinite(new) & (new >= lw) & (new <= h)
        small = numpy.abs(new - xa) <= tol * numpy.abs(xa) + atol
        new = numpy.where(inside, new, fallback)
        with numpy.errstate(invalid="ignore"):  # inf - inf when hi = inf
            collapsed = numpy.isfinite(h) & (h - lw <= tol * numpy.abs(h) + atol)
        if floor is not None:
            small |= numpy.abs(new - xa) <= _QUADRATIC * (new - floor[idx])
        done = collapsed | (inside & small) | (f == 0)
        x[idx] = new
        idx = idx[~done]
    raise RuntimeError(f"the Newton iteration for {what} did not converge in {_MAXITER} steps")


def _smallest_positive(candidates, size):
    """The smallest real positive candidate root at each grid point (inf if none)."""
    best = numpy.full(size, numpy.inf)
    for c in candidates:
        c = numpy.broadcast_to(numpy.asarray(c), (size,))
        real = numpy.real(c).astype(float)
        ok = numpy.isfinite(real) & (numpy.abs(numpy.imag(c)) <= 1e-12 * numpy.abs(real)) & (real > 0)
        best = numpy.where(ok & (real < best), real, best)
    return best


def _threshold(y, dstar):
    """kappa_0: the root of df1(y, k) = dstar where dstar < df1(y, 0), else 0 (per grid point)."""
    kappa0 = numpy.zeros(dstar.shape)
    positive = numpy.mean(y > 0)
    values, inverse = numpy.unique(dstar, return_inverse=True)
    todo = values < positive
    if todo.any():
        target = values[todo]
        # df1(k) <= max(y) / (max(y) + k) and df1(k) >= positive - k mean(1/y, y > 0) bracket the root
        hi = numpy.max(y) / target
        with numpy.errstate(divide="ignore"):
            inverse_mean = numpy.mean(numpy.where(y > 0, 1 / y, 0.0))
        lo = (positive - target) / (2 * inverse_mean)

        def fun(s, idx):  # in s = log k, where df1 is a smooth monotone step
            k = numpy.exp(s)
            d, dd = _df1(y, k, True)
            return target[idx] - d, -dd * k

        roots = numpy.zeros(values.shape)
        s_lo, s_hi = numpy.log(lo), numpy.log(hi)
        s = _newton(fun, s_lo, s_hi, 0.5 * (s_lo + s_hi), "the ridgeless ridge kappa_0", tol=0.0, atol=_TOL)
        roots[todo] = numpy.exp(s)
        kappa0 = roots[inverse.reshape(-1)]
    return kappa0


def _invert_table(branch, params, targets, y, kappa0, size):
    """Guesses of k(lam) from an exact table of lam(k) = k g(df1(y, k)) on k = kappa0 + t.

    t is log-spaced over the range the targets need; log t is interpolated as a function
    of log lam by cubic Hermite pieces with the exact slopes lam / (t lam'(k)).
    """

    def table(t):
        k = kappa0 + t
        d, dd = _df1(y, k, True)
        g, dg = branch(d, *[numpy.full(t.shape, p) for p in params])
        return k * g, g + k * dg * dd

    scale = max(float(numpy.max(y)), kappa0, float(numpy.max(targets)), 1e-300)
    t_hi = numpy.array([4 * scale])
    for _ in range(60):
        if table(t_hi)[0][0] >= targets.max():
            break
        t_hi = 4 * t_hi
    t_lo = numpy.array([min(float(numpy.min(targets)), scale) * 1e-3])
    for _ in range(60):
        if table(t_lo)[0][0] <= targets.min():
            break
        t_lo = 1e-3 * t_lo
    t = numpy.geomspace(t_lo[0], t_hi[0], size)
    h, dh = table(t)
    ok = numpy.isfinite(h) & numpy.isfinite(dh) & (h > 0) & (dh > 0)
    t, h, dh = t[ok], h[ok], dh[ok]
    v = numpy.log(h)
    if t.size < 4 or numpy.any(numpy.diff(v) <= 0):
        return numpy.full(targets.shape, numpy.nan)
    u = numpy.log(t)
    slope = h / (t * dh)
    w = numpy.log(targets)
    i = numpy.clip(numpy.searchsorted(v, w) - 1, 0, v.size - 2)
    step = v[i + 1] - v[i]
    s = numpy.clip((w - v[i]) / step, 0.0, 1.0)
    s2, s3 = s * s, s * s * s
    u_w = (
        (2 * s3 - 3 * s2 + 1) * u[i]
        + (s3 - 2 * s2 + s) * step * slope[i]
        + (3 * s2 - 2 * s3) * u[i + 1]
        + (s3 - s2) * step * slope[i + 1]
    )
    inside = (w >= v[0]) & (w <= v[-1])
    return numpy.where(inside, kappa0 + numpy.exp(u_w), numpy.nan)


def _warm_start(branch, args, lam, y, kappa0, size=160):
    """Tabulated guesses for each distinct (kappa0, parameters) group when that is cheap."""
    guess = numpy.full(lam.shape, numpy.nan)
    keys = numpy.stack([kappa0, *args], axis=1)
    if numpy.all(keys == keys[:1]):  # one group (scalar parameters): no sorting needed
        rows, inverse = keys[:1], numpy.zeros(lam.shape[0], dtype=int)
    else:
        rows, inverse = numpy.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
    if rows.shape[0] * size > lam.shape[0]:
        return guess
    for j in range(rows.shape[0]):
        members = numpy.flatnonzero(inverse == j)
        guess[members] = _invert_table(branch, rows[j, 1:], lam[members], y, rows[j, 0], size)
    return guess


def _continue_ridge(branch, args, lam, y, dstar, what):
    """Complex lam: Newton continuation along the arc from |lam| (MATH.md 2.1, complex lam)."""
    radius, angle = numpy.abs(lam), numpy.angle(lam)
    z = _solve_ridge(branch, args, radius, y, dstar, what).astype(complex)
    for j in range(1, _ARC + 1):
        target = radius * numpy.exp(1j * angle * (j / _ARC))
        for _ in range(_MAXITER):
            d, dd = _df1(y, z, True)
            g, dg = branch(d, *args)
            step = (z * g - target) / (g + z * dg * dd)
            z = z - step
            if numpy.all(numpy.abs(step) <= _TOL * numpy.abs(z)):
                break
        else:
            raise RuntimeError(f"the Newton continuation for {what} did not converge on the arc")
    return z


def _solve_ridge(branch, args, lam, y, dstar, what):
    """The physical root of k g(df1(y, k)) = lam, k > kappa_0 (kappa_0 at lam = 0)."""
    if numpy.iscomplexobj(lam):
        kappa = numpy.empty(lam.shape, complex)
        real = lam.imag == 0
        for part, solve, values in ((real, _solve_ridge, lam.real), (~real, _continue_ridge, lam)):
            where = numpy.flatnonzero(part)
            if where.size:
                kappa[where] = solve(branch, [a[where] for a in args], values[where], y, dstar[where], what)
        return kappa
    kappa0 = _threshold(y, dstar)
    kappa = kappa0.copy()
    todo = numpy.flatnonzero(lam > 0)
    if todo.size == 0:
        return kappa
    sub_args = [a[todo] for a in args]
    target, floor = lam[todo], kappa0[todo]
    guess = _warm_start(branch, sub_args, target, y, floor)
    missing = ~(guess > floor)
    if missing.any() and y.shape[0] > 4096:  # solve on a subsampled spectrum, polish on the full one
        stride = -(-y.shape[0] // 2048)
        coarse = numpy.sort(y)[stride // 2 :: stride]
        where = numpy.flatnonzero(missing)
        guess[where] = _solve_ridge(
            branch, [a[where] for a in sub_args], target[where], coarse, dstar[todo][where], what
        )
    start = numpy.where(guess > floor, guess, floor + target)

    def fun(k, idx):
        d, dd = _df1(y, k, True)
        g, dg = branch(d, *[a[idx] for a in sub_args])
        return k * g - target[idx], g + k * dg * dd

    hi = numpy.full(todo.shape, numpy.inf)
    kappa[todo] = _newton(fun, floor, hi, start, what, floor)
    return kappa


def _finish(shape, lam, outputs):
    """Reshape to the grid; a non-finite output is an error, never a silent nan."""
    result = {}
    for name, value in outputs.items():
        value = numpy.broadcast_to(numpy.asarray(value), lam.shape)
        bad = ~numpy.isfinite(value)
        if bad.any():
            where = lam[bad][:3]
            raise ValueError(
                f"{name} is not finite at lam = {where} (0/0 or a pole, e.g. the ridgeless limit of "
                "a quantity that diverges there); use lam > 0"
            )
        result[name] = numpy.array(value, dtype=numpy.result_type(value, float)).reshape(shape)
    return result
'''


# ---------------------------------------------------------------------------
# the plan: sympy pieces of the evaluator
# ---------------------------------------------------------------------------


@dataclass
class _Plan:
    """What the generated module computes, as sympy expressions (built by :func:`_plan`)."""

    lam: sp.Symbol
    spectra: dict[str, bool] = field(default_factory=dict)  # name -> must be >= 0
    dims: list[sp.Symbol] = field(default_factory=list)  # default: the spectrum length
    params: set[sp.Symbol] = field(default_factory=set)
    ys: list[sp.Expr] = field(default_factory=list)  # elementwise spectra of the df1 matrices
    atoms: dict[tuple[int, sp.Symbol], sp.Symbol] = field(default_factory=dict)  # (y, kappa) -> d
    functions: list[FunctionDefinition] = field(default_factory=list)
    statements: list[Any] = field(default_factory=list)  # body of the solver, in order
    outputs: list[tuple[str, sp.Symbol]] = field(default_factory=list)
    reserved: set[str] = field(default_factory=set)
    emitted: set[sp.Symbol] = field(default_factory=set)
    vectors: set[str] = field(default_factory=set)
    display: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)  # df1 variable -> df1 atom
    rewritten: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)  # explicit fps with lam eliminated
    branches: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)  # k -> g with lam = k g(df1)


def _cse_function(name: str, args: Sequence[sp.Symbol], exprs: Sequence[sp.Expr]) -> FunctionDefinition:
    """``def name(args): ...; return exprs`` with common subexpressions as assignments."""
    replacements, reduced = sp.cse(list(exprs), symbols=sp.numbered_symbols("_t"), order="canonical")
    body: list[Any] = [Assignment(s, e) for s, e in replacements]
    body.append(Return(reduced[0] if len(reduced) == 1 else sp.Tuple(*reduced)))
    return FunctionDefinition(none, name, [Variable(a) for a in args], body)


def numpy_function(
    name: str, args: Sequence[sp.Symbol], exprs: Sequence[sp.Expr]
) -> tuple[str, Callable[..., Any]]:
    """Source and compiled callable of a vectorized numpy function of sympy expressions.

    The same printer and common-subexpression elimination as :func:`to_module` (no
    string templates of formulas); the function returns one array, or a tuple for
    several expressions. Used by :mod:`detequiv.dmft` for the single-site step functions
    of user losses.

    Parameters
    ----------
    name : str
        A Python identifier.
    args : sequence of sympy.Symbol
        The arguments, in order.
    exprs : sequence of sympy expressions
        What the function returns.

    Examples
    --------
    >>> import numpy as np, sympy as sp
    >>> r, y = sp.symbols("r y")
    >>> src, f = numpy_function("softplus", (r, y), [sp.log(1 + sp.exp(-y * r))])
    >>> "def softplus(r, y):" in src, float(f(np.array([0.0]), np.array([1.0]))[0])
    (True, 0.6931471805599453)
    """
    if not name.isidentifier():
        raise InvalidArgument(f"name={name!r} is not a Python identifier")
    extra = set().union(*(sp.sympify(e).free_symbols for e in exprs)) - set(args)
    if extra:
        raise InvalidArgument(
            f"the expressions use {sorted(map(str, extra))}, which are not arguments {list(args)}"
        )
    printer = _Printer({"fully_qualified_modules": True})
    source = "import numpy\n\n\n" + printer.doprint(_cse_function(name, args, [sp.sympify(e) for e in exprs]))
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<{name}>", "exec"), namespace)  # noqa: S102 - our own printed code
    return source, namespace[name]


def _sorted(symbols: Any) -> list[sp.Symbol]:
    return sorted(symbols, key=lambda s: s.name)


def _spectral_symbol(name: str) -> sp.Symbol:
    return sp.Symbol(name, nonnegative=True)


def _elementwise(plan: _Plan, m: sp.Basic, deterministic: dict[str, _Leaf], test: bool) -> sp.Expr:
    """The eigenvalues of a matrix expression of commuting matrices, as a scalar expression."""
    if isinstance(m, sp.MatrixSymbol):
        if m.name not in deterministic:
            raise InvalidArgument(
                f"{m.name} is not a deterministic matrix of the result; the generated evaluator "
                "takes deterministic matrices by their eigenvalues only (a random factor left in "
                "the equivalent is outside its class)"
            )
        leaf = deterministic[m.name]
        if not test:
            if not getattr(leaf, "symmetric", False):
                raise InvalidArgument(
                    f"{m.name} is declared symmetric=False but enters a df1 or the equivalent; the "
                    "generated evaluator needs commuting symmetric matrices given by their eigenvalues"
                )
            plan.spectra[m.name] = True
        else:
            plan.spectra.setdefault(m.name, False)
        return _spectral_symbol(m.name)
    if isinstance(m, sp.Identity):
        return sp.S.One
    if isinstance(m, sp.ZeroMatrix):
        return sp.S.Zero
    if isinstance(m, sp.Transpose):
        return _elementwise(plan, m.arg, deterministic, test)
    if isinstance(m, sp.Inverse):
        return 1 / _elementwise(plan, m.arg, deterministic, test)
    if isinstance(m, sp.MatPow):
        base, exp = m.args
        return _elementwise(plan, base, deterministic, test) ** exp
    if isinstance(m, sp.MatMul):
        coeff, mats = m.as_coeff_matrices()
        if sp.sympify(coeff).free_symbols:
            raise InvalidArgument(
                f"the matrix {m} has the symbolic coefficient {coeff}; the generated evaluator needs "
                "the matrices of df1 and of the equivalent free of scalar parameters"
            )
        return coeff * sp.Mul(*[_elementwise(plan, f, deterministic, test) for f in mats])
    if isinstance(m, sp.MatAdd):
        return sp.Add(*[_elementwise(plan, a, deterministic, test) for a in m.args])
    raise InvalidArgument(f"cannot express the matrix {m} by eigenvalues of commuting matrices")


def _leaves(expr: Any) -> list[Any]:
    """The matrix leaves of a result's input (a matrix expression or a Trace of one)."""
    return list(expr.leaves() if hasattr(expr, "leaves") else expr.arg.leaves())


def _y_index(plan: _Plan, y: sp.Expr) -> int:
    if y not in plan.ys:
        plan.ys.append(y)
    return plan.ys.index(y)


def _y_name(i: int) -> sp.Symbol:
    return sp.Symbol(f"_y{i}")


def _use_atom(plan: _Plan, y: int, kappa: sp.Symbol, solved: set[sp.Symbol]) -> sp.Symbol:
    """The variable holding df1(y, kappa), computed (once) as soon as it is first used."""
    key = (y, kappa)
    if key not in plan.atoms:
        plan.atoms[key] = sp.Symbol(f"_d{len(plan.atoms)}")
    d = plan.atoms[key]
    if d not in plan.emitted:
        if kappa not in solved:  # pragma: no cover - guarded by the callers
            raise InvalidArgument(f"df1 of {kappa} is needed before {kappa} is solved")
        plan.emitted.add(d)
        plan.statements.append(Assignment(d, FunctionCall("_df1", [_y_name(y), kappa])))
    return d


def _scalar(
    plan: _Plan, expr: sp.Expr, deterministic: dict[str, _Leaf], solved: set[sp.Symbol], what: str
) -> sp.Expr:
    """``expr`` with each df1 atom replaced by its variable (all its ridges solved)."""
    undefined = [f for f in expr.atoms(sp.Function) if isinstance(f, sp.core.function.AppliedUndef)]
    if undefined:
        raise UndefinedTransform(
            f"{undefined[0].func} in {what} has no closed form, so the generated evaluator cannot "
            "compute it; use a law with a closed-form S-transform (Wishart, FreePoisson, Constant)"
        )
    rep = {}
    for atom in sorted(expr.atoms(df1), key=str):
        ymat, kappa = atom.args
        if kappa not in solved:
            raise InvalidArgument(f"{atom} in {what} needs {kappa}, which is not solved before it")
        y = _elementwise(plan, ymat, deterministic, test=False)
        rep[atom] = _use_atom(plan, _y_index(plan, y), kappa, solved)
        plan.display[rep[atom]] = atom
    return expr.xreplace(rep)


def _name_ok(plan: _Plan, s: sp.Symbol) -> None:
    if not s.name.isidentifier() or keyword.iskeyword(s.name) or s.name.startswith("_"):
        raise InvalidArgument(
            f"the symbol {s.name!r} cannot be a Python argument name; rename it (an identifier "
            "not starting with '_')"
        )
    if s.name in plan.reserved:
        raise InvalidArgument(f"the symbol {s.name!r} is also a matrix name; rename one of them")


def _plan(result: Any) -> _Plan:
    if isinstance(result, Contracted):
        inner: OnePoint = result.inner
        # tr(L R M) = tr(M L R); a quadratic form u.T L R M v keeps its order (all commute)
        test = (*result.right, *result.left) if result.kind == "trace" else (*result.left, *result.right)
    elif isinstance(result, OnePoint):
        inner, test = result, ()
    else:
        raise InvalidArgument(
            f"to_module takes a one-point result (OnePoint or a trace Contracted from derive), got "
            f"{type(result).__name__}; two-point results reach code through the losses built on them: "
            "loss_to_module(RidgeRegression(...).test_error()) or loss_to_module(RandomFeatureRidge(...)"
            ".test_error()) (their bias is the two-point equivalent at lam' = lam)"
        )
    lam = inner.lam
    if not isinstance(lam, sp.Symbol):
        raise InvalidArgument(f"the ridge {lam} of the result must be a symbol such as lam")
    plan = _Plan(lam=lam)
    leaves = [*_leaves(result.random), *test]
    deterministic: dict[str, _Leaf] = {}
    for leaf in leaves:
        base = leaf.base if isinstance(leaf, Sqrt) else getattr(leaf, "arg", leaf)
        if isinstance(base, (Deterministic, DeterministicVector)):
            deterministic[base.name] = base
        if isinstance(base, DeterministicVector):
            plan.vectors.add(base.name)
    dims = {d.dim for d in deterministic.values()}
    if len(dims) > 1:
        raise InvalidArgument(
            f"the deterministic matrices live in spaces of different sizes {sorted(map(str, dims))}; "
            "the generated evaluator needs them all in one eigenbasis"
        )
    plan.reserved = set(deterministic)
    plan.dims = [d for d in dims if isinstance(d, sp.Symbol)]
    _name_ok(plan, lam)

    solved: set[sp.Symbol] = set()
    for fp in inner.fixed_points:
        k = fp.symbol
        _name_ok(plan, k)
        if fp.implicit:
            _implicit(plan, fp, deterministic, solved)
        else:
            original = _scalar(plan, fp.rhs, deterministic, solved, f"the fixed point {k}")
            rhs = _eliminate_lam(plan, original, solved)
            _record_rewrite(plan, k, original, rhs)
            args = _sorted(rhs.free_symbols)
            fname = f"_fixed_point_{k.name}"
            plan.functions.append(_cse_function(fname, args, [rhs]))
            plan.statements.append(Assignment(k, FunctionCall(fname, args)))
            plan.params |= {s for s in rhs.free_symbols if not s.name.startswith("_") and s not in solved}
        solved.add(k)
        plan.outputs.append((k.name, k))

    ridge = _scalar(plan, sp.sympify(inner.ridge), deterministic, solved, "the ridge")
    prefactor = _scalar(plan, sp.sympify(inner.prefactor), deterministic, solved, "the prefactor")
    r, c = sp.Symbol("_ridge"), sp.Symbol("_prefactor")
    for var, expr, fname in ((r, ridge, "_ridge"), (c, prefactor, "_prefactor")):
        args = _sorted(expr.free_symbols)
        plan.functions.append(_cse_function(f"{fname}_of", args, [expr]))
        plan.statements.append(Assignment(var, FunctionCall(f"{fname}_of", args)))
        plan.params |= {s for s in args if not s.name.startswith("_") and s not in solved}

    y_value = _elementwise(plan, inner.matrix, deterministic, test=False)
    weights: sp.Expr = sp.S.One
    for f in test:
        weights = weights * _elementwise(plan, f.to_sympy(), deterministic, test=True)
    ye, we, value = sp.Symbol("_y_equivalent"), sp.Symbol("_weights"), sp.Symbol("_value")
    for var, expr, fname in ((ye, y_value, "_equivalent_spectrum"), (we, weights, "_test_weights")):
        args = _sorted(expr.free_symbols)
        plan.functions.append(_cse_function(fname, args, [expr]))
        plan.statements.append(Assignment(var, FunctionCall(fname, args)))
    plan.statements.append(Assignment(value, FunctionCall("_trace_ratio", [r, ye, we])))
    quadratic = isinstance(result, Contracted) and result.kind == "quadratic"
    # a quadratic form sums over the eigenbasis: n * mean
    plan.statements.append(Assignment(value, c * value * sp.Symbol("_n") if quadratic else c * value))
    plan.outputs += [("ridge", r), ("prefactor", c), ("value", value)]
    plan.params -= {lam}
    for s in plan.params:
        _name_ok(plan, s)
    return plan


def _implicit(plan: _Plan, fp: Any, deterministic: dict[str, _Leaf], solved: set[sp.Symbol]) -> None:
    """Emit the physical-branch solve of ``k = lam / g(df1(Y, k))``: g and g' (cse), the
    closed-form zeros of g (the ridgeless threshold), and the call of the Newton solver."""
    k, lam = fp.symbol, plan.lam
    atoms = sorted(fp.rhs.atoms(df1), key=str)
    own = [a for a in atoms if a.args[1] == k]
    outside = (
        f"the fixed point {fp} is not of the form {k} = {lam} / g(df1(Y, {k})) with one df1 of "
        f"{k} (additive layers, mixed chains); it is outside the class of the generated "
        "evaluator: use result.evaluate for it"
    )
    if len(own) != 1:
        raise InvalidArgument(outside)
    d = sp.Symbol("_d")
    rhs = fp.rhs.xreplace({own[0]: d})
    rhs = _scalar(plan, rhs, deterministic, solved, f"the fixed point {k}")
    g = sp.simplify(lam / rhs)
    if k in g.free_symbols or lam in g.free_symbols:
        raise InvalidArgument(outside)
    y = _y_index(plan, _elementwise(plan, own[0].args[0], deterministic, test=False))
    args = _sorted(g.free_symbols - {d})
    branch = f"_branch_{k.name}"
    plan.functions.append(_cse_function(branch, [d, *args], [g, sp.diff(g, d)]))
    try:
        roots = sp.solve(sp.numer(sp.together(g)), d)
    except NotImplementedError:
        raise InvalidArgument(
            f"cannot find the zeros of g = {g} in closed form (the ridgeless threshold of {k})"
        ) from None
    roots = [r for r in roots if not r.has(d)]
    threshold = f"_threshold_{k.name}"
    targs = _sorted(set().union(*[r.free_symbols for r in roots]))
    plan.functions.append(_cse_function(threshold, targs, [sp.Tuple(*roots)]))
    dstar = sp.Symbol(f"_dstar_{k.name}")
    plan.statements.append(
        Assignment(
            dstar,
            FunctionCall("_smallest_positive", [FunctionCall(threshold, targs), sp.Symbol("_size")]),
        )
    )
    plan.statements.append(
        Assignment(
            k,
            FunctionCall(
                "_solve_ridge",
                [sp.Symbol(branch), sp.Tuple(*args), lam, _y_name(y), dstar, QuotedString(f"the ridge {k}")],
            ),
        )
    )
    plan.params |= {s for s in (*args, *targs) if not s.name.startswith("_") and s not in solved}
    key = (y, k)
    if key not in plan.atoms:
        plan.atoms[key] = sp.Symbol(f"_d{len(plan.atoms)}")
    plan.branches[k] = g.xreplace({d: plan.atoms[key]})
    plan.display[plan.atoms[key]] = own[0]


def _eliminate_lam(plan: _Plan, rhs: sp.Expr, solved: set[sp.Symbol]) -> sp.Expr:
    """Replace ``lam`` by ``k g(df1(y, k))`` of the implicit ridge ``k`` (exact on the branch)
    when that removes ``lam``: an intermediate ridge of a layered chain, ``lam / (1 - n/P)``,
    becomes ``k (1 - n/N)``, finite at ``lam = 0`` on both sides of the threshold."""
    lam = plan.lam
    branches = [k for k in plan.branches if k in solved]
    if lam not in rhs.free_symbols or len(branches) != 1:
        return rhs
    k = branches[0]
    candidate = sp.factor(sp.cancel(sp.together(rhs.xreplace({lam: k * plan.branches[k]}))))
    if lam in candidate.free_symbols:
        return rhs
    for (y, kappa), d in list(plan.atoms.items()):
        if d in candidate.free_symbols:
            _use_atom(plan, y, kappa, solved)
    return candidate


def _record_rewrite(plan: _Plan, k: sp.Symbol, original: sp.Expr, used: sp.Expr) -> None:
    if used != original:
        plan.rewritten[k] = used.xreplace(plan.display)


# ---------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------


def _describe(result: Any, plan: _Plan) -> tuple[str, str]:
    """The result and its fixed points as text and as LaTeX (for the docstring)."""
    inner = result.inner if isinstance(result, Contracted) else result
    text = [f"{result.random}  ~  {result.deterministic}"]
    for fp in inner.fixed_points:
        text.append(f"    {fp.symbol} = {fp.rhs}")
        if fp.symbol in plan.rewritten:
            text.append(
                f"        evaluated as {fp.symbol} = {plan.rewritten[fp.symbol]}\n"
                f"        (equal on the branch {plan.lam} = k g(df1); finite at {plan.lam} = 0)"
            )
    tex = [sp.latex(result.deterministic)]
    tex += [f"{sp.latex(fp.symbol)} = {sp.latex(fp.rhs)}" for fp in inner.fixed_points]
    return "\n".join(text), "\n".join(tex)


def _docstring_text(text: str) -> str:
    return text.replace('"""', "'''")


def to_module(result: OnePoint | Contracted, name: str = "evaluator") -> str:
    r"""The source of a standalone numpy module that evaluates a one-point result on grids.

    Parameters
    ----------
    result : OnePoint or Contracted
        From :func:`~detequiv.derivations.onepoint.derive`: an equivalent
        ``c (lam + A)^{-1} ~ prefactor * kappa (kappa + Y)^{-1}`` or a trace of it
        ``tr(T R)``, whose deterministic matrices commute (given by eigenvalues in one
        eigenbasis) and whose implicit fixed points have the form
        ``kappa = lam / g(df1(Y, kappa))`` (Gram, Wishart and other closed-form free
        factors, layered chains); or a quadratic form ``u.T R v`` (vectors given by
        their coordinates in the eigenbasis).
    name : str
        The module's name (a Python identifier), used in its docstring.

    Returns
    -------
    str
        Python source with a function ``evaluate(lam, *, <matrices>, <parameters>)``:
        ``lam`` an array (or number), real ``>= 0`` or complex (off the negative
        axis), each deterministic matrix by its eigenvalues (1-D arrays of one length;
        a test matrix ``T`` by its diagonal in that eigenbasis), dimensions and ratios
        as positive numbers or arrays that broadcast with ``lam`` (a matrix dimension
        defaults to the spectrum length). It returns a dict of arrays of the broadcast
        shape (complex for a complex grid): each fixed point by name, ``ridge``,
        ``prefactor`` and ``value``, the normalized trace ``tr(E)`` of the
        equivalent ``E`` (``tr(T E)`` or ``u.T E v`` for a contracted result). Bad
        inputs raise ``ValueError``.

    Raises
    ------
    InvalidArgument
        If the result is outside the class above (a random matrix left in the
        equivalent, an additive layer, matrices of different sizes).
    UndefinedTransform
        If a fixed point uses an S-transform with no closed form.

    Examples
    --------
    >>> import sympy as sp
    >>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent, trace
    >>> from detequiv.derivations.derive import derive
    >>> lam = sp.Symbol("lam", positive=True); D, P = sp.symbols("D P", positive=True)
    >>> S, T = Deterministic("Sigma", D), Deterministic("T", D); X = Gaussian("X", (P, D))
    >>> src = to_module(derive(trace(T @ (lam * resolvent(X.T @ X @ S / P, lam)))), "ridge_trace")
    >>> "def evaluate(lam, *, Sigma=None, T=None, D=None, P=None):" in src
    True
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise InvalidArgument(f"module name {name!r} must be a Python identifier such as 'evaluator'")
    plan = _plan(result)
    printer = _Printer({"fully_qualified_modules": True})
    text, tex = _describe(result, plan)

    defs = []
    for i, y in enumerate(plan.ys):
        defs.append(_cse_function(f"_spectrum_{i}", _sorted(y.free_symbols), [y]))
    defs += plan.functions
    generated = "\n\n\n".join(printer.doprint(f) for f in defs)

    spectra = sorted(plan.spectra)
    params = _sorted(plan.params)
    dims = [d for d in params if d in plan.dims]
    lam = plan.lam.name
    signature = ", ".join([lam, "*", *[f"{s}=None" for s in spectra], *[f"{p.name}=None" for p in params]])
    body = []
    for s in spectra:
        body.append(f"{s} = _spectrum({s!r}, {s}, {plan.spectra[s]})")
    body.append("_n = _same_length({" + ", ".join(f"{s!r}: {s}" for s in spectra) + "})")
    for d in dims:
        body.append(f"if {d.name} is None:\n        {d.name} = _n")
    names = [lam, *[p.name for p in params]]
    pairs = "[" + ", ".join(f"({p.name!r}, {p.name})" for p in params) + "]"
    body.append(f"_shape, ({', '.join(names)},) = _grid({lam!r}, {lam}, {pairs})")
    body.append(f"_size = {lam}.shape[0]")
    solver = [
        f"_y{i} = _eigenvalues(_spectrum_{i}({', '.join(s.name for s in _sorted(y.free_symbols))}), _n)"
        for i, y in enumerate(plan.ys)
    ]
    for st in plan.statements:
        solver.append(printer.doprint(st))
    body.append('with numpy.errstate(all="ignore"):\n' + "\n".join("        " + line for line in solver))
    outputs = ", ".join(f"{n!r}: {printer.doprint(v)}" for n, v in plan.outputs)
    body.append(f"return _finish(_shape, {lam}, {{{outputs}}})")

    def _describe_input(s: str) -> str:
        if s in plan.vectors:
            meaning = f"The coordinates of the vector {s} in the common eigenbasis."
        elif plan.spectra[s]:
            meaning = f"Eigenvalues of {s} (>= 0)."
        else:
            meaning = f"Eigen-weights of {s}: its diagonal in the common eigenbasis."
        return f"    {s} : array of shape (n,)\n        {meaning}"

    matrices = "\n".join(_describe_input(s) for s in spectra)
    scalars = "\n".join(
        f"    {p.name} : positive number or array"
        + (", optional\n        Defaults to the spectrum length n." if p in dims else "")
        for p in params
    )
    fixed = ", ".join(repr(n) for n, _ in plan.outputs[:-3])
    if isinstance(result, Contracted) and result.kind == "quadratic":
        what = "the quadratic form"
    elif isinstance(result, Contracted):
        what = "the normalized trace against the test matrix"
    else:
        what = "the normalized trace of the equivalent"
    doc = (
        f"Evaluate the equivalent on a grid of {lam}.\n\n    Parameters\n    ----------\n"
        f"    {lam} : number or array, >= 0 or complex\n        The ridge; {lam} = 0 is the ridgeless "
        "limit, complex values are\n        reached by continuation along the arc from |lam|.\n"
        f"{matrices}\n{scalars}\n\n    Returns\n    -------\n    dict of numpy arrays (broadcast shape)\n"
        f"        The fixed points {fixed}, 'ridge', 'prefactor' and 'value'\n        ({what}).\n"
    )
    header = (
        f'r"""{name}: evaluator of a deterministic equivalent, generated by detequiv.codegen.to_module.\n\n'
        "Only numpy is needed at run time. The equivalent (trace-normalized, tr = Tr/n) and\n"
        "its fixed points, solved in this order (df1(Y, k) = mean(y / (y + k)) over the\n"
        "eigenvalues y of Y; implicit ridges on the physical branch, MATH.md 2.1):\n\n"
        f"{_docstring_text(text)}\n\nLaTeX:\n\n{_docstring_text(tex)}\n\n"
        "Call ``evaluate(lam, *, matrices..., parameters...)``.\n"
        '"""\n'
    )
    return _assemble(header, printer, (_RUNTIME,), generated, signature, doc, body)


def _assemble(
    header: str,
    printer: Any,
    runtimes: Sequence[str],
    generated: str,
    signature: str,
    doc: str,
    body: Sequence[str],
) -> str:
    """The module text: docstring, imports, the fixed runtime helpers, the generated code, ``evaluate``."""
    imports = sorted(f"import {m}" for m in printer.module_imports) or ["import numpy"]
    if "import numpy" not in imports:
        imports.insert(0, "import numpy")
    parts = [
        header,
        "\n".join(imports),
        '__all__ = ["evaluate"]',
        *(r.strip("\n") for r in runtimes),
        "# generated: sympy.cse + sympy.codegen.ast, printed by NumPyPrinter\n\n" + generated,
        f"def evaluate({signature}):\n    " + '"""' + doc + '    """\n    ' + "\n    ".join(body),
    ]
    return "\n\n\n".join(p.strip("\n") for p in parts) + "\n"
