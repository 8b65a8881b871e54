r"""Layered two-point equivalents: one renormalized ridge per source of randomness (MATH.md 3.5).

:func:`derive_layered_two_point` takes ``c * resolvent(X1, lam) @ M @ resolvent(X2, lam2)``
where ``X1``, ``X2`` contain several free factors (Gram pairs or free matrices), e.g. the
linear random-feature model :math:`T=\lambda\lambda'(\lambda+\hat\Sigma W_F)^{-1}M
(\lambda'+W_F\hat\Sigma)^{-1}`. The outer free factor ``B`` (the rightmost free factor of
``X1``, the one :func:`~detequiv.derivations.onepoint.derive` peels first) is averaged
first, with the rest ``A`` of the product (random) treated as deterministic with respect
to it; the sides must be ``A B`` or ``B A`` with the same ``A``. The rules of the
single-layer engine apply unchanged (:mod:`detequiv.derivations.twopoint`):

* ``free_factor_renormalization``: :math:`k_1=r\,S_B(-\mathrm{df}_1(A,k_1))` for both ridges;
* ``conjugation_exponent``: :math:`a=1-l_1+l_2` (``A B``: :math:`l=1`; ``B A``: :math:`l=0`);
* ``operator_valued_subordination`` and ``linear_divided_difference``:

  .. math:: rr'(r+X_1)^{-1}M(r'+X_2)^{-1}\simeq k_1k_1'\hat RM\hat R'
            +\frac{k_1k_1'\beta}{\alpha-\beta\,\mathrm{df}_2(A,k_1,k_1')}
            \operatorname{tr}(MA^a\hat R\hat R')\,A^{2-a}\hat R\hat R',
            \qquad \hat R=(k_1+A)^{-1};

then every random piece is reduced exactly to one- and two-point functions of ``A``
(:func:`resolvent_absorption`: :math:`A\hat R=I-k_1\hat R`, so
:math:`A\hat R\hat R'=(k_1'\hat R'-k_1k_1'\hat R\hat R')/k_1'` and
:math:`A^2\hat R\hat R'=I-k_1\hat R-k_1'\hat R'+k_1k_1'\hat R\hat R'`), each of which is
derived by :func:`~detequiv.derivations.onepoint.derive` (``k_1 \hat R``) and, recursively,
by this engine or :func:`~detequiv.derivations.twopoint.derive_two_point`
(``k_1 k_1' \hat R N \hat R'``, ``N`` = ``M`` or ``I``). Traces of equivalents are traces of
the random matrices (:func:`trace_of_equivalence`) and the scalar
:math:`\mathrm{df}_2(A,\cdot)`, a trace, concentrates (:func:`trace_concentration`). The
intermediate ridges are the one-point chain's (``kappa_1``, ..., ``kappa_L`` and primed).

Another factor can be averaged first (``outer="W_X"``: data first): a resolvent
``(r + L B R)^-1`` with ``L`` or ``R`` deterministic is conjugated to ``L (r + B R L)^-1 L^-1``
(the ``similarity_conjugation`` step; the middle becomes ``L^-1 M ...``) and
:func:`normal_word` cancels the square roots in the result. Both orders give the same
matrix (MATH.md 3.5, both displays).

The result (:class:`LayeredTwoPoint`) is a noncommutative polynomial in the deterministic
letters, the resolvent letters :math:`R_{\kappa}=(\kappa+Y)^{-1}` of the innermost
matrix ``Y`` and ``tr(...)`` scalars. It checks itself exactly
(:meth:`LayeredTwoPoint.check_series`, the planar diagram sums of
:math:`N X_1^a M X_2^b`) and by simulation (``check_monte_carlo``).

>>> import sympy as sp
>>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
>>> lam, lam2 = sp.symbols("lam lam2", positive=True)
>>> D, N, P = sp.symbols("D N P", positive=True)
>>> S = Deterministic("Sigma", D); M = Deterministic("M", D)
>>> X = Gaussian("X", (P, D)); F = Gaussian("F", (N, D))
>>> Sh = S.sqrt() @ X.T @ X @ S.sqrt() / P; WF = F.T @ F / N
>>> T = derive_layered_two_point(lam * lam2 * resolvent(Sh @ WF, lam) @ M @ resolvent(WF @ Sh, lam2))
>>> [str(fp.symbol) for fp in T.fixed_points]
['kappa_2', 'kappa_1', "kappa_2'", "kappa_1'"]
>>> T.check_series(2).passed
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import sympy as sp

from ..errors import InvalidArgument, InvalidWord
from .algebra import gaussian_gram_to_wishart, merge_square_roots
from .derivation import Derivation, FixedPoint, Step
from .expressions import Deterministic, FreeMatrix, Identity, MatrixExpr, Product, Resolvent, Sqrt
from .letters import Letters, Word, WordPolynomial, letter_family, normal_word, trace_word
from .numeric import lookup_value, plain_number
from .onepoint import OnePoint, free_factor_renormalization
from .quantities import df1, df2, divided_difference, tr, word_letters
from .results import Equivalence
from .rules import (
    CONJUGATION_EXPONENT,
    LAYERED_CHAIN,
    ONE_POINT_CHAIN,
    OPERATOR_VALUED_SUBORDINATION,
    RESOLVENT_ABSORPTION,
    RIDGE_RESCALING,
    SIMILARITY_CONJUGATION,
    TRACE_OF_EQUIVALENCE,
    TWO_POINT_SINGLE_LAYER,
)
from .strategies import derive_one_point
from .twopoint import (
    TwoPoint,
    conjugation_exponent,
    derive_single_layer,
    linear_divided_difference,
    operator_valued_subordination,
    two_point_parts,
)
from .twopoint_series import check_layered_series

__all__ = [
    "LayeredTwoPoint",
    "LayeredTwoPointValue",
    "derive_layered_two_point",
    "resolvent_absorption",
    "trace_of_equivalence",
    "trace_concentration",
    "derive_pair",
    "layered_free_count",
]

_REF_LAYERS = "MATH.md 3.5 (average the outer free factor first, then the inner ones); MATH.md 3.2-3.4"


# ---------------------------------------------------------------------------
# noncommutative polynomials with scalar (sympy) coefficients
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# the rules specific to layers
# ---------------------------------------------------------------------------


def resolvent_absorption(a: int, q1: Any, q2: Any, p_i: Any, k1: sp.Expr, k2: sp.Expr) -> Any:
    r""":math:`A^a\hat R\hat R'` in terms of :math:`Q_1=k_1\hat R`, :math:`Q_2=k_1'\hat R'` and
    :math:`P=k_1k_1'\hat R\hat R'` (exact: :math:`A\hat R=I-k_1\hat R`, MATH.md 3.4).

    ``a = 0``: :math:`P/(k_1k_1')`; ``a = 1``: :math:`(Q_2-P)/k_1'`; ``a = 2``:
    :math:`I-Q_1-Q_2+P`. Works on anything with ``+``, ``-``, ``.scale`` and an identity
    (``WordPolynomial``).
    """
    if a == 0:
        return p_i.scale(1 / (k1 * k2))
    if a == 1:
        return (q2 - p_i).scale(1 / k2)
    if a == 2:
        return WordPolynomial.word(()) - q1 - q2 + p_i
    raise InvalidArgument(f"A^{a} R R': the exponent must be 0, 1 or 2")


def trace_of_equivalence(left: Word, equivalent: WordPolynomial) -> sp.Expr:
    """``tr(L X) ~ tr(L E)`` for a random ``X ~ E`` and a deterministic word ``L``: an equivalence
    holds under every deterministic contraction (MATH.md 2.1)."""
    return equivalent.trace(left)


def trace_concentration(expr: sp.Expr, atom: sp.Expr, value: sp.Expr) -> sp.Expr:
    r"""Replace the random trace ``atom`` (``df2(A, k, k')``) by the trace of its equivalent.

    Normalized traces of resolvent products concentrate (fluctuations :math:`O(1/N)`), so a
    rational function of them equals, to leading order, the same function of their
    equivalents (MATH.md 3.2: ratio of traces -> ratio of equivalents).
    """
    return expr.xreplace({atom: value})


# ---------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LayeredTwoPointValue:
    """Numbers from :meth:`LayeredTwoPoint.evaluate`.

    ``kappas`` maps ``'kappa_1'``, ``"kappa_1'"``, ... to the solved ridges; ``matrix`` is the
    equivalent, ``no_outer`` the same without the outermost correction term (the inner
    two-point alone; a negative control).
    """

    kappas: dict[str, complex | float]
    matrix: np.ndarray = field(repr=False)
    no_outer: np.ndarray = field(repr=False)

    def trace(self, test: Any = None) -> complex | float:
        n = self.matrix.shape[0]
        return plain_number(np.trace(self.matrix if test is None else np.asarray(test) @ self.matrix) / n)

    def no_outer_trace(self, test: Any = None) -> complex | float:
        n = self.no_outer.shape[0]
        return plain_number(np.trace(self.no_outer if test is None else np.asarray(test) @ self.no_outer) / n)


# ---------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LayeredTwoPoint(Equivalence):
    r"""A layered two-point equivalent ``random ~ deterministic`` (see the module doc).

    ``polynomial`` is the equivalent as ``((word, coefficient), ...)``: words in the letters
    ``X`` / ``X_sqrt`` of deterministic matrices and ``R_kappa`` (``(kappa + Y)^{-1}``, see
    ``resolvents``), coefficients commutative sympy expressions in the ridges, the
    dimensions and ``tr(...)``. ``outer`` is the outermost correction term alone (the part the
    feature layer adds to the inner two-point function).
    """

    random: MatrixExpr
    lam: sp.Expr
    lam2: sp.Expr
    fixed_points: tuple[FixedPoint, ...]
    derivation: tuple[Step, ...]
    polynomial: tuple[tuple[Word, sp.Expr], ...]
    outer: tuple[tuple[Word, sp.Expr], ...]
    resolvents: tuple[tuple[sp.Symbol, sp.Symbol, Word], ...]
    dim: sp.Expr
    prefactor: sp.Expr
    coeff: sp.Expr
    left_chain: OnePoint
    right_chain: OnePoint
    side1: tuple[MatrixExpr, ...]
    side2: tuple[MatrixExpr, ...]
    middle: tuple[MatrixExpr, ...]
    sqrt_names: frozenset[str]

    # -- printing ------------------------------------------------------------
    def __post_init__(self) -> None:
        object.__setattr__(self, "derivation", Derivation(self.derivation))

    def _sympy_of(self, w: Word) -> sp.Expr:
        res = {r: (k, y) for r, k, y in self.resolvents}
        n = self.dim
        mats: list[sp.Expr] = []
        i = 0
        while i < len(w):
            x = w[i]
            i += 1
            if x.name.endswith("_sqrt") and i < len(w) and w[i] == x:
                mats.append(sp.MatrixSymbol(x.name[: -len("_sqrt")], n, n))
                i += 1
                continue
            if x in res:
                k, y = res[x]
                ymat = self._sympy_of(y)  # whole word: A^(1/2) A^(1/2) prints as A
                mats.append(sp.Inverse(sp.MatAdd(ymat, k * sp.Identity(n))))
            elif x.name.endswith("_isqrt"):
                mats.append(sp.MatPow(sp.MatrixSymbol(x.name[: -len("_isqrt")], n, n), sp.Rational(-1, 2)))
            elif x.name.endswith("_sqrt"):
                mats.append(sp.MatPow(sp.MatrixSymbol(x.name[: -len("_sqrt")], n, n), sp.Rational(1, 2)))
            else:
                mats.append(sp.MatrixSymbol(x.name, n, n))
        if not mats:
            return sp.Identity(n)
        return mats[0] if len(mats) == 1 else sp.MatMul(*mats)

    def _scalar_sympy(self, c: sp.Expr) -> sp.Expr:
        rep = {}
        for t in c.atoms(tr):
            rep[t] = sp.Trace(self._sympy_of(word_letters(t.args[0]))) / self.dim
        return c.xreplace(rep)

    @property
    def deterministic(self) -> sp.Expr:
        """The equivalent as a sympy matrix expression (``tr`` written ``Trace / dim``)."""
        parts = []
        for w, c in self.polynomial:
            m = self._sympy_of(w)
            c2 = self._scalar_sympy(sp.sympify(c))
            parts.append(m if c2 == 1 else sp.MatMul(c2, m))
        body = parts[0] if len(parts) == 1 else sp.MatAdd(*parts)
        return body if self.prefactor == 1 else sp.MatMul(self.prefactor, body)

    def without_outer(self) -> LayeredTwoPoint:
        """A copy without the outermost correction term (negative control: the inner two-point alone)."""
        keep = WordPolynomial(dict(self.polynomial)) - WordPolynomial(dict(self.outer))
        return replace(self, polynomial=tuple(keep.terms.items()), outer=())

    # -- witnesses -------------------------------------------------------------
    def check_series(self, order: int = 6) -> Any:
        """Exact double series in ``1/lam``, ``1/lam2`` against the planar diagram sums of
        ``tr(N X1^a M X2^b)`` (:func:`detequiv.derivations.twopoint_series.check_layered_series`)."""
        return check_layered_series(self, order)

    def evaluate(self, values: Mapping[Any, Any]) -> LayeredTwoPointValue:
        """Numbers: ``values`` maps ``lam``, ``lam2``, the dimensions and the deterministic
        matrices (objects or names; spectra or matrices) to numbers. The one-point chains are
        solved at ``lam`` and ``lam2`` by the one-point engine (physical branch, real or
        complex ridges), then the polynomial is evaluated."""
        return _evaluate(self, values)


# ---------------------------------------------------------------------------
# derive
# ---------------------------------------------------------------------------


def _chain_symbol(i: int, prime: bool) -> sp.Symbol:
    return sp.Symbol(f"kappa_{i}" + ("'" if prime else ""))


def _rename_derive(one: OnePoint, offset: int, prime: bool) -> dict[sp.Symbol, sp.Symbol]:
    """derive's ``kappa`` / ``kappa_j`` -> the chain's ``kappa_{offset + j}`` (primed on the right)."""
    rep: dict[sp.Symbol, sp.Symbol] = {}
    for fp in one.fixed_points:
        name = fp.symbol.name
        j = 1 if name == "kappa" else int(name.split("_")[1])
        rep[fp.symbol] = _chain_symbol(offset + j, prime)
    return rep


def _free_count(factors: Sequence[MatrixExpr]) -> int:
    return sum(isinstance(f, FreeMatrix) for f in factors)


def _mexpr(factors: Sequence[MatrixExpr], coeff: Any = 1) -> MatrixExpr:
    return Product.make(sp.sympify(coeff), tuple(factors))


class _Engine:
    def __init__(self, dim: sp.Expr, letters: Letters, middle: tuple[MatrixExpr, ...]) -> None:
        self.dim = dim
        self.letters = letters
        self.middle = middle
        self.steps: list[Step] = []
        self.resolvents: dict[sp.Symbol, tuple[sp.Symbol, Word]] = {}
        self.cache: dict[Any, WordPolynomial] = {}
        self.outer: WordPolynomial | None = None
        self.outer_name: str | None = None

    # -- letters ----------------------------------------------------------------
    def r_letter(self, kappa: sp.Symbol, y: Word) -> sp.Symbol:
        fams = {f[0] if f is not None else None for f in map(letter_family, y)}
        tag = f"({next(iter(fams))})" if len(fams) == 1 and None not in fams else ""
        s = sp.Symbol(f"R_{kappa.name}{tag}", commutative=False)  # the tag: functions of X commute
        self.resolvents[s] = (kappa, y)
        return s

    def scalar(self, e: sp.Expr) -> sp.Expr:
        """df1 / df2 of deterministic matrices -> tr(...) with resolvent letters."""
        rep: dict[sp.Basic, sp.Expr] = {}
        for atom in e.atoms(df1):
            y = self.letters.sym(atom.args[0])
            rep[atom] = trace_word(y + (self.r_letter(atom.args[1], y),))
        for atom in e.atoms(df2):
            y = self.letters.sym(atom.args[0])
            rep[atom] = trace_word(y + y + (self.r_letter(atom.args[1], y), self.r_letter(atom.args[2], y)))
        return e.xreplace(rep)

    # -- one point ----------------------------------------------------------------
    def one(self, level: int, ridge: sp.Symbol, a: tuple[MatrixExpr, ...], prime: bool) -> WordPolynomial:
        key = ("one", level, ridge, a)
        if key in self.cache:
            return self.cache[key]
        rho = sp.Symbol("rho_ridge")  # derive names its ridges kappa_j: keep them apart from ours
        eq = derive_one_point(rho * Resolvent(_mexpr(a), rho), method="shapes")
        rep: dict[sp.Basic, sp.Expr] = {**_rename_derive(eq, level, prime), rho: ridge}
        k = eq.ridge.xreplace(rep)
        y = self.letters.sym(eq.matrix)
        pre = sp.sympify(eq.prefactor).xreplace(rep)
        out = WordPolynomial.word((self.r_letter(k, y),), pre * k)
        self.steps.append(
            Step(
                ONE_POINT_CHAIN,
                ridge * sp.Inverse(_mexpr(a).to_sympy() + ridge * sp.Identity(self.dim)),
                eq.deterministic.xreplace(rep),
                f"the one-point function of the inner matrix at the ridge {ridge}, "
                f"{len(eq.derivation)} steps of derive",
            )
        )
        self.cache[key] = out
        return out

    # -- two point ----------------------------------------------------------------
    def two(
        self,
        level: int,
        r1: sp.Expr,
        r2: sp.Expr,
        side1: tuple[MatrixExpr, ...],
        side2: tuple[MatrixExpr, ...],
        mid: Word,
    ) -> WordPolynomial:
        key = ("two", level, r1, r2, side1, side2, mid)
        if key in self.cache:
            return self.cache[key]
        if _free_count(side1) == 1:
            out = self.base(level, r1, r2, side1, side2, mid)
        else:
            out = self.layer(level, r1, r2, side1, side2, mid)
        self.cache[key] = out
        return out

    def base(
        self,
        level: int,
        r1: sp.Expr,
        r2: sp.Expr,
        side1: tuple[MatrixExpr, ...],
        side2: tuple[MatrixExpr, ...],
        mid: Word,
    ) -> WordPolynomial:

        rho, rho2 = sp.Symbol("rho_ridge"), sp.Symbol("rho_ridge2")  # apart from derive's names
        # M enters linearly: a placeholder letter stands for the word ``mid`` (e.g. S^-1/2 M S^-1/2)
        holder = (Deterministic("M_mid", self.dim),) if mid else ()
        expr = Product.make(
            rho * rho2, (Resolvent(_mexpr(side1), rho), *holder, Resolvent(_mexpr(side2), rho2))
        )
        tp = derive_single_layer(expr)
        k, k2 = _chain_symbol(level + 1, False), _chain_symbol(level + 1, True)
        rep = {tp.kappa: k, tp.kappa2: k2, rho: r1, rho2: r2}
        a_word = self.letters.det(tp.a_matrix.name)
        r_1, r_2 = self.r_letter(k, a_word), self.r_letter(k2, a_word)
        m_word = mid

        def apow(e: sp.Rational) -> Word:
            if tp.a_matrix.name in self.letters.sqrt_names:
                return self.letters.half(tp.a_matrix.name) * int(2 * e)
            if not sp.Rational(e).is_integer:  # pragma: no cover - half letters are set then
                raise InvalidWord(f"{tp.a_matrix.name}^{e} needs square-root letters")
            return a_word * int(e)

        if tp.scale.atoms(divided_difference):
            raise InvalidWord(
                f"the inner free factor {tp.free.name} ~ {tp.free.law} keeps the divided difference "
                "c(lam, lam'); the layered engine needs S_B(t) = 1/(alpha + beta t) (Wishart / Gram layers)"
            )
        scale = self.scalar(tp.scale.xreplace(rep))
        pre = sp.sympify(tp.prefactor).xreplace(rep)
        inner = trace_word(m_word + apow(tp.exponent) + (r_1, r_2))
        out = WordPolynomial.word((r_1, *m_word, r_2), pre * k * k2) + WordPolynomial.word(
            apow(2 - tp.exponent) + (r_1, r_2), pre * scale * inner
        )
        self.steps.append(
            Step(
                TWO_POINT_SINGLE_LAYER,
                expr.to_sympy().xreplace(rep),
                tp.deterministic.xreplace(rep),
                f"one free factor {tp.free.name}: form {tp.form}, a = {tp.exponent}; "
                f"kappa -> {k}, kappa' -> {k2}" + (f"; M_mid = {sp.Mul(*mid)}" if mid else ""),
            )
        )
        return out

    def split(
        self, side: tuple[MatrixExpr, ...], b: FreeMatrix, which: str
    ) -> tuple[tuple[MatrixExpr, ...], int]:
        if side.count(b) != 1:
            raise InvalidWord(
                f"the {which} resolvent has {side.count(b)} copies of the outer free factor {b.name}; the "
                "layered engine needs it once on both sides"
            )
        i = side.index(b)
        left, right = side[:i], side[i + 1 :]
        if left and right:
            raise InvalidWord(
                f"the {which} resolvent is L {b.name} R with both L = {_mexpr(left)} and R = {_mexpr(right)} "
                f"nonempty; the layered engine needs A {b.name} or {b.name} A (write the product so the "
                "outer free factor stands at an end)"
            )
        return (left or right), (1 if left else 0)

    def subordinate(
        self,
        level: int,
        r1: sp.Expr,
        r2: sp.Expr,
        sides: tuple[tuple[MatrixExpr, ...], tuple[MatrixExpr, ...]],
        indices: tuple[int, int],
        powers: tuple[int, int],
        a_mat: tuple[MatrixExpr, ...],
        ridges: tuple[sp.Symbol, sp.Symbol],
    ) -> tuple[sp.Rational, sp.Expr]:
        """One layer's single-layer two-point equivalent: the ridges of both sides, the power of
        ``A`` inside the trace and the correction scalar (linear in ``df2``), with their steps."""
        (side1, side2), (i1, i2), (l1, l2), (k, k2) = sides, indices, powers, ridges
        b = side1[i1]
        assert isinstance(b, FreeMatrix)
        _, eq, step = free_factor_renormalization(r1, side1, i1, k, self.dim)
        self.steps.append(replace(step, note=f"layer {level + 1}, left: {step.note}"))
        _, _, step2 = free_factor_renormalization(r2, side2, i2, k2, self.dim)
        self.steps.append(replace(step2, note=f"layer {level + 1}, right: {step2.note}"))
        a = conjugation_exponent(sp.Rational(l1), sp.Rational(l2))
        self.steps.append(
            Step(
                CONJUGATION_EXPONENT,
                sp.Tuple(l1, l2),
                a,
                f"layer {level + 1}: A = {_mexpr(a_mat)} is deterministic with respect to {b.name}; "
                f"A^{a} stays inside the trace, A^{2 - a} moves outside",
            )
        )
        scale = operator_valued_subordination(r1, r2, k, k2, _mexpr(a_mat).to_sympy())
        self.steps.append(
            Step(
                OPERATOR_VALUED_SUBORDINATION,
                sp.Tuple(r1, r2),
                scale,
                f"layer {level + 1}: {b.name} ~ {b.law} is rotation invariant and free from A and M",
            )
        )
        linear = linear_divided_difference(scale, eq, r1, r2, k2)
        if linear is None:
            raise InvalidWord(
                f"the outer free factor {b.name} ~ {b.law} has a ridge equation that is not linear in df1; "
                "the layered engine needs S_B(t) = 1/(alpha + beta t) (Wishart / Gram layers)"
            )
        scale, lstep = linear
        self.steps.append(lstep)
        return a, scale

    def layer(
        self,
        level: int,
        r1: sp.Expr,
        r2: sp.Expr,
        side1: tuple[MatrixExpr, ...],
        side2: tuple[MatrixExpr, ...],
        mid: Word,
    ) -> WordPolynomial:

        # at inner levels the one-point chains (derive) peel the rightmost free factor first
        index = (
            next(i for i, f in enumerate(side1) if isinstance(f, FreeMatrix) and f.name == self.outer_name)
            if level == 0
            else max(i for i, f in enumerate(side1) if isinstance(f, FreeMatrix))
        )
        b = side1[index]
        assert isinstance(b, FreeMatrix)
        a1, l1 = self.split(side1, b, "left")
        a2, l2 = self.split(side2, b, "right")
        if a1 != a2:
            raise InvalidWord(
                f"the resolvents leave different matrices {_mexpr(a1)} and {_mexpr(a2)} next to {b.name}; "
                "the layered engine needs A B or B A with the same A on both sides"
            )
        a_mat = a1
        k, k2 = _chain_symbol(level + 1, False), _chain_symbol(level + 1, True)
        a, scale = self.subordinate(
            level, r1, r2, (side1, side2), (index, side2.index(b)), (l1, l2), a_mat, (k, k2)
        )
        k_one, k2_one = self.one(level + 1, k, a_mat, False), self.one(level + 1, k2, a_mat, True)
        p_m = self.two(level + 1, k, k2, a_mat, a_mat, mid)
        p_i = p_m if not mid else self.two(level + 1, k, k2, a_mat, a_mat, ())
        pieces = {e: resolvent_absorption(e, k_one, k2_one, p_i, k, k2) for e in {int(a), int(2 - a)}}
        self.steps.append(_absorption_step(level, pieces, k, k2))
        m_word = mid
        inner = trace_of_equivalence(m_word, pieces[int(a)])
        df2_atoms = scale.atoms(df2)
        df2_value = trace_of_equivalence((), resolvent_absorption(2, k_one, k2_one, p_i, k, k2))
        for atom in sorted(df2_atoms, key=str):
            scale = trace_concentration(scale, atom, df2_value)
        self.steps.append(
            Step(
                TRACE_OF_EQUIVALENCE,
                sp.Symbol(f"tr(M A^{a} R R'), df2(A, {k}, {k2})"),
                sp.Tuple(inner, df2_value),
                f"layer {level + 1}: traces of the random pieces are traces of their equivalents",
            )
        )
        correction = pieces[int(2 - a)].scale(scale * inner)
        if level == 0:
            self.outer = correction
        return p_m + correction


def _absorption_step(level: int, pieces: Mapping[int, Any], k: sp.Symbol, k2: sp.Symbol) -> Step:
    """The step writing every ``A^e R R'`` of a layer through one- and two-point functions of ``A``."""
    forms = {
        0: f"({k} {k2} R R')/({k} {k2})",
        1: f"({k2} R' - {k} {k2} R R')/{k2}",
        2: f"I - {k} R - {k2} R' + {k} {k2} R R'",
    }
    return Step(
        RESOLVENT_ABSORPTION,
        sp.Tuple(*[sp.Symbol(f"A^{e} R R'") for e in sorted(pieces)]),
        sp.Tuple(*[sp.Symbol(forms[e]) for e in sorted(pieces)]),
        f"layer {level + 1}: every A^e R R' in terms of k R, k' R' and k k' R R' (one- and two-point "
        "functions of A)",
    )


def _outer_index(side: tuple[MatrixExpr, ...]) -> int:
    """The outer free factor: the rightmost free factor if it ends the product (derive peels it
    first), else the first factor if it is free; otherwise the rightmost (``split`` then explains)."""
    free = [i for i, f in enumerate(side) if isinstance(f, FreeMatrix)]
    if free[-1] == len(side) - 1 or not isinstance(side[0], FreeMatrix):
        return free[-1]
    return 0


def _sides(res: Resolvent) -> tuple[sp.Expr, tuple[MatrixExpr, ...]]:
    arg = res.arg
    coeff, factors = (arg.coeff, arg.factors) if isinstance(arg, Product) else (sp.S.One, (arg,))
    factors = tuple(f for f in factors if not isinstance(f, Identity))
    coeff, factors, _ = gaussian_gram_to_wishart(coeff, factors)
    for f in factors:
        if not isinstance(f, (Deterministic, Sqrt, FreeMatrix)):
            raise InvalidWord(f"{f} in {res} is not a deterministic matrix, a Gram pair or a free matrix")
    return sp.sympify(coeff), factors


def layered_free_count(expr: Any) -> int:
    """The number of free factors in the left resolvent of ``c G1 M G2`` (0 if not of that shape)."""
    if not (isinstance(expr, Product) and len(expr.factors) >= 2 and isinstance(expr.factors[0], Resolvent)):
        return 0
    try:
        return _free_count(_sides(expr.factors[0])[1])
    except InvalidWord:
        return 0


def _deterministic(fs: tuple[MatrixExpr, ...]) -> bool:
    return bool(fs) and all(isinstance(f, (Deterministic, Sqrt)) for f in fs)


def _inverse_letters(fs: tuple[MatrixExpr, ...], letters: Letters) -> Word:
    return tuple(x for f in reversed(fs) for x in letters.inverse(f))


def _conjugation_plan(
    side: tuple[MatrixExpr, ...], b: FreeMatrix, which: str
) -> tuple[tuple[MatrixExpr, ...], int, str, tuple[MatrixExpr, ...]]:
    """``(A, l, kind, C)`` for a resolvent of ``L B R``: ``kind`` '' (``A B`` / ``B A`` already),
    'L' (``(r + L B R)^-1 = L (r + B A)^-1 L^-1``, ``A = R L``, C = L) or 'R'
    (``= R^-1 (r + A B)^-1 R``, ``A = R L``, C = R); exact similarity, C deterministic."""

    if side.count(b) != 1:
        raise InvalidWord(f"the {which} resolvent must contain the outer free factor {b.name} once")
    i = side.index(b)
    left, right = side[:i], side[i + 1 :]
    if not right:
        return left, 1, "", ()
    if not left:
        return right, 0, "", ()
    a = merge_square_roots(right + left)
    if _deterministic(left):
        return a, 0, "L", left
    if _deterministic(right):
        return a, 1, "R", right
    raise InvalidWord(
        f"the {which} resolvent is L {b.name} R with L = {_mexpr(left)} and R = {_mexpr(right)} both random; "
        f"the layered engine needs {b.name} at an end, or L or R deterministic (then it conjugates)"
    )


def derive_layered_two_point(expr: Any, outer: str | None = None) -> LayeredTwoPoint:
    r"""Derive ``c * resolvent(X1, lam) @ M @ resolvent(X2, lam2)`` with several free factors.

    ``outer`` names the free factor averaged first (e.g. ``"W_X"`` for data first in
    :math:`(\lambda+\hat\Sigma W_F)^{-1}`); by default the rightmost free factor of ``X1`` if
    it ends the product, else its first factor if free. When the chosen factor stands inside a
    resolvent as ``L B R`` with ``L`` or ``R`` deterministic, the resolvent is conjugated
    (``(r + L B R)^-1 = L (r + B R L)^-1 L^-1``): the middle becomes ``L^-1 M ...`` and
    the result is sandwiched (:func:`normal_word` cancels the square roots).

    Raises
    ------
    InvalidArgument
        If ``expr`` is not of that shape or both ridges are the same symbol.
    InvalidWord
        If a resolvent is not ``A B`` / ``B A`` (``B`` the outer free factor, the same ``A`` on
        both sides) at some layer, the scales differ, something random stands between the
        resolvents, or a layer's law is not Wishart-like.
    """

    c_out, res1, middle, res2 = two_point_parts(expr)
    lam, lam2 = res1.lam, res2.lam
    coeff1, side1, side2 = _layered_sides(res1, res2)
    b = _outer_factor(side1, res1, outer)
    a1, l1, kind1, c1 = _conjugation_plan(side1, b, "left")
    a2, l2, kind2, c2 = _conjugation_plan(side2, b, "right")
    if a1 != a2:
        raise InvalidWord(
            f"the resolvents leave different matrices {_mexpr(a1)} and {_mexpr(a2)} next to {b.name}; "
            "the layered engine needs A B or B A with the same A on both sides"
        )
    conj = [f for f in (*c1, *c2) if isinstance(f, Deterministic)]
    sqrt_names = frozenset(
        [f.base.name for f in (*side1, *side2, *middle) if isinstance(f, Sqrt)] + [f.name for f in conj]
    )
    letters = Letters(sqrt_names)
    engine = _Engine(dim=res1.shape[0], letters=letters, middle=middle)
    out_left, in_left = _conjugation_words(kind1, c1, letters)
    in_right, out_right = _conjugation_words(kind2, c2, letters)
    for which, kind, c, side, on_left in (("left", kind1, c1, side1, l1), ("right", kind2, c2, side2, l2)):
        if kind:
            after = _mexpr((*a1, b) if on_left else (b, *a1))
            engine.steps.append(_conjugation_step(which, side, after, c, b))
    mid_word = in_left + tuple(x for f in middle for x in letters.of(f)) + in_right
    r1, r2 = sp.simplify(lam / coeff1), sp.simplify(lam2 / coeff1)
    if coeff1 != 1:
        engine.steps.append(
            Step(RIDGE_RESCALING, sp.Tuple(lam, lam2), sp.Tuple(r1, r2), f"divide by {coeff1}")
        )
    engine.outer_name = b.name
    side1c = (*a1, b) if l1 else (b, *a1)
    side2c = (*a2, b) if l2 else (b, *a2)
    body = engine.two(0, r1, r2, side1c, side2c, normal_word(mid_word))
    assert engine.outer is not None

    body = _sandwiched(body, out_left, out_right)
    outer_part = _sandwiched(engine.outer, out_left, out_right)
    chain_expr = _mexpr((*a1, b), coeff1)
    left, right0, fixed, chain_step = _layered_chains(chain_expr, lam, lam2)
    return LayeredTwoPoint(
        random=expr,
        lam=lam,
        lam2=lam2,
        fixed_points=fixed,
        derivation=(chain_step, *engine.steps),
        polynomial=tuple(body.terms.items()),
        outer=tuple(outer_part.terms.items()),
        resolvents=tuple(
            (s, k, y) for s, (k, y) in sorted(engine.resolvents.items(), key=lambda kv: kv[0].name)
        ),
        dim=res1.shape[0],
        prefactor=sp.simplify(c_out / (lam * lam2)),
        coeff=coeff1,
        left_chain=left,
        right_chain=right0,
        side1=side1,
        side2=side2,
        middle=middle,
        sqrt_names=sqrt_names,
    )


def _conjugation_step(
    which: str, side: tuple[MatrixExpr, ...], after: MatrixExpr, c: tuple[MatrixExpr, ...], b: FreeMatrix
) -> Step:
    """The similarity conjugation that brings the outer free factor ``b`` to an end of a resolvent."""
    return Step(
        SIMILARITY_CONJUGATION,
        _mexpr(side).to_sympy(),
        after.to_sympy(),
        f"{which} resolvent conjugated by {_mexpr(c)} so that {b.name} stands at an end",
    )


def _sandwiched(p: WordPolynomial, left: Word, right: Word) -> WordPolynomial:
    """``left p right``, each word in normal form (undoes a similarity conjugation)."""
    out = WordPolynomial()
    for w, c in p.terms.items():
        out = out + WordPolynomial.word(normal_word(left + w + right), c)
    return out


def _layered_sides(
    res1: Resolvent, res2: Resolvent
) -> tuple[sp.Expr, tuple[MatrixExpr, ...], tuple[MatrixExpr, ...]]:
    """The common scale and the factors of both resolvents, checked to hold the same free factors."""
    if res1.lam == res2.lam:
        raise InvalidArgument(
            f"both resolvents use the ridge {res1.lam}; use two symbols (lam, lam2) and evaluate at "
            "equal values"
        )
    coeff1, side1 = _sides(res1)
    coeff2, side2 = _sides(res2)
    if sp.simplify(coeff1 - coeff2) != 0:
        raise InvalidWord(f"the resolvents have different scales {coeff1} and {coeff2}; use the same")
    if sorted(f.name for f in side1 if isinstance(f, FreeMatrix)) != sorted(
        f.name for f in side2 if isinstance(f, FreeMatrix)
    ):
        raise InvalidWord("the two resolvents must contain the same free factors")
    if _free_count(side1) < 2:
        raise InvalidWord(f"{res1} has fewer than two free factors; use derive_two_point")
    return coeff1, side1, side2


def _outer_factor(side: tuple[MatrixExpr, ...], res: Resolvent, outer: str | None) -> FreeMatrix:
    """The free factor averaged first: ``outer`` by name, else the engine's default."""
    if outer is None:
        b = side[_outer_index(side)]
    else:
        named = [f for f in side if isinstance(f, FreeMatrix) and f.name == outer]
        if not named:
            raise InvalidArgument(
                f"outer={outer!r} is not a free factor of {res}; use one of "
                f"{[f.name for f in side if isinstance(f, FreeMatrix)]}"
            )
        b = named[0]
    assert isinstance(b, FreeMatrix)
    return b


def _conjugation_words(kind: str, c: tuple[MatrixExpr, ...], letters: Letters) -> tuple[Word, Word]:
    """The letters of ``c`` and of its inverse that a similarity conjugation puts around the
    resolvent: ``(c, c^-1)`` for ``L`` (read ``(outside, inside)`` on the left and ``(inside,
    outside)`` on the right), ``(c^-1, c)`` for ``R``, nothing without a conjugation."""
    if not kind:
        return (), ()
    plain = tuple(x for f in c for x in letters.of(f))
    inverse = _inverse_letters(c, letters)
    return (plain, inverse) if kind == "L" else (inverse, plain)


def _layered_chains(
    chain_expr: MatrixExpr, lam: sp.Expr, lam2: sp.Expr
) -> tuple[OnePoint, OnePoint, tuple[FixedPoint, ...], Step]:
    """The one-point chains at both ridges (``kappa_1..kappa_L`` and primed), their fixed
    points, and the step that introduces them (peeled in the engine's order ``A B``)."""
    left = derive_one_point(lam * Resolvent(chain_expr, lam), method="shapes")
    right0 = derive_one_point(lam2 * Resolvent(chain_expr, lam2), method="shapes")
    assert isinstance(left, OnePoint) and isinstance(right0, OnePoint)
    rename = {fp.symbol: _chain_symbol(int(fp.symbol.name.split("_")[1]), True) for fp in right0.fixed_points}
    right_fps = tuple(
        FixedPoint(
            rename[fp.symbol],
            sp.Eq(rename[fp.symbol], fp.rhs.xreplace(rename)),
            tuple(rename[d] for d in fp.depends_on),
        )
        for fp in right0.fixed_points
    )
    fixed = (*left.fixed_points, *right_fps)
    step = Step(
        LAYERED_CHAIN,
        sp.Tuple(lam, lam2),
        sp.Tuple(*[fp.symbol for fp in fixed]),
        f"the one-point chain of {chain_expr} at both ridges gives the intermediate ridges",
    )
    return left, right0, fixed, step


# ---------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------


def _evaluate(tp: LayeredTwoPoint, values: Mapping[Any, Any]) -> LayeredTwoPointValue:
    lam_v = lookup_value(values, str(tp.lam))
    lam2_v = lookup_value(values, str(tp.lam2))
    rest = {k: v for k, v in values.items() if str(getattr(k, "name", k)) not in (str(tp.lam), str(tp.lam2))}
    lv = tp.left_chain.evaluate({**rest, tp.left_chain.lam: lam_v})
    rv = tp.right_chain.evaluate({**rest, tp.right_chain.lam: lam2_v})
    kappas: dict[str, complex | float] = {str(s): v for s, v in lv.fixed_points}
    kappas.update({str(s) + "'": v for s, v in rv.fixed_points})
    scalars: dict[sp.Basic, Any] = {tp.lam: complex(lam_v), tp.lam2: complex(lam2_v)}
    for fp in tp.fixed_points:
        scalars[fp.symbol] = complex(kappas[str(fp.symbol)])
    for k, v in values.items():
        if np.ndim(v) == 0:
            scalars[sp.Symbol(k if isinstance(k, str) else k.name, positive=True)] = complex(v)
            scalars[sp.Symbol(k if isinstance(k, str) else k.name)] = complex(v)
    mats: dict[sp.Symbol, np.ndarray] = {}
    res = {r: (k, y) for r, k, y in tp.resolvents}
    names: set[str] = set()
    for w, _ in tp.polynomial:
        names.update(x.name for x in w)

    def matrix(x: sp.Symbol) -> np.ndarray:
        if x in mats:
            return mats[x]
        if x in res:
            k, y = res[x]
            ym = _word_matrix(y)
            out = np.linalg.inv(ym + scalars[k] * np.eye(ym.shape[0]))
        else:
            fam = letter_family(x)
            base = fam[0] if fam is not None else x.name
            m = np.asarray(lookup_value(values, base))
            m = np.diag(m) if m.ndim == 1 else m
            if fam is not None:
                w_, v_ = np.linalg.eigh((m + m.T) / 2)
                power = np.sqrt(np.clip(w_, 0, None)) if fam[1] > 0 else 1 / np.sqrt(w_)
                out = (v_ * power) @ v_.T
            else:
                out = m
        mats[x] = out.astype(complex)
        return mats[x]

    def _word_matrix(w: Word) -> np.ndarray:
        out = matrix(w[0])
        for x in w[1:]:
            out = out @ matrix(x)
        return out

    n = _word_matrix(tp.resolvents[0][2]).shape[0]

    def coefficient(c: sp.Expr) -> complex:
        rep: dict[sp.Basic, Any] = {}
        for t in c.atoms(tr):
            rep[t] = sp.sympify(complex(np.trace(_word_matrix(word_letters(t.args[0]))) / n))
        rep.update({s: sp.sympify(v) for s, v in scalars.items()})
        value = sp.sympify(c).xreplace(rep)
        try:
            return complex(value)
        except TypeError:
            raise InvalidArgument(
                f"values lacks {sorted(map(str, value.free_symbols))}; pass numbers"
            ) from None

    def total(poly: Sequence[tuple[Word, sp.Expr]]) -> np.ndarray:
        out = np.zeros((n, n), dtype=complex)
        for w, c in poly:
            out = out + coefficient(c) * (_word_matrix(w) if w else np.eye(n))
        return out

    pre = coefficient(tp.prefactor)
    full = pre * total(tp.polynomial)
    outer = pre * total(tp.outer)
    return LayeredTwoPointValue(kappas, full, full - outer)


def derive_pair(expr: Any) -> LayeredTwoPoint | TwoPoint:
    """The two-point equivalent of ``c G1 M G2`` with ``M`` deterministic: layered when the
    resolvents hold several free factors, else the single-layer engine."""
    if layered_free_count(expr) > 1:
        return derive_layered_two_point(expr)
    return derive_single_layer(expr)
