r"""Two-point deterministic equivalents, derived by named rules (MATH.md 3.1-3.3).

:func:`derive_two_point` takes ``c * resolvent(X1, lam) @ M @ resolvent(X2, lam2)`` where
``X1`` and ``X2`` are ``A^{l} B A^{1-l}`` for one deterministic matrix ``A`` (square roots
allowed), one free rotation-invariant factor ``B`` (a Gram pair ``X.T @ X / P`` or a
:class:`~detequiv.derivations.expressions.FreeMatrix` with any law) shared by both
resolvents, and ``M`` a product of deterministic matrices (``I`` if absent). The rules:

* ``one_point_renormalization`` (each side, :func:`~detequiv.derivations.onepoint.derive`):
  :math:`\lambda(\lambda+X_i)^{-1}\simeq\kappa(\kappa+A)^{-1}`, giving the fixed points of
  :math:`\kappa=\kappa(\lambda)` and :math:`\kappa'=\kappa(\lambda')`;
* :func:`conjugation_exponent`:
  :math:`(\lambda+A^lBA^{1-l})^{-1}=A^{l-1/2}(\lambda+A^{1/2}BA^{1/2})^{-1}A^{1/2-l}`
  moves every form to the symmetric one; the A-power that ``B`` separates from ``M``,
  :math:`a=(1-l_1)+l_2`, stays inside the trace of the correction, the rest
  :math:`2-a` moves outside it (forms III, I, II: :math:`a=1,0,2`);
* :func:`operator_valued_subordination` (MATH.md 3.2): with :math:`R=(\kappa+A)^{-1}`,

  .. math:: \lambda\lambda'G_1MG_2\simeq\kappa\kappa'RMR'+c(\lambda,\lambda')
            \frac{\operatorname{tr}(MA^aRR')}{\operatorname{tr}(ARR')}A^{2-a}RR',\qquad
            c=\frac{\lambda'\kappa-\lambda\kappa'}{\lambda'-\lambda},

  :math:`\operatorname{tr}(ARR')=(\mathrm{df}_1(\kappa)-\mathrm{df}_2(\kappa,\kappa'))/\kappa'`;
* :func:`linear_divided_difference`: when :math:`\lambda=\kappa(\alpha-\beta\,\mathrm{df}_1)`
  (white Wishart: :math:`\alpha=1,\beta=q`),
  :math:`c/\operatorname{tr}(ARR')=\kappa\kappa'\beta/(\alpha-\beta\,\mathrm{df}_2)` (MATH.md 3.2,
  "Wishart identities").

:meth:`TwoPoint.check_series` expands the result in :math:`x=1/\lambda`, :math:`y=1/\lambda'`
and compares every coefficient with the planar diagram sum of
:math:`N X_1^a M X_2^b` (:func:`~detequiv.derivations.mixed.mixed_moment`), exactly.

>>> import sympy as sp
>>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
>>> lam, lam2 = sp.symbols("lam lam2", positive=True); D, P = sp.symbols("D P", positive=True)
>>> S = Deterministic("Sigma", D); M = Deterministic("M", D); X = Gaussian("X", (P, D))
>>> Sh = S.sqrt() @ X.T @ X @ S.sqrt() / P
>>> tp = derive_single_layer(lam * lam2 * resolvent(Sh, lam) @ M @ resolvent(Sh, lam2))
>>> tp.form, tp.exponent
('III', 1)
>>> tp.scale
D*kappa*kappa'/(P*(-D*df2(Sigma, kappa, kappa')/P + 1))
>>> tp.check_series(3).passed
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import sympy as sp

from ..errors import InvalidArgument, InvalidWord
from .algebra import gaussian_gram_to_wishart
from .derivation import Derivation, FixedPoint, Step
from .expressions import Deterministic, FreeMatrix, Identity, MatrixExpr, Product, Resolvent, Sqrt
from .numeric import as_matrix, lookup_value, matrix_power, plain_number, scalar_values
from .onepoint import OnePoint
from .quantities import df1, df2, divided_difference
from .results import Equivalence
from .rules import (
    CONJUGATION_EXPONENT,
    LINEAR_DIVIDED_DIFFERENCE,
    ONE_POINT_RENORMALIZATION,
    OPERATOR_VALUED_SUBORDINATION,
)
from .strategies import derive_one_point
from .twopoint_series import TwoPointSeriesCheck, check_series

__all__ = [
    "TwoPoint",
    "TwoPointValue",
    "TwoPointSeriesCheck",
    "derive_single_layer",
    "two_point_parts",
    "conjugation_exponent",
    "operator_valued_subordination",
    "linear_divided_difference",
]


_REF_TWO_POINT = (
    "MATH.md 3.1-3.2 (operator-valued M_2(C) subordination of the upper-triangular "
    "2x2 block resolvent); Mingo-Speicher, Free Probability and Random Matrices (2017), ch. 9"
)


# ---------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TwoPointValue:
    """Numbers from :meth:`TwoPoint.evaluate`: the ridges, the scalar and the matrix."""

    kappa: complex | float
    kappa2: complex | float
    scale: complex | float
    matrix: np.ndarray = field(repr=False)
    naive: np.ndarray = field(repr=False)

    def trace(self, test: Any = None) -> complex | float:
        """``tr(test @ equivalent)`` (``tr = Tr / n``)."""
        n = self.matrix.shape[0]
        value = np.trace(self.matrix if test is None else np.asarray(test) @ self.matrix) / n
        return plain_number(value)

    def naive_trace(self, test: Any = None) -> complex | float:
        """``tr(test @ kappa kappa' R M R')``: the product of one-point equivalents, without correction."""
        n = self.naive.shape[0]
        return plain_number(np.trace(self.naive if test is None else np.asarray(test) @ self.naive) / n)


# ---------------------------------------------------------------------------
# the rules
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Side:
    coeff: sp.Expr
    base: Deterministic
    left: sp.Rational
    right: sp.Rational
    free: FreeMatrix


def _power_of(factors: Sequence[MatrixExpr], what: str) -> tuple[Deterministic | None, sp.Rational]:
    base: Deterministic | None = None
    e = sp.S.Zero
    for f in factors:
        if isinstance(f, Sqrt):
            b, de = f.base, sp.Rational(1, 2)
        elif isinstance(f, Deterministic):
            b, de = f, sp.S.One
        else:
            raise InvalidWord(
                f"{f} in the {what} of the resolvent is not a deterministic matrix; the two-point "
                "engine needs A^l B A^(1-l) with one free factor B (layered chains are not supported yet)"
            )
        if base is not None and b != base:
            raise InvalidWord(
                f"the resolvent mixes the deterministic matrices {base.name} and {b.name}; write it "
                "as A^l B A^(1-l) with one matrix A"
            )
        base, e = b, e + de
    return base, e


def _side(res: Resolvent, which: str) -> _Side:
    arg = res.arg
    coeff, factors = (arg.coeff, arg.factors) if isinstance(arg, Product) else (sp.S.One, (arg,))
    factors = tuple(f for f in factors if not isinstance(f, Identity))
    coeff, factors, _ = gaussian_gram_to_wishart(coeff, factors)
    free = [i for i, f in enumerate(factors) if isinstance(f, FreeMatrix)]
    if len(free) != 1:
        raise InvalidWord(
            f"the {which} resolvent {res} has {len(free)} free factors; the two-point engine needs "
            "exactly one (A^l B A^(1-l)); layered chains are not supported yet"
        )
    i = free[0]
    b = factors[i]
    assert isinstance(b, FreeMatrix)
    lb, le = _power_of(factors[:i], f"{which} left factor")
    rb, re_ = _power_of(factors[i + 1 :], f"{which} right factor")
    base = lb or rb
    if base is None or (lb is not None and rb is not None and lb != rb):
        raise InvalidWord(
            f"the {which} resolvent {res} has no single deterministic matrix A next to {b.name}"
        )
    if le + re_ != 1:
        raise InvalidWord(
            f"the {which} resolvent {res} is A^{le} {b.name} A^{re_}; the exponents must add up to 1 "
            "(A B, B A or A^(1/2) B A^(1/2))"
        )
    return _Side(sp.sympify(coeff), base, sp.Rational(le), sp.Rational(re_), b)


def conjugation_exponent(left1: sp.Rational, left2: sp.Rational) -> sp.Rational:
    r"""The power ``a`` of ``A`` kept inside the correction's trace.

    :math:`(\lambda+A^{l}BA^{1-l})^{-1}=A^{l-1/2}(\lambda+A^{1/2}BA^{1/2})^{-1}A^{1/2-l}`
    (exact algebra) turns :math:`G_1MG_2` into the symmetric form with
    :math:`\tilde M=A^{1/2-l_1}MA^{l_2-1/2}`; the symmetric correction
    :math:`\operatorname{tr}(\tilde MARR')\,A^{l_1-1/2}ARR'A^{1/2-l_2}` then has
    :math:`a=1-l_1+l_2`: the A-power standing between ``B`` and ``M`` on both sides.

    >>> from sympy import Rational as Q
    >>> [conjugation_exponent(*ls) for ls in ((Q(1, 2), Q(1, 2)), (1, 0), (0, 1))]
    [1, 0, 2]
    """
    return sp.Rational(1) - sp.Rational(left1) + sp.Rational(left2)


def operator_valued_subordination(
    lam: sp.Expr, lam2: sp.Expr, kappa: sp.Symbol, kappa2: sp.Symbol, a_matrix: sp.Expr
) -> sp.Expr:
    r"""The scalar :math:`c(\lambda,\lambda')/\operatorname{tr}(ARR')` of the correction (MATH.md 3.2).

    ``lam``, ``lam2`` are the (rescaled) ridges of the two resolvents;
    :math:`\operatorname{tr}(ARR')=(\mathrm{df}_1(A,\kappa)-\mathrm{df}_2(A,\kappa,\kappa'))/\kappa'`
    (from :math:`A^2RR'=AR-\kappa'ARR'`).
    """
    c = divided_difference(lam, lam2, kappa, kappa2)
    return c * kappa2 / (df1(a_matrix, kappa) - df2(a_matrix, kappa, kappa2))


def linear_divided_difference(
    scale: sp.Expr, fixed_point: sp.Eq, ridge: sp.Expr, lam2: sp.Expr, kappa2: sp.Symbol
) -> tuple[sp.Expr, Step] | None:
    r"""Rewrite :math:`c/\operatorname{tr}(ARR')` when :math:`\lambda=\kappa(\alpha-\beta\,\mathrm{df}_1)`.

    Then :math:`\lambda'\kappa-\lambda\kappa'=\kappa\kappa'\beta(\mathrm{df}_1-\mathrm{df}_1')`,
    :math:`\mathrm{df}_1-\mathrm{df}_1'=(\kappa'-\kappa)\operatorname{tr}(ARR')` and
    :math:`\lambda'-\lambda=(\kappa'-\kappa)(\alpha-\beta\,\mathrm{df}_2)`, so
    :math:`c/\operatorname{tr}(ARR')=\kappa\kappa'\beta/(\alpha-\beta\,\mathrm{df}_2)`. Returns
    ``None`` when the fixed point is not linear in ``df1`` (the general form stays).
    """
    kappa = fixed_point.lhs
    atoms = sorted(fixed_point.rhs.atoms(df1), key=str)
    if len(atoms) != 1 or atoms[0].args[1] != kappa:
        return None
    d = sp.Dummy("d")
    g = sp.simplify(ridge * kappa / fixed_point.rhs.xreplace({atoms[0]: d}) / kappa)
    if g.free_symbols & {kappa, ridge}:
        return None
    try:
        poly = sp.Poly(sp.expand(g), d)
    except sp.PolynomialError:
        return None
    if poly.degree() > 1 or any(s.is_commutative is False for s in g.free_symbols):
        return None
    alpha = poly.coeff_monomial(1)
    beta = -poly.coeff_monomial(d)
    if beta == 0:
        return None
    a_matrix = atoms[0].args[0]
    new = kappa * kappa2 * beta / (alpha - beta * df2(a_matrix, kappa, kappa2))
    step = Step(
        LINEAR_DIVIDED_DIFFERENCE,
        scale,
        new,
        f"{ridge} = kappa ({alpha} - ({beta}) df1(kappa)) is linear in df1",
    )
    return new, step


# ---------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TwoPoint(Equivalence):
    r"""A two-point equivalent ``random ~ deterministic`` (see the module doc).

    The deterministic side is built from the fields (so it cannot disagree with them):
    ``prefactor * (kappa kappa2 R M R2 + scale * tr(M A^a R R2) A^(2-a) R R2)`` with
    :math:`R=(\kappa+A)^{-1}`, :math:`R_2=(\kappa_2+A)^{-1}`.
    """

    random: MatrixExpr
    lam: sp.Expr
    lam2: sp.Expr
    kappa: sp.Symbol
    kappa2: sp.Symbol
    left: OnePoint
    right: OnePoint
    fixed_points: tuple[FixedPoint, ...]
    derivation: tuple[Step, ...]
    a_matrix: Deterministic
    middle: tuple[MatrixExpr, ...]
    exponent: sp.Rational
    left_powers: tuple[sp.Rational, sp.Rational]
    scale: sp.Expr
    prefactor: sp.Expr
    coeff: sp.Expr
    free: FreeMatrix

    def __post_init__(self) -> None:
        object.__setattr__(self, "derivation", Derivation(self.derivation))

    @property
    def form(self) -> str:
        """``'III'``, ``'I'``, ``'II'`` (MATH.md 3.1) or ``'other'``."""
        half, one, zero = sp.Rational(1, 2), sp.S.One, sp.S.Zero
        return {(half, half): "III", (one, zero): "I", (zero, one): "II"}.get(self.left_powers, "other")

    def _mats(self) -> tuple[sp.Expr, sp.Expr, sp.Expr, sp.Expr]:
        n = self.a_matrix.dim
        a = self.a_matrix.to_sympy()
        r1 = (a + self.kappa * sp.Identity(n)).inverse()
        r2 = (a + self.kappa2 * sp.Identity(n)).inverse()
        mids = [f.to_sympy() for f in self.middle]
        m = sp.Identity(n) if not mids else (mids[0] if len(mids) == 1 else sp.MatMul(*mids))
        return a, r1, r2, m

    @property
    def deterministic(self) -> sp.Expr:
        a, r1, r2, m = self._mats()
        n = self.a_matrix.dim
        inner = sp.MatMul(m, *_apow(a, self.exponent), r1, r2)
        outer = sp.MatMul(*_apow(a, 2 - self.exponent), r1, r2)
        body = sp.MatAdd(
            sp.MatMul(self.kappa * self.kappa2, r1, m, r2),
            sp.MatMul(self.scale * sp.Trace(inner) / n, outer),
        )
        return body if self.prefactor == 1 else sp.MatMul(self.prefactor, body)

    def with_scale(self, scale: sp.Expr) -> TwoPoint:
        """A copy with another correction scalar (negative controls)."""
        return replace(self, scale=sp.sympify(scale))

    def with_exponent(self, exponent: Any) -> TwoPoint:
        """A copy with another power of ``A`` inside the trace (negative controls)."""
        return replace(self, exponent=sp.Rational(exponent))

    # -- witnesses ---------------------------------------------------------
    def check_series(self, order: int = 6) -> TwoPointSeriesCheck:
        """Exact double series in ``1/lam``, ``1/lam2`` against the planar diagram sums.

        The coefficient of :math:`\\lambda^{-a}\\lambda'^{-b}` of ``tr(N .)`` (``N`` a test
        letter) must equal ``prefactor (-c)^(a+b) lim tr(N X1^a M X2^b)`` for every
        ``a + b <= order`` (see :mod:`detequiv.derivations.twopoint_series`).
        """
        return check_series(self, order)

    def evaluate(self, values: Mapping[Any, Any]) -> TwoPointValue:
        """Numbers: ``values`` maps ``lam``, ``lam2``, dimensions and law parameters to numbers,
        ``A`` and the matrices of ``M`` (objects or names) to matrices or spectra.

        :math:`\\kappa,\\kappa'` come from the one-point engine (physical branch, real or
        complex ridges); at :math:`\\lambda=\\lambda'` the divided difference is replaced by
        its limit :math:`\\kappa-\\lambda\\,d\\kappa/d\\lambda` (central difference).
        """
        return _evaluate(self, values)


# ---------------------------------------------------------------------------
# derive
# ---------------------------------------------------------------------------


def two_point_parts(expr: Any) -> tuple[sp.Expr, Resolvent, tuple[MatrixExpr, ...], Resolvent]:
    if isinstance(expr, Product) and len(expr.factors) >= 2:
        first, *mid, last = expr.factors
        if isinstance(first, Resolvent) and isinstance(last, Resolvent):
            for f in mid:
                if not isinstance(f, (Deterministic, Sqrt, Identity)):
                    raise InvalidWord(
                        f"{f} between the resolvents is not deterministic; a random matrix there "
                        "is removed first with X (lam + X)^-1 = I - lam (lam + X)^-1 (MATH.md 3.4)"
                    )
            return expr.coeff, first, tuple(f for f in mid if not isinstance(f, Identity)), last
    raise InvalidArgument(
        f"derive_two_point needs c * resolvent(X1, lam) @ M @ resolvent(X2, lam2), got {expr}"
    )


def _matching_sides(res1: Resolvent, res2: Resolvent) -> tuple[_Side, _Side]:
    """The two resolvents' ``A^l B A^(1-l)`` forms, checked to share ``B``, ``A`` and the scale."""
    if res1.lam == res2.lam:
        raise InvalidArgument(
            f"both resolvents use the ridge {res1.lam}; use two symbols (lam, lam2) and evaluate at "
            "equal values"
        )
    s1, s2 = _side(res1, "left"), _side(res2, "right")
    if s1.free != s2.free:
        raise InvalidWord(
            f"the resolvents use different free factors {s1.free.name} and {s2.free.name}; the two-point "
            "engine needs the same B on both sides"
        )
    if s1.base != s2.base or sp.simplify(s1.coeff - s2.coeff) != 0:
        raise InvalidWord(
            f"the resolvents differ in their deterministic matrix or scale ({s1.base.name}, {s1.coeff}) vs "
            f"({s2.base.name}, {s2.coeff}); the two-point engine needs the same A and scale"
        )
    return s1, s2


