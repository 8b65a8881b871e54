r"""The shape strategies and the general engine as rule objects, and the one-point derivation.

:func:`derive_one_point` tries the user's rules, then the shape strategies below in order, and
(``method="auto"``) hands an expression none of them derives to the general engine
(:data:`LINEAR_PENCIL`), with a first step ``general_engine`` that says why the shapes
declined. :func:`~detequiv.derivations.derive.derive`, the entry point, adds the two-point
forms on top.

=======================  ========================================================
strategy                 takes
=======================  ========================================================
``contract_resolvent``   ``tr(T c R)``, ``u.T c R v``: derive ``R``, then contract
``additive_layers``      ``c * resolvent(A, lam)`` with a sum in ``A``
``gaussian_sandwich``    ``c * resolvent(c' Z Y Z.T, lam)``, ``Z`` Gaussian (feature space)
``free_product``         ``c * resolvent(A, lam)``, ``A`` a product of free factors
``linear_pencil``        any rational expression of Gaussian, Wigner, Wishart and
                         deterministic matrices (the general engine)
=======================  ========================================================
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
    "derive_one_point",
    "STRATEGIES",
    "CONTRACT_RESOLVENT",
    "ADDITIVE_LAYERS",
    "OUTER_ISOTROPY_STRATEGY",
    "FREE_PRODUCT",
    "LINEAR_PENCIL",
    "METHODS",
    "check_method",
    "pencil_fallback",
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


def derive_one_point(
    expr: Any, order: Sequence[str] | None = None, *, rules: Sequence[Rule] = (), method: str = "auto"
) -> Result:
    """Derive ``c * resolvent(A, lam)`` or a contraction of it by ``rules``, the shape
    :data:`STRATEGIES` and (``method``, see :func:`~detequiv.derivations.derive.derive`) the
    general engine."""
    if order is not None and (isinstance(order, str) or not all(isinstance(o, str) for o in order)):
        raise InvalidArgument(
            f"order={order!r} must be a sequence of matrix names such as ('X', 'F'), not a string"
        )
    extra = tuple(rules)
    for rule in extra:
        if not isinstance(rule, Rule) or rule.match is None or rule.apply is None:
            raise InvalidArgument(f"rules must be Rule objects with a match and an apply, got {rule!r}")
    check_method(method)
    order = None if order is None else tuple(order)
    if method == "pencil":
        return collect(derive_steps(expr, Context(rules=(*extra, LINEAR_PENCIL), order=order)))
    context = Context(rules=(*extra, *STRATEGIES), order=order)
    if method == "shapes":
        return collect(derive_steps(expr, context))
    try:
        return collect(derive_steps(expr, context))
    except DetEquivError as declined:
        if order is not None or match_pencil_or_none(expr) is None:
            raise  # an averaging order is the shape rules' own question
        reason = str(declined).split("\n")[0]
    return pencil_fallback(expr, reason, extra)


def match_pencil_or_none(expr: Any) -> Any:
    """``expr`` when the general engine can represent it, else ``None``."""
    try:
        return match_pencil(expr, Context(rules=()))
    except DetEquivError:
        return None


def check_method(method: str) -> None:
    """Refuse a ``method`` that is not one of :data:`METHODS`."""
    if method not in METHODS:
        raise InvalidArgument(f"method={method!r} is not one of {METHODS}")


def pencil_fallback(expr: Any, reason: str, rules: Sequence[Rule] = ()) -> Result:
    """The general engine's derivation of ``expr``, first step ``general_engine`` with the shape
    rules' ``reason`` for declining."""
    return collect(_fallback(expr, reason, Context(rules=(*rules, LINEAR_PENCIL))))


def _fallback(expr: Any, reason: str, context: Context) -> Steps:
    first = Step(GENERAL_ENGINE, expr.to_sympy(), expr.to_sympy(), f"the shape rules declined: {reason}")
    yield first
    result = yield from derive_steps(expr, context)
    return replace(result, derivation=Derivation((first, *result.derivation)))
