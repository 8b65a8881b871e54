r"""The exact witness of a two-point equivalent: double series against diagram sums.

MATH.md 6.3-6.4. With :math:`x=1/\lambda`, :math:`y=1/\lambda'` and :math:`u=\kappa/\lambda`,
the fixed point :math:`\kappa=\lambda G(\mathrm{df}_1)` is solved as a power series in
:math:`x` by iteration; :math:`v=1/\kappa=x/u`, :math:`\kappa R=\sum_j(-A)^jv^j`. The
equivalent contracted with a test letter ``N`` is a series in :math:`(x,y)` whose
coefficients are polynomials in the traces ``tr(N A^j M A^k)``, ``tr(M A^j)``, ``tr(N A^j)``,
``tr(A^j)`` and the parameters. The correction scalar (any rational expression in
:math:`\lambda,\lambda',\kappa,\kappa',\mathrm{df}_1,\mathrm{df}_2` and the divided
difference :math:`c`, whose series is :math:`[x^ay^b]c=u_{a+b+1}`) is expanded by a small
bivariate Laurent-series arithmetic that tracks its precision. The coefficient of
:math:`x^ay^b` must equal :math:`\text{prefactor}\,(-c)^{a+b}\lim\operatorname{tr}(NX_1^aMX_2^b)`
(:func:`~detequiv.derivations.mixed.mixed_moment`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sympy as sp

from ..errors import InvalidArgument
from .expressions import Deterministic, FreeMatrix, Sqrt
from .laurent import LaurentRing
from .letters import Letters, normal_word
from .mixed import mixed_moment
from .quantities import df1, df2, divided_difference, tr, word_letters
from .results import Evidence
from .transforms import s_series

if TYPE_CHECKING:  # pragma: no cover
    from .layered import LayeredTwoPoint
    from .twopoint import TwoPoint

__all__ = ["check_series", "series_coefficients", "layered_series_coefficients", "check_layered_series"]

TEST_LETTER = sp.Symbol("N_test", commutative=False)
_INF = 10**9


class _BS:
    """A bivariate Laurent series in (x, y), known for total degree < prec."""

    __slots__ = ("alg", "c", "prec")

    def __init__(self, alg: LaurentRing, coeffs: dict[tuple[int, int], Any], prec: int) -> None:
        self.alg = alg
        self.prec = prec
        self.c = {k: v for k, v in coeffs.items() if v and k[0] + k[1] < prec}

    @classmethod
    def const(cls, alg: LaurentRing, value: Any) -> _BS:
        return cls(alg, {(0, 0): value}, _INF)

    def val(self) -> int:
        return min((i + j for i, j in self.c), default=self.prec)

    def __add__(self, o: _BS) -> _BS:
        out = dict(self.c)
        for k, v in o.c.items():
            out[k] = out[k] + v if k in out else v
        return _BS(self.alg, out, min(self.prec, o.prec))

    def __neg__(self) -> _BS:
        return _BS(self.alg, {k: -v for k, v in self.c.items()}, self.prec)

    def __mul__(self, o: _BS) -> _BS:
        prec = min(self.prec + o.val(), o.prec + self.val())
        out: dict[tuple[int, int], Any] = {}
        for (i, j), a in self.c.items():
            for (k, m), b in o.c.items():
                if i + j + k + m < prec:
                    key = (i + k, j + m)
                    out[key] = out[key] + a * b if key in out else a * b
        return _BS(self.alg, out, prec)

    def shift(self, di: int, dj: int) -> _BS:
        return _BS(self.alg, {(i + di, j + dj): v for (i, j), v in self.c.items()}, self.prec + di + dj)

    def inverse(self) -> _BS:
        reduced = {k: self.alg.reduce(v) for k, v in self.c.items()}
        if any(not v for v in reduced.values()):  # a hidden zero (g h - 1): drop it first
            return _BS(self.alg, reduced, self.prec).inverse()
        if not self.c:
            raise InvalidArgument("division by a series that vanishes to the working order")
        i0 = min(i for i, _ in self.c)
        j0 = min(j for _, j in self.c)
        unit = self.shift(-i0, -j0)
        c0 = unit.c.get((0, 0))
        if c0 is None:
            raise InvalidArgument(
                "division by a series that is not a monomial times a unit (e.g. lam' - lam); "
                "write such quotients with divided_difference"
            )
        inv0 = self.alg.inv(c0)
        # b_(a,b) = -inv0 sum_{(i,j) != 0} c_(i,j) b_(a-i,b-j), in order of total degree
        terms = [(k, v) for k, v in unit.c.items() if k != (0, 0)]
        out: dict[tuple[int, int], Any] = {(0, 0): inv0}
        if not terms:
            return _BS(self.alg, out, unit.prec).shift(-i0, -j0)
        prec = min(unit.prec, self.alg.cap)
        for deg in range(1, prec):
            for i in range(deg + 1):
                j = deg - i
                acc = None
                for (ti, tj), v in terms:
                    prev = out.get((i - ti, j - tj))
                    if prev is not None and i >= ti and j >= tj:
                        acc = v * prev if acc is None else acc + v * prev
                if acc:
                    out[(i, j)] = -(inv0 * acc)
        return _BS(self.alg, out, prec).shift(-i0, -j0)

    def __pow__(self, n: int) -> _BS:
        base = self if n >= 0 else self.inverse()
        out = _BS.const(self.alg, self.alg.R.one)
        for _ in range(abs(n)):
            out = out * base
        return out


def _variables(alg: LaurentRing, cap: int) -> tuple[Callable[[Any], _BS], _BS, _BS]:
    """Set ``alg.cap``; return ``const`` (a scalar as a series), ``x`` and ``y``."""
    alg.cap = cap

    def const(e: Any) -> _BS:
        return _BS.const(alg, alg.to(e))

    return const, _BS(alg, {(1, 0): alg.R.one}, _INF), _BS(alg, {(0, 1): alg.R.one}, _INF)


def _letters_of_power(
    a_letters: tuple[sp.Symbol, ...], half: sp.Symbol | None, e: Any
) -> tuple[sp.Symbol, ...]:
    e = sp.Rational(e)
    if half is not None:
        return (half,) * int(2 * e)
    if not e.is_integer:  # pragma: no cover - half is set whenever a half power appears
        raise InvalidArgument(f"A^{e} without square-root letters")
    return a_letters * int(e)


def _alphabet(tp: TwoPoint) -> tuple[sp.Symbol | None, tuple[sp.Symbol, ...], tuple[sp.Symbol, ...]]:
    name = tp.a_matrix.name
    exps = [*tp.left_powers, tp.exponent]
    uses_half = any(not sp.Rational(e).is_integer for e in exps) or any(
        isinstance(f, Sqrt) and f.base.name == name for f in tp.middle
    )
    half = sp.Symbol(f"{name}_sqrt", commutative=False) if uses_half else None
    a_letters = (half, half) if half is not None else (sp.Symbol(name, commutative=False),)
    m_letters: list[sp.Symbol] = []
    for f in tp.middle:
        if isinstance(f, Sqrt):
            if f.base.name == name and half is not None:
                m_letters.append(half)
            else:
                m_letters.append(sp.Symbol(f"{f.base.name}_sqrt", commutative=False))
        elif isinstance(f, Deterministic):
            m_letters.extend(a_letters if f.name == name else (sp.Symbol(f.name, commutative=False),))
    return half, a_letters, tuple(m_letters)


def _word(*parts: Sequence[sp.Symbol]) -> sp.Expr:
    letters = [x for p in parts for x in p]
    return tr(sp.Mul(*letters)) if letters else sp.S.One


def series_coefficients(tp: TwoPoint, order: int) -> tuple[tuple[tuple[int, int], sp.Expr, sp.Expr], ...]:
    """``((a, b), equivalent, diagram sum)`` for all ``a + b <= order``."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise InvalidArgument(f"order must be an integer >= 1, got {order!r}")
    K = order
    L = K + 3
    pre = sp.sympify(tp.prefactor)
    if pre.free_symbols & {tp.lam, tp.lam2}:
        raise InvalidArgument(
            f"the prefactor {pre} depends on the ridges; the series check needs lam lam2 G M G2"
        )
    half, a_l, m_l = _alphabet(tp)
    n_l = (TEST_LETTER,)

    # -- the one-point fixed point as a Taylor polynomial in d = df1 --------------
    fp = tp.fixed_points[0]
    ridge1 = sp.simplify(tp.lam / tp.coeff)
    rhs = fp.rhs
    tvar = sp.Symbol("t_series")
    law = tp.free.law
    s_name = sp.Function(f"S_{tp.free.name}")
    if rhs.atoms(s_name):
        poly = s_series(law.moments(L + 1), L + 1, tvar)
        rhs = rhs.replace(s_name, lambda arg: poly.subs(tvar, arg))
    atoms = sorted(rhs.atoms(df1), key=str)
    if len(atoms) != 1 or atoms[0].args[1] != tp.kappa:
        raise InvalidArgument(f"the fixed point {fp} is not kappa = lam G(df1(A, kappa))")
    d = sp.Dummy("d")
    g = sp.simplify(rhs.xreplace({atoms[0]: d}) / ridge1)
    if g.free_symbols & {tp.lam, tp.kappa}:
        raise InvalidArgument(f"the fixed point {fp} is not kappa = lam G(df1(A, kappa))")
    tt = sp.Dummy("t")
    taylor = sp.expand(sp.series(g.xreplace({d: tt}), tt, 0, L + 1).removeO())
    g_coeffs = [sp.expand(taylor.coeff(tt, i)) for i in range(L + 1)]

    # -- atoms of the ring ----------------------------------------------------------
    tr_a = [_word(a_l * j) for j in range(2 * L + 4)]
    scale = sp.sympify(tp.scale)
    special = set(scale.atoms(df1)) | set(scale.atoms(sp.Function)) | {tp.lam, tp.lam2, tp.kappa, tp.kappa2}
    scalars = [sp.sympify(tp.coeff), pre, *g_coeffs, *tr_a]
    base_syms: set[sp.Expr] = set()
    for e in scalars:
        base_syms |= e.atoms(tr) | e.free_symbols
    plain_scale = scale
    for f in sorted(special - {tp.lam, tp.lam2, tp.kappa, tp.kappa2}, key=str):
        plain_scale = plain_scale.xreplace({f: sp.Dummy()})
    base_syms |= {s for s in plain_scale.free_symbols if not isinstance(s, sp.Dummy)} - special
    words_nm = {
        (j, k): _word(n_l, _letters_of_power(a_l, half, j), m_l, _letters_of_power(a_l, half, k))
        for j in range(K + 1)
        for k in range(K + 1 - j)
    }
    a = tp.exponent
    words_m = [_word(m_l, _letters_of_power(a_l, half, a + j)) for j in range(K + 1)]
    words_n = [_word(n_l, _letters_of_power(a_l, half, 2 - a + j)) for j in range(K + 1)]
    for w in [*words_nm.values(), *words_m, *words_n]:
        base_syms |= w.atoms(tr)
    base_syms -= {x for s in list(base_syms) if isinstance(s, tr) for x in s.free_symbols}
    base_syms -= {tp.lam, tp.lam2, tp.kappa, tp.kappa2}
    alg = LaurentRing(base_syms)
    const, x, y = _variables(alg, L + 4)
    one, zero = alg.R.one, alg.R.zero
    moments = [alg.to(m) for m in tr_a]
    # u = kappa / lam = G(df1) / coeff  (the fixed point is kappa = (lam / coeff) G(df1))
    gc = [alg.to(sp.expand(c / tp.coeff)) for c in g_coeffs]

    def df_of(v: _BS, shift: int = 1) -> _BS:
        out = _BS(alg, {}, _INF)
        p = _BS.const(alg, one)
        for j in range(1, L + 2):
            p = p * v
            c = moments[j + shift - 1] if j % 2 else -moments[j + shift - 1]
            out = out + p * _BS.const(alg, c)
        return _BS(alg, out.c, min(out.prec, L + 1))

    u = _BS.const(alg, gc[0])
    for _ in range(L + 2):
        v = x * u.inverse()
        delta = df_of(v)
        new = _BS(alg, {}, L + 1)
        p = _BS.const(alg, one)
        for c in gc:
            new = new + p * _BS.const(alg, c)
            p = p * delta
        u = _BS(alg, new.c, L + 1)
    ux = u
    uy = _BS(alg, {(j, i): c for (i, j), c in ux.c.items()}, ux.prec)
    vx = x * ux.inverse()
    vy = y * uy.inverse()

    # univariate powers vx^j: pw[j][a] = [x^a] vx^j (zero for a < j)
    pw: list[list[Any]] = []
    p = _BS.const(alg, one)
    for _ in range(L + 1):
        pw.append([p.c.get((a, 0), zero) for a in range(L + 1)])
        p = _BS(alg, (p * vx).c, L + 1)
    prec_v = min(vx.prec, L + 1)

    def double(vals: Sequence[Any], offset: int) -> _BS:
        """sum_{j,k} (-1)^(j+k) vx^j vy^k vals[offset + j + k] (vx, vy have valuation 1)."""
        return pair(lambda j, k: vals[offset + j + k])

    def pair(coef: Callable[[int, int], Any]) -> _BS:
        out: dict[tuple[int, int], Any] = {}
        cache: dict[tuple[int, int], Any] = {}
        for a in range(prec_v):
            for b in range(prec_v - a):
                acc = zero
                for j in range(a + 1):
                    if not pw[j][a]:
                        continue
                    for k in range(b + 1):
                        if not pw[k][b]:
                            continue
                        if (j, k) not in cache:
                            c = coef(j, k)
                            cache[(j, k)] = c if (j + k) % 2 == 0 else -c
                        if cache[(j, k)]:
                            acc = acc + pw[j][a] * pw[k][b] * cache[(j, k)]
                out[(a, b)] = acc
        return _BS(alg, out, prec_v)

    # -- leaves of the scale ------------------------------------------------------------
    env: dict[sp.Basic, _BS] = {
        tp.lam: x.inverse(),
        tp.lam2: y.inverse(),
        tp.kappa: ux * x.inverse(),
        tp.kappa2: uy * y.inverse(),
    }

    for atom in scale.atoms(df1):
        k = atom.args[1]
        env[atom] = df_of(vx if k == tp.kappa else vy)
    for atom in scale.atoms(df2):
        if atom.args[1:] != (tp.kappa, tp.kappa2):
            raise InvalidArgument(f"{atom} is not df2(A, kappa, kappa')")
        env[atom] = vx * vy * double(moments, 2)
    for atom in scale.atoms(divided_difference):
        l1, l2, k1, k2 = atom.args
        if (k1, k2) != (tp.kappa, tp.kappa2) or sp.simplify(l1 / tp.lam - l2 / tp.lam2) != 0:
            raise InvalidArgument(f"{atom} is not c(lam/s, lam2/s, kappa, kappa')")
        coeffs = {}
        for i in range(L):
            for j in range(L - i):
                val = ux.c.get((i + j + 1, 0))
                if val:
                    coeffs[(i, j)] = val
        env[atom] = _BS(alg, coeffs, min(L, ux.prec - 1))

    def ev(e: sp.Expr) -> _BS:
        if e in env:
            return env[e]
        if not (e.free_symbols & set(env)) and not any(a in env for a in e.atoms(sp.Function)):
            return const(e)
        if isinstance(e, sp.Add):
            out = ev(e.args[0])
            for t in e.args[1:]:
                out = out + ev(t)
            return out
        if isinstance(e, sp.Mul):
            out = ev(e.args[0])
            for t in e.args[1:]:
                out = out * ev(t)
            return out
        if isinstance(e, sp.Pow) and e.exp.is_Integer:
            return ev(e.base) ** int(e.exp)
        raise InvalidArgument(f"cannot expand {e} as a series in 1/lam, 1/lam2")

    s_scale = ev(scale)
    # naive part: sum (-1)^(j+k) vx^j vy^k tr(N A^j M A^k)
    nm_ring = {k: alg.to(w) for k, w in words_nm.items()}
    nv = pair(lambda j, k: nm_ring.get((j, k), zero))
    nv = _BS(alg, nv.c, min(nv.prec, K + 1))
    sm = double([alg.to(w) for w in words_m] + [zero] * (L + 2), 0)
    sn = double([alg.to(w) for w in words_n] + [zero] * (L + 2), 0)
    sm = _BS(alg, sm.c, min(sm.prec, K + 1))
    sn = _BS(alg, sn.c, min(sn.prec, K + 1))
    corr = s_scale * (vx * vy) ** 2 * sm * sn
    total = (nv + corr) * const(pre)
    if total.prec < K + 1:
        raise InvalidArgument(f"the series is known only to total order {total.prec - 1} < {K}")

    # -- the exact side -----------------------------------------------------------------
    x1 = (
        *_letters_of_power(a_l, half, tp.left_powers[0]),
        sp.Symbol(tp.free.name, commutative=False),
        *_letters_of_power(a_l, half, 1 - tp.left_powers[0]),
    )
    x2 = (
        *_letters_of_power(a_l, half, tp.left_powers[1]),
        sp.Symbol(tp.free.name, commutative=False),
        *_letters_of_power(a_l, half, 1 - tp.left_powers[1]),
    )
    laws = {sp.Symbol(tp.free.name, commutative=False): law}
    return _pair_with_diagrams(total, K, pre, -tp.coeff, (n_l, x1, m_l, x2), laws)


