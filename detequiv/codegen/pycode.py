r"""Standalone numpy evaluators of derived results: :func:`to_module`, :func:`loss_to_module` (issue 5).

:func:`to_module` turns a derived :class:`~detequiv.derivations.onepoint.OnePoint` (or a
trace :class:`~detequiv.derivations.contraction.Contracted` ``tr(T R)``, or a quadratic
form ``u.T R v``) into the source of a Python module that needs only numpy at run time and
evaluates it on a grid of ridges ``lam``; :func:`loss_to_module` does the same for a
:class:`~detequiv.derivations.formula.LossFormula` (the test error of ridge regression
split into bias, variance and noise, its training error, the covariate-shifted test
error, the random-feature ridge test error), every term at once.

A module has three parts:

* the plan of :mod:`detequiv.codegen.evaluator_plan`, printed by sympy's
  :class:`~sympy.printing.numpy.NumPyPrinter` from :mod:`sympy.codegen.ast` function
  definitions after common-subexpression elimination (:func:`sympy.cse`): the
  eigenvalues of the matrices, the branch ``g`` of each implicit ridge and its zeros, the
  explicit fixed points, the terms of a loss as rational functions of :math:`\kappa` and
  spectral sums;
* the run time it calls (input checks, the physical-branch solver, the spectral sums),
  copied from :mod:`detequiv.runtime` with :func:`inspect.getsource`: the functions the
  module needs, renamed with a leading underscore, with their docstrings cut to the
  summary;
* ``evaluate(lam, *, <matrices>, <parameters>)``, which checks and broadcasts its
  arguments and runs the plan's statements in solve order.

The evaluators work in the *commuting class*: every deterministic matrix of the result
is given by its eigenvalues in one common eigenbasis (one covariance ``Sigma``, its
powers and square roots, a test matrix ``T`` commuting with it), so that
:math:`\mathrm{df}_1(Y,\kappa)=\operatorname{mean}_k\,y_k/(y_k+\kappa)` over the
eigenvalues :math:`y_k` of ``Y``. A single test matrix of a trace may be any matrix:
``tr(T f(Sigma))`` only sees its diagonal in the eigenbasis of ``Sigma``, which is what
its "eigen-weights" are. An implicit ridge :math:`\kappa=\lambda/g(\mathrm{df}_1(Y,\kappa))`
is solved on the physical branch (MATH.md 2.1: for :math:`\lambda>0` the root above the
ridgeless :math:`\kappa_0`, for :math:`\lambda=0` :math:`\kappa_0` itself, a complex
:math:`\lambda` by continuation along the arc from :math:`|\lambda|`) by
:func:`detequiv.runtime.solve_ridge`.

In a loss, every :class:`~detequiv.derivations.traces.mtr` atom is a spectral sum: a
normalized trace :math:`\operatorname{tr}f(\Sigma,\Sigma_t)` is
:math:`\operatorname{mean}_k f(s_k,t_k)`, a quadratic form
:math:`\beta^\top f(\Sigma,\Sigma_t)\beta` is :math:`\sum_k\beta_k^2f(s_k,t_k)`. The ridge
``lam`` is eliminated with :math:`\lambda=\kappa\,g(\mathrm{df}_1(\kappa))`, so the
ridgeless limit ``lam = 0`` is the value at :math:`\kappa_0` (a divergent limit is a
``ValueError``), and combinations of sums are merged into one sum, e.g.
:math:`\operatorname{tr}\Sigma R-\kappa\operatorname{tr}\Sigma R^2=\operatorname{tr}\Sigma^2R^2`,
which avoids the cancellation at large ``lam``. For many ``lam`` the sums are tabulated
once on Chebyshev nodes of :math:`\log\kappa` and :math:`\kappa` is solved on the table
(:func:`detequiv.runtime.solve_ridge_and_sums`), so the cost hardly grows with the grid.

>>> import numpy as np, sympy as sp
>>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
>>> from detequiv.derivations.derive import derive
>>> lam = sp.Symbol("lam", positive=True); D, P = sp.symbols("D P", positive=True)
>>> S = Deterministic("Sigma", D); X = Gaussian("X", (P, D))
>>> source = to_module(derive(lam * resolvent(S.sqrt() @ X.T @ X @ S.sqrt() / P, lam)))
>>> "import sympy" in source
False
>>> namespace = {}
>>> exec(compile(source, "evaluator.py", "exec"), namespace)
>>> out = namespace["evaluate"](np.array([0.1, 1.0]), Sigma=np.ones(4), D=1, P=2)
>>> np.round(out["kappa"], 10)   # MATH.md 7, isotropic (q, lam) = (0.5, 0.1), (0.5, 1)
array([0.17416574, 1.28077641])

References
----------
MATH.md sections 2.1-2.4 (fixed points, physical branch, ridgeless limit), 4.1-4.4 (the
losses), 5.6 (numerical recipe), 7 (isotropic values); DESIGN.md 3.5 (printing and codegen).
"""

