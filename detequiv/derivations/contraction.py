r"""Contractions of a matrix equivalence: traces against test matrices and quadratic forms.

A deterministic equivalence :math:`R\simeq E` means :math:`\operatorname{tr}T(R-E)\to0`
and :math:`u^\top(R-E)v\to0` for every deterministic ``T``, ``u``, ``v`` of bounded norm,
so ``tr(T R) ~ tr(T E)`` and ``u.T R v ~ u.T E v`` (:func:`contract_equivalence`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp

from ..errors import InvalidArgument
from .derivation import Derivation, FixedPoint, Step
from .engine import Context, Steps
from .expressions import (
    Deterministic,
    DeterministicVector,
    Identity,
    MatrixExpr,
    Product,
    Resolvent,
    Sqrt,
    Trace,
    Transpose,
)
from .numeric import contracted_value
from .onepoint import OnePoint
from .results import Equivalence
from .rules import CONTRACT_EQUIVALENCE
from .series import SeriesCheck

__all__ = [
    "Contracted",
    "contract_equivalence",
    "contraction_parts",
    "contraction_sympy",
    "match_contraction",
    "derive_contraction",
]


_CONTRACTION_LEAVES = (Deterministic, Sqrt, Identity)


def contraction_parts(
    expr: Any,
) -> tuple[str, tuple[MatrixExpr, ...], sp.Expr, Resolvent, tuple[MatrixExpr, ...]] | None:
    """``(kind, left, c, R, right)`` for ``tr(left c R right)`` or ``left c R right`` (1 x 1)."""
    if isinstance(expr, Trace):
        kind = "trace"
        arg = expr.arg
    elif isinstance(expr, Product) and any(isinstance(f, DeterministicVector) for f in expr.factors):
        kind = "quadratic"
        arg = expr
    else:
        return None
    coeff, factors = (arg.coeff, arg.factors) if isinstance(arg, Product) else (sp.S.One, (arg,))
    where = [i for i, f in enumerate(factors) if isinstance(f, Resolvent)]
    if len(where) != 1:
        raise InvalidArgument(
            f"{expr} must contain exactly one resolvent (it has {len(where)}); contract one "
            "resolvent c * resolvent(A, lam) at a time"
        )
    i = where[0]
    left, right = factors[:i], factors[i + 1 :]
    res = factors[i]
    assert isinstance(res, Resolvent)
    if kind == "quadratic":
        ok = (
            len(left) >= 1
            and len(right) >= 1
            and isinstance(left[0], DeterministicVector)
            and left[0].transposed
            and isinstance(right[-1], DeterministicVector)
            and not right[-1].transposed
        )
        if not ok:
            raise InvalidArgument(
                f"{expr} is not a quadratic form u.T @ (c * resolvent(A, lam)) @ v; put the "
                "row vector u.T first and the column vector v last"
            )
        middle = left[1:] + right[:-1]
    else:
        middle = left + right
    bad = [
        f
        for f in middle
        if not (
            isinstance(f, _CONTRACTION_LEAVES)
            or (isinstance(f, Transpose) and isinstance(f.arg, Deterministic))
        )
    ]
    if bad:
        raise InvalidArgument(
            f"the contraction of {expr} contains the non-deterministic {bad[0]}; the test "
            "matrix T (or the vectors) must be deterministic and independent of the resolvent"
        )
    return kind, tuple(left), coeff, res, tuple(right)


def contraction_sympy(
    kind: str, left: Sequence[MatrixExpr], mid: sp.Expr, right: Sequence[MatrixExpr]
) -> sp.Expr:
    if kind == "trace":
        # cyclicity: tr(L M R) = tr(R L M)
        test = [f.to_sympy() for f in (*right, *left)]
        n = mid.shape[0]
        body = sp.MatMul(*test, mid) if test else mid
        return sp.Trace(body) / n
    # a 1 x 1 matrix; its trace is the scalar (sympy expands [0, 0] into index sums)
    mats = [f.to_sympy() for f in left] + [mid] + [f.to_sympy() for f in right]
    return sp.Trace(sp.MatMul(*mats))


def contract_equivalence(
    expr: Any, inner: OnePoint, kind: str, left: tuple[MatrixExpr, ...], right: tuple[MatrixExpr, ...]
) -> tuple[sp.Expr, Step]:
    r"""Contract a matrix equivalence ``R ~ E`` with a test matrix or with vectors.

    A deterministic equivalence :math:`R\simeq E` means
    :math:`\operatorname{tr}T(R-E)\to0` and :math:`u^\top(R-E)v\to0` for every
    deterministic ``T``, ``u``, ``v`` of bounded norm (MATH.md 2.1), so
    ``tr(T R) ~ tr(T E)`` and ``u.T R v ~ u.T E v``; ``tr(L R M) = tr(M L R)`` by
    cyclicity. The fixed points are those of ``R``.

    >>> import sympy as sp
    >>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent, trace
    >>> lam = sp.Symbol("lam", positive=True); D, P = sp.symbols("D P", positive=True)
    >>> S, T = Deterministic("Sigma", D), Deterministic("T", D); X = Gaussian("X", (P, D))
    >>> from detequiv.derivations.derive import derive
    >>> eq = derive(trace(T @ (lam * resolvent(S.sqrt() @ X.T @ X @ S.sqrt() / P, lam))))
    >>> eq.deterministic
    Trace(T*(kappa*(kappa*I + Sigma)**(-1)))/D
    >>> eq.derivation[-1].rule.name
    'contract_equivalence'
    """
    if kind not in ("trace", "quadratic"):
        raise InvalidArgument(f"kind={kind!r} must be 'trace' or 'quadratic'")
    before = contraction_sympy(kind, left, inner.random.to_sympy(), right)
    after = contraction_sympy(kind, left, inner.deterministic, right)
    note = (
        "normalized trace against the bounded deterministic test matrix (cyclicity of tr)"
        if kind == "trace"
        else "quadratic form with bounded deterministic vectors; it fluctuates as O(1/sqrt(N))"
    )
    return after, Step(CONTRACT_EQUIVALENCE, before, after, note)


def match_contraction(expr: Any, context: Context) -> tuple[Any, ...] | None:
    """:func:`derive_contraction` takes ``tr(T c R)`` or ``u.T c R v`` (one resolvent ``R``)."""
    parts = contraction_parts(expr)
    return None if parts is None else (expr, *parts)


def derive_contraction(found: tuple[Any, ...], context: Context) -> Steps:
    """Derive the contracted resolvent, then contract its equivalence (:func:`contract_equivalence`)."""
    expr, kind, left, c_in, res_in, right = found
    inner = yield from context.derive(Product.make(c_in, (res_in,)))
    if not isinstance(inner, OnePoint):
        raise InvalidArgument(f"the contracted resolvent of {expr} has no one-point equivalent")
    after, step = contract_equivalence(expr, inner, kind, left, right)
    yield step
    return Contracted(
        random=expr, deterministic=after, inner=inner, kind=kind, left=left, right=right, derivation=()
    )


@dataclass(frozen=True, slots=True)
class Contracted(Equivalence):
    r"""A scalar equivalent ``tr(T R) ~ tr(T E)`` or ``u.T R v ~ u.T E v`` of a resolvent.

    Attributes
    ----------
    random : Trace or MatrixExpr
        The expression given to :func:`derive`.
    deterministic : sympy.Expr
        The scalar equivalent.
    inner : OnePoint
        The equivalent ``R ~ E`` of the resolvent that is contracted.
    kind : str
        ``"trace"`` or ``"quadratic"``.
    left, right : tuple of MatrixExpr
        The deterministic factors left and right of the resolvent.
    derivation : tuple of Step
        The inner derivation, then :func:`contract_equivalence`.
    """

    random: Any
    deterministic: sp.Expr
    inner: OnePoint
    kind: str
    left: tuple[MatrixExpr, ...]
    right: tuple[MatrixExpr, ...]
    derivation: tuple[Step, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "derivation", Derivation(self.derivation))

    @property
    def fixed_points(self) -> tuple[FixedPoint, ...]:
        return self.inner.fixed_points

    @property
    def lam(self) -> sp.Expr:
        return self.inner.lam

    def check_series(self, order: int = 8) -> SeriesCheck:
        """The series check of the contracted matrix equivalence (:meth:`OnePoint.check_series`).

        It contracts with a generic non-commuting test letter ``M``; agreement for every
        ``M`` implies it for ``T`` (and for ``M = n v u^T``, the quadratic form), since
        the contraction is linear; the contraction step itself is exact.
        """
        return self.inner.check_series(order)

    def evaluate(self, values: Mapping[Any, Any]) -> complex | float:
        """The number: ``values`` as in :meth:`OnePoint.evaluate`, plus the test matrices
        (spectra or matrices) and the vectors (1-D arrays, by object or name)."""
        return contracted_value(self, values)
