r"""What a generated evaluator computes: its plan, as sympy (MATH.md 2, 4, 5.6).

:func:`plan_result` (for :func:`~detequiv.codegen.pycode.to_module`) and
:func:`plan_loss` (for :func:`~detequiv.codegen.pycode.loss_to_module`) turn a derived
result into a :class:`Plan`: the spectra the evaluator takes, its parameters, and the
work in solve order as :mod:`sympy.codegen.ast` function definitions and statements
(common subexpressions eliminated by :func:`cse_function`). :mod:`detequiv.codegen.pycode`
prints the plan; the numbers come from :mod:`detequiv.runtime`, called by the names
:func:`runtime_name` gives its functions in a generated module.

The evaluators work in the *commuting class*: every deterministic matrix is given by its
eigenvalues in one common eigenbasis, so a matrix expression becomes a scalar expression
of its eigenvalues (:math:`(\kappa I+\Sigma)^{-1}` becomes :math:`1/(\kappa+s)`) and
:math:`\mathrm{df}_1(Y,\kappa)` a spectral sum. An implicit ridge
:math:`\kappa=\lambda/g(\mathrm{df}_1(Y,\kappa))` is solved on the physical branch by
:func:`detequiv.runtime.solve_ridge`, with the zeros of ``g`` (the ridgeless threshold)
found by sympy here; explicit fixed points are evaluated by their formula, rewritten with
:math:`\lambda=\kappa\,g` when that removes a ``0/0`` at :math:`\lambda=0`.

A loss (:class:`~detequiv.derivations.formula.LossFormula`) is planned as rational
functions of :math:`\kappa` and spectral sums: each :class:`~detequiv.derivations.traces.mtr`
atom is a :class:`SpectralSum` (a mean for a normalized trace, a sum for a quadratic form
of the target), :math:`\lambda` is eliminated with the fixed point, and linear
combinations of sums with coefficients in :math:`\kappa` are merged into one sum whose
summand sympy simplifies (no cancellation at large :math:`\lambda`).

>>> import sympy as sp
>>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
>>> from detequiv.derivations.derive import derive
>>> lam = sp.Symbol("lam", positive=True); D, P = sp.symbols("D P", positive=True)
>>> S, X = Deterministic("Sigma", D), Gaussian("X", (P, D))
>>> plan = plan_result(derive(lam * resolvent(S.sqrt() @ X.T @ X @ S.sqrt() / P, lam)))
>>> plan.spectra, sorted_symbols(plan.params), [name for name, _ in plan.outputs]
({'Sigma': True}, [D, P], ['kappa', 'ridge', 'prefactor', 'value'])
"""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy as sp
from sympy.codegen.ast import (
    Assignment,
    FunctionCall,
    FunctionDefinition,
    QuotedString,
    Return,
    Variable,
    none,
)

from .. import runtime
from ..derivations.contraction import Contracted
from ..derivations.derivation import FixedPoint
from ..derivations.expressions import Deterministic, DeterministicVector, MatrixExpr, Sqrt, Trace, Transpose
from ..derivations.formula import LossFormula, LossModel
from ..derivations.onepoint import OnePoint
from ..derivations.quantities import df1
from ..derivations.traces import mtr, to_atoms
from ..errors import InvalidArgument, UndefinedTransform

__all__ = [
    "Plan",
    "LossPlan",
    "SpectralSum",
    "plan_result",
    "plan_loss",
    "cse_function",
    "runtime_name",
    "sorted_symbols",
]

_Leaf = Deterministic | DeterministicVector


def runtime_name(function: Callable[..., Any]) -> str:
    """The name of a public :mod:`detequiv.runtime` function in a generated module.

    Its own name with a leading underscore: a generated module's only public name is
    ``evaluate``, and the names of a formula's symbols (never starting with ``_``) cannot
    shadow it.

    >>> from detequiv import runtime
    >>> runtime_name(runtime.solve_ridge)
    '_solve_ridge'
    """
    if not (
        inspect.isfunction(function)
        and function.__module__ == runtime.__name__
        and function.__name__ in runtime.__all__
    ):
        raise InvalidArgument(f"{function!r} is not a public function of detequiv.runtime")
    return "_" + function.__name__


def _call(function: Callable[..., Any], args: Sequence[Any]) -> FunctionCall:
    return FunctionCall(runtime_name(function), args)


def sorted_symbols(symbols: Iterable[sp.Symbol]) -> list[sp.Symbol]:
    """Symbols sorted by name (the order of a generated function's arguments).

    >>> import sympy as sp
    >>> sorted_symbols({sp.Symbol("P"), sp.Symbol("D")})
    [D, P]
    """
    return sorted(symbols, key=lambda s: s.name)


def _spectral_symbol(name: str) -> sp.Symbol:
    return sp.Symbol(name, nonnegative=True)


def cse_function(name: str, args: Sequence[sp.Symbol], exprs: Sequence[sp.Expr]) -> FunctionDefinition:
    """``def name(args): ...; return exprs`` with common subexpressions as assignments.

    The temporaries are ``_t0, _t1, ...`` (:func:`sympy.cse`, canonical order); several
    expressions are returned as a tuple.

    >>> import sympy as sp
    >>> x = sp.Symbol("x")
    >>> f = cse_function("f", [x], [sp.exp(x) + 1, sp.exp(x) - 1])
    >>> [str(a) for a in f.body.args]
    ['Assignment(_t0, exp(x))', 'Return((_t0 + 1, _t0 - 1))']
    """
    replacements, reduced = sp.cse(list(exprs), symbols=sp.numbered_symbols("_t"), order="canonical")
    body: list[Any] = [Assignment(s, e) for s, e in replacements]
    body.append(Return(reduced[0] if len(reduced) == 1 else sp.Tuple(*reduced)))
    return FunctionDefinition(none, name, [Variable(a) for a in args], body)