def _equal(a: sp.Expr, b: sp.Expr) -> bool:
    diff = sp.expand(a - b)
    return diff == 0 or sp.cancel(sp.together(diff)) == 0


def _pair_with_diagrams(
    total: _BS,
    K: int,
    pre: sp.Expr,
    step: sp.Expr,
    letters: tuple[Sequence[sp.Symbol], Sequence[sp.Symbol], Sequence[sp.Symbol], Sequence[sp.Symbol]],
    laws: dict[sp.Symbol, Any],
) -> tuple[tuple[tuple[int, int], sp.Expr, sp.Expr], ...]:
    """``((i, j), [x^i y^j] total, pre step^(i+j) Phi(N X1^i M X2^j))`` for all ``i + j <= K``.

    ``letters`` are the words ``(N, X1, M, X2)``; ``Phi`` is the planar diagram sum.
    """
    n_l, x1, m_l, x2 = (tuple(w) for w in letters)
    out = []
    for s in range(K + 1):
        for i in range(s + 1):
            j = s - i
            eqv = total.alg.expr(total.c.get((i, j), total.alg.R.zero))
            word = sp.Mul(*n_l, *(x1 * i), *m_l, *(x2 * j))
            dia = sp.expand(pre * step**s * mixed_moment(word, laws))
            out.append(((i, j), eqv, dia))
    return tuple(out)