def _renormalized_sides(
    res1: Resolvent, res2: Resolvent
) -> tuple[tuple[OnePoint, sp.Eq], tuple[OnePoint, sp.Eq], list[Step]]:
    """Each resolvent's one-point equivalent, its ridge renamed ``kappa`` / ``kappa'``, and the steps."""
    out = []
    steps: list[Step] = []
    for side, res, kappa in (("left", res1, sp.Symbol("kappa")), ("right", res2, sp.Symbol("kappa'"))):
        one = derive_one_point(res.lam * Resolvent(res.arg, res.lam), method="shapes")
        if not isinstance(one, OnePoint) or len(one.fixed_points) != 1:  # pragma: no cover - _side checks it
            raise InvalidWord("layered chains are not supported by the two-point engine yet")
        fp = one.fixed_points[0]
        eq = sp.Eq(kappa, fp.rhs.xreplace({fp.symbol: kappa}))
        steps += [replace(st, note=f"{side} resolvent: {st.note}") for st in one.derivation]
        steps.append(
            Step(
                ONE_POINT_RENORMALIZATION,
                one.random.to_sympy(),
                one.deterministic.xreplace({one.ridge: kappa}),
                f"{side} resolvent",
                eq,
            )
        )
        out.append((one, eq))
    return out[0], out[1], steps


