r"""One-point deterministic equivalents, derived by named resummation rules.

:func:`~detequiv.derivations.derive.derive` takes ``c * resolvent(A, lam)`` where ``A`` is a
product of deterministic matrices, Gram products ``X.T @ X`` of Gaussian matrices and free rotation-invariant
factors, or a sum with free additive terms ``c B`` (possibly inside such a product, e.g.
``X.T @ X @ (Sigma + S) / P``), and returns a :class:`OnePoint`: the deterministic equivalent, its fixed
points (a dependency graph solved in topological order) and the list of the rules that
produced it (MATH.md 2.1-2.3):

* :func:`gaussian_gram_to_wishart`: ``X.T @ X = r W`` with ``W`` white Wishart;
* :func:`ridge_rescaling`: ``lam (lam + c Y)^{-1} = lam' (lam' + Y)^{-1}``, ``lam' = lam / c``;
* :func:`free_factor_renormalization`: peel one free factor ``B`` off
  ``lam (lam + L B R)^{-1} ~ kappa (kappa + L R)^{-1}`` with
  ``kappa = lam S_B(-df1(R L, kappa))`` (multiplicative subordination);
* :func:`merge_square_roots`: ``A^{1/2} A^{1/2} = A``;
* :func:`outer_isotropy`: a Gaussian sandwich ``c Z Y Z.T`` (random features in
  feature space) has an equivalent ``tau I_N``, ``tau = 1 - (D/N)(1 - tr_D`` of the
  rotated resolvent of ``c Y Z.T Z``), which is derived in turn;
* :func:`trace_invariance`: the trace of an equivalence identifies every intermediate
  ``df1`` with the innermost one;
* :func:`layer_composition`: the layered ridges compose into one implicit equation for
  the innermost ridge, ``kappa_L = lam prod_i S_i(-df1)``, the others explicit;
* :func:`additive_subordination`: peel a free additive term ``c B`` off
  ``r (r + A + c B)^{-1} ~ (r / r~) r~ (r~ + A)^{-1}`` with
  ``r~ = r + R_{cB}(-(1 - df1(A, r~)) / r~)`` (Biane 1998; z = -r). Across an additive
  layer the trace carries the prefactor: ``1 - df1(outer) = (r / r~)(1 - df1(inner))``
  (:func:`trace_invariance`); mixed chains are composed by inverting each layer for its
  outer ridge (multiplicative: ``r = r' / S(-df1)``, additive: ``r = r~ - R(-g)``), which
  gives ``lam`` as a function of the innermost ridge (one implicit equation).

Every result proves itself: :meth:`OnePoint.check_series` expands it in ``1/lam``
exactly and compares each coefficient with the planar diagram sum of
:func:`~detequiv.derivations.mixed.mixed_moment`; :meth:`OnePoint.check_monte_carlo`
compares it with simulation.

>>> import sympy as sp
>>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
>>> lam = sp.Symbol("lam", positive=True); D, P = sp.symbols("D P", positive=True)
>>> Sigma = Deterministic("Sigma", D); X = Gaussian("X", (P, D))
>>> from detequiv.derivations.derive import derive
>>> eq = derive(lam * resolvent(Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P, lam))
>>> eq.deterministic
kappa*(kappa*I + Sigma)**(-1)
>>> eq.fixed_points[0].equation
Eq(kappa, lam/(-D*df1(Sigma, kappa)/P + 1))
>>> eq.check_series(4).passed
True

References
----------
A. Nica and R. Speicher, Lectures on the Combinatorics of Free Probability (2006),
Lectures 14 and 18 (S-transform). P. Biane, Processes with free increments, Math. Z.
227 (1998) (subordination). MATH.md sections 2.1-2.3 and 6.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sympy as sp

from ..errors import InvalidArgument, InvalidWord, UndefinedTransform
from .algebra import (
    gaussian_gram_to_wishart,
    merge_square_roots,
    product_factors,
    product_sympy,
    resolvent_parts,
    ridge_form,
    ridge_rescaling,
)
from .derivation import Derivation, FixedPoint, Step, solve_order
from .engine import Context, Steps
from .expressions import (
    Deterministic,  # noqa: F401 - used by doctests
    FreeMatrix,
    Gaussian,
    MatrixExpr,
    Product,
    Resolvent,
    Sqrt,
    Transpose,
)
from .laws import Law
from .numeric import OnePointValue, evaluate_one_point
from .quantities import df1
from .results import Equivalence
from .rules import (
    FREE_FACTOR_RENORMALIZATION,
    GAUSSIAN_GRAM_TO_WISHART,
    LAYER_COMPOSITION,
    MERGE_SQUARE_ROOTS,
    OUTER_ISOTROPY,
    RIDGE_RESCALING,
    TRACE_INVARIANCE,
    TRACE_OF_EQUIVALENCE,
)
from .series import SeriesCheck, check_series

__all__ = [
    "OnePoint",
    "Isotropic",
    "free_factor_renormalization",
    "trace_invariance",
    "layer_composition",
    "outer_isotropy",
    "gaussian_sandwich",
    "ResolventForm",
    "resolvent_form",
    "match_sandwich",
    "match_product",
    "gram_step",
    "derive_product",
    "one_point_result",
    "with_fixed_points",
    "transform_of",
]


# ---------------------------------------------------------------------------
# the rules
# ---------------------------------------------------------------------------


def gram_step(coeff: sp.Expr, factors: tuple[MatrixExpr, ...], dim: sp.Expr) -> Steps:
    """:func:`~detequiv.derivations.algebra.gaussian_gram_to_wishart` as a step (when it changed
    something); returns the new coefficient and factors."""
    before = product_sympy(factors, dim, coeff)
    new_coeff, new_factors, names = gaussian_gram_to_wishart(coeff, factors)
    if names:
        yield Step(
            GAUSSIAN_GRAM_TO_WISHART,
            before,
            product_sympy(new_factors, dim, new_coeff),
            ", ".join(
                f"{f.name} is white Wishart with ratio {f.law.ratio}"  # type: ignore[attr-defined]
                for f in new_factors
                if isinstance(f, FreeMatrix) and f.name in names
            ),
        )
    return new_coeff, new_factors


def transform_of(law: Law, name: str, arg: sp.Expr, kind: str = "S") -> tuple[sp.Expr, str]:
    """``S_law(arg)`` (``kind="S"``) or ``R_law(arg)`` (``kind="R"``): the closed form, or an undefined
    function ``S_name`` / ``R_name`` that the series witness expands from the law's moments or
    cumulants; and a note saying which."""
    if kind == "S" and sp.sympify(law.cumulant(1)).is_zero:
        raise UndefinedTransform(
            f"the free factor {name} has law {law} with mean 0, so its S-transform is "
            "undefined and the multiplicative rule does not apply; shift it by a "
            "constant or use an additive model"
        )
    closed = law.s_transform if kind == "S" else law.r_transform
    try:
        return closed(arg), f"{kind}_{name} in closed form"
    except UndefinedTransform:
        source = "moments (transforms.s_series)" if kind == "S" else "cumulants (transforms.r_series)"
        return sp.Function(f"{kind}_{name}")(arg), (
            f"{kind}_{name} has no closed form: it is expanded as the exact truncated series of its "
            f"{source} when checked"
        )


def free_factor_renormalization(
    ridge: sp.Expr,
    factors: tuple[MatrixExpr, ...],
    index: int,
    kappa: sp.Symbol,
    dim: sp.Expr,
) -> tuple[tuple[MatrixExpr, ...], sp.Eq, Step]:
    r"""Peel the free factor ``B = factors[index]`` off the resolvent.

    With :math:`Y=LBR`, ``B`` rotation invariant and free from ``L``, ``R`` (and from
    every matrix the equivalence is tested against):

    .. math:: r(r+LBR)^{-1}\simeq\kappa(\kappa+LR)^{-1},\qquad
              \kappa=r\,S_B\big(-\mathrm{df}_1(RL,\kappa)\big)

    (multiplicative subordination; :math:`L=I` or :math:`R=I` give the non-symmetric
    orders ``B A`` and ``A B``, :math:`L=R=A^{1/2}` the symmetric one).
    """
    b = factors[index]
    assert isinstance(b, FreeMatrix)
    left, right = factors[:index], factors[index + 1 :]
    rl = merge_square_roots(right + left)
    delta = df1(product_sympy(rl, b.dim), kappa)
    s_value, note = transform_of(b.law, b.name, -delta)
    eq = sp.Eq(kappa, ridge * s_value)
    new = merge_square_roots(left + right)
    step = Step(
        FREE_FACTOR_RENORMALIZATION,
        ridge_form(ridge, product_sympy(factors, dim), dim),
        ridge_form(kappa, product_sympy(left + right, dim), dim),
        f"{b.name} ~ {b.law} is rotation invariant and free from the other factors; {note}",
        eq,
    )
    return new, eq, step


def trace_invariance(equation: sp.Eq, old: sp.Expr, new: sp.Expr) -> tuple[sp.Eq, Step]:
    r"""Replace ``df1(Y_i, kappa_i)`` by ``df1(Y_L, kappa_L)``.

    Taking ``tr`` of the equivalence :math:`\kappa_i(\kappa_i+Y_i)^{-1}\simeq
    \kappa_L(\kappa_L+Y_L)^{-1}` gives
    :math:`1-\mathrm{df}_1(Y_i,\kappa_i)=1-\mathrm{df}_1(Y_L,\kappa_L)`; and
    :math:`\mathrm{df}_1(RL,\kappa)=\mathrm{df}_1(LR,\kappa)` by cyclicity of the trace.
    """
    after = sp.Eq(equation.lhs, equation.rhs.xreplace({old: new}))
    step = Step(
        TRACE_INVARIANCE,
        old,
        new,
        "normalized trace of the equivalence, and cyclicity of tr",
        after,
    )
    return after, step


def layer_composition(equations: Sequence[sp.Eq]) -> tuple[tuple[sp.Eq, ...], Step]:
    r"""Compose layered ridges :math:`\kappa_i=\kappa_{i-1}S_i(-\delta)` (:math:`\kappa_0=\lambda`).

    All :math:`\delta` equal :math:`\mathrm{df}_1(Y_L,\kappa_L)` (:func:`trace_invariance`),
    so :math:`\kappa_i=\lambda\prod_{j\le i}S_j(-\delta)`: one implicit equation for the
    innermost :math:`\kappa_L` and explicit ones for the others (MATH.md 2.3; the scalar
    renormalisation is the S-transform of the product, :math:`S_{AB}=S_AS_B`).
    """
    out: list[sp.Eq] = []
    for eq in equations:
        if out and out[-1].lhs not in eq.rhs.free_symbols:
            raise InvalidArgument(
                f"{eq} does not renormalize the previous ridge {out[-1].lhs}; layers must form a chain"
            )
        rhs = eq.rhs.xreplace({out[-1].lhs: out[-1].rhs}) if out else eq.rhs
        out.append(sp.Eq(eq.lhs, rhs))
    step = Step(
        LAYER_COMPOSITION,
        sp.Tuple(*[e.lhs for e in equations]),
        sp.Tuple(*[e.rhs for e in out]),
        "substitute each ridge into the next: the innermost ridge solves one implicit "
        "equation, the intermediate ridges are explicit",
        sp.Eq(out[-1].lhs, out[-1].rhs),
    )
    return tuple(out), step


# ---------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OnePoint(Equivalence):
    r"""A one-point deterministic equivalent ``random ~ deterministic``.

    Attributes
    ----------
    random : MatrixExpr
        The expression given to :func:`derive`.
    deterministic : sympy.Expr
        ``prefactor * ridge (ridge I + matrix)^{-1}``.
    fixed_points : tuple of FixedPoint
        In solve order (innermost ridge first).
    derivation : tuple of Step
        The rules applied, in order.
    lam : sympy.Expr
        The ridge of the input resolvent.
    ridge : sympy.Symbol
        The renormalized ridge of the equivalent.
    matrix : sympy.Expr
        The deterministic matrix ``Y`` of the equivalent (a sympy matrix expression).
    prefactor : sympy.Expr
        ``c / lam`` for an input ``c (A + lam)^{-1}``.
    transforms : tuple of (str, Law)
        Laws whose S-transform is an undefined function ``S_name`` in the equations.
    isotropic : Isotropic or None
        Set when the equivalent is a multiple of the identity obtained by
        :func:`outer_isotropy` (a Gaussian sandwich ``Z Y Z^T``): the rotated problem
        in the inner space and the scalar ``tau``.
    """

    random: MatrixExpr
    deterministic: sp.Expr
    fixed_points: tuple[FixedPoint, ...]
    derivation: tuple[Step, ...]
    lam: sp.Expr
    ridge: sp.Expr
    matrix: sp.Expr
    prefactor: sp.Expr
    transforms: tuple[tuple[str, Law], ...] = ()
    isotropic: Isotropic | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "derivation", Derivation(self.derivation))

    def check_series(self, order: int = 8) -> SeriesCheck:
        """Exact 1/lam series of ``tr(M .)`` against the planar diagram sums (MATH.md 6.1).

        The fixed points are solved as truncated power series in ``x = 1/lam`` by
        iterating their equations; the equivalent ``ridge (ridge + Y)^{-1}`` is expanded
        and contracted with a test letter ``M`` (deterministic, not commuting with the
        others); the coefficient of ``lam^-k`` must equal
        ``(-1)^k lim tr(M A^k)`` for the input ``lam (lam + A)^{-1}``, computed by
        :func:`~detequiv.derivations.mixed.mixed_moment`. Symbolic in the moments
        ``tr(...)``, the ratios and the cumulants.
        """
        return check_series(self, order)

    def evaluate(self, values: Mapping[Any, Any]) -> OnePointValue:
        """Solve the fixed points numerically on the physical branch.

        ``values`` maps the deterministic matrices (the :class:`Deterministic` objects or
        their names) to a spectrum (1-D, a diagonal matrix) or a matrix, and the symbols
        (``lam``, dimensions, ratios) to numbers. Real ``lam > 0``: the root with
        ``kappa > kappa_0`` (bracketing with ``scipy.optimize.brentq``); ``lam = 0``:
        the ridgeless ``kappa_0``; complex ``lam``: Newton continuation from ``|lam|``
        (MATH.md 2.1). Real ``lam < 0`` raises :class:`InvalidArgument`.
        """
        return evaluate_one_point(self, values)


@dataclass(frozen=True, slots=True)
class Isotropic:
    """The rotated problem behind an isotropic equivalent ``tau I_N`` (:func:`outer_isotropy`).

    Attributes
    ----------
    inner : OnePoint
        The equivalent of ``lam (lam + c Y Z^T Z)^{-1}`` in the inner space.
    tau : sympy.Symbol
        ``tr_N`` of the equivalent; its fixed point is explicit.
    gaussian : Gaussian
        The sandwiching matrix ``Z`` (``N x D``).
    """

    inner: OnePoint
    tau: sp.Symbol
    gaussian: Gaussian


# ---------------------------------------------------------------------------
# the strategies: a Gaussian sandwich, a product of free factors
# ---------------------------------------------------------------------------


def _free_label(f: FreeMatrix) -> set[str]:
    """Names that select ``f`` in ``order``: its own, and ``X`` for ``W_X`` from a Gram pair."""
    out = {f.name}
    if f.name.startswith("W_"):
        out.add(f.name[2:])
    return out


def _averaging_order(order: Sequence[str] | None, free: Sequence[FreeMatrix]) -> list[str]:
    """Validate ``order`` against the free factors present; the names of the factors, in order."""
    if order is None:
        return []
    if isinstance(order, str) or not all(isinstance(o, str) for o in order):
        raise InvalidArgument(
            f"order={order!r} must be a sequence of matrix names such as ('X', 'F'), not a string"
        )
    out: list[str] = []
    for name in order:
        match = [f.name for f in free if name in _free_label(f)]
        if not match:
            known = sorted(n for f in free for n in _free_label(f))
            raise InvalidArgument(
                f"order names {name!r}, which is not a free factor or Gram pair of the resolvent; "
                f"known: {known}"
            )
        if match[0] in out:
            raise InvalidArgument(f"order names {name!r} twice; average each source of randomness once")
        out.append(match[0])
    return out


def _next_free(factors: Sequence[MatrixExpr], wanted: Sequence[str]) -> int:
    """Index of the next free factor to peel: the first of ``wanted`` present, else the rightmost."""
    for name in wanted:
        for i, f in enumerate(factors):
            if isinstance(f, FreeMatrix) and f.name == name:
                return i
    return max(i for i, f in enumerate(factors) if isinstance(f, FreeMatrix))


def gaussian_sandwich(
    factors: Sequence[MatrixExpr], dim: Any
) -> tuple[Gaussian, tuple[MatrixExpr, ...]] | None:
    """``(Z, Y)`` when the product is ``Z Y Z.T`` with ``Z`` Gaussian appearing only there."""
    if len(factors) < 3:
        return None
    first, last = factors[0], factors[-1]
    if not (isinstance(first, Gaussian) and isinstance(last, Transpose) and last.arg == first):
        return None
    mid = tuple(factors[1:-1])
    for f in mid:
        if f == first or (isinstance(f, Transpose) and f.arg == first):
            raise InvalidWord(
                f"the Gaussian matrix {first.name} appears inside its own sandwich "
                f"{first.name} ... {first.name}.T; it must appear only at both ends"
            )
    return first, mid


@dataclass(frozen=True, slots=True)
class ResolventForm:
    """``expr = c_out * resolvent(coeff * product(factors), lam)``: what the product strategies match."""

    expr: Any
    c_out: sp.Expr
    res: Resolvent
    coeff: sp.Expr
    factors: tuple[MatrixExpr, ...]

    @property
    def dim(self) -> sp.Expr:
        return self.res.shape[0]


def resolvent_form(expr: Any) -> ResolventForm:
    """The parts of ``c * resolvent(A, lam)`` with ``A`` a product (raises otherwise)."""
    c_out, res = resolvent_parts(expr)
    coeff, factors = product_factors(res.arg)
    return ResolventForm(expr, c_out, res, coeff, factors)


def match_sandwich(expr: Any, context: Context) -> ResolventForm | None:
    """:func:`outer_isotropy` applies to ``c * resolvent(c' Z Y Z.T, lam)``, ``Z`` Gaussian."""
    try:
        form = resolvent_form(expr)
    except InvalidArgument:
        return None
    return form if gaussian_sandwich(form.factors, form.dim) is not None else None


def outer_isotropy(form: ResolventForm, context: Context) -> Steps:
    r"""Equivalent of a Gaussian sandwich: :math:`\lambda(\lambda+cZYZ^\top)^{-1}\simeq\tau I_N`.

    ``Z`` (``N x D``) has iid entries and appears only at both ends, so the law of the
    resolvent is invariant under :math:`Z\to OZ`: its equivalent against deterministic
    test matrices is a multiple of the identity, :math:`\tau=\operatorname{tr}_N`. The
    nonzero spectra of :math:`ZYZ^\top` and :math:`YZ^\top Z` coincide, so

    .. math:: \tau = 1-\frac{D}{N}\Big(1-\operatorname{tr}_D\,
              \lambda(\lambda+cYZ^\top Z)^{-1}\Big),

    and the inner resolvent is derived in turn (with the averaging ``order``): for random
    features, :math:`\tau=1-n/N`, the feature-space trace.

    >>> import sympy as sp
    >>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
    >>> lam = sp.Symbol("lam", positive=True); D, N, P = sp.symbols("D N P", positive=True)
    >>> S = Deterministic("Sigma", D); X = Gaussian("X", (P, D)); F = Gaussian("F", (N, D))
    >>> from detequiv.derivations.derive import derive
    >>> eq = derive(lam * resolvent(F @ S.sqrt() @ X.T @ X @ S.sqrt() @ F.T / (N * P), lam))
    >>> eq.deterministic
    tau*I
    >>> eq.fixed_points[-1]
    FixedPoint(symbol=tau, equation=Eq(tau, -D*df1(Sigma, kappa_2)/N + 1), depends_on=(kappa_2,))
    """
    sandwich = gaussian_sandwich(form.factors, form.dim)
    assert sandwich is not None
    z, mid = sandwich
    res, lam = form.res, form.res.lam
    n_dim, d_dim = z.dims
    inner_arg = Product.make(form.coeff, (*mid, Transpose(z), z))
    tau = sp.Symbol("tau")
    identity = sp.Identity(n_dim)
    yield Step(
        OUTER_ISOTROPY,
        ridge_form(lam, res.arg.to_sympy(), n_dim),
        tau * identity,
        f"{z.name} is Gaussian and sandwiches the rest: tau = tr_{n_dim} = 1 - ({d_dim}/{n_dim}) "
        f"(1 - tr_{d_dim} of the rotated resolvent {ridge_form(lam, inner_arg.to_sympy(), d_dim)})",
    )
    inner = yield from context.derive(lam * Resolvent(inner_arg, lam))
    if not isinstance(inner, OnePoint) or inner.isotropic is not None:
        raise InvalidWord(
            f"nested Gaussian sandwiches ({z.name} around another) are not supported yet; write "
            "the inner product with a Gram pair"
        )
    inner_trace = inner.prefactor * (1 - df1(inner.matrix, inner.ridge))
    rhs = 1 - d_dim / n_dim * (1 - inner_trace)
    rhs = sp.expand(rhs) if inner.prefactor == 1 else rhs
    eq = sp.Eq(tau, rhs)
    yield Step(
        TRACE_OF_EQUIVALENCE,
        sp.Trace(ridge_form(lam, inner_arg.to_sympy(), d_dim)) / d_dim,
        inner_trace,
        "tr kappa (kappa + Y)^-1 = 1 - df1(Y, kappa)",
        eq,
    )
    deps = tuple(
        sorted((s for s in rhs.free_symbols if s in {fp.symbol for fp in inner.fixed_points}), key=str)
    )
    prefactor = sp.simplify(form.c_out / lam) * tau
    return OnePoint(
        random=form.expr,
        deterministic=prefactor * identity,
        fixed_points=(*inner.fixed_points, FixedPoint(tau, eq, deps)),
        derivation=(),
        lam=lam,
        ridge=sp.S.One,
        matrix=sp.ZeroMatrix(n_dim, n_dim),
        prefactor=prefactor,
        transforms=inner.transforms,
        isotropic=Isotropic(inner=inner, tau=tau, gaussian=z),
    )


def match_product(expr: Any, context: Context) -> ResolventForm:
    """:func:`derive_product` takes ``c * resolvent(A, lam)``, ``A`` a product; anything else is
    refused here with the reason (it is the last strategy)."""
    return resolvent_form(expr)


def _check_free_once(factors: Sequence[MatrixExpr], dim: sp.Expr) -> list[FreeMatrix]:
    free = [f for f in factors if isinstance(f, FreeMatrix)]
    seen: set[str] = set()
    for f in free:
        if f.name in seen:
            raise InvalidWord(
                f"the free factor {f.name} appears more than once in {product_sympy(factors, dim)}; "
                "it is then not free of the rest of the product, and the multiplicative rule "
                "needs each free factor once"
            )
        seen.add(f.name)
    for h in factors:
        if isinstance(h, Sqrt) and h.base.name in seen:
            raise InvalidWord(f"{h.base.name} is used both as a free and a deterministic matrix")
    return free


def _same_trace(equations: Sequence[sp.Eq], target: sp.Expr) -> Steps:
    """:func:`trace_invariance` on every ``df1`` of the equations that is not ``target``."""
    rewritten = []
    for eq in equations:
        for old in sorted(eq.rhs.atoms(df1), key=str):
            if old != target:
                # normalized traces in different spaces: d_old df1_old = d_target df1_target
                ratio = sp.simplify(target.args[0].shape[0] / old.args[0].shape[0])
                eq, step = trace_invariance(eq, old, ratio * target)
                yield step
        rewritten.append(eq)
    return tuple(rewritten)


def derive_product(form: ResolventForm, context: Context) -> Steps:
    """The equivalent of ``c * resolvent(A, lam)`` for ``A`` a product of deterministic matrices,
    Gram pairs and free factors (each once): one renormalized ridge per free factor, peeled in
    the averaging order of ``context`` (see :func:`~detequiv.derivations.derive.derive`)."""
    lam, dim = form.res.lam, form.dim
    prefactor = sp.simplify(form.c_out / lam)
    coeff, factors = yield from gram_step(form.coeff, form.factors, dim)
    ridge: sp.Expr = lam
    if coeff != 1:
        ridge = ridge_rescaling(lam, coeff)
        yield Step(
            RIDGE_RESCALING,
            ridge_form(lam, product_sympy(factors, dim, coeff), dim),
            ridge_form(ridge, product_sympy(factors, dim), dim),
            f"divide numerator and denominator by {coeff}",
        )
    free = _check_free_once(factors, dim)
    n_layers = len(free)
    kappas = (
        [sp.Symbol("kappa")] if n_layers == 1 else [sp.Symbol(f"kappa_{i}") for i in range(1, n_layers + 1)]
    )
    equations: list[sp.Eq] = []
    transforms: list[tuple[str, Law]] = []
    current = factors
    wanted = _averaging_order(context.order, free)
    for kappa in kappas:
        index = _next_free(current, wanted)
        b = current[index]
        assert isinstance(b, FreeMatrix)
        new, eq, step = free_factor_renormalization(ridge, current, index, kappa, dim)
        yield step
        if any(isinstance(a, sp.core.function.AppliedUndef) for a in eq.rhs.atoms(sp.Function)):
            transforms.append((b.name, b.law))
        merged = merge_square_roots(current[:index] + current[index + 1 :])
        if len(merged) != len(current) - 1:
            yield Step(
                MERGE_SQUARE_ROOTS,
                product_sympy(current[:index] + current[index + 1 :], dim),
                product_sympy(merged, dim),
                "A^(1/2) A^(1/2) = A",
            )
        equations.append(eq)
        current, ridge = new, kappa
    y = product_sympy(current, dim)
    final: tuple[sp.Eq, ...] = tuple(equations)
    if n_layers:
        final = yield from _same_trace(final, df1(y, kappas[-1]))
        if n_layers > 1:
            final, step = layer_composition(final)
            yield step
    ridge_symbol = kappas[-1] if n_layers else ridge
    return one_point_result(form.expr, final, kappas, lam, ridge_symbol, y, dim, prefactor, transforms)


def one_point_result(
    expr: Any,
    final: Sequence[sp.Eq],
    symbols: Sequence[sp.Symbol],
    lam: sp.Expr,
    ridge: sp.Expr,
    y: sp.Expr,
    dim: sp.Expr,
    prefactor: sp.Expr,
    transforms: Sequence[tuple[str, Law]],
) -> OnePoint:
    """The :class:`OnePoint` of ``prefactor * ridge (ridge + y)^-1`` with the fixed points ``final``
    (its derivation is filled in by the engine that collects the steps)."""
    fixed = []
    for eq in final:
        deps = tuple(sorted((s for s in eq.rhs.free_symbols if s in symbols and s != eq.lhs), key=str))
        fixed.append(FixedPoint(eq.lhs, eq, deps))
    deterministic = ridge_form(ridge, y, dim)
    if prefactor != 1:
        deterministic = prefactor * deterministic
    return OnePoint(
        random=expr,
        deterministic=deterministic,
        fixed_points=solve_order(fixed),
        derivation=(),
        lam=lam,
        ridge=ridge,
        matrix=y,
        prefactor=prefactor,
        transforms=tuple(transforms),
    )


def with_fixed_points(eq: OnePoint, fixed_points: Sequence[FixedPoint]) -> OnePoint:
    """A copy of ``eq`` with other fixed points (for negative controls)."""
    return replace(eq, fixed_points=tuple(fixed_points))
