r"""One-point deterministic equivalents, derived by named resummation rules.

:func:`derive` takes ``c * resolvent(A, lam)`` where ``A`` is a product of deterministic
matrices, Gram products ``X.T @ X`` of Gaussian matrices and free rotation-invariant
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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx
import numpy as np
import sympy as sp

from ..errors import DetEquivError, InvalidArgument, InvalidWord, UndefinedTransform, VerificationError
from .expressions import (
    Deterministic,  # noqa: F401 - used by doctests
    DeterministicVector,
    FreeMatrix,
    Gaussian,
    Identity,
    MatrixExpr,
    Product,
    Resolvent,
    Sqrt,
    Sum,
    Trace,
    Transpose,
)
from .laws import Law, Wishart

__all__ = [
    "df1",
    "Step",
    "Derivation",
    "FixedPoint",
    "OnePoint",
    "SeriesCheck",
    "OnePointValue",
    "Contracted",
    "derive",
    "solve_order",
    "gaussian_gram_to_wishart",
    "ridge_rescaling",
    "free_factor_renormalization",
    "merge_square_roots",
    "trace_invariance",
    "layer_composition",
    "additive_subordination",
    "contract_equivalence",
    "outer_isotropy",
    "Isotropic",
]

#: Numeric witnesses registered by :mod:`detequiv.codegen` (derivations never imports it).
_WITNESSES: dict[str, Callable[..., Any]] = {}


def register_witness(name: str, function: Callable[..., Any]) -> None:
    """Register a witness (e.g. ``"monte_carlo"``) that :class:`OnePoint` methods call."""
    _WITNESSES[name] = function


def _tex(e: Any) -> str:
    """LaTeX of a step's side (a sympy object, or a detequiv expression through its sympy form)."""
    to_sympy = getattr(e, "to_sympy", None)
    try:
        return sp.latex(to_sympy() if callable(to_sympy) else e)
    except Exception:  # noqa: BLE001 - a display must not fail
        return r"\text{" + str(e).replace("_", r"\_") + "}"


def call_witness(key: str, module: str, result: Any, sizes: Any, rng: Any, **kwargs: Any) -> Any:
    """Run the witness registered under ``key`` (provided by ``detequiv.codegen.<module>``)."""
    witness = _WITNESSES.get(key)
    if witness is None:
        raise DetEquivError(f"no Monte Carlo witness is registered; import detequiv.codegen.{module}")
    return witness(result, sizes, rng=rng, **kwargs)


def result_str(eq: Any) -> str:
    """``random ~ deterministic``, the fixed points and the numbered steps (any result)."""
    lines = [f"{eq.random}  ~  {eq.deterministic}"]
    lines += [f"  {fp}" for fp in eq.fixed_points]
    lines.append("derivation:")
    lines += [f"  {i + 1}. {s}" for i, s in enumerate(eq.derivation)]
    return "\n".join(lines)


def result_latex(eq: Any) -> str:
    """The result and its fixed points as an inline ``aligned`` block (notebook display)."""
    eqs = [sp.latex(eq.random.to_sympy()) + r" &\simeq " + sp.latex(eq.deterministic)]
    eqs += [sp.latex(fp.symbol) + " &= " + sp.latex(fp.rhs) for fp in eq.fixed_points]
    return r"$\begin{aligned}" + r"\\".join(eqs) + r"\end{aligned}$"


_REF_SUBORDINATION = "MATH.md 2.2; Nica-Speicher Lecture 18 (S-transform); Biane, Math. Z. 227 (1998)"


class df1(sp.Function):  # noqa: N801 - the paper's name
    r"""Degrees of freedom :math:`\mathrm{df}_1(Y,\kappa)=\operatorname{tr}Y(Y+\kappa)^{-1}`.

    ``Y`` is a sympy matrix expression, ``kappa`` a scalar; the value is a commutative
    scalar (MATH.md 1.1).

    >>> import sympy as sp
    >>> S = sp.MatrixSymbol("Sigma", 3, 3)
    >>> sp.latex(df1(S, sp.Symbol("kappa")))
    '\\operatorname{tr}\\left[\\Sigma \\left(\\kappa \\mathbb{I} + \\Sigma\\right)^{-1}\\right]'
    """

    nargs = 2
    is_commutative = True

    def _latex(self, printer: Any, exp: Any = None) -> str:
        y, kappa = self.args
        n = y.shape[0]
        inner = sp.MatMul(y, sp.Inverse(sp.MatAdd(y, kappa * sp.Identity(n))))
        tex = r"\operatorname{tr}\left[" + printer._print(inner) + r"\right]"
        if exp is not None:
            tex = r"\left(" + tex + r"\right)^{" + str(exp) + "}"
        return tex


# ---------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One application of a named rule: ``before = after`` (and an equation it introduced).

    Attributes
    ----------
    rule : str
        The rule's name (a function of this module).
    before, after : sympy.Basic
        The expression before and after the rule.
    reference : str
        Where the mathematics is stated.
    note : str
        Why the rule applies here.
    equation : sympy.Eq or None
        A fixed-point equation the step introduced or rewrote.
    """

    rule: str
    before: sp.Basic
    after: sp.Basic
    reference: str
    note: str = ""
    equation: sp.Basic | None = None

    def _latex_row(self, number: int | None = None) -> str:
        label = self.rule.replace("_", r"\_")
        head = rf"\text{{{number}. {label}}}" if number is not None else rf"\text{{{label}}}"
        return head + r" &\quad " + _tex(self.before) + " = " + _tex(self.after)

    def _repr_latex_(self) -> str:
        return r"$\begin{aligned}" + self._latex_row() + r"\end{aligned}$"

    def __str__(self) -> str:
        text = f"[{self.rule}] {self.before}  =  {self.after}"
        if self.equation is not None:
            text += f"   with {self.equation}"
        if self.note:
            text += f"   ({self.note})"
        return text


class Derivation(tuple):  # type: ignore[type-arg]
    r"""The named steps of a derivation, in order (a tuple of :class:`Step`).

    Prints one numbered step per line and renders as an aligned LaTeX block in Jupyter.

    >>> import sympy as sp
    >>> x = sp.Symbol("x")
    >>> d = Derivation([Step("double", x + x, 2 * x, "algebra", "x + x = 2 x")])
    >>> print(d)
    1. [double] 2*x  =  2*x   (x + x = 2 x)
    >>> d.rules
    ('double',)
    >>> d._repr_latex_().startswith("$\\begin{aligned}")
    True
    """

    __slots__ = ()

    @property
    def rules(self) -> tuple[str, ...]:
        """The rules' names, in order."""
        return tuple(s.rule for s in self)

    def __str__(self) -> str:
        return "\n".join(f"{i + 1}. {s}" for i, s in enumerate(self))

    def _repr_latex_(self) -> str:
        rows = [s._latex_row(i + 1) for i, s in enumerate(self)]
        return r"$\begin{aligned}" + r"\\".join(rows) + r"\end{aligned}$"


