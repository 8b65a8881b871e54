r"""The exact side of a pencil result's series: the planar pairings of the original expression.

Each resolvent :math:`(\lambda+A)^{-1}=\sum_k(-1)^k\lambda^{-k-1}A^k` of the expression is
expanded in its own variable ``1/lam``; the expected normalized trace of every word (times a
non-commuting test letter ``T`` for a matrix) is the sum over the non-crossing pairings of its
Gaussian letters ``Z`` with ``Z^T`` (:func:`~detequiv.derivations.ncseries.planar_expectation`).
A Wishart factor of ratio ``q`` on ``n`` is ``Z^T Z / m`` (``Z`` of shape ``m x n``,
``m = n / q``); a semicircular one a Wigner letter of entry variance ``v / n`` that pairs with
itself. Nothing here looks at the derived equivalent.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from ..errors import InvalidArgument
from .expressions import (
    Deterministic,
    DeterministicVector,
    FreeMatrix,
    Gaussian,
    Identity,
    MatrixExpr,
    Product,
    Rectangular,
    Resolvent,
    Sqrt,
    Sum,
    Trace,
    Transpose,
)
from .laws import Semicircle, Wishart
from .ncseries import LetterTable, NCSeries, Poly, expected_words, poly_of

__all__ = ["exact_side", "expression_series"]

TEST_NAME = "T_test"


def _coefficient(c: sp.Expr, variables: dict[sp.Expr, int]) -> tuple[Poly, tuple[int, ...]]:
    """A scalar coefficient as ``poly * prod lam_i^k_i``: the powers of the spectral variables
    become exponents of ``x_i = 1 / lam_i``."""
    exp = [0] * len(variables)
    rest = sp.S.One
    for base, k in sp.sympify(c).as_powers_dict().items():
        if base in variables:
            if not k.is_Integer:
                raise InvalidArgument(f"the coefficient {c} has a non-integer power of {base}")
            exp[variables[base]] -= int(k)
        else:
            rest *= base**k
    return poly_of(rest), tuple(exp)


def _roots(expr: Any) -> set[str]:
    """Names of the deterministic matrices whose square root appears (written as two halves)."""
    arg = expr.arg if isinstance(expr, Trace) else expr
    return {leaf.base.name for leaf in arg.leaves() if isinstance(leaf, Sqrt)}


def expression_series(
    expr: MatrixExpr, letters: LetterTable, variables: dict[sp.Expr, int], order: int
) -> NCSeries:
    """The expression as a series whose words may hold Gaussian letters."""
    n = len(variables)

    def walk(e: MatrixExpr) -> NCSeries:
        if isinstance(e, Deterministic):
            if e.name in letters.halves:
                h = NCSeries.letter(n, order, letters.halves[e.name], letters)
                return h @ h
            return NCSeries.letter(
                n, order, letters.deterministic(e.name, e.dim, e.dim, e.symmetric), letters
            )
        if isinstance(e, Sqrt):
            return NCSeries.letter(n, order, letters.half(e.base.name, e.base.dim), letters)
        if isinstance(e, Rectangular):
            return NCSeries.letter(n, order, letters.deterministic(e.name, *e.dims, symmetric=False), letters)
        if isinstance(e, Gaussian):
            return NCSeries.letter(n, order, letters.gaussian(e.name, *e.dims), letters)
        if isinstance(e, Transpose):
            inner = walk(e.arg)
            ((key, _),) = inner.terms.items()
            return NCSeries(
                n, order, (e.shape[0], e.shape[1]), {(key[0], letters.word_transpose(key[1])): Poly.const(1)}
            )
        if isinstance(e, Identity):
            return NCSeries.identity(n, order, e.dim)
        if isinstance(e, FreeMatrix):
            return _free(e)
        if isinstance(e, Product):
            out = walk(e.factors[0])
            for f in e.factors[1:]:
                out = out @ walk(f)
            return out.scale(*_coefficient(e.coeff, variables))
        if isinstance(e, Sum):
            out = walk(e.terms[0])
            for t in e.terms[1:]:
                out = out + walk(t)
            return out
        if isinstance(e, Resolvent):
            if e.lam not in variables:
                raise InvalidArgument(f"the ridge {e.lam} is not a spectral variable of the check")
            exp = [0] * n
            exp[variables[e.lam]] = -1
            shifted = NCSeries.identity(n, order, e.shape[0]).scale(Poly.const(1), tuple(exp))
            return (shifted + walk(e.arg)).inverse(letters)
        if isinstance(e, DeterministicVector):
            raise InvalidArgument(
                "the exact witness of a quadratic form checks the matrix it contracts: derive the "
                "resolvent itself and check that (agreement for every test matrix implies it for u v^T)"
            )
        raise InvalidArgument(f"cannot expand {e!r} in the exact witness")

    def _free(b: FreeMatrix) -> NCSeries:
        if isinstance(b.law, Wishart):
            m = sp.simplify(b.dim / b.law.ratio)
            z = letters.gaussian(f"Z_{b.name}", m, b.dim)
            zs = NCSeries.letter(n, order, z, letters)
            zt = NCSeries.letter(n, order, letters.transpose(z), letters)
            return (zt @ zs).scale(poly_of(1 / m))
        if isinstance(b.law, Semicircle):
            h = letters.wigner(b.name, b.dim, b.law.variance / b.dim)
            return NCSeries.letter(n, order, h, letters)
        raise InvalidArgument(
            f"the exact witness supports Wishart and semicircular free factors, not {b.law}"
        )

    return walk(expr)


def exact_side(
    expr: Any, letters: LetterTable, variables: dict[sp.Expr, int], order: int
) -> tuple[NCSeries, int | None]:
    """``E tr(T expr)`` (a test letter ``T`` for a matrix) or ``E tr(arg)`` for ``trace(arg)``,
    planar, as a scalar series to total degree ``order``; and the test letter (or ``None``)."""
    for name in sorted(_roots(expr)):
        base = next(
            leaf.base
            for leaf in (expr.arg if isinstance(expr, Trace) else expr).leaves()
            if isinstance(leaf, Sqrt) and leaf.base.name == name
        )
        letters.half(name, base.dim)
    work = order + 2
    n = len(variables)
    if isinstance(expr, Trace):
        body = expression_series(expr.arg, letters, variables, work)
        test = None
        dim = expr.arg.shape[0]
    else:
        rows, cols = expr.shape
        test = letters.deterministic(TEST_NAME, cols, rows, symmetric=False)
        body = NCSeries.letter(n, work, test, letters) @ expression_series(expr, letters, variables, work)
        dim = cols
    words = [(e, w, c) for (e, w), c in body.terms.items()]
    return expected_words(words, letters, n, order, dim), test
