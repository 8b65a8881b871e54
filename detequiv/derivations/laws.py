r"""Free laws: immutable values that know their free cumulants and transforms.

Every law exposes ``cumulant(n)``, ``cumulants(order)``, ``moments(order)`` (through
:func:`~detequiv.derivations.cumulants.moments_from_cumulants`), and the closed forms
``r_transform(w)`` and ``s_transform(t)`` where they exist (conventions of MATH.md 1.5:
:math:`R(w)=\sum_n\kappa_nw^{n-1}`, :math:`S(t)=\frac{1+t}{t}\chi(t)`); otherwise these
raise :class:`~detequiv.errors.UndefinedTransform` with the reason.

>>> import sympy as sp
>>> from detequiv.derivations.laws import Wishart, Semicircle, parse_law
>>> q = sp.Symbol("q", positive=True)
>>> Wishart(q).moments(3)
(1, q + 1, q**2 + 3*q + 1)
>>> w, t = sp.symbols("w t")
>>> Wishart(q).r_transform(w), Wishart(q).s_transform(t)
(1/(-q*w + 1), 1/(q*t + 1))
>>> Semicircle().moments(4)
(0, 1, 0, 2)
>>> parse_law("wishart:1/2").moments(3)
(1, 3/2, 11/4)
"""

from __future__ import annotations

import dataclasses
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import sympy as sp

from ..errors import InvalidArgument, UndefinedTransform, UnknownLaw
from .cumulants import (
    check_order,
    cumulant_symbols,
    cumulants_from_moments,
    exact_value,
    exact_values,
    moments_from_cumulants,
)
from .quantities import tr
from .transforms import check_s_transform, moments_from_s, s_taylor

__all__ = [
    "Law",
    "Wishart",
    "FreePoisson",
    "Semicircle",
    "Constant",
    "CumulantLaw",
    "DeterministicLaw",
    "STransformLaw",
    "parse_law",
    "KNOWN_LAWS",
]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")


def _parameter(value: Any, what: str, *, positive: bool = False) -> sp.Expr:
    """An exact real parameter; numbers are checked now, symbols only if they can be.

    A symbol whose sign sympy cannot decide (not declared ``positive=True``) is
    accepted as it is: formulas then hold for the values the caller has in mind.
    """
    expr = exact_value(value, what)
    if expr.is_real is False:
        raise InvalidArgument(f"{what} must be real, got {expr}")
    if positive:
        if expr.is_number and not bool(expr > 0):
            raise InvalidArgument(
                f"{what} must be > 0, got {expr}; pass a positive number or a symbol "
                "declared positive, e.g. sp.Symbol('q', positive=True)"
            )
        if expr.is_positive is False:
            raise InvalidArgument(f"{what} must be > 0, but {expr} is not positive")
    return expr


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidArgument(
            f"{what} must be a name (a letter, then letters, digits or _; at most 64 "
            f"characters), got {value!r}"
        )
    return value