from __future__ import annotations

import ast
import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp
from sympy.codegen.ast import Assignment, FunctionCall
from sympy.printing.codeprinter import CodePrinter
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import PRECEDENCE

from .. import runtime
from ..derivations.contraction import Contracted
from ..derivations.formula import LossFormula
from ..derivations.onepoint import OnePoint
from ..errors import InvalidArgument
from .evaluator_plan import LossPlan, Plan, cse_function, plan_loss, plan_result, runtime_name, sorted_symbols

__all__ = [
    "to_module",
    "loss_to_module",
    "numpy_function",
    "assemble_module",
    "module_header",
    "check_module_name",
]


class _Printer(NumPyPrinter):
    """NumPyPrinter with plain scalar assignments.

    ``NumPyPrinter._print_Assignment`` routes the right-hand side through its array
    machinery, which prints ``x0 = D/P`` as ``x0 = D`` (sympy 1.14); scalar code needs
    the generic :class:`CodePrinter` rule.
    """

    def _print_Assignment(self, expr: Any) -> str:
        return CodePrinter._print_Assignment(self, expr)

    def _print_Pow(self, expr: Any, rational: bool = False) -> str:
        if expr.exp == -1:  # 1/x rather than x**(-1.0)
            return "1/" + self.parenthesize(expr.base, PRECEDENCE["Mul"])
        return super()._print_Pow(expr, rational=rational)


class _LossPrinter(_Printer):
    """The printer of a loss module: also ``x**-n`` as ``1/x**n`` (integer powers take numpy's fast paths)."""

    def _print_Pow(self, expr: Any, rational: bool = False) -> str:
        if expr.exp.is_Integer and expr.exp < -1:
            return f"1/{self.parenthesize(expr.base, PRECEDENCE['Pow'])}**{-int(expr.exp)}"
        return super()._print_Pow(expr, rational=rational)


def numpy_function(
    name: str, args: Sequence[sp.Symbol], exprs: Sequence[sp.Expr]
) -> tuple[str, Callable[..., Any]]:
    """Source and compiled callable of a vectorized numpy function of sympy expressions.

    The same printer and common-subexpression elimination as :func:`to_module` (no
    string templates of formulas); the function returns one array, or a tuple for
    several expressions. Used by :mod:`detequiv.dmft` for the single-site step functions
    of user losses.

    Parameters
    ----------
    name : str
        A Python identifier.
    args : sequence of sympy.Symbol
        The arguments, in order.
    exprs : sequence of sympy expressions
        What the function returns.

    Examples
    --------
    >>> import numpy as np, sympy as sp
    >>> r, y = sp.symbols("r y")
    >>> src, f = numpy_function("softplus", (r, y), [sp.log(1 + sp.exp(-y * r))])
    >>> "def softplus(r, y):" in src, float(f(np.array([0.0]), np.array([1.0]))[0])
    (True, 0.6931471805599453)
    """
    if not name.isidentifier():
        raise InvalidArgument(f"name={name!r} is not a Python identifier")
    extra = set().union(*(sp.sympify(e).free_symbols for e in exprs)) - set(args)
    if extra:
        raise InvalidArgument(
            f"the expressions use {sorted(map(str, extra))}, which are not arguments {list(args)}"
        )
    printer = _Printer({"fully_qualified_modules": True})
    source = "import numpy\n\n\n" + printer.doprint(cse_function(name, args, [sp.sympify(e) for e in exprs]))
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<{name}>", "exec"), namespace)  # noqa: S102 - our own printed code
    return source, namespace[name]