def _checked(
    coefficients: tuple[tuple[tuple[int, int], sp.Expr, sp.Expr], ...], order: int
) -> TwoPointSeriesCheck:

    failures = tuple(k for k, a, b in coefficients if not _equal(a, b))
    return TwoPointSeriesCheck(order=order, coefficients=coefficients, failures=failures)


def check_series(tp: TwoPoint, order: int) -> TwoPointSeriesCheck:
    """Compare every coefficient (see the module doc)."""
    return _checked(series_coefficients(tp, order), order)


# ---------------------------------------------------------------------------
# layered two-point results (MATH.md 6.5)
# ---------------------------------------------------------------------------


def _taylor_in_df1(
    rhs: sp.Expr, kappa: sp.Symbol, ridge: sp.Expr, lam: sp.Expr, L: int
) -> tuple[sp.Expr, list[sp.Expr]]:
    """``(df1 atom, [g_0, g_1, ...])`` for ``kappa = ridge * G(df1)``: the Taylor coefficients of G."""
    atoms = sorted(rhs.atoms(df1), key=str)
    if len(atoms) != 1 or atoms[0].args[1] != kappa:
        raise InvalidArgument(f"the fixed point {kappa} = {rhs} is not kappa = lam G(df1(Y, kappa))")
    d = sp.Dummy("d")
    g = sp.simplify(rhs.xreplace({atoms[0]: d}) / ridge)
    if g.free_symbols & {lam, kappa}:
        raise InvalidArgument(f"the fixed point {kappa} = {rhs} is not kappa = lam G(df1(Y, kappa))")
    tt = sp.Dummy("t")
    taylor = sp.expand(sp.series(g.xreplace({d: tt}), tt, 0, L + 1).removeO())
    return atoms[0], [sp.expand(taylor.coeff(tt, i)) for i in range(L + 1)]