class Law(ABC):
    """A free law, described by its free cumulants.

    Subclasses are frozen dataclasses; laws compare and hash by their parameters.
    """

    __slots__ = ()

    @property
    @abstractmethod
    def name(self) -> str:
        """Short display name, e.g. ``Wishart(1/2)``."""

    @abstractmethod
    def cumulant(self, n: int) -> sp.Expr:
        """The free cumulant :math:`\\kappa_n` (``n >= 1``)."""

    def cumulants(self, order: int) -> tuple[sp.Expr, ...]:
        """:math:`(\\kappa_1,\\dots,\\kappa_{order})`."""
        n = check_order(order)
        return tuple(self.cumulant(k) for k in range(1, n + 1))

    def moments(self, order: int) -> tuple[sp.Expr, ...]:
        """:math:`(m_1,\\dots,m_{order})`, exact, via the moment-cumulant formula."""
        n = check_order(order)
        return moments_from_cumulants(n, self.cumulants(n))

    def r_transform(self, w: Any) -> sp.Expr:
        r"""Closed form of :math:`R(w)=\sum_{n\ge1}\kappa_nw^{n-1}`."""
        raise UndefinedTransform(
            f"{self} has no closed-form R-transform; use "
            "detequiv.derivations.transforms.r_series(law.cumulants(order), order, w)"
        )

    def s_transform(self, t: Any) -> sp.Expr:
        r"""Closed form of :math:`S(t)=\frac{1+t}{t}\chi(t)`, :math:`\chi=\psi^{-1}`."""
        raise UndefinedTransform(
            f"{self} has no closed-form S-transform; use "
            "detequiv.derivations.transforms.s_series(law.moments(order), order, t)"
        )

    def subs(self, *args: Any, **kwargs: Any) -> Law:
        """The same law with ``expr.subs(*args, **kwargs)`` applied to its parameters.

        >>> import sympy as sp
        >>> q = sp.Symbol("q", positive=True)
        >>> Wishart(q).subs(q, sp.Rational(1, 2))
        Wishart(ratio=1/2)
        """
        changes: dict[str, Any] = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if isinstance(value, sp.Basic):
                changes[field.name] = value.subs(*args, **kwargs)
            elif isinstance(value, tuple):
                changes[field.name] = tuple(v.subs(*args, **kwargs) for v in value)
            elif callable(value):
                changes[field.name] = _Substituted(value, args, tuple(kwargs.items()))
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def _latex(self, printer: Any = None) -> str:
        return r"\operatorname{" + type(self).__name__ + "}"

    def _repr_latex_(self) -> str:
        return "$" + self._latex() + "$"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class _Substituted:
    """``n -> f(n).subs(...)``, a picklable, comparable callable."""

    function: Callable[[int], Any]
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]

    def __call__(self, n: int) -> sp.Expr:
        return exact_value(self.function(n), f"cumulant({n})").subs(*self.args, **dict(self.kwargs))


def _var(value: Any, what: str) -> sp.Expr:
    return exact_value(value, what)


def _args_latex(*values: sp.Expr) -> str:
    return r"\left(" + ", ".join(sp.latex(v) for v in values) + r"\right)"


@dataclass(frozen=True, slots=True)
class Wishart(Law):
    r"""White Wishart / Marchenko-Pastur law of ratio :math:`q=N/P`: :math:`\kappa_n=q^{n-1}`.

    ``W = Z^T Z / P`` with ``Z`` of size ``P x N`` and iid standard entries, so that
    :math:`\mathbb E W=I_N`. Any ratio ``q > 0`` (including ``q > 1``, with an atom at
    zero). The ratio may be a positive number or a sympy expression; a symbol not
    declared ``positive=True`` is accepted, and the formulas assume it is positive.

    Closed forms: :math:`R(w)=1/(1-qw)`, :math:`S(t)=1/(1+qt)`.

    >>> Wishart(2).moments(3)
    (1, 3, 11)
    >>> Wishart(-1)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: Wishart ratio q = N/P must be > 0, got -1; pass a positive number or a symbol declared positive, e.g. sp.Symbol('q', positive=True)
    """  # noqa: E501

    ratio: sp.Expr

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "ratio",
            _parameter(self.ratio, "Wishart ratio q = N/P", positive=True),
        )

    @property
    def name(self) -> str:
        return f"Wishart({self.ratio})"

    def cumulant(self, n: int) -> sp.Expr:
        k = check_order(n, "n")
        return self.ratio ** (k - 1)

    def r_transform(self, w: Any) -> sp.Expr:
        return 1 / (1 - self.ratio * _var(w, "w"))

    def s_transform(self, t: Any) -> sp.Expr:
        return 1 / (1 + self.ratio * _var(t, "t"))

    def _latex(self, printer: Any = None) -> str:
        return r"\operatorname{Wishart}" + _args_latex(self.ratio)


