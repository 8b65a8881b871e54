r"""Standalone numpy evaluators of the general engine's results (:func:`pencil_to_module`).

A :class:`~detequiv.derivations.general.PencilEquivalent` is a system of fixed points
``g_i = F_i(g, lam)`` whose right-hand sides are normalized traces of rational functions of
the deterministic matrices. The generated module holds two printings of the same sympy
expressions, after common-subexpression elimination (:func:`sympy.cse`), for the two ways the
matrices can be given:

* **spectral** (every matrix a 1-D array): the matrices of one size commute and are given by
  their eigenvalues in one basis; an inverse is a reciprocal, a product a product, and a
  normalized trace ``tr(f)`` the mean over the eigenvalues, ``O(D)`` per evaluation;
* **dense** (some matrix 2-D): non-commuting matrices, with ``numpy.linalg.inv``, ``@`` and
  ``Tr(L R)/n`` computed as ``einsum('ij,ji', L, R)/n`` from the two halves of a product.

The residual ``F(g) - g`` and its Jacobian (differentiated symbolically through the
inverses) feed the physical-branch solver of the run time
(:func:`detequiv.runtime.solve_unknowns_grid`, copied into the module): the roots are
followed from a large shift of the ridges down to each grid point, the points of a real grid
from one another. The run time is copied from :mod:`detequiv.runtime` as for every generated
module (:mod:`~detequiv.codegen.pycode`).

>>> import numpy as np, sympy as sp
>>> import detequiv as de
>>> lam = sp.Symbol("lam", positive=True); D, P1, P2 = sp.symbols("D P1 P2", positive=True)
>>> S1, S2 = (de.Deterministic(name, D) for name in ("Sigma1", "Sigma2"))
>>> X1, X2 = de.Gaussian("X1", (P1, D)), de.Gaussian("X2", (P2, D))
>>> two = S1.sqrt() @ X1.T @ X1 @ S1.sqrt() / P1 + S2.sqrt() @ X2.T @ X2 @ S2.sqrt() / P2
>>> source = pencil_to_module(de.derive(lam * de.resolvent(two, lam)), "two_covariances")
>>> namespace = {}
>>> exec(compile(source, "two_covariances.py", "exec"), namespace)
>>> out = namespace["evaluate"]([0.5, 1.0], Sigma1=np.ones(4), Sigma2=np.ones(4), P1=8, P2=8)
>>> # isotropic: A = 2 X'X/16 (D/P = 1/4), value = k/(k+1), k^2 + (3/4 - lam/2) k - lam/2 = 0
>>> z = np.array([0.5, 1.0]) / 2; k = (z - 0.75 + np.sqrt((0.75 - z) ** 2 + 4 * z)) / 2
>>> bool(np.allclose(out["value"], k / (k + 1), rtol=1e-13))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import PRECEDENCE

from .. import runtime
from ..derivations.general import PencilEquivalent, jacobian_of
from ..derivations.traces import mtr
from ..errors import InvalidArgument
from .evaluator_plan import cse_function, runtime_name
from .pycode import assemble_module, check_module_name, module_header, to_module

__all__ = ["pencil_to_module", "plan_pencil", "PencilPlan", "SpectralMean"]


class SpectralMean(sp.Function):
    """The mean over the eigenvalues: the normalized trace of the spectral printing."""

    nargs = 1


class _SpectralPrinter(NumPyPrinter):
    """NumPy code of the spectral printing: arrays of eigenvalues, ``tr`` as their mean."""

    def _print_Assignment(self, expr: Any) -> str:
        return f"{self._print(expr.lhs)} = {self._print(expr.rhs)}"

    def _print_SpectralMean(self, expr: Any) -> str:
        return f"numpy.mean({self._print(expr.args[0])})"

    def _print_Pow(self, expr: Any, rational: bool = False) -> str:
        if expr.exp == -1:
            return "1/" + self.parenthesize(expr.base, PRECEDENCE["Mul"])
        return super()._print_Pow(expr, rational=rational)


class _DensePrinter(_SpectralPrinter):
    """NumPy code of the dense printing: matrices, ``@``, inverses, traces of products by halves."""

    def _matrix(self, m: Any) -> str:
        return "(" + self._print(m) + ")"

    def _print_Identity(self, expr: Any) -> str:
        return f"numpy.eye(int({self._print(expr.shape[0])}))"

    def _print_ZeroMatrix(self, expr: Any) -> str:
        return f"numpy.zeros((int({self._print(expr.shape[0])}), int({self._print(expr.shape[1])})))"

    def _print_MatMul(self, expr: Any) -> str:
        coeff, mats = expr.as_coeff_matrices()
        body = " @ ".join(self._matrix(m) for m in mats)
        return body if coeff == 1 else f"({self._print(coeff)})*({body})"

    def _print_MatAdd(self, expr: Any) -> str:
        return " + ".join(self._matrix(a) for a in expr.args)

    def _print_Inverse(self, expr: Any) -> str:
        return f"numpy.linalg.inv({self._print(expr.arg)})"

    def _print_Transpose(self, expr: Any) -> str:
        return f"{self._matrix(expr.arg)}.T"

    def _print_MatPow(self, expr: Any) -> str:
        if expr.exp == sp.Rational(1, 2):
            return f"{runtime_name(runtime.psd_sqrt)}({self._print(expr.base)})"
        if expr.exp.is_Integer:
            return f"numpy.linalg.matrix_power({self._print(expr.base)}, {int(expr.exp)})"
        raise InvalidArgument(f"cannot print the matrix power {expr}")

    def _print_mtr(self, expr: Any) -> str:
        arg = expr.args[0]
        if isinstance(arg, sp.MatMul):
            coeff, mats = arg.as_coeff_matrices()
            if len(mats) >= 2:
                half = len(mats) // 2
                left, right = (sp.MatMul(*p) if len(p) > 1 else p[0] for p in (mats[:half], mats[half:]))
                pair = f"{runtime_name(runtime.trace_pair)}({self._print(left)}, {self._print(right)})"
                return pair if coeff == 1 else f"({self._print(coeff)})*{pair}"
        m = self._print(arg)
        return f"numpy.trace({m})/({m}).shape[0]"


# ---------------------------------------------------------------------------
# the spectral printing: matrices as commuting arrays of eigenvalues
# ---------------------------------------------------------------------------


def _spectral(e: sp.Basic, arrays: frozenset[str]) -> sp.Expr:
    """A scalar expression with every matrix replaced by its eigenvalues (the matrices of one size
    commute; ``arrays`` are their names), ``mtr`` by :class:`SpectralMean`."""
    if isinstance(e, mtr):
        inner = _spectral_matrix(e.args[0], arrays)
        return SpectralMean(inner) if {s.name for s in inner.free_symbols} & arrays else inner
    if not e.args or e.is_Atom:
        return e  # type: ignore[return-value]
    return e.func(*[_spectral(a, arrays) for a in e.args])


def _spectral_matrix(m: sp.Basic, arrays: frozenset[str]) -> sp.Expr:
    if isinstance(m, sp.MatrixSymbol):
        return sp.Symbol(m.name)
    if isinstance(m, sp.Identity):
        return sp.S.One
    if isinstance(m, sp.ZeroMatrix):
        return sp.S.Zero
    if isinstance(m, sp.MatMul):
        return sp.Mul(
            *[
                _spectral_matrix(a, arrays) if getattr(a, "is_Matrix", False) else _spectral(a, arrays)
                for a in m.args
            ]
        )
    if isinstance(m, sp.MatAdd):
        return sp.Add(*[_spectral_matrix(a, arrays) for a in m.args])
    if isinstance(m, sp.Inverse):
        return 1 / _spectral_matrix(m.arg, arrays)
    if isinstance(m, sp.MatPow):
        return _spectral_matrix(m.base, arrays) ** m.exp
    if isinstance(m, sp.Transpose):
        return _spectral_matrix(m.arg, arrays)
    raise InvalidArgument(f"the spectral printing cannot take the matrix expression {m}")


# ---------------------------------------------------------------------------
# the module
# ---------------------------------------------------------------------------


def _flat_product(m: sp.Expr) -> tuple[sp.Expr, list[sp.Expr]]:
    """The scalar coefficient and the matrix factors of a (nested) product."""
    factors: list[sp.Expr] = []
    todo = [m]
    while todo:
        f = todo.pop(0)
        if isinstance(f, sp.MatMul):
            todo = [*f.args, *todo]
        else:
            factors.append(f)
    scalars = [f for f in factors if not getattr(f, "is_Matrix", False)]
    return sp.Mul(*scalars), [f for f in factors if getattr(f, "is_Matrix", False)]


def _matrices(exprs: Sequence[sp.Basic]) -> dict[str, tuple[sp.Expr, sp.Expr]]:
    found: dict[str, tuple[sp.Expr, sp.Expr]] = {}
    for e in exprs:
        for m in e.atoms(sp.MatrixSymbol):
            found[m.name] = m.shape
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class PencilPlan:
    """What a general-engine module computes: the unknowns, the ridges, the fixed points and
    their Jacobian, the value (a trace; ``tr(T E)`` with the test matrix ``test`` for a matrix
    result, ``n tr(E v u.T)`` for a quadratic form), the matrices with their sizes, the sizes
    and the other scalars."""

    unknowns: tuple[sp.Symbol, ...]
    lams: tuple[sp.Symbol, ...]
    equations: tuple[sp.Expr, ...]
    jacobian: tuple[sp.Expr, ...]
    value: sp.Expr
    test: str | None
    size: sp.Expr
    matrices: dict[str, tuple[sp.Expr, sp.Expr]]
    sizes: tuple[sp.Symbol, ...]
    others: tuple[sp.Symbol, ...]

    @property
    def scalars(self) -> tuple[sp.Symbol, ...]:
        return tuple(sorted((*self.sizes, *self.others), key=str))

    @property
    def user_matrices(self) -> list[str]:
        return [m for m in self.matrices if m != self.test]


def plan_pencil(result: PencilEquivalent) -> PencilPlan:
    """The :class:`PencilPlan` of a general-engine result."""
    unknowns = tuple(result.unknowns)
    lams = tuple(sp.Symbol(str(x)) if not isinstance(x, sp.Symbol) else x for x in result.lams)
    equations = tuple(fp.rhs for fp in result.fixed_points)
    value = result.deterministic
    test, n = None, sp.S.One
    if not result.is_scalar and value.shape == (1, 1):  # u.T E v = n tr(E v u.T)
        coeff, mats = _flat_product(value)
        u, v = mats[0].arg, mats[-1]
        value = coeff * v.shape[0] * mtr(sp.MatMul(*mats[1:-1], v, u.T))
    elif not result.is_scalar:
        n = value.shape[0]
        taken = {m.name for m in value.atoms(sp.MatrixSymbol)}
        test = next(t for t in ("test", "test_matrix", "T_test") if t not in taken)
        value = mtr(sp.MatMul(sp.MatrixSymbol(test, n, n), value))
    matrices = _matrices([*equations, value])
    shapes = [s for shape in matrices.values() for s in shape]
    symbols = set().union(*(sp.sympify(e).free_symbols for e in [*equations, value, *shapes]))
    scalars = [x for x in symbols - set(unknowns) - set(lams) if not isinstance(x, sp.MatrixSymbol)]
    dims = {
        *result.pencil.dims,
        *shapes,
        *(d for shape, _, _ in result.pencil.gaussians.values() for d in shape),
    }
    size_symbols = set().union(*(sp.sympify(d).free_symbols for d in dims))
    return PencilPlan(
        unknowns,
        lams,
        equations,
        tuple(e for row in jacobian_of(result) for e in row),
        value,
        test,
        n,
        matrices,
        tuple(sorted((x for x in scalars if x in size_symbols), key=str)),
        tuple(sorted((x for x in scalars if x not in size_symbols), key=str)),
    )


def _functions(plan: PencilPlan) -> str:
    """The generated functions: fixed points, Jacobian and value, printed spectral and dense."""
    names = frozenset(plan.matrices)
    spectral_args = [*plan.unknowns, *plan.lams, *(sp.Symbol(m) for m in plan.matrices), *plan.scalars]
    dense_args = [
        *plan.unknowns,
        *plan.lams,
        *(sp.MatrixSymbol(m, *shape) for m, shape in plan.matrices.items()),
        *plan.scalars,
    ]
    parts = []
    for kind, args, printer, convert in (
        ("spectral", spectral_args, _SpectralPrinter, lambda e: _spectral(e, names)),
        ("dense", dense_args, _DensePrinter, lambda e: e),
    ):
        emit = printer({"fully_qualified_modules": True})
        for what, exprs in (
            ("fixed_point", plan.equations),
            ("jacobian", plan.jacobian),
            ("value", (plan.value,)),
        ):
            parts.append(emit.doprint(cse_function(f"_{what}_{kind}", args, [convert(e) for e in exprs])))
    return "\n\n\n".join(parts)


def _inputs(plan: PencilPlan) -> list[str]:
    """The lines of ``evaluate`` that check the ridges, matrices, sizes and scalars."""
    test, n = plan.test, plan.size
    check = runtime_name(runtime.check_matrix)
    shapes = (
        "{"
        + ", ".join(
            f"{m!r}: ({str(sh[0])!r}, {str(sh[1])!r})" for m, sh in plan.matrices.items() if m != test
        )
        + "}"
    )
    lines = [
        f"_shape, _ridges = {runtime_name(runtime.pencil_ridges)}({{"
        + ", ".join(f"{x.name!r}: {x.name}" for x in plan.lams)
        + "})",
        "_ridges = numpy.stack(_ridges, axis=1)",
        *[f"{m} = {check}({m!r}, {m})" for m in plan.user_matrices],
        "_m = {" + ", ".join(f"{m!r}: {m}" for m in plan.user_matrices) + "}",
        "_shapes = " + shapes,
    ]
    if test is not None:
        lines += [
            f"if {test} is not None:",
            f"    _m[{test!r}] = {check}({test!r}, {test})",
            f"    _shapes[{test!r}] = ({str(n)!r}, {str(n)!r})",
        ]
    sizes = "{" + ", ".join(f"{s.name!r}: {s.name}" for s in plan.sizes) + "}"
    lines += [
        f"_sizes, _dense = {runtime_name(runtime.matrix_sizes)}({sizes}, _m, _shapes)",
        *[f"{m} = _m[{m!r}]" for m in plan.user_matrices],
        *[f"{s.name} = _sizes[{s.name!r}]" for s in plan.sizes],
        *[f"{s.name} = {runtime_name(runtime.check_scalar)}({s.name!r}, {s.name})" for s in plan.others],
    ]
    if test is not None:
        lines += [
            f"if {test} is None:",
            f"    {test} = numpy.eye(int({n})) if _dense else numpy.ones(int({n}))",
            "else:",
            f"    {test} = _m[{test!r}]",
        ]
    return lines


def _solve(plan: PencilPlan) -> list[str]:
    """The lines of ``evaluate`` that solve the unknowns along the grid and return the outputs."""
    k = len(plan.unknowns)
    solve = (
        f"    _g = {runtime_name(runtime.solve_unknowns_grid)}(_residual, _jacobian, {k}, _ridges, _scale)"
        if k
        else "    _g = numpy.zeros((_ridges.shape[0], 0), dtype=complex)"
    )
    outputs = "".join(f"{str(u)!r}: _g[:, {j}], " for j, u in enumerate(plan.unknowns))
    return [
        "_fp, _jac, _val = (_fixed_point_dense, _jacobian_dense, _value_dense) if _dense else "
        "(_fixed_point_spectral, _jacobian_spectral, _value_spectral)",
        "_args = (" + "".join(f"{a}, " for a in [*plan.matrices, *(s.name for s in plan.scalars)]) + ")",
        "_real = bool(numpy.all(_ridges.imag == 0)) and not any(numpy.iscomplexobj(a) for a in _args)",
        "",
        "def _point(g, s, i):  # real numbers on a real grid (half the work of complex ones)",
        "    z = _ridges[i] + s",
        "    return (g.real, z.real) if _real else (g, z)",
        "",
        "def _residual(g, s, i):",
        "    gp, z = _point(g, s, i)",
        "    return numpy.array(_fp(*gp, *z, *_args), dtype=complex) - g",
        "",
        "def _jacobian(g, s, i):",
        "    gp, z = _point(g, s, i)",
        f"    return numpy.array(_jac(*gp, *z, *_args), dtype=complex).reshape({k}, {k})",
        "",
        "_scale = max([1.0] + [float(numpy.max(numpy.abs(a))) for a in _m.values()])",
        'with numpy.errstate(all="ignore"):',
        solve,
        "    _points = (_point(_g[i], 0.0, i) for i in range(_ridges.shape[0]))",
        "    _value = numpy.array([_val(*gp, *z, *_args) for gp, z in _points])",
        "_out = {" + outputs + "'value': _value}",
        "_out = {key: (v.real if _real else v) for key, v in _out.items()}",
        f"return {runtime_name(runtime.finish_outputs)}(_shape, _ridges[:, 0], _out)",
    ]


@to_module.register
def pencil_to_module(result: PencilEquivalent, name: str = "evaluator") -> str:
    r"""The source of a standalone numpy module that evaluates a general-engine result on grids.

    Parameters
    ----------
    result : PencilEquivalent
        From :func:`~detequiv.derivations.derive.derive` (the general engine).
    name : str
        The module's name (a Python identifier), used in its docstring.

    Returns
    -------
    str
        Python source with ``evaluate(<ridges>, *, <matrices>, [test], <sizes and scalars>)``:
        each ridge a number or array (real ``> 0`` or complex; several ridges broadcast
        together), each deterministic matrix by its eigenvalues (1-D: the matrices of one size
        commute, ``O(D)``) or as a matrix (2-D: dense linear algebra), a vector by its
        coordinates, ``test`` the test matrix ``T`` of ``tr(T E)`` for a matrix result (default
        the identity), sizes defaulting to the matrices' sizes. It returns a dict of arrays of
        the grid's shape: each unknown by name and ``value`` (the trace, ``tr(T E)`` or
        ``u.T E v``). Bad inputs raise ``ValueError``.

    Raises
    ------
    InvalidArgument
        If ``name`` is not an identifier.
    """
    check_module_name(name, "evaluator")
    plan = plan_pencil(result)
    ridges = [x.name for x in plan.lams]
    signature = ", ".join(
        [
            ridges[0],
            "*",
            *[f"{r}=None" for r in ridges[1:]],
            *[f"{m}=None" for m in plan.user_matrices],
            *([f"{plan.test}=None"] if plan.test is not None else []),
            *[f"{s.name}=None" for s in plan.scalars],
        ]
    )
    text = "\n".join(
        [f"{result.random}  ~  {result.deterministic}", *(f"    {fp}" for fp in result.fixed_points)]
    )
    header = module_header(
        f"{name}: evaluator of a general-engine (linear pencil) equivalent, generated by detequiv.",
        "Only numpy is needed at run time. The equivalent (tr = Tr/n) and its fixed points,\n"
        "solved together on the physical branch (connected to lam -> infinity):",
        text,
    )
    doc = (
        "Evaluate the equivalent on a grid of ridges.\n\n    Matrices are given by their eigenvalues "
        "(1-D arrays: the matrices of one size\n    commute) or as 2-D arrays (dense); sizes default "
        "to the matrices' sizes.\n    Returns a dict of arrays: the unknowns by name and 'value'.\n"
    )
    return assemble_module(header, _functions(plan), [], signature, doc, [*_inputs(plan), "", *_solve(plan)])