@dataclass(frozen=True, slots=True)
class FixedPoint:
    """A fixed-point equation ``symbol = rhs``, possibly implicit (``symbol`` in ``rhs``).

    ``depends_on`` lists the other fixed-point symbols ``rhs`` uses (not ``symbol``).
    """

    symbol: sp.Symbol
    equation: sp.Eq
    depends_on: tuple[sp.Symbol, ...] = ()

    @property
    def rhs(self) -> sp.Expr:
        return self.equation.rhs

    @property
    def implicit(self) -> bool:
        """Whether the symbol appears on the right-hand side (solved by a branch solver)."""
        return self.symbol in self.rhs.free_symbols

    def __str__(self) -> str:
        return f"{self.symbol} = {self.rhs}"

    def _repr_latex_(self) -> str:
        return "$" + sp.latex(self.equation) + "$"


def solve_order(fixed_points: Sequence[FixedPoint]) -> tuple[FixedPoint, ...]:
    """The fixed points in an order where each depends only on earlier ones.

    Self-references (implicit equations) are allowed; a cycle through two or more
    equations, or a dependency on an undefined fixed point, raises
    :class:`InvalidArgument`.

    >>> import sympy as sp
    >>> a, b, lam = sp.symbols("a b lam")
    >>> fps = [FixedPoint(a, sp.Eq(a, lam + b), (b,)), FixedPoint(b, sp.Eq(b, lam / (1 + b)))]
    >>> [fp.symbol for fp in solve_order(fps)]
    [b, a]
    >>> solve_order([FixedPoint(a, sp.Eq(a, b), (b,)), FixedPoint(b, sp.Eq(b, a), (a,))])
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: cyclic fixed-point definitions a -> b -> a; compose the layers into one implicit equation (see layer_composition)
    """  # noqa: E501
    graph = nx.DiGraph()
    by_symbol = {fp.symbol: fp for fp in fixed_points}
    if len(by_symbol) != len(fixed_points):
        raise InvalidArgument("two fixed points define the same symbol; keep one equation each")
    for fp in fixed_points:
        graph.add_node(fp.symbol)
        for dep in fp.depends_on:
            if dep not in by_symbol:
                raise InvalidArgument(
                    f"{fp.symbol} depends on {dep}, which no fixed point defines; the "
                    "system is underdetermined: add an equation for it"
                )
            if dep != fp.symbol:
                graph.add_edge(dep, fp.symbol)
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join(str(u) for u, _ in cycle) + f" -> {cycle[0][0]}"
        raise InvalidArgument(
            f"cyclic fixed-point definitions {path}; compose the layers into one "
            "implicit equation (see layer_composition)"
        )
    order = nx.lexicographical_topological_sort(graph, key=str)
    return tuple(by_symbol[s] for s in order)


@dataclass(frozen=True, slots=True)
class SeriesCheck:
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

    def __bool__(self) -> bool:
        return self.passed

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


@dataclass(frozen=True, slots=True)
class OnePointValue:
    """Numbers from :meth:`OnePoint.evaluate`.

    Attributes
    ----------
    fixed_points : tuple of (sympy.Symbol, number)
        The solved ridges, in solve order.
    ridge : number
        The innermost ridge (the one in the equivalent).
    prefactor : number
        The scalar in front of ``ridge (ridge + Y)^{-1}``.
    matrix_y : numpy.ndarray
        The deterministic matrix ``Y`` of the equivalent.
    """

    fixed_points: tuple[tuple[sp.Symbol, complex | float], ...]
    ridge: complex | float
    prefactor: complex | float
    matrix_y: np.ndarray = field(repr=False)

    def __getitem__(self, symbol: sp.Symbol) -> complex | float:
        for s, v in self.fixed_points:
            if s == symbol or str(s) == str(symbol):
                return v
        raise InvalidArgument(f"no fixed point {symbol}; known: {[str(s) for s, _ in self.fixed_points]}")

    @property
    def matrix(self) -> np.ndarray:
        """The deterministic equivalent as a matrix."""
        n = self.matrix_y.shape[0]
        return self.prefactor * self.ridge * np.linalg.inv(self.matrix_y + self.ridge * np.eye(n))

    def trace(self, test: Any = None) -> complex | float:
        """``tr(test @ equivalent)`` (``tr = Tr / n``; ``test`` defaults to the identity)."""
        n = self.matrix_y.shape[0]
        sol = np.linalg.solve(self.matrix_y + self.ridge * np.eye(n), np.eye(n) if test is None else test)
        value = self.prefactor * self.ridge * np.trace(sol) / n
        return _plain(value)


def _plain(value: Any) -> complex | float:
    z = complex(value)
    return z.real if z.imag == 0 else z


# ---------------------------------------------------------------------------
# the rules
# ---------------------------------------------------------------------------


def _product_sympy(factors: Sequence[MatrixExpr], dim: sp.Expr, coeff: sp.Expr = sp.S.One) -> sp.Expr:
    if not factors:
        base: sp.Expr = sp.Identity(dim)
    elif len(factors) == 1:
        base = factors[0].to_sympy()
    else:
        base = sp.MatMul(*[f.to_sympy() for f in factors])
    return base if coeff == 1 else sp.MatMul(coeff, base)


def _ridge_form(ridge: sp.Expr, y: sp.Expr, dim: sp.Expr) -> sp.Expr:
    return ridge * (y + ridge * sp.Identity(dim)).inverse()


