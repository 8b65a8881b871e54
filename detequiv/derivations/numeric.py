r"""Numbers from a one-point equivalent: the physical branch, and the Monte Carlo witness.

:func:`evaluate` solves the fixed points of a :class:`~detequiv.derivations.onepoint.OnePoint`
in their dependency order for a concrete spectrum (MATH.md 2.1): for real
:math:`\lambda>0` the implicit ridge is the root of :math:`\lambda(\kappa)=\lambda`,
:math:`\lambda(\kappa)=\kappa/G(\mathrm{df}_1(\kappa))`, with :math:`\kappa>\kappa_0`
(:math:`\kappa_0` the largest zero of :math:`1/G(\mathrm{df}_1(\kappa))`, 0 if none),
found by ``scipy.optimize.brentq``; for complex :math:`\lambda` by Newton continuation
along the arc from :math:`|\lambda|`; :math:`\lambda=0` gives the ridgeless
:math:`\kappa_0`. Fixed points of other forms (additive layers, mixed chains) are
solved by Newton continuation from :math:`\lambda+s`, :math:`s\to\infty`, down to
:math:`s=0` (``_general_ridge``): the branch connected to :math:`\kappa\sim\lambda`.

The Monte Carlo witness built on these numbers lives in
:mod:`detequiv.witnesses.onepoint` (``derivations`` never imports ``codegen``).
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp
from scipy.optimize import brentq

from ..errors import InvalidArgument, UndefinedTransform
from .derivation import solve_order
from .expressions import (
    Deterministic,
    DeterministicVector,
    FreeMatrix,
    Identity,
    MatrixExpr,
    Sqrt,
    Transpose,
)
from .quantities import df1

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from .contraction import Contracted
    from .onepoint import OnePoint

__all__ = [
    "evaluate_one_point",
    "OnePointValue",
    "lookup_value",
    "as_matrix",
    "matrix_power",
    "scalar_values",
    "plain_number",
    "to_number",
    "split_values",
    "substitute_scalars",
    "NumericMatrices",
    "physical_ridge",
    "contracted_value",
    "contraction_factor",
]


# ---------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------


def split_values(values: Mapping[Any, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Matrices by name (spectra stay 1-D) and scalars by symbol name."""
    if not isinstance(values, Mapping):
        raise InvalidArgument(f"values must be a mapping, got {type(values).__name__}")
    mats: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(key, (Deterministic, FreeMatrix)):
            mats[key.name] = np.asarray(value)
        elif isinstance(key, sp.MatrixSymbol):
            mats[key.name] = np.asarray(value)
        elif isinstance(key, sp.Symbol):
            scalars[key.name] = value
        elif isinstance(key, str):
            arr = np.asarray(value)
            if arr.ndim:
                mats[key] = arr
            else:
                scalars[key] = value
        else:
            raise InvalidArgument(
                f"bad key {key!r} in values: use a Deterministic matrix, its name, or a sympy Symbol"
            )
    for name, arr in mats.items():
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
            raise InvalidArgument(
                f"the matrix or spectrum given for {name} has non-finite or non-numeric entries"
            )
    return mats, scalars


