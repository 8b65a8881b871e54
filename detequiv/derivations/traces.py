r"""Scalar atoms: normalized traces of deterministic matrix expressions, and their derivatives.

A derived loss is a scalar expression in ``lam``, the ridges and :class:`mtr` atoms
(:math:`\operatorname{tr}M=\operatorname{Tr}M/n` of a deterministic matrix expression, or
the entry of a ``1 x 1`` expression such as a quadratic form :math:`\beta^\top M\beta`). The
atoms differentiate in the ridges inside them, so implicit differentiation of a fixed point
(:func:`lam_derivative`) works on them directly.

>>> import sympy as sp
>>> n, k = sp.Symbol("n"), sp.Symbol("kappa")
>>> S = sp.MatrixSymbol("Sigma", n, n)
>>> sp.diff(mtr(S * (k * sp.Identity(n) + S).inverse()), k)
-mtr(Sigma*(kappa*I + Sigma)**(-1)*(kappa*I + Sigma)**(-1))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sympy as sp

from ..errors import InvalidArgument
from .quantities import df1, df2

__all__ = ["mtr", "flat_factors", "mtr_of_factors", "to_atoms", "quadratic_form", "lam_derivative"]


def matrix_derivative(m: sp.Basic, s: sp.Symbol) -> sp.Basic:
    """Derivative of a sympy matrix expression with respect to a scalar symbol."""
    if not m.has(s):
        return sp.ZeroMatrix(*m.shape)
    if isinstance(m, sp.MatAdd):
        parts = [matrix_derivative(a, s) for a in m.args if a.has(s)]
        return (sp.MatAdd(*parts) if len(parts) > 1 else parts[0]).doit()
    mats = flat_factors(m)
    if isinstance(m, sp.MatMul) or len(mats) > 1 or (mats and mats[0] != m):
        coeff = m.as_coeff_matrices()[0] if isinstance(m, sp.MatMul) else sp.S.One
        terms = []
        if coeff.has(s):
            terms.append(sp.MatMul(sp.diff(coeff, s), *mats))
        for i, f in enumerate(mats):
            if f.has(s):
                terms.append(sp.MatMul(coeff, *mats[:i], matrix_derivative(f, s), *mats[i + 1 :]))
        return (sp.MatAdd(*terms) if len(terms) > 1 else terms[0]).doit()
    if isinstance(m, sp.Inverse):
        inv = m
        return sp.MatMul(-1, inv, matrix_derivative(m.arg, s), inv).doit()
    raise InvalidArgument(f"cannot differentiate the matrix expression {m} with respect to {s}")


def flat_factors(m: sp.Basic) -> list[sp.Basic]:
    """The matrix factors of a product, flattened; ``X**-k`` becomes ``k`` inverses, ``A**k`` ``k`` copies."""
    if isinstance(m, sp.MatMul):
        return [f for a in m.as_coeff_matrices()[1] for f in flat_factors(a)]
    if isinstance(m, sp.MatPow) and m.args[1].is_Integer:
        k = int(m.args[1])
        base = m.args[0]
        return [sp.Inverse(base)] * (-k) if k < 0 else [f for _ in range(k) for f in flat_factors(base)]
    if isinstance(m, sp.Identity):
        return []
    return [m]


def _mtr_linear(m: sp.Basic) -> sp.Expr:
    """``tr`` of a matrix expression, by linearity: a sum of scalars times :class:`mtr` atoms."""
    if isinstance(m, sp.ZeroMatrix):
        return sp.S.Zero
    if isinstance(m, sp.MatAdd):
        return sp.Add(*[_mtr_linear(a) for a in m.args])
    if isinstance(m, sp.MatMul):
        coeff, mats = m.as_coeff_matrices()
        if not mats:
            return coeff
        inner = _distribute(mats)
        return coeff * sp.Add(*[c * mtr_of_factors(ms, m.shape[0]) for c, ms in inner])
    return mtr(m)


def _distribute(mats: Sequence[sp.Basic]) -> list[tuple[sp.Expr, list[sp.Basic]]]:
    """Expand a product of matrix factors over the sums among them (not inside inverses)."""
    out: list[tuple[sp.Expr, list[sp.Basic]]] = [(sp.S.One, [])]
    for f in mats:
        if isinstance(f, sp.MatAdd):
            parts = []
            for a in f.args:
                c, ms = a.as_coeff_matrices() if isinstance(a, sp.MatMul) else (sp.S.One, [a])
                parts.append((c, list(ms)))
        elif isinstance(f, sp.MatMul):
            c, ms = f.as_coeff_matrices()
            parts = [(c, list(ms))]
        else:
            parts = [(sp.S.One, [f])]
        out = [(c0 * c1, m0 + m1) for c0, m0 in out for c1, m1 in parts]
    return out


def mtr_of_factors(mats: Sequence[sp.Basic], n: sp.Expr) -> sp.Expr:
    flat = [f for a in mats for f in flat_factors(a)]
    if not flat:
        return sp.S.One
    return mtr(sp.MatMul(*flat) if len(flat) > 1 else flat[0])


class mtr(sp.Function):  # noqa: N801 - reads like tr
    r"""Normalized trace :math:`\operatorname{tr}M=\operatorname{Tr}M/n` of a deterministic matrix
    expression (for a ``1 x 1`` expression such as a quadratic form, its entry).

    Differentiable in the ridges inside it (:math:`\partial_\kappa(\kappa+A)^{-1}=-(\kappa+A)^{-2}`).

    >>> import sympy as sp
    >>> n, k = sp.Symbol("n"), sp.Symbol("kappa")
    >>> S = sp.MatrixSymbol("Sigma", n, n)
    >>> sp.diff(mtr(S * (k * sp.Identity(n) + S).inverse()), k)
    -mtr(Sigma*(kappa*I + Sigma)**(-1)*(kappa*I + Sigma)**(-1))
    """

    nargs = 1
    is_commutative = True

    def _eval_derivative(self, s: sp.Symbol) -> sp.Expr:
        return _mtr_linear(matrix_derivative(self.args[0], s))

    def _latex(self, printer: Any, exp: Any = None) -> str:
        m = self.args[0]
        body = printer._print(m)
        tex = body if m.shape == (1, 1) else r"\operatorname{tr}\left[" + body + r"\right]"
        return tex if exp is None else r"\left(" + tex + r"\right)^{" + str(exp) + "}"


def to_atoms(expr: sp.Expr) -> sp.Expr:
    """Replace ``Trace``, ``df1`` and ``df2`` by :class:`mtr` atoms."""

    def r(y: sp.Basic, k: sp.Expr) -> sp.Basic:
        return (y + k * sp.Identity(y.shape[0])).inverse()

    out = expr.replace(
        lambda e: isinstance(e, df1), lambda e: mtr_of_factors([e.args[0], r(e.args[0], e.args[1])], sp.S.One)
    )
    out = out.replace(
        lambda e: isinstance(e, df2),
        lambda e: mtr_of_factors(
            [e.args[0], e.args[0], r(e.args[0], e.args[1]), r(e.args[0], e.args[2])], sp.S.One
        ),
    )
    out = out.replace(lambda e: isinstance(e, sp.Trace), lambda e: e.arg.shape[0] * _mtr_linear(e.arg))
    return out


def quadratic_form(matrix_expr: sp.Basic, b: sp.MatrixSymbol) -> sp.Expr:
    """``b.T @ E @ b`` of a matrix equivalent ``E`` (scalars inside are kept), as :class:`mtr` atoms."""
    terms = matrix_expr.args if isinstance(matrix_expr, sp.MatAdd) else (matrix_expr,)
    out = []
    for t in terms:
        coeff, mats = t.as_coeff_matrices() if isinstance(t, sp.MatMul) else (sp.S.One, [t])
        out.append(to_atoms(coeff) * mtr_of_factors([b.T, *mats, b], sp.S.One))
    return sp.Add(*out)


def lam_derivative(
    expr: sp.Expr, lam: sp.Symbol, kappa: sp.Symbol, fixed_point: sp.Eq
) -> tuple[sp.Expr, sp.Expr]:
    r""":math:`d/d\lambda` of ``expr(lam, kappa, atoms)`` with ``kappa = kappa(lam)`` from its fixed point.

    Returns ``(derivative, dkappa/dlam)``; the latter by implicit differentiation of
    :math:`\Phi=\kappa-\mathrm{rhs}(\kappa,\lambda)=0`.

    >>> import sympy as sp
    >>> lam, k, q = sp.symbols("lam kappa q")
    >>> d, dk = lam_derivative(k / lam, lam, k, sp.Eq(k, lam + q))   # kappa = lam + q
    >>> sp.simplify(dk), sp.simplify(d - (1 / lam - k / lam**2))
    (1, 0)
    """
    phi = kappa - to_atoms(fixed_point.rhs)
    dk = -sp.diff(phi, lam) / sp.diff(phi, kappa)
    e = to_atoms(expr)
    return sp.diff(e, lam) + sp.diff(e, kappa) * dk, dk