def gaussian_gram_to_wishart(
    coeff: sp.Expr, factors: tuple[MatrixExpr, ...]
) -> tuple[sp.Expr, tuple[MatrixExpr, ...], list[str]]:
    r"""Replace each Gram pair ``X.T @ X`` (``X @ X.T``) by ``r W`` (``c W'``).

    For ``X`` of shape ``r x c`` with iid standard entries, ``X.T @ X = r W`` with
    ``W`` a white Wishart matrix on the ``c``-space of ratio ``c / r`` (and
    ``X @ X.T = c W'`` on the ``r``-space, ratio ``r / c``); ``W`` is rotation
    invariant and free from deterministic matrices (MATH.md 1.1; Nica-Speicher
    Lecture 22). Returns the new coefficient, factors and the names introduced.

    Raises
    ------
    InvalidWord
        If a Gaussian matrix appears other than in one Gram pair.
    """
    out: list[MatrixExpr] = []
    names: list[str] = []
    i = 0
    c = coeff
    while i < len(factors):
        f = factors[i]
        nxt = factors[i + 1] if i + 1 < len(factors) else None
        if isinstance(f, Transpose) and isinstance(f.arg, Gaussian) and nxt == f.arg:
            rows, cols = f.arg.dims
            w = FreeMatrix(f"W_{f.arg.name}", cols, Wishart(sp.simplify(cols / rows)))
            c = c * rows
        elif isinstance(f, Gaussian) and isinstance(nxt, Transpose) and nxt.arg == f:
            rows, cols = f.dims
            w = FreeMatrix(f"W_{f.name}", rows, Wishart(sp.simplify(rows / cols)))
            c = c * cols
        else:
            if isinstance(f, Gaussian) or (isinstance(f, Transpose) and isinstance(f.arg, Gaussian)):
                g = f if isinstance(f, Gaussian) else f.arg
                raise InvalidWord(
                    f"the Gaussian matrix {g.name} appears outside a Gram pair "
                    f"{g.name}.T @ {g.name} in {_product_sympy(factors, sp.S.One)}; only Gram "
                    "products are supported (rectangular chains are not yet)"
                )
            out.append(f)
            i += 1
            continue
        out.append(w)
        names.append(w.name)
        i += 2
    return sp.simplify(c), tuple(out), names


def _gram_step(
    coeff: sp.Expr, factors: tuple[MatrixExpr, ...], dim: sp.Expr, steps: list[Step]
) -> tuple[sp.Expr, tuple[MatrixExpr, ...]]:
    """:func:`gaussian_gram_to_wishart`, recording its step when it changed something."""
    before = _product_sympy(factors, dim, coeff)
    new_coeff, new_factors, names = gaussian_gram_to_wishart(coeff, factors)
    if names:
        steps.append(
            Step(
                "gaussian_gram_to_wishart",
                before,
                _product_sympy(new_factors, dim, new_coeff),
                "MATH.md 1.1 (white Wishart W = Z^T Z / P)",
                ", ".join(
                    f"{f.name} is white Wishart with ratio {f.law.ratio}"  # type: ignore[attr-defined]
                    for f in new_factors
                    if isinstance(f, FreeMatrix) and f.name in names
                ),
            )
        )
    return new_coeff, new_factors


def ridge_rescaling(lam: sp.Expr, coeff: sp.Expr) -> sp.Expr:
    r""":math:`\lambda(\lambda+cY)^{-1}=\lambda'(\lambda'+Y)^{-1}` with :math:`\lambda'=\lambda/c`.

    Exact algebra (divide by ``c``); ``c`` must be nonzero.
    """
    if sp.sympify(coeff).is_zero:
        raise InvalidArgument("the matrix in the resolvent has coefficient 0; nothing is random")
    return sp.simplify(lam / coeff)


def merge_square_roots(factors: tuple[MatrixExpr, ...]) -> tuple[MatrixExpr, ...]:
    """Merge adjacent ``A^{1/2} A^{1/2}`` into ``A`` (exact; adjacent only, not cyclic).

    >>> A = Deterministic("A", 3)
    >>> merge_square_roots((A.sqrt(), A.sqrt(), A))
    (Deterministic(name='A', dim=3), Deterministic(name='A', dim=3))
    """
    out: list[MatrixExpr] = []
    for f in factors:
        if isinstance(f, Identity):
            continue
        if out and isinstance(f, Sqrt) and out[-1] == f:
            out[-1] = f.base
        else:
            out.append(f)
    return tuple(out)