# ---------------------------------------------------------------------------
# one-point results
# ---------------------------------------------------------------------------


@functools.singledispatch
def to_module(result: OnePoint | Contracted, name: str = "evaluator") -> str:
    r"""The source of a standalone numpy module that evaluates a one-point result on grids.

    Parameters
    ----------
    result : OnePoint or Contracted
        From :func:`~detequiv.derivations.onepoint.derive`: an equivalent
        ``c (lam + A)^{-1} ~ prefactor * kappa (kappa + Y)^{-1}`` or a trace of it
        ``tr(T R)``, whose deterministic matrices commute (given by eigenvalues in one
        eigenbasis) and whose implicit fixed points have the form
        ``kappa = lam / g(df1(Y, kappa))`` (Gram, Wishart and other closed-form free
        factors, layered chains); or a quadratic form ``u.T R v`` (vectors given by
        their coordinates in the eigenbasis).
    name : str
        The module's name (a Python identifier), used in its docstring.

    Returns
    -------
    str
        Python source with a function ``evaluate(lam, *, <matrices>, <parameters>)``:
        ``lam`` an array (or number), real ``>= 0`` or complex (off the negative
        axis), each deterministic matrix by its eigenvalues (1-D arrays of one length;
        a test matrix ``T`` by its diagonal in that eigenbasis), dimensions and ratios
        as positive numbers or arrays that broadcast with ``lam`` (a matrix dimension
        defaults to the spectrum length). It returns a dict of arrays of the broadcast
        shape (complex for a complex grid): each fixed point by name, ``ridge``,
        ``prefactor`` and ``value``, the normalized trace ``tr(E)`` of the
        equivalent ``E`` (``tr(T E)`` or ``u.T E v`` for a contracted result). Bad
        inputs raise ``ValueError``.

    Other result types register their own generator (the general engine's results:
    :func:`~detequiv.codegen.pencil_module.pencil_to_module`).

    Raises
    ------
    InvalidArgument
        If the result is outside the class above (a random matrix left in the
        equivalent, an additive layer, matrices of different sizes).
    UndefinedTransform
        If a fixed point uses an S-transform with no closed form.

    Examples
    --------
    >>> import sympy as sp
    >>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent, trace
    >>> from detequiv.derivations.derive import derive
    >>> lam = sp.Symbol("lam", positive=True); D, P = sp.symbols("D P", positive=True)
    >>> S, T = Deterministic("Sigma", D), Deterministic("T", D); X = Gaussian("X", (P, D))
    >>> src = to_module(derive(trace(T @ (lam * resolvent(X.T @ X @ S / P, lam)))), "ridge_trace")
    >>> "def evaluate(lam, *, Sigma=None, T=None, D=None, P=None):" in src
    True
    """
    check_module_name(name, "evaluator")
    plan = plan_result(result)
    printer = _Printer({"fully_qualified_modules": True})
    spectra, params = sorted(plan.spectra), sorted_symbols(plan.params)
    dims = [d for d in params if d in plan.dims]
    lam = plan.lam.name
    body = _prologue(plan, spectra, dims, params)
    body.append(
        _solver_block([printer.doprint(st) for st in (*plan.eigenvalue_statements(), *plan.statements)])
    )
    outputs = ", ".join(f"{n!r}: {printer.doprint(v)}" for n, v in plan.outputs)
    body.append(f"return {runtime_name(runtime.finish_outputs)}(_shape, {lam}, {{{outputs}}})")
    text, tex = _describe(result, plan)
    header = module_header(
        f"{name}: evaluator of a deterministic equivalent, generated by detequiv.codegen.to_module.",
        "Only numpy is needed at run time. The equivalent (trace-normalized, tr = Tr/n) and\n"
        "its fixed points, solved in this order (df1(Y, k) = mean(y / (y + k)) over the\n"
        "eigenvalues y of Y; implicit ridges on the physical branch, MATH.md 2.1):",
        f"{text}\n\nLaTeX:\n\n{tex}",
    )
    doc = _result_doc(result, plan, _input_docs(plan, spectra, dims, params))
    return _assemble(header, printer, plan.definitions(), _signature(lam, spectra, params), doc, body)


