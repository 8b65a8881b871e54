r"""The exact witness of a one-point equivalent: 1/lambda series against diagram sums.

MATH.md 6.1: with :math:`x=1/\lambda` and :math:`u=\kappa/\lambda`, each fixed point
:math:`\kappa=\lambda\,G(\mathrm{df}_1)` is solved as a truncated power series in
:math:`x` by iterating :math:`u\leftarrow G(\delta(x/u))`,
:math:`\delta(v)=\sum_{j\ge1}(-1)^{j-1}\operatorname{tr}(Y^j)v^j` (each pass fixes one
more order). The equivalent :math:`\kappa(\kappa+Y)^{-1}=\sum_j(-Y)^jv^j`,
:math:`v=x/u`, contracted with a test letter ``M``, must have the coefficient
:math:`(-1)^k\lim\operatorname{tr}(MA^k)` at :math:`x^k`, where
:math:`\lambda(\lambda+A)^{-1}` is the input and the limit is the planar diagram sum of
:func:`~detequiv.derivations.mixed.mixed_moment`. Square roots are letters of their
own: :math:`\Sigma=(\Sigma^{1/2})^2` inside every trace, so both sides use one alphabet.

Resolvents of sums (additive layers, mixed chains) go through
:func:`general_series_coefficients`: fixed points of any rational form in ``lam``, the
ridges and ``df1`` are evaluated on truncated Laurent series in :math:`x` with tracked
precision and iterated to a checked fixed point; the exact side is
:func:`~detequiv.derivations.mixed.polynomial_moment` of :math:`M(-A)^k` with ``A`` the
noncommutative polynomial of the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sympy as sp

from ..errors import InvalidArgument, InvalidWord
from .algebra import contains_sum, gaussian_gram_to_wishart, product_factors, resolvent_parts
from .cumulants import check_order
from .derivation import solve_order
from .expressions import (
    Deterministic,
    FreeMatrix,
    Identity,
    MatrixExpr,
    Product,
    Rectangular,
    Sqrt,
    Sum,
    Transpose,
)
from .laurent import LaurentRing
from .mixed import mixed_moment, polynomial_moment
from .quantities import df1, tr
from .results import Evidence
from .transforms import r_series, s_series

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from .onepoint import OnePoint

__all__ = ["check_series", "series_coefficients", "general_series_coefficients"]

TEST_LETTER = sp.Symbol("M_test", commutative=False)


def _half(name: str) -> sp.Symbol:
    return sp.Symbol(f"{name}_sqrt", commutative=False)


def _transposed(name: str) -> sp.Symbol:
    """The letter of the transpose of a non-symmetric matrix (a letter of its own)."""
    return sp.Symbol(f"{name}.T", commutative=False)


Shapes = dict[sp.Symbol, tuple[sp.Expr, sp.Expr]]


def _rect_shapes(m: sp.Basic) -> Shapes:
    """Letters of the rectangular matrices in a sympy matrix expression, with their shapes."""
    out: Shapes = {}
    for a in m.atoms(sp.MatrixSymbol):
        r, c = a.shape
        if r != c:
            out[sp.Symbol(a.name, commutative=False)] = (r, c)
            out[_transposed(a.name)] = (c, r)
    return out


def _rotated(letters: Sequence[sp.Symbol], rect: Shapes) -> tuple[sp.Expr, tuple[sp.Symbol, ...]]:
    r"""``tr`` of a word with rectangular letters, rotated into the inner space.

    With ``F`` of shape ``N x D``, :math:`\operatorname{tr}_N(w)=\frac DN\operatorname{tr}_D(w')`
    where :math:`w'` is the cyclic rotation of :math:`w` that starts in D-space; every
    excursion ``F.T ... F`` into N-space becomes one compound deterministic letter of
    D-space. Returns ``(D/N, w')`` (``(1, w)`` when nothing is rectangular), so both sides of
    a series check name the same traces.
    """
    letters = tuple(letters)
    where = [i for i, x in enumerate(letters) if x in rect]
    if not where:
        return sp.S.One, letters
    inner = {rect[x][1] for x in rect if not x.name.endswith(".T")}
    if len(inner) != 1:
        raise InvalidWord(f"rectangular letters with several inner spaces {sorted(map(str, inner))}")
    (d_in,) = inner
    n = len(letters)
    space = [None] * (n + 1)
    space[where[0]] = rect[letters[where[0]]][0]
    for step in range(n):
        i = (where[0] + step) % n
        after = rect[letters[i]][1] if letters[i] in rect else space[i]
        space[(i + 1) % n] = after
    cuts = [i for i in range(n) if space[i] == d_in]
    base = space[0]
    out: list[sp.Symbol] = []
    for a, b in zip(cuts, cuts[1:] + [cuts[0] + n], strict=True):
        group = [letters[k % n] for k in range(a, b)]
        if len(group) == 1 and group[0] not in rect:
            out.append(group[0])
        else:
            out.append(sp.Symbol("(" + "*".join(x.name for x in group) + ")", commutative=False))
    return sp.simplify(d_in / base), tuple(out)


def _trace_rect(letters: Sequence[sp.Symbol], rect: Shapes) -> sp.Expr:
    factor, word = _rotated(letters, rect)
    return factor * tr(sp.Mul(*word)) if word else factor


def _sqrt_names_sympy(expr: sp.Basic) -> set[str]:
    out = set()
    for p in expr.atoms(sp.MatPow):
        if isinstance(p.args[0], sp.MatrixSymbol) and not sp.sympify(p.args[1]).is_integer:
            out.add(p.args[0].name)
    return out


def _sympy_letters(m: sp.Basic, sqrt_names: set[str]) -> tuple[sp.Symbol, ...]:
    """Letters of a product of matrix symbols and their half-integer powers."""
    if isinstance(m, sp.Identity):
        return ()
    if isinstance(m, sp.MatrixSymbol):
        if m.name in sqrt_names:
            return (_half(m.name),) * 2
        return (sp.Symbol(m.name, commutative=False),)
    if isinstance(m, sp.Transpose) and isinstance(m.arg, sp.MatrixSymbol):
        return (_transposed(m.arg.name),)
    if isinstance(m, sp.MatPow):
        base, exp = m.args
        if isinstance(base, sp.MatrixSymbol) and (2 * exp).is_Integer and exp > 0:
            if base.name in sqrt_names:
                return (_half(base.name),) * int(2 * exp)
            if exp.is_Integer:
                return (sp.Symbol(base.name, commutative=False),) * int(exp)
        raise InvalidWord(f"cannot write {m} as a word of letters")
    if isinstance(m, sp.MatMul):
        coeff, mats = m.as_coeff_matrices()
        if coeff != 1:
            raise InvalidWord(
                f"{m} has the scalar {coeff}; the matrix Y of df1(Y, .) must be a plain product"
            )
        return tuple(x for f in mats for x in _sympy_letters(f, sqrt_names))
    raise InvalidWord(f"cannot write {m} as a word of letters")


def factor_letters(
    factors: Sequence[MatrixExpr], sqrt_names: set[str]
) -> tuple[tuple[sp.Symbol, ...], dict[sp.Symbol, Any]]:
    letters: list[sp.Symbol] = []
    laws: dict[sp.Symbol, Any] = {}
    for f in factors:
        if isinstance(f, FreeMatrix):
            s = sp.Symbol(f.name, commutative=False)
            letters.append(s)
            laws[s] = f.law
        elif isinstance(f, Sqrt):
            letters.append(_half(f.base.name))
        elif isinstance(f, Deterministic):
            letters.extend(_sympy_letters(f.to_sympy(), sqrt_names))
        elif isinstance(f, Transpose) and isinstance(f.arg, (Deterministic, Rectangular)):
            letters.append(_transposed(f.arg.name))
        elif isinstance(f, Rectangular):
            letters.append(sp.Symbol(f.name, commutative=False))
        else:  # pragma: no cover - derive rejects other factors first
            raise InvalidWord(f"no letters for {f}")
    return tuple(letters), laws


# -- exact arithmetic: a polynomial ring with an inverse generator per symbol ------


# -- truncated power series in x, as coefficient lists -------------------------


def _mul(a: list[Any], b: list[Any], K: int, zero: Any) -> list[Any]:
    out = []
    for k in range(K + 1):
        acc = zero
        for i in range(k + 1):
            if a[i] and b[k - i]:
                acc = acc + a[i] * b[k - i]
        out.append(acc)
    return out


def _inv(a: list[Any], K: int, alg: LaurentRing) -> list[Any]:
    if not a[0]:
        raise InvalidArgument("the fixed point has kappa/lam -> 0 as lam -> infinity; no 1/lam series")
    inv0 = alg.inv(a[0])
    b = [inv0]
    for k in range(1, K + 1):
        acc = alg.R.zero
        for i in range(1, k + 1):
            if a[i] and b[k - i]:
                acc = acc + a[i] * b[k - i]
        b.append(-(inv0 * acc))
    return b


def _powers(v: list[Any], K: int, alg: LaurentRing) -> list[list[Any]]:
    zero = alg.R.zero
    out = [[alg.R.one] + [zero] * K]
    for _ in range(K):
        out.append(_mul(out[-1], v, K, zero))
    return out


def _g_polynomial(g: sp.Expr, ds: Sequence[sp.Symbol], K: int) -> list[tuple[tuple[int, ...], sp.Expr]]:
    """Taylor polynomial of ``g`` in the variables ``ds`` to total degree ``K``."""
    if not ds:
        return [((), sp.expand(g))]
    t = sp.Dummy("t")
    scaled = g.xreplace({d: t * d for d in ds})
    poly = sp.expand(sp.series(scaled, t, 0, K + 1).removeO().subs(t, 1))
    return [(m, sp.expand(c)) for m, c in sp.Poly(poly, *ds).terms()]


def _evaluate_g(
    terms: list[tuple[tuple[int, ...], Any]], deltas: list[list[list[Any]]], K: int, alg: LaurentRing
) -> list[Any]:
    """``sum_m c_m prod_i delta_i^{m_i}`` with ``deltas[i][e]`` the e-th power series."""
    zero = alg.R.zero
    total = [zero] * (K + 1)
    for mon, c in terms:
        s = [c] + [zero] * K
        for i, e in enumerate(mon):
            if e:
                s = _mul(s, deltas[i][e], K, zero)
        total = [a + b for a, b in zip(total, s, strict=True)]
    return total


def _moments(letters: tuple[sp.Symbol, ...], K: int, rect: Shapes | None = None) -> list[sp.Expr]:
    if rect:
        return [_trace_rect(letters * j, rect) if letters else sp.S.One for j in range(K + 1)]
    return [tr(sp.Mul(*(letters * j))) if letters else sp.S.One for j in range(K + 1)]


def _df_series(moments: list[Any], u: list[Any], K: int, alg: LaurentRing) -> list[list[Any]]:
    """Powers of ``df1(Y, kappa)`` as series in x, with ``kappa = u / x``."""
    v = [alg.R.zero] + _inv(u, K, alg)[:K]
    vp = _powers(v, K, alg)
    delta = [alg.R.zero] * (K + 1)
    for j in range(1, K + 1):
        c = moments[j] if j % 2 else -moments[j]
        delta = [a + c * b for a, b in zip(delta, vp[j], strict=True)]
    return _powers(delta, K, alg)


def prepare_fixed_points(eq: OnePoint, K: int, sqrt_names: set[str]) -> list[tuple[Any, ...]]:
    """For each fixed point in solve order: symbol, implicit, Taylor terms, df targets."""
    lam = eq.lam
    symbols = {fp.symbol for fp in eq.fixed_points}
    out = []
    for fp, rhs, atoms, ds in _series_ready(eq, K):
        g = rhs / lam
        g = sp.simplify(g) if lam in g.free_symbols else g
        bad = g.free_symbols & (symbols | {lam})
        if bad or any(isinstance(f, sp.core.function.AppliedUndef) for f in g.atoms(sp.Function)):
            raise InvalidArgument(
                f"the fixed point {fp} is not of the form kappa = lam * G(df1(...)) with G "
                f"free of {sorted(map(str, bad)) or 'undefined functions'}; cannot expand it in 1/lam"
            )
        targets = []
        for a in atoms:
            y, kappa = a.args
            if kappa not in symbols:
                raise InvalidArgument(f"{a} uses {kappa}, which is not a fixed-point symbol")
            targets.append((_moments(_sympy_letters(y, sqrt_names), K, _rect_shapes(y)), kappa))
        out.append((fp.symbol, fp.implicit, _g_polynomial(g, ds, K), targets))
    return out


def solve_fixed_point_series(
    prepared: list[tuple[Any, ...]], K: int, alg: LaurentRing
) -> dict[sp.Symbol, list[Any]]:
    solved: dict[sp.Symbol, list[Any]] = {}
    zero = alg.R.zero
    for symbol, implicit, terms_expr, targets in prepared:
        terms = [(m, alg.to(c)) for m, c in terms_expr]
        moments = [([alg.to(x) for x in ms], kappa) for ms, kappa in targets]
        const = sum((c for m, c in terms if not any(m)), zero)
        u = [const] + [zero] * K
        for _ in range(K + 1 if implicit else 1):
            current = {**solved, symbol: u}
            deltas = [_df_series(ms, current[kappa], K, alg) for ms, kappa in moments]
            u = _evaluate_g(terms, deltas, K, alg)
        solved[symbol] = u
    return solved


def series_coefficients(eq: OnePoint, order: int) -> tuple[tuple[sp.Expr, sp.Expr], ...]:
    """``(equivalent, diagram sum)`` coefficients of ``lam^0 .. lam^-order`` of ``tr(M .)``."""
    K = check_order(order)
    _, res = resolvent_parts(eq.random)
    if eq.isotropic is not None:
        return isotropic_series_coefficients(eq, order)
    if _has_sum(res.arg):
        return general_series_coefficients(eq, order)
    dim = res.shape[0]
    rebuilt = eq.prefactor * eq.ridge * (eq.matrix + eq.ridge * sp.Identity(dim)).inverse()
    if rebuilt != eq.deterministic:
        raise InvalidArgument(
            f"deterministic = {eq.deterministic} is not prefactor * ridge (ridge I + matrix)^-1 = "
            f"{rebuilt}; the series check expands (prefactor, ridge, matrix), so change those fields"
        )
    coeff, factors = product_factors(res.arg)
    coeff, factors, _ = gaussian_gram_to_wishart(coeff, factors)
    sqrt_names = {f.base.name for f in factors if isinstance(f, Sqrt)}
    sqrt_names |= _sqrt_names_sympy(eq.matrix)
    for fp in eq.fixed_points:
        sqrt_names |= _sqrt_names_sympy(fp.rhs)
    word, laws = factor_letters(factors, sqrt_names)
    rect = _rect_shapes(res.arg.to_sympy())

    prepared = prepare_fixed_points(eq, K, sqrt_names)
    ratio = None
    if not any(p[0] == eq.ridge for p in prepared):
        ratio = sp.simplify(eq.ridge / eq.lam)
        if eq.lam in ratio.free_symbols:
            raise InvalidArgument(f"the ridge {eq.ridge} is not proportional to {eq.lam}")
    exprs: list[Any] = [ratio or 1]
    for _, _, terms, targets in prepared:
        exprs += [c for _, c in terms] + [x for ms, _ in targets for x in ms]
    alg = LaurentRing.of(exprs)
    solved = solve_fixed_point_series(prepared, K, alg)
    u = solved[eq.ridge] if ratio is None else [alg.to(ratio)] + [alg.R.zero] * K
    v = [alg.R.zero] + _inv(u, K, alg)[:K]
    vp = _powers(v, K, alg)
    y_letters = _sympy_letters(eq.matrix, sqrt_names)
    m = TEST_LETTER
    out = []
    for k in range(K + 1):
        eqv = sp.expand(
            sp.Add(
                *[
                    (-1) ** j * alg.expr(vp[j][k]) * _trace_rect((m, *(y_letters * j)), rect)
                    for j in range(k + 1)
                ]
            )
        )
        factor, rotated = _rotated((m, *(word * k)), rect)
        dia = sp.expand((-coeff) ** k * factor * mixed_moment(sp.Mul(*rotated), laws))
        out.append((eqv, dia))
    return tuple(out)


def isotropic_series_coefficients(eq: OnePoint, order: int) -> tuple[tuple[sp.Expr, sp.Expr], ...]:
    r""":func:`series_coefficients` for an isotropic equivalent ``c tau I_N`` of ``lam (lam + A)^{-1}``,
    ``A = s Z Y Z^T`` (:func:`~detequiv.derivations.onepoint.outer_isotropy`).

    Equivalent side: the ridges of the rotated problem are solved as series in ``1/lam``
    from their fixed points, ``df1`` is expanded, and the claimed ``tau`` equation is
    evaluated on them. Exact side, from the input alone: for :math:`k\ge1`,
    :math:`\operatorname{tr}_N(MA^k)=\operatorname{tr}(M)\operatorname{tr}_N(A^k)` exactly in
    expectation (``Z -> O Z`` with Haar ``O`` leaves the law unchanged and
    :math:`\mathbb E_O\,OBO^\top=\operatorname{tr}(B)I`), and
    :math:`\operatorname{tr}_N(A^k)=\frac DN\operatorname{tr}_D\big((sYZ^\top Z)^k\big)` by
    cyclicity; the latter is the planar diagram sum of
    :func:`~detequiv.derivations.mixed.mixed_moment` with ``Z^T Z`` a white Wishart.
    """

    K = check_order(order)
    iso = eq.isotropic
    assert iso is not None
    inner = iso.inner
    c_out, res = resolvent_parts(eq.random)
    lam = eq.lam
    scale = sp.simplify(eq.prefactor / iso.tau)
    if lam in scale.free_symbols or iso.tau in scale.free_symbols:
        raise InvalidArgument(f"the prefactor {eq.prefactor} is not a constant times {iso.tau}")
    if inner.prefactor != 1 or inner.isotropic is not None:
        raise InvalidArgument(
            "the series check of an isotropic equivalent needs a rotated problem without additive layers"
        )
    tau_fp = next(fp for fp in eq.fixed_points if fp.symbol == iso.tau)
    # exact side, from the input: A = s Z Y Z^T
    coeff, factors = product_factors(res.arg)
    z = iso.gaussian
    n_dim, d_dim = z.dims
    rotated = (*factors[1:-1], factors[-1], factors[0])
    coeff, rotated, _ = gaussian_gram_to_wishart(coeff, rotated)
    sqrt_names = {f.base.name for f in rotated if isinstance(f, Sqrt)}
    sqrt_names |= _sqrt_names_sympy(inner.matrix)
    for fp in eq.fixed_points:
        sqrt_names |= _sqrt_names_sympy(fp.rhs)
    word, laws = factor_letters(rotated, sqrt_names)
    m = TEST_LETTER
    # equivalent side: ridges of the rotated problem, then the tau equation
    prepared = prepare_fixed_points(inner, K, sqrt_names)
    atoms = sorted(tau_fp.rhs.atoms(df1), key=str)
    targets = [(_moments(_sympy_letters(a.args[0], sqrt_names), K), a.args[1]) for a in atoms]
    exprs: list[Any] = [tau_fp.rhs.xreplace({a: 0 for a in atoms}), scale]
    for _, _, terms, tg in prepared:
        exprs += [c for _, c in terms] + [x for ms, _ in tg for x in ms]
    exprs += [x for ms, _ in targets for x in ms]
    alg = LaurentRing.of(exprs)
    solved = solve_fixed_point_series(prepared, K, alg)
    n = K + 1
    env: dict[sp.Basic, Series] = {lam: (-1, [alg.R.one] + [alg.R.zero] * (n - 1))}
    env.update({s: (-1, list(u)) for s, u in solved.items()})
    for a, (ms, kappa) in zip(atoms, targets, strict=True):
        if kappa not in solved:
            raise InvalidArgument(f"{a} uses {kappa}, which the rotated problem does not solve")
        env[a] = (0, _df_series([alg.to(x) for x in ms], solved[kappa], K, alg)[1])
    shift, cs = series_eval(tau_fp.rhs, env, n, alg)
    if shift < 0 and any(cs[:-shift]):
        raise InvalidArgument(f"{iso.tau} has a pole at lam = infinity; no 1/lam series")
    cs = cs[-shift:] if shift < 0 else [alg.R.zero] * shift + cs
    out = []
    for k in range(K + 1):
        eqv = sp.expand(scale * alg.expr(cs[k]) * tr(m))
        if k == 0:
            dia = sp.expand(scale * tr(m))
        else:
            moment = mixed_moment(sp.Mul(*(word * k)), laws)
            dia = sp.expand(scale * tr(m) * d_dim / n_dim * (-coeff) ** k * moment)
        out.append((eqv, dia))
    return tuple(out)


def _has_sum(m: Any) -> bool:

    return contains_sum(m)


def _equal(a: sp.Expr, b: sp.Expr) -> bool:
    diff = sp.expand(a - b)
    if diff == 0:
        return True
    return bool(sp.cancel(sp.together(diff)) == 0)


def check_series(eq: OnePoint, order: int) -> SeriesCheck:
    """Compare the equivalent's 1/lam series with the diagram sums (see module doc)."""
    coefficients = series_coefficients(eq, order)
    first = next((k for k, (a, b) in enumerate(coefficients) if not _equal(a, b)), None)
    return SeriesCheck(order=order, coefficients=coefficients, first_failure=first, test_matrix=TEST_LETTER)


# -- the general path: resolvents of sums, fixed points of any algebraic form --------
#
# A truncated series is a pair (shift, coefficients): x**shift * sum_k c_k x**k, known
# through x**(shift + len - 1). Products, sums, integer powers and inverses (of series
# whose leading coefficient is a monomial of the ring) keep track of that precision, so
# expressions such as lam + R(-(1 - df1)/kappa) with lam = 1/x, kappa = u/x evaluate
# exactly; a result that is not known to the requested order raises.

Series = tuple[int, list[Any]]


def _s_const(c: Any, n: int, alg: LaurentRing) -> Series:
    return (0, [c] + [alg.R.zero] * (n - 1))


def series_add(a: Series, b: Series, alg: LaurentRing) -> Series:
    shift = min(a[0], b[0])
    end = min(a[0] + len(a[1]), b[0] + len(b[1]))
    out = [alg.R.zero] * max(end - shift, 0)
    for s, cs in (a, b):
        for i, c in enumerate(cs):
            k = s + i - shift
            if k < len(out) and c:
                out[k] = out[k] + c
    return (shift, out)


def series_mul(a: Series, b: Series, alg: LaurentRing) -> Series:
    n = min(len(a[1]), len(b[1]))
    if n == 0:
        return (a[0] + b[0], [])
    return (a[0] + b[0], [alg.reduce(c) for c in _mul(a[1][:n], b[1][:n], n - 1, alg.R.zero)])


def series_inv(a: Series, alg: LaurentRing) -> Series:
    shift, cs = a
    i = 0
    while i < len(cs) and not cs[i]:
        i += 1
    if i == len(cs):
        raise InvalidArgument("division by a series that vanishes to the working order")
    cs = cs[i:]
    return (-(shift + i), [alg.reduce(c) for c in _inv(cs, len(cs) - 1, alg)])


def series_pow(a: Series, n: int, alg: LaurentRing) -> Series:
    if n < 0:
        return series_pow(series_inv(a, alg), -n, alg)
    out = _s_const(alg.R.one, len(a[1]), alg)
    for _ in range(n):
        out = series_mul(out, a, alg)
    return out


def series_eval(expr: sp.Expr, env: dict[sp.Basic, Series], n: int, alg: LaurentRing) -> Series:
    """Evaluate a sympy expression whose leaves are ring atoms or series in ``env``."""
    if expr in env:
        return env[expr]
    if not (expr.free_symbols & set(env)):
        return _s_const(alg.to(expr), n, alg)
    if isinstance(expr, sp.Add):
        out = series_eval(expr.args[0], env, n, alg)
        for a in expr.args[1:]:
            out = series_add(out, series_eval(a, env, n, alg), alg)
        return out
    if isinstance(expr, sp.Mul):
        out = series_eval(expr.args[0], env, n, alg)
        for a in expr.args[1:]:
            out = series_mul(out, series_eval(a, env, n, alg), alg)
        return out
    if isinstance(expr, sp.Pow) and expr.exp.is_Integer:
        return series_pow(series_eval(expr.base, env, n, alg), int(expr.exp), alg)
    raise InvalidArgument(f"cannot expand {expr} as a power series in 1/lam (only rational expressions)")


def _sympy_poly(m: sp.Basic, sqrt_names: set[str]) -> sp.Expr:
    """A sympy matrix expression (sums, scalar multiples, products) as a noncommutative polynomial."""
    if isinstance(m, sp.MatAdd):
        return sp.Add(*[_sympy_poly(a, sqrt_names) for a in m.args])
    if isinstance(m, sp.MatMul):
        coeff, mats = m.as_coeff_matrices()
        return coeff * sp.Mul(*[_sympy_poly(f, sqrt_names) for f in mats])
    if isinstance(m, sp.Identity):
        return sp.S.One
    return sp.Mul(*_sympy_letters(m, sqrt_names))


def _tr_poly(poly: sp.Expr) -> sp.Expr:
    """``tr`` of a noncommutative polynomial, by linearity."""
    out = []
    for term in sp.Add.make_args(sp.expand(poly)):
        c, nc = term.args_cnc()
        out.append(sp.Mul(*c) * (tr(sp.Mul(*nc)) if nc else sp.S.One))
    return sp.Add(*out)


def _expr_poly(m: MatrixExpr, sqrt_names: set[str], laws: dict[sp.Symbol, Any]) -> sp.Expr:
    """The random expression as a noncommutative polynomial in letters (Gram pairs -> Wishart)."""
    if isinstance(m, Sum):
        return sp.Add(*[_expr_poly(t, sqrt_names, laws) for t in m.terms])
    coeff, factors = (m.coeff, m.factors) if isinstance(m, Product) else (sp.S.One, (m,))
    factors = tuple(f for f in factors if not isinstance(f, Identity))
    coeff, factors, _ = gaussian_gram_to_wishart(coeff, factors)
    out = coeff
    for f in factors:
        if isinstance(f, Sum):
            out = out * _expr_poly(f, sqrt_names, laws)
        else:
            letters, f_laws = factor_letters((f,), sqrt_names)
            laws.update(f_laws)
            out = out * sp.Mul(*letters)
    return out


def _sqrt_names_expr(m: MatrixExpr) -> set[str]:
    return {x.base.name for x in m.leaves() if isinstance(x, Sqrt)}


def _series_ready(eq: OnePoint, K: int) -> list[tuple[Any, sp.Expr, list[Any], list[sp.Dummy]]]:
    """Each fixed point in solve order with the undefined transforms ``S_B``, ``R_B`` replaced
    by their series truncated at ``K + 1`` and every ``df1`` atom by a dummy:
    ``(fixed point, rhs, df1 atoms, dummies)``."""
    tvar = sp.Symbol("t_series")
    replacements: dict[Any, sp.Expr] = {}
    for name, law in eq.transforms:
        replacements[sp.Function(f"S_{name}")] = s_series(law.moments(K + 1), K + 1, tvar)
        replacements[sp.Function(f"R_{name}")] = r_series(law.cumulants(K + 1), K + 1, tvar)
    out = []
    for fp in solve_order(eq.fixed_points):
        rhs = fp.rhs
        for func, poly in replacements.items():
            if rhs.atoms(func):
                rhs = rhs.replace(func, lambda a, poly=poly: poly.subs(tvar, a))
        atoms = sorted(rhs.atoms(df1), key=str)
        ds = [sp.Dummy(f"d{i}") for i in range(len(atoms))]
        out.append((fp, rhs.xreplace(dict(zip(atoms, ds, strict=True))), atoms, ds))
    return out


def general_series_coefficients(eq: OnePoint, order: int) -> tuple[tuple[sp.Expr, sp.Expr], ...]:
    """:func:`series_coefficients` for any equivalent whose fixed points are rational in
    ``lam``, the ridges, ``df1`` and the transforms (additive layers, mixed chains).

    Each ridge ``kappa_i = u_i / x`` is solved in solve order: explicit ones by one
    evaluation, implicit ones by iterating their equation (each pass fixes one more
    order; the result is checked to be a fixed point to the requested order). The
    equivalent ``prefactor * kappa (kappa + Y)^{-1}`` is expanded with ``Y`` a
    noncommutative polynomial; the exact side is
    :func:`~detequiv.derivations.mixed.polynomial_moment` of ``M_test (-A)^k``.
    """

    K = check_order(order)
    c_out, res = resolvent_parts(eq.random)
    dim = res.shape[0]
    rebuilt = eq.prefactor * eq.ridge * (eq.matrix + eq.ridge * sp.Identity(dim)).inverse()
    if rebuilt != eq.deterministic:
        raise InvalidArgument(
            f"deterministic = {eq.deterministic} is not prefactor * ridge (ridge I + matrix)^-1 = "
            f"{rebuilt}; the series check expands (prefactor, ridge, matrix), so change those fields"
        )
    sqrt_names = _sqrt_names_expr(res.arg) | _sqrt_names_sympy(eq.matrix)
    for fp in eq.fixed_points:
        sqrt_names |= _sqrt_names_sympy(fp.rhs)
    laws: dict[sp.Symbol, Any] = {}
    a_poly = _expr_poly(res.arg, sqrt_names, laws)

    fps, all_exprs = _general_equations(eq, K, sqrt_names)
    lam = eq.lam
    pre = sp.expand(sp.simplify(eq.prefactor * lam / c_out))
    all_exprs.append(sp.Add(*(pre.free_symbols - {fp.symbol for fp in eq.fixed_points} - {lam})))
    alg = LaurentRing.of(all_exprs)
    n = K + 1
    env: dict[sp.Basic, Series] = {lam: (-1, [alg.R.one] + [alg.R.zero] * (n - 1))}
    solved: dict[sp.Symbol, list[Any]] = {}
    for symbol, implicit, rhs, ds, targets in fps:
        solved[symbol] = _solve_general(symbol, implicit, rhs, ds, targets, solved, env, K, alg)
    local = dict(env)
    local.update({s: (-1, list(v)) for s, v in solved.items()})
    if eq.ridge in solved:
        u = solved[eq.ridge]
    else:
        u = [alg.to(sp.simplify(eq.ridge / lam))] + [alg.R.zero] * K
    p_shift, p_cs = series_eval(pre, local, n, alg)
    if p_shift != 0:
        raise InvalidArgument(f"the prefactor {eq.prefactor} is not O(1) as lam -> infinity")
    vp = _powers([alg.R.zero] + _inv(u, K, alg)[:K], K, alg)
    y_poly = _sympy_poly(eq.matrix, sqrt_names)
    m = TEST_LETTER
    y_traces = []
    y_power = sp.S.One
    for _ in range(K + 1):
        y_traces.append(_tr_poly(m * y_power))
        y_power = sp.expand(y_power * y_poly)
    weighted = [_mul(p_cs, vp[j], K, alg.R.zero) for j in range(K + 1)]
    out = []
    a_power = sp.S.One
    for k in range(K + 1):
        eqv = sp.Add(*[(-1) ** j * alg.expr(weighted[j][k]) * y_traces[j] for j in range(K + 1)])
        dia = sp.expand((-1) ** k * polynomial_moment(m * a_power, laws))
        out.append((sp.expand(eqv), dia))
        a_power = sp.expand(a_power * a_poly)
    return tuple(out)


def _general_equations(eq: OnePoint, K: int, sqrt_names: set[str]) -> tuple[list[Any], list[Any]]:
    """Each fixed point (in solve order) as ``(symbol, implicit, rhs, df1 dummies, df1 targets)``
    with the transforms replaced by their truncated series and every ``df1(Y, kappa)`` by a
    dummy whose target is the moments ``tr Y^j``; and the expressions the ring must hold."""
    symbols = [fp.symbol for fp in eq.fixed_points]
    fps = []
    all_exprs: list[Any] = []
    for fp, rhs, atoms, ds in _series_ready(eq, K):
        rhs = sp.expand(rhs)
        targets = []
        for a in atoms:
            y, kappa = a.args
            if kappa not in symbols:
                raise InvalidArgument(f"{a} uses {kappa}, which is not a fixed-point symbol")
            moments = [_tr_poly(sp.expand(_sympy_poly(y, sqrt_names) ** j)) for j in range(K + 1)]
            targets.append((moments, kappa))
            all_exprs += moments
        fps.append((fp.symbol, fp.implicit, rhs, ds, targets))
        skip = set(ds) | set(symbols) | {eq.lam}
        all_exprs.append(sp.Add(*(rhs.free_symbols - skip)) + sp.Add(*rhs.atoms(tr)))
    return fps, all_exprs


def _solve_general(
    symbol: sp.Symbol,
    implicit: bool,
    rhs: sp.Expr,
    ds: list[Any],
    targets: list[Any],
    solved: dict[sp.Symbol, list[Any]],
    env: dict[sp.Basic, Series],
    K: int,
    alg: LaurentRing,
) -> list[Any]:
    """``kappa = u / x`` of one fixed point as a truncated series: one evaluation if it is
    explicit, else iterating its equation (each pass fixes one more order) and checking that
    the result is a fixed point to the order."""
    n = K + 1
    moments_ring = [([alg.to(x) for x in ms], kappa) for ms, kappa in targets]

    def step(u: list[Any]) -> list[Any]:
        current = {**solved, symbol: u}
        local = dict(env)
        local.update({s: (-1, list(v)) for s, v in current.items()})
        for d, (ms, kappa) in zip(ds, moments_ring, strict=True):
            local[d] = (0, _df_series(ms, current[kappa], K, alg)[1])
        shift, cs = series_eval(rhs, local, n, alg)
        value = series_mul((shift, cs), (1, [alg.R.one] + [alg.R.zero] * (n - 1)), alg)
        if value[0] < 0 and any(value[1][: -value[0]]):
            raise InvalidArgument(f"{symbol} / lam has a pole at lam = infinity; no 1/lam series")
        cs = value[1][-value[0] :] if value[0] < 0 else [alg.R.zero] * value[0] + value[1]
        if len(cs) < n:
            raise InvalidArgument(
                f"the equation of {symbol} loses precision ({len(cs)} < {n} coefficients); "
                "the series check cannot reach that order"
            )
        return cs[:n]

    u = [alg.R.one] + [alg.R.zero] * K
    for _ in range(K + 3 if implicit else 1):
        u = step(u)
    if implicit and step(u) != u:
        raise InvalidArgument(
            f"iterating the equation of {symbol} as a series in 1/lam did not converge; "
            "it is not a contraction at lam = infinity"
        )
    return u


@dataclass(frozen=True, slots=True)
class SeriesCheck(Evidence):
    """Evidence of :meth:`OnePoint.check_series`: both sides, coefficient by coefficient.

    ``coefficients[k] = (equivalent, diagram_sum)`` is the coefficient of
    :math:`\\lambda^{-k}` of ``tr(M .)``; ``first_failure`` is the first ``k`` where they
    differ (``None`` if all agree).
    """

    order: int
    coefficients: tuple[tuple[sp.Expr, sp.Expr], ...]
    first_failure: int | None
    test_matrix: sp.Symbol

    @property
    def passed(self) -> bool:
        return self.first_failure is None

    def __str__(self) -> str:
        if self.passed:
            return (
                f"series check passed: coefficients of lam^0 .. lam^-{self.order} of "
                f"tr({self.test_matrix} .) agree with the planar diagram sums"
            )
        k = self.first_failure
        assert k is not None
        eqv, dia = self.coefficients[k]
        return (
            f"series check FAILED at lam^-{k} of tr({self.test_matrix} .):\n"
            f"  equivalent:  {eqv}\n  diagram sum: {dia}\n"
            f"  difference:  {sp.expand(eqv - dia)}"
        )