def _s_transform(law: Law, name: str, arg: sp.Expr) -> tuple[sp.Expr, str]:
    """``S_law(arg)``: the closed form, or an undefined function ``S_name`` (series later)."""
    if sp.sympify(law.cumulant(1)).is_zero:
        raise UndefinedTransform(
            f"the free factor {name} has law {law} with mean 0, so its S-transform is "
            "undefined and the multiplicative rule does not apply; shift it by a "
            "constant or use an additive model"
        )
    try:
        return law.s_transform(arg), f"S_{name} in closed form"
    except UndefinedTransform:
        func = sp.Function(f"S_{name}")
        return func(arg), (
            f"S_{name} has no closed form: it is expanded as the exact truncated series "
            "of its moments (transforms.s_series) when checked"
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
    delta = df1(_product_sympy(rl, b.dim), kappa)
    s_value, note = _s_transform(b.law, b.name, -delta)
    eq = sp.Eq(kappa, ridge * s_value)
    new = merge_square_roots(left + right)
    step = Step(
        "free_factor_renormalization",
        _ridge_form(ridge, _product_sympy(factors, dim), dim),
        _ridge_form(kappa, _product_sympy(left + right, dim), dim),
        _REF_SUBORDINATION,
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
        "trace_invariance",
        old,
        new,
        "MATH.md 2.1 (df1 of the sample matrix equals df1 of the population at kappa)",
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
        "layer_composition",
        sp.Tuple(*[e.lhs for e in equations]),
        sp.Tuple(*[e.rhs for e in out]),
        "MATH.md 2.3 (layered renormalisation); S_{AB} = S_A S_B",
        "substitute each ridge into the next: the innermost ridge solves one implicit "
        "equation, the intermediate ridges are explicit",
        sp.Eq(out[-1].lhs, out[-1].rhs),
    )
    return tuple(out), step


# ---------------------------------------------------------------------------
# derive
# ---------------------------------------------------------------------------


def _resolvent_parts(expr: Any) -> tuple[sp.Expr, Resolvent]:
    """``(c, R)`` for ``expr = c * R`` with ``R`` a resolvent."""
    if isinstance(expr, Resolvent):
        return sp.S.One, expr
    if isinstance(expr, Product) and len(expr.factors) == 1 and isinstance(expr.factors[0], Resolvent):
        return expr.coeff, expr.factors[0]
    raise InvalidArgument(
        f"derive needs c * resolvent(A, lam), got {expr}; traces, quadratic forms and "
        "sums of resolvents are not supported yet"
    )


def _factors_of(a: MatrixExpr) -> tuple[sp.Expr, tuple[MatrixExpr, ...]]:
    if isinstance(a, Product):
        coeff, factors = a.coeff, a.factors
    else:
        coeff, factors = sp.S.One, (a,)
    for f in factors:
        if isinstance(f, Sum):
            raise InvalidArgument(
                f"{a} contains the sum {f}; additive free perturbations are not supported "
                "yet, write the matrix as a product"
            )
        if isinstance(f, Resolvent):
            raise InvalidArgument(f"{a} contains a resolvent; nested resolvents are not supported")
    return coeff, tuple(f for f in factors if not isinstance(f, Identity))


@dataclass(frozen=True, slots=True)
class OnePoint:
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

    def __str__(self) -> str:
        return result_str(self)

    def _repr_latex_(self) -> str:
        return result_latex(self)

    # -- witnesses ---------------------------------------------------------
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
        from .series import check_series

        return check_series(self, order)

    def verify_series(self, order: int = 8) -> SeriesCheck:
        """:meth:`check_series`, raising :class:`VerificationError` with the evidence on failure."""
        result = self.check_series(order)
        if not result.passed:
            raise VerificationError(str(result))
        return result

    def evaluate(self, values: Mapping[Any, Any]) -> OnePointValue:
        """Solve the fixed points numerically on the physical branch.

        ``values`` maps the deterministic matrices (the :class:`Deterministic` objects or
        their names) to a spectrum (1-D, a diagonal matrix) or a matrix, and the symbols
        (``lam``, dimensions, ratios) to numbers. Real ``lam > 0``: the root with
        ``kappa > kappa_0`` (bracketing with ``scipy.optimize.brentq``); ``lam = 0``:
        the ridgeless ``kappa_0``; complex ``lam``: Newton continuation from ``|lam|``
        (MATH.md 2.1). Real ``lam < 0`` raises :class:`InvalidArgument`.
        """
        from .numeric import evaluate

        return evaluate(self, values)

    def check_monte_carlo(self, sizes: Sequence[int] = (100, 200, 400), *, rng: Any, **kwargs: Any) -> Any:
        """Monte Carlo witness at several sizes and at real and complex ``lam``.

        Provided by :func:`detequiv.witnesses.onepoint.check_monte_carlo` (see there for
        the options), which registers itself when :mod:`detequiv` is imported.
        """
        return call_witness("monte_carlo", "onepoint_mc", self, sizes, rng, **kwargs)


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


def _gaussian_sandwich(
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


_REF_ISOTROPY = (
    "left rotation invariance of a Gaussian matrix (Z and O Z have the same law for Haar O), "
    "so E f(Z Y Z^T) commutes with every rotation; Sylvester: Z Y Z^T and Y Z^T Z have the "
    "same nonzero eigenvalues (MATH.md 2.4, feature-space trace)"
)


def outer_isotropy(
    expr: Any,
    c_out: sp.Expr,
    res: Resolvent,
    coeff: sp.Expr,
    sandwich: tuple[Gaussian, tuple[MatrixExpr, ...]],
    order: Sequence[str] | None = None,
) -> OnePoint:
    r"""Equivalent of a Gaussian sandwich: :math:`\lambda(\lambda+cZYZ^\top)^{-1}\simeq\tau I_N`.

    ``Z`` (``N x D``) has iid entries and appears only at both ends, so the law of the
    resolvent is invariant under :math:`Z\to OZ`: its equivalent against deterministic
    test matrices is a multiple of the identity, :math:`\tau=\operatorname{tr}_N`. The
    nonzero spectra of :math:`ZYZ^\top` and :math:`YZ^\top Z` coincide, so

    .. math:: \tau = 1-\frac{D}{N}\Big(1-\operatorname{tr}_D\,
              \lambda(\lambda+cYZ^\top Z)^{-1}\Big),

    and the inner resolvent is derived by :func:`derive` (with the averaging
    ``order``): for random features, :math:`\tau=1-n/N`, the feature-space trace of
    MATH.md 2.4.

    >>> import sympy as sp
    >>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
    >>> lam = sp.Symbol("lam", positive=True); D, N, P = sp.symbols("D N P", positive=True)
    >>> S = Deterministic("Sigma", D); X = Gaussian("X", (P, D)); F = Gaussian("F", (N, D))
    >>> eq = derive(lam * resolvent(F @ S.sqrt() @ X.T @ X @ S.sqrt() @ F.T / (N * P), lam))
    >>> eq.deterministic
    tau*I
    >>> eq.fixed_points[-1]
    FixedPoint(symbol=tau, equation=Eq(tau, -D*df1(Sigma, kappa_2)/N + 1), depends_on=(kappa_2,))
    """
    z, mid = sandwich
    lam = res.lam
    n_dim, d_dim = z.dims
    inner_arg = Product.make(coeff, (*mid, Transpose(z), z))
    inner = derive(lam * Resolvent(inner_arg, lam), order=order)
    if inner.isotropic is not None:
        raise InvalidWord(
            f"nested Gaussian sandwiches ({z.name} around {inner.isotropic.gaussian.name}) are not "
            "supported yet; write the inner product with a Gram pair"
        )
    tau = sp.Symbol("tau")
    inner_trace = inner.prefactor * (1 - df1(inner.matrix, inner.ridge))
    rhs = 1 - d_dim / n_dim * (1 - inner_trace)
    rhs = sp.expand(rhs) if inner.prefactor == 1 else rhs
    eq = sp.Eq(tau, rhs)
    identity = sp.Identity(n_dim)
    step = Step(
        "outer_isotropy",
        _ridge_form(lam, res.arg.to_sympy(), n_dim),
        tau * identity,
        _REF_ISOTROPY,
        f"{z.name} is Gaussian and sandwiches the rest: tau = tr_{n_dim} = 1 - ({d_dim}/{n_dim}) "
        f"(1 - tr_{d_dim} of the rotated resolvent {_ridge_form(lam, inner_arg.to_sympy(), d_dim)})",
        eq,
    )
    close = Step(
        "trace_of_equivalence",
        sp.Trace(_ridge_form(lam, inner_arg.to_sympy(), d_dim)) / d_dim,
        inner_trace,
        "MATH.md 2.1 (the normalized trace of an equivalence)",
        "tr kappa (kappa + Y)^-1 = 1 - df1(Y, kappa)",
        eq,
    )
    deps = tuple(
        sorted((s for s in rhs.free_symbols if s in {fp.symbol for fp in inner.fixed_points}), key=str)
    )
    fixed = (*inner.fixed_points, FixedPoint(tau, eq, deps))
    prefactor = sp.simplify(c_out / lam) * tau
    return OnePoint(
        random=expr,
        deterministic=prefactor * identity,
        fixed_points=fixed,
        derivation=(step, *inner.derivation, close),
        lam=lam,
        ridge=sp.S.One,
        matrix=sp.ZeroMatrix(n_dim, n_dim),
        prefactor=prefactor,
        transforms=inner.transforms,
        isotropic=Isotropic(inner=inner, tau=tau, gaussian=z),
    )


def derive(expr: Any, order: Sequence[str] | None = None) -> Any:
    """Derive the deterministic equivalent of ``c * resolvent(A, lam)`` by named rules.

    ``expr`` may also be a contraction of it: ``trace(T @ c * resolvent(A, lam))`` (``T``
    a product of deterministic matrices, on either side) or a quadratic form
    ``u.T @ c * resolvent(A, lam) @ v`` with :class:`DeterministicVector` ``u``, ``v``;
    the result is then a :class:`Contracted` (the resolvent's equivalent, then
    :func:`contract_equivalence`).

    ``A`` is a product (with a scalar coefficient) of :class:`Deterministic` matrices,
    their square roots, Gram pairs ``X.T @ X`` of :class:`Gaussian` matrices and
    :class:`FreeMatrix` factors, each free factor appearing once. Free factors are
    peeled one at a time, each giving one layer of ridge renormalization: right to
    left by default, or in the averaging ``order`` given (names of free matrices or of
    the Gaussian matrices of Gram pairs, e.g. ``("X", "F")`` averages the data ``X``
    first, then the features ``F``; factors not named follow, right to left). The
    final scalar renormalization does not depend on the order, the intermediate ridges
    do (MATH.md 2.3, 2.4).

    A Gaussian sandwich ``A = c Z Y Z.T`` (``Z`` of shape ``N x D`` appearing only
    there, e.g. random features ``F Sigma_hat F.T / N`` in feature space) is rotated
    to the inner space by :func:`outer_isotropy`: the equivalent is ``tau I_N``, with
    ``tau`` from the derivation of ``lam (lam + c Y Z.T Z)^{-1}`` (which takes
    ``order``).

    Raises
    ------
    InvalidArgument
        If ``expr`` is not a multiple of a resolvent or ``A`` is a sum.
    InvalidWord
        If a Gaussian matrix is not in a Gram pair, or a free factor appears twice (it
        is then not free from the rest).
    UndefinedTransform
        If a free factor has mean 0 (no S-transform).
    """
    contraction = _contraction_parts(expr)
    if contraction is not None:
        kind, left, c_in, res_in, right = contraction
        inner = derive(Product.make(c_in, (res_in,)), order=order)
        return contract_equivalence(expr, inner, kind, left, right)
    c_out, res = _resolvent_parts(expr)
    if _contains_sum(res.arg):
        if order is not None:
            raise InvalidArgument(
                "order= is supported for products of free factors; for resolvents of sums the "
                "layers are peeled outer to inner"
            )
        return _derive_layers(expr, c_out, res)
    lam = res.lam
    dim = res.shape[0]
    coeff, factors = _factors_of(res.arg)
    sandwich = _gaussian_sandwich(factors, dim)
    if sandwich is not None:
        return outer_isotropy(expr, c_out, res, coeff, sandwich, order)
    steps: list[Step] = []
    prefactor = sp.simplify(c_out / lam)

    coeff, factors = _gram_step(coeff, factors, dim, steps)
    ridge: sp.Expr = lam
    if coeff != 1:
        ridge = ridge_rescaling(lam, coeff)
        steps.append(
            Step(
                "ridge_rescaling",
                _ridge_form(lam, _product_sympy(factors, dim, coeff), dim),
                _ridge_form(ridge, _product_sympy(factors, dim), dim),
                "exact algebra",
                f"divide numerator and denominator by {coeff}",
            )
        )

    free = [f for f in factors if isinstance(f, FreeMatrix)]
    seen: set[str] = set()
    for f in free:
        if f.name in seen:
            raise InvalidWord(
                f"the free factor {f.name} appears more than once in {_product_sympy(factors, dim)}; "
                "it is then not free of the rest of the product, and the multiplicative rule "
                "needs each free factor once"
            )
        seen.add(f.name)
    for h in factors:
        if isinstance(h, Sqrt) and h.base.name in seen:
            raise InvalidWord(f"{h.base.name} is used both as a free and a deterministic matrix")

    n_layers = len(free)
    kappas = (
        [sp.Symbol("kappa")] if n_layers == 1 else [sp.Symbol(f"kappa_{i}") for i in range(1, n_layers + 1)]
    )
    equations: list[sp.Eq] = []
    deltas: list[sp.Expr] = []
    transforms: list[tuple[str, Law]] = []
    current = factors
    wanted = _averaging_order(order, free)
    for kappa in kappas:
        index = _next_free(current, wanted)
        b = current[index]
        assert isinstance(b, FreeMatrix)
        new, eq, step = free_factor_renormalization(ridge, current, index, kappa, dim)
        steps.append(step)
        if any(isinstance(a, sp.core.function.AppliedUndef) for a in eq.rhs.atoms(sp.Function)):
            transforms.append((b.name, b.law))
        merged = merge_square_roots(current[:index] + current[index + 1 :])
        if len(merged) != len(current) - 1:
            steps.append(
                Step(
                    "merge_square_roots",
                    _product_sympy(current[:index] + current[index + 1 :], dim),
                    _product_sympy(merged, dim),
                    "exact algebra",
                    "A^(1/2) A^(1/2) = A",
                )
            )
        deltas.extend(eq.rhs.atoms(df1))
        equations.append(eq)
        current, ridge = new, kappa

    y = _product_sympy(current, dim)
    final: tuple[sp.Eq, ...] = tuple(equations)
    if n_layers:
        target = df1(y, kappas[-1])
        rewritten = []
        for eq in final:
            for old in sorted(eq.rhs.atoms(df1), key=str):
                if old != target:
                    # normalized traces in different spaces: d_old df1_old = d_target df1_target
                    ratio = sp.simplify(target.args[0].shape[0] / old.args[0].shape[0])
                    eq, step = trace_invariance(eq, old, ratio * target)
                    steps.append(step)
            rewritten.append(eq)
        final = tuple(rewritten)
        if n_layers > 1:
            final, step = layer_composition(final)
            steps.append(step)
    inner = kappas[-1] if n_layers else None
    ridge_symbol = inner if inner is not None else ridge
    return _result(expr, final, kappas, steps, lam, ridge_symbol, y, dim, prefactor, transforms)


# ---------------------------------------------------------------------------
# additive free perturbations and mixed layers
# ---------------------------------------------------------------------------

_REF_ADDITIVE = (
    "Voiculescu, Invent. Math. 104 (1991) (R-transform); Biane, Math. Z. 227 (1998) "
    "(subordination G_{A+B}(z) = G_A(omega(z)), omega = z - R_B(G_{A+B}(z)))"
)


def _r_transform(law: Law, name: str, arg: sp.Expr) -> tuple[sp.Expr, str]:
    """``R_law(arg)``: the closed form, or an undefined function ``R_name`` (series later)."""
    try:
        return law.r_transform(arg), f"R_{name} in closed form"
    except UndefinedTransform:
        func = sp.Function(f"R_{name}")
        return func(arg), (
            f"R_{name} has no closed form: it is expanded as the exact truncated series "
            "of its cumulants (transforms.r_series) when checked"
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
    r_value, note = _r_transform(b.law, b.name, -scale * g)
    eq = sp.Eq(inner, ridge + scale * r_value)
    prefactor = ridge / inner
    shifted = rest + b.to_sympy() if scale == 1 else rest + scale * b.to_sympy()
    step = Step(
        "additive_subordination",
        _ridge_form(ridge, shifted, dim),
        prefactor * _ridge_form(inner, rest, dim),
        _REF_ADDITIVE,
        f"{b.name} ~ {b.law} is rotation invariant and free from the rest of the sum; {note}",
        eq,
    )
    return eq, prefactor, step


def _contains_sum(m: MatrixExpr) -> bool:
    if isinstance(m, Sum):
        return True
    if isinstance(m, Product):
        return any(_contains_sum(f) for f in m.factors)
    if isinstance(m, Resolvent):
        return _contains_sum(m.arg)
    return False


def _terms(m: MatrixExpr, steps: list[Step], dim: sp.Expr) -> list[tuple[sp.Expr, tuple[MatrixExpr, ...]]]:
    """The additive terms ``(coeff, factors)`` of ``m`` (a product of one sum is distributed)."""
    if isinstance(m, Sum):
        return [t for term in m.terms for t in _terms(term, steps, dim)]
    coeff, factors = (m.coeff, m.factors) if isinstance(m, Product) else (sp.S.One, (m,))
    factors = tuple(f for f in factors if not isinstance(f, Identity))
    if len(factors) == 1 and isinstance(factors[0], Sum):
        return [(coeff * c, fs) for c, fs in _terms(factors[0], steps, dim)]
    for f in factors:
        if isinstance(f, Resolvent):
            raise InvalidArgument(f"{m} contains a resolvent; nested resolvents are not supported")
    new_coeff, new_factors = _gram_step(coeff, factors, dim, steps)
    return [(new_coeff, new_factors)]


def _terms_sympy(terms: Sequence[tuple[sp.Expr, tuple[MatrixExpr, ...]]], dim: sp.Expr) -> sp.Expr:
    parts = [_product_sympy(fs, dim, c) for c, fs in terms]
    return parts[0] if len(parts) == 1 else sp.MatAdd(*parts)


def _free_names(terms: Sequence[tuple[sp.Expr, tuple[MatrixExpr, ...]]]) -> list[str]:
    out: list[str] = []
    for _, fs in terms:
        for f in fs:
            for leaf in f.leaves():
                if isinstance(leaf, FreeMatrix):
                    out.append(leaf.name)
    return out


def _result(
    expr: Any,
    final: Sequence[sp.Eq],
    symbols: Sequence[sp.Symbol],
    steps: Sequence[Step],
    lam: sp.Expr,
    ridge: sp.Expr,
    y: sp.Expr,
    dim: sp.Expr,
    prefactor: sp.Expr,
    transforms: Sequence[tuple[str, Law]],
) -> OnePoint:
    """The :class:`OnePoint` of ``prefactor * ridge (ridge + y)^-1`` with the fixed points ``final``."""
    fixed = []
    for eq in final:
        deps = tuple(sorted((s for s in eq.rhs.free_symbols if s in symbols and s != eq.lhs), key=str))
        fixed.append(FixedPoint(eq.lhs, eq, deps))
    deterministic = _ridge_form(ridge, y, dim)
    if prefactor != 1:
        deterministic = prefactor * deterministic
    return OnePoint(
        random=expr,
        deterministic=deterministic,
        fixed_points=solve_order(fixed),
        derivation=tuple(steps),
        lam=lam,
        ridge=ridge,
        matrix=y,
        prefactor=prefactor,
        transforms=tuple(transforms),
    )


def _derive_layers(expr: Any, c_out: sp.Expr, res: Resolvent) -> OnePoint:
    """:func:`derive` for resolvents of sums: additive and multiplicative layers, outer first."""
    lam = res.lam
    dim = res.shape[0]
    steps: list[Step] = []
    terms = _terms(res.arg, steps, dim)
    names = _free_names(terms)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidWord(
            f"the free matrix {repeated[0]} appears more than once in {res.arg}; it is then not "
            "free of the rest, and each layer needs each free matrix once"
        )
    # layers, outer to inner: (kind, outer ridge expression, inner symbol, equation)
    layers: list[tuple[str, sp.Expr, sp.Symbol, sp.Eq]] = []
    transforms: list[tuple[str, Law]] = []
    ridge: sp.Expr = lam
    prefactor = sp.simplify(c_out / lam)
    count = 0

    def fresh() -> sp.Symbol:
        nonlocal count
        count += 1
        return sp.Symbol(f"kappa_{count}")

    while True:
        if len(terms) > 1:
            additive = [
                i for i, (_, fs) in enumerate(terms) if len(fs) == 1 and isinstance(fs[0], FreeMatrix)
            ]
            if not additive:
                if _free_names(terms):
                    raise InvalidArgument(
                        f"the sum {_terms_sympy(terms, dim)} has random terms but no free additive "
                        "term c*B (a FreeMatrix alone); additive subordination peels one free "
                        "matrix at a time, so write the random part as a product or a free matrix"
                    )
                break
            index = additive[-1]
            scale, (b,) = terms[index]
            assert isinstance(b, FreeMatrix)
            rest = terms[:index] + terms[index + 1 :]
            inner = fresh()
            eq, pre, step = additive_subordination(ridge, _terms_sympy(rest, dim), b, scale, inner, dim)
            if any(isinstance(a, sp.core.function.AppliedUndef) for a in eq.rhs.atoms(sp.Function)):
                transforms.append((b.name, b.law))
            steps.append(step)
            layers.append(("additive", ridge, inner, eq))
            prefactor = prefactor * pre
            ridge, terms = inner, rest
            if len(terms) == 1:
                coeff, fs = terms[0]
                if len(fs) == 1 and isinstance(fs[0], Sum):
                    terms = _terms(fs[0] if coeff == 1 else Product.make(coeff, fs), steps, dim)
            continue
        coeff, factors = terms[0]
        free = [i for i, f in enumerate(factors) if isinstance(f, FreeMatrix)]
        if not free:
            break
        if coeff != 1:
            new_ridge = ridge_rescaling(ridge, coeff)
            steps.append(
                Step(
                    "ridge_rescaling",
                    _ridge_form(ridge, _product_sympy(factors, dim, coeff), dim),
                    _ridge_form(new_ridge, _product_sympy(factors, dim), dim),
                    "exact algebra",
                    f"divide numerator and denominator by {coeff}",
                )
            )
            ridge = new_ridge
        index = free[-1]
        b = factors[index]
        assert isinstance(b, FreeMatrix)
        inner = fresh()
        new, eq, step = free_factor_renormalization(ridge, factors, index, inner, dim)
        steps.append(step)
        if any(isinstance(a, sp.core.function.AppliedUndef) for a in eq.rhs.atoms(sp.Function)):
            transforms.append((b.name, b.law))
        layers.append(("multiplicative", ridge, inner, eq))
        ridge = inner
        if not new:
            terms = [(sp.S.One, ())]
        elif len(new) == 1 and isinstance(new[0], Sum):
            terms = _terms(new[0], steps, dim)
        else:
            terms = [(sp.S.One, new)]

    if not layers:
        raise InvalidArgument(f"{res.arg} has no random matrix; nothing to derive")
    y = _terms_sympy(terms, dim)
    inner_ridge = layers[-1][2]
    d_last = df1(y, inner_ridge)
    # trace invariance: 1 - df1(Y_i, r_i) = (r_i ... prefactors to the innermost) (1 - d_last)
    symbols = [layer[2] for layer in layers]
    below: dict[sp.Symbol, sp.Expr] = {}
    acc: sp.Expr = sp.S.One
    for kind, outer, inner, _ in reversed(layers):
        below[inner] = acc
        if kind == "additive":
            acc = acc * outer / inner
    forward: list[sp.Eq] = []
    for _, _, _, eq in layers:
        for old in sorted(eq.rhs.atoms(df1), key=str):
            if old == d_last:
                continue
            new_value = 1 - below[old.args[1]] * (1 - d_last)
            new_value = d_last if below[old.args[1]] == 1 else new_value
            eq, step = trace_invariance(eq, old, new_value)
            steps.append(step)
        forward.append(eq)

    if len(layers) == 1:
        final = [forward[0]]
        lam_of_inner = None
    else:
        final, lam_of_inner = _compose_mixed(layers, forward, lam, symbols)
        steps.append(
            Step(
                "layer_composition",
                sp.Tuple(*symbols),
                sp.Tuple(*[e.rhs for e in final]),
                "MATH.md 2.3 (layered renormalisation), inverted layer by layer",
                "each layer gives its outer ridge explicitly in terms of its inner ridge "
                "(multiplicative: r_out = r_in / S(-df1); additive: r_out = r_in - R(-g)); "
                "composing them gives lam as a function of the innermost ridge",
                sp.Eq(lam, lam_of_inner),
            )
        )
    return _result(expr, final, symbols, steps, lam, inner_ridge, y, dim, prefactor, transforms)


def _compose_mixed(
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
        # the forward equation inner = F(outer, ...) is linear in the outer ridge expression
        o = sp.Dummy("outer")
        solved = sp.solve(sp.Eq(eq.lhs, eq.rhs.xreplace({outer: o})), o, dict=True)
        if len(solved) != 1:
            raise InvalidArgument(f"cannot invert the layer {eq} for its outer ridge {outer}")
        outer_value = solved[0][o]
        targets = [s for s in outer.free_symbols if s in symbols or s == lam]
        if len(targets) != 1:
            raise InvalidArgument(f"the outer ridge {outer} of {eq} is not a multiple of one ridge")
        (t,) = targets
        value = sp.solve(sp.Eq(outer, outer_value), t, dict=True)
        if len(value) != 1:  # pragma: no cover - outer is linear in t
            raise InvalidArgument(f"cannot solve {outer} = {outer_value} for {t}")
        v = sp.simplify(value[0][t])
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


def with_fixed_points(eq: OnePoint, fixed_points: Sequence[FixedPoint]) -> OnePoint:
    """A copy of ``eq`` with other fixed points (for negative controls)."""
    return replace(eq, fixed_points=tuple(fixed_points))


# ---------------------------------------------------------------------------
# contractions: traces against test matrices and quadratic forms
# ---------------------------------------------------------------------------

_CONTRACTION_LEAVES = (Deterministic, Sqrt, Identity)


def _contraction_parts(
    expr: Any,
) -> tuple[str, tuple[MatrixExpr, ...], sp.Expr, Resolvent, tuple[MatrixExpr, ...]] | None:
    """``(kind, left, c, R, right)`` for ``tr(left c R right)`` or ``left c R right`` (1 x 1)."""
    if isinstance(expr, Trace):
        kind = "trace"
        arg = expr.arg
    elif isinstance(expr, Product) and any(isinstance(f, DeterministicVector) for f in expr.factors):
        kind = "quadratic"
        arg = expr
    else:
        return None
    coeff, factors = (arg.coeff, arg.factors) if isinstance(arg, Product) else (sp.S.One, (arg,))
    where = [i for i, f in enumerate(factors) if isinstance(f, Resolvent)]
    if len(where) != 1:
        raise InvalidArgument(
            f"{expr} must contain exactly one resolvent (it has {len(where)}); contract one "
            "resolvent c * resolvent(A, lam) at a time"
        )
    i = where[0]
    left, right = factors[:i], factors[i + 1 :]
    res = factors[i]
    assert isinstance(res, Resolvent)
    if kind == "quadratic":
        ok = (
            len(left) >= 1
            and len(right) >= 1
            and isinstance(left[0], DeterministicVector)
            and left[0].transposed
            and isinstance(right[-1], DeterministicVector)
            and not right[-1].transposed
        )
        if not ok:
            raise InvalidArgument(
                f"{expr} is not a quadratic form u.T @ (c * resolvent(A, lam)) @ v; put the "
                "row vector u.T first and the column vector v last"
            )
        middle = left[1:] + right[:-1]
    else:
        middle = left + right
    bad = [
        f
        for f in middle
        if not (
            isinstance(f, _CONTRACTION_LEAVES)
            or (isinstance(f, Transpose) and isinstance(f.arg, Deterministic))
        )
    ]
    if bad:
        raise InvalidArgument(
            f"the contraction of {expr} contains the non-deterministic {bad[0]}; the test "
            "matrix T (or the vectors) must be deterministic and independent of the resolvent"
        )
    return kind, tuple(left), coeff, res, tuple(right)


def _contraction_sympy(
    kind: str, left: Sequence[MatrixExpr], mid: sp.Expr, right: Sequence[MatrixExpr]
) -> sp.Expr:
    if kind == "trace":
        # cyclicity: tr(L M R) = tr(R L M)
        test = [f.to_sympy() for f in (*right, *left)]
        n = mid.shape[0]
        body = sp.MatMul(*test, mid) if test else mid
        return sp.Trace(body) / n
    # a 1 x 1 matrix; its trace is the scalar (sympy expands [0, 0] into index sums)
    mats = [f.to_sympy() for f in left] + [mid] + [f.to_sympy() for f in right]
    return sp.Trace(sp.MatMul(*mats))


def contract_equivalence(
    expr: Any, inner: OnePoint, kind: str, left: tuple[MatrixExpr, ...], right: tuple[MatrixExpr, ...]
) -> Contracted:
    r"""Contract a matrix equivalence ``R ~ E`` with a test matrix or with vectors.

    A deterministic equivalence :math:`R\simeq E` means
    :math:`\operatorname{tr}T(R-E)\to0` and :math:`u^\top(R-E)v\to0` for every
    deterministic ``T``, ``u``, ``v`` of bounded norm (MATH.md 2.1), so
    ``tr(T R) ~ tr(T E)`` and ``u.T R v ~ u.T E v``; ``tr(L R M) = tr(M L R)`` by
    cyclicity. The fixed points are those of ``R``.

    >>> import sympy as sp
    >>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent, trace
    >>> lam = sp.Symbol("lam", positive=True); D, P = sp.symbols("D P", positive=True)
    >>> S, T = Deterministic("Sigma", D), Deterministic("T", D); X = Gaussian("X", (P, D))
    >>> eq = derive(trace(T @ (lam * resolvent(S.sqrt() @ X.T @ X @ S.sqrt() / P, lam))))
    >>> eq.deterministic
    Trace(T*(kappa*(kappa*I + Sigma)**(-1)))/D
    >>> eq.derivation[-1].rule
    'contract_equivalence'
    """
    if kind not in ("trace", "quadratic"):
        raise InvalidArgument(f"kind={kind!r} must be 'trace' or 'quadratic'")
    before = _contraction_sympy(kind, left, inner.random.to_sympy(), right)
    after = _contraction_sympy(kind, left, inner.deterministic, right)
    note = (
        "normalized trace against the bounded deterministic test matrix (cyclicity of tr)"
        if kind == "trace"
        else "quadratic form with bounded deterministic vectors; it fluctuates as O(1/sqrt(N))"
    )
    step = Step("contract_equivalence", before, after, "MATH.md 2.1 (definition of the equivalence)", note)
    return Contracted(
        random=expr,
        deterministic=after,
        inner=inner,
        kind=kind,
        left=left,
        right=right,
        derivation=(*inner.derivation, step),
    )


@dataclass(frozen=True, slots=True)
class Contracted:
    r"""A scalar equivalent ``tr(T R) ~ tr(T E)`` or ``u.T R v ~ u.T E v`` of a resolvent.

    Attributes
    ----------
    random : Trace or MatrixExpr
        The expression given to :func:`derive`.
    deterministic : sympy.Expr
        The scalar equivalent.
    inner : OnePoint
        The equivalent ``R ~ E`` of the resolvent that is contracted.
    kind : str
        ``"trace"`` or ``"quadratic"``.
    left, right : tuple of MatrixExpr
        The deterministic factors left and right of the resolvent.
    derivation : tuple of Step
        The inner derivation, then :func:`contract_equivalence`.
    """

    random: Any
    deterministic: sp.Expr
    inner: OnePoint
    kind: str
    left: tuple[MatrixExpr, ...]
    right: tuple[MatrixExpr, ...]
    derivation: tuple[Step, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "derivation", Derivation(self.derivation))

    @property
    def fixed_points(self) -> tuple[FixedPoint, ...]:
        return self.inner.fixed_points

    @property
    def lam(self) -> sp.Expr:
        return self.inner.lam

    def __str__(self) -> str:
        return result_str(self)

    def _repr_latex_(self) -> str:
        return result_latex(self)

    def check_series(self, order: int = 8) -> SeriesCheck:
        """The series check of the contracted matrix equivalence (:meth:`OnePoint.check_series`).

        It contracts with a generic non-commuting test letter ``M``; agreement for every
        ``M`` implies it for ``T`` (and for ``M = n v u^T``, the quadratic form), since
        the contraction is linear; the contraction step itself is exact.
        """
        return self.inner.check_series(order)

    def evaluate(self, values: Mapping[Any, Any]) -> complex | float:
        """The number: ``values`` as in :meth:`OnePoint.evaluate`, plus the test matrices
        (spectra or matrices) and the vectors (1-D arrays, by object or name)."""
        from .numeric import contracted_value

        return contracted_value(self, values)

    def check_monte_carlo(self, sizes: Sequence[int] = (100, 200, 400), *, rng: Any, **kwargs: Any) -> Any:
        """Monte Carlo witness (:func:`detequiv.witnesses.onepoint.check_monte_carlo`)."""
        return call_witness("monte_carlo", "onepoint_mc", self, sizes, rng, **kwargs)