@dataclass
class Plan:
    """What a generated module computes, as sympy expressions (built by :func:`plan_result`).

    Attributes
    ----------
    lam : sympy.Symbol
        The ridge, the first argument of ``evaluate``.
    spectra : dict
        The matrices (and vectors) taken by their eigenvalues, by name: ``True`` if the
        eigenvalues must be ``>= 0``.
    dims : list of sympy.Symbol
        The dimensions that default to the spectrum length.
    params : set of sympy.Symbol
        The scalar parameters.
    ys : list of sympy.Expr
        The eigenvalues of the matrices of the ``df1`` sums, as expressions of the spectra.
    functions : list of FunctionDefinition
        The generated functions (fixed points, branches, ridge, prefactor, ...).
    statements : list
        The body of the solver, in order (:mod:`sympy.codegen.ast` assignments).
    outputs : list of (str, sympy.Symbol)
        What ``evaluate`` returns.
    vectors : set of str
        The spectra that are vectors (quadratic forms): coordinates, not eigenvalues.
    branches : dict
        Each implicit ridge ``k`` to its ``g`` with ``lam = k g(df1)``.
    rewritten : dict
        The explicit fixed points evaluated with ``lam`` eliminated.
    """

    lam: sp.Symbol
    spectra: dict[str, bool] = field(default_factory=dict)  # name -> must be >= 0
    dims: list[sp.Symbol] = field(default_factory=list)  # default: the spectrum length
    params: set[sp.Symbol] = field(default_factory=set)
    ys: list[sp.Expr] = field(default_factory=list)  # elementwise spectra of the df1 matrices
    atoms: dict[tuple[int, sp.Symbol], sp.Symbol] = field(default_factory=dict)  # (y, kappa) -> d
    functions: list[FunctionDefinition] = field(default_factory=list)
    statements: list[Any] = field(default_factory=list)  # body of the solver, in order
    outputs: list[tuple[str, sp.Symbol]] = field(default_factory=list)
    reserved: set[str] = field(default_factory=set)
    emitted: set[sp.Symbol] = field(default_factory=set)
    vectors: set[str] = field(default_factory=set)
    display: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)  # df1 variable -> df1 atom
    rewritten: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)  # explicit fps with lam eliminated
    branches: dict[sp.Symbol, sp.Expr] = field(default_factory=dict)  # k -> g with lam = k g(df1)

    def definitions(self) -> list[FunctionDefinition]:
        """The functions of the module: ``_spectrum_i`` (the eigenvalues ``ys[i]``), then ``functions``."""
        spectra = [
            cse_function(f"_spectrum_{i}", sorted_symbols(y.free_symbols), [y]) for i, y in enumerate(self.ys)
        ]
        return [*spectra, *self.functions]

    def eigenvalue_statements(self) -> list[Assignment]:
        """``_y<i> = eigenvalues of ys[i]`` (full length ``_n``), the first statements of the solver."""
        n = sp.Symbol("_n")
        return [
            Assignment(
                _y_name(i),
                _call(
                    runtime.broadcast_eigenvalues,
                    [FunctionCall(f"_spectrum_{i}", sorted_symbols(y.free_symbols)), n],
                ),
            )
            for i, y in enumerate(self.ys)
        ]

    def name_ok(self, s: sp.Symbol) -> None:
        """Refuse a symbol that cannot be an argument of ``evaluate`` (not an identifier, a
        keyword, a leading underscore, or the name of a matrix)."""
        if not s.name.isidentifier() or keyword.iskeyword(s.name) or s.name.startswith("_"):
            raise InvalidArgument(
                f"the symbol {s.name!r} cannot be a Python argument name; rename it (an identifier "
                "not starting with '_')"
            )
        if s.name in self.reserved:
            raise InvalidArgument(f"the symbol {s.name!r} is also a matrix name; rename one of them")

    def add_params(self, symbols: Iterable[sp.Symbol], solved: set[sp.Symbol]) -> None:
        """The parameters among ``symbols``: not a temporary, not a ridge already solved."""
        self.params |= {s for s in symbols if not s.name.startswith("_") and s not in solved}

    def assign_call(self, target: sp.Symbol, name: str, expr: sp.Expr, solved: set[sp.Symbol]) -> None:
        """``target = name(args)`` with ``def name(args): return expr`` (args: its symbols, sorted)."""
        args = sorted_symbols(expr.free_symbols)
        self.functions.append(cse_function(name, args, [expr]))
        self.statements.append(Assignment(target, FunctionCall(name, args)))
        self.add_params(args, solved)


# ---------------------------------------------------------------------------
# matrices as scalar functions of their eigenvalues
# ---------------------------------------------------------------------------


