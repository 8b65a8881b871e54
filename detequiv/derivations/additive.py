r"""Resolvents of sums: additive free layers and mixed additive/multiplicative chains.

``r (r + A + c B)^{-1}`` with ``B`` free from ``A`` is peeled by additive subordination
(:func:`additive_subordination`, Biane 1998):
``r (r + A + c B)^{-1} ~ (r / r~) r~ (r~ + A)^{-1}`` with
``r~ = r + R_{cB}(-(1 - df1(A, r~)) / r~)``. Across an additive layer the trace carries
the prefactor, ``1 - df1(outer) = (r / r~)(1 - df1(inner))``; a chain of additive and
multiplicative layers is composed by inverting each layer for its outer ridge
(:func:`compose_mixed`), which gives ``lam`` as a function of the innermost ridge (one
implicit equation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from ..errors import InvalidArgument, InvalidWord
from .algebra import contains_sum, product_sympy, resolvent_parts, ridge_form, ridge_rescaling
from .derivation import Step
from .engine import Context, Steps
from .expressions import FreeMatrix, Identity, MatrixExpr, Product, Resolvent, Sum
from .laws import Law
from .onepoint import free_factor_renormalization, gram_step, one_point_result, trace_invariance, transform_of
from .quantities import df1
from .rules import ADDITIVE_SUBORDINATION, LAYER_COMPOSITION, RIDGE_RESCALING

__all__ = ["additive_subordination", "derive_layers", "compose_mixed", "additive_terms", "match_sum"]


_REF_ADDITIVE = (
    "Voiculescu, Invent. Math. 104 (1991) (R-transform); Biane, Math. Z. 227 (1998) "
    "(subordination G_{A+B}(z) = G_A(omega(z)), omega = z - R_B(G_{A+B}(z)))"
)


def additive_subordination(
    ridge: sp.Expr,
    rest: sp.Expr,
    b: FreeMatrix,
    scale: sp.Expr,
    inner: sp.Symbol,
    dim: sp.Expr,
) -> tuple[sp.Eq, sp.Expr, Step]:
    r"""Peel the free additive term ``c B`` off the resolvent (additive subordination).

    With ``B`` rotation invariant and free from ``A`` (and from the test matrices),
    :math:`G_{A+cB}(z)=G_A(\omega)`, :math:`\omega=z-R_{cB}(G_{A+cB}(z))`
    (Biane 1998), and at matrix level :math:`(z-A-cB)^{-1}\simeq(\omega-A)^{-1}`. With
    :math:`z=-r`, :math:`\omega=-\tilde r`:

    .. math:: r(r+A+cB)^{-1}\simeq\frac{r}{\tilde r}\,\tilde r(\tilde r+A)^{-1},\qquad
              \tilde r=r+R_{cB}(-g),\quad g=\operatorname{tr}(\tilde r+A)^{-1}
              =\frac{1-\mathrm{df}_1(A,\tilde r)}{\tilde r},

    with :math:`R_{cB}(w)=c\,R_B(cw)`. Returns the fixed-point equation, the prefactor
    :math:`r/\tilde r` and the step.

    >>> import sympy as sp
    >>> from detequiv.derivations.laws import Semicircle
    >>> lam, lt = sp.symbols("lam lt")
    >>> A = sp.MatrixSymbol("A", 3, 3)
    >>> eq, pre, step = additive_subordination(lam, A, FreeMatrix("B", 3, Semicircle(2)), 1, lt, 3)
    >>> eq
    Eq(lt, lam - 2*(1 - df1(A, lt))/lt)
    >>> pre
    lam/lt
    """
    g = (1 - df1(rest, inner)) / inner
    r_value, note = transform_of(b.law, b.name, -scale * g, "R")
    eq = sp.Eq(inner, ridge + scale * r_value)
    prefactor = ridge / inner
    shifted = rest + b.to_sympy() if scale == 1 else rest + scale * b.to_sympy()
    step = Step(
        ADDITIVE_SUBORDINATION,
        ridge_form(ridge, shifted, dim),
        prefactor * ridge_form(inner, rest, dim),
        f"{b.name} ~ {b.law} is rotation invariant and free from the rest of the sum; {note}",
        eq,
    )
    return eq, prefactor, step


Terms = list[tuple[sp.Expr, tuple[MatrixExpr, ...]]]


def additive_terms(m: MatrixExpr, dim: sp.Expr) -> Steps:
    """The additive terms ``(coeff, factors)`` of ``m`` (a product of one sum is distributed),
    Gram pairs made Wishart (:func:`~detequiv.derivations.onepoint.gram_step`)."""
    if isinstance(m, Sum):
        out: Terms = []
        for term in m.terms:
            out += yield from additive_terms(term, dim)
        return out
    coeff, factors = (m.coeff, m.factors) if isinstance(m, Product) else (sp.S.One, (m,))
    factors = tuple(f for f in factors if not isinstance(f, Identity))
    if len(factors) == 1 and isinstance(factors[0], Sum):
        inner = yield from additive_terms(factors[0], dim)
        return [(coeff * c, fs) for c, fs in inner]
    for f in factors:
        if isinstance(f, Resolvent):
            raise InvalidArgument(f"{m} contains a resolvent; nested resolvents are not supported")
    new_coeff, new_factors = yield from gram_step(coeff, factors, dim)
    return [(new_coeff, new_factors)]


def _terms_sympy(terms: Terms, dim: sp.Expr) -> sp.Expr:
    parts = [product_sympy(fs, dim, c) for c, fs in terms]
    return parts[0] if len(parts) == 1 else sp.MatAdd(*parts)


def _free_names(terms: Terms) -> list[str]:
    return [leaf.name for _, fs in terms for f in fs for leaf in f.leaves() if isinstance(leaf, FreeMatrix)]


def match_sum(expr: Any, context: Context) -> tuple[Any, sp.Expr, Resolvent] | None:
    """:func:`derive_layers` takes ``c * resolvent(A, lam)`` with a sum in ``A``."""
    try:
        c_out, res = resolvent_parts(expr)
    except InvalidArgument:
        return None
    return (expr, c_out, res) if contains_sum(res.arg) else None


@dataclass
class _Layers:
    """The layers peeled so far, outer to inner: ``(kind, outer ridge, inner symbol, equation)``."""

    lam: sp.Expr
    dim: sp.Expr
    ridge: sp.Expr
    prefactor: sp.Expr
    layers: list[tuple[str, sp.Expr, sp.Symbol, sp.Eq]] = field(default_factory=list)
    transforms: list[tuple[str, Law]] = field(default_factory=list)

    def fresh(self) -> sp.Symbol:
        return sp.Symbol(f"kappa_{len(self.layers) + 1}")

    def add(self, kind: str, inner: sp.Symbol, eq: sp.Eq, b: FreeMatrix) -> None:
        if any(isinstance(a, sp.core.function.AppliedUndef) for a in eq.rhs.atoms(sp.Function)):
            self.transforms.append((b.name, b.law))
        self.layers.append((kind, self.ridge, inner, eq))
        self.ridge = inner


def _peel_additive(state: _Layers, terms: Terms) -> Steps:
    """One additive layer: the last free term alone ``c B`` (None when there is none)."""
    additive = [i for i, (_, fs) in enumerate(terms) if len(fs) == 1 and isinstance(fs[0], FreeMatrix)]
    if not additive:
        if _free_names(terms):
            raise InvalidArgument(
                f"the sum {_terms_sympy(terms, state.dim)} has random terms but no free additive "
                "term c*B (a FreeMatrix alone); additive subordination peels one free "
                "matrix at a time, so write the random part as a product or a free matrix"
            )
        return None
    index = additive[-1]
    scale, (b,) = terms[index]
    assert isinstance(b, FreeMatrix)
    rest = terms[:index] + terms[index + 1 :]
    inner = state.fresh()
    eq, pre, step = additive_subordination(
        state.ridge, _terms_sympy(rest, state.dim), b, scale, inner, state.dim
    )
    yield step
    state.add("additive", inner, eq, b)
    state.prefactor = state.prefactor * pre
    if len(rest) == 1:
        coeff, fs = rest[0]
        if len(fs) == 1 and isinstance(fs[0], Sum):
            rest = yield from additive_terms(fs[0] if coeff == 1 else Product.make(coeff, fs), state.dim)
    return rest


def _peel_multiplicative(state: _Layers, terms: Terms) -> Steps:
    """One multiplicative layer of the single product term (None when it has no free factor)."""
    coeff, factors = terms[0]
    free = [i for i, f in enumerate(factors) if isinstance(f, FreeMatrix)]
    if not free:
        return None
    dim = state.dim
    if coeff != 1:
        new_ridge = ridge_rescaling(state.ridge, coeff)
        yield Step(
            RIDGE_RESCALING,
            ridge_form(state.ridge, product_sympy(factors, dim, coeff), dim),
            ridge_form(new_ridge, product_sympy(factors, dim), dim),
            f"divide numerator and denominator by {coeff}",
        )
        state.ridge = new_ridge
    b = factors[free[-1]]
    assert isinstance(b, FreeMatrix)
    inner = state.fresh()
    new, eq, step = free_factor_renormalization(state.ridge, factors, free[-1], inner, dim)
    yield step
    state.add("multiplicative", inner, eq, b)
    if not new:
        return [(sp.S.One, ())]
    if len(new) == 1 and isinstance(new[0], Sum):
        return (yield from additive_terms(new[0], dim))
    return [(sp.S.One, new)]


def _trace_forward(state: _Layers, d_last: sp.Expr) -> Steps:
    """Trace invariance across the layers: ``1 - df1(Y_i, r_i) = (prefactors below) (1 - d_last)``."""
    below: dict[sp.Symbol, sp.Expr] = {}
    acc: sp.Expr = sp.S.One
    for kind, outer, inner, _ in reversed(state.layers):
        below[inner] = acc
        if kind == "additive":
            acc = acc * outer / inner
    forward: list[sp.Eq] = []
    for _, _, _, eq in state.layers:
        for old in sorted(eq.rhs.atoms(df1), key=str):
            if old == d_last:
                continue
            new_value = d_last if below[old.args[1]] == 1 else 1 - below[old.args[1]] * (1 - d_last)
            eq, step = trace_invariance(eq, old, new_value)
            yield step
        forward.append(eq)
    return forward


def derive_layers(found: tuple[Any, sp.Expr, Resolvent], context: Context) -> Steps:
    """The equivalent of a resolvent of a sum: additive and multiplicative layers, outer first."""
    expr, c_out, res = found
    if context.order is not None:
        raise InvalidArgument(
            "order= is supported for products of free factors; for resolvents of sums the "
            "layers are peeled outer to inner"
        )
    lam, dim = res.lam, res.shape[0]
    terms = yield from additive_terms(res.arg, dim)
    names = _free_names(terms)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidWord(
            f"the free matrix {repeated[0]} appears more than once in {res.arg}; it is then not "
            "free of the rest, and each layer needs each free matrix once"
        )
    state = _Layers(lam=lam, dim=dim, ridge=lam, prefactor=sp.simplify(c_out / lam))
    while True:
        peel = _peel_additive if len(terms) > 1 else _peel_multiplicative
        rest = yield from peel(state, terms)
        if rest is None:
            break
        terms = rest
    if not state.layers:
        raise InvalidArgument(f"{res.arg} has no random matrix; nothing to derive")
    y = _terms_sympy(terms, dim)
    symbols = [layer[2] for layer in state.layers]
    forward = yield from _trace_forward(state, df1(y, symbols[-1]))
    final = [forward[0]]
    if len(state.layers) > 1:
        final, lam_of_inner = compose_mixed(state.layers, forward, lam, symbols)
        yield Step(
            LAYER_COMPOSITION,
            sp.Tuple(*symbols),
            sp.Tuple(*[e.rhs for e in final]),
            "each layer gives its outer ridge explicitly in terms of its inner ridge "
            "(multiplicative: r_out = r_in / S(-df1); additive: r_out = r_in - R(-g)); "
            "composing them gives lam as a function of the innermost ridge",
            sp.Eq(lam, lam_of_inner),
        )
    return one_point_result(expr, final, symbols, lam, symbols[-1], y, dim, state.prefactor, state.transforms)


def compose_mixed(
    layers: Sequence[tuple[str, sp.Expr, sp.Symbol, sp.Eq]],
    forward: Sequence[sp.Eq],
    lam: sp.Expr,
    symbols: Sequence[sp.Symbol],
) -> tuple[list[sp.Eq], sp.Expr]:
    """Invert each layer for its outer ridge; the innermost ridge gets one implicit equation."""
    inner_ridge = symbols[-1]
    explicit: dict[sp.Symbol, sp.Expr] = {}
    equations: list[sp.Eq] = []
    lam_value: sp.Expr | None = None
    for (_, outer, _, _), eq in zip(reversed(layers), reversed(forward), strict=True):
        t, v = _invert_layer(eq, outer, [*symbols, lam])
        if t == lam:
            lam_value = v
        else:
            explicit[t] = v
            equations.append(sp.Eq(t, v))
    assert lam_value is not None
    # the innermost ridge: substitute the explicit outer ridges (they depend on inner ones only)
    full = lam_value
    for _ in range(len(symbols)):
        full = full.xreplace(explicit)
    implicit = sp.Eq(inner_ridge, sp.simplify(inner_ridge * lam / full))
    return [implicit, *equations], lam_value


def _invert_layer(eq: sp.Eq, outer: sp.Expr, ridges: Sequence[sp.Expr]) -> tuple[sp.Symbol, sp.Expr]:
    """The ridge ``t`` in the outer ridge expression of a layer (``t`` itself, or ``c t`` after a
    rescaling by a positive coefficient or a normalization other than the Gaussian's own
    dimension), and ``t`` solved from the layer's forward equation ``inner = F(outer)``.

    ``F`` is affine in the outer ridge (multiplicative: ``inner = r S(-df1)``; additive:
    ``inner = r + R(-g)``), so ``t`` is solved linearly, without a general solver: write
    ``inner - F = a t + b`` and take ``t = -b / a``.
    """
    targets = [s for s in sp.sympify(outer).free_symbols if s in ridges]
    if len(targets) != 1:
        raise InvalidArgument(
            f"the outer ridge {outer} of the layer {eq} is not a multiple of one ridge; the layers "
            "compose only when each outer ridge is c * (one ridge) with c a positive scalar"
        )
    (t,) = targets
    if sp.simplify(sp.diff(outer, t, 2)) != 0 or sp.simplify(outer.subs(t, 0)) != 0:
        raise InvalidArgument(f"the outer ridge {outer} of the layer {eq} is not c * {t}")
    f = sp.together(eq.lhs - eq.rhs)
    num, _ = sp.fraction(f)
    num = sp.expand(num)
    a = sp.diff(num, t)
    if a.has(t) or sp.simplify(a) == 0:
        raise InvalidArgument(
            f"cannot invert the layer {eq} for its outer ridge {outer}: it is not affine in {t}"
        )
    return t, sp.simplify(-num.subs(t, 0) / a)
