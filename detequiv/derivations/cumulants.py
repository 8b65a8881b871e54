r"""Free moments and free cumulants of one variable, exact and output-sensitive.

The moment-cumulant formula sums over non-crossing partitions,
:math:`m_n=\sum_{\pi\in NC(n)}\prod_{V\in\pi}\kappa_{|V|}`. Grouping the partitions by
block type (an integer partition :math:`\lambda` of ``n`` with ``k`` parts and
multiplicities :math:`\mu_i`) gives Kreweras' count
(:func:`detequiv.diagrams.partitions.kreweras_count`)

.. math:: m_n=\sum_{\lambda\vdash n}\frac{n!}{(n-k+1)!\,\prod_i\mu_i!}\,\kappa_\lambda ,

and Lagrange inversion of :math:`M(z)=1+\sum_s\kappa_sz^sM(z)^s` gives the inverse

.. math::
    \kappa_n=\sum_{\lambda\vdash n}(-1)^{k-1}
    \frac{(n+k-2)!}{(n-1)!\,\prod_i\mu_i!}\,m_\lambda .

With independent symbols (the default) every integer partition is one term of the
answer, so both directions are built term by term from these counts, as sparse
polynomials, and turned into sympy expressions directly in canonical form (arguments
sorted as sympy sorts them, then ``Mul``/``Add`` with ``evaluate=False``): the cost is
proportional to the size of the output. With specialised values (numbers, ``q**(n-1)``,
...) the answer is much smaller than the generic polynomial, so instead the functional
equation is iterated on truncated power series whose coefficients live in the smallest
sympy domain holding the values (``ZZ``, ``QQ``, ``ZZ[q]``, ...).

>>> import sympy as sp
>>> from detequiv.derivations.cumulants import (
...     cumulants_from_moments, moments_from_cumulants)
>>> moments_from_cumulants(3)
(kappa_1, kappa_1**2 + kappa_2, kappa_1**3 + 3*kappa_1*kappa_2 + kappa_3)
>>> cumulants_from_moments(3)
(m_1, -m_1**2 + m_2, 2*m_1**3 - 3*m_1*m_2 + m_3)
>>> q = sp.Symbol("q", positive=True)
>>> moments_from_cumulants(4, lambda n: q**(n - 1))
(1, q + 1, q**2 + 3*q + 1, q**3 + 6*q**2 + 6*q + 1)
"""

from __future__ import annotations

import functools
import gc
import math
import numbers
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from fractions import Fraction
from operator import itemgetter
from typing import Any, Union

import sympy as sp
from sympy.core.function import AppliedUndef
from sympy.polys.constructor import construct_domain

from ..errors import InvalidArgument
from .quantities import tr

__all__ = [
    "cumulant_symbols",
    "moment_symbols",
    "cumulant_coefficient",
    "moments_from_cumulants",
    "cumulants_from_moments",
    "check_order",
    "exact_value",
    "exact_values",
    "is_generator",
    "polys_to_exprs",
]

#: What the public functions accept as a sequence of values: ``None`` (default
#: symbols), a sequence of numbers or sympy expressions, or a callable ``n -> value``.
ValueSource = Union[None, Sequence[Any], Callable[[int], Any]]  # noqa: UP007


# ---------------------------------------------------------------------------
# input checking (shared with laws.py and transforms.py)
# ---------------------------------------------------------------------------


def check_order(order: Any, what: str = "order") -> int:
    """``order`` as a Python int >= 1, or :class:`~detequiv.errors.InvalidArgument`.

    Parameters
    ----------
    order : int
        Anything with ``__index__`` (Python, numpy or sympy integers), not a bool.
    what : str, default "order"
        The argument's name in the error message.

    Returns
    -------
    int

    Raises
    ------
    InvalidArgument
        For a boolean, a value that is not a whole number, or a number below 1.

    Examples
    --------
    >>> check_order(5), check_order(sp.Integer(3), "n")
    (5, 3)
    >>> check_order(0, "n")
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: n must be an integer >= 1, got 0; pass e.g. n=5
    """
    if isinstance(order, bool):
        raise InvalidArgument(f"{what} must be an integer >= 1, got the boolean {order!r}")
    try:
        n = operator.index(order)
    except TypeError:
        raise InvalidArgument(
            f"{what} must be an integer >= 1, got {order!r} ({type(order).__name__}); "
            f"pass a whole number such as {what}=5"
        ) from None
    if n < 1:
        raise InvalidArgument(f"{what} must be an integer >= 1, got {n}; pass e.g. {what}=5")
    return n