def _elementwise(plan: Plan, m: sp.Basic, deterministic: dict[str, _Leaf], test: bool) -> sp.Expr:
    """The eigenvalues of a matrix expression of commuting matrices, as a scalar expression."""
    if isinstance(m, sp.MatrixSymbol):
        return _leaf_symbol(plan, m, deterministic, test)
    if isinstance(m, sp.Identity):
        return sp.S.One
    if isinstance(m, sp.ZeroMatrix):
        return sp.S.Zero
    if isinstance(m, sp.Transpose):
        return _elementwise(plan, m.arg, deterministic, test)
    if isinstance(m, sp.Inverse):
        return 1 / _elementwise(plan, m.arg, deterministic, test)
    if isinstance(m, sp.MatPow):
        base, exp = m.args
        return _elementwise(plan, base, deterministic, test) ** exp
    if isinstance(m, sp.MatMul):
        coeff, mats = m.as_coeff_matrices()
        if sp.sympify(coeff).free_symbols:
            raise InvalidArgument(
                f"the matrix {m} has the symbolic coefficient {coeff}; the generated evaluator needs "
                "the matrices of df1 and of the equivalent free of scalar parameters"
            )
        return coeff * sp.Mul(*[_elementwise(plan, f, deterministic, test) for f in mats])
    if isinstance(m, sp.MatAdd):
        return sp.Add(*[_elementwise(plan, a, deterministic, test) for a in m.args])
    raise InvalidArgument(f"cannot express the matrix {m} by eigenvalues of commuting matrices")


def _leaf_symbol(plan: Plan, m: sp.MatrixSymbol, deterministic: dict[str, _Leaf], test: bool) -> sp.Symbol:
    """The eigenvalues of a deterministic matrix (a test matrix: its eigen-weights)."""
    if m.name not in deterministic:
        raise InvalidArgument(
            f"{m.name} is not a deterministic matrix of the result; the generated evaluator "
            "takes deterministic matrices by their eigenvalues only (a random factor left in "
            "the equivalent is outside its class)"
        )
    leaf = deterministic[m.name]
    if not test:
        if not (isinstance(leaf, Deterministic) and leaf.symmetric):
            raise InvalidArgument(
                f"{m.name} is declared symmetric=False but enters a df1 or the equivalent; the "
                "generated evaluator needs commuting symmetric matrices given by their eigenvalues"
            )
        plan.spectra[m.name] = True
    else:
        plan.spectra.setdefault(m.name, False)
    return _spectral_symbol(m.name)


def _y_index(plan: Plan, y: sp.Expr) -> int:
    if y not in plan.ys:
        plan.ys.append(y)
    return plan.ys.index(y)


def _y_name(i: int) -> sp.Symbol:
    return sp.Symbol(f"_y{i}")


def _atom_symbol(plan: Plan, y: int, kappa: sp.Symbol) -> sp.Symbol:
    """The variable of df1(ys[y], kappa) (one per pair)."""
    key = (y, kappa)
    if key not in plan.atoms:
        plan.atoms[key] = sp.Symbol(f"_d{len(plan.atoms)}")
    return plan.atoms[key]


def _use_atom(plan: Plan, y: int, kappa: sp.Symbol, solved: set[sp.Symbol]) -> sp.Symbol:
    """The variable holding df1(y, kappa), computed (once) as soon as it is first used."""
    d = _atom_symbol(plan, y, kappa)
    if d not in plan.emitted:
        if kappa not in solved:  # pragma: no cover - guarded by the callers
            raise InvalidArgument(f"df1 of {kappa} is needed before {kappa} is solved")
        plan.emitted.add(d)
        plan.statements.append(Assignment(d, _call(runtime.df1, [_y_name(y), kappa])))
    return d


def _scalar(
    plan: Plan, expr: sp.Expr, deterministic: dict[str, _Leaf], solved: set[sp.Symbol], what: str
) -> sp.Expr:
    """``expr`` with each df1 atom replaced by its variable (all its ridges solved)."""
    undefined = [f for f in expr.atoms(sp.Function) if isinstance(f, sp.core.function.AppliedUndef)]
    if undefined:
        raise UndefinedTransform(
            f"{undefined[0].func} in {what} has no closed form, so the generated evaluator cannot "
            "compute it; use a law with a closed-form S-transform (Wishart, FreePoisson, Constant)"
        )
    rep = {}
    for atom in sorted(expr.atoms(df1), key=str):
        ymat, kappa = atom.args
        if kappa not in solved:
            raise InvalidArgument(f"{atom} in {what} needs {kappa}, which is not solved before it")
        y = _elementwise(plan, ymat, deterministic, test=False)
        rep[atom] = _use_atom(plan, _y_index(plan, y), kappa, solved)
        plan.display[rep[atom]] = atom
    return expr.xreplace(rep)


# ---------------------------------------------------------------------------
# one-point results
# ---------------------------------------------------------------------------


def plan_result(result: OnePoint | Contracted) -> Plan:
    """The plan of :func:`~detequiv.codegen.pycode.to_module` for a one-point result.

    Parameters
    ----------
    result : OnePoint or Contracted
        A one-point equivalent, or a trace or quadratic form of one (see
        :func:`~detequiv.codegen.pycode.to_module` for the class of results).

    Returns
    -------
    Plan
        The fixed points in solve order, then ``ridge``, ``prefactor`` and ``value``.

    Raises
    ------
    InvalidArgument
        If the result is outside the class.
    UndefinedTransform
        If a fixed point uses an S-transform with no closed form.

    Examples
    --------
    A quadratic form: the vector by its coordinates, the covariance by its eigenvalues.

    >>> import sympy as sp
    >>> from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian
    >>> from detequiv.derivations.expressions import resolvent
    >>> from detequiv.derivations.derive import derive
    >>> lam, D, P = sp.Symbol("lam", positive=True), *sp.symbols("D P", positive=True)
    >>> u, X = DeterministicVector("u", D), Gaussian("X", (P, D))
    >>> plan = plan_result(derive(u.T @ (lam * resolvent(X.T @ X @ Deterministic("Sigma", D) / P, lam)) @ u))
    >>> sorted(plan.spectra.items()), plan.vectors
    ([('Sigma', True), ('u', False)], {'u'})
    """
    inner, test = _inner_and_test(result)
    lam = inner.lam
    if not isinstance(lam, sp.Symbol):
        raise InvalidArgument(f"the ridge {lam} of the result must be a symbol such as lam")
    plan = Plan(lam=lam)
    deterministic = _deterministic_leaves(plan, [*_leaves(result.random), *test])
    plan.name_ok(lam)
    solved: set[sp.Symbol] = set()
    for fp in inner.fixed_points:
        _plan_fixed_point(plan, fp, deterministic, solved)
        solved.add(fp.symbol)
        plan.outputs.append((fp.symbol.name, fp.symbol))
    _plan_value(plan, result, inner, test, deterministic, solved)
    plan.params -= {lam}
    for s in plan.params:
        plan.name_ok(s)
    return plan


