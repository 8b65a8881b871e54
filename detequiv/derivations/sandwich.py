r"""Random matrices sandwiched between two resolvents, removed exactly (MATH.md 3.4).

:func:`derive_sandwich` takes ``c * G1 @ Mid @ G2`` with :math:`G_i=(\lambda_i+X_i)^{-1}` and
``Mid`` a product that contains random factors (a :math:`\hat\Sigma`, ``A @ B``, ``B @ A``,
...). Two exact rules rewrite it as a linear combination of one-point resolvents,
two-point products with only deterministic matrices between them, and deterministic
matrices:

* :func:`resolvent_absorption`: :math:`G_1X_1=X_1G_1=I-\lambda G_1`, applied when the
  factors of :math:`X_1` (all of them, in order, with its scalar) start ``Mid`` (and the
  mirror for :math:`X_2` ending ``Mid``);
* :func:`resolvent_identity`: :math:`G(\lambda)G(\lambda')=(G(\lambda)-G(\lambda'))/(\lambda'-\lambda)`
  when both resolvents are of the same matrix and nothing stands between them.

Each remaining term is then derived by the engines, used as black boxes:
``lam G`` by :func:`~detequiv.derivations.onepoint.derive` and ``lam lam' G1 M G2`` by
:func:`~detequiv.derivations.twopoint.derive_two_point`. The result is a
:class:`Combination`. For example (MATH.md 3.4)

.. math:: \lambda\lambda'(\lambda+AB)^{-1}ABM(\lambda'+BA)^{-1}
          =\lambda\,M\,[\lambda'(\lambda'+BA)^{-1}]-\lambda\,[\lambda\lambda'(\lambda+AB)^{-1}M(\lambda'+BA)^{-1}].

:meth:`Combination.check_series` does not use the rules: it expands the *original* word
:math:`cG_1\,\mathrm{Mid}\,G_2=c\sum_{j,k}(-1)^{j+k}x^{j+1}y^{k+1}X_1^j\,\mathrm{Mid}\,X_2^k`
(:math:`x=1/\lambda`, :math:`y=1/\lambda'`) and compares every coefficient of
``tr(T .)`` with the series of the combination of equivalents, exactly.

Ridges: the fixed point of :math:`\lambda` is ``kappa`` and that of :math:`\lambda'` is
``kappa'``, as in :class:`~detequiv.derivations.twopoint.TwoPoint` (one-point terms in
:math:`\lambda'` are renamed accordingly).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import sympy as sp

from ..errors import InvalidArgument, InvalidWord
from .algebra import gaussian_gram_to_wishart
from .derivation import Derivation, FixedPoint, Rule, Step
from .expressions import Deterministic, Identity, MatrixExpr, Product, Resolvent, Sqrt, Sum
from .layered import LayeredTwoPoint, derive_pair
from .mixed import mixed_moment
from .numeric import as_matrix, lookup_value, matrix_power, plain_number, scalar_values
from .onepoint import OnePoint
from .quantities import tr
from .results import Equivalence, Evidence
from .rules import (
    COLLECT_TERMS,
    ONE_POINT_RENORMALIZATION,
    RESOLVENT_ABSORPTION,
    RESOLVENT_IDENTITY,
    TWO_POINT_EQUIVALENT,
)
from .series import TEST_LETTER as M_TEST
from .series import factor_letters
from .series import series_coefficients as one_series
from .strategies import derive_one_point
from .twopoint import TwoPoint
from .twopoint_series import TEST_LETTER as N_TEST
from .twopoint_series import series_coefficients as two_series

__all__ = [
    "Term",
    "Combination",
    "CombinationValue",
    "SandwichSeriesCheck",
    "derive_sandwich",
    "is_sandwich",
    "resolvent_absorption",
    "resolvent_identity",
    "derive_two_point",
]

_DETERMINISTIC = (Deterministic, Sqrt, Identity)
_REF_ABSORPTION = "MATH.md 3.4; exact algebra: (lam + X)^-1 X = X (lam + X)^-1 = I - lam (lam + X)^-1"
_REF_IDENTITY = "exact algebra (resolvent identity): G(lam) G(lam') = (G(lam) - G(lam')) / (lam' - lam)"


# ---------------------------------------------------------------------------
# the terms
# ---------------------------------------------------------------------------


def _product_sympy(factors: Sequence[MatrixExpr], dim: sp.Expr) -> sp.Expr:
    mats = [f.to_sympy() for f in factors if not isinstance(f, Identity)]
    if not mats:
        return sp.Identity(dim)
    return mats[0] if len(mats) == 1 else sp.MatMul(*mats)


def _scaled(coeff: sp.Expr, m: sp.Expr) -> sp.Expr:
    return m if coeff == 1 else sp.MatMul(coeff, m)


@dataclass(frozen=True, slots=True)
class Term:
    r"""One term ``coeff * left @ E @ right`` of a :class:`Combination`.

    ``result`` is the engine's equivalent ``E`` of the normalized random matrix
    (:math:`\lambda G` for a :class:`OnePoint`, :math:`\lambda\lambda'G_1MG_2` for a
    :class:`TwoPoint`), or ``None`` for a deterministic term ``coeff * left`` (the
    identity if ``left`` is empty). ``rename`` maps the one-point's fixed-point symbols
    to the combination's (``kappa -> kappa'`` for a resolvent in :math:`\lambda'`).
    """

    coeff: sp.Expr
    result: OnePoint | TwoPoint | None
    dim: sp.Expr
    left: tuple[MatrixExpr, ...] = ()
    right: tuple[MatrixExpr, ...] = ()
    rename: tuple[tuple[sp.Symbol, sp.Symbol], ...] = ()

    @property
    def kind(self) -> str:
        """``'deterministic'``, ``'one_point'`` or ``'two_point'``."""
        if self.result is None:
            return "deterministic"
        return "one_point" if isinstance(self.result, OnePoint) else "two_point"

    def _wrap(self, inner: sp.Expr) -> sp.Expr:
        mats = [f.to_sympy() for f in self.left if not isinstance(f, Identity)]
        mats.append(inner)
        mats += [f.to_sympy() for f in self.right if not isinstance(f, Identity)]
        body = mats[0] if len(mats) == 1 else sp.MatMul(*mats)
        return _scaled(self.coeff, body)

    @property
    def random(self) -> sp.Expr:
        """The random matrix of the term (sympy), ``coeff * left @ (normalized) @ right``."""
        if self.result is None:
            return _scaled(self.coeff, _product_sympy(self.left, self.dim))
        return self._wrap(self.result.random.to_sympy())

    @property
    def deterministic(self) -> sp.Expr:
        """``coeff * left @ E @ right`` with the combination's ridge symbols."""
        if self.result is None:
            return _scaled(self.coeff, _product_sympy(self.left, self.dim))
        return self._wrap(self.result.deterministic.xreplace(dict(self.rename)))

    @property
    def fixed_points(self) -> tuple[FixedPoint, ...]:
        """The fixed points of ``E``, renamed (``kappa -> kappa'`` for :math:`\\lambda'`)."""
        if self.result is None:
            return ()
        if not self.rename:
            return tuple(self.result.fixed_points)
        ren = dict(self.rename)
        return tuple(
            FixedPoint(
                ren.get(fp.symbol, fp.symbol),
                sp.Eq(fp.equation.lhs.xreplace(ren), fp.equation.rhs.xreplace(ren)),
                tuple(ren.get(s, s) for s in fp.depends_on),
            )
            for fp in self.result.fixed_points
        )


