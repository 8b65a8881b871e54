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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sympy as sp
from sympy.polys.domains import QQ
from sympy.polys.rings import ring

from ..errors import InvalidArgument, InvalidWord
from .cumulants import _check_order
from .expressions import Deterministic, FreeMatrix, MatrixExpr, Sqrt
from .mixed import mixed_moment
from .quantities import tr
from .transforms import s_series

if TYPE_CHECKING:  # pragma: no cover
    from .onepoint import OnePoint, SeriesCheck

__all__ = ["check_series", "series_coefficients"]

TEST_LETTER = sp.Symbol("M_test", commutative=False)


def _half(name: str) -> sp.Symbol:
    return sp.Symbol(f"{name}_sqrt", commutative=False)


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


def _factor_letters(
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
        else:  # pragma: no cover - derive rejects other factors first
            raise InvalidWord(f"no letters for {f}")
    return tuple(letters), laws


# -- exact arithmetic: a polynomial ring with an inverse generator per symbol ------


class _Ring:
    """Laurent polynomials in the symbols and ``tr(...)`` atoms of some expressions.

    Each atom ``a`` gets a generator and an inverse generator ``1/a`` (the ring is
    free, so ``a * (1/a)`` is only simplified on the way back to sympy, which is exact).
    Arithmetic in :class:`sympy.polys.rings.PolyRing` is far faster than ``expand``.
    """

    def __init__(self, exprs: Sequence[sp.Expr]) -> None:
        atoms: set[sp.Expr] = set()
        for e in exprs:
            atoms |= sp.sympify(e).atoms(tr)
            atoms |= sp.sympify(e).free_symbols
        atoms -= {x for a in list(atoms) if isinstance(a, tr) for x in a.free_symbols}
        ordered = sorted(atoms, key=str)
        self.forward = {a: sp.Dummy(f"g{i}") for i, a in enumerate(ordered)}
        self.inverse = {self.forward[a]: sp.Dummy(f"h{i}") for i, a in enumerate(ordered)}
        gens = list(self.forward.values()) + list(self.inverse.values())
        self.R, *_ = ring(gens, QQ) if gens else ring([sp.Dummy("unused")], QQ)
        self.n = len(ordered)
        back = {g: a for a, g in self.forward.items()}
        back.update({h: 1 / back[g] for g, h in self.inverse.items()})
        self.back = back

    def to(self, e: Any) -> Any:
        expr = sp.expand(sp.sympify(e)).xreplace(self.forward)
        expr = expr.replace(
            lambda p: isinstance(p, sp.Pow) and p.exp.is_Integer and p.exp < 0 and p.base in self.inverse,
            lambda p: self.inverse[p.base] ** (-p.exp),
        )
        try:
            return self.R.from_expr(expr)
        except (ValueError, sp.PolynomialError, sp.CoercionFailed) as exc:
            raise InvalidArgument(
                f"the series coefficient {e} is not a Laurent polynomial in its symbols "
                f"({exc}); the exact series check needs polynomial transforms"
            ) from None

    def expr(self, r: Any) -> sp.Expr:
        return sp.expand(r.as_expr().xreplace(self.back))

    def inv(self, r: Any) -> Any:
        terms = r.terms()
        if len(terms) != 1:
            raise InvalidArgument(
                f"cannot invert the series constant {self.expr(r)} in the Laurent ring; "
                "it must be a single monomial (e.g. 1, 1/kappa_1, q)"
            )
        ((monom, c),) = terms
        n = self.n
        new = [0] * self.R.ngens
        for i in range(n):
            e = monom[i] - monom[n + i]
            if e > 0:
                new[n + i] = e
            elif e < 0:
                new[i] = -e
        return self.R({tuple(new): 1 / c})


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


def _inv(a: list[Any], K: int, alg: _Ring) -> list[Any]:
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


def _powers(v: list[Any], K: int, alg: _Ring) -> list[list[Any]]:
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
    terms: list[tuple[tuple[int, ...], Any]], deltas: list[list[list[Any]]], K: int, alg: _Ring
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


def _moments(letters: tuple[sp.Symbol, ...], K: int) -> list[sp.Expr]:
    return [tr(sp.Mul(*(letters * j))) if letters else sp.S.One for j in range(K + 1)]


def _df_series(moments: list[Any], u: list[Any], K: int, alg: _Ring) -> list[list[Any]]:
    """Powers of ``df1(Y, kappa)`` as series in x, with ``kappa = u / x``."""
    v = [alg.R.zero] + _inv(u, K, alg)[:K]
    vp = _powers(v, K, alg)
    delta = [alg.R.zero] * (K + 1)
    for j in range(1, K + 1):
        c = moments[j] if j % 2 else -moments[j]
        delta = [a + c * b for a, b in zip(delta, vp[j], strict=True)]
    return _powers(delta, K, alg)


def _prepare(eq: OnePoint, K: int, sqrt_names: set[str]) -> list[tuple[Any, ...]]:
    """For each fixed point in solve order: symbol, implicit, Taylor terms, df targets."""
    from .onepoint import df1, solve_order

    lam = eq.lam
    tvar = sp.Symbol("t_series")
    replacements = {}
    for name, law in eq.transforms:
        replacements[sp.Function(f"S_{name}")] = s_series(law.moments(K + 1), K + 1, tvar)
    symbols = {fp.symbol for fp in eq.fixed_points}
    out = []
    for fp in solve_order(eq.fixed_points):
        rhs = fp.rhs
        for func, poly in replacements.items():
            rhs = rhs.replace(func, lambda a, poly=poly: poly.subs(tvar, a))
        atoms = sorted(rhs.atoms(df1), key=str)
        ds = [sp.Dummy(f"d{i}") for i in range(len(atoms))]
        g = rhs.xreplace(dict(zip(atoms, ds, strict=True))) / lam
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
            targets.append((_moments(_sympy_letters(y, sqrt_names), K), kappa))
        out.append((fp.symbol, fp.implicit, _g_polynomial(g, ds, K), targets))
    return out


def _solve_fixed_points(prepared: list[tuple[Any, ...]], K: int, alg: _Ring) -> dict[sp.Symbol, list[Any]]:
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
    from .onepoint import _factors_of, _resolvent_parts, gaussian_gram_to_wishart

    K = _check_order(order)
    _, res = _resolvent_parts(eq.random)
    dim = res.shape[0]
    rebuilt = eq.prefactor * eq.ridge * (eq.matrix + eq.ridge * sp.Identity(dim)).inverse()
    if rebuilt != eq.deterministic:
        raise InvalidArgument(
            f"deterministic = {eq.deterministic} is not prefactor * ridge (ridge I + matrix)^-1 = "
            f"{rebuilt}; the series check expands (prefactor, ridge, matrix), so change those fields"
        )
    coeff, factors = _factors_of(res.arg)
    coeff, factors, _ = gaussian_gram_to_wishart(coeff, factors)
    sqrt_names = {f.base.name for f in factors if isinstance(f, Sqrt)}
    sqrt_names |= _sqrt_names_sympy(eq.matrix)
    for fp in eq.fixed_points:
        sqrt_names |= _sqrt_names_sympy(fp.rhs)
    word, laws = _factor_letters(factors, sqrt_names)

    prepared = _prepare(eq, K, sqrt_names)
    ratio = None
    if not any(p[0] == eq.ridge for p in prepared):
        ratio = sp.simplify(eq.ridge / eq.lam)
        if eq.lam in ratio.free_symbols:
            raise InvalidArgument(f"the ridge {eq.ridge} is not proportional to {eq.lam}")
    exprs: list[Any] = [ratio or 1]
    for _, _, terms, targets in prepared:
        exprs += [c for _, c in terms] + [x for ms, _ in targets for x in ms]
    alg = _Ring(exprs)
    solved = _solve_fixed_points(prepared, K, alg)
    u = solved[eq.ridge] if ratio is None else [alg.to(ratio)] + [alg.R.zero] * K
    v = [alg.R.zero] + _inv(u, K, alg)[:K]
    vp = _powers(v, K, alg)
    y_letters = _sympy_letters(eq.matrix, sqrt_names)
    m = TEST_LETTER
    out = []
    for k in range(K + 1):
        eqv = sp.expand(
            sp.Add(*[(-1) ** j * alg.expr(vp[j][k]) * tr(sp.Mul(m, *(y_letters * j))) for j in range(k + 1)])
        )
        dia = sp.expand((-coeff) ** k * mixed_moment(sp.Mul(m, *(word * k)), laws))
        out.append((eqv, dia))
    return tuple(out)


def _equal(a: sp.Expr, b: sp.Expr) -> bool:
    diff = sp.expand(a - b)
    if diff == 0:
        return True
    return bool(sp.cancel(sp.together(diff)) == 0)


def check_series(eq: OnePoint, order: int) -> SeriesCheck:
    """Compare the equivalent's 1/lam series with the diagram sums (see module doc)."""
    from .onepoint import SeriesCheck

    coefficients = series_coefficients(eq, order)
    first = next((k for k, (a, b) in enumerate(coefficients) if not _equal(a, b)), None)
    return SeriesCheck(order=order, coefficients=coefficients, first_failure=first, test_matrix=TEST_LETTER)