def layered_series_coefficients(
    tp: LayeredTwoPoint, order: int
) -> tuple[tuple[tuple[int, int], sp.Expr, sp.Expr], ...]:
    """``((a, b), equivalent, diagram sum)`` for all ``a + b <= order`` (a layered result).

    The innermost ridges solve ``kappa_L = (lam / c) G(df1(Y, kappa_L))`` as power series in
    ``x = 1/lam`` (``y = 1/lam2``); the intermediate ridges are explicit in ``lam`` and
    ``df1``; every ``tr(word)`` with resolvent letters ``R_kappa = sum_j (-Y)^j kappa^(-j-1)``
    becomes a double series whose coefficients are deterministic traces. The diagram side is
    :func:`~detequiv.derivations.mixed.mixed_moment` of ``N X1^a M X2^b`` with every free
    letter given its law (MATH.md 6.5: the nested planar sum).
    """
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise InvalidArgument(f"order must be an integer >= 1, got {order!r}")
    n_layers = sum(1 for f in tp.side1 if isinstance(f, FreeMatrix))
    extra = 2
    while True:
        try:
            return _layered_series(tp, order, order + extra)
        except _LowPrecision:
            if extra > 2 * n_layers + 4:  # pragma: no cover - the valuations are bounded
                raise InvalidArgument(f"the series of {tp.random} does not reach order {order}") from None
            extra += 1