def _describe(result: OnePoint | Contracted, plan: Plan) -> tuple[str, str]:
    """The result and its fixed points as text and as LaTeX (for the docstring)."""
    inner = result.inner if isinstance(result, Contracted) else result
    text = [f"{result.random}  ~  {result.deterministic}"]
    for fp in inner.fixed_points:
        text.append(f"    {fp.symbol} = {fp.rhs}")
        if fp.symbol in plan.rewritten:
            text.append(
                f"        evaluated as {fp.symbol} = {plan.rewritten[fp.symbol]}\n"
                f"        (equal on the branch {plan.lam} = k g(df1); finite at {plan.lam} = 0)"
            )
    tex = [sp.latex(result.deterministic)]
    tex += [f"{sp.latex(fp.symbol)} = {sp.latex(fp.rhs)}" for fp in inner.fixed_points]
    return "\n".join(text), "\n".join(tex)


def _result_doc(result: OnePoint | Contracted, plan: Plan, inputs: str) -> str:
    """The docstring of ``evaluate`` for a one-point result."""
    lam = plan.lam.name
    fixed = ", ".join(repr(n) for n, _ in plan.outputs[:-3])
    if isinstance(result, Contracted) and result.kind == "quadratic":
        what = "the quadratic form"
    elif isinstance(result, Contracted):
        what = "the normalized trace against the test matrix"
    else:
        what = "the normalized trace of the equivalent"
    return (
        f"Evaluate the equivalent on a grid of {lam}.\n\n    Parameters\n    ----------\n"
        f"    {lam} : number or array, >= 0 or complex\n        The ridge; {lam} = 0 is the ridgeless "
        "limit, complex values are\n        reached by continuation along the arc from |lam|.\n"
        f"{inputs}\n\n    Returns\n    -------\n    dict of numpy arrays (broadcast shape)\n"
        f"        The fixed points {fixed}, 'ridge', 'prefactor' and 'value'\n        ({what}).\n"
    )


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------


