r"""``derive``: the engine's entry point, a thin collector over a generator of steps.

The strategies below are :class:`~detequiv.derivations.derivation.Rule` objects with a
``match`` and an ``apply``; :func:`derive` tries them in order (after any rules of your
own) and collects the steps that the first one that matches yields. A failed derivation
raises with the steps made so far attached (``err.derivation``).

=======================  ========================================================
strategy                 takes
=======================  ========================================================
``contract_resolvent``   ``tr(T c R)``, ``u.T c R v``: derive ``R``, then contract
``additive_layers``      ``c * resolvent(A, lam)`` with a sum in ``A``
``gaussian_sandwich``    ``c * resolvent(c' Z Y Z.T, lam)``, ``Z`` Gaussian (feature space)
``free_product``         ``c * resolvent(A, lam)``, ``A`` a product of free factors
=======================  ========================================================

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
from dataclasses import replace
from typing import Any

from ..errors import DetEquivError, InvalidArgument
from .additive import derive_layers, match_sum
from .contraction import derive_contraction, match_contraction
from .derivation import Derivation, Rule, Step
from .engine import Context, Steps, collect, derive_steps
from .general import derive_pencil, match_pencil
from .onepoint import derive_product, match_product, match_sandwich, outer_isotropy
from .results import Result
from .rules import GENERAL_ENGINE

__all__ = [
    "derive",
    "STRATEGIES",
    "CONTRACT_RESOLVENT",
    "ADDITIVE_LAYERS",
    "OUTER_ISOTROPY_STRATEGY",
    "FREE_PRODUCT",
    "LINEAR_PENCIL",
    "METHODS",
]

CONTRACT_RESOLVENT = Rule(
    "contract_resolvent",
    "tr(T R) ~ tr(T E) and u.T R v ~ u.T E v for R ~ E and deterministic T, u, v",
    "docs, One-point equivalents",
    match=match_contraction,
    apply=derive_contraction,
)
ADDITIVE_LAYERS = Rule(
    "additive_layers",
    "a resolvent of a sum: free additive terms by additive subordination, products by "
    "multiplicative subordination, outer layer first",
    "docs, One-point equivalents (additive layers)",
    match=match_sum,
    apply=derive_layers,
)
OUTER_ISOTROPY_STRATEGY = Rule(
    "gaussian_sandwich",
    "lam (lam + c Z Y Z.T)^-1 ~ tau I for Z Gaussian at both ends only",
    "docs, One-point equivalents (feature space)",
    match=match_sandwich,
    apply=outer_isotropy,
)
FREE_PRODUCT = Rule(
    "free_product",
    "lam (lam + A)^-1 for A a product of deterministic matrices, Gram pairs and free factors: one "
    "renormalized ridge per free factor",
    "docs, One-point equivalents",
    match=match_product,
    apply=derive_product,
)

LINEAR_PENCIL = Rule(
    "linear_pencil",
    "any rational expression of Gaussian, Wigner and deterministic matrices: linearize, average the "
    "Gaussian blocks by the matrix Dyson equation, scalarize",
    "docs, The general engine (linear pencils)",
    match=match_pencil,
    apply=derive_pencil,
)

#: The built-in shape strategies, tried in this order.
STRATEGIES: tuple[Rule, ...] = (CONTRACT_RESOLVENT, ADDITIVE_LAYERS, OUTER_ISOTROPY_STRATEGY, FREE_PRODUCT)

#: The values of ``derive(..., method=...)``.
METHODS = ("auto", "shapes", "pencil")


def derive(
    expr: Any, order: Sequence[str] | None = None, *, rules: Sequence[Rule] = (), method: str = "auto"
) -> Result:
    """Derive the deterministic equivalent of ``c * resolvent(A, lam)`` by named rules.

    With ``method="auto"`` (the default) the shape rules below are tried first; an expression
    none of them derives goes to the general engine (:data:`LINEAR_PENCIL`: any rational
    expression of Gaussian, Wigner and deterministic matrices, by its linear pencil and the
    matrix Dyson equation), and the derivation's first step (``general_engine``) says why
    the shape rules declined. ``method="shapes"`` uses only the shape rules, ``"pencil"``
    only the general engine.

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
    if order is not None and (isinstance(order, str) or not all(isinstance(o, str) for o in order)):
        raise InvalidArgument(
            f"order={order!r} must be a sequence of matrix names such as ('X', 'F'), not a string"
        )
    extra = tuple(rules)
    for rule in extra:
        if not isinstance(rule, Rule) or rule.match is None or rule.apply is None:
            raise InvalidArgument(f"rules must be Rule objects with a match and an apply, got {rule!r}")
    if method not in METHODS:
        raise InvalidArgument(f"method={method!r} is not one of {METHODS}")
    order = None if order is None else tuple(order)
    if method == "pencil":
        return collect(derive_steps(expr, Context(rules=(*extra, LINEAR_PENCIL), order=order)))
    context = Context(rules=(*extra, *STRATEGIES), order=order)
    if method == "shapes":
        return collect(derive_steps(expr, context))
    try:
        return collect(derive_steps(expr, context))
    except DetEquivError as declined:
        if match_pencil_or_none(expr) is None:
            raise
        reason = str(declined).split("\n")[0]
    return collect(_fallback(expr, reason, Context(rules=(*extra, LINEAR_PENCIL), order=order)))


def match_pencil_or_none(expr: Any) -> Any:
    """``expr`` when the general engine can represent it, else ``None``."""
    try:
        return match_pencil(expr, Context(rules=()))
    except DetEquivError:
        return None


def _fallback(expr: Any, reason: str, context: Context) -> Steps:
    first = Step(GENERAL_ENGINE, expr.to_sympy(), expr.to_sympy(), f"the shape rules declined: {reason}")
    yield first
    result = yield from derive_steps(expr, context)
    return replace(result, derivation=Derivation((first, *result.derivation)))