class _LowPrecision(Exception):
    pass


def _layered_series(
    tp: LayeredTwoPoint, order: int, L: int
) -> tuple[tuple[tuple[int, int], sp.Expr, sp.Expr], ...]:

    def _tr_normal(w: tuple[sp.Symbol, ...]) -> sp.Expr:
        w = normal_word(w, cyclic=True)
        return tr(sp.Mul(*w)) if w else sp.S.One

    K = order
    lam, lam2 = tp.lam, tp.lam2
    ridge1 = sp.simplify(lam / tp.coeff)
    pre = sp.sympify(tp.prefactor)
    if pre.free_symbols & {lam, lam2}:
        raise InvalidArgument(
            f"the prefactor {pre} depends on the ridges; the series check needs lam lam2 G M G2"
        )
    letters = Letters(tp.sqrt_names)
    n_l = (TEST_LETTER,)

    # -- the chains ---------------------------------------------------------------------------
    half = len(tp.fixed_points) // 2
    left_fps, right_fps = tp.fixed_points[:half], tp.fixed_points[half:]
    inner_fp = next(fp for fp in left_fps if fp.implicit)
    inner2_fp = next(fp for fp in right_fps if fp.implicit)
    k_in, k_in2 = inner_fp.symbol, inner2_fp.symbol
    df_atom, g_coeffs = _taylor_in_df1(inner_fp.rhs, k_in, ridge1, lam, L)
    y_word = letters.sym(df_atom.args[0])
    res = {r: (k, y) for r, k, y in tp.resolvents}
    for r, (k, yw) in res.items():
        if k not in (k_in, k_in2) or yw != y_word:
            raise InvalidArgument(f"the resolvent letter {r} is not (kappa_L + Y)^-1 of the innermost ridge")

    # -- expansions of traces with resolvent letters (sympy, before the ring exists) ----------
    def expand_trace(t: sp.Expr) -> dict[tuple[int, int], sp.Expr]:
        w = word_letters(t.args[0])
        pos = [i for i, x in enumerate(w) if x in res]
        out: dict[tuple[int, int], sp.Expr] = {}

        def rec(i: int, J: int, Kk: int, sign: int, acc: list[tuple[sp.Symbol, ...]]) -> None:
            if i == len(pos):
                parts: list[sp.Symbol] = []
                it = iter(acc)
                for j, x in enumerate(w):
                    parts.extend(next(it) if j in pos else (x,))
                key = (J, Kk)
                normal = normal_word(tuple(parts), cyclic=True)
                out[key] = out.get(key, sp.S.Zero) + sign * (tr(sp.Mul(*normal)) if normal else sp.S.One)
                return
            is_x = res[w[pos[i]]][0] == k_in
            for j in range(L + 1):
                nJ, nK = (J + j + 1, Kk) if is_x else (J, Kk + j + 1)
                if nJ > L or nK > L:
                    break
                rec(i + 1, nJ, nK, sign * (-1) ** j, [*acc, y_word * j])

        rec(0, 0, 0, 1, [])
        return out

    terms = [(w, sp.sympify(c)) for w, c in tp.polynomial]
    test_traces = [_tr_normal(n_l + tuple(w)) for w, _ in terms]
    r_traces: set[sp.Expr] = {
        t for t in test_traces if t != 1 and any(x in res for x in word_letters(t.args[0]))
    }
    for _, c in terms:
        r_traces |= {t for t in c.atoms(tr) if any(x in res for x in word_letters(t.args[0]))}
    chain_rhs = [fp.rhs for fp in tp.fixed_points if not fp.implicit]
    expansions = {t: expand_trace(t) for t in sorted(r_traces, key=str)}
    moments_sym = [_word(y_word * j) for j in range(2 * L + 4)]

    # -- ring atoms ---------------------------------------------------------------------------
    special = {lam, lam2, *[fp.symbol for fp in tp.fixed_points]}
    base_syms: set[sp.Expr] = set()

    def collect(e: sp.Expr) -> None:
        e = sp.sympify(e)
        for t in e.atoms(tr):
            if t not in expansions:
                base_syms.add(t)
        for t in e.atoms(df1):
            e = e.xreplace({t: sp.Dummy()})
        base_syms.update(s for s in e.free_symbols if s.is_commutative and not isinstance(s, sp.Dummy))

    for e in [pre, tp.coeff, *g_coeffs, *moments_sym, *chain_rhs]:
        collect(e)
    for _, c in terms:
        collect(c.xreplace({t: sp.S.One for t in c.atoms(tr) if t in expansions}))
    for ex in expansions.values():
        for v in ex.values():
            collect(v)
    for t in test_traces:
        collect(t)
    base_syms = {s for s in base_syms if not (isinstance(s, sp.Symbol) and not s.is_commutative)}
    base_syms -= special
    alg = LaurentRing(base_syms, invertible=lambda a: not isinstance(a, tr))
    const, x, y = _variables(alg, L + 4)
    one, zero = alg.R.one, alg.R.zero
    moments = [alg.to(m) for m in moments_sym]
    gc = [alg.to(sp.expand(c / tp.coeff)) for c in g_coeffs]

    def df_of(v: _BS, prec: int = L + 1) -> _BS:
        out = _BS(alg, {}, _INF)
        p = _BS.const(alg, one)
        for j in range(1, prec + 1):
            p = _BS(alg, (p * v).c, prec)
            c = moments[j] if j % 2 else -moments[j]
            out = out + p * _BS.const(alg, c)
        return _BS(alg, out.c, min(out.prec, prec))

    # each pass fixes one more order of u = kappa_L / lam: work at the precision it has
    u = _BS(alg, {(0, 0): gc[0]}, 1)
    for step in range(L + 1):
        pr = min(step + 2, L + 1)
        u = _BS(alg, u.c, pr)
        v = _BS(alg, (x * u.inverse()).c, pr)
        delta = df_of(v, pr)
        new = _BS(alg, {}, pr)
        p = _BS.const(alg, one)
        for c in gc[:pr]:
            new = new + p * _BS.const(alg, c)
            p = _BS(alg, (p * delta).c, pr)
        u = _BS(alg, new.c, pr)
    ux = u
    uy = _BS(alg, {(j, i): c for (i, j), c in ux.c.items()}, ux.prec)
    vx = x * ux.inverse()
    vy = y * uy.inverse()

    def powers(v: _BS, axis: int) -> list[list[Any]]:
        out = []
        p = _BS.const(alg, one)
        for _ in range(L + 1):
            out.append([p.c.get((a, 0) if axis == 0 else (0, a), zero) for a in range(L + 1)])
            p = _BS(alg, (p * v).c, L + 1)
        return out

    pwx, pwy = powers(vx, 0), powers(vy, 1)
    prec_v = min(vx.prec, L + 1)

    env: dict[sp.Basic, _BS] = {
        lam: x.inverse(),
        lam2: y.inverse(),
        k_in: ux * x.inverse(),
        k_in2: uy * y.inverse(),
        df1(df_atom.args[0], k_in): df_of(vx),
        df1(df_atom.args[0], k_in2): df_of(vy),
    }
    memo: dict[sp.Basic, _BS] = {}

    def series_of_trace(t: sp.Expr) -> _BS:
        ex = expansions[t]
        ring_c = {k: alg.to(v) for k, v in ex.items() if v != 0}
        out: dict[tuple[int, int], Any] = {}
        for a in range(prec_v):
            for b in range(prec_v - a):
                acc = zero
                for (J, Kk), c in ring_c.items():
                    if J <= a and Kk <= b and pwx[J][a] and pwy[Kk][b]:
                        acc = acc + pwx[J][a] * pwy[Kk][b] * c
                if acc:
                    out[(a, b)] = acc
        return _BS(alg, out, prec_v)

    def ev(e: sp.Expr) -> _BS:
        if e in env:
            return env[e]
        if e in memo:
            return memo[e]
        if e in expansions:
            out = series_of_trace(e)
        elif not (e.free_symbols & set(env)) and not any(
            a in expansions or a in env for a in e.atoms(sp.Function)
        ):
            out = const(e)
        elif isinstance(e, sp.Add):
            out = ev(e.args[0])
            for t in e.args[1:]:
                out = out + ev(t)
        elif isinstance(e, sp.Mul):
            out = ev(e.args[0])
            for t in e.args[1:]:
                out = out * ev(t)
        elif isinstance(e, sp.Pow) and e.exp.is_Integer:
            out = ev(e.base) ** int(e.exp)
        else:
            raise InvalidArgument(f"cannot expand {e} as a series in 1/lam, 1/lam2")
        memo[e] = out
        return out

    for fp in tp.fixed_points:
        if not fp.implicit:
            env[fp.symbol] = ev(fp.rhs)

    total = _BS(alg, {}, _INF)
    for (_w, c), t in zip(terms, test_traces, strict=True):
        total = total + ev(c) * ev(t)
    total = total * const(pre)
    if total.prec < K + 1:
        raise _LowPrecision

    # -- the exact side -------------------------------------------------------------------------
    laws = {sp.Symbol(f.name, commutative=False): f.law for f in tp.side1 if isinstance(f, FreeMatrix)}
    x1 = tuple(s for f in tp.side1 for s in letters.of(f))
    x2 = tuple(s for f in tp.side2 for s in letters.of(f))
    m_l = tuple(s for f in tp.middle for s in letters.of(f))
    return _pair_with_diagrams(total, K, pre, -tp.coeff, (n_l, x1, m_l, x2), laws)