def loss_to_module(loss: LossFormula, name: str = "loss_evaluator") -> str:
    r"""The source of a standalone numpy module that evaluates a loss formula on ``lam`` grids.

    Parameters
    ----------
    loss : LossFormula
        A derived loss whose model is a :class:`~detequiv.derivations.formula.LossModel`:
        ``RidgeRegression(...).test_error()`` (bias, variance, noise; with
        ``test_covariance`` the covariate-shifted error), ``.training_error()``,
        ``RandomFeatureRidge(...).test_error()``. Its matrices must commute (given by
        eigenvalues in one eigenbasis) and its fixed point must be one implicit ridge
        ``kappa = lam / g(df1(Sigma, kappa))``.
    name : str
        The module's name (a Python identifier), used in its docstring.

    Returns
    -------
    str
        Python source with ``evaluate(lam, *, <matrices>, <vector>, <parameters>)``:
        ``lam`` real ``>= 0`` (number or array; 0 is the ridgeless limit), each
        covariance by its eigenvalues and the target by its coordinates in the common
        eigenbasis (1-D arrays of one length), dimensions (``D`` defaults to the
        spectrum length) and ratios ``> 0``, noise variances ``>= 0``, all broadcasting
        with ``lam``. It returns a dict of arrays of the broadcast shape: every term,
        ``total`` and ``kappa``. Bad inputs (and a divergent ridgeless limit) raise
        ``ValueError``.

    Raises
    ------
    InvalidArgument
        If ``loss`` is not a model's LossFormula in the class above or ``name`` is not
        an identifier.

    Examples
    --------
    >>> import numpy as np, sympy as sp
    >>> from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian
    >>> from detequiv.models.ridge import RidgeRegression
    >>> D, P = sp.symbols("D P", positive=True)
    >>> S, X = Deterministic("Sigma", D), Gaussian("X", (P, D))
    >>> model = RidgeRegression(S, X, DeterministicVector("beta", D))
    >>> src = loss_to_module(model.training_error(), "ridge_train")
    >>> "def evaluate(lam, *, Sigma=None, beta=None, D=None, P=None, sigma2=None):" in src
    True
    >>> namespace = {}
    >>> exec(compile(loss_to_module(model.test_error()), "ridge_test_error.py", "exec"), namespace)
    >>> out = namespace["evaluate"](np.array([0.0, 1.0]), Sigma=np.ones(4), beta=np.full(4, 0.5),
    ...                             D=1, P=2, sigma2=0.25)
    >>> np.round(out["total"], 10)   # MATH.md 7: isotropic q = 0.5, ridgeless and lam = 1
    array([0.5       , 0.62545945])
    """
    check_module_name(name, "loss_evaluator")
    lp = plan_loss(loss)
    plan, lam = lp.plan, lp.plan.lam.name
    printer = _LossPrinter({"fully_qualified_modules": True})
    spectra, params = sorted(plan.spectra), sorted_symbols(plan.params)
    nonnegative = sorted_symbols(lp.nonnegative)
    dims = [d for d in params if d in plan.dims]
    body = _prologue(plan, spectra, dims, params, nonnegative)
    body.append(_solver_block(_loss_solver(printer, lp, spectra)))
    outputs = [f"{n!r}: _term{i}" for i, n in enumerate(lp.terms)]
    outputs.append(f"'total': {' + '.join(f'_term{i}' for i in range(len(lp.terms)))}")
    outputs.append(f"{lp.kappa.name!r}: {lp.kappa.name}")
    body.append(f"return {runtime_name(runtime.finish_outputs)}(_shape, {lam}, {{{', '.join(outputs)}}})")
    header = module_header(
        f"{name}: evaluator of the loss {loss.name}, generated by detequiv.codegen.loss_to_module.",
        "Only numpy is needed at run time. The terms (tr = Tr/n; a quadratic form b.T M b is\n"
        "sum_k b_k^2 m_k in the common eigenbasis) and the fixed point (MATH.md 2.1, 4.1-4.3):",
        _describe_loss(loss, lp),
    )
    doc = _loss_doc(lp, _input_docs(plan, spectra, dims, params, nonnegative))
    signature = _signature(lam, spectra, [*params, *nonnegative])
    return _assemble(header, printer, [*plan.definitions(), *lp.functions], signature, doc, body)


def _loss_solver(printer: _Printer, lp: LossPlan, spectra: Sequence[str]) -> list[str]:
    """The solver lines of a loss: ``kappa`` and the sums at once, then the terms, then the
    check of the ridgeless denominators."""
    plan, kappa = lp.plan, lp.kappa
    *before, solve = plan.statements
    if not (
        isinstance(solve, Assignment)
        and isinstance(solve.rhs, FunctionCall)
        and str(solve.rhs.name) == runtime_name(runtime.solve_ridge)
        and solve.lhs == kappa
    ):
        raise InvalidArgument(f"unexpected solver statement {solve}")  # pragma: no cover
    solver = [printer.doprint(st) for st in (*plan.eigenvalue_statements(), *before)]
    kinds = "(" + "".join(f"{a.mean}, " for a in lp.sums) + ")"
    spectra_tuple = f"({', '.join(spectra)},)"
    solver.append(f"_w = {runtime_name(runtime.weight_vectors)}(_weights, {kinds}, {spectra_tuple}, _n)")
    call = ", ".join(printer.doprint(a) for a in solve.rhs.function_args)
    solver.append(
        f"{kappa.name}, _sums = {runtime_name(runtime.solve_ridge_and_sums)}({call}, _kernels, "
        f"{lp.which!r}, _w, {spectra_tuple}, {lp.solver_rows!r})"
    )
    solver.append(f"({', '.join(s.name for s in lp.symbols)},) = _sums")
    arguments = ", ".join(s.name for s in lp.term_arguments())
    terms = ", ".join(f"_term{i}" for i in range(len(lp.terms)))
    solver.append(f"({terms},) = _terms({arguments})")
    checked = tuple(list(lp.terms)[i] for i in lp.checked)
    solver.append(
        f"{runtime_name(runtime.check_ridgeless)}({plan.lam.name}, {checked!r}, _denominators({arguments}))"
    )
    return solver