@dataclass(frozen=True, slots=True)
class FreePoisson(Law):
    r"""Free Poisson law of rate :math:`r>0` and jump :math:`a`: :math:`\kappa_n=ra^n`.

    ``FreePoisson(1/q, q)`` is ``Wishart(q)``. Closed forms:
    :math:`R(w)=ra/(1-aw)` and, from :math:`S(t)R(tS(t))=1`,
    :math:`S(t)=1/(a(t+r))`.

    >>> FreePoisson(2, 3).cumulants(3)
    (6, 18, 54)
    """

    rate: sp.Expr
    jump: sp.Expr = sp.Integer(1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", _parameter(self.rate, "free Poisson rate", positive=True))
        jump = _parameter(self.jump, "free Poisson jump")
        if jump.is_zero:
            raise InvalidArgument(
                "free Poisson jump must be nonzero (jump 0 is the constant law 0); use Constant(0) for that"
            )
        object.__setattr__(self, "jump", jump)

    @property
    def name(self) -> str:
        return f"FreePoisson(rate={self.rate}, jump={self.jump})"

    def cumulant(self, n: int) -> sp.Expr:
        k = check_order(n, "n")
        return self.rate * self.jump**k

    def r_transform(self, w: Any) -> sp.Expr:
        return self.rate * self.jump / (1 - self.jump * _var(w, "w"))

    def s_transform(self, t: Any) -> sp.Expr:
        return 1 / (self.jump * (_var(t, "t") + self.rate))

    def _latex(self, printer: Any = None) -> str:
        return r"\operatorname{FreePoisson}" + _args_latex(self.rate, self.jump)


@dataclass(frozen=True, slots=True)
class Semicircle(Law):
    r"""Semicircle law of variance :math:`\sigma^2>0`: :math:`\kappa_2=\sigma^2` only.

    The GOE :math:`(G+G^\top)/\sqrt{2N}` has variance 1. :math:`R(w)=\sigma^2w`; the
    S-transform does not exist because the law is centred (:math:`m_1=0`).

    >>> Semicircle(2).moments(4)
    (0, 2, 0, 8)
    """

    variance: sp.Expr = sp.Integer(1)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "variance",
            _parameter(self.variance, "semicircle variance", positive=True),
        )

    @property
    def name(self) -> str:
        return f"Semicircle({self.variance})"

    def cumulant(self, n: int) -> sp.Expr:
        k = check_order(n, "n")
        return self.variance if k == 2 else sp.S.Zero

    def r_transform(self, w: Any) -> sp.Expr:
        return self.variance * _var(w, "w")

    def s_transform(self, t: Any) -> sp.Expr:
        raise UndefinedTransform(
            f"the S-transform of {self} is undefined: it needs m1 != 0, and the "
            "semicircle law is centred (m1 = 0); use its R-transform "
            f"{self.variance}*w, or shift the law by a constant"
        )

    def _latex(self, printer: Any = None) -> str:
        return r"\operatorname{Semicircle}" + _args_latex(self.variance)


@dataclass(frozen=True, slots=True)
class Constant(Law):
    r"""The constant :math:`c` (the matrix :math:`cI`): :math:`\kappa_1=c`, others 0.

    :math:`R(w)=c`, :math:`S(t)=1/c` (undefined for :math:`c=0`).

    >>> Constant(3).moments(3)
    (3, 9, 27)
    """

    value: sp.Expr

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _parameter(self.value, "constant value"))

    @property
    def name(self) -> str:
        return f"Constant({self.value})"

    def cumulant(self, n: int) -> sp.Expr:
        k = check_order(n, "n")
        return self.value if k == 1 else sp.S.Zero

    def r_transform(self, w: Any) -> sp.Expr:
        _var(w, "w")
        return self.value

    def s_transform(self, t: Any) -> sp.Expr:
        _var(t, "t")
        if self.value.is_zero:
            raise UndefinedTransform(
                "the S-transform of Constant(0) is undefined: it needs m1 != 0 and here m1 = 0"
            )
        return 1 / self.value

    def _latex(self, printer: Any = None) -> str:
        return r"\operatorname{Constant}" + _args_latex(self.value)