def exact_value(value: Any, what: str) -> sp.Expr:
    """An exact, commutative sympy expression for ``value``.

    Integers and fractions become sympy Integers and Rationals; a float is read as the
    decimal it prints as (``0.1 -> 1/10``), also inside a sympy expression. Text is
    refused (never parsed), as are noncommutative expressions.

    Parameters
    ----------
    value : number or sympy.Expr
        An int, :class:`fractions.Fraction`, float (or numpy scalar) or a commutative,
        finite sympy expression.
    what : str
        What the value is, for the error message (``"cumulants[2] (n = 3)"``).

    Returns
    -------
    sympy.Expr

    Raises
    ------
    InvalidArgument
        For text, a bool, a non-finite number, a noncommutative expression or
        anything else that is not a number or a sympy expression.

    Examples
    --------
    >>> from fractions import Fraction
    >>> q = sp.Symbol("q")
    >>> exact_value(0.1, "x"), exact_value(Fraction(2, 4), "x"), exact_value(0.5 * q, "x")
    (1/10, 1/2, q/2)
    >>> exact_value("1/2", "kappa_1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: kappa_1 = '1/2' is text; text is never parsed here, ...
    """
    if isinstance(value, bool):
        raise InvalidArgument(f"{what} must be a number or a sympy expression, got {value!r}")
    if isinstance(value, sp.Basic):
        if not isinstance(value, sp.Expr):
            raise InvalidArgument(
                f"{what} must be a sympy expression, got {value!r} ({type(value).__name__})"
            )
        if not value.is_commutative:
            raise InvalidArgument(
                f"{what} = {value} is noncommutative; cumulants and moments are "
                "scalars, wrap words of matrices in tr(...)"
            )
        if value.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
            raise InvalidArgument(f"{what} = {value} is not finite")
        floats = value.atoms(sp.Float)
        if floats:
            value = value.xreplace({f: sp.Rational(str(f)) for f in floats})
        return value
    if isinstance(value, numbers.Integral):
        return sp.Integer(int(value))
    if isinstance(value, Fraction):
        return sp.Rational(value.numerator, value.denominator)
    if isinstance(value, numbers.Rational):
        return sp.Rational(int(value.numerator), int(value.denominator))
    if isinstance(value, numbers.Real):
        x = float(value)
        if not math.isfinite(x):
            raise InvalidArgument(f"{what} must be finite, got {value!r}")
        return sp.Rational(repr(x))
    if isinstance(value, str):
        raise InvalidArgument(
            f"{what} = {value!r} is text; text is never parsed here, pass a number "
            "or a sympy expression (for command-line strings use "
            "detequiv.derivations.laws.parse_law)"
        )
    raise InvalidArgument(
        f"{what} must be a number or a sympy expression, got {value!r} ({type(value).__name__})"
    )


def exact_values(source: Any, order: int, what: str) -> tuple[sp.Expr, ...]:
    """The first ``order`` entries of a sequence or callable, as exact expressions.

    Parameters
    ----------
    source : sequence or callable
        A sequence with at least ``order`` values (the first is ``n = 1``), or a
        callable ``n -> value`` called for ``n = 1 .. order``.
    order : int
        How many values.
    what : str
        The name of the values, for error messages (``"cumulants"``).

    Returns
    -------
    tuple of sympy.Expr
        Each value through :func:`exact_value`.

    Raises
    ------
    InvalidArgument
        For too few values, text or a mapping, or a value :func:`exact_value` refuses.

    Examples
    --------
    >>> from fractions import Fraction
    >>> exact_values([1, 0.5, Fraction(1, 3)], 2, "cumulants"), exact_values(lambda n: n**2, 3, "moments")
    ((1, 1/2), (1, 4, 9))
    >>> exact_values([1], 2, "cumulants")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: cumulants has 1 entries but order 2 needs 2; ...
    """
    if callable(source) and not isinstance(source, sp.Basic):
        return tuple(exact_value(source(n), f"{what}({n})") for n in range(1, order + 1))
    if isinstance(source, (str, bytes, Mapping)) or not isinstance(source, Iterable):
        raise InvalidArgument(
            f"{what} must be None, a sequence of values or a callable n -> value, got {type(source).__name__}"
        )
    items = list(source) if not isinstance(source, Sequence) else source
    if len(items) < order:
        raise InvalidArgument(
            f"{what} has {len(items)} entries but order {order} needs {order}; "
            f"pass at least {order} values or a callable n -> value"
        )
    return tuple(exact_value(items[i], f"{what}[{i}] (n = {i + 1})") for i in range(order))


def is_generator(x: sp.Expr) -> bool:
    """True for an atom-like expression whose powers and products stay unevaluated.

    Generators are commutative Symbols, undefined functions (``f(1)``) and traces
    ``tr(...)``: distinct generators are independent variables of the polynomials built
    here (the fast, term-by-term route of :func:`moments_from_cumulants`).

    Parameters
    ----------
    x : sympy.Expr

    Returns
    -------
    bool

    Examples
    --------
    >>> A = sp.Symbol("A", commutative=False)
    >>> q = sp.Symbol("q")
    >>> is_generator(q), is_generator(tr(A)), is_generator(sp.Function("f")(1))
    (True, True, True)
    >>> is_generator(q**2), is_generator(A)
    (False, False)
    """
    return isinstance(x, (sp.Symbol, AppliedUndef, tr)) and bool(x.is_commutative)


def _independent(values: Sequence[sp.Expr]) -> bool:
    return all(is_generator(v) for v in values) and len(set(values)) == len(values)


