r"""``derive``: the engine's entry point, a thin collector over a generator of steps.

The rules are :class:`~detequiv.derivations.derivation.Rule` objects with a ``match`` and an
``apply`` (the shape strategies and the general engine are listed in
:mod:`~detequiv.derivations.strategies`); :func:`derive` tries them in order (after any rules
of your own) and collects the steps that the first one that matches yields; a product of two
resolvents goes to the two-point shapes first. A failed derivation raises with the steps made
so far attached (``err.derivation``).

>>> import sympy as sp
>>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
>>> lam = sp.Symbol("lam", positive=True); D, P = sp.symbols("D P", positive=True)
>>> Sigma = Deterministic("Sigma", D); X = Gaussian("X", (P, D))
>>> eq = derive(lam * resolvent(Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P, lam))
>>> eq.derivation.rules
('gaussian_gram_to_wishart', 'free_factor_renormalization', 'merge_square_roots')

A rule of your own is tried first. This one absorbs a scalar shift of the matrix into the
ridge, :math:`(\lambda+A+sI)^{-1}=(\lambda_s+A)^{-1}` with :math:`\lambda_s=\lambda+s`, which
the built-in strategies do not know:

>>> from detequiv.derivations.algebra import resolvent_parts
>>> from detequiv.derivations.derivation import Rule, Step
>>> from detequiv.derivations.expressions import Identity, Product, Resolvent, Sum
>>> s = sp.Symbol("s", positive=True)
>>> Sigma_hat = Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P
>>> lam_s = sp.Symbol("lam_s", positive=True)   # the shifted ridge, lam + s
>>> def match_shift(expr, context):
...     # (c, resolvent, the shift term) for c * resolvent(A + s I, lam), else None
...     try:
...         c, res = resolvent_parts(expr)
...     except de.errors.InvalidArgument:
...         return None
...     if isinstance(res.arg, Sum):
...         shifts = [t for t in res.arg.terms if t.leaves() == (Identity(t.shape[0]),)]
...         if len(shifts) == 1:
...             return c, res, shifts[0]
...     return None
>>> def apply_shift(found, context):
...     c, res, shift = found
...     rest = [t for t in res.arg.terms if t != shift]
...     moved = Resolvent(rest[0] if len(rest) == 1 else Sum.make(tuple(rest)), lam_s)
...     yield Step(SHIFT, res.to_sympy(), moved.to_sympy(), f"lam_s = {res.lam + shift.coeff}")
...     return (yield from context.derive(Product.make(c, (moved,))))
>>> SHIFT = Rule("shift_absorption", "(lam + A + s I)^-1 = (lam_s + A)^-1, lam_s = lam + s",
...              "exact algebra", match=match_shift, apply=apply_shift)
>>> shifted = de.derive(lam * de.resolvent(Sigma_hat + s * Identity(D), lam), rules=[SHIFT])
>>> shifted.derivation.rules
('shift_absorption', 'gaussian_gram_to_wishart', 'free_factor_renormalization', 'merge_square_roots')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import DetEquivError
from .derivation import Rule
from .expressions import Product, Resolvent
from .results import Result
from .sandwich import derive_two_point
from .strategies import check_method, derive_one_point, match_pencil_or_none, pencil_fallback

__all__ = ["derive", "two_point_parts"]


def derive(
    expr: Any, order: Sequence[str] | None = None, *, rules: Sequence[Rule] = (), method: str = "auto"
) -> Result:
    """Derive the deterministic equivalent of ``c * resolvent(A, lam)`` by named rules.

    With ``method="auto"`` (the default) the shape rules below are tried first; an expression
    none of them derives goes to the general engine (:data:`LINEAR_PENCIL`: any rational
    expression of Gaussian, Wigner and deterministic matrices, by its linear pencil and the
    matrix Dyson equation), and the derivation's first step (``general_engine``) says why
    the shape rules declined. ``method="shapes"`` uses only the shape rules, ``"pencil"``
    only the general engine. An averaging ``order`` belongs to the shape rules: with one, a
    refusal is not passed on to the general engine.

    ``expr`` may also be a contraction of it: ``trace(T @ c * resolvent(A, lam))`` (``T``
    a product of deterministic matrices, on either side) or a quadratic form
    ``u.T @ c * resolvent(A, lam) @ v`` with :class:`DeterministicVector` ``u``, ``v``;
    the result is then a :class:`~detequiv.derivations.contraction.Contracted`.

    ``A`` is a product (with a scalar coefficient) of :class:`Deterministic` matrices,
    their square roots, Gram pairs ``X.T @ X`` of :class:`Gaussian` matrices and
    :class:`FreeMatrix` factors, each free factor appearing once, or a sum of such
    products with free additive terms ``c B``. Free factors are peeled one at a time, each
    giving one layer of ridge renormalization: right to left by default, or in the
    averaging ``order`` given (names of free matrices or of the Gaussian matrices of Gram
    pairs, e.g. ``("X", "F")`` averages the data ``X`` first, then the features ``F``;
    factors not named follow, right to left). The final scalar renormalization does not
    depend on the order, the intermediate ridges do.

    A Gaussian sandwich ``A = c Z Y Z.T`` (``Z`` of shape ``N x D`` appearing only there,
    e.g. random features ``F Sigma_hat F.T / N`` in feature space) is rotated to the
    inner space (``outer_isotropy``): the equivalent is ``tau I_N``.

    Parameters
    ----------
    expr : MatrixExpr
        What to derive.
    order : sequence of str, optional
        The averaging order of the free factors.
    rules : sequence of Rule
        Rules of your own (with ``match`` and ``apply``), tried before the built-in
        :data:`STRATEGIES`.
    method : {"auto", "shapes", "pencil"}
        Which engine derives (see above).

    Raises
    ------
    InvalidArgument
        If ``expr`` is not a multiple of a resolvent (or a contraction of one).
    InvalidWord
        If a Gaussian matrix is not in a Gram pair, or a free factor appears twice (it
        is then not free from the rest).
    UndefinedTransform
        If a free factor has mean 0 (no S-transform).

    Any of these carries the steps made before the failure as ``err.derivation``.
    """
    check_method(method)
    parts = None if rules or order is not None else two_point_parts(expr)
    if parts is None:
        return derive_one_point(expr, order, rules=rules, method=method)
    if method == "pencil":
        return derive_one_point(expr, rules=rules, method="pencil")
    if method == "shapes":
        return derive_two_point(expr)
    try:
        return derive_two_point(expr)
    except DetEquivError as declined:
        if match_pencil_or_none(expr) is None:
            raise
        reason = str(declined).split("\n")[0]
    return pencil_fallback(expr, reason)


def two_point_parts(expr: Any) -> tuple[Resolvent, Resolvent] | None:
    """The two resolvents of ``c * G1 @ M @ G2`` (ridges of different names), else ``None``."""
    if not isinstance(expr, Product):
        return None
    found = [f for f in expr.factors if isinstance(f, Resolvent)]
    if len(found) != 2 or found[0].lam == found[1].lam:
        return None
    return found[0], found[1]