def derive_single_layer(expr: Any) -> TwoPoint:
    """The two-point equivalent of ``c * resolvent(X1, lam) @ M @ resolvent(X2, lam2)`` with one
    free factor ``B`` shared by both resolvents and ``M`` deterministic (the entry point for
    any two-point function is :func:`~detequiv.derivations.sandwich.derive_two_point`).

    Raises
    ------
    InvalidArgument
        If ``expr`` is not of that shape, or both resolvents use the same ridge symbol.
    InvalidWord
        If a resolvent is not ``A^l B A^(1-l)`` with one free factor ``B`` shared by both,
        or something random stands between the resolvents.
    """
    c_out, res1, middle, res2 = two_point_parts(expr)
    lam, lam2 = res1.lam, res2.lam
    s1, s2 = _matching_sides(res1, res2)
    (left, eq1), (right, eq2), steps = _renormalized_sides(res1, res2)
    kappa, kappa2 = eq1.lhs, eq2.lhs
    a = conjugation_exponent(s1.left, s2.left)
    a_sym = s1.base.to_sympy()
    steps.append(
        Step(
            CONJUGATION_EXPONENT,
            sp.Tuple(s1.left, s2.left),
            a,
            f"A^{1 - s1.left} stands between {s1.free.name} and M on the left, A^{s2.left} on the right: "
            f"a = {a} stays inside the trace, A^{2 - a} moves outside",
        )
    )
    ridge1 = sp.simplify(lam / s1.coeff)
    ridge2 = sp.simplify(lam2 / s2.coeff)
    scale = operator_valued_subordination(ridge1, ridge2, kappa, kappa2, a_sym)
    steps.append(
        Step(
            OPERATOR_VALUED_SUBORDINATION,
            expr.to_sympy(),
            scale,
            f"{s1.free.name} ~ {s1.free.law} is rotation invariant and free from A and M; the correction "
            "scalar c(lam, lam')/tr(A R R')",
        )
    )
    linear = linear_divided_difference(scale, eq1, ridge1, ridge2, kappa2)
    if linear is not None:
        scale, step = linear
        steps.append(step)
    prefactor = sp.simplify(c_out / (lam * lam2))
    return TwoPoint(
        random=expr,
        lam=lam,
        lam2=lam2,
        kappa=kappa,
        kappa2=kappa2,
        left=left,
        right=right,
        fixed_points=(FixedPoint(kappa, eq1), FixedPoint(kappa2, eq2)),
        derivation=tuple(steps),
        a_matrix=s1.base,
        middle=middle,
        exponent=a,
        left_powers=(s1.left, s2.left),
        scale=scale,
        prefactor=prefactor,
        coeff=s1.coeff,
        free=s1.free,
    )