def to_number(value: Any, what: str) -> complex:
    try:
        z = complex(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{what} = {value!r} is not a number") from None
    if not (math.isfinite(z.real) and math.isfinite(z.imag)):
        raise InvalidArgument(f"{what} = {value!r} is not finite")
    return z


def substitute_scalars(expr: sp.Expr, scalars: Mapping[str, Any]) -> sp.Expr:
    subs = {s: scalars[s.name] for s in expr.free_symbols if isinstance(s, sp.Symbol) and s.name in scalars}
    return expr.xreplace({k: sp.sympify(v) for k, v in subs.items()})


class NumericMatrices:
    """Numeric matrices of sympy matrix expressions, with cached square roots."""

    def __init__(self, mats: Mapping[str, np.ndarray], scalars: Mapping[str, Any]) -> None:
        self.mats = dict(mats)
        self.scalars = scalars
        self._sqrt: dict[str, np.ndarray] = {}

    def dim(self, d: sp.Expr) -> int:
        value = substitute_scalars(sp.sympify(d), self.scalars)
        if value.free_symbols:
            sizes = {m.shape[0] for m in self.mats.values()}
            if len(sizes) == 1:
                return sizes.pop()
            raise InvalidArgument(f"no value for the dimension {d}; pass it in values")
        return int(value)

    def get(self, name: str, d: sp.Expr) -> np.ndarray:
        if name not in self.mats:
            raise InvalidArgument(f"no matrix or spectrum for {name}; pass it in values")
        m = self.mats[name]
        n = m.shape[0]
        value = substitute_scalars(sp.sympify(d), self.scalars)
        if not value.free_symbols and int(value) != n:
            raise InvalidArgument(f"{name} has size {n} but its dimension {d} = {value}; make them agree")
        if m.ndim == 1:
            return np.diag(m)
        if m.ndim != 2 or m.shape != (n, n):
            raise InvalidArgument(f"{name} must be a spectrum (1-D) or a square matrix, got shape {m.shape}")
        return m

    def rectangular(self, name: str, shape: tuple[sp.Expr, sp.Expr]) -> np.ndarray:
        if name not in self.mats:
            raise InvalidArgument(f"no matrix for {name}; pass {{{name}: array of shape {shape}}} in values")
        m = self.mats[name]
        want = tuple(substitute_scalars(sp.sympify(d), self.scalars) for d in shape)
        if m.ndim != 2 or any(not w.free_symbols and int(w) != k for w, k in zip(want, m.shape, strict=True)):
            raise InvalidArgument(f"{name} has shape {m.shape}; its declared shape is {shape} = {want}")
        return m

    def sqrt(self, name: str, d: sp.Expr) -> np.ndarray:
        if name not in self._sqrt:
            m = self.mats.get(name)
            if m is not None and m.ndim == 1:
                self._sqrt[name] = np.diag(np.sqrt(m.astype(float)))
            else:
                e, v = np.linalg.eigh(self.get(name, d))
                if e.min() < -1e-12 * max(1.0, abs(e).max()):
                    raise InvalidArgument(f"{name} has a negative eigenvalue {e.min():.3g}; no square root")
                self._sqrt[name] = (v * np.sqrt(np.clip(e, 0, None))) @ v.T
        return self._sqrt[name]

    def matrix(self, m: sp.Basic) -> np.ndarray:
        if isinstance(m, sp.Identity):
            return np.eye(self.dim(m.shape[0]))
        if isinstance(m, sp.Transpose):
            return self.matrix(m.arg).T
        if isinstance(m, sp.ZeroMatrix):
            return np.zeros((self.dim(m.shape[0]), self.dim(m.shape[1])))
        if isinstance(m, sp.MatrixSymbol):
            if m.shape[0] != m.shape[1]:
                return self.rectangular(m.name, m.shape)
            return self.get(m.name, m.shape[0])
        if isinstance(m, sp.MatPow):
            base, exp = m.args
            if isinstance(base, sp.MatrixSymbol) and exp == sp.Rational(1, 2):
                return self.sqrt(base.name, base.shape[0])
            if exp.is_Integer and exp > 0:
                return np.linalg.matrix_power(self.matrix(base), int(exp))
        if isinstance(m, sp.MatAdd):
            return sum((self.matrix(a) for a in m.args[1:]), self.matrix(m.args[0]))
        if isinstance(m, sp.MatMul):
            coeff, mats = m.as_coeff_matrices()
            out = self.matrix(mats[0])
            for f in mats[1:]:
                out = out @ self.matrix(f)
            return complex(substitute_scalars(coeff, self.scalars)) * out if coeff != 1 else out
        raise InvalidArgument(f"cannot evaluate the matrix {m} numerically")

    def eigenvalues(self, m: sp.Basic) -> np.ndarray:
        if isinstance(m, sp.MatrixSymbol) and self.mats.get(m.name, np.zeros((0, 0))).ndim == 1:
            self.get(m.name, m.shape[0])  # size check
            return self.mats[m.name].astype(float)
        a = self.matrix(m)
        if np.allclose(a, a.T.conj()):
            return np.linalg.eigvalsh(a)
        e = np.linalg.eigvals(a)
        return e.real if np.allclose(e.imag, 0) else e


# ---------------------------------------------------------------------------
# the physical branch
# ---------------------------------------------------------------------------


def physical_ridge(
    g: Callable[[Any], Any],
    dg: Callable[[Any], Any],
    eigenvalues: np.ndarray,
    lam: complex,
    *,
    steps: int = 64,
) -> complex | float:
    r"""The root :math:`\kappa` of :math:`\kappa\,g(\mathrm{df}_1(\kappa))=\lambda` on the physical branch.

    ``g = 1/G`` and its derivative ``dg`` are functions of :math:`\delta=\mathrm{df}_1`;
    ``eigenvalues`` those of ``Y``.

    >>> import numpy as np
    >>> q = 0.5   # isotropic Wishart, MATH.md 7: (q, lam) = (0.5, 0.1) -> 0.1741657387
    >>> round(physical_ridge(lambda d: 1 - q * d, lambda d: -q, np.ones(3), 0.1), 10)
    0.1741657387
    """
    e = np.asarray(eigenvalues)

    def df(k: Any) -> Any:
        return np.mean(e / (e + k))

    def h(k: float) -> float:
        return float(np.real(k * g(df(k))))

    def gk(k: float) -> float:
        try:
            with np.errstate(all="ignore"):
                return float(np.real(g(df(k))))
        except ZeroDivisionError:
            return math.nan

    def dgk(k: float) -> float:
        with np.errstate(all="ignore"):
            return float(np.real(dg(df(k))))

    scale = max(float(np.max(np.abs(e))) if e.size else 1.0, 1e-300)
    grid = scale * np.logspace(6, -14, 400)
    kappa0 = 0.0
    prev = None
    for k in grid:
        value = gk(k)
        if not math.isfinite(value) or value <= 0:
            if prev is not None and math.isfinite(value):
                kappa0 = float(brentq(gk, k, prev, xtol=1e-15 * prev, rtol=1e-15))
            else:
                kappa0 = prev or 0.0
            break
        if prev is not None and dgk(k) >= 0 > dgk(prev):
            # g stops decreasing in df1 without changing sign: a double root such as
            # (1 - q df1)^2 (random features with N = P); the branch ends at the minimum of g
            kappa0 = float(brentq(dgk, k, prev, xtol=1e-15 * prev, rtol=1e-15))
            break
        prev = k
    lam_abs = abs(lam)
    if lam_abs == 0:
        return kappa0
    lo = max(kappa0, 1e-300)
    hi = max(kappa0, lam_abs, scale) * 2
    for _ in range(400):
        if h(hi) > lam_abs:
            break
        hi *= 2
    else:  # pragma: no cover - g bounded below away from the branch point
        raise InvalidArgument(f"no root of lam(kappa) = {lam_abs} found; is the law's S-transform positive?")
    # absolute tolerance relative to the root scale (kappa >= lam on this branch), not to the bracket
    xtol = 1e-15 * max(lam_abs, kappa0, 1e-300)
    kappa = float(brentq(lambda k: h(k) - lam_abs, lo, hi, xtol=xtol, rtol=1e-15, maxiter=500))
    if lam.imag == 0:
        return kappa
    theta = cmath.phase(lam)
    z = complex(kappa)
    for t in np.linspace(0, 1, steps + 1)[1:]:
        target = lam_abs * cmath.exp(1j * theta * t)
        for _ in range(100):
            d = df(z)
            ddf = -np.mean(e / (e + z) ** 2)
            f = z * g(d) - target
            fp = g(d) + z * dg(d) * ddf
            step = f / fp
            z = z - step
            if abs(step) <= 1e-14 * max(abs(z), 1e-300):
                break
        else:
            raise InvalidArgument(
                f"Newton continuation did not converge at lam = {target:.6g}; try more steps"
            )
    return z


def evaluate_one_point(eq: OnePoint, values: Mapping[Any, Any]) -> OnePointValue:
    """Numbers for :meth:`OnePoint.evaluate` (see there)."""
    mats, scalars = split_values(values)
    lam_name = str(eq.lam)
    if lam_name not in scalars:
        raise InvalidArgument(f"values has no entry for {eq.lam}; pass {{{eq.lam}: number}}")
    lam = to_number(scalars[lam_name], str(eq.lam))
    if lam.imag == 0 and lam.real < 0:
        raise InvalidArgument(
            f"{eq.lam} = {lam.real} < 0: the physical branch is defined for lam > 0, lam = 0 "
            "(ridgeless limit) and complex lam; use a positive or complex value"
        )
    numeric = NumericMatrices(mats, scalars)
    known: dict[sp.Symbol, complex] = {}
    eig_cache: dict[sp.Basic, np.ndarray] = {}

    def eigs(y: sp.Basic) -> np.ndarray:
        if y not in eig_cache:
            e = numeric.eigenvalues(y)
            scale = max(1.0, float(np.abs(e).max())) if e.size else 1.0
            if np.iscomplexobj(e) or e.min() < -1e-10 * scale:
                low = e[np.argmin(e.real)]
                raise InvalidArgument(
                    f"{y} has the eigenvalue {low:.4g}; the physical branch needs a positive "
                    "semidefinite matrix there (a covariance)"
                )
            eig_cache[y] = e
        return eig_cache[y]

    params = {k: v for k, v in scalars.items() if k != lam_name}
    for fp in solve_order(eq.fixed_points):
        rhs = substitute_scalars(fp.rhs, params)
        undefined = [f for f in rhs.atoms(sp.Function) if isinstance(f, sp.core.function.AppliedUndef)]
        if undefined:
            raise UndefinedTransform(
                f"{undefined[0].func} has no closed form, so {fp.symbol} cannot be solved "
                "numerically; use a law with a closed-form S-transform (Wishart, FreePoisson, "
                "Constant)"
            )
        atoms = sorted(rhs.atoms(df1), key=str)
        if fp.implicit:
            own = [a for a in atoms if a.args[1] == fp.symbol]
            d = sp.Dummy("d")
            gexpr = sp.simplify(eq.lam / rhs.xreplace({own[0]: d})) if len(atoms) == 1 and own else None
            if gexpr is None or gexpr.free_symbols - {d}:
                if lam == 0:
                    raise InvalidArgument(
                        f"{eq.lam} = 0: the ridgeless limit is implemented for multiplicative chains "
                        f"(kappa = lam G(df1)); the fixed point {fp} is not of that form (an additive "
                        "layer), and lam = 0 may lie inside its spectrum; use a small positive or a "
                        "complex lam"
                    )
                known[fp.symbol] = _general_ridge(fp.symbol, rhs, eq.lam, lam, known, atoms, eigs)
                continue
            g = sp.lambdify(d, gexpr, "numpy")
            dg = sp.lambdify(d, sp.diff(gexpr, d), "numpy")
            known[fp.symbol] = complex(physical_ridge(g, dg, eigs(own[0].args[0]), lam))
        else:
            rep: dict[sp.Basic, Any] = {}
            for a in atoms:
                y, k = a.args
                if k not in known:
                    raise InvalidArgument(f"{a} needs {k}, which is not solved before {fp.symbol}")
                e = eigs(y)
                rep[a] = sp.sympify(complex(np.mean(e / (e + known[k]))))
            rep.update({s: sp.sympify(v) for s, v in known.items()})
            rep[eq.lam] = sp.sympify(lam)
            known[fp.symbol] = to_number(rhs.xreplace(rep), str(fp.symbol))
    ridge = known.get(eq.ridge)
    if ridge is None:
        ridge = to_number(substitute_scalars(eq.ridge, params).xreplace({eq.lam: sp.sympify(lam)}), "ridge")
    at = {eq.lam: sp.sympify(lam), **{k: sp.sympify(v) for k, v in known.items()}}
    prefactor = to_number(substitute_scalars(eq.prefactor, params).xreplace(at), "prefactor")
    y = numeric.matrix(eq.matrix)
    plain = {s: plain_number(v) for s, v in known.items()}
    return OnePointValue(
        fixed_points=tuple((fp.symbol, plain[fp.symbol]) for fp in solve_order(eq.fixed_points)),
        ridge=plain_number(ridge),
        prefactor=plain_number(prefactor),
        matrix_y=y,
    )


def _general_ridge(
    symbol: sp.Symbol,
    rhs: sp.Expr,
    lam_symbol: sp.Expr,
    lam: complex,
    known: Mapping[sp.Symbol, complex],
    atoms: list[Any],
    eigs: Callable[[sp.Basic], np.ndarray],
    *,
    steps: int = 160,
) -> complex:
    r"""The root of ``r = rhs(lam, r, df1(., r))`` on the branch connected to ``lam -> +infinity``.

    For fixed points that are not of the form ``kappa = lam G(df1)`` (additive layers,
    mixed chains): Newton continuation in ``lam`` along ``lam + s``, ``s`` from a large
    positive shift down to 0 (a horizontal path, which never crosses the real axis for
    complex ``lam``), started from the fixed-point iteration at the largest shift, where
    the branch is ``r ~ lam * r'(infinity)``.
    """
    r = sp.Dummy("r")
    L = sp.Dummy("L")
    ds = [sp.Dummy(f"d{i}") for i in range(len(atoms))]
    own: list[np.ndarray | None] = []
    rep: dict[sp.Basic, Any] = {lam_symbol: L, symbol: r}
    for a, dd in zip(atoms, ds, strict=True):
        y, k = a.args
        if k == symbol:
            own.append(eigs(y))
            rep[a] = dd
        elif k in known:
            e = eigs(y)
            rep[a] = sp.sympify(complex(np.mean(e / (e + known[k]))))
            own.append(None)
        else:
            raise InvalidArgument(f"{a} needs {k}, which is not solved before {symbol}")
    rep.update({s: sp.sympify(v) for s, v in known.items()})
    expr = rhs.xreplace(rep)
    extra = expr.free_symbols - {L, r, *ds}
    if extra:
        raise InvalidArgument(f"cannot solve {symbol} = {rhs}: values lacks {sorted(map(str, extra))}")
    used = [dd for dd, e in zip(ds, own, strict=True) if e is not None]
    spectra = [e for e in own if e is not None]
    args = (L, r, *used)
    f = sp.lambdify(args, expr, "numpy")
    fr = sp.lambdify(args, sp.diff(expr, r), "numpy")
    fd = [sp.lambdify(args, sp.diff(expr, dd), "numpy") for dd in used]

    def h_and_dh(lv: complex, z: complex) -> tuple[complex, complex]:
        dvals = [complex(np.mean(e / (e + z))) for e in spectra]
        ddf = [complex(-np.mean(e / (e + z) ** 2)) for e in spectra]
        value = z - complex(f(lv, z, *dvals))
        deriv = (
            1
            - complex(fr(lv, z, *dvals))
            - sum(complex(g(lv, z, *dvals)) * x for g, x in zip(fd, ddf, strict=True))
        )
        return value, deriv

    scale = max([float(np.max(np.abs(e))) for e in spectra if e.size] + [abs(lam), 1.0])
    big = 1e3 * scale
    z = complex(lam + big)
    with np.errstate(all="ignore"):
        for _ in range(200):
            dvals = [complex(np.mean(e / (e + z))) for e in spectra]
            new = complex(f(lam + big, z, *dvals))
            if abs(new - z) <= 1e-14 * abs(z):
                z = new
                break
            z = new
        shifts = np.concatenate([big * np.logspace(0, -10, steps), [0.0]])
        for shift in shifts:
            lv = lam + shift
            for _ in range(100):
                value, deriv = h_and_dh(lv, z)
                if deriv == 0 or not cmath.isfinite(value):
                    break
                step = value / deriv
                z = z - step
                if abs(step) <= 1e-14 * max(abs(z), 1e-300):
                    break
            else:
                z = complex("nan")
            if not cmath.isfinite(z):
                raise InvalidArgument(
                    f"Newton continuation of {symbol} failed at lam = {lv:.6g}; is lam inside the "
                    "spectrum (use a complex or larger lam)?"
                )
    if lam.imag == 0 and abs(z.imag) <= 1e-10 * abs(z):
        z = complex(z.real)
    return z


def plain_number(value: Any) -> complex | float:
    """``value`` as a float when it is real, else as a complex number."""
    z = complex(value)
    return z.real if z.imag == 0 else z


def contraction_factor(
    f: MatrixExpr, mats: Mapping[str, np.ndarray], vectors: Mapping[str, np.ndarray], n: int
) -> np.ndarray:
    """The number of one factor of a contraction (a test matrix, its root, a vector)."""
    if isinstance(f, DeterministicVector):
        if f.name not in vectors:
            raise InvalidArgument(f"no vector for {f.name}; pass {{{f.name}: 1-D array}} in values")
        v = np.asarray(vectors[f.name])
        if v.shape != (n,):
            raise InvalidArgument(f"the vector {f.name} has shape {v.shape}; it needs shape ({n},)")
        return v.reshape(1, n) if f.transposed else v.reshape(n, 1)
    if isinstance(f, Identity):
        return np.eye(n)
    if isinstance(f, Transpose):
        return contraction_factor(f.arg, mats, vectors, n).T
    base = f.base if isinstance(f, Sqrt) else f
    assert isinstance(base, Deterministic)
    m = NumericMatrices(mats, {})
    full = m.get(base.name, sp.Integer(n))
    return m.sqrt(base.name, sp.Integer(n)) if isinstance(f, Sqrt) else full


def contracted_value(eq: Contracted, values: Mapping[Any, Any]) -> complex | float:
    """Numbers for :meth:`Contracted.evaluate`: ``tr(T E)`` or ``u.T E v``."""
    if not isinstance(values, Mapping):
        raise InvalidArgument(f"values must be a mapping, got {type(values).__name__}")
    names = {f.name for f in (*eq.left, *eq.right) if isinstance(f, DeterministicVector)}
    vectors: dict[str, np.ndarray] = {}
    rest: dict[Any, Any] = {}
    for key, value in values.items():
        name = key.name if isinstance(key, DeterministicVector) else key if isinstance(key, str) else None
        if name in names:
            vectors[name] = np.asarray(value)
        else:
            rest[key] = value
    value = evaluate_one_point(eq.inner, rest)
    e = value.matrix
    n = e.shape[0]
    mats, _ = split_values(rest)
    left = [contraction_factor(f, mats, vectors, n) for f in eq.left]
    right = [contraction_factor(f, mats, vectors, n) for f in eq.right]
    if eq.kind == "trace":
        out = np.eye(n)
        for m in (*right, *left):
            out = out @ m
        return plain_number(complex(np.trace(out @ e) / n))
    out = np.ones((1, 1))
    for m in (*left, e, *right):
        out = out @ m
    return plain_number(complex(out[0, 0]))


@dataclass(frozen=True, slots=True)
class OnePointValue:
    """Numbers from :meth:`OnePoint.evaluate`.

    Attributes
    ----------
    fixed_points : tuple of (sympy.Symbol, number)
        The solved ridges, in solve order.
    ridge : number
        The innermost ridge (the one in the equivalent).
    prefactor : number
        The scalar in front of ``ridge (ridge + Y)^{-1}``.
    matrix_y : numpy.ndarray
        The deterministic matrix ``Y`` of the equivalent.
    """

    fixed_points: tuple[tuple[sp.Symbol, complex | float], ...]
    ridge: complex | float
    prefactor: complex | float
    matrix_y: np.ndarray = field(repr=False)

    def __getitem__(self, symbol: sp.Symbol) -> complex | float:
        for s, v in self.fixed_points:
            if s == symbol or str(s) == str(symbol):
                return v
        raise InvalidArgument(f"no fixed point {symbol}; known: {[str(s) for s, _ in self.fixed_points]}")

    @property
    def matrix(self) -> np.ndarray:
        """The deterministic equivalent as a matrix."""
        n = self.matrix_y.shape[0]
        return self.prefactor * self.ridge * np.linalg.inv(self.matrix_y + self.ridge * np.eye(n))

    def trace(self, test: Any = None) -> complex | float:
        """``tr(test @ equivalent)`` (``tr = Tr / n``; ``test`` defaults to the identity)."""
        n = self.matrix_y.shape[0]
        sol = np.linalg.solve(self.matrix_y + self.ridge * np.eye(n), np.eye(n) if test is None else test)
        value = self.prefactor * self.ridge * np.trace(sol) / n
        return plain_number(value)


def lookup_value(values: Mapping[Any, Any], name: str) -> Any:
    for k, v in values.items():
        if (isinstance(k, str) and k == name) or getattr(k, "name", None) == name or str(k) == name:
            return v
    raise InvalidArgument(f"values has no entry for {name}; pass it")


def as_matrix(value: Any) -> np.ndarray:
    m = np.asarray(value)
    return np.diag(m) if m.ndim == 1 else m


def matrix_power(a: np.ndarray, e: sp.Rational) -> np.ndarray:
    if e == 0:
        return np.eye(a.shape[0])
    if sp.Rational(e).is_integer:
        return np.linalg.matrix_power(a, int(e))
    w, v = np.linalg.eigh(a)
    return (v * np.clip(w, 0, None) ** float(e)) @ v.T


def scalar_values(values: Mapping[Any, Any], *exprs: sp.Expr) -> dict[sp.Basic, Any]:
    """Free symbols of ``exprs`` -> numbers of ``values`` with the same name."""
    by_name: dict[str, Any] = {}
    for k, v in values.items():
        if np.ndim(v) == 0:
            by_name[k if isinstance(k, str) else getattr(k, "name", str(k))] = v
    out: dict[sp.Basic, Any] = {}
    for e in exprs:
        for s in sp.sympify(e).free_symbols:
            if s.name in by_name:
                out[s] = sp.sympify(by_name[s.name])
    return out
