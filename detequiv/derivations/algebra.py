r"""Exact algebra on the expression tree that every engine uses.

Gram pairs of Gaussian matrices become white Wishart factors
(:func:`gaussian_gram_to_wishart`), ridges absorb scalar coefficients
(:func:`ridge_rescaling`), adjacent square roots merge (:func:`merge_square_roots`), and
the structural helpers split ``c * resolvent(A, lam)`` into its parts and ``A`` into its
factors. Nothing here is an approximation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sympy as sp

from ..errors import InvalidArgument, InvalidWord
from .expressions import (
    Deterministic,  # noqa: F401 - used by doctests
    FreeMatrix,
    Gaussian,
    Identity,
    MatrixExpr,
    Product,
    Resolvent,
    Sqrt,
    Sum,
    Transpose,
)
from .laws import Wishart

__all__ = [
    "product_sympy",
    "ridge_form",
    "gaussian_gram_to_wishart",
    "ridge_rescaling",
    "merge_square_roots",
    "resolvent_parts",
    "product_factors",
    "contains_sum",
]


def product_sympy(factors: Sequence[MatrixExpr], dim: sp.Expr, coeff: sp.Expr = sp.S.One) -> sp.Expr:
    if not factors:
        base: sp.Expr = sp.Identity(dim)
    elif len(factors) == 1:
        base = factors[0].to_sympy()
    else:
        base = sp.MatMul(*[f.to_sympy() for f in factors])
    return base if coeff == 1 else sp.MatMul(coeff, base)


def ridge_form(ridge: sp.Expr, y: sp.Expr, dim: sp.Expr) -> sp.Expr:
    return ridge * (y + ridge * sp.Identity(dim)).inverse()


def gaussian_gram_to_wishart(
    coeff: sp.Expr, factors: tuple[MatrixExpr, ...]
) -> tuple[sp.Expr, tuple[MatrixExpr, ...], list[str]]:
    r"""Replace each Gram pair ``X.T @ X`` (``X @ X.T``) by ``r W`` (``c W'``).

    For ``X`` of shape ``r x c`` with iid standard entries, ``X.T @ X = r W`` with
    ``W`` a white Wishart matrix on the ``c``-space of ratio ``c / r`` (and
    ``X @ X.T = c W'`` on the ``r``-space, ratio ``r / c``); ``W`` is rotation
    invariant and free from deterministic matrices (MATH.md 1.1; Nica-Speicher
    Lecture 22). Returns the new coefficient, factors and the names introduced.

    Raises
    ------
    InvalidWord
        If a Gaussian matrix appears other than in one Gram pair.
    """
    out: list[MatrixExpr] = []
    names: list[str] = []
    i = 0
    c = coeff
    while i < len(factors):
        f = factors[i]
        nxt = factors[i + 1] if i + 1 < len(factors) else None
        if isinstance(f, Transpose) and isinstance(f.arg, Gaussian) and nxt == f.arg:
            rows, cols = f.arg.dims
            w = FreeMatrix(f"W_{f.arg.name}", cols, Wishart(sp.simplify(cols / rows)))
            c = c * rows
        elif isinstance(f, Gaussian) and isinstance(nxt, Transpose) and nxt.arg == f:
            rows, cols = f.dims
            w = FreeMatrix(f"W_{f.name}", rows, Wishart(sp.simplify(rows / cols)))
            c = c * cols
        else:
            if isinstance(f, Gaussian) or (isinstance(f, Transpose) and isinstance(f.arg, Gaussian)):
                g = f if isinstance(f, Gaussian) else f.arg
                raise InvalidWord(
                    f"the Gaussian matrix {g.name} appears outside a Gram pair "
                    f"{g.name}.T @ {g.name} in {product_sympy(factors, sp.S.One)}; only Gram "
                    "products are supported (rectangular chains are not yet)"
                )
            out.append(f)
            i += 1
            continue
        out.append(w)
        names.append(w.name)
        i += 2
    return sp.simplify(c), tuple(out), names


def ridge_rescaling(lam: sp.Expr, coeff: sp.Expr) -> sp.Expr:
    r""":math:`\lambda(\lambda+cY)^{-1}=\lambda'(\lambda'+Y)^{-1}` with :math:`\lambda'=\lambda/c`.

    Exact algebra (divide by ``c``); ``c`` must be nonzero.
    """
    if sp.sympify(coeff).is_zero:
        raise InvalidArgument("the matrix in the resolvent has coefficient 0; nothing is random")
    return sp.simplify(lam / coeff)


def merge_square_roots(factors: tuple[MatrixExpr, ...]) -> tuple[MatrixExpr, ...]:
    """Merge adjacent ``A^{1/2} A^{1/2}`` into ``A`` (exact; adjacent only, not cyclic).

    >>> A = Deterministic("A", 3)
    >>> merge_square_roots((A.sqrt(), A.sqrt(), A))
    (Deterministic(name='A', dim=3), Deterministic(name='A', dim=3))
    """
    out: list[MatrixExpr] = []
    for f in factors:
        if isinstance(f, Identity):
            continue
        if out and isinstance(f, Sqrt) and out[-1] == f:
            out[-1] = f.base
        else:
            out.append(f)
    return tuple(out)


def resolvent_parts(expr: Any) -> tuple[sp.Expr, Resolvent]:
    """``(c, R)`` for ``expr = c * R`` with ``R`` a resolvent."""
    if isinstance(expr, Resolvent):
        return sp.S.One, expr
    if isinstance(expr, Product) and len(expr.factors) == 1 and isinstance(expr.factors[0], Resolvent):
        return expr.coeff, expr.factors[0]
    raise InvalidArgument(
        f"derive needs c * resolvent(A, lam), got {expr}; traces, quadratic forms and "
        "sums of resolvents are not supported yet"
    )


def product_factors(a: MatrixExpr) -> tuple[sp.Expr, tuple[MatrixExpr, ...]]:
    if isinstance(a, Product):
        coeff, factors = a.coeff, a.factors
    else:
        coeff, factors = sp.S.One, (a,)
    for f in factors:
        if isinstance(f, Sum):
            raise InvalidArgument(
                f"{a} contains the sum {f}; additive free perturbations are not supported "
                "yet, write the matrix as a product"
            )
        if isinstance(f, Resolvent):
            raise InvalidArgument(f"{a} contains a resolvent; nested resolvents are not supported")
    return coeff, tuple(f for f in factors if not isinstance(f, Identity))


def contains_sum(m: MatrixExpr) -> bool:
    if isinstance(m, Sum):
        return True
    if isinstance(m, Product):
        return any(contains_sum(f) for f in m.factors)
    if isinstance(m, Resolvent):
        return contains_sum(m.arg)
    return False