def _inner_and_test(result: Any) -> tuple[OnePoint, tuple[MatrixExpr, ...]]:
    """The one-point equivalent and the test factors of a (contracted) result."""
    if isinstance(result, Contracted):
        # tr(L R M) = tr(M L R); a quadratic form u.T L R M v keeps its order (all commute)
        if result.kind == "trace":
            return result.inner, (*result.right, *result.left)
        return result.inner, (*result.left, *result.right)
    if isinstance(result, OnePoint):
        return result, ()
    raise InvalidArgument(
        f"to_module takes a one-point result (OnePoint or a trace Contracted from derive), got "
        f"{type(result).__name__}; two-point results reach code through the losses built on them: "
        "loss_to_module(RidgeRegression(...).test_error()) or loss_to_module(RandomFeatureRidge(...)"
        ".test_error()) (their bias is the two-point equivalent at lam' = lam)"
    )


def _leaves(expr: MatrixExpr | Trace) -> list[MatrixExpr]:
    """The matrix leaves of a result's input (a matrix expression or a Trace of one)."""
    return list(expr.arg.leaves() if isinstance(expr, Trace) else expr.leaves())


def _deterministic_leaves(plan: Plan, leaves: Sequence[MatrixExpr]) -> dict[str, _Leaf]:
    """The deterministic matrices and vectors among the leaves, by name (all of one size)."""
    deterministic: dict[str, _Leaf] = {}
    for leaf in leaves:
        base = leaf.base if isinstance(leaf, Sqrt) else leaf.arg if isinstance(leaf, Transpose) else leaf
        if isinstance(base, (Deterministic, DeterministicVector)):
            deterministic[base.name] = base
        if isinstance(base, DeterministicVector):
            plan.vectors.add(base.name)
    _one_eigenbasis(plan, deterministic)
    return deterministic


def _one_eigenbasis(plan: Plan, deterministic: dict[str, _Leaf]) -> None:
    """The matrices' names are taken, and their common dimension defaults to the spectrum
    length (an error if they live in spaces of different sizes)."""
    dims = {d.dim for d in deterministic.values()}
    if len(dims) > 1:
        raise InvalidArgument(
            f"the deterministic matrices live in spaces of different sizes {sorted(map(str, dims))}; "
            "the generated evaluator needs them all in one eigenbasis"
        )
    plan.reserved = set(deterministic)
    plan.dims = [d for d in dims if isinstance(d, sp.Symbol)]


def _plan_fixed_point(
    plan: Plan, fp: FixedPoint, deterministic: dict[str, _Leaf], solved: set[sp.Symbol]
) -> None:
    """An implicit ridge by the branch solver, an explicit one by its formula."""
    k = fp.symbol
    plan.name_ok(k)
    if fp.implicit:
        _implicit(plan, fp, deterministic, solved)
        return
    original = _scalar(plan, fp.rhs, deterministic, solved, f"the fixed point {k}")
    rhs = _eliminate_lam(plan, original, solved)
    if rhs != original:
        plan.rewritten[k] = rhs.xreplace(plan.display)
    plan.assign_call(k, f"_fixed_point_{k.name}", rhs, solved)


def _plan_value(
    plan: Plan,
    result: Any,
    inner: OnePoint,
    test: Sequence[MatrixExpr],
    deterministic: dict[str, _Leaf],
    solved: set[sp.Symbol],
) -> None:
    """``ridge``, ``prefactor`` and ``value``: the trace (or quadratic form) of the equivalent."""
    ridge = _scalar(plan, sp.sympify(inner.ridge), deterministic, solved, "the ridge")
    prefactor = _scalar(plan, sp.sympify(inner.prefactor), deterministic, solved, "the prefactor")
    r, c = sp.Symbol("_ridge"), sp.Symbol("_prefactor")
    plan.assign_call(r, "_ridge_of", ridge, solved)
    plan.assign_call(c, "_prefactor_of", prefactor, solved)
    y_value = _elementwise(plan, inner.matrix, deterministic, test=False)
    weights: sp.Expr = sp.S.One
    for f in test:
        weights = weights * _elementwise(plan, f.to_sympy(), deterministic, test=True)
    ye, we, value = sp.Symbol("_y_equivalent"), sp.Symbol("_weights"), sp.Symbol("_value")
    for var, expr, fname in ((ye, y_value, "_equivalent_spectrum"), (we, weights, "_test_weights")):
        args = sorted_symbols(expr.free_symbols)
        plan.functions.append(cse_function(fname, args, [expr]))
        plan.statements.append(Assignment(var, FunctionCall(fname, args)))
    plan.statements.append(Assignment(value, _call(runtime.trace_ratio, [r, ye, we])))
    quadratic = isinstance(result, Contracted) and result.kind == "quadratic"
    # a quadratic form sums over the eigenbasis: n * mean
    plan.statements.append(Assignment(value, c * value * sp.Symbol("_n") if quadratic else c * value))
    plan.outputs += [("ridge", r), ("prefactor", c), ("value", value)]