# ---------------------------------------------------------------------------
# default symbols and counts by block type
# ---------------------------------------------------------------------------


def cumulant_symbols(order: int, label: str | None = None) -> tuple[sp.Symbol, ...]:
    r"""The default free cumulant symbols :math:`\kappa_1,\dots,\kappa_{order}`.

    Parameters
    ----------
    order : int
        How many symbols, at least 1.
    label : str, optional
        Name of the variable; with a label the symbols are ``kappa_label,n`` (printed
        :math:`\kappa_{label,n}`).

    Examples
    --------
    >>> cumulant_symbols(3)
    (kappa_1, kappa_2, kappa_3)
    >>> import sympy as sp
    >>> sp.latex(cumulant_symbols(2, "B")[1])
    '\\kappa_{B,2}'
    """
    n = check_order(order)
    if label is None:
        return _symbols("kappa_", n)
    if not isinstance(label, str):
        raise InvalidArgument(f"label must be a string, got {label!r}")
    return _symbols(f"kappa_{label},", n)


def moment_symbols(order: int) -> tuple[sp.Symbol, ...]:
    """The default moment symbols ``m_1, ..., m_order``.

    >>> moment_symbols(2)
    (m_1, m_2)
    """
    n = check_order(order)
    return _symbols("m_", n)


@functools.lru_cache(maxsize=64)
def _symbols(prefix: str, n: int) -> tuple[sp.Symbol, ...]:
    return tuple(sp.Symbol(f"{prefix}{i}") for i in range(1, n + 1))


def _block_type(block_sizes: Iterable[Any]) -> tuple[int, int, Counter[int]]:
    if isinstance(block_sizes, (str, bytes)) or not isinstance(block_sizes, Iterable):
        raise InvalidArgument(f"block sizes must be a sequence of positive integers, got {block_sizes!r}")
    sizes = [check_order(b, "each block size") for b in block_sizes]
    if not sizes:
        raise InvalidArgument("block sizes must not be empty; pass e.g. (2, 1, 1)")
    return sum(sizes), len(sizes), Counter(sizes)


