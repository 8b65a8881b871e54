r"""Truncated R- and S-transforms of one variable, exact (MATH.md 1.5).

* :math:`R(w)=\sum_{n\ge1}\kappa_nw^{n-1}`, so ``order`` cumulants give
  :math:`R` through :math:`w^{order-1}`;
* :math:`\psi(z)=\sum_{n\ge1}m_nz^n`, :math:`\chi=\psi^{\langle-1\rangle}` (series
  reversion, needs :math:`m_1\ne0`) and :math:`S(t)=\frac{1+t}{t}\chi(t)`. The
  coefficient of :math:`t^j` in :math:`S` depends on :math:`m_1,\dots,m_{j+1}` only,
  so ``order`` moments give :math:`S` exactly through :math:`t^{order-1}`.

>>> import sympy as sp
>>> from detequiv.derivations.transforms import r_series, s_series, s_from_cumulants
>>> q, w, t = sp.symbols("q w t")
>>> r_series([1, q, q**2], 3, w)
q**2*w**2 + q*w + 1
>>> s_from_cumulants(lambda n: q**(n - 1), 4, t)       # 1/(1 + q t)
-q**3*t**3 + q**2*t**2 - q*t + 1
>>> s_series([1, 3, 12, 55], 4, t)                   # (1 + t)**-2: Fuss-Catalan
-4*t**3 + 3*t**2 - 2*t + 1

The way back, from a closed-form :math:`S` to the moments (series reversion of
:math:`\chi(t)=S(t)\,t/(1+t)`), is :func:`moments_from_s`:

>>> from detequiv.derivations.transforms import moments_from_s
>>> moments_from_s((1 + t) ** -2, t, 5)
(1, 3, 12, 55, 273)
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import Any

import sympy as sp
from sympy.core.function import AppliedUndef
from sympy.polys.constructor import construct_domain
from sympy.polys.domains import QQ
from sympy.polys.rings import PolyRing

from ..errors import InvalidArgument, UndefinedTransform
from .cumulants import (
    ValueSource,
    check_order,
    cumulant_symbols,
    cumulants_from_moments,
    exact_value,
    exact_values,
    is_generator,
    moment_symbols,
    moments_from_cumulants,
    polys_to_exprs,
)

__all__ = [
    "r_series",
    "s_series",
    "s_from_cumulants",
    "s_taylor",
    "moments_from_s",
    "cumulants_from_s",
    "check_s_transform",
]


def _variable(value: Any, default: str, what: str) -> sp.Expr:
    if value is None:
        return sp.Symbol(default)
    return exact_value(value, what)


def r_series(cumulants: ValueSource, order: int, w: Any = None) -> sp.Expr:
    r"""The R-transform :math:`\sum_{n=1}^{order}\kappa_nw^{n-1}`, expanded.

    Parameters
    ----------
    cumulants : None, sequence or callable
        :math:`\kappa_1,\kappa_2,\dots` as for
        :func:`~detequiv.derivations.cumulants.moments_from_cumulants` (``None``: the
        symbols ``kappa_n``).
    order : int
        Number of cumulants used; the result is exact through :math:`w^{order-1}`.
    w : sympy expression, optional
        The variable (default ``Symbol("w")``).

    Examples
    --------
    >>> r_series(None, 3)
    kappa_1 + kappa_2*w + kappa_3*w**2
    """
    n = check_order(order)
    kappas = cumulant_symbols(n) if cumulants is None else exact_values(cumulants, n, "cumulants")
    var = _variable(w, "w", "w")
    return sp.expand(sp.Add(*[k * var ** (i - 1) for i, k in enumerate(kappas, start=1)]))


def _reversion(m: list[Any], inv: Any, zero: Any) -> list[Any]:
    r"""Coefficients ``[0, c_1, ..., c_N]`` of :math:`\chi=\psi^{\langle-1\rangle}`.

    ``m = [0, m_1, ..., m_N]``, ``inv`` the inverse of :math:`m_1` (in any ring where
    it is meaningful). From :math:`\sum_jm_j\chi^j=t`: :math:`c_1=1/m_1` and
    :math:`c_k=-\frac1{m_1}\sum_{j=2}^km_j[t^k]\chi^j`, with ``Q[j][k]`` the
    coefficient :math:`[t^k]\chi^j` extended one column per new coefficient:
    O(N^3) ring operations, no division besides the one by :math:`m_1`.
    """
    N = len(m) - 1
    c = [zero] * (N + 1)
    c[1] = inv
    Q = [[zero] * (N + 1) for _ in range(N + 1)]
    Q[1][1] = inv
    for j in range(2, N + 1):
        Q[j][j] = Q[j - 1][j - 1] * inv
    for k in range(2, N + 1):
        total = zero
        for j in range(2, k + 1):
            if j < k:  # Q[j][k] for k > j; Q[j][j] = c_1**j is already known
                prev = Q[j - 1]
                acc = zero
                for i in range(1, k - j + 2):
                    if c[i] and prev[k - i]:
                        acc = acc + c[i] * prev[k - i]
                Q[j][k] = acc
            if m[j] and Q[j][k]:
                total = total + m[j] * Q[j][k]
        c[k] = -(inv * total)
        Q[1][k] = c[k]
    return c


def _s_coefficients(
    values: tuple[sp.Expr, ...],
) -> tuple[list[dict[Any, Any]], tuple[sp.Expr, ...]] | list[sp.Expr]:
    """S-series coefficients ``s_0..s_{N-1}``, as polynomial dicts with their generators
    (exact over QQ) or, for other domains, as expressions."""
    N = len(values)
    domain, elems = construct_domain(list(values))
    if domain.is_ZZ or domain.is_QQ:
        m = [Fraction(0)] + [Fraction(int(e.numerator), int(e.denominator)) for e in elems]
        c = _reversion(m, 1 / m[1], Fraction(0))
        s = [c[j + 1] + c[j] for j in range(N)]
        return [{(): x} for x in s], ()
    if domain.is_PolynomialRing and (domain.domain.is_ZZ or domain.domain.is_QQ):
        gens = tuple(domain.symbols)
        first = elems[0]
        if first.is_ground:
            ring = PolyRing(gens, QQ, domain.ring.order)
            m = [ring.zero] + [ring.from_dict(dict(e.items())) for e in elems]
            inv = ring.ground_new(QQ(1) / QQ.convert(first.LC))
            labels = gens
        else:
            # 1/m_1 is not a polynomial: carry it as a new generator u (m_1 itself
            # never multiplies u in the recursion, so no relation m_1 u = 1 is needed)
            u = sp.Dummy("u")
            ring = PolyRing((*gens, u), QQ, domain.ring.order)
            m = [ring.zero] + [ring.from_dict({mon + (0,): c for mon, c in e.items()}) for e in elems]
            inv = ring.gens[-1]
            labels = (*gens, 1 / values[0])
        c = _reversion(m, inv, ring.zero)
        s = [c[j + 1] + c[j] for j in range(N)]
        return [dict(x.items()) for x in s], labels
    # fraction fields, algebraic numbers, general expressions: divide in the domain
    m = [domain.zero, *elems]
    c = _reversion(m, domain.one / m[1], domain.zero)
    return [domain.to_sympy(c[j + 1] + c[j]) for j in range(N)]


def s_series(moments: ValueSource, order: int, t: Any = None) -> sp.Expr:
    r"""The S-transform through :math:`t^{order-1}`, from the first ``order`` moments.

    :math:`S(t)=\frac{1+t}{t}\chi(t)` with :math:`\chi` the compositional inverse of
    :math:`\psi(z)=\sum_{n\ge1}m_nz^n`. The coefficient of :math:`t^j` depends on
    :math:`m_1,\dots,m_{j+1}` only; the result is the exact polynomial
    :math:`\sum_{j=0}^{order-1}s_jt^j` (expanded), i.e. :math:`S(t)` up to
    :math:`O(t^{order})`.

    Parameters
    ----------
    moments : None, sequence or callable
        :math:`m_1,m_2,\dots` (``None``: the symbols ``m_n``); :math:`m_1\ne0`.
    order : int
        Number of moments used (at least 1).
    t : sympy expression, optional
        The variable (default ``Symbol("t")``).

    Raises
    ------
    UndefinedTransform
        If :math:`m_1=0` (e.g. a centred law: :math:`\chi` does not exist).

    >>> s_series(None, 2)
    t/m_1 + 1/m_1 - m_2*t/m_1**3
    >>> s_series([0, 1], 2)
    Traceback (most recent call last):
    ...
    detequiv.errors.UndefinedTransform: the S-transform needs m1 != 0, got m1 = 0 (a centred law, e.g. the semicircle, has no S-transform)
    """  # noqa: E501
    n = check_order(order)
    values = moment_symbols(n) if moments is None else exact_values(moments, n, "moments")
    if values[0].is_zero:
        raise UndefinedTransform(
            f"the S-transform needs m1 != 0, got m1 = {values[0]} (a centred law, e.g. "
            "the semicircle, has no S-transform)"
        )
    var = _variable(t, "t", "t")
    coeffs = _s_coefficients(values)
    if isinstance(coeffs, list):
        return sp.Add(*[coeff * var**j for j, coeff in enumerate(coeffs)])
    dicts, labels = coeffs
    if is_generator(var) and var not in labels:
        joined = {mon + (j,): c for j, d in enumerate(dicts) for mon, c in d.items() if c}
        return polys_to_exprs([joined], (*labels, var))[0]
    parts = polys_to_exprs(dicts, labels)
    return sp.expand(sp.Add(*[p * var**j for j, p in enumerate(parts)]))


def s_from_cumulants(cumulants: ValueSource, order: int, t: Any = None) -> sp.Expr:
    r"""The S-transform through :math:`t^{order-1}` from the first ``order`` cumulants.

    Moments by :func:`~detequiv.derivations.cumulants.moments_from_cumulants`, then
    :func:`s_series`; :math:`m_1=\kappa_1` must be nonzero.

    >>> import sympy as sp
    >>> s_from_cumulants([2, 0, 0], 3, sp.Symbol("t"))    # the constant 2: S = 1/2
    1/2
    """
    n = check_order(order)
    kappas = cumulant_symbols(n) if cumulants is None else exact_values(cumulants, n, "cumulants")
    if kappas[0].is_zero:
        raise UndefinedTransform(f"the S-transform needs m1 = kappa1 != 0, got kappa1 = {kappas[0]}")
    return s_series(moments_from_cumulants(n, kappas), n, t)


# ---------------------------------------------------------------------------
# from a closed-form S-transform back to moments and cumulants
# ---------------------------------------------------------------------------


def check_s_transform(s: Any, t: Any) -> tuple[sp.Expr, sp.Symbol]:
    """``(s, t)`` validated: ``t`` a sympy Symbol, ``s`` an exact expression (never text).

    Parameters
    ----------
    s : sympy.Expr or number
        A closed-form S-transform in ``t``; floats are read as the decimals they
        print as (:func:`~detequiv.derivations.cumulants.exact_value`).
    t : sympy.Symbol
        Its variable.

    Returns
    -------
    tuple of (sympy.Expr, sympy.Symbol)
        The exact ``s`` and ``t``.

    Raises
    ------
    InvalidArgument
        For text, a variable that is not a Symbol, or an ``s`` containing undefined
        functions.

    Examples
    --------
    >>> t = sp.Symbol("t")
    >>> check_s_transform(1 / (1 + 0.5 * t), t)
    (1/(t/2 + 1), t)
    >>> check_s_transform("1/(1+t)", t)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: the S-transform '1/(1+t)' is text; text is never parsed here, ...
    """
    if isinstance(s, (str, bytes)):
        raise InvalidArgument(
            f"the S-transform {s!r} is text; text is never parsed here, build it with sympy, "
            "e.g. t = sp.Symbol('t'); s = 1 / (1 + q * t)"
        )
    if not isinstance(t, sp.Symbol):
        raise InvalidArgument(
            f"the variable of the S-transform must be a sympy Symbol, got {t!r} "
            f"({type(t).__name__}); pass e.g. t = sp.Symbol('t')"
        )
    expr = exact_value(s, "S-transform")
    undefined = sorted(map(str, expr.atoms(AppliedUndef)))
    if undefined:
        raise InvalidArgument(
            f"the S-transform {expr} contains the undefined functions {undefined}; give S as an "
            "explicit expression in t (for a law known by its moments or cumulants use CumulantLaw)"
        )
    return expr, t


def _tidy(domain: Any, x: Any) -> sp.Expr:
    """A domain element as sympy: expanded numerator over expanded denominator."""
    if not x:
        return sp.S.Zero
    num, den = sp.fraction(domain.to_sympy(x))
    return sp.expand(num) / sp.expand(den)


@lru_cache(maxsize=256)
def _taylor_cached(s: sp.Expr, t: sp.Symbol, order: int) -> tuple[sp.Expr, ...]:
    at0 = s.subs(t, 0) if s.has(t) else s
    if at0.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
        raise InvalidArgument(
            f"S({t}) = {s} is not analytic at {t} = 0 (its value there is {at0}); an S-transform "
            f"is a power series in {t} with S(0) = 1/m1"
        )
    if not s.has(t):
        return (s,) + (sp.S.Zero,) * (order - 1)
    num, den = sp.cancel(s).as_numer_denom()
    if num.is_polynomial(t) and den.is_polynomial(t):
        # a rational function: exact division of power series in a fraction field
        a = sp.Poly(num, t).all_coeffs()[::-1]
        d = sp.Poly(den, t).all_coeffs()[::-1]
        domain, elems = construct_domain([*a, *d], field=True)
        a_el, d_el = elems[: len(a)], elems[len(a) :]
        if not d_el[0]:
            raise InvalidArgument(
                f"S({t}) = {s} has a pole at {t} = 0; an S-transform is a power series in {t} "
                "with S(0) = 1/m1"
            )
        inv = domain.one / d_el[0]
        c: list[Any] = []
        for k in range(order):
            acc = a_el[k] if k < len(a_el) else domain.zero
            for j in range(1, min(k, len(d_el) - 1) + 1):
                acc = acc - d_el[j] * c[k - j]
            c.append(acc * inv)
        return tuple(_tidy(domain, x) for x in c)
    try:
        poly = sp.Poly(sp.series(s, t, 0, order).removeO(), t)
    except (sp.PolynomialError, ValueError, NotImplementedError) as exc:
        raise InvalidArgument(
            f"S({t}) = {s} has no power series at {t} = 0 ({exc}); an S-transform must be analytic at {t} = 0"
        ) from None
    coeffs = poly.all_coeffs()[::-1]
    coeffs += [sp.S.Zero] * (order - len(coeffs))
    return tuple(sp.simplify(x) for x in coeffs[:order])


def s_taylor(s: Any, t: Any, order: int) -> tuple[sp.Expr, ...]:
    r"""The Taylor coefficients :math:`s_0,\dots,s_{order-1}` of :math:`S(t)` at 0, exact.

    Rational functions of ``t`` (with any parameters) are divided out exactly in a
    fraction field; other expressions go through :func:`sympy.series`.

    >>> t, q = sp.symbols("t q")
    >>> s_taylor(1 / (1 + q * t), t, 4)
    (1, -q, q**2, -q**3)

    Raises
    ------
    InvalidArgument
        If ``s`` is text, ``t`` is not a Symbol, or ``s`` is not analytic at 0.
    """
    n = check_order(order)
    expr, var = check_s_transform(s, t)
    return _taylor_cached(expr, var, n)


@lru_cache(maxsize=256)
def _moments_cached(s: sp.Expr, t: sp.Symbol, order: int) -> tuple[sp.Expr, ...]:
    coeffs = _taylor_cached(s, t, order)
    if coeffs[0].is_zero:
        raise UndefinedTransform(
            f"S(0) = 0 for S({t}) = {s}, but S(0) = 1/m1 must be nonzero (finite nonzero mean)"
        )
    # chi(t) = S(t) t / (1 + t): [t^k] chi = sum_{j<k} s_j (-1)^(k-1-j)
    chi = [sp.S.Zero] + [
        sp.Add(*[coeffs[j] * (-1) ** (k - 1 - j) for j in range(k)]) for k in range(1, order + 1)
    ]
    domain, elems = construct_domain(chi, field=True)
    psi = _reversion(list(elems), domain.one / elems[1], domain.zero)
    return tuple(_tidy(domain, x) for x in psi[1:])


def moments_from_s(s: Any, t: Any, order: int) -> tuple[sp.Expr, ...]:
    r"""Moments :math:`m_1,\dots,m_{order}` of the law whose S-transform is ``s``, exact.

    :math:`\chi(t)=S(t)\,t/(1+t)` is the compositional inverse of
    :math:`\psi(z)=\sum_{n\ge1}m_nz^n` (MATH.md 1.5), so the moments are the
    coefficients of the series reversion of :math:`\chi`; :math:`m_n` depends on
    :math:`s_0,\dots,s_{n-1}` only. Results are memoised per ``(s, t, order)``.

    Parameters
    ----------
    s : sympy expression
        :math:`S(t)`, analytic at 0 with :math:`S(0)=1/m_1\ne0`; other free symbols
        are parameters.
    t : sympy.Symbol
        Its variable.
    order : int
        Number of moments.

    Examples
    --------
    >>> t, q = sp.symbols("t q")
    >>> [sp.expand(m) for m in moments_from_s(1 / (1 + q * t), t, 3)]   # Narayana
    [1, q + 1, q**2 + 3*q + 1]

    Raises
    ------
    UndefinedTransform
        If :math:`S(0)=0`.
    InvalidArgument
        If ``s`` is text, ``t`` not a Symbol or ``s`` not analytic at 0.
    """
    n = check_order(order)
    expr, var = check_s_transform(s, t)
    return _moments_cached(expr, var, n)


def cumulants_from_s(s: Any, t: Any, order: int) -> tuple[sp.Expr, ...]:
    r"""Free cumulants :math:`\kappa_1,\dots,\kappa_{order}` from the S-transform ``s``.

    :func:`moments_from_s`, then
    :func:`~detequiv.derivations.cumulants.cumulants_from_moments`.

    >>> t, q = sp.symbols("t q")
    >>> cumulants_from_s(1 / (1 + q * t), t, 4)
    (1, q, q**2, q**3)
    """
    n = check_order(order)
    return cumulants_from_moments(n, moments_from_s(s, t, n))