def _implicit(plan: Plan, fp: FixedPoint, deterministic: dict[str, _Leaf], solved: set[sp.Symbol]) -> None:
    """Emit the physical-branch solve of ``k = lam / g(df1(Y, k))``: g and g' (cse), the
    closed-form zeros of g (the ridgeless threshold), and the call of the branch solver."""
    k, lam = fp.symbol, plan.lam
    own = [a for a in sorted(fp.rhs.atoms(df1), key=str) if a.args[1] == k]
    outside = (
        f"the fixed point {fp} is not of the form {k} = {lam} / g(df1(Y, {k})) with one df1 of "
        f"{k} (additive layers, mixed chains); it is outside the class of the generated "
        "evaluator: use result.evaluate for it"
    )
    if len(own) != 1:
        raise InvalidArgument(outside)
    d = sp.Symbol("_d")
    rhs = _scalar(plan, fp.rhs.xreplace({own[0]: d}), deterministic, solved, f"the fixed point {k}")
    g = sp.simplify(lam / rhs)
    if k in g.free_symbols or lam in g.free_symbols:
        raise InvalidArgument(outside)
    y = _y_index(plan, _elementwise(plan, own[0].args[0], deterministic, test=False))
    args = sorted_symbols(g.free_symbols - {d})
    branch = f"_branch_{k.name}"
    plan.functions.append(cse_function(branch, [d, *args], [g, sp.diff(g, d)]))
    dstar, targs = _threshold(plan, k, g, d)
    what = QuotedString(f"the ridge {k}")
    solve = _call(runtime.solve_ridge, [sp.Symbol(branch), sp.Tuple(*args), lam, _y_name(y), dstar, what])
    plan.statements.append(Assignment(k, solve))
    plan.add_params((*args, *targs), solved)
    atom = _atom_symbol(plan, y, k)
    plan.branches[k] = g.xreplace({d: atom})
    plan.display[atom] = own[0]


def _threshold(plan: Plan, k: sp.Symbol, g: sp.Expr, d: sp.Symbol) -> tuple[sp.Symbol, list[sp.Symbol]]:
    """``_dstar_k``, the smallest positive zero of ``g`` in ``df1`` (closed form, by sympy),
    which fixes the ridgeless ``kappa_0``; and the arguments of its function."""
    try:
        roots = sp.solve(sp.numer(sp.together(g)), d)
    except NotImplementedError:
        raise InvalidArgument(
            f"cannot find the zeros of g = {g} in closed form (the ridgeless threshold of {k})"
        ) from None
    roots = [r for r in roots if not r.has(d)]
    threshold = f"_threshold_{k.name}"
    targs = sorted_symbols(set().union(*[r.free_symbols for r in roots]))
    plan.functions.append(cse_function(threshold, targs, [sp.Tuple(*roots)]))
    dstar = sp.Symbol(f"_dstar_{k.name}")
    candidates = FunctionCall(threshold, targs)
    plan.statements.append(
        Assignment(dstar, _call(runtime.smallest_positive, [candidates, sp.Symbol("_size")]))
    )
    return dstar, targs


def _eliminate_lam(plan: Plan, rhs: sp.Expr, solved: set[sp.Symbol]) -> sp.Expr:
    """Replace ``lam`` by ``k g(df1(y, k))`` of the implicit ridge ``k`` (exact on the branch)
    when that removes ``lam``: an intermediate ridge of a layered chain, ``lam / (1 - n/P)``,
    becomes ``k (1 - n/N)``, finite at ``lam = 0`` on both sides of the threshold."""
    lam = plan.lam
    branches = [k for k in plan.branches if k in solved]
    if lam not in rhs.free_symbols or len(branches) != 1:
        return rhs
    k = branches[0]
    candidate = sp.factor(sp.cancel(sp.together(rhs.xreplace({lam: k * plan.branches[k]}))))
    if lam in candidate.free_symbols:
        return rhs
    for (y, kappa), d in list(plan.atoms.items()):
        if d in candidate.free_symbols:
            _use_atom(plan, y, kappa, solved)
    return candidate


# ---------------------------------------------------------------------------
# losses: atoms as spectral sums, terms as rational functions of them
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpectralSum:
    """A spectral sum: ``mean_i summand`` (``mean``) or ``sum_i summand`` (quadratic forms)."""

    mean: bool
    summand: sp.Expr