def cumulant_coefficient(block_sizes: Iterable[int]) -> int:
    r"""Coefficient of :math:`\prod_i m_{\lambda_i}` in :math:`\kappa_n`, n = their sum.

    Equal to :math:`(-1)^{k-1}(n+k-2)!/((n-1)!\prod_i\mu_i!)`, the sum of the Moebius
    function :math:`\mu(\pi,1_n)` over the non-crossing partitions :math:`\pi` of this
    block type.

    >>> [cumulant_coefficient(lam) for lam in ([1, 1, 1], [2, 1], [3])]
    [2, -3, 1]
    """
    n, k, mult = _block_type(block_sizes)
    den = math.factorial(n - 1)
    for mu in mult.values():
        den *= math.factorial(mu)
    num = math.factorial(n + k - 2)
    return (-1) ** (k - 1) * (num // den)


# ---------------------------------------------------------------------------
# canonical sympy construction (public API, structurally identical to sympy's own)
# ---------------------------------------------------------------------------


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while big acyclic expression trees are built.

    Building ~10^5 sympy objects triggers repeated full collections that traverse the
    whole growing heap (measured at order 40: the build takes 40% longer without the
    pause). Nothing built here is cyclic; the collector's previous state is restored
    on exit.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


#: Sort key of sympy's canonical order: ``Add`` and ``Mul`` sort their arguments with
#: :meth:`sympy.core.basic.Basic.compare` (objects of different classes by class first).
_canonical_key = functools.cmp_to_key(sp.Basic.compare)


def _mul(args: Sequence[sp.Expr]) -> sp.Expr:
    """The ``Mul`` of ``args`` as given: they must already be in canonical order, with at
    most one number, first, and no two factors with a common base."""
    return sp.Mul(*args, evaluate=False)


def _add(args: Sequence[sp.Expr]) -> sp.Expr:
    """The ``Add`` of ``args`` as given: canonical order, no two alike terms, no zero."""
    return sp.Add(*args, evaluate=False)


def _rank_number_classes() -> dict[str, int]:
    """Ranks of the classes a coefficient can have, in sympy's canonical order."""
    samples = sorted((sp.S.NegativeOne, sp.Integer(2), sp.S.Half, sp.Rational(1, 3)), key=_canonical_key)
    return {type(x).__name__: rank for rank, x in enumerate(samples)}


_NUMBER_RANK = _rank_number_classes()
#: Rank of a ``Mul`` without a numeric coefficient: its first factor is a generator power,
#: and sympy orders every number class before Symbol, Pow and function classes.
_NO_COEFF = len(_NUMBER_RANK)


def _by_class(groups: Mapping[str, list[sp.Expr]]) -> list[sp.Expr]:
    """The arguments grouped by class name, the groups in sympy's canonical class order.

    Objects of different classes compare by class alone, so sorting one representative
    of each group orders the groups.
    """
    keys = sorted(groups, key=lambda name: _canonical_key(groups[name][0]))
    return [x for name in keys for x in groups[name]]


def _number(p: int, q: int) -> sp.Expr:
    return sp.Integer(p) if q == 1 else sp.Rational(p, q)


def _assemble(terms: Iterable[tuple[Any, tuple[int, ...]]], factors: Sequence[sp.Expr]) -> sp.Expr:
    """A canonical sympy ``Add`` of ``coeff * prod(factors[i] for i in codes)``.

    ``factors`` must be pairwise distinct powers of independent generators, listed in
    sympy's canonical order (so that sorting codes sorts a ``Mul``'s factors), and no
    two factors in a term may share a base. Coefficients are Python ints or objects
    with ``numerator``/``denominator``; zero coefficients are skipped. The result is
    structurally identical to building the same sum with ``Add``/``Mul``, without
    their flattening and sorting costs.
    """
    constant: sp.Expr | None = None
    singles: list[int] = []
    items: list[tuple[int, int, int, int, tuple[int, ...]]] = []
    append = items.append
    for c, codes in terms:
        if type(c) is int:
            p, q = c, 1
        else:
            p, q = int(c.numerator), int(c.denominator)
        if p == 0:
            continue
        if len(codes) > 1:
            codes = tuple(sorted(codes))
        if not codes:
            constant = _number(p, q)
        elif p == q:  # coefficient 1
            if len(codes) == 1:
                singles.append(codes[0])
            else:
                append((len(codes), _NO_COEFF, 0, 0, codes))
        else:
            if q == 1:
                ncls = _NUMBER_RANK["NegativeOne" if p == -1 else "Integer"]
            else:
                ncls = _NUMBER_RANK[type(sp.Rational(p, q)).__name__]
            append((len(codes) + 1, ncls, p, q, codes))
    items.sort()
    fac = factors
    mul_terms = [
        _mul([fac[i] for i in codes])
        if ncls == _NO_COEFF
        else _mul([_number(p, q), *[fac[i] for i in codes]])
        for _, ncls, p, q, codes in items
    ]
    groups: dict[str, list[sp.Expr]] = {}
    for i in sorted(singles):
        groups.setdefault(type(fac[i]).__name__, []).append(fac[i])
    if mul_terms:
        groups.setdefault("Mul", []).extend(mul_terms)
    args: list[sp.Expr] = [] if constant is None else [constant]
    args.extend(_by_class(groups))
    if not args:
        return sp.S.Zero
    if len(args) == 1:
        return args[0]
    return _add(args)


def _factor_table(
    pairs: Iterable[tuple[int, int]], gens: Sequence[sp.Expr]
) -> tuple[list[sp.Expr], dict[tuple[int, int], int]]:
    """Objects ``gens[i]**e`` for the given ``(i, e)`` pairs, in canonical order."""
    objs = {(i, e): (gens[i] if e == 1 else sp.Pow(gens[i], e)) for i, e in set(pairs)}
    ordered = sorted(objs, key=lambda ie: _canonical_key(objs[ie]))
    return [objs[ie] for ie in ordered], {ie: c for c, ie in enumerate(ordered)}


def polys_to_exprs(polys: Sequence[Any], gens: Sequence[sp.Expr]) -> list[sp.Expr]:
    """Expressions of polynomials ``{exponents: coefficient}`` in ``gens``, ZZ/QQ.

    With independent generators (:func:`is_generator`, pairwise distinct) the sums are
    assembled directly in sympy's canonical form, without ``Add``/``Mul`` flattening;
    otherwise ``Add`` and ``Mul`` build them.

    Parameters
    ----------
    polys : sequence of mapping
        Each maps exponent tuples (one entry per generator) to a coefficient: a Python
        int, or a rational with ``numerator``/``denominator`` (``Fraction``, sympy's
        ``QQ`` elements). Zero coefficients are skipped.
    gens : sequence of sympy.Expr
        The generators, in the order of the exponents.

    Returns
    -------
    list of sympy.Expr
        One expression per polynomial, equal (``==``) to building it with sympy.

    Examples
    --------
    >>> from fractions import Fraction
    >>> x, y = sp.symbols("x y")
    >>> polys_to_exprs([{(2, 0): 3, (0, 1): Fraction(-1, 2), (0, 0): 1}, {(1, 1): 1}], (x, y))
    [3*x**2 - y/2 + 1, x*y]
    >>> polys_to_exprs([{(1,): 2}], (x + 1,))  # not a generator: sympy's Add and Mul
    [2*x + 2]
    """
    if not _independent(gens):
        return [
            sp.Add(
                *[
                    sp.Mul(
                        _number(int(c.numerator), int(c.denominator))
                        if type(c) is not int
                        else sp.Integer(c),
                        *[g**e for g, e in zip(gens, mon, strict=True) if e],
                    )
                    for mon, c in poly.items()
                ]
            )
            for poly in polys
        ]
    pairs = {(i, e) for poly in polys for mon in poly for i, e in enumerate(mon) if e}
    factors, code = _factor_table(pairs, gens)
    out = []
    for poly in polys:
        terms = [(c, tuple(code[(i, e)] for i, e in enumerate(mon) if e)) for mon, c in poly.items()]
        out.append(_assemble(terms, factors))
    return out


def _domain_to_exprs(domain: Any, elems: Sequence[Any]) -> list[sp.Expr]:
    """Elements of a sympy domain back as expressions, cheaply where possible."""
    if domain.is_ZZ or domain.is_QQ:
        return [
            sp.Integer(int(e)) if domain.is_ZZ else _number(int(e.numerator), int(e.denominator))
            for e in elems
        ]
    if domain.is_PolynomialRing and (domain.domain.is_ZZ or domain.domain.is_QQ):
        return polys_to_exprs(elems, domain.symbols)
    return [domain.to_sympy(e) for e in elems]


# ---------------------------------------------------------------------------
# generic (independent symbols): counts by block type
# ---------------------------------------------------------------------------


#: Orders up to which the static tables of the partition enumeration are memoised.
_CACHED_ORDER = 24


@functools.lru_cache(maxsize=64)
def _coefficient_table(N: int, kind: str) -> tuple[tuple[int, ...], ...]:
    """``num[n][k]``: the numerator of the block-type coefficient, n <= N, k <= n."""
    fact = [math.factorial(i) for i in range(2 * N + 1)]
    rows = []
    for n in range(N + 1):
        row = [0] * (n + 1)
        for k in range(1, n + 1):
            if kind == "moments":
                row[k] = fact[n] // fact[n - k + 1]
            else:
                row[k] = (-1) ** (k - 1) * (fact[n + k - 2] // fact[n - 1])
        rows.append(tuple(row))
    return tuple(rows)


def _candidates(gens: tuple[sp.Expr, ...], N: int) -> tuple[list[sp.Expr], list[Any]]:
    """Factors ``gens[s-1]**m`` (``s*m <= N``) in canonical order, and ``cand[c][b]``:
    the factors with code >= c and weight ``s*m <= b``, as tuples
    ``(code, factor, bit of s, weight, m, m!)``."""
    pairs = [(s - 1, m) for s in range(1, N + 1) for m in range(1, N // s + 1)]
    factors, code_of = _factor_table(pairs, gens)
    F = len(factors)
    info: list[Any] = [None] * F
    for (i, m), c in code_of.items():
        info[c] = (c, factors[c], 1 << (i + 1), (i + 1) * m, m, math.factorial(m))
    cand: list[list[list[Any]]] = [[[] for _ in range(N + 1)] for _ in range(F + 1)]
    for c in range(F - 1, -1, -1):
        weight = info[c][3]
        for b in range(N + 1):
            nxt = cand[c + 1][b]
            cand[c][b] = [info[c], *nxt] if weight <= b else nxt
    return factors, cand


_candidates_cached = functools.lru_cache(maxsize=16)(_candidates)


def _partition_terms(
    order: int, gens: Sequence[sp.Expr], kind: str
) -> tuple[list[list[list[tuple[int, tuple[sp.Expr, ...]]]]], list[sp.Expr]]:
    """Sparse polynomials of ``m_1..m_order`` (``kind="moments"``) or ``kappa_1..``.

    Integer partitions are enumerated once, depth first, as sets of factors
    ``gens[s-1]**mult`` with distinct ``s``; a node is a partition of its running total,
    so each term of each order costs O(1) big-integer work. Factors are added in sympy's
    canonical order and terms are recorded in pre-order, so every monomial is a sorted
    tuple of factors and the monomials come out in lexicographic order.

    Returns ``terms, factors``: ``terms[n][L]`` lists ``(coefficient, factors)`` for
    the monomials of ``m_n`` (or ``kappa_n``) with ``L`` distinct factors.
    """
    N = order
    num = _coefficient_table(N, kind)
    gens = tuple(gens)
    if N <= _CACHED_ORDER:
        factors, cand = _candidates_cached(gens, N)
    else:
        factors, cand = _candidates(gens, N)
    terms: list[list[list[tuple[int, tuple[sp.Expr, ...]]]]] = [
        [[] for _ in range(n + 1)] for n in range(N + 1)
    ]
    emit = [[lst.append for lst in row] for row in terms]

    def visit(start: int, total: int, k: int, den: int, mono: tuple[sp.Expr, ...], used: int) -> None:
        length = len(mono) + 1
        for code, obj, bit, weight, m, fm in cand[start][N - total]:
            if used & bit:
                continue
            t, kk, d = total + weight, k + m, den * fm
            mono2 = mono + (obj,)
            emit[t][length]((num[t][kk] // d, mono2))
            if t < N:
                visit(code + 1, t, kk, d, mono2, used | bit)

    visit(0, 0, 0, 1, (), 0)
    # `visit` is a reference cycle (a recursive closure); let it hold nothing big, so
    # that the terms are freed by reference counting as soon as the caller drops them
    emit.clear()
    return terms, factors


def _assemble_partition_terms(
    by_length: Sequence[list[tuple[int, tuple[sp.Expr, ...]]]],
    integers: dict[int, sp.Expr] | None = None,
) -> sp.Expr:
    """Canonical ``Add`` from ``_partition_terms`` output for one order.

    Sympy orders the terms of an ``Add`` by class (Symbol < Pow < Mul < unknown
    function classes), ``Mul`` terms by number of args, then arg by arg: the numeric
    coefficient (NegativeOne before Integer, integers by value; no coefficient last),
    then the factors. The monomials arrive in lexicographic factor order, so a stable
    sort by coefficient finishes the job. ``integers`` memoises the coefficient
    objects (a few thousand distinct values for 10^5 terms), shared between calls.
    """
    if integers is None:
        integers = {}
    neg = sp.S.NegativeOne
    mul = sp.Mul
    first = itemgetter(0)
    singles: list[sp.Expr] = []
    with_coeff: dict[int, list[tuple[int, tuple[sp.Expr, ...]]]] = {}
    no_coeff: dict[int, list[tuple[sp.Expr, ...]]] = {}
    for length, lst in enumerate(by_length):
        if not lst:
            continue
        lst = sorted(lst, key=first)
        if lst[0][0] <= 1:  # there are coefficients 1 or negative ones: split them off
            ones = [mono for c, mono in lst if c == 1]
            if ones:
                lst = [item for item in lst if item[0] != 1]
                if length == 1:
                    singles.extend(mono[0] for mono in ones)
                else:
                    no_coeff[length] = ones
            if lst and lst[0][0] < 0:
                minus = [item for item in lst if item[0] == -1]
                if minus:
                    lst = minus + [item for item in lst if item[0] != -1]
        if lst:
            with_coeff[length + 1] = lst
    mul_terms: list[sp.Expr] = []
    out = mul_terms.append
    for nargs in sorted(set(with_coeff) | set(no_coeff)):
        for c, mono in with_coeff.get(nargs, ()):
            if c == -1:
                out(mul(neg, *mono, evaluate=False))
            else:
                coeff = integers.get(c)
                if coeff is None:
                    coeff = integers[c] = sp.Integer(c)
                out(mul(coeff, *mono, evaluate=False))
        for mono in no_coeff.get(nargs, ()):
            out(mul(*mono, evaluate=False))
    groups: dict[str, list[sp.Expr]] = {}
    for f in singles:  # already in canonical (code) order
        groups.setdefault(type(f).__name__, []).append(f)
    if mul_terms:
        groups.setdefault("Mul", []).extend(mul_terms)
    args = _by_class(groups)
    if len(args) == 1:
        return args[0]
    return _add(args)


def _partition_polys(order: int, gens: Sequence[sp.Expr], kind: str) -> tuple[sp.Expr, ...]:
    integers: dict[int, sp.Expr] = {}
    if order < _GC_PAUSE_ORDER:
        terms, _ = _partition_terms(order, gens, kind)
        return tuple(_assemble_partition_terms(terms[n], integers) for n in range(1, order + 1))
    with _gc_paused():
        terms, _ = _partition_terms(order, gens, kind)
        result = tuple(_assemble_partition_terms(terms[n], integers) for n in range(1, order + 1))
        del terms  # freed by reference counting before the collector runs again
    return result


#: From this order on (10^3 terms and more) the garbage collector is paused while
#: building; below it the pause costs more than it saves.
_GC_PAUSE_ORDER = 16


# ---------------------------------------------------------------------------
# specialised values: truncated power series in the smallest domain
# ---------------------------------------------------------------------------


def _moment_recursion(kap: Sequence[Any], zero: Any, one: Any) -> list[Any]:
    r"""``[m_1..m_N]`` from ``[kappa_1..kappa_N]`` via :math:`M=1+\sum_s\kappa_sz^sM^s`.

    Works on any ring elements with ``+``, ``*`` and truth value (ints, domain
    elements). ``P[s][j]`` is :math:`[z^j]M^s`; ``m_n = sum_s kappa_s P[s][n-s]`` needs
    only moments below ``n``, and each new moment extends every needed power by one
    coefficient: O(N^3) ring operations (fewer when many values vanish).
    """
    N = len(kap)
    k = [zero, *kap]
    m = [one] + [zero] * N
    P = [[one] + [zero] * N for _ in range(N + 1)]
    support = [s for s in range(1, N + 1) if k[s]]
    nonzero: list[int] = []
    for n in range(1, N + 1):
        acc = zero
        for s in support:
            if s > n:
                break
            acc = acc + k[s] * P[s][n - s]
        m[n] = acc
        if acc:
            nonzero.append(n)
        for s in range(1, N - n + 1):
            prev = P[s - 1]
            acc = prev[n]
            for i in nonzero:
                if prev[n - i]:
                    acc = acc + m[i] * prev[n - i]
            P[s][n] = acc
    return m[1:]


def _cumulant_recursion(mom: Sequence[Any], zero: Any, one: Any) -> list[Any]:
    r"""``[kappa_1..kappa_N]`` from ``[m_1..m_N]``.

    :math:`\kappa_n=m_n-\sum_{s<n}\kappa_s[z^{n-s}]M^s`, with ``P[s][j]`` as above.
    """
    N = len(mom)
    m = [one, *mom]
    nonzero = [i for i in range(1, N + 1) if m[i]]
    P: list[list[Any]] = [[one] + [zero] * N]  # P[s][j] = [z^j] M^s, for s + j <= N
    for s in range(1, N):
        prev = P[s - 1]
        row = [one] + [zero] * (N - s)
        for j in range(1, N - s + 1):
            acc = prev[j]
            for i in nonzero:
                if i > j:
                    break
                if prev[j - i]:
                    acc = acc + m[i] * prev[j - i]
            row[j] = acc
        P.append(row)
    kap = [zero] * (N + 1)
    for n in range(1, N + 1):
        acc = m[n]
        for s in range(1, n):
            if kap[s]:
                acc = acc - kap[s] * P[s][n - s]
        kap[n] = acc
    return kap[1:]


#: Limits of the Kronecker route (packed size in bits, number of monomial slots);
#: beyond them (many variables of high degree) sympy's sparse polynomials are used.
_KRONECKER_MAX_BITS = 1 << 22
_KRONECKER_MAX_SLOTS = 1 << 12


def _coefficient_dicts(domain: Any, elems: Sequence[Any]) -> list[dict[tuple[int, ...], Fraction]] | None:
    """``{exponents: Fraction}`` for ZZ/QQ numbers or polynomials, else ``None``."""
    if domain.is_ZZ or domain.is_QQ:
        return [{(): Fraction(int(e.numerator), int(e.denominator))} if e else {} for e in elems]
    if domain.is_PolynomialRing and (domain.domain.is_ZZ or domain.domain.is_QQ):
        return [{mon: Fraction(int(c.numerator), int(c.denominator)) for mon, c in e.items()} for e in elems]
    return None


def _kronecker(values: Sequence[sp.Expr], direction: str) -> tuple[sp.Expr, ...] | None:
    """The recursion on Python integers by Kronecker substitution, or ``None``.

    Both directions are homogeneous (``m_n`` has weight ``n`` in the ``kappa_s``, which
    have weight ``s``, and conversely), so scaling value ``s`` by ``L**s`` (``L`` the
    lcm of the denominators) makes every input integral and multiplies output ``n`` by
    ``L**n``. A polynomial in the variables ``x`` is then replaced by its value at
    ``x_i = 2**(b*stride_i)``, an evaluation, hence a ring homomorphism: the recursion
    runs on plain integers (C-speed big-integer products). The outputs are read back
    digit by digit; this is exact because every output has degree in ``x_i`` at most
    ``floor(N * max_s deg_i(value_s)/s)`` (the strides leave room for that) and
    coefficients below the bound computed by running the same recursion on the
    l1-norms of the values (``b`` leaves room for twice that).
    """
    N = len(values)
    domain, elems = construct_domain(list(values))
    dicts = _coefficient_dicts(domain, elems)
    if dicts is None:
        return None
    gens = tuple(domain.symbols) if domain.is_PolynomialRing else ()
    nvars = len(gens)
    scale = math.lcm(1, *(c.denominator for d in dicts for c in d.values()))
    scaled = [{mon: int(c * scale**s) for mon, c in d.items()} for s, d in enumerate(dicts, start=1)]
    recursion = _moment_recursion if direction == "moments" else _cumulant_recursion
    if nvars == 0:
        outs = recursion([d.get((), 0) for d in scaled], 0, 1)
        consts = [{(): Fraction(v, scale**n)} for n, v in enumerate(outs, start=1)]
        return tuple(polys_to_exprs(consts, gens))
    # degree bounds of the outputs, variable by variable
    bounds = []
    for x in range(nvars):
        rate = max(
            (Fraction(max(mon[x] for mon in d), s) for s, d in enumerate(scaled, start=1) if d),
            default=Fraction(0),
        )
        bounds.append(math.floor(N * rate))
    # coefficient bound: the recursion on l1-norms (with signs flipped for cumulants,
    # so that every term of the inverse formula counts positively)
    norms = [sum(abs(c) for c in d.values()) for d in scaled]
    if direction == "moments":
        cbound = max(recursion(norms, 0, 1))
    else:
        cbound = max(-v for v in recursion([-a for a in norms], 0, 1))
    bits = -(-(cbound.bit_length() + 2) // 8) * 8
    strides = [1]
    for x in range(nvars - 1):
        strides.append(strides[-1] * (bounds[x] + 1))
    slots = strides[-1] * (bounds[-1] + 1)
    if slots * bits > _KRONECKER_MAX_BITS or slots > _KRONECKER_MAX_SLOTS:
        return None

    def pack(d: dict[tuple[int, ...], int]) -> int:
        v = 0
        for mon, c in d.items():
            v += c << (bits * sum(e * st for e, st in zip(mon, strides, strict=True)))
        return v

    packed_out = recursion([pack(d) for d in scaled], 0, 1)
    # unpack: add half a slot to every digit, then read unsigned digits
    nbytes = bits // 8
    half = 1 << (bits - 1)
    offset = int.from_bytes(half.to_bytes(nbytes, "little") * slots, "little")
    result_dicts: list[dict[tuple[int, ...], Fraction | int]] = []
    for n, v in enumerate(packed_out, start=1):
        raw = (v + offset).to_bytes(slots * nbytes, "little")
        den = scale**n
        d: dict[tuple[int, ...], Fraction | int] = {}
        for idx in range(slots):
            c = int.from_bytes(raw[idx * nbytes : (idx + 1) * nbytes], "little") - half
            if c:
                mon = tuple((idx // st) % (bd + 1) for st, bd in zip(strides, bounds, strict=True))
                d[mon] = c if den == 1 else Fraction(c, den)
        result_dicts.append(d)
    return tuple(polys_to_exprs(result_dicts, gens))


def _series(values: Sequence[sp.Expr], direction: str) -> tuple[sp.Expr, ...]:
    """Specialised values: integers by Kronecker substitution, else in their domain."""
    fast = _kronecker(values, direction)
    if fast is not None:
        return fast
    domain, elems = construct_domain(list(values))
    recursion = _moment_recursion if direction == "moments" else _cumulant_recursion
    return tuple(_domain_to_exprs(domain, recursion(elems, domain.zero, domain.one)))


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


def moments_from_cumulants(order: int, cumulants: ValueSource = None) -> tuple[sp.Expr, ...]:
    r"""Moments :math:`(m_1,\dots,m_{order})` of one variable from its free cumulants.

    Parameters
    ----------
    order : int
        Highest moment, at least 1.
    cumulants : None, sequence or callable, optional
        ``None`` for the symbols of :func:`cumulant_symbols`; a sequence of at least
        ``order`` numbers or sympy expressions (:math:`\kappa_1` first); or a callable
        ``n -> kappa_n``. Floats are read as the decimals they print as.

    Returns
    -------
    tuple of sympy.Expr
        Exact, expanded: integers, rationals or polynomials in the values' symbols
        (rational functions if the values are).

    Raises
    ------
    InvalidArgument
        For an order that is not an integer >= 1, too few values, text, or
        noncommutative values.

    Notes
    -----
    Independent symbols (Symbols, undefined functions, ``tr(...)``; pairwise distinct)
    use Kreweras' counts by block type, one term per integer partition, built in
    canonical form: the cost is proportional to the output, which has
    :math:`\sum_{n\le order}p(n)` terms (215 307 at order 40, built in a few
    seconds, mostly in sympy's ``Mul`` constructor, about 10 microseconds a term; see
    ``benchmarks/bench_moments.py``). Anything else (numbers,
    ``q**(n-1)``, zeros, ...) iterates the functional equation
    :math:`M(z)=1+\sum_s\kappa_sz^sM(z)^s` on truncated series, O(order^3)
    operations: on Python integers by Kronecker substitution when the values are
    polynomials over the rationals in few variables, otherwise in the smallest sympy
    domain holding them.

    Examples
    --------
    >>> moments_from_cumulants(6, [0, 1, 0, 0, 0, 0])   # semicircle: Catalan numbers
    (0, 1, 0, 2, 0, 5)
    >>> moments_from_cumulants(2, [1])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: cumulants has 1 entries but order 2 needs 2; ...
    """
    n = check_order(order)
    if cumulants is None:
        return _partition_polys(n, cumulant_symbols(n), "moments")
    kappas = exact_values(cumulants, n, "cumulants")
    if _independent(kappas):
        return _partition_polys(n, kappas, "moments")
    return _series(kappas, "moments")


def cumulants_from_moments(order: int, moments: ValueSource = None) -> tuple[sp.Expr, ...]:
    r"""Free cumulants :math:`(\kappa_1,\dots,\kappa_{order})` from the moments.

    The inverse of :func:`moments_from_cumulants`, with the same conventions:
    ``moments`` is ``None`` (symbols of :func:`moment_symbols`), a sequence starting at
    :math:`m_1`, or a callable ``n -> m_n``.

    Notes
    -----
    Independent symbols use the closed form
    :math:`\kappa_n=\sum_\lambda(-1)^{k-1}\frac{(n+k-2)!}{(n-1)!\prod\mu_i!}m_\lambda`
    (see :func:`cumulant_coefficient`); specialised values use
    :math:`\kappa_n=m_n-\sum_{s<n}\kappa_s[z^{n-s}]M(z)^s` on truncated series.

    Examples
    --------
    >>> cumulants_from_moments(5, [1, 2, 5, 14, 42])   # Marchenko-Pastur, q = 1
    (1, 1, 1, 1, 1)
    >>> import sympy as sp
    >>> from detequiv.derivations.quantities import tr
    >>> A = sp.Symbol("A", commutative=False)
    >>> cumulants_from_moments(2, lambda n: tr(A**n))
    (tr(A), -tr(A)**2 + tr(A**2))
    """
    n = check_order(order)
    if moments is None:
        return _partition_polys(n, moment_symbols(n), "cumulants")
    values = exact_values(moments, n, "moments")
    if _independent(values):
        return _partition_polys(n, values, "cumulants")
    return _series(values, "cumulants")