def _describe_loss(loss: LossFormula, lp: LossPlan) -> str:
    """The terms as derived, the fixed point, the terms as evaluated and the sums (for the docstring)."""
    lines = [f"{loss.name} = {' + '.join(loss.terms)}", ""]
    for name, e in lp.originals.items():
        lines.append(f"{name} = {e}")
    fp = loss.fixed_points[0]
    lines += ["", f"{fp.symbol} = {fp.rhs}   (physical branch)", "", "evaluated as (lam eliminated):", ""]
    for name, t in lp.terms.items():
        lines.append(f"{name} = {t}")
    lines.append("")
    for s, a in zip(lp.symbols, lp.sums, strict=True):
        kind = "mean_k" if a.mean else "sum_k"
        lines.append(f"{s} = {kind} {a.summand}")
    return "\n".join(lines)


def _loss_doc(lp: LossPlan, inputs: str) -> str:
    """The docstring of ``evaluate`` for a loss."""
    lam = lp.plan.lam.name
    return (
        f"Evaluate the loss on a grid of {lam}.\n\n    Parameters\n    ----------\n"
        f"    {lam} : number or array, real >= 0\n        The ridge; {lam} = 0 is the "
        f"ridgeless limit.\n{inputs}\n\n    Returns\n    -------\n"
        "    dict of numpy arrays (broadcast shape)\n"
        f"        The terms {', '.join(repr(t) for t in lp.terms)}, 'total' and the ridge "
        f"{lp.kappa.name!r}.\n\n    Raises\n    ------\n    ValueError\n        For bad inputs, "
        "or where a value is not finite (a divergent ridgeless limit).\n"
    )


# ---------------------------------------------------------------------------
# the module: what both kinds share
# ---------------------------------------------------------------------------