@dataclass(frozen=True, slots=True)
class CumulantLaw(Law):
    r"""A free law given by its cumulant sequence.

    Parameters
    ----------
    name : str
        A name (letters, digits, ``_``); the default cumulants are the symbols
        :math:`\kappa_{name,n}` (``kappa_name,n``).
    cumulants : None, sequence or callable, optional
        The cumulants :math:`\kappa_1,\kappa_2,\dots`: ``None`` for symbols, a finite
        sequence (then only that many are known) or a callable ``n -> kappa_n``.

    Examples
    --------
    >>> CumulantLaw("B").moments(2)
    (kappa_B,1, kappa_B,1**2 + kappa_B,2)
    >>> CumulantLaw("B", [1, 1]).moments(2)
    (1, 2)
    """

    name: str  # type: ignore[misc]
    cumulants_given: tuple[sp.Expr, ...] | Callable[[int], Any] | None = None

    def __init__(
        self,
        name: str,
        cumulants: Sequence[Any] | Callable[[int], Any] | None = None,
    ) -> None:
        object.__setattr__(self, "name", _name(name, "CumulantLaw name"))
        if cumulants is not None and not callable(cumulants):
            try:
                length = len(cumulants)
            except TypeError:
                raise InvalidArgument(
                    "CumulantLaw cumulants must be None, a sequence or a callable "
                    f"n -> kappa_n, got {type(cumulants).__name__}"
                ) from None
            if length == 0:
                raise InvalidArgument("CumulantLaw cumulants is empty; give kappa_1, kappa_2, ... or None")
            cumulants = exact_values(cumulants, length, "CumulantLaw cumulants")
        object.__setattr__(self, "cumulants_given", cumulants)

    def cumulant(self, n: int) -> sp.Expr:
        k = check_order(n, "n")
        given = self.cumulants_given
        if given is None:
            return sp.Symbol(f"kappa_{self.name},{k}")
        if isinstance(given, tuple):
            if k > len(given):
                raise InvalidArgument(
                    f"CumulantLaw {self.name!r} has {len(given)} cumulants, so "
                    f"kappa_{k} is unknown; pass more values or a callable n -> kappa_n"
                )
            return given[k - 1]
        return exact_value(given(k), f"cumulant({k}) of CumulantLaw {self.name!r}")

    def cumulants(self, order: int) -> tuple[sp.Expr, ...]:
        n = check_order(order)
        if self.cumulants_given is None:
            return cumulant_symbols(n, label=self.name)
        return tuple(self.cumulant(k) for k in range(1, n + 1))

    def subs(self, *args: Any, **kwargs: Any) -> Law:
        given = self.cumulants_given
        if given is None:
            given = _Substituted(self.cumulant, args, tuple(kwargs.items()))
        elif isinstance(given, tuple):
            given = tuple(v.subs(*args, **kwargs) for v in given)
        else:
            given = _Substituted(given, args, tuple(kwargs.items()))
        return CumulantLaw(self.name, given)

    def __repr__(self) -> str:
        given = self.cumulants_given
        if given is None:
            return f"CumulantLaw({self.name!r})"
        return f"CumulantLaw({self.name!r}, {given!r})"

    def __str__(self) -> str:
        return f"CumulantLaw({self.name})"

    def _latex(self, printer: Any = None) -> str:
        return r"\operatorname{CumulantLaw}\left(" + self.name + r"\right)"


@dataclass(frozen=True, slots=True)
class DeterministicLaw(Law):
    r"""Law of a deterministic matrix ``A``: moments :math:`m_n=\mathrm{tr}(A^n)`.

    ``A`` is ``sp.Symbol(name, commutative=False)`` and the moments are
    :class:`~detequiv.derivations.quantities.tr` of its powers; the cumulants come
    from :func:`~detequiv.derivations.cumulants.cumulants_from_moments`.

    >>> DeterministicLaw("A").moments(2)
    (tr(A), tr(A**2))
    >>> DeterministicLaw("A").cumulant(2)
    -tr(A)**2 + tr(A**2)
    """

    name: str  # type: ignore[misc]

    def __post_init__(self) -> None:
        _name(self.name, "DeterministicLaw name")

    @property
    def matrix(self) -> sp.Symbol:
        """The noncommutative symbol ``A``."""
        return sp.Symbol(self.name, commutative=False)

    def moments(self, order: int) -> tuple[sp.Expr, ...]:
        n = check_order(order)
        a = self.matrix
        return tuple(tr(a**k) for k in range(1, n + 1))

    def cumulants(self, order: int) -> tuple[sp.Expr, ...]:
        n = check_order(order)
        return cumulants_from_moments(n, self.moments(n))

    def cumulant(self, n: int) -> sp.Expr:
        return self.cumulants(check_order(n, "n"))[-1]

    def subs(self, *args: Any, **kwargs: Any) -> Law:
        return self

    def __str__(self) -> str:
        return f"DeterministicLaw({self.name})"

    def _latex(self, printer: Any = None) -> str:
        return r"\operatorname{law}\left(" + self.name + r"\right)"