@dataclass
class LossPlan:
    """What a generated loss module computes (built by :func:`plan_loss`).

    Attributes
    ----------
    plan : Plan
        The spectra, parameters and the solve of the ridge ``kappa``.
    kappa : sympy.Symbol
        The ridge of the terms.
    sums, symbols : list
        The spectral sums and their variables ``_a0, _a1, ...`` (one per distinct summand).
    vectors : dict
        The target vectors by name, as the scalar symbols of their coordinates.
    nonnegative : set of sympy.Symbol
        The parameters that may be 0 (noise variances).
    solver_rows : tuple of int
        The sums ``df1`` and ``-d df1 / d kappa`` among ``sums``.
    originals, terms : dict
        Each term as derived (trace atoms) and as a function of ``kappa`` and the sums.
    functions : list of FunctionDefinition
        ``_weights``, ``_kernels``, ``_terms`` and ``_denominators``.
    which : tuple of int
        The kernel of each sum (its index in what ``_kernels`` returns).
    checked : tuple of int
        The terms whose denominator is checked at ``lam = 0``.
    """

    plan: Plan
    kappa: sp.Symbol
    sums: list[SpectralSum] = field(default_factory=list)
    symbols: list[sp.Symbol] = field(default_factory=list)  # _a0, _a1, ... one per sum
    vectors: dict[str, sp.Symbol] = field(default_factory=dict)
    nonnegative: set[sp.Symbol] = field(default_factory=set)
    solver_rows: tuple[int, ...] = ()  # the sums df1 and -d df1/dkappa
    originals: dict[str, sp.Expr] = field(default_factory=dict)
    terms: dict[str, sp.Expr] = field(default_factory=dict)
    functions: list[FunctionDefinition] = field(default_factory=list)
    which: tuple[int, ...] = ()
    checked: tuple[int, ...] = ()

    def atom(self, s: SpectralSum) -> sp.Expr:
        """A number times the variable of a spectral sum (one variable per distinct summand)."""
        summand = sp.factor(sp.cancel(s.summand))
        if summand == 0:
            return sp.S.Zero
        # kappa-only factors and numbers go outside the sum: one variable per summand shape
        outside, summand = summand.as_independent(*(summand.free_symbols - {self.kappa}), as_Add=False)
        number, rest = summand.as_coeff_Mul()
        key = SpectralSum(s.mean, rest)
        if key not in self.sums:
            self.sums.append(key)
            self.symbols.append(sp.Symbol(f"_a{len(self.symbols)}"))
        return outside * number * self.symbols[self.sums.index(key)]

    def spectral_symbols(self) -> list[sp.Symbol]:
        """The scalar symbols of the spectra (eigenvalues or coordinates), in the order of their names."""
        return [
            self.vectors[s] if s in self.vectors else _spectral_symbol(s) for s in sorted(self.plan.spectra)
        ]

    def term_arguments(self) -> list[sp.Symbol]:
        """The arguments of ``_terms`` and ``_denominators``."""
        return [
            self.kappa,
            *self.symbols,
            *sorted_symbols(self.plan.params),
            *sorted_symbols(self.nonnegative),
        ]


def plan_loss(loss: LossFormula) -> LossPlan:
    """The plan of :func:`~detequiv.codegen.pycode.loss_to_module`: the ridge and each term.

    Parameters
    ----------
    loss : LossFormula
        A loss derived by a :class:`~detequiv.derivations.formula.LossModel` with one
        implicit ridge ``kappa = lam / g(df1(Sigma, kappa))``.

    Returns
    -------
    LossPlan
        The solve of ``kappa`` and the terms as rational functions of ``kappa`` and the
        spectral sums (``lam`` eliminated).

    Raises
    ------
    InvalidArgument
        If the loss is outside that class.

    Examples
    --------
    >>> import sympy as sp
    >>> from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian
    >>> from detequiv.models.ridge import RidgeRegression
    >>> D, P = sp.symbols("D P", positive=True)
    >>> S, X, beta = Deterministic("Sigma", D), Gaussian("X", (P, D)), DeterministicVector("beta", D)
    >>> model = RidgeRegression(S, X, beta)
    >>> lp = plan_loss(model.test_error())
    >>> lp.terms["noise"], lp.sums[lp.solver_rows[0]]
    (sigma2, SpectralSum(mean=True, summand=Sigma/(Sigma + kappa)))
    """
    deterministic, fp = _check_loss(loss)
    lam, kappa = loss.lam, loss.kappa
    plan = Plan(lam=lam)
    _one_eigenbasis(plan, deterministic)
    plan.name_ok(lam)
    plan.name_ok(kappa)
    for leaf in deterministic.values():
        if isinstance(leaf, DeterministicVector):
            plan.vectors.add(leaf.name)
            plan.spectra[leaf.name] = False
    _implicit(plan, fp, deterministic, set())
    lp = LossPlan(plan=plan, kappa=kappa, vectors={v: sp.Symbol(v, real=True) for v in sorted(plan.vectors)})
    fixed_params = set(plan.params)
    solver_sums = _loss_terms(lp, loss, deterministic)
    _keep_used_sums(lp, solver_sums)
    _loss_parameters(lp, fixed_params)
    _loss_functions(lp)
    return lp


def _check_loss(loss: Any) -> tuple[dict[str, _Leaf], FixedPoint]:
    """The loss's matrices by name and its one implicit fixed point (or an error)."""
    if not isinstance(loss, LossFormula):
        raise InvalidArgument(
            f"loss_to_module takes a LossFormula (e.g. RidgeRegression(...).test_error()), got "
            f"{type(loss).__name__}"
        )
    if not isinstance(loss.model, LossModel):
        raise InvalidArgument(
            f"loss_to_module needs a loss derived from a model (RidgeRegression(...).test_error() "
            f"or .training_error()), got a LossFormula {loss.name!r} without one"
        )
    deterministic: dict[str, _Leaf] = dict(loss.model.deterministic_matrices())
    if len(loss.fixed_points) != 1 or not loss.fixed_points[0].implicit:
        raise InvalidArgument(
            f"the loss {loss.name} has the fixed points {list(loss.fixed_points)}; the generated "
            "evaluator handles one implicit ridge kappa = lam / g(df1(Sigma, kappa)); use "
            "loss.evaluate for it"
        )
    fp = loss.fixed_points[0]
    if fp.symbol != loss.kappa:
        raise InvalidArgument(f"the fixed point solves {fp.symbol} but the terms use {loss.kappa}")
    return deterministic, fp


