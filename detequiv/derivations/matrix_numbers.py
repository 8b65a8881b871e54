r"""Numbers of sympy matrix expressions, and the physical branch of a system of trace unknowns.

:class:`MatrixNumbers` evaluates the expressions a derived result is made of (``MatrixSymbol``,
square roots, transposes, products, sums, ``Inverse``, the normalized traces ``mtr``) from
the user's matrices. When every matrix is given by its eigenvalues in one common basis (1-D
arrays: they commute) everything is diagonal and costs ``O(D)``; otherwise dense linear
algebra is used (non-commuting matrices, rectangular ones).

:func:`solve_unknowns` solves ``g = F(g, lam)`` for the unknowns of a scalarized Dyson
equation on the physical branch: the branch connected to ``lam -> infinity`` (where ``g``
tends to ``F(0)``), followed by Newton continuation along ``lam + s`` with the shift ``s``
decreasing from a large value to 0 (a horizontal path that never crosses the real axis for
complex ``lam``), the Jacobian by central differences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sympy as sp

from ..errors import InvalidArgument
from .traces import mtr

__all__ = ["MatrixNumbers", "plain"]


class MatrixNumbers:
    """Evaluate sympy matrix and scalar expressions from numbers.

    Parameters
    ----------
    matrices : mapping
        Name -> array: a spectrum (1-D) or a matrix (2-D). All 1-D (and square) selects the
        diagonal (commuting) mode.
    scalars : mapping
        Symbol name -> number (sizes, ratios, ``lam``...).
    """

    def __init__(
        self, matrices: Mapping[str, Any], scalars: Mapping[str, Any], dynamic: Sequence[sp.Symbol] = ()
    ) -> None:
        self.matrices = {k: np.asarray(v) for k, v in matrices.items()}
        self.dynamic = frozenset(dynamic)  # symbols given per call (unknowns, shifted lam)
        self._depends: dict[sp.Basic, bool] = {}
        self.memo: dict[sp.Basic, Any] = {}  # one call's values of the dynamic subexpressions
        for name, a in self.matrices.items():
            if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
                raise InvalidArgument(f"the values given for {name} must be finite numbers")
        self.scalars = dict(scalars)
        self.diagonal = all(a.ndim == 1 for a in self.matrices.values())
        self._const: dict[sp.Basic, Any] = {}

    # -- sizes ---------------------------------------------------------------------------
    def size(self, d: sp.Expr) -> int:
        value = self.scalar(d)
        if abs(value.imag) > 0 or value.real <= 0 or abs(value.real - round(value.real)) > 1e-9:
            raise InvalidArgument(f"the size {d} = {value} must be a positive integer")
        return int(round(value.real))

    # -- scalars -------------------------------------------------------------------------
    def begin(self) -> None:
        """Start a call with new values of the dynamic symbols (clears the per-call memo)."""
        self.memo = {}

    def _dynamic(self, e: sp.Basic) -> bool:
        d = self._depends.get(e)
        if d is None:
            d = self._depends[e] = bool(e.free_symbols & self.dynamic)
        return d

    def scalar(self, e: sp.Expr, env: Mapping[sp.Symbol, complex] | None = None) -> complex:
        e = sp.sympify(e)
        env = env or {}
        if e in self.memo:
            return self.memo[e]
        value = self._scalar_value(e, env)
        if self.dynamic and self._dynamic(e):
            self.memo[e] = value
        return value

    def _scalar_value(self, e: sp.Expr, env: Mapping[sp.Symbol, complex]) -> complex:
        if e.is_Number:
            return complex(e)
        if isinstance(e, sp.Symbol):
            if e in env:
                return complex(env[e])
            if e.name in self.scalars:
                return complex(self.scalars[e.name])
            raise InvalidArgument(f"values has no number for {e}; pass {{{e.name}: number}}")
        if isinstance(e, sp.Add):
            return sum((self.scalar(a, env) for a in e.args), 0j)
        if isinstance(e, sp.Mul):
            out = 1 + 0j
            for a in e.args:
                out *= self.scalar(a, env)
            return out
        if isinstance(e, sp.Pow):
            base = self.scalar(e.base, env)
            exp = self.scalar(e.exp, env)
            if base == 0 and exp.real < 0:
                raise InvalidArgument(f"{e} divides by zero at these values")
            return complex(base**exp)
        if isinstance(e, mtr):
            arg = e.args[0]
            if (
                not self.diagonal
                and isinstance(arg, sp.MatMul)
                and all(getattr(f, "is_Matrix", False) for f in arg.args)
            ):
                # tr(L R) = sum(L * R^T) / n with L, R the two halves of the product (shared prefixes)
                k = len(arg.args) // 2
                a = self._chain(arg.args[:k], env)
                b = self._chain(arg.args[k:], env)
                return complex(np.sum(a * b.T) / a.shape[0])
            m = self.matrix(arg, env)
            return self._trace(m, arg.shape[0])
        if isinstance(e, sp.Trace):
            m = self.matrix(e.arg, env)
            return self._trace(m, e.arg.shape[0]) * self.size(e.arg.shape[0])
        raise InvalidArgument(f"cannot evaluate {e} numerically")

    def _chain(self, factors: tuple[sp.Basic, ...], env: Mapping[sp.Symbol, complex]) -> Any:
        """The product of ``factors`` (matrices), memoized by prefix so products share work."""
        key = ("chain", *factors)
        dynamic = any(self._dynamic(f) for f in factors) if self.dynamic else True
        store = self.memo if dynamic else self._const
        if key in store:
            return store[key]
        if len(factors) == 1:
            out = self.matrix(factors[0], env)
        else:
            head = self._chain(factors[:-1], env)
            tail = self.matrix(factors[-1], env)
            out = head * tail if self.diagonal else head @ tail
        store[key] = out
        return out

    def _trace(self, m: Any, n: sp.Expr) -> complex:
        if self.diagonal:
            return complex(np.mean(m))
        return complex(np.trace(m) / m.shape[0])

    # -- matrices ------------------------------------------------------------------------
    def matrix(self, m: sp.Basic, env: Mapping[sp.Symbol, complex] | None = None) -> Any:
        """The numbers of a matrix expression (1-D in the diagonal mode)."""
        env = env or {}
        dynamic = bool(env) and (self._dynamic(m) if self.dynamic else bool(m.free_symbols & set(env)))
        if not dynamic and m in self._const:
            return self._const[m]
        if dynamic and m in self.memo:
            return self.memo[m]
        out = self._matrix(m, env)
        if dynamic:
            self.memo[m] = out
        else:
            self._const[m] = out
        return out

    def _leaf(self, name: str, shape: tuple[sp.Expr, sp.Expr]) -> Any:
        if name not in self.matrices:
            raise InvalidArgument(f"values has no matrix for {name}; pass {{{name}: array}}")
        a = self.matrices[name]
        rows, cols = self.size(shape[0]), self.size(shape[1])
        dtype = float if np.isrealobj(a) else complex
        if cols == 1 and rows != 1:  # a vector: its coordinates (in the common eigenbasis when 1-D)
            if a.shape not in ((rows,), (rows, 1)):
                raise InvalidArgument(f"the vector {name} has shape {a.shape}; its size is {rows}")
            return a.reshape(rows).astype(dtype) if self.diagonal else a.reshape(rows, 1).astype(dtype)
        if self.diagonal:
            if a.shape != (rows,) or rows != cols:
                raise InvalidArgument(
                    f"{name} has {a.shape[0]} eigenvalues but its size is {shape} = {(rows, cols)}"
                )
            return a.astype(float) if np.isrealobj(a) else a.astype(complex)
        if a.ndim == 1:
            if rows != cols or a.shape[0] != rows:
                raise InvalidArgument(
                    f"{name} has {a.shape[0]} eigenvalues but its size is {shape} = {(rows, cols)}"
                )
            return np.diag(a).astype(float if np.isrealobj(a) else complex)
        if a.shape != (rows, cols):
            raise InvalidArgument(f"{name} has shape {a.shape} but its size is {shape} = {(rows, cols)}")
        return a.astype(float) if np.isrealobj(a) else a.astype(complex)

    def _matrix(self, m: sp.Basic, env: Mapping[sp.Symbol, complex]) -> Any:
        if isinstance(m, sp.MatrixSymbol):
            return self._leaf(m.name, m.shape)
        if isinstance(m, sp.Identity):
            n = self.size(m.shape[0])
            return np.ones(n) if self.diagonal else np.eye(n)
        if isinstance(m, sp.ZeroMatrix):
            r, c = (self.size(d) for d in m.shape)
            return np.zeros(r) if self.diagonal else np.zeros((r, c))
        if isinstance(m, sp.Transpose):
            a = self.matrix(m.arg, env)
            return a if self.diagonal else a.T
        if isinstance(m, sp.MatPow):
            base = self.matrix(m.base, env)
            exp = m.exp
            if exp == sp.Rational(1, 2):
                return self._sqrt(base, m.base)
            if exp.is_Integer:
                k = int(exp)
                if self.diagonal:
                    return base**k
                if k >= 0:
                    return np.linalg.matrix_power(base, k)
                return _inverse(base) if k == -1 else np.linalg.matrix_power(_inverse(base), -k)
        if isinstance(m, sp.Inverse):
            a = self.matrix(m.arg, env)
            if self.diagonal:
                if np.any(a == 0):
                    raise InvalidArgument(f"{m.arg} is singular at these values")
                return 1 / a
            return _inverse(a)
        if isinstance(m, sp.MatAdd):
            parts = [self.matrix(a, env) for a in m.args]
            out = parts[0]
            for p in parts[1:]:
                out = out + p
            return out
        if isinstance(m, sp.MatMul):
            c = 1 + 0j
            mats = []
            for f in m.args:
                if getattr(f, "is_Matrix", False):
                    mats.append(f)
                else:
                    c *= self.scalar(f, env)
            out = self._chain(tuple(mats), env)
            if self.diagonal and m.shape == (1, 1):  # u.T f(Sigma) v: the sum over the eigenbasis
                out = np.array([np.sum(out)])
            return out if c == 1 else (c.real if c.imag == 0 else c) * out
        raise InvalidArgument(f"cannot evaluate the matrix {m} numerically")

    def _sqrt(self, a: Any, base: sp.Basic) -> Any:
        if self.diagonal:
            if np.any(a.real < -1e-12) or np.any(abs(a.imag) > 1e-12):
                raise InvalidArgument(f"{base} has a negative eigenvalue; no square root")
            return np.sqrt(np.clip(a.real, 0, None)).astype(complex)
        w, v = np.linalg.eigh((a + a.conj().T) / 2)
        if w.min() < -1e-10 * max(1.0, abs(w).max()):
            raise InvalidArgument(f"{base} has the negative eigenvalue {w.min():.3g}; no square root")
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.conj().T

    def dense(self, a: Any) -> np.ndarray:
        """A value as a dense matrix."""
        return np.diag(a) if self.diagonal else a


def _inverse(a: np.ndarray) -> np.ndarray:
    """The inverse of a dense matrix (LU; scipy's Cholesky inverse was 10x slower here, its BLAS
    competing with numpy's for the cores)."""
    return np.linalg.inv(a)


def plain(z: complex) -> complex | float:
    """A real number when the imaginary part is rounding, else the complex number."""
    return z.real if abs(z.imag) <= 1e-13 * max(1.0, abs(z.real)) else z