def check_layered_series(tp: LayeredTwoPoint, order: int) -> TwoPointSeriesCheck:
    """Compare every coefficient of a layered result (see :func:`layered_series_coefficients`)."""
    return _checked(layered_series_coefficients(tp, order), order)


@dataclass(frozen=True, slots=True)
class TwoPointSeriesCheck(Evidence):
    """Evidence of :meth:`TwoPoint.check_series`.

    ``coefficients[(a, b)] = (equivalent, diagram_sum)`` is the coefficient of
    :math:`\\lambda^{-a}\\lambda'^{-b}` of ``tr(N_test .)``; ``failures`` lists the
    ``(a, b)`` where they differ.
    """

    order: int
    coefficients: tuple[tuple[tuple[int, int], sp.Expr, sp.Expr], ...]
    failures: tuple[tuple[int, int], ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        if self.passed:
            return (
                f"two-point series check passed: all {len(self.coefficients)} coefficients "
                f"lam^-a lam2^-b (a + b <= {self.order}) agree with the planar diagram sums"
            )
        a, b = self.failures[0]
        eqv, dia = next((e, d) for k, e, d in self.coefficients if k == (a, b))
        return (
            f"two-point series check FAILED at {len(self.failures)} coefficients; first "
            f"lam^-{a} lam2^-{b}:\n  equivalent:  {eqv}\n  diagram sum: {dia}\n"
            f"  difference:  {sp.expand(eqv - dia)}"
        )