def check_module_name(name: object, example: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise InvalidArgument(f"module name {name!r} must be a Python identifier such as {example!r}")


def _signature(lam: str, spectra: Sequence[str], params: Sequence[sp.Symbol]) -> str:
    return ", ".join([lam, "*", *[f"{s}=None" for s in spectra], *[f"{p.name}=None" for p in params]])


def _prologue(
    plan: Plan,
    spectra: Sequence[str],
    dims: Sequence[sp.Symbol],
    params: Sequence[sp.Symbol],
    nonnegative: Sequence[sp.Symbol] | None = None,
) -> list[str]:
    """The first lines of ``evaluate``: check the spectra, their common length ``_n`` (the
    default of the dimensions), then broadcast ``lam`` and the parameters (``_shape``, ``_size``)."""
    check = runtime_name(runtime.check_spectrum)
    body = [f"{s} = {check}({s!r}, {s}, {plan.spectra[s]})" for s in spectra]
    body.append(
        f"_n = {runtime_name(runtime.common_length)}({{" + ", ".join(f"{s!r}: {s}" for s in spectra) + "})"
    )
    for d in dims:
        body.append(f"if {d.name} is None:\n        {d.name} = _n")
    lam = plan.lam.name

    def pairs(symbols: Sequence[sp.Symbol]) -> str:
        return "[" + ", ".join(f"({p.name!r}, {p.name})" for p in symbols) + "]"

    names = ", ".join([lam, *[p.name for p in (*params, *(nonnegative or ()))]])
    if nonnegative is None:
        grid = f"{runtime_name(runtime.broadcast_grid)}({lam!r}, {lam}, {pairs(params)})"
    else:
        loss_grid = runtime_name(runtime.broadcast_loss_grid)
        grid = f"{loss_grid}({lam!r}, {lam}, {pairs(params)}, {pairs(nonnegative)})"
    body.append(f"_shape, ({names},) = {grid}")
    body.append(f"_size = {lam}.shape[0]")
    return body


def _solver_block(lines: Sequence[str]) -> str:
    """The solver's lines, run with numpy's floating-point warnings off (non-finite outputs
    are errors at the end)."""
    return 'with numpy.errstate(all="ignore"):\n' + "\n".join("        " + line for line in lines)


def _input_docs(
    plan: Plan,
    spectra: Sequence[str],
    dims: Sequence[sp.Symbol],
    params: Sequence[sp.Symbol],
    nonnegative: Sequence[sp.Symbol] = (),
) -> str:
    """The Parameters entries of ``evaluate`` after ``lam``."""
    lines = []
    for s in spectra:
        if s in plan.vectors:
            meaning = f"The coordinates of the vector {s} in the common eigenbasis."
        elif plan.spectra[s]:
            meaning = f"Eigenvalues of {s} (>= 0), in the common eigenbasis."
        else:
            meaning = f"Eigen-weights of {s}: its diagonal in the common eigenbasis."
        lines.append(f"    {s} : array of shape (n,)\n        {meaning}")
    for p in params:
        default = ", optional\n        Defaults to the spectrum length n." if p in dims else ""
        lines.append(f"    {p.name} : positive number or array{default}")
    lines += [f"    {p.name} : number or array >= 0" for p in nonnegative]
    return "\n".join(lines)


def module_header(first: str, intro: str, formulas: str) -> str:
    """The module's docstring."""
    text = formulas.replace('"""', "'''")
    return (
        f'r"""{first}\n\n{intro}\n\n{text}\n\nCall ``evaluate(lam, *, matrices..., parameters...)``.\n"""\n'
    )


def _assemble(
    header: str, printer: _Printer, definitions: Sequence[Any], signature: str, doc: str, body: Sequence[str]
) -> str:
    """The module text of printed ``definitions`` (see :func:`assemble_module`)."""
    generated = "\n\n\n".join(printer.doprint(f) for f in definitions)
    return assemble_module(header, generated, sorted(printer.module_imports), signature, doc, body)


def assemble_module(
    header: str, generated: str, modules: Sequence[str], signature: str, doc: str, body: Sequence[str]
) -> str:
    """The module text: docstring, imports (numpy and ``modules``), the run time the code needs
    (copied from :mod:`detequiv.runtime`), the ``generated`` functions, then
    ``def evaluate(signature)`` with docstring ``doc`` and the lines of ``body``."""
    evaluate = f"def evaluate({signature}):\n    " + '"""' + doc + '    """\n    ' + "\n    ".join(body)
    imports = sorted({"import numpy", *(f"import {m}" for m in modules)})
    parts = [
        header,
        "\n".join(imports),
        '__all__ = ["evaluate"]',
        "# run time: copied from detequiv.runtime (public names with a leading underscore)\n\n"
        + _runtime_source(generated + "\n\n\n" + evaluate),
        "# generated: sympy.cse + sympy.codegen.ast, printed by NumPyPrinter\n\n" + generated,
        evaluate,
    ]
    return "\n\n\n".join(p.strip("\n") for p in parts) + "\n"


# ---------------------------------------------------------------------------
# the run time, copied from detequiv.runtime
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RuntimePiece:
    """A top-level statement of :mod:`detequiv.runtime` as it reads in a generated module."""

    defines: frozenset[str]
    uses: frozenset[str]
    source: str
    function: bool


@functools.cache
def _runtime_pieces() -> tuple[_RuntimePiece, ...]:
    """The functions and constants of :mod:`detequiv.runtime`, in order, renamed (``name`` ->
    ``_name`` for its public names), docstrings cut to their summary; without the module's
    docstring, imports and ``__all__``."""
    source = inspect.getsource(runtime)
    if not source.isascii():  # pragma: no cover - ast columns are byte offsets
        raise RuntimeError("detequiv/runtime.py must be ASCII to be copied")
    lines = source.splitlines()
    statements: list[tuple[ast.stmt, set[str]]] = []
    for node in ast.parse(source).body:
        defines = _defined_names(node)
        if defines:
            statements.append((node, defines))
    top = set().union(*(d for _, d in statements))
    rename = {name: "_" + name for name in runtime.__all__}
    pieces = []
    for node, defines in statements:
        _check_no_shadowing(node, set(rename))
        uses = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} & top
        pieces.append(
            _RuntimePiece(
                frozenset(rename.get(n, n) for n in defines),
                frozenset(rename.get(n, n) for n in uses),
                _copied_source(lines, node, rename),
                isinstance(node, ast.FunctionDef),
            )
        )
    return tuple(pieces)