@dataclass(frozen=True, slots=True)
class STransformLaw(Law):
    r"""A free law given by a closed-form S-transform :math:`S(t)` (MATH.md 1.5, 2.2).

    :math:`\chi(t)=S(t)\,t/(1+t)` is the compositional inverse of
    :math:`\psi(z)=\sum_{n\ge1}m_nz^n`, so the moments are exact coefficients of a series
    reversion (:func:`~detequiv.derivations.transforms.moments_from_s`) and the cumulants
    follow from :func:`~detequiv.derivations.cumulants.cumulants_from_moments`. In the
    one-point engine the factor renormalises the ridge by the closed form,
    :math:`\kappa=\lambda\,S(-\mathrm{df}_1(\kappa))`.

    Parameters
    ----------
    s : sympy expression
        :math:`S(t)`, analytic at :math:`t=0` with :math:`S(0)=1/m_1\ne0`. Built with
        sympy (text is refused, never parsed). Free symbols other than ``t`` are
        parameters of the law (they can be substituted with :meth:`subs`).
    t : sympy.Symbol
        The variable of ``s``.
    name : str, optional
        A display name (letters, digits, ``_``); default ``S(t) = <s>``.
    spectrum : callable, optional, keyword only
        ``N -> N eigenvalues`` of a matrix model with this law, used by the Monte Carlo
        witness (:func:`~detequiv.witnesses.moments.sampler_for_law`, Haar rotated); without
        it the witness inverts :math:`S` numerically. Not compared, hashed or printed.

    Raises
    ------
    InvalidArgument
        ``s`` is text, ``t`` is not a Symbol, ``s`` is not analytic at 0.
    UndefinedTransform
        :math:`S(0)=0` (no law with a finite nonzero mean has it).

    Examples
    --------
    The white Wishart law of ratio :math:`q`, given by :math:`S(t)=1/(1+qt)`, has the
    Narayana moments and the cumulants :math:`q^{n-1}` of ``Wishart(q)``:

    >>> import sympy as sp
    >>> t, q = sp.symbols("t q", positive=True)
    >>> law = STransformLaw(1 / (1 + q * t), t, "W")
    >>> law.moments(3)
    (1, q + 1, q**2 + 3*q + 1)
    >>> law.cumulants(4)
    (1, q, q**2, q**3)
    >>> law.moments(4) == Wishart(q).moments(4)
    True
    >>> law.s_transform(-sp.Symbol("d"))
    1/(-d*q + 1)
    >>> law.r_transform(sp.Symbol("w"))
    -1/(q*w - 1)

    The round trip through the truncated S-series of its own moments:

    >>> from detequiv.derivations.transforms import s_series
    >>> s_series(law.moments(4), 4, t)
    -q**3*t**3 + q**2*t**2 - q*t + 1
    >>> STransformLaw((1 + t) ** -2, t).moments(5)       # MP(1) x MP(1): Fuss-Catalan
    (1, 3, 12, 55, 273)
    """

    s: sp.Expr
    t: sp.Symbol
    label: str | None = None
    spectrum: Callable[[int], Any] | None = dataclasses.field(default=None, compare=False, repr=False)

    def __init__(
        self,
        s: Any,
        t: Any,
        name: str | None = None,
        *,
        spectrum: Callable[[int], Any] | None = None,
    ) -> None:
        expr, var = check_s_transform(s, t)
        if name is not None:
            _name(name, "STransformLaw name")
        if spectrum is not None and not callable(spectrum):
            raise InvalidArgument(
                f"spectrum={spectrum!r} is not callable; pass a function N -> N eigenvalues, "
                "e.g. lambda N: np.linspace(0.5, 1.5, N)"
            )
        head = s_taylor(expr, var, 1)[0]  # analytic at 0, or InvalidArgument
        if head.is_zero:
            raise UndefinedTransform(
                f"S(0) = 0 for S({var}) = {expr}; S(0) = 1/m1 must be nonzero (a law with a "
                "finite nonzero mean), so this is not an S-transform"
            )
        object.__setattr__(self, "s", expr)
        object.__setattr__(self, "t", var)
        object.__setattr__(self, "label", name)
        object.__setattr__(self, "spectrum", spectrum)

    @property
    def name(self) -> str:
        return self.label if self.label is not None else f"S({self.t}) = {self.s}"

    @property
    def parameters(self) -> frozenset[sp.Symbol]:
        """The free symbols of ``s`` other than ``t``."""
        return frozenset(self.s.free_symbols - {self.t})

    def moments(self, order: int) -> tuple[sp.Expr, ...]:
        return moments_from_s(self.s, self.t, check_order(order))

    def cumulants(self, order: int) -> tuple[sp.Expr, ...]:
        return _s_law_cumulants(self.s, self.t, check_order(order))

    def cumulant(self, n: int) -> sp.Expr:
        return self.cumulants(check_order(n, "n"))[-1]

    def s_transform(self, t: Any) -> sp.Expr:
        return self.s.subs(self.t, _var(t, "t"))

    def r_transform(self, w: Any) -> sp.Expr:
        r"""Closed form of :math:`R(w)` from :math:`R(w)\,S(wR(w))=1`, when cheap.

        Solved exactly when :math:`y\,S(wy)=1` is, after clearing denominators, of
        degree 1 in :math:`y`, or of degree 2 with numeric coefficients (the root is the
        one whose series matches the cumulants). Otherwise
        :class:`~detequiv.errors.UndefinedTransform` (the engine then uses the series).
        """
        var = _var(w, "w")
        return _s_law_r(self.s, self.t, self.name)(var)

    def subs(self, *args: Any, **kwargs: Any) -> Law:
        """The same law with the substitution applied to the parameters of ``s`` (never to ``t``)."""
        bound = sp.Dummy(self.t.name)
        expr = self.s.xreplace({self.t: bound}).subs(*args, **kwargs).xreplace({bound: self.t})
        return STransformLaw(expr, self.t, self.label, spectrum=self.spectrum)

    def __str__(self) -> str:
        return self.name

    def _latex(self, printer: Any = None) -> str:
        return (
            r"\operatorname{STransformLaw}\left(S("
            + sp.latex(self.t)
            + ") = "
            + sp.latex(self.s)
            + r"\right)"
        )