# ---------------------------------------------------------------------------
# values and evidence
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CombinationValue:
    """Numbers from :meth:`Combination.evaluate`: the total matrix and each term's (with its coefficient)."""

    matrix: np.ndarray = field(repr=False)
    terms: tuple[np.ndarray, ...] = field(repr=False)

    def trace(self, test: Any = None) -> complex | float:
        """``tr(test @ equivalent)`` (``tr = Tr / n``)."""
        n = self.matrix.shape[0]
        return plain_number(np.trace(self.matrix if test is None else np.asarray(test) @ self.matrix) / n)

    def term_trace(self, index: int, test: Any = None) -> complex | float:
        """``tr(test @ term)`` of one term."""
        m = self.terms[index]
        return plain_number(np.trace(m if test is None else np.asarray(test) @ m) / m.shape[0])


@dataclass(frozen=True, slots=True)
class SandwichSeriesCheck(Evidence):
    """Evidence of :meth:`Combination.check_series`.

    ``coefficients[i] = ((j, k), equivalent, diagram_sum)``: the coefficient of the term
    :math:`X_1^j\\,\\mathrm{Mid}\\,X_2^k` of the original word in ``tr(T_test .)``,
    from the combination's series and from the planar diagram sum. ``failures`` lists
    the ``(j, k)`` where they differ; ``residuals`` lists the coefficients
    ``(a, b)`` of :math:`x^ay^b` that must vanish (outside the original word's support,
    or the remainder of the division by :math:`(x-y)^m`) and do not.
    """

    order: int
    coefficients: tuple[tuple[tuple[int, int], sp.Expr, sp.Expr], ...]
    failures: tuple[tuple[int, int], ...]
    residuals: tuple[tuple[tuple[int, int], sp.Expr], ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures and not self.residuals

    def __str__(self) -> str:
        if self.passed:
            return (
                f"sandwich series check passed: all {len(self.coefficients)} coefficients "
                f"X1^j Mid X2^k (j + k <= {self.order}) agree with the planar diagram sums"
            )
        lines = [
            f"sandwich series check FAILED: {len(self.failures)} coefficients, "
            f"{len(self.residuals)} residuals"
        ]
        if self.failures:
            j, k = self.failures[0]
            eqv, dia = next((e, d) for key, e, d in self.coefficients if key == (j, k))
            lines.append(
                f"first X1^{j} Mid X2^{k}:\n  equivalent:  {eqv}\n  diagram sum: {dia}\n"
                f"  difference:  {sp.expand(eqv - dia)}"
            )
        if self.residuals:
            (a, b), r = self.residuals[0]
            lines.append(f"first nonzero residual at x^{a} y^{b}: {r}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Combination(Equivalence):
    r"""An equivalent ``random ~ sum_i coeff_i left_i E_i right_i`` (see the module doc).

    Attributes
    ----------
    random : MatrixExpr
        The expression given to :func:`derive_sandwich`.
    lam, lam2 : sympy.Expr
        The ridges of the left and right resolvents.
    terms : tuple of Term
        The linear combination (exact rewriting of ``random``), each with its equivalent.
    derivation : tuple of Step
        The absorption steps, the collected combination, then each term's steps.
    dim : sympy.Expr
        The dimension of the matrices.
    """

    random: MatrixExpr
    lam: sp.Expr
    lam2: sp.Expr
    terms: tuple[Term, ...]
    derivation: tuple[Step, ...]
    dim: sp.Expr

    def __post_init__(self) -> None:
        object.__setattr__(self, "derivation", Derivation(self.derivation))

    @property
    def deterministic(self) -> sp.Expr:
        """``sum_i coeff_i left_i E_i right_i`` (a sympy matrix expression)."""
        parts = [t.deterministic for t in self.terms]
        if not parts:
            return sp.ZeroMatrix(self.dim, self.dim)
        return parts[0] if len(parts) == 1 else sp.MatAdd(*parts)

    @property
    def fixed_points(self) -> tuple[FixedPoint, ...]:
        """The fixed points of all terms, deduplicated (those of ``lam`` first)."""
        seen: dict[sp.Symbol, FixedPoint] = {}
        for t in self.terms:
            for fp in t.fixed_points:
                old = seen.get(fp.symbol)
                if old is None:
                    seen[fp.symbol] = fp
                elif sp.simplify(old.rhs - fp.rhs) != 0:  # pragma: no cover - guarded in derive_sandwich
                    raise InvalidArgument(f"two terms define {fp.symbol} differently: {old} and {fp}")
        return tuple(sorted(seen.values(), key=lambda fp: (str(fp.symbol).count("'"), str(fp.symbol))))

    def with_terms(self, terms: Sequence[Term]) -> Combination:
        """A copy with other terms and the same ``random`` (negative controls)."""
        return replace(self, terms=tuple(terms))

    # -- witnesses ---------------------------------------------------------
    def check_series(self, order: int = 6) -> SandwichSeriesCheck:
        """Exact double series in ``1/lam``, ``1/lam2`` against the original word's diagram sums.

        The combination's series (each term from its engine's series, times its
        coefficient, divided exactly by the :math:`(x-y)^m` of the resolvent identity)
        must equal, coefficient by coefficient of ``tr(T_test .)``, the planar diagram
        sums of ``c X1^j Mid X2^k`` for all ``j + k <= order``.
        """
        return _check_series(self, order)

    def evaluate(self, values: Mapping[Any, Any]) -> CombinationValue:
        """Numbers: ``values`` as in :meth:`TwoPoint.evaluate` (ridges, dimensions, law
        parameters, spectra or matrices of the deterministic factors).

        At :math:`\\lambda=\\lambda'` the coefficients :math:`1/(\\lambda'-\\lambda)` of the
        resolvent identity are singular while the sum is not: the value is then the
        average at :math:`\\lambda'=\\lambda\\pm h`, :math:`h=10^{-4}|\\lambda|`
        (error :math:`O(h^2)`).
        """
        return _evaluate(self, values)


# ---------------------------------------------------------------------------
# the rules
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pending:
    coeff: sp.Expr
    left: Resolvent | None
    mid: tuple[MatrixExpr, ...]
    right: Resolvent | None

    def to_sympy(self, dim: sp.Expr) -> sp.Expr:
        mats = []
        if self.left is not None:
            mats.append(self.left.to_sympy())
        mats += [f.to_sympy() for f in self.mid]
        if self.right is not None:
            mats.append(self.right.to_sympy())
        body = sp.Identity(dim) if not mats else (mats[0] if len(mats) == 1 else sp.MatMul(*mats))
        return _scaled(self.coeff, body)


def _arg_parts(res: Resolvent) -> tuple[sp.Expr, tuple[MatrixExpr, ...]]:
    arg = res.arg
    coeff, factors = (arg.coeff, arg.factors) if isinstance(arg, Product) else (sp.S.One, (arg,))
    return sp.sympify(coeff), tuple(f for f in factors if not isinstance(f, Identity))


def _sum_sympy(items: Sequence[sp.Expr]) -> sp.Expr:
    return items[0] if len(items) == 1 else sp.MatAdd(*items)


def resolvent_absorption(
    coeff: sp.Expr, res: Resolvent, rest: tuple[MatrixExpr, ...], side: str
) -> tuple[tuple[sp.Expr, tuple[MatrixExpr, ...]], tuple[sp.Expr, tuple[MatrixExpr, ...]]]:
    r"""Absorb the argument of ``res`` standing next to it.

    With :math:`X=aF` (``a`` the scalar of the resolvent's argument, ``F`` its factors):
    ``side='left'``: :math:`cGF\,\mathrm{rest}=\frac ca\,\mathrm{rest}-\frac{c\lambda}aG\,\mathrm{rest}`;
    ``side='right'``: :math:`c\,\mathrm{rest}\,FG=\frac ca\,\mathrm{rest}-\frac{c\lambda}a\,\mathrm{rest}\,G`
    (exact: :math:`GX=XG=I-\lambda G`). Returns ``((c/a, rest), (-c lam/a, rest))``;
    the second keeps the resolvent.

    >>> import sympy as sp
    >>> from detequiv.derivations.expressions import Deterministic, resolvent
    >>> A, M = Deterministic("A", 3), Deterministic("M", 3)
    >>> lam = sp.Symbol("lam")
    >>> resolvent_absorption(sp.S(2), resolvent(A / 4, lam), (M,), "left")
    ((8, (Deterministic(name='M', dim=3),)), (-8*lam, (Deterministic(name='M', dim=3),)))
    """
    if side not in ("left", "right"):
        raise InvalidArgument(f"side={side!r} must be 'left' or 'right'")
    a, _ = _arg_parts(res)
    if sp.sympify(a).is_zero:
        raise InvalidArgument(f"the resolvent {res} has a zero matrix; nothing to absorb")
    c = sp.factor(sp.sympify(coeff) / a)
    return (c, rest), (sp.factor(-c * res.lam), rest)


def resolvent_identity(coeff: sp.Expr, lam: sp.Expr, lam2: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    r"""Coefficients of :math:`G(\lambda)` and :math:`G(\lambda')` in :math:`c\,G(\lambda)G(\lambda')`.

    :math:`G(\lambda)G(\lambda')=(G(\lambda)-G(\lambda'))/(\lambda'-\lambda)` for resolvents of
    the same matrix (exact; :math:`\lambda\neq\lambda'`).

    >>> import sympy as sp
    >>> resolvent_identity(sp.S.One, *sp.symbols("lam lam2"))
    (-1/(lam - lam2), 1/(lam - lam2))
    """
    if sp.simplify(lam - lam2) == 0:
        raise InvalidArgument(
            f"the resolvent identity needs two different ridges, got {lam} twice; use two symbols "
            "(lam, lam2) and evaluate at equal values"
        )
    c = sp.sympify(coeff)
    return sp.factor(c / (lam2 - lam)), sp.factor(-c / (lam2 - lam))


def is_sandwich(expr: Any) -> bool:
    """Whether ``expr`` is ``c * G1 @ Mid @ G2`` with something non-deterministic in ``Mid``.

    This is the dispatch condition for :func:`derive_sandwich` (the two-point engine
    handles a deterministic ``Mid``).

    >>> import sympy as sp
    >>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
    >>> lam, lam2 = sp.symbols("lam lam2"); S = Deterministic("Sigma", 4); X = Gaussian("X", (8, 4))
    >>> Sh = S.sqrt() @ X.T @ X @ S.sqrt() / 8
    >>> is_sandwich(resolvent(Sh, lam) @ Sh @ resolvent(Sh, lam2)), is_sandwich(resolvent(Sh, lam) @ S @ resolvent(Sh, lam2))
    (True, False)
    """  # noqa: E501
    if not (isinstance(expr, Product) and len(expr.factors) >= 3):
        return False
    first, *mid, last = expr.factors
    return (
        isinstance(first, Resolvent)
        and isinstance(last, Resolvent)
        and any(not isinstance(f, _DETERMINISTIC) for f in mid)
    )


def _random_message(f: MatrixExpr, p: _Pending) -> str:
    where = []
    if p.left is not None:
        where.append(f"the left resolvent is of {p.left.arg}")
    if p.right is not None:
        where.append(f"the right resolvent is of {p.right.arg}")
    return (
        f"{f} between the resolvents is random and no resolvent absorbs it: a random factor must "
        "be part of a product equal to a resolvent's matrix X standing next to that resolvent "
        "(G X = I - lam G, MATH.md 3.4); " + ("; ".join(where) or "no resolvent is left")
    )


def _absorb(start: _Pending, dim: sp.Expr, steps: list[Step]) -> list[_Pending]:
    """Apply the two rules until every term is terminal (deterministic middle)."""
    stack = [start]
    done: list[_Pending] = []

    def push(p: _Pending, new: list[_Pending], rule: Rule, why: str) -> None:
        steps.append(Step(rule, p.to_sympy(dim), _sum_sympy([q.to_sympy(dim) for q in new]), why))
        stack[:0] = new

    while stack:
        p = stack.pop(0)
        if p.left is not None:
            _, fs = _arg_parts(p.left)
            if fs and p.mid[: len(fs)] == fs:
                (c1, r1), (c2, r2) = resolvent_absorption(p.coeff, p.left, p.mid[len(fs) :], "left")
                new = [_Pending(c1, None, r1, p.right), _Pending(c2, p.left, r2, p.right)]
                why = f"{p.left.arg} stands right of its resolvent"
                push(p, new, RESOLVENT_ABSORPTION, why)
                continue
        if p.right is not None:
            _, fs = _arg_parts(p.right)
            if fs and len(p.mid) >= len(fs) and p.mid[len(p.mid) - len(fs) :] == fs:
                (c1, r1), (c2, r2) = resolvent_absorption(
                    p.coeff, p.right, p.mid[: len(p.mid) - len(fs)], "right"
                )
                new = [_Pending(c1, p.left, r1, None), _Pending(c2, p.left, r2, p.right)]
                why = f"{p.right.arg} stands left of its resolvent"
                push(p, new, RESOLVENT_ABSORPTION, why)
                continue
        if p.left is not None and p.right is not None and not p.mid and p.left.arg == p.right.arg:
            c1, c2 = resolvent_identity(p.coeff, p.left.lam, p.right.lam)
            new = [_Pending(c1, p.left, (), None), _Pending(c2, None, (), p.right)]
            why = f"both resolvents are of {p.left.arg} with nothing between them"
            push(p, new, RESOLVENT_IDENTITY, why)
            continue
        for f in p.mid:
            if not isinstance(f, _DETERMINISTIC):
                raise InvalidWord(_random_message(f, p))
        done.append(p)
    return done


def _collect(pending: Sequence[_Pending]) -> list[_Pending]:
    order: list[tuple[Any, ...]] = []
    sums: dict[tuple[Any, ...], sp.Expr] = {}
    for p in pending:
        key = (p.left, p.mid, p.right)
        if key not in sums:
            order.append(key)
            sums[key] = sp.S.Zero
        sums[key] = sums[key] + p.coeff
    out = []
    for key in order:
        c = sp.factor(sp.together(sums[key]))
        if c != 0:
            out.append(_Pending(c, key[0], key[1], key[2]))
    return out


def derive_sandwich(expr: Any) -> Combination:
    r"""Derive the equivalent of ``c * G1 @ Mid @ G2`` with random factors in ``Mid``.

    Parameters
    ----------
    expr : Product
        ``c * resolvent(X1, lam) @ Mid @ resolvent(X2, lam2)`` where every random factor
        of ``Mid`` belongs to a copy of ``X1``'s factors at its left end or of ``X2``'s at
        its right end (e.g. ``Mid = Sigma_hat``, ``A @ B @ M``, ``M @ B @ A``).

    Returns
    -------
    Combination
        The exact linear combination (rules :func:`resolvent_absorption` and
        :func:`resolvent_identity`) with each term's equivalent from
        :func:`~detequiv.derivations.onepoint.derive` or
        :func:`~detequiv.derivations.twopoint.derive_two_point`.

    Raises
    ------
    InvalidArgument
        If ``expr`` is not of that shape, or both resolvents use the same ridge symbol.
    InvalidWord
        If a random factor of ``Mid`` cannot be absorbed (the message names it), or a
        remaining term is outside the engines' scope.

    Examples
    --------

    >>> import sympy as sp
    >>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
    >>> lam, lam2 = sp.symbols("lam lam2", positive=True); D, P = sp.symbols("D P", positive=True)
    >>> S = Deterministic("Sigma", D); X = Gaussian("X", (P, D))
    >>> Sh = S.sqrt() @ X.T @ X @ S.sqrt() / P
    >>> comb = derive_sandwich(lam * lam2 * resolvent(Sh, lam) @ Sh @ resolvent(Sh, lam2))
    >>> [(t.kind, t.coeff) for t in comb.terms]
    [('one_point', lam*lam2/(lam - lam2)), ('one_point', -lam*lam2/(lam - lam2))]
    >>> [str(fp.symbol) for fp in comb.fixed_points]
    ['kappa', "kappa'"]
    >>> comb.check_series(3).passed
    True
    """
    first, mid, last = _sandwich_parts(expr)
    lam, lam2 = first.lam, last.lam
    dim = first.shape[0]
    steps: list[Step] = []
    terminal = _collect(_absorb(_Pending(sp.sympify(expr.coeff), first, mid, last), dim, steps))
    terms = _terminal_terms(terminal, lam, lam2, dim)
    result = Combination(expr, lam, lam2, tuple(terms), (), dim)
    _ = result.fixed_points  # two terms must agree on each fixed point
    collected = _sum_sympy([t.random for t in terms]) if terms else sp.ZeroMatrix(dim, dim)
    steps.append(
        Step(
            COLLECT_TERMS,
            expr.to_sympy(),
            collected,
            "each term normalized as lam G (one-point) or lam lam' G1 M G2 (two-point)",
        )
    )
    steps += _term_steps(terms)
    return replace(result, derivation=tuple(steps))


def _sandwich_parts(expr: Any) -> tuple[Resolvent, tuple[MatrixExpr, ...], Resolvent]:
    """``(G1, Mid, G2)`` of ``c G1 Mid G2``, checked (two ridges, no third resolvent)."""
    if not (isinstance(expr, Product) and len(expr.factors) >= 2):
        raise InvalidArgument(
            f"derive_sandwich needs c * resolvent(X1, lam) @ Mid @ resolvent(X2, lam2), got {expr}"
        )
    first, *mid_list, last = expr.factors
    if not (isinstance(first, Resolvent) and isinstance(last, Resolvent)):
        raise InvalidArgument(
            f"derive_sandwich needs c * resolvent(X1, lam) @ Mid @ resolvent(X2, lam2), got {expr}"
        )
    for f in mid_list:
        if isinstance(f, Resolvent):
            raise InvalidArgument(
                f"{expr} has a third resolvent {f}; products of three resolvents are not supported"
            )
    if sp.simplify(first.lam - last.lam) == 0:
        raise InvalidArgument(
            f"both resolvents use the ridge {first.lam}; use two symbols (lam, lam2) and evaluate at "
            "equal values"
        )
    return first, tuple(f for f in mid_list if not isinstance(f, Identity)), last


def _terminal_terms(terminal: Sequence[_Pending], lam: sp.Expr, lam2: sp.Expr, dim: sp.Expr) -> list[Term]:
    """Each terminal term with its equivalent (one-point, two-point or none), in a stable order:
    one-points in ``lam``, in ``lam2``, two-points, deterministic terms."""
    ones: dict[Resolvent, OnePoint] = {}
    terms: list[Term] = []
    for p in terminal:
        if p.left is None and p.right is None:
            terms.append(Term(p.coeff, None, dim, left=p.mid))
            continue
        if p.left is not None and p.right is not None:
            tp = derive_pair(Product.make(lam * lam2, (p.left, *p.mid, p.right)))
            terms.append(Term(sp.factor(p.coeff / (lam * lam2)), tp, dim))
            continue
        res = p.left if p.left is not None else p.right
        assert res is not None
        if res not in ones:
            one = derive_one_point(res.lam * res, method="shapes")
            if not isinstance(one, OnePoint):  # pragma: no cover - derive returns OnePoint here
                raise InvalidWord(f"{res} did not give a one-point equivalent")
            ones[res] = one
        one = ones[res]
        rename: tuple[tuple[sp.Symbol, sp.Symbol], ...] = ()
        if res.lam == lam2:
            rename = tuple((fp.symbol, sp.Symbol(str(fp.symbol) + "'")) for fp in one.fixed_points)
        c = sp.factor(p.coeff / res.lam)
        side = {"right": p.mid} if p.left is not None else {"left": p.mid}
        terms.append(Term(c, one, dim, rename=rename, **side))

    def rank(t: Term) -> int:
        if t.result is None:
            return 3
        if isinstance(t.result, TwoPoint):
            return 2
        return 0 if t.result.lam == lam else 1

    return sorted(terms, key=rank)


def _term_steps(terms: Sequence[Term]) -> list[Step]:
    """Each term's own derivation (ridges renamed, notes numbered), then its equivalent."""
    steps: list[Step] = []
    for i, t in enumerate(terms, start=1):
        if t.result is None:
            continue
        ren = dict(t.rename)
        for st in t.result.derivation:
            steps.append(
                replace(
                    st,
                    after=st.after.xreplace(ren),
                    equation=None if st.equation is None else st.equation.xreplace(ren),
                    note=f"term {i}: {st.note}",
                )
            )
        steps.append(
            Step(
                ONE_POINT_RENORMALIZATION if t.kind == "one_point" else TWO_POINT_EQUIVALENT,
                t.random,
                t.deterministic,
                f"term {i}",
            )
        )
    return steps


# ---------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------


def _det_matrix(factors: Sequence[MatrixExpr], values: Mapping[Any, Any], n: int) -> np.ndarray:
    m = np.eye(n, dtype=complex)
    for f in factors:
        if isinstance(f, Identity):
            continue
        if isinstance(f, Sqrt):
            m = m @ matrix_power(as_matrix(lookup_value(values, f.base.name)).real, sp.Rational(1, 2))
        elif isinstance(f, Deterministic):
            m = m @ as_matrix(lookup_value(values, f.name))
        else:  # pragma: no cover - derive_sandwich keeps only deterministic factors here
            raise InvalidArgument(f"{f} is not deterministic")
    return m


def _size(comb: Combination, values: Mapping[Any, Any]) -> int:
    sub = scalar_values(values, comb.dim)
    try:
        return int(complex(sp.sympify(comb.dim).xreplace(sub)).real)
    except TypeError:
        pass
    for v in values.values():
        arr = np.asarray(v)
        if arr.ndim >= 1:
            return int(arr.shape[0])
    raise InvalidArgument(f"values gives no size for the dimension {comb.dim}; pass it")


def _evaluate_at(comb: Combination, values: Mapping[Any, Any], l1: complex, l2: complex) -> CombinationValue:
    lam_name, lam2_name = str(comb.lam), str(comb.lam2)
    rest = {k: v for k, v in values.items() if str(getattr(k, "name", k)) not in (lam_name, lam2_name)}
    n = _size(comb, values)
    num: dict[sp.Basic, Any] = {
        comb.lam: sp.sympify(plain_number(l1)),
        comb.lam2: sp.sympify(plain_number(l2)),
    }
    mats = []
    for t in comb.terms:
        names = scalar_values(rest, t.coeff)
        try:
            c = complex(sp.sympify(t.coeff).xreplace(num).xreplace(names))
        except TypeError:
            missing = sorted(str(s) for s in sp.sympify(t.coeff).xreplace(num).xreplace(names).free_symbols)
            raise InvalidArgument(f"values lacks {missing}; pass numbers for them") from None
        if t.result is None:
            body = _det_matrix(t.left, values, n)
        elif isinstance(t.result, TwoPoint):
            body = np.asarray(
                t.result.evaluate({**rest, lam_name: plain_number(l1), lam2_name: plain_number(l2)}).matrix
            )
        else:
            lv = l1 if t.result.lam == comb.lam else l2
            one = t.result.evaluate({**rest, t.result.lam: plain_number(lv)})
            body = _det_matrix(t.left, values, n) @ one.matrix @ _det_matrix(t.right, values, n)
        mats.append(c * body)
    total = np.sum(mats, axis=0) if mats else np.zeros((n, n), dtype=complex)
    return CombinationValue(total, tuple(mats))


def _evaluate(comb: Combination, values: Mapping[Any, Any]) -> CombinationValue:
    l1 = complex(lookup_value(values, str(comb.lam)))
    l2 = complex(lookup_value(values, str(comb.lam2)))
    singular = any({comb.lam, comb.lam2} <= sp.denom(sp.together(t.coeff)).free_symbols for t in comb.terms)
    if singular and abs(l2 - l1) <= 1e-7 * max(abs(l1), abs(l2), 1e-300):
        h = 1e-4 * abs(l1)
        if h == 0:
            raise InvalidArgument("lam = lam2 = 0: the equal-ridge limit needs lam != 0")
        up = _evaluate_at(comb, values, l1, l1 + h)
        down = _evaluate_at(comb, values, l1, l1 - h)
        return CombinationValue(
            (up.matrix + down.matrix) / 2,
            tuple((a + b) / 2 for a, b in zip(up.terms, down.terms, strict=True)),
        )
    return _evaluate_at(comb, values, l1, l2)


# ---------------------------------------------------------------------------
# the exact series witness
# ---------------------------------------------------------------------------

TEST_LETTER = sp.Symbol("T_test", commutative=False)
_Series = dict[tuple[int, int], sp.Expr]


def _is_zero(e: sp.Expr) -> bool:
    d = sp.expand(e)
    return d == 0 or sp.cancel(sp.together(d)) == 0


def _retrace(expr: sp.Expr, subs: Mapping[sp.Symbol, tuple[sp.Symbol, ...]]) -> sp.Expr:
    """Replace letters inside every ``tr(...)`` by words (and re-canonicalize)."""
    e = sp.sympify(expr)
    rep = {}
    for atom in e.atoms(tr):
        letters = [x for s in atom.letters for x in subs.get(s, (s,))]
        rep[atom] = tr(sp.Mul(*letters)) if letters else sp.S.One
    return e.xreplace(rep)


def _word_letters(
    factors: Sequence[MatrixExpr], sqrt_names: set[str]
) -> tuple[sp.Expr, tuple[sp.Symbol, ...], dict[sp.Symbol, Any]]:

    fs = tuple(f for f in factors if not isinstance(f, Identity))
    for f in fs:
        if isinstance(f, Sum):
            raise InvalidArgument(f"the series check does not expand the sum {f}; it needs products")
    coeff, fs, _ = gaussian_gram_to_wishart(sp.S.One, fs)
    letters, laws = factor_letters(fs, sqrt_names)
    return sp.sympify(coeff), letters, laws


def _monomial(c: sp.Expr, lam: sp.Expr, lam2: sp.Expr) -> tuple[sp.Expr, int, int]:
    """``c = c0 lam^p lam2^r`` with ``c0`` free of the ridges."""
    c0, dep = sp.sympify(c).as_independent(lam, lam2, as_Add=False)
    powers = sp.powsimp(dep).as_powers_dict()
    p, r = int(powers.pop(lam, 0)), int(powers.pop(lam2, 0))
    if any(k != 1 for k in powers) or c0.has(lam) or c0.has(lam2):
        raise InvalidArgument(
            f"the coefficient {c} is not c0 * lam^p * lam2^r; the series check needs a monomial prefactor"
        )
    return c0, p, r


def _laurent(c: sp.Expr, x: sp.Symbol, y: sp.Symbol) -> tuple[_Series, int]:
    """``c(1/x, 1/y) = P(x, y) / (x - y)^m``: the Laurent polynomial ``P`` and ``m``."""
    num, den = sp.fraction(sp.factor(sp.together(c)))
    const, factors = sp.factor_list(den, x, y)
    ex = ey = m = 0
    sign = sp.S.One
    for f, e in factors:
        if f == x:
            ex += e
        elif f == y:
            ey += e
        elif sp.expand(f - (x - y)) == 0:
            m += e
        elif sp.expand(f + (x - y)) == 0:
            m += e
            sign *= (-1) ** e
        else:
            raise InvalidArgument(
                f"the coefficient has the denominator factor {f} in x = 1/lam, y = 1/lam2; the series "
                "check handles only powers of lam, lam2 and lam2 - lam"
            )
    poly = sp.Poly(sp.expand(num), x, y)
    out: _Series = {}
    for (a, b), cf in poly.terms():
        out[(a - ex, b - ey)] = cf / (const * sign)
    return out, m


def _term_series(t: Term, lam: sp.Expr, order: int, sqrt_names: set[str]) -> _Series:
    """The series of ``left E right`` contracted as ``tr(T_test .)``, in (x, y), to ``order``."""
    if t.result is None:
        _, letters, _ = _word_letters(t.left, sqrt_names)
        return {(0, 0): tr(sp.Mul(TEST_LETTER, *letters))}
    if isinstance(t.result, TwoPoint):
        return {k: _retrace(e, {N_TEST: (TEST_LETTER,)}) for k, e, _ in two_series(t.result, max(order, 1))}

    _, lw, _ = _word_letters(t.left, sqrt_names)
    _, rw, _ = _word_letters(t.right, sqrt_names)
    sub = {M_TEST: (*rw, TEST_LETTER, *lw)}
    coeffs = one_series(t.result, max(order, 1))
    in_x = t.result.lam == lam
    return {((k, 0) if in_x else (0, k)): _retrace(e, sub) for k, (e, _) in enumerate(coeffs) if k <= order}


def _canon(e: sp.Expr, sqrt_names: set[str]) -> sp.Expr:
    subs = {
        sp.Symbol(n, commutative=False): (sp.Symbol(f"{n}_sqrt", commutative=False),) * 2 for n in sqrt_names
    }
    return sp.expand(_retrace(e, subs))


def _check_series(comb: Combination, order: int) -> SandwichSeriesCheck:
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise InvalidArgument(f"order must be an integer >= 1, got {order!r}")
    expr = comb.random
    assert isinstance(expr, Product)
    first, *mid_list, last = expr.factors
    assert isinstance(first, Resolvent) and isinstance(last, Resolvent)
    lam, lam2 = comb.lam, comb.lam2
    sqrt_names = {leaf.base.name for leaf in expr.leaves() if isinstance(leaf, Sqrt)}

    # -- the original word: c G1 Mid G2 = c sum (-1)^(j+k) x^(j+1) y^(k+1) X1^j Mid X2^k
    c0, p, r = _monomial(expr.coeff, lam, lam2)
    a1, w1, laws = _word_letters(_arg_parts(first)[1], sqrt_names)
    a1 = a1 * _arg_parts(first)[0]
    a2, w2, laws2 = _word_letters(_arg_parts(last)[1], sqrt_names)
    a2 = a2 * _arg_parts(last)[0]
    cm, wm, laws3 = _word_letters(tuple(mid_list), sqrt_names)
    laws = {**laws, **laws2, **laws3}
    amin, bmin = 1 - p, 1 - r
    diagram: dict[tuple[int, int], sp.Expr] = {}
    for s in range(order + 1):
        for j in range(s + 1):
            k = s - j
            word = sp.Mul(TEST_LETTER, *(w1 * j), *wm, *(w2 * k))
            value = c0 * cm * (-a1) ** j * (-a2) ** k * mixed_moment(word, laws)
            diagram[(j, k)] = _canon(value, sqrt_names)

    # -- the combination: sum_i P_i(x, y) S_i(x, y) = (x - y)^m Q(x, y)
    x, y = sp.Dummy("x"), sp.Dummy("y")
    laurents = [_laurent(sp.sympify(t.coeff).xreplace({lam: 1 / x, lam2: 1 / y}), x, y) for t in comb.terms]
    m = max((mi for _, mi in laurents), default=0)
    t_max = amin + bmin + order
    top = t_max + m  # the total degree through which sum_i P_i S_i is needed
    total: _Series = {}
    for t, (poly, m_i) in zip(comb.terms, laurents, strict=True):
        if m > m_i:
            factor = sp.Poly(sp.expand((x - y) ** (m - m_i)), x, y).terms()
            shifted: _Series = {}
            for (a, b), cf in poly.items():
                for (da, db), cf2 in factor:
                    shifted[(a + da, b + db)] = shifted.get((a + da, b + db), sp.S.Zero) + cf * cf2
            poly = {k: v for k, v in shifted.items() if v != 0}
        v_i = min((a + b for a, b in poly), default=0)
        # P_i S_i is exact through degree top when S_i is exact through top - v_i
        series = _term_series(t, lam, max(top - v_i, 0), sqrt_names)
        for (a, b), cf in poly.items():
            for (i, j), v in series.items():
                if a + i + b + j <= top:
                    total[(a + i, b + j)] = total.get((a + i, b + j), sp.S.Zero) + cf * v
    q = {k: _canon(v, sqrt_names) for k, v in total.items()}
    residuals: list[tuple[tuple[int, int], sp.Expr]] = []
    for (a, b), v in sorted(q.items()):
        if (a < amin or b < bmin) and not _is_zero(v):
            residuals.append(((a, b), v))
    q = {k: v for k, v in q.items() if k[0] >= amin and k[1] >= bmin}
    for step in range(m):
        q, res = _divide(q, amin, bmin, top - step)
        residuals += res
    coefficients = []
    failures = []
    for (j, k), dia in sorted(diagram.items(), key=lambda kv: (sum(kv[0]), kv[0])):
        eqv = q.get((j + amin, k + bmin), sp.S.Zero)
        coefficients.append(((j, k), eqv, dia))
        if not _is_zero(eqv - dia):
            failures.append((j, k))
    return SandwichSeriesCheck(order, tuple(coefficients), tuple(failures), tuple(residuals))


def _divide(
    f: _Series, amin: int, bmin: int, top: int
) -> tuple[_Series, list[tuple[tuple[int, int], sp.Expr]]]:
    r"""``Q`` (supported in ``a >= amin``, ``b >= bmin``) with ``f = (x - y) Q``, through
    total degree ``top - 1`` (``f`` is exact through ``top``), and the nonzero remainders.

    :math:`f_{a,b+1}=Q_{a-1,b+1}-Q_{a,b}` is solved along each antidiagonal from
    :math:`Q_{a_{min}-1,\cdot}=0`; the last equation of each antidiagonal,
    :math:`f_{a,b_{min}}=Q_{a-1,b_{min}}`, is the remainder (zero iff ``f`` is divisible).
    """
    q: _Series = {}
    residuals = []
    for s in range(amin + bmin, top + 1):  # the degree of f; Q of degree s - 1
        for a in range(amin, s - bmin):
            b = s - 1 - a
            q[(a, b)] = sp.expand(q.get((a - 1, b + 1), sp.S.Zero) - f.get((a, b + 1), sp.S.Zero))
        a_end = s - bmin
        rem = f.get((a_end, bmin), sp.S.Zero) - q.get((a_end - 1, bmin), sp.S.Zero)
        if not _is_zero(rem):
            residuals.append(((a_end, bmin), rem))
    return q, residuals


def derive_two_point(expr: Any) -> Combination | LayeredTwoPoint | TwoPoint:
    """Derive the two-point equivalent of ``c * resolvent(X1, lam) @ M @ resolvent(X2, lam2)``.

    With something random in ``M`` (a sandwich) the result is a :class:`Combination`
    (:func:`derive_sandwich`); with several free factors in the resolvents (layered chains
    such as the random-feature model) a
    :class:`~detequiv.derivations.layered.LayeredTwoPoint`; with one free factor a
    :class:`~detequiv.derivations.twopoint.TwoPoint`.

    Raises
    ------
    InvalidArgument
        If ``expr`` is not of that shape, or both resolvents use the same ridge symbol.
    InvalidWord
        If a resolvent is not ``A^l B A^(1-l)`` with one free factor ``B`` shared by both,
        or something random between the resolvents cannot be absorbed.
    """
    if is_sandwich(expr):  # a random matrix between the resolvents
        return derive_sandwich(expr)
    return derive_pair(expr)
