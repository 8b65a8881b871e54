r"""The general engine: any rational expression of Gaussian and deterministic matrices.

The expression is linearized (:mod:`~detequiv.derivations.pencil`), its Gaussian blocks are
averaged by their planar pairings into the matrix Dyson equation, which is scalarized into
fixed points of a few traces (:mod:`~detequiv.derivations.dyson`); explicit unknowns are
eliminated, and when one deterministic matrix is left in a one-point result the familiar
renormalized ridge :math:`\kappa` appears (``ridge_form``) and the result is an ordinary
:class:`~detequiv.derivations.onepoint.OnePoint`. Otherwise it is a :class:`PencilEquivalent`,
with the same protocol as every result: named steps, LaTeX, ``evaluate`` (the physical branch
by Newton continuation; ``O(D)`` when the matrices commute, dense otherwise),
``check_series`` (the exact witness: the series in ``1/lam`` of the wanted block against the
non-crossing pairings of the Gaussian letters) and ``check_monte_carlo``.

>>> import sympy as sp
>>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
>>> from detequiv.derivations.derive import derive
>>> lam = sp.Symbol("lam", positive=True); D, P1, P2 = sp.symbols("D P1 P2", positive=True)
>>> S1, S2 = Deterministic("Sigma1", D), Deterministic("Sigma2", D)
>>> X1, X2 = Gaussian("X1", (P1, D)), Gaussian("X2", (P2, D))
>>> A = S1.sqrt() @ X1.T @ X1 @ S1.sqrt() / P1 + S2.sqrt() @ X2.T @ X2 @ S2.sqrt() / P2
>>> eq = derive(lam * resolvent(A, lam))
>>> eq.derivation.rules
('general_engine', 'linearize', 'covariance_map', 'dyson_equation', 'scalarize', 'eliminate')
>>> "no free additive term" in eq.derivation[0].note   # why the shape rules declined
True
>>> eq.deterministic
lam*(lam*I + 1/(D*g_2/P2 + 1)*Sigma2 + 1/(D*g_1/P1 + 1)*Sigma1)**(-1)
>>> for fp in eq.fixed_points:
...     print(fp)
g_1 = mtr((lam*I + 1/(D*g_2/P2 + 1)*Sigma2 + 1/(D*g_1/P1 + 1)*Sigma1)**(-1)*Sigma1)
g_2 = mtr((lam*I + 1/(D*g_2/P2 + 1)*Sigma2 + 1/(D*g_1/P1 + 1)*Sigma1)**(-1)*Sigma2)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from ..errors import InvalidArgument
from ..runtime import follow_unknowns
from .derivation import Derivation, FixedPoint, Step
from .dyson import (
    block_inverse,
    canonical,
    covariance_map,
    deterministic_part,
    dyson_matrix,
    trace_of,
)
from .engine import Context, Steps
from .expressions import DeterministicVector, MatrixExpr, Product, Trace
from .matrix_numbers import MatrixNumbers, plain
from .ncseries import LetterTable, NCSeries, Poly, SympyExpander, exponents, poly_to_sympy
from .onepoint import OnePoint
from .pencil import Pencil, check_linearizable, linearize
from .pencil_series import exact_side
from .quantities import df1
from .results import Equivalence, Evidence
from .rules import COVARIANCE_MAP, DYSON_EQUATION, ELIMINATE, LINEARIZE, RIDGE_FORM, SCALARIZE
from .traces import mtr

__all__ = [
    "PencilEquivalent",
    "PencilValue",
    "PencilSeriesCheck",
    "derive_pencil",
    "match_pencil",
    "jacobian_of",
]


# ---------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PencilValue:
    """Numbers of a :class:`PencilEquivalent`: the unknowns, and the equivalent (a matrix, or a
    scalar for a trace)."""

    unknowns: tuple[tuple[sp.Symbol, complex | float], ...]
    value: Any = field(repr=False)
    diagonal: bool = False

    @property
    def matrix(self) -> np.ndarray:
        """The equivalent as a dense matrix."""
        if np.ndim(self.value) == 0:
            raise InvalidArgument("this equivalent is a scalar (a trace); use .value")
        return np.diag(self.value) if self.diagonal else self.value

    def trace(self, test: Any = None) -> complex | float:
        """``tr(test @ equivalent)`` (``tr = Tr / n``; ``test`` defaults to the identity)."""
        if np.ndim(self.value) == 0:
            raise InvalidArgument("this equivalent is a scalar (a trace); use .value")
        t = None if test is None else np.asarray(test)
        if self.diagonal:  # the eigenvalues of the equivalent: O(D), no dense matrix
            d = np.asarray(self.value)
            weights = 1.0 if t is None else (t if t.ndim == 1 else np.diag(t))
            return plain(complex(np.mean(weights * d)))
        m = self.value
        if t is None:
            return plain(complex(np.trace(m) / m.shape[0]))
        t = np.diag(t) if t.ndim == 1 else t
        return plain(complex(np.einsum("ij,ji->", t, m) / m.shape[0]))

    def __getitem__(self, symbol: Any) -> complex | float:
        for s, v in self.unknowns:
            if s == symbol or str(s) == str(symbol):
                return v
        raise InvalidArgument(f"no unknown {symbol}; known: {[str(s) for s, _ in self.unknowns]}")


@dataclass(frozen=True, slots=True)
class PencilSeriesCheck(Evidence):
    """Evidence of :meth:`PencilEquivalent.check_series`: for each exponent ``e`` of
    ``1/lam`` (one entry per spectral variable), the coefficient from the equivalent and from
    the planar pairings of the original expression."""

    order: int
    coefficients: tuple[tuple[tuple[int, ...], sp.Expr, sp.Expr], ...]
    failures: tuple[tuple[int, ...], ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        if self.passed:
            return (
                f"pencil series check passed: all {len(self.coefficients)} coefficients of total degree "
                f"<= {self.order} in 1/lam agree with the planar pairings"
            )
        e = self.failures[0]
        eqv, dia = next((a, b) for k, a, b in self.coefficients if k == e)
        return (
            f"pencil series check FAILED at {len(self.failures)} coefficients; first 1/lam^{e}:\n"
            f"  equivalent: {eqv}\n  pairings:   {dia}\n  difference: {sp.expand(eqv - dia)}"
        )


@dataclass(frozen=True, slots=True)
class PencilEquivalent(Equivalence):
    r"""An equivalent from the matrix Dyson equation of a linear pencil.

    Attributes
    ----------
    random : MatrixExpr or Trace
        The expression derived.
    deterministic : sympy.Expr
        Its equivalent: a matrix expression (or a scalar for a trace) in the deterministic
        matrices, the spectral variables and the unknowns ``g_i``.
    fixed_points : tuple of FixedPoint
        ``g_i = tr(...)``, the closed system of the unknowns (implicit).
    derivation : Derivation
        ``linearize``, ``covariance_map``, ``dyson_equation``, ``scalarize``, ``eliminate``.
    lams : tuple of sympy.Expr
        The spectral variables (one per distinct resolvent ridge).
    pencil : Pencil
        The linear pencil.
    """

    random: Any
    deterministic: sp.Expr
    fixed_points: tuple[FixedPoint, ...]
    derivation: tuple[Step, ...]
    lams: tuple[sp.Expr, ...]
    pencil: Pencil = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "derivation", Derivation(self.derivation))

    @property
    def lam(self) -> sp.Expr:
        return self.lams[0]

    @property
    def unknowns(self) -> tuple[sp.Symbol, ...]:
        return tuple(fp.symbol for fp in self.fixed_points)

    @property
    def is_scalar(self) -> bool:
        return not getattr(self.deterministic, "is_Matrix", False)

    # -- witnesses ---------------------------------------------------------------------
    def check_series(self, order: int = 6) -> PencilSeriesCheck:
        """The exact witness to total degree ``order`` in the ``1/lam`` variables: the series
        of ``tr(T .)`` of the equivalent (``T`` a non-commuting test letter; the value itself
        for a trace) against the planar pairings of the Gaussian letters of the expression."""
        return pencil_series_check(self, order)

    # -- numbers -----------------------------------------------------------------------
    def evaluate(self, values: Mapping[Any, Any], /, *args: Any, **options: Any) -> PencilValue:
        """Solve the unknowns on the physical branch and evaluate the equivalent.

        ``values`` maps the deterministic matrices (objects or names) to spectra (1-D, all of
        them: commuting, ``O(D)``) or matrices (dense), and the spectral variables, sizes and
        scalars (objects or names) to numbers. Real ``lam > 0`` and complex ``lam``; the branch
        is the one connected to ``lam -> infinity``.
        """
        return evaluate_pencil(self, values)


# ---------------------------------------------------------------------------
# derivation
# ---------------------------------------------------------------------------


def match_pencil(expr: Any, context: Context) -> Any:
    """The general strategy takes every expression the pencil can represent."""
    if not isinstance(expr, (MatrixExpr, Trace)):
        return None
    check_linearizable(expr)
    return expr


def derive_pencil(expr: Any, context: Context) -> Steps:
    """The derivation of ``expr`` by its pencil (see the module doc)."""
    pencil = linearize(expr)
    yield Step(
        LINEARIZE,
        _to_sympy(expr),
        sp.BlockMatrix(pencil.matrix()),
        f"{len(pencil.dims)} blocks of sizes {pencil.dims}",
    )
    eta = covariance_map(pencil)
    keys = sorted({t.key for t in eta}, key=lambda k: (k[0], k[1], str(k[2])))
    prefix = _fresh_prefix(expr, len(keys))
    unknowns = {k: sp.Symbol(f"{prefix}_{i + 1}") for i, k in enumerate(keys)}
    g_blocks = {(c, d): sp.MatrixSymbol(f"G_{c}{d}", pencil.dims[c], pencil.dims[d]) for c, d, _ in keys}
    eta_display = _eta_display(pencil, eta, g_blocks)
    yield Step(
        COVARIANCE_MAP, sp.Symbol("eta(G)"), eta_display, f"{len(eta)} planar pairings of the Gaussian terms"
    )
    l0 = deterministic_part(pencil)
    k = len(pencil.dims)
    yield Step(
        DYSON_EQUATION,
        sp.Symbol("E[L^-1]"),
        sp.Symbol("(L_0 - eta(G))^-1"),
        "G = (L_0 - eta(G))^-1, eta as above",
    )
    inverse = block_inverse(dyson_matrix(pencil, l0, eta, unknowns), range(k))
    closures = {
        unknowns[key]: _factor_terms(
            trace_of(canonical(sp.MatMul(inverse[(key[0], key[1])], key[2])), pencil.dims[key[0]])
        )
        if (key[0], key[1]) in inverse
        else sp.S.Zero
        for key in keys
    }
    wanted = _read_out(pencil, inverse, expr)
    yield Step(
        SCALARIZE,
        sp.Tuple(*[sp.Symbol(f"tr(G_{c}{d} {m})") for c, d, m in keys]),
        sp.Tuple(*closures.values()),
        "the traces that eta needs are the unknowns g_i",
        sp.Tuple(*[sp.Eq(s, c) for s, c in closures.items()]),
    )
    closures, wanted, eliminated = _eliminate(closures, wanted)
    if eliminated:
        yield Step(
            ELIMINATE,
            sp.Tuple(*eliminated),
            sp.Tuple(*[sp.Symbol(str(s)) for s in closures]),
            "explicit unknowns substituted: " + ", ".join(str(s) for s in eliminated),
            sp.Tuple(*[sp.Eq(s, c) for s, c in closures.items()]),
        )
    fixed = tuple(
        FixedPoint(s, sp.Eq(s, c), tuple(sorted((c.free_symbols & set(closures)) - {s}, key=str)))
        for s, c in closures.items()
    )
    result = PencilEquivalent(
        random=expr,
        deterministic=wanted,
        fixed_points=fixed,  # one joint system (solved together), not a chain
        derivation=(),
        lams=pencil.lams,
        pencil=pencil,
    )
    ridge = yield from _ridge_form(result)
    return ridge if ridge is not None else result


def _factor_terms(e: sp.Expr) -> sp.Expr:
    """``sympy.factor_terms`` on the scalar structure; sympy's descends into the matrix sums
    inside ``mtr`` and fails on some (a ``MatAdd`` rebuilt from scalar parts): then unchanged."""
    try:
        return sp.factor_terms(e)
    except TypeError:
        return e


def _fresh_prefix(expr: Any, count: int) -> str:
    """The letter of the unknowns: ``g`` unless the expression already has a symbol ``g_i``."""
    taken = {str(x) for x in _to_sympy(expr).free_symbols}
    for letter in ("g", "h", "u", "w", "gg"):
        if not any(f"{letter}_{i + 1}" in taken for i in range(count)):
            return letter
    raise InvalidArgument("the expression uses the symbols g_i, h_i, u_i, w_i and gg_i; rename one family")


def _to_sympy(expr: Any) -> sp.Basic:
    return expr.to_sympy()


def _eta_display(p: Pencil, eta: Sequence[Any], g_blocks: Mapping[tuple[int, int], sp.Expr]) -> sp.Basic:
    k = len(p.dims)
    rows = []
    for a in range(k):
        row = []
        for b in range(k):
            parts = [
                sp.MatMul(
                    t.coeff
                    * sp.Trace(canonical(sp.MatMul(g_blocks[(t.key[0], t.key[1])], t.key[2])))
                    / p.dims[t.key[0]],
                    t.matrix,
                )
                for t in eta
                if (t.row, t.col) == (a, b)
            ]
            row.append(sp.MatAdd(*parts) if parts else sp.ZeroMatrix(p.dims[a], p.dims[b]))
        rows.append(row)
    return sp.BlockMatrix(rows)


def _read_out(p: Pencil, inverse: Mapping[tuple[int, int], sp.Expr], expr: Any) -> sp.Expr:
    """``scale * sum U_i G_ij V_j`` (a trace for a trace expression)."""
    gauss = p.gaussian_symbols()
    parts = []
    for i, ui in p.out_left.items():
        for j, vj in p.out_right.items():
            block = inverse.get((i, j))
            if block is None:
                continue
            u = sp.MatAdd(*[m.to_sympy(gauss) for m in ui]) if len(ui) > 1 else ui[0].to_sympy(gauss)
            v = sp.MatAdd(*[m.to_sympy(gauss) for m in vj]) if len(vj) > 1 else vj[0].to_sympy(gauss)
            parts.append(canonical(sp.MatMul(u, block, v)))
    if isinstance(expr, Trace):
        n = expr.arg.shape[0]
        total = canonical(sp.MatAdd(*parts)) if len(parts) > 1 else parts[0]
        return sp.factor_terms(trace_of(total, n))
    if not parts:
        return sp.ZeroMatrix(*expr.shape)
    return canonical(sp.MatAdd(*parts)) if len(parts) > 1 else parts[0]


def _substitute(e: sp.Expr, rep: Mapping[sp.Symbol, sp.Expr]) -> sp.Expr:
    return canonical(e.xreplace(rep)) if getattr(e, "is_Matrix", False) else _factor_terms(e.xreplace(rep))


def _eliminate(
    closures: dict[sp.Symbol, sp.Expr], wanted: sp.Expr
) -> tuple[dict[sp.Symbol, sp.Expr], sp.Expr, list[sp.Symbol]]:
    """Substitute the unknowns whose closure has no trace atom left (explicit ones)."""
    eliminated: list[sp.Symbol] = []
    changed = True
    while changed:
        changed = False
        for s, c in list(closures.items()):
            if c.atoms(mtr) or s in c.free_symbols:
                continue
            rest = {k: v for k, v in closures.items() if k != s}
            closures = {k: _substitute(v, {s: c}) for k, v in rest.items()}
            wanted = _substitute(wanted, {s: c})
            eliminated.append(s)
            changed = True
            break
    return closures, wanted, eliminated


# ---------------------------------------------------------------------------
# the renormalized ridge when one matrix is left
# ---------------------------------------------------------------------------


def _ridge_form(result: PencilEquivalent) -> Steps:
    """``lam * (lam I + s(g) M)^-1`` with one implicit unknown ``g = c tr(M (lam I + s M)^-1)``
    becomes ``kappa (kappa + M)^-1`` with ``kappa = lam / s`` and ``g = (c / s) df1(M, kappa)``,
    solved for ``s`` as a function of ``df1``: an ordinary one-point equivalent."""
    if result.is_scalar or len(result.lams) != 1 or len(result.fixed_points) != 1:
        return None
    lam = result.lams[0]
    body = result.deterministic
    coeff, inv = _scaled_inverse(body)
    if inv is None:
        return None
    parts = _lam_plus(inv.arg, lam)
    if parts is None:
        return None
    s_expr, m = parts
    (fp,) = result.fixed_points
    g = fp.symbol
    closure = fp.rhs
    atoms = closure.atoms(mtr)
    if len(atoms) != 1:
        return None
    (atom,) = atoms
    c = sp.simplify(closure / atom)
    if (
        c.has(g)
        or c.has(lam)
        or canonical(atom.args[0]) not in (canonical(sp.MatMul(m, inv)), canonical(sp.MatMul(inv, m)))
    ):
        return None
    kappa = sp.Symbol("kappa")
    d = sp.Dummy("d")
    # g = c tr(M (lam + s M)^-1) = (c / s) df1(M, kappa)
    solved = sp.solve(sp.Eq(g * s_expr, c * d), g, dict=True)
    if len(solved) != 1:
        return None
    s_of_d = sp.simplify(s_expr.xreplace({g: solved[0][g]}))
    if s_of_d.has(g) or s_of_d.has(lam):
        return None
    rhs = sp.simplify(lam / s_of_d).xreplace({d: df1(m, kappa)})
    eq = sp.Eq(kappa, rhs)
    prefactor = sp.simplify(coeff / lam)
    deterministic = kappa * (m + kappa * sp.Identity(m.shape[0])).inverse()
    if prefactor != 1:
        deterministic = prefactor * deterministic
    yield Step(
        RIDGE_FORM,
        body,
        deterministic,
        f"kappa = lam / ({s_expr}) and {g} = ({c}) df1({m}, kappa) / ({s_expr})",
        eq,
    )
    return OnePoint(
        random=result.random,
        deterministic=deterministic,
        fixed_points=(FixedPoint(kappa, eq),),
        derivation=(),
        lam=lam,
        ridge=kappa,
        matrix=m,
        prefactor=prefactor,
    )


def _scaled_inverse(body: sp.Expr) -> tuple[sp.Expr, sp.Inverse | None]:
    if isinstance(body, sp.Inverse):
        return sp.S.One, body
    if isinstance(body, sp.MatMul):
        scalars = [f for f in body.args if not getattr(f, "is_Matrix", False)]
        mats = [f for f in body.args if getattr(f, "is_Matrix", False)]
        if len(mats) == 1 and isinstance(mats[0], sp.Inverse):
            return sp.Mul(*scalars), mats[0]
    return sp.S.One, None


def _lam_plus(arg: sp.Expr, lam: sp.Expr) -> tuple[sp.Expr, sp.Expr] | None:
    """``(s, M)`` for ``arg = lam I + s M`` with one deterministic matrix ``M``."""
    terms = arg.args if isinstance(arg, sp.MatAdd) else (arg,)
    rest = []
    found = False
    for t in terms:
        if canonical(t) == canonical(lam * sp.Identity(arg.shape[0])):
            found = True
        else:
            rest.append(t)
    if not found or len(rest) != 1:
        return None
    (t,) = rest
    scalars = [
        f for f in (t.args if isinstance(t, sp.MatMul) else (t,)) if not getattr(f, "is_Matrix", False)
    ]
    mats = [f for f in (t.args if isinstance(t, sp.MatMul) else (t,)) if getattr(f, "is_Matrix", False)]
    if len(mats) != 1 or mats[0].has(lam) or isinstance(mats[0], sp.Identity):
        return None
    return sp.Mul(*scalars), mats[0]


# ---------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------


def _split(values: Mapping[Any, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(values, Mapping):
        raise InvalidArgument(f"values must be a mapping, got {type(values).__name__}")
    mats, scalars = {}, {}
    for k, v in values.items():
        name = k if isinstance(k, str) else getattr(k, "name", None)
        if name is None:
            raise InvalidArgument(f"bad key {k!r} in values: use a matrix, its name, or a sympy Symbol")
        if np.ndim(v) == 0:
            scalars[name] = v
        else:
            mats[name] = v
    return mats, scalars


def evaluate_pencil(eq: PencilEquivalent, values: Mapping[Any, Any]) -> PencilValue:
    mats, scalars = _split(values)
    for lam in eq.lams:
        if str(lam) not in scalars:
            raise InvalidArgument(f"values has no number for {lam}; pass {{{lam}: number}}")
        z = complex(scalars[str(lam)])
        if z.imag == 0 and z.real <= 0:
            raise InvalidArgument(
                f"{lam} = {z.real}: the physical branch is defined for {lam} > 0 and complex {lam}; "
                "pass one of those"
            )
    unknowns = list(eq.unknowns)
    lam_syms = list(eq.lams)
    nums = MatrixNumbers(mats, scalars, dynamic=[*unknowns, *lam_syms])
    equations = [fp.rhs for fp in eq.fixed_points]
    jacobian = jacobian_of(eq)
    targets = {lam: complex(scalars[str(lam)]) for lam in lam_syms}
    scale = max([float(np.max(np.abs(a))) for a in nums.matrices.values()] + [1.0])

    point: dict[str, Any] = {}

    def residual(g: np.ndarray, shift: complex) -> np.ndarray:
        env = {s: complex(v) for s, v in zip(unknowns, g, strict=True)}
        env.update({lam: targets[lam] + shift for lam in lam_syms})
        nums.begin()
        point.update(g=g.copy(), shift=shift, env=env)
        return np.array([nums.scalar(e, env) for e in equations], dtype=complex) - g

    def jacobian_at(g: np.ndarray, shift: complex) -> np.ndarray:
        if point.get("shift") != shift or not np.array_equal(point.get("g"), g):
            residual(g, shift)  # the memo then holds this point's inverses
        return np.array([[nums.scalar(e, point["env"]) for e in row] for row in jacobian], dtype=complex)

    mean_lam = sum(targets.values()) / len(targets)
    g = np.zeros(0, dtype=complex)
    if unknowns:
        try:
            g = follow_unknowns(residual, jacobian_at, len(unknowns), mean_lam, scale)
        except ArithmeticError as err:
            raise InvalidArgument(str(err)) from None
    nums.begin()
    env = {s: complex(v) for s, v in zip(unknowns, g, strict=True)}
    env.update(targets)
    if eq.is_scalar:
        value: Any = plain(nums.scalar(eq.deterministic, env))
    elif eq.deterministic.shape == (1, 1):  # a quadratic form u.T E v
        value = plain(complex(np.asarray(nums.matrix(eq.deterministic, env)).reshape(-1)[0]))
    else:
        value = nums.matrix(eq.deterministic, env)
    return PencilValue(tuple((s, plain(v)) for s, v in zip(unknowns, g, strict=True)), value, nums.diagonal)


# ---------------------------------------------------------------------------
# the exact witness
# ---------------------------------------------------------------------------


def jacobian_of(eq: PencilEquivalent) -> list[list[sp.Expr]]:
    """``d g_i-equation / d g_j`` (the traces differentiate through the inverses)."""
    return _jacobian_cached(tuple(fp.rhs for fp in eq.fixed_points), eq.unknowns)


@functools.lru_cache(maxsize=64)
def _jacobian_cached(rhs: tuple[sp.Expr, ...], unknowns: tuple[sp.Symbol, ...]) -> list[list[sp.Expr]]:
    return [[sp.diff(e, s) for s in unknowns] for e in rhs]


def _contracted_matrix(eq: PencilEquivalent) -> tuple[Any, sp.Expr]:
    """For a quadratic form ``u.T E v``: the matrix ``E`` on both sides (its series with a test
    letter ``T`` checks ``tr(T E)`` for every ``T``, so ``u.T E v`` for every ``u, v``); else the
    result itself."""
    r, d = eq.random, eq.deterministic
    ends = isinstance(r, Product) and len(r.factors) > 2
    if not (ends and isinstance(r.factors[-1], DeterministicVector) and getattr(d, "shape", None) == (1, 1)):
        return r, d
    inner = Product.make(r.coeff, r.factors[1:-1])
    factors: list[sp.Expr] = []
    todo = [d]
    while todo:  # flatten nested products: c * (u.T ... v)
        f = todo.pop(0)
        if isinstance(f, sp.MatMul):
            todo = [*f.args, *todo]
        else:
            factors.append(f)
    coeff = sp.Mul(*[f for f in factors if not getattr(f, "is_Matrix", False)])
    body = [f for f in factors if getattr(f, "is_Matrix", False)][1:-1]
    matrix = body[0] if len(body) == 1 else sp.MatMul(*body)
    return inner, matrix if coeff == 1 else sp.MatMul(coeff, matrix)


def pencil_series_check(eq: PencilEquivalent, order: int) -> PencilSeriesCheck:
    """Both sides of the series (see :meth:`PencilEquivalent.check_series`)."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise InvalidArgument(f"order must be an integer >= 1, got {order!r}")
    random, deterministic = _contracted_matrix(eq)
    letters = LetterTable()
    variables = {lam: i for i, lam in enumerate(eq.lams)}
    exact, test = exact_side(random, letters, variables, order)
    nvars, work = len(variables), order + 2
    expander = SympyExpander(letters, variables, work)
    series = {s: NCSeries.scalar(nvars, work, Poly()) for s in eq.unknowns}
    # each pass fixes one more order of one unknown at least (along the chain of their couplings)
    for _ in range((len(series) + 1) * (work + 1)):
        expander.unknowns, expander.cache = dict(series), {}
        new = {fp.symbol: expander.scalar(fp.rhs) for fp in eq.fixed_points}
        if all(new[s].terms == series[s].terms for s in series):
            break
        series = new
    else:
        raise InvalidArgument(
            "the unknowns' series did not converge; the fixed point is not a contraction at lam = infinity"
        )
    expander.unknowns, expander.cache = dict(series), {}
    if eq.is_scalar:
        value = expander.scalar(deterministic)
    else:
        assert test is not None
        t = NCSeries.letter(nvars, work, test, letters)
        value = (t @ expander.matrix(deterministic)).trace(letters, normalized=True)
    got, want = value.coefficients(), exact.coefficients()
    rows, failures = [], []
    for e in exponents(nvars, order):
        a = poly_to_sympy(got[e], letters) if e in got else sp.S.Zero
        b = poly_to_sympy(want[e], letters) if e in want else sp.S.Zero
        rows.append((e, sp.expand(a), sp.expand(b)))
        if sp.expand(a - b) != 0:
            failures.append(e)
    return PencilSeriesCheck(order, tuple(rows), tuple(failures))