@lru_cache(maxsize=256)
def _s_law_cumulants(s: sp.Expr, t: sp.Symbol, order: int) -> tuple[sp.Expr, ...]:
    return cumulants_from_moments(order, moments_from_s(s, t, order))


@lru_cache(maxsize=128)
def _s_law_r(s: sp.Expr, t: sp.Symbol, name: str) -> Callable[[sp.Expr], sp.Expr]:
    """``w -> R(w)`` in closed form for the S-transform ``s``, or UndefinedTransform."""
    w, y = sp.Dummy("w"), sp.Dummy("y")
    fallback = UndefinedTransform(
        f"{name} has no cheap closed-form R-transform (R(w) S(w R(w)) = 1 is not solvable in "
        "closed form here); use detequiv.derivations.transforms.r_series(law.cumulants(order), "
        "order, w)"
    )
    num, den = sp.fraction(sp.cancel(y * s.subs(t, w * y) - 1))
    if not num.is_polynomial(y):
        raise fallback
    poly = sp.Poly(num, y)
    degree = poly.degree()
    if degree == 1:
        a, b = poly.all_coeffs()
        root = sp.cancel(-b / a)
    elif degree == 2 and not (s.free_symbols - {t}):
        order = 4
        kappas = _s_law_cumulants(s, t, order)
        target = sp.Add(*[k * w**i for i, k in enumerate(kappas)])
        root = None
        for cand in sp.solve(poly.as_expr(), y):
            try:
                ser = sp.series(cand, w, 0, order).removeO()
            except (ValueError, NotImplementedError, sp.PolynomialError):  # pragma: no cover
                continue
            if sp.simplify(sp.expand(ser - target)) == 0:
                root = cand
                break
        if root is None:
            raise fallback
    else:
        raise fallback

    def r(var: sp.Expr) -> sp.Expr:
        return root.subs(w, var)

    return r


# ---------------------------------------------------------------------------
# command-line parsing
# ---------------------------------------------------------------------------

