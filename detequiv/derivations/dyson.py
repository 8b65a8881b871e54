r"""The matrix Dyson equation of a pencil, and its scalarization into fixed points.

Split the pencil ``L = L_0 + W``: ``L_0`` holds ``lam`` and the deterministic matrices, ``W``
the Gaussian terms ``c L_1 Z R_1`` (or ``Z^T``). Averaging the Gaussian letters by their
planar (non-crossing) pairings of ``Z`` with ``Z^T`` (crossing pairings and ``Z``-``Z``
pairings of a real Gaussian are ``O(1/n)`` and dropped) resums to the matrix Dyson equation

.. math:: G=\mathbb E[L^{-1}]\simeq(L_0-\eta(G))^{-1},\qquad
          \eta(G)_{ab}=\sum c_1c_2\,s^2\operatorname{Tr}(R_1G_{cd}L_2)\,L_1R_2

over the pairs of a term at block ``(a, c)`` and one at ``(d, b)`` (Helton, Rashidi Far and
Speicher, IMRN 2007; Alt, Erdos and Kruger 2020). ``eta`` sees ``G`` only through finitely
many normalized traces ``g_i = tr(G_cd M_i)``: they become scalar unknowns, ``L_0 - eta(g)``
is inverted block by block with ordered (non-commuting) products, and the unknowns close
``g_i = tr([(L_0 - eta(g))^{-1}]_cd M_i)``. Unknowns whose closure has no trace left are
explicit and eliminated.

For the sample covariance this is :math:`g_1=1/(1+\frac DP g_2)`,
:math:`g_2=\operatorname{tr}\Sigma(\lambda+g_1\Sigma)^{-1}`, which with
:math:`\kappa=\lambda/g_1` is the familiar :math:`\kappa=\lambda/(1-\frac DP\mathrm{df}_1(\kappa))`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp

from ..errors import InvalidArgument
from .pencil import Pencil
from .traces import mtr

__all__ = [
    "GaussianTerm",
    "CovarianceTerm",
    "gaussian_terms",
    "deterministic_part",
    "covariance_map",
    "reachable",
    "BlockMatrix",
    "block_inverse",
    "canonical",
]


@dataclass(frozen=True, slots=True)
class GaussianTerm:
    """``coeff * left @ Z @ right`` (``Z^T`` when ``transposed``) at block ``(row, col)``."""

    row: int
    col: int
    coeff: sp.Expr
    left: sp.Expr
    name: str
    transposed: bool
    right: sp.Expr


@dataclass(frozen=True, slots=True)
class CovarianceTerm:
    """One pairing in ``eta``: ``coeff * g * matrix`` at block ``(row, col)``, ``g`` the unknown
    ``tr(G_(c,d) M)`` named by ``key = (c, d, M)`` over the ``size`` of block ``c``."""

    row: int
    col: int
    coeff: sp.Expr
    key: tuple[int, int, sp.Expr]
    matrix: sp.Expr


def _side(m: sp.Expr | None, n: sp.Expr) -> sp.Expr:
    return sp.Identity(n) if m is None else m


def gaussian_terms(p: Pencil) -> list[GaussianTerm]:
    """The Gaussian terms of the pencil, with explicit left and right sides."""
    out = []
    for (i, j), entry in sorted(p.blocks.items()):
        for m in entry:
            if not m.random:
                continue
            assert m.gaussian is not None
            shape, _, _ = p.gaussians[m.gaussian]
            zr, zc = (shape[1], shape[0]) if m.transposed else shape
            out.append(
                GaussianTerm(i, j, m.coeff, _side(m.left, zr), m.gaussian, m.transposed, _side(m.right, zc))
            )
    return out


def deterministic_part(p: Pencil) -> dict[tuple[int, int], sp.Expr]:
    """``L_0``: the deterministic entries (``lam`` included), as sympy matrix expressions."""
    out: dict[tuple[int, int], sp.Expr] = {}
    for (i, j), entry in p.blocks.items():
        parts = [m.to_sympy({}) for m in entry if not m.random]
        if parts:
            out[(i, j)] = canonical(parts[0] if len(parts) == 1 else sp.MatAdd(*parts))
    return out


def reachable(p: Pencil) -> set[tuple[int, int]]:
    """The blocks ``(c, d)`` of ``L^-1`` that can be nonzero: ``d`` reachable from ``c`` along the
    nonzero blocks of ``L`` (a Neumann series of ``L`` only moves along them). The other blocks
    are zero for every value of the random matrices, e.g. the lower-left blocks of the block
    upper-triangular pencil of a product of resolvents."""
    k = len(p.dims)
    out = {(i, i) for i in range(k)} | {key for key in p.blocks if p.blocks[key]}
    while True:
        more = {(a, d) for (a, b) in out for (c, d) in out if b == c} - out
        if not more:
            return out
        out |= more


def covariance_map(p: Pencil) -> list[CovarianceTerm]:
    """Every planar pairing of two Gaussian terms: ``Z`` with ``Z^T`` of the same letter (a Wigner
    letter with itself), ``E[L1 Z R1 G L2 Z^T R2] = s^2 Tr(R1 G L2) L1 R2`` and its mirror.
    Pairings through a block of ``G`` that is structurally zero (:func:`reachable`) are left out."""
    terms = gaussian_terms(p)
    live = reachable(p)
    out = []
    for t1 in terms:
        for t2 in terms:
            if t1.name != t2.name:
                continue
            shape, variance, wigner = p.gaussians[t1.name]
            if not wigner and t1.transposed == t2.transposed:
                continue
            c, d = t1.col, t2.row
            if (c, d) not in live:
                continue
            inner = canonical(sp.MatMul(t2.left, t1.right))  # Tr(R1 G_cd L2) = Tr(G_cd L2 R1)
            size = p.dims[c]
            coeff = canonical_scalar(t1.coeff * t2.coeff * variance * size)
            matrix = canonical(sp.MatMul(t1.left, t2.right))
            out.append(CovarianceTerm(t1.row, t2.col, coeff, (c, d, inner), matrix))
    return out


# ---------------------------------------------------------------------------
# light canonical forms of sympy matrix expressions
# ---------------------------------------------------------------------------


def canonical_scalar(e: sp.Expr) -> sp.Expr:
    return sp.factor(sp.sympify(e)) if sp.sympify(e).free_symbols else sp.sympify(e)


def canonical(m: sp.Expr) -> sp.Expr:
    """``doit`` without expanding inverses, with ``A^(1/2) A^(1/2) = A`` merged."""
    m = m.doit()
    if isinstance(m, sp.MatMul):
        coeff, mats = m.as_coeff_matrices()
        merged: list[sp.Expr] = []
        for f in mats:
            if merged and isinstance(f, sp.MatPow) and f.exp == sp.Rational(1, 2) and merged[-1] == f:
                merged[-1] = f.base
            elif not isinstance(f, sp.Identity):
                merged.append(f)
        if not merged:
            return coeff * sp.Identity(m.shape[0]) if coeff != 1 else sp.Identity(m.shape[0])
        body = merged[0] if len(merged) == 1 else sp.MatMul(*merged)
        return body if coeff == 1 else sp.MatMul(coeff, body)
    return m


# ---------------------------------------------------------------------------
# block matrices with zero tracking, inverted by Schur complements
# ---------------------------------------------------------------------------

BlockMatrix = dict[tuple[int, int], sp.Expr]


def _add(a: sp.Expr | None, b: sp.Expr | None) -> sp.Expr | None:
    if a is None:
        return b
    if b is None:
        return a
    out = canonical(sp.MatAdd(a, b))
    return None if isinstance(out, sp.ZeroMatrix) else out


def _mul(*fs: sp.Expr | None) -> sp.Expr | None:
    if any(f is None for f in fs):
        return None
    out = canonical(sp.MatMul(*fs))
    return None if isinstance(out, sp.ZeroMatrix) else out


def _neg(a: sp.Expr | None) -> sp.Expr | None:
    return None if a is None else canonical(sp.MatMul(-1, a))


def _inv(a: sp.Expr) -> sp.Expr:
    """The inverse of a block: ``(1/c) I`` for ``c I``, ``(1/c) X^-1`` for ``c X``, else ``Inverse``."""
    a = canonical(a)
    if isinstance(a, sp.Identity):
        return a
    if isinstance(a, sp.MatMul):
        coeff, mats = a.as_coeff_matrices()
        if len(mats) == 1 and isinstance(mats[0], sp.Identity):
            return canonical(sp.MatMul(1 / coeff, mats[0]))
    if isinstance(a, sp.MatMul) and len(a.args) == 2 and not getattr(a.args[0], "is_Matrix", False):
        return canonical(sp.MatMul(1 / a.args[0], sp.Inverse(a.args[1])))
    return sp.Inverse(a)


def _is_scalar_identity(a: sp.Expr | None) -> bool:
    if a is None:
        return False
    if isinstance(a, sp.Identity):
        return True
    return (
        isinstance(a, sp.MatMul)
        and any(isinstance(f, sp.Identity) for f in a.args)
        and len([f for f in a.args if getattr(f, "is_Matrix", False)]) == 1
    )


def block_inverse(m: Mapping[tuple[int, int], sp.Expr], index: Sequence[int]) -> BlockMatrix:
    """All blocks of the inverse of the block matrix ``m`` on ``index`` (missing blocks are 0),
    by Schur complements on a pivot with a cheap inverse (a multiple of the identity first,
    then the block with the fewest couplings)."""
    idx = list(index)
    if len(idx) == 1:
        (i,) = idx
        if (i, i) not in m:
            raise InvalidArgument(f"block {i} of the Dyson matrix is zero: the pencil is singular there")
        return {(i, i): _inv(m[(i, i)])}

    def couplings(i: int) -> int:
        return sum(1 for j in idx if j != i and ((i, j) in m or (j, i) in m))

    def fill(i: int) -> int:  # Markowitz: the blocks the Schur complement on i can fill
        return sum(1 for j in idx if j != i and (j, i) in m) * sum(1 for j in idx if j != i and (i, j) in m)

    p = min(idx, key=lambda i: (fill(i), not _is_scalar_identity(m.get((i, i))), couplings(i), i))
    if (p, p) not in m:
        raise InvalidArgument(f"block {p} of the Dyson matrix is zero; cannot take its Schur complement")
    rest = [i for i in idx if i != p]
    a_inv = _inv(m[(p, p)])
    s: BlockMatrix = {}
    for i in rest:
        for j in rest:
            value = _add(m.get((i, j)), _neg(_mul(m.get((i, p)), a_inv, m.get((p, j)))))
            if value is not None:
                s[(i, j)] = value
    s_inv = block_inverse(s, rest)
    out: BlockMatrix = dict(s_inv)
    for i in rest:  # X[i, p] = -sum_j Sinv[i, j] M[j, p] A^-1
        acc = None
        for j in rest:
            acc = _add(acc, _mul(s_inv.get((i, j)), m.get((j, p)), a_inv))
        if acc is not None:
            out[(i, p)] = _neg(acc)
    for j in rest:  # X[p, j] = -sum_i A^-1 M[p, i] Sinv[i, j]
        acc = None
        for i in rest:
            acc = _add(acc, _mul(a_inv, m.get((p, i)), s_inv.get((i, j))))
        if acc is not None:
            out[(p, j)] = _neg(acc)
    corner = a_inv
    for i in rest:
        for j in rest:
            corner = _add(corner, _mul(a_inv, m.get((p, i)), s_inv.get((i, j)), m.get((j, p)), a_inv))
    assert corner is not None
    out[(p, p)] = corner
    return out


def dyson_matrix(
    p: Pencil,
    l0: Mapping[tuple[int, int], sp.Expr],
    eta: Sequence[CovarianceTerm],
    unknowns: Mapping[Any, sp.Symbol],
) -> BlockMatrix:
    """``L_0 - eta(g)`` with the traces replaced by the unknowns ``g``."""
    out: BlockMatrix = dict(l0)
    for t in eta:
        term = canonical(sp.MatMul(-t.coeff * unknowns[t.key], t.matrix))
        out[(t.row, t.col)] = _add(out.get((t.row, t.col)), term)  # type: ignore[assignment]
    return {k: v for k, v in out.items() if v is not None}


def closure(g: BlockMatrix, key: tuple[int, int, sp.Expr], dims: Sequence[sp.Expr]) -> sp.Expr:
    """``tr(G_cd M)`` (normalized over block ``c``), as ``mtr`` atoms with scalars pulled out."""
    c, d, inner = key
    block = g.get((c, d))
    if block is None:
        return sp.S.Zero
    return trace_of(canonical(sp.MatMul(block, inner)), dims[c])


def trace_of(m: sp.Expr, n: sp.Expr) -> sp.Expr:
    """The normalized trace ``Tr(m)/n``: linear, scalars out, ``tr(c I) = c``, else an ``mtr`` atom."""
    m = canonical(m)
    if isinstance(m, sp.MatAdd):
        return sp.Add(*[trace_of(a, n) for a in m.args])
    if isinstance(m, sp.Identity):
        return sp.S.One
    if isinstance(m, sp.ZeroMatrix):
        return sp.S.Zero
    if isinstance(m, sp.MatMul):
        scalars = [f for f in m.args if not getattr(f, "is_Matrix", False)]
        mats = [f for f in m.args if getattr(f, "is_Matrix", False)]
        c = sp.Mul(*scalars)
        mats = [f for f in mats if not isinstance(f, sp.Identity)]
        if not mats:
            return c
        body = mats[0] if len(mats) == 1 else sp.MatMul(*mats)
        return c * mtr(body)
    return mtr(m)