def _defined_names(node: ast.stmt) -> set[str]:
    """The names a copied statement defines: a function, or the constants it assigns (none for
    the docstring, the imports, the ``TYPE_CHECKING`` block and ``__all__``)."""
    if isinstance(node, ast.FunctionDef):
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = {t.value.id if isinstance(t, ast.Subscript) else t.id for t in targets}  # type: ignore[attr-defined]
        return names - {"__all__"}
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.If, ast.Expr)):
        return set()
    raise RuntimeError(f"detequiv.runtime line {node.lineno}: a statement a generated module cannot copy")


def _check_no_shadowing(node: ast.stmt, public: set[str]) -> None:
    """A public runtime name is renamed wherever it is read: no local may carry it."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.arg):
            local = sub.arg
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            local = sub.id
        elif isinstance(sub, ast.FunctionDef) and sub is not node:
            local = sub.name
        else:
            continue
        if local in public:
            raise RuntimeError(f"detequiv.runtime: the local {local!r} shadows a public name of the module")


def _copied_source(lines: Sequence[str], node: ast.stmt, rename: dict[str, str]) -> str:
    """The statement's lines (with the comment lines right above it), names renamed, the
    docstring of a function cut to its first paragraph."""
    text = list(lines[node.lineno - 1 : node.end_lineno])
    edits = [
        (n.lineno - node.lineno, n.col_offset, n.end_col_offset, rename[n.id])
        for n in ast.walk(node)
        if isinstance(n, ast.Name) and n.id in rename
    ]
    if isinstance(node, ast.FunctionDef) and node.name in rename:
        start = text[0].index("def ") + 4
        edits.append((0, start, start + len(node.name), rename[node.name]))
    for row, begin, end, new in sorted(edits, reverse=True):
        text[row] = text[row][:begin] + new + text[row][end:]
    doc = node.body[0] if isinstance(node, ast.FunctionDef) else None
    if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
        first, last = doc.lineno - node.lineno, doc.end_lineno - node.lineno  # type: ignore[operator]
        blank = next((i for i in range(first + 1, last) if not text[i].strip()), None)
        if blank is not None and not text[blank - 1].rstrip().endswith(('"', "\\")):
            text[first : last + 1] = [*text[first : blank - 1], text[blank - 1].rstrip() + '"""']
    comments = node.lineno - 1
    while comments > 0 and lines[comments - 1].lstrip().startswith("#"):
        comments -= 1
    return "\n".join([*lines[comments : node.lineno - 1], *text])


def _runtime_source(code: str) -> str:
    """The run time ``code`` calls: the pieces it names and, recursively, the ones they name."""
    pieces = _runtime_pieces()
    where: dict[str, list[int]] = {}
    for i, piece in enumerate(pieces):
        for name in piece.defines:
            where.setdefault(name, []).append(i)
    tree = ast.parse(code)
    own = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if own & where.keys():  # pragma: no cover - the plan's names never start like the run time's
        raise RuntimeError(f"generated functions {sorted(own & where.keys())} clash with the run time")
    todo = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in where]
    chosen: set[int] = set()
    while todo:
        for i in where[todo.pop()]:
            if i not in chosen:
                chosen.add(i)
                todo.extend(pieces[i].uses)
    blocks: list[str] = []
    previous: _RuntimePiece | None = None
    for i in sorted(chosen):
        piece = pieces[i]
        if previous is not None and not piece.function and not previous.function:
            blocks[-1] += "\n" + piece.source  # consecutive constants stay together
        else:
            blocks.append(piece.source)
        previous = piece
    return "\n\n\n".join(blocks)