#: Law specifications :func:`parse_law` understands, with their parameters.
KNOWN_LAWS: Mapping[str, str] = MappingProxyType(
    {
        "wishart": "wishart:RATIO (white Wishart / Marchenko-Pastur, RATIO = N/P > 0)",
        "mp": "mp:RATIO (same as wishart:RATIO)",
        "poisson": "poisson:RATE:JUMP (free Poisson)",
        "semicircle": "semicircle or semicircle:VARIANCE",
        "constant": "constant:VALUE",
        "symbolic": "symbolic or symbolic:NAME (cumulants kappa_NAME,n; NAME = B)",
        "deterministic": "deterministic:NAME (moments tr(NAME^n))",
    }
)


def _parse_parameter(text: str, what: str, spec: str, **assumptions: bool) -> sp.Expr:
    """A number (read with ``fractions.Fraction``) or a plain identifier; never eval."""
    text = text.strip()
    if _NAME.match(text):
        return sp.Symbol(text, **assumptions)
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise InvalidArgument(
            f"bad {what} {text!r} in law {spec!r}: expected a number such as 0.5, 1/2 "
            "or 2, or a plain name such as q (a letter, then letters, digits or _)"
        ) from None
    return sp.Rational(value.numerator, value.denominator)


def parse_law(text: str) -> Law:
    """The law described by a command-line string.

    ``wishart:0.5`` or ``wishart:1/2`` (numeric ratio), ``wishart:q`` (a symbolic
    ratio, the symbol declared positive), ``semicircle`` or ``semicircle:2``,
    ``poisson:RATE:JUMP``, ``constant:C``, ``symbolic`` (a :class:`CumulantLaw` with
    symbolic cumulants; ``symbolic:NAME`` to name them) and ``deterministic:NAME``.
    Numbers are read with :class:`fractions.Fraction`, names must be plain identifiers;
    nothing is ever evaluated.

    >>> parse_law("wishart:q")
    Wishart(ratio=q)
    >>> parse_law("poisson:2:1/2")
    FreePoisson(rate=2, jump=1/2)
    >>> parse_law("cauchy")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    detequiv.errors.UnknownLaw: unknown law 'cauchy'; known laws: ...

    Raises
    ------
    UnknownLaw
        For a law name not in :data:`KNOWN_LAWS`.
    InvalidArgument
        For a bad or missing parameter (not a number nor a plain name, out of range).
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"parse_law needs a string, got {type(text).__name__}")
    spec = text.strip()
    head, *params = spec.split(":")
    kind = head.strip().lower()
    if kind not in KNOWN_LAWS:
        known = "; ".join(KNOWN_LAWS.values())
        raise UnknownLaw(f"unknown law {head.strip()!r}; known laws: {known}")

    def need(count: int | tuple[int, ...]) -> None:
        allowed = (count,) if isinstance(count, int) else count
        if len(params) not in allowed:
            raise InvalidArgument(f"law {spec!r} has {len(params)} parameter(s); write {KNOWN_LAWS[kind]}")

    if kind in ("wishart", "mp"):
        need(1)
        return Wishart(_parse_parameter(params[0], "ratio", spec, positive=True))
    if kind == "poisson":
        need(2)
        rate = _parse_parameter(params[0], "rate", spec, positive=True)
        jump = _parse_parameter(params[1], "jump", spec, real=True, nonzero=True)
        return FreePoisson(rate, jump)
    if kind == "semicircle":
        need((0, 1))
        if not params:
            return Semicircle()
        return Semicircle(_parse_parameter(params[0], "variance", spec, positive=True))
    if kind == "constant":
        need(1)
        return Constant(_parse_parameter(params[0], "value", spec, real=True))
    if kind == "symbolic":
        need((0, 1))
        label = params[0].strip() if params else "B"
        if not _NAME.match(label):
            raise InvalidArgument(
                f"bad name {label!r} in law {spec!r}: use a letter, then letters, digits or _"
            )
        return CumulantLaw(label)
    need(1)  # deterministic
    label = params[0].strip()
    if not _NAME.match(label):
        raise InvalidArgument(f"bad name {label!r} in law {spec!r}: use a letter, then letters, digits or _")
    return DeterministicLaw(label)