def _loss_terms(lp: LossPlan, loss: LossFormula, deterministic: dict[str, _Leaf]) -> tuple[sp.Expr, sp.Expr]:
    """Each term with its atoms as sums and ``lam`` eliminated; the sums of the ridge solve."""
    plan, kappa, lam = lp.plan, lp.kappa, loss.lam
    # lam = kappa g(df1): the df1 variable of the one-point plan is a spectral sum here
    ((key, d_symbol),) = plan.atoms.items()
    y = plan.ys[key[0]]
    df1_sum = lp.atom(SpectralSum(True, y / (y + kappa)))
    slope_sum = lp.atom(SpectralSum(True, y / (y + kappa) ** 2))  # -d df1 / d kappa, for the Newton solve
    g = plan.branches[kappa].xreplace({d_symbol: df1_sum})
    for name, expr in loss.terms.items():
        e = to_atoms(sp.sympify(expr))
        lp.originals[name] = e
        rep = {a: lp.atom(_summand(lp, a, deterministic)) for a in sorted(e.atoms(mtr), key=str)}
        e = e.xreplace(rep)
        eliminated = sp.factor(sp.cancel(sp.together(e.xreplace({lam: kappa * g}))))
        e = eliminated if lam not in eliminated.free_symbols else e
        lp.terms[name] = _merged(sp.numer(e), lp) / _merged(sp.denom(e), lp)
    return df1_sum, slope_sum


def _keep_used_sums(lp: LossPlan, solver_sums: tuple[sp.Expr, sp.Expr]) -> None:
    """Only the sums the terms and the solver use, renumbered ``_a0, _a1, ...``."""
    if not all(isinstance(a, sp.Symbol) for a in solver_sums):  # pragma: no cover - unit summands
        raise InvalidArgument(f"unexpected spectral sums {solver_sums} for the fixed point")
    used = set().union(*[t.free_symbols for t in lp.terms.values()], solver_sums)
    keep = [i for i, s in enumerate(lp.symbols) if s in used]
    renumber = {lp.symbols[i]: sp.Symbol(f"_a{j}") for j, i in enumerate(keep)}
    lp.sums = [lp.sums[i] for i in keep]
    lp.symbols = [renumber[lp.symbols[i]] for i in keep]
    lp.terms = {n: t.xreplace(renumber) for n, t in lp.terms.items()}
    lp.solver_rows = tuple(lp.symbols.index(renumber[a]) for a in solver_sums)


def _loss_parameters(lp: LossPlan, fixed_params: set[sp.Symbol]) -> None:
    """The scalars of the terms: parameters of the ridge and dimensions (``> 0``), the others
    (noise variances) ``>= 0``; the term names must not clash with the outputs."""
    plan, kappa = lp.plan, lp.kappa
    spectral = {_spectral_symbol(s) for s in plan.spectra} | set(lp.vectors.values())
    for name, t in lp.terms.items():
        for s in t.free_symbols - set(lp.symbols) - {kappa, plan.lam} - spectral:
            plan.name_ok(s)
            if s not in fixed_params and s not in plan.dims:
                lp.nonnegative.add(s)
            else:
                plan.params.add(s)
        if name in ("total", kappa.name) or not name.isidentifier():
            raise InvalidArgument(f"the term name {name!r} clashes with an output; rename the term")
    plan.params -= {plan.lam}


def _loss_functions(lp: LossPlan) -> None:
    """``_weights`` (the kappa-free factor of each sum), ``_kernels`` (the distinct kappa
    kernels), ``_terms`` and ``_denominators`` (each checked one and its magnitude)."""
    plan, kappa = lp.plan, lp.kappa
    spectral_symbols = lp.spectral_symbols()
    split = [a.summand.as_independent(kappa, as_Add=False) for a in lp.sums]
    kernels: list[sp.Expr] = []
    for _, kernel in split:
        if kernel not in kernels:
            kernels.append(kernel)
    lp.which = tuple(kernels.index(kernel) for _, kernel in split)
    term_args = lp.term_arguments()
    denominators = [sp.denom(t) for t in lp.terms.values()]
    lp.checked = tuple(i for i, d in enumerate(denominators) if d.free_symbols)
    pairs = [x for i in lp.checked for x in (denominators[i], _magnitude(denominators[i]))]
    lp.functions = [
        cse_function("_weights", spectral_symbols, [w for w, _ in split]),
        _kernel_function([kappa, *spectral_symbols], kernels, plan.ys[0] + kappa),
        cse_function("_terms", term_args, [sp.Tuple(*lp.terms.values())]),
        cse_function("_denominators", term_args, [sp.Tuple(*pairs)]),
    ]


def _eigen(lp: LossPlan, m: sp.Basic, deterministic: dict[str, _Leaf]) -> sp.Expr:
    """Eigenvalues of a matrix expression of commuting matrices whose coefficients may hold
    ``kappa`` (``(kappa I + Sigma)^-1`` becomes ``1/(kappa + Sigma)``)."""
    if isinstance(m, sp.MatMul):
        coeff, mats = m.as_coeff_matrices()
        return coeff * sp.Mul(*[_eigen(lp, f, deterministic) for f in mats])
    if isinstance(m, sp.MatAdd):
        return sp.Add(*[_eigen(lp, a, deterministic) for a in m.args])
    if isinstance(m, sp.Inverse):
        return 1 / _eigen(lp, m.arg, deterministic)
    if isinstance(m, sp.MatPow):
        return _eigen(lp, m.args[0], deterministic) ** m.args[1]
    if isinstance(m, sp.Transpose):
        return _eigen(lp, m.arg, deterministic)
    return _elementwise(lp.plan, m, deterministic, test=False)