# ---------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------


def _apow(a: sp.Expr, e: sp.Rational) -> tuple[sp.Expr, ...]:
    if e == 0:
        return ()
    return (a,) if e == 1 else (sp.MatPow(a, e),)


def _evaluate(tp: TwoPoint, values: Mapping[Any, Any]) -> TwoPointValue:
    lam_v = complex(lookup_value(values, str(tp.lam)))
    lam2_v = complex(lookup_value(values, str(tp.lam2)))
    rest = {k: v for k, v in values.items() if str(getattr(k, "name", k)) not in (str(tp.lam), str(tp.lam2))}

    def kappa_at(one: OnePoint, lam: complex) -> complex:
        return complex(one.evaluate({**rest, one.lam: plain_number(lam)}).ridge)

    k1 = kappa_at(tp.left, lam_v)
    k2 = kappa_at(tp.right, lam2_v)
    a = as_matrix(lookup_value(values, tp.a_matrix.name)).astype(complex)
    n = a.shape[0]
    eig = np.linalg.eigvalsh(a.real) if np.allclose(a, a.real) else np.linalg.eigvals(a)
    m = np.eye(n, dtype=complex)
    for f in tp.middle:
        if isinstance(f, Sqrt):
            m = m @ matrix_power(as_matrix(lookup_value(values, f.base.name)).real, sp.Rational(1, 2))
        else:
            assert isinstance(f, Deterministic)
            m = m @ as_matrix(lookup_value(values, f.name))
    rep: dict[sp.Basic, Any] = {tp.kappa: k1, tp.kappa2: k2, tp.lam: lam_v, tp.lam2: lam2_v}
    for atom in tp.scale.atoms(df1):
        k = rep[atom.args[1]]
        rep[atom] = np.mean(eig / (eig + k))
    for atom in tp.scale.atoms(df2):
        ka, kb = rep[atom.args[1]], rep[atom.args[2]]
        rep[atom] = np.mean(eig**2 / ((eig + ka) * (eig + kb)))
    for atom in tp.scale.atoms(divided_difference):
        sub = scalar_values(rest, atom.args[0], atom.args[1])
        symb = {key: sp.sympify(val) for key, val in rep.items()}
        l1 = complex(sp.sympify(atom.args[0]).xreplace(symb).xreplace(sub))
        l2 = complex(sp.sympify(atom.args[1]).xreplace(symb).xreplace(sub))
        if abs(l2 - l1) > 1e-7 * max(abs(l1), 1e-300):
            rep[atom] = (l2 * k1 - l1 * k2) / (l2 - l1)
        else:
            h = 1e-5 * abs(lam_v)
            dk = (kappa_at(tp.left, lam_v + h) - kappa_at(tp.left, lam_v - h)) / (2 * h)
            rep[atom] = k1 - lam_v * dk
    num = {s: sp.sympify(v) for s, v in rep.items()}
    names = scalar_values(rest, tp.scale, tp.prefactor)
    try:
        scale = complex(tp.scale.xreplace(num).xreplace(names))
        pre = complex(tp.prefactor.xreplace(num).xreplace(names))
    except TypeError:
        missing = sorted(str(s) for s in (tp.scale.xreplace(num).xreplace(names)).free_symbols)
        raise InvalidArgument(f"values lacks {missing}; pass numbers for them") from None
    eye = np.eye(n)
    r1 = np.linalg.inv(a + k1 * eye)
    r2 = np.linalg.inv(a + k2 * eye)
    naive = pre * k1 * k2 * r1 @ m @ r2
    inner = np.trace(m @ matrix_power(a.real, tp.exponent) @ r1 @ r2) / n
    corr = pre * scale * inner * matrix_power(a.real, 2 - tp.exponent) @ r1 @ r2
    return TwoPointValue(plain_number(k1), plain_number(k2), plain_number(scale), naive + corr, naive)