def _summand(lp: LossPlan, atom: mtr, deterministic: dict[str, _Leaf]) -> SpectralSum:
    """An :class:`mtr` atom as a spectral sum (matrices by their eigenvalues)."""
    m = atom.args[0]
    coeff, mats = m.as_coeff_matrices() if isinstance(m, sp.MatMul) else (sp.S.One, [m])
    mats = list(mats)
    if m.shape == (1, 1):
        first, last = mats[0], mats[-1] if len(mats) > 1 else None
        if not (
            isinstance(first, sp.Transpose)
            and isinstance(first.arg, sp.MatrixSymbol)
            and isinstance(last, sp.MatrixSymbol)
            and first.arg == last
            and last.name in lp.vectors
        ):
            raise InvalidArgument(
                f"the scalar atom {atom} is not a quadratic form v.T M v of the target vector; "
                "it is outside the class of the generated evaluator"
            )
        middle = mats[1:-1]
        inner = sp.MatMul(*middle).doit() if len(middle) > 1 else (middle[0] if middle else None)
        value = sp.S.One if inner is None else _eigen(lp, inner, deterministic)
        return SpectralSum(False, coeff * lp.vectors[last.name] ** 2 * value)
    return SpectralSum(True, coeff * _eigen(lp, m, deterministic))


def _merge(expr: sp.Expr, lp: LossPlan) -> sp.Expr:
    """Merge linear combinations of sums of one kind, with coefficients in ``kappa`` times a
    common factor (which may hold other sums), into a single sum whose summand sympy
    simplifies; bottom-up through the expression."""
    if not expr.args:
        return expr
    expr = expr.func(*[_merge(a, lp) for a in expr.args])
    if not isinstance(expr, sp.Add):
        return expr
    candidates = [_merge_options(term, lp) for term in expr.args]
    count: dict[tuple[bool, sp.Expr], int] = {}
    for options in candidates:
        for key, _, _ in options:
            count[key] = count.get(key, 0) + 1
    groups: dict[tuple[bool, sp.Expr], list[tuple[sp.Expr, SpectralSum]]] = {}
    out = []
    for term, options in zip(expr.args, candidates, strict=True):
        shared = [o for o in options if count[o[0]] > 1]
        if not shared:
            out.append(term)
            continue
        key, c, s = max(shared, key=lambda o: count[o[0]])
        groups.setdefault(key, []).append((c, s))
    for (mean, outside), members in groups.items():
        summand = sp.Add(*[c * s.summand for c, s in members])
        out.append(outside * lp.atom(SpectralSum(mean, summand)))
    return sp.Add(*out)


def _merge_options(term: sp.Expr, lp: LossPlan) -> list[tuple[tuple[bool, sp.Expr], sp.Expr, SpectralSum]]:
    """The ways ``term`` is ``(kappa coefficient) * sum * (common factor)``: ``((mean, common
    factor), coefficient, sum)`` for each sum it is linear in."""
    by_symbol = dict(zip(lp.symbols, lp.sums, strict=True))
    options = []
    for atom, power in sorted(term.as_powers_dict().items(), key=str):
        if atom not in by_symbol or power != 1:
            continue
        outside, inside = (term / atom).as_independent(lp.kappa, as_Add=False)
        if inside.free_symbols - {lp.kappa}:
            continue
        number, outside = outside.as_coeff_Mul()
        s = by_symbol[atom]
        options.append(((s.mean, outside), number * inside, s))
    return options


def _merged(expr: sp.Expr, lp: LossPlan) -> sp.Expr:
    """Merge sums inside the factors of ``expr`` and in its expansion, until nothing changes."""
    for _ in range(4):
        new = sp.factor(_merge(sp.factor(_merge(sp.expand(expr), lp)), lp))
        if new == expr:
            break
        expr = new
    return expr


def _magnitude(expr: sp.Expr) -> sp.Expr:
    """The sum of the absolute values of the monomials: the scale a cancellation is measured on."""
    if isinstance(expr, sp.Add):
        return sp.Add(*[_magnitude(a) for a in expr.args])
    if isinstance(expr, sp.Mul):
        return sp.Mul(*[_magnitude(a) for a in expr.args])
    if isinstance(expr, sp.Pow) and expr.exp.is_Integer:
        return _magnitude(expr.base) ** expr.exp
    return sp.Abs(expr)


def _kernel_function(args: list[sp.Symbol], kernels: list[sp.Expr], shifted: sp.Expr) -> FunctionDefinition:
    """``def _kernels(kappa, spectra)``: the kernels with ``1/(y + kappa)^n`` as powers of one
    reciprocal ``_r`` (one division per entry, then products), common subexpressions shared."""
    r = sp.Symbol("_r", positive=True)
    powers = {
        p: r ** (-p.exp)
        for e in kernels
        for p in e.atoms(sp.Pow)
        if p.base == shifted and p.exp.is_Integer and p.exp < 0
    }
    definition = cse_function("_kernels", args, [k.xreplace(powers) for k in kernels])
    if not powers:
        return definition
    body = [Assignment(r, 1 / shifted), *definition.body.args]
    return FunctionDefinition(definition.return_type, definition.name, definition.parameters, body)
