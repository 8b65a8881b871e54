r"""Linear pencils: any rational expression of Gaussian and deterministic matrices as one block
of the inverse of a matrix that is affine in the Gaussians (Helton, Mai and Speicher, J. Funct.
Anal. 274 (2018); Mingo and Speicher (2017), ch. 9-10).

A matrix ``A`` is linearized as ``A = c + u Q^{-1} v`` with ``c`` deterministic, ``u`` and
``Q`` affine in the Gaussian letters and ``v`` deterministic (:class:`Lin`). The building
blocks, each exact (Schur complement,
:math:`[[a, b], [c, S]]^{-1}_{11} = (a - bS^{-1}c)^{-1}`):

* a Gaussian leaf ``Z`` (``n x m``): ``u = [Z]``, ``Q = [I_m]``, ``v = [I_m]``;
* a sum: the blocks side by side; a product ``A_1 A_2``:
  ``u = [u_1, 0]``, ``Q = [[Q_1, -v_1 u_2], [0, Q_2]]``, ``v = [0; v_2]``;
* a resolvent :math:`(\lambda+A)^{-1}`: ``U = [I, 0]``,
  ``Q = [[lam I + c, u], [-v, Q_A]]``, ``V = [I; 0]``;

so products of resolvents with matrices in between are block upper-triangular pencils.
A block whose diagonal entry is the identity and whose row or column is deterministic is then
eliminated by its Schur complement (it cannot change the wanted blocks), which prunes the
pencil to the familiar forms, e.g. for the sample covariance
``[[lam I_D, Sigma^(1/2) X^T / P], [-X Sigma^(1/2), I_P]]``.

Free factors enter as Gaussian blocks: a Wishart factor ``B`` of ratio ``q`` on ``n`` is
``Z^T Z / m`` with ``Z`` of shape ``m x n``, ``m = n / q``; a semicircular factor is a Wigner
block (its own transpose). Other laws are refused by name.

>>> import sympy as sp
>>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
>>> lam = sp.Symbol("lam", positive=True); D, P = sp.symbols("D P", positive=True)
>>> S = Deterministic("Sigma", D); X = Gaussian("X", (P, D))
>>> pencil = linearize(lam * resolvent(S.sqrt() @ X.T @ X @ S.sqrt() / P, lam))
>>> pencil.dims
(D, P)
>>> print(pencil)
[[lam*I, 1/P*(Sigma**(1/2)*X.T)], [-(X*Sigma**(1/2)), I]]  -> lam block (0, 0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import sympy as sp

from ..errors import InvalidArgument, InvalidWord
from .expressions import (
    Deterministic,
    DeterministicVector,
    FreeMatrix,
    Gaussian,
    Identity,
    MatrixExpr,
    Product,
    Rectangular,
    Resolvent,
    Sqrt,
    Sum,
    Trace,
    Transpose,
)
from .laws import Semicircle, Wishart

__all__ = ["Monomial", "Pencil", "Lin", "linearize", "linearize_matrix", "MAX_BLOCKS"]

#: The largest pencil built (blocks); larger expressions are refused with this limit named.
MAX_BLOCKS = 24


# ---------------------------------------------------------------------------
# entries: sums of monomials coeff * (deterministic) * [Gaussian letter] * (deterministic)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Monomial:
    """``coeff * left @ G @ right`` with ``G`` a Gaussian letter (or none: a deterministic term).

    ``left`` and ``right`` are sympy matrix expressions of deterministic matrices (``None`` for
    the identity); ``gaussian`` names the letter, ``transposed`` says ``G = Z^T``; ``shape`` is
    the monomial's shape (needed when both sides are the identity).
    """

    coeff: sp.Expr
    shape: tuple[sp.Expr, sp.Expr]
    left: sp.Expr | None = None
    gaussian: str | None = None
    transposed: bool = False
    right: sp.Expr | None = None

    @property
    def random(self) -> bool:
        return self.gaussian is not None

    def scaled(self, c: sp.Expr) -> Monomial:
        return replace(self, coeff=self.coeff * c)

    def left_times(self, m: sp.Expr) -> Monomial:
        """``m @ self`` for a deterministic ``m``."""
        if self.random:
            return replace(self, left=_mul(m, self.left), shape=(m.shape[0], self.shape[1]))
        return replace(
            self,
            left=_mul(m, self.left if self.left is not None else None),
            shape=(m.shape[0], self.shape[1]),
        )

    def right_times(self, m: sp.Expr) -> Monomial:
        """``self @ m`` for a deterministic ``m``."""
        if self.random:
            return replace(self, right=_mul(self.right, m), shape=(self.shape[0], m.shape[1]))
        return replace(self, left=_mul(self.left, m), shape=(self.shape[0], m.shape[1]))

    def to_sympy(self, gaussians: Mapping[str, sp.MatrixSymbol]) -> sp.Expr:
        mats = [x for x in (self.left,) if x is not None]
        if self.random:
            z = gaussians[self.gaussian]
            mats.append(z.T if self.transposed else z)
            if self.right is not None:
                mats.append(self.right)
        if not mats:
            out: sp.Expr = sp.Identity(self.shape[0])
        else:
            out = mats[0] if len(mats) == 1 else sp.MatMul(*mats)
        return out if self.coeff == 1 else sp.MatMul(self.coeff, out)


def _mul(a: sp.Expr | None, b: sp.Expr | None) -> sp.Expr | None:
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, sp.Identity):
        return b
    if isinstance(b, sp.Identity):
        return a
    return _merge_halves(sp.MatMul(a, b))


def _merge_halves(m: sp.Expr) -> sp.Expr:
    """``A^(1/2) A^(1/2) = A`` in a product (adjacent only)."""
    if not isinstance(m, sp.MatMul):
        return m
    coeff, mats = m.as_coeff_matrices()
    out: list[sp.Expr] = []
    for f in mats:
        if out and isinstance(f, sp.MatPow) and f.exp == sp.Rational(1, 2) and out[-1] == f:
            out[-1] = f.base
        elif isinstance(f, sp.MatMul):
            out.extend(f.args)
        else:
            out.append(f)
    body = out[0] if len(out) == 1 else sp.MatMul(*out)
    return body if coeff == 1 else sp.MatMul(coeff, body)


Entry = tuple[Monomial, ...]


def _entry_to_sympy(
    entry: Entry, shape: tuple[sp.Expr, sp.Expr], gaussians: Mapping[str, sp.MatrixSymbol]
) -> sp.Expr:
    if not entry:
        return sp.ZeroMatrix(*shape)
    parts = [m.to_sympy(gaussians) for m in entry]
    return parts[0] if len(parts) == 1 else sp.MatAdd(*parts)


def _scale(entry: Entry, c: sp.Expr) -> Entry:
    return tuple(m.scaled(c) for m in entry)


def _left(m: sp.Expr, entry: Entry) -> Entry:
    return tuple(x.left_times(m) for x in entry)


def _right(entry: Entry, m: sp.Expr) -> Entry:
    return tuple(x.right_times(m) for x in entry)


def _const(entry: Entry) -> bool:
    return not any(m.random for m in entry)


def _product(a: Entry, b: Entry) -> Entry:
    """``a @ b`` for ``a`` or ``b`` deterministic (the result stays affine)."""
    out: list[Monomial] = []
    for x in a:
        for y in b:
            if x.random and y.random:  # pragma: no cover - the constructions avoid it
                raise InvalidWord("a pencil entry became quadratic in the Gaussian letters")
            if not x.random:
                left = x.left if x.left is not None else None
                m = y.left_times(left) if left is not None else y
                m = replace(m, shape=(x.shape[0], y.shape[1]))
                out.append(m.scaled(x.coeff))
            else:
                right = y.left if y.left is not None else None
                m = x.right_times(right) if right is not None else x
                m = replace(m, shape=(x.shape[0], y.shape[1]))
                out.append(m.scaled(y.coeff))
    return tuple(out)


# ---------------------------------------------------------------------------
# linearized expressions A = c + u Q^-1 v
# ---------------------------------------------------------------------------


@dataclass
class Lin:
    """``c + u Q^{-1} v``: ``dims`` the sizes of the blocks of ``Q``; ``u`` a row of entries
    (``rows x dims[j]``), ``v`` a column (deterministic, ``dims[i] x cols``), ``Q`` by block."""

    rows: sp.Expr
    cols: sp.Expr
    c: Entry = ()
    dims: list[sp.Expr] = field(default_factory=list)
    u: dict[int, Entry] = field(default_factory=dict)
    q: dict[tuple[int, int], Entry] = field(default_factory=dict)
    v: dict[int, Entry] = field(default_factory=dict)

    @staticmethod
    def constant(m: sp.Expr) -> Lin:
        return Lin(m.shape[0], m.shape[1], (Monomial(sp.S.One, m.shape, m),))

    def shifted(self, k: int) -> tuple[dict[int, Entry], dict[tuple[int, int], Entry], dict[int, Entry]]:
        """``u``, ``Q``, ``v`` with block indices shifted by ``k``."""
        return (
            {j + k: e for j, e in self.u.items()},
            {(i + k, j + k): e for (i, j), e in self.q.items()},
            {i + k: e for i, e in self.v.items()},
        )

    def absorbed(self) -> Lin:
        """The same matrix without a constant part: ``c`` becomes a block ``[u, c] diag(Q, I)^-1 [v; I]``."""
        if not self.c:
            return self
        k = len(self.dims)
        u, q, v = self.shifted(0)
        u[k] = self.c
        q[(k, k)] = (Monomial(sp.S.One, (self.cols, self.cols), None),)
        v[k] = (Monomial(sp.S.One, (self.cols, self.cols), None),)
        return Lin(self.rows, self.cols, (), [*self.dims, self.cols], u, q, v)


def _add(a: Lin, b: Lin) -> Lin:
    k = len(a.dims)
    ub, qb, vb = b.shifted(k)
    return Lin(a.rows, a.cols, a.c + b.c, [*a.dims, *b.dims], {**a.u, **ub}, {**a.q, **qb}, {**a.v, **vb})


def _times(a: Lin, b: Lin) -> Lin:
    """``a @ b`` (deterministic sides multiply into ``u`` / ``v``; else the product rule)."""
    if not a.dims:  # a = c_a deterministic
        (m,) = a.c if len(a.c) == 1 else (None,)
        if m is None:
            return _times(a.absorbed(), b) if a.c else Lin(a.rows, b.cols)
        cm = m.to_sympy({}) if m.left is not None else m.coeff * sp.Identity(m.shape[0])
        return Lin(
            a.rows,
            b.cols,
            _product(a.c, b.c),
            list(b.dims),
            {j: _left(cm, e) for j, e in b.u.items()},
            dict(b.q),
            dict(b.v),
        )
    if not b.dims:
        (m,) = b.c if len(b.c) == 1 else (None,)
        if m is None:
            return _times(a, b.absorbed()) if b.c else Lin(a.rows, b.cols)
        cm = m.to_sympy({}) if m.left is not None else m.coeff * sp.Identity(m.shape[0])
        return Lin(
            a.rows,
            b.cols,
            _product(a.c, b.c),
            list(a.dims),
            dict(a.u),
            dict(a.q),
            {i: _right(e, cm) for i, e in a.v.items()},
        )
    a, b = a.absorbed(), b.absorbed()
    k = len(a.dims)
    ub, qb, vb = b.shifted(k)
    q = {**a.q, **qb}
    for i, vi in a.v.items():  # -v_a u_b: deterministic times affine
        for j, uj in ub.items():
            block = _scale(_product(vi, uj), sp.S.NegativeOne)
            if block:
                q[(i, j)] = q.get((i, j), ()) + block
    return Lin(a.rows, b.cols, (), [*a.dims, *b.dims], dict(a.u), q, vb)


def _gaussian_leaf(name: str, shape: tuple[sp.Expr, sp.Expr], transposed: bool) -> Lin:
    rows, cols = shape
    eye = (Monomial(sp.S.One, (cols, cols), None),)
    return Lin(
        rows,
        cols,
        (),
        [cols],
        {0: (Monomial(sp.S.One, shape, None, name, transposed, None),)},
        {(0, 0): eye},
        {0: eye},
    )


@dataclass
class _Context:
    """What linearization collects: the Gaussian letters (name -> shape, variance, Wigner flag)."""

    gaussians: dict[str, tuple[tuple[sp.Expr, sp.Expr], sp.Expr, bool]] = field(default_factory=dict)

    def add(self, name: str, shape: tuple[sp.Expr, sp.Expr], variance: sp.Expr, wigner: bool) -> None:
        old = self.gaussians.get(name)
        if old is not None and (
            sp.simplify(old[0][0] - shape[0]) != 0 or sp.simplify(old[0][1] - shape[1]) != 0
        ):
            raise InvalidWord(
                f"the Gaussian {name} is used with the shapes {old[0]} and {shape}; use one shape"
            )
        self.gaussians[name] = (shape, variance, wigner)


def _det_sympy(leaf: MatrixExpr) -> sp.Expr:
    return leaf.to_sympy()


def linearize_matrix(expr: MatrixExpr, ctx: _Context) -> Lin:
    """The linearization of a matrix expression (see the module doc)."""
    if isinstance(expr, (Deterministic, Sqrt, Rectangular, Identity, DeterministicVector)):
        return Lin.constant(_det_sympy(expr))
    if isinstance(expr, Transpose) and not isinstance(expr.arg, Gaussian):
        return Lin.constant(_det_sympy(expr))
    if isinstance(expr, Gaussian) or (isinstance(expr, Transpose) and isinstance(expr.arg, Gaussian)):
        g = expr if isinstance(expr, Gaussian) else expr.arg
        ctx.add(g.name, g.dims, sp.S.One, False)
        return _gaussian_leaf(g.name, expr.shape, isinstance(expr, Transpose))
    if isinstance(expr, FreeMatrix):
        return linearize_matrix(_free_as_gaussian(expr, ctx), ctx)
    if isinstance(expr, _WignerLeaf):
        return _gaussian_leaf(expr.name, expr.shape, False)
    if isinstance(expr, Product):
        parts = [linearize_matrix(f, ctx) for f in expr.factors]
        out = parts[0]
        for p in parts[1:]:
            out = _times(out, p)
        if expr.coeff != 1:
            out = Lin(
                out.rows,
                out.cols,
                _scale(out.c, expr.coeff),
                out.dims,
                {j: _scale(e, expr.coeff) for j, e in out.u.items()},
                out.q,
                out.v,
            )
        return out
    if isinstance(expr, Sum):
        parts = [linearize_matrix(t, ctx) for t in expr.terms]
        out = parts[0]
        for p in parts[1:]:
            out = _add(out, p)
        return out
    if isinstance(expr, Resolvent):
        return _resolvent(linearize_matrix(expr.arg, ctx), expr.lam)
    raise InvalidArgument(
        f"the pencil engine takes sums, products, scalars, transposes and resolvents of Gaussian, "
        f"deterministic and free (Wishart, semicircle) matrices; {expr!r} is none of these"
    )


def _resolvent(a: Lin, lam: sp.Expr) -> Lin:
    """``(lam + a)^-1 = U P^-1 V`` with ``P = [[lam I + c, u], [-v, Q]]``, ``U = [I, 0]``, ``V = [I; 0]``."""
    n = a.rows
    eye = Monomial(sp.S.One, (n, n), None)
    corner = (eye.scaled(lam), *a.c)
    u, q, v = a.shifted(1)
    q = dict(q)
    q[(0, 0)] = corner
    for j, e in u.items():
        q[(0, j)] = e
    for i, e in v.items():
        q[(i, 0)] = _scale(e, sp.S.NegativeOne)
    return Lin(n, n, (), [n, *a.dims], {0: (eye,)}, q, {0: (eye,)})


def _free_as_gaussian(b: FreeMatrix, ctx: _Context) -> MatrixExpr:
    """A Wishart factor as ``Z^T Z / m``; a semicircular one as a Wigner letter."""
    if isinstance(b.law, Wishart):
        m = sp.simplify(b.dim / b.law.ratio)
        z = Gaussian(f"Z_{b.name}", (m, b.dim))
        return Product.make(1 / m, (Transpose(z), z))
    if isinstance(b.law, Semicircle):
        ctx.add(b.name, (b.dim, b.dim), b.law.variance / b.dim, True)
        return _WignerLeaf(b.name, b.dim)
    raise InvalidArgument(
        f"the free factor {b.name} has the law {b.law}; inside a pencil only Wishart factors (as Gram "
        "pairs of Gaussians) and semicircular ones (Wigner blocks) are supported. A free factor "
        "with another law needs operator-valued subordination (Belinschi-Mai-Speicher), which the "
        "pencil engine does not do; the shape engine (method='shapes') handles it in products and "
        "additive layers"
    )


@dataclass(frozen=True, slots=True)
class _WignerLeaf(MatrixExpr):
    """A Wigner block (its own transpose) inside a pencil."""

    name: str
    dim: sp.Expr

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (self.dim, self.dim)

    def to_sympy(self) -> sp.Expr:
        return sp.MatrixSymbol(self.name, self.dim, self.dim)


# ---------------------------------------------------------------------------
# the pencil of a whole functional
# ---------------------------------------------------------------------------


@dataclass
class Pencil:
    """A pencil ``L`` (``dims`` its block sizes; ``blocks`` its entries) and how the wanted
    quantity reads off ``L^{-1}``: ``sum_(i,j) U_i [L^-1]_ij V_j`` (``out_left`` the row ``U``,
    ``out_right`` the column ``V``, deterministic), times ``scale``; ``kind`` is ``"matrix"``,
    ``"trace"`` (``tr(T .)`` with ``test``) or ``"quadratic"``.

    ``gaussians`` lists the Gaussian letters: name -> (shape, variance of an entry, Wigner).
    """

    dims: tuple[sp.Expr, ...]
    blocks: dict[tuple[int, int], Entry]
    out_left: dict[int, Entry]
    out_right: dict[int, Entry]
    gaussians: dict[str, tuple[tuple[sp.Expr, sp.Expr], sp.Expr, bool]]
    lams: tuple[sp.Expr, ...]
    scale: sp.Expr = sp.S.One
    random: Any = None

    def gaussian_symbols(self) -> dict[str, sp.MatrixSymbol]:
        return {name: sp.MatrixSymbol(name, *shape) for name, (shape, _, _) in self.gaussians.items()}

    def entry(self, i: int, j: int) -> sp.Expr:
        return _entry_to_sympy(
            self.blocks.get((i, j), ()), (self.dims[i], self.dims[j]), self.gaussian_symbols()
        )

    def matrix(self) -> list[list[sp.Expr]]:
        k = len(self.dims)
        return [[self.entry(i, j) for j in range(k)] for i in range(k)]

    def __str__(self) -> str:
        rows = ", ".join(
            "[" + ", ".join(_short(self.entry(i, j)) for j in range(len(self.dims))) + "]"
            for i in range(len(self.dims))
        )
        gs = self.gaussian_symbols()

        def side(entry: Entry) -> str:
            if len(entry) == 1 and entry[0].left is None and not entry[0].random:
                return "" if entry[0].coeff == 1 else f"{entry[0].coeff} "
            return "(" + " + ".join(_short(m.to_sympy(gs)) for m in entry) + ") "

        reads = " + ".join(
            f"{side(u)}block ({i}, {j}){'' if side(v) == '' else ' ' + side(v).strip()}"
            for i, u in self.out_left.items()
            for j, v in self.out_right.items()
        )
        tail = f" times {self.scale}" if self.scale != 1 else ""
        return f"[{rows}]  -> {reads}{tail}"

    def _latex(self, printer: Any) -> str:
        k = len(self.dims)
        body = r" \\ ".join(" & ".join(printer._print(self.entry(i, j)) for j in range(k)) for i in range(k))
        return r"\begin{pmatrix}" + body + r"\end{pmatrix}"

    def _repr_latex_(self) -> str:
        from .printing import latex

        return "$L = " + latex(self) + "$"


def _short(e: sp.Expr) -> str:
    if isinstance(e, sp.ZeroMatrix):
        return "0"
    if isinstance(e, sp.Identity):
        return "I"
    s = str(e)
    return s.replace(f"I*{''}", "I")


def linearize(expr: Any) -> Pencil:
    """The pencil of ``expr``: a matrix expression (a resolvent, a product of resolvents with
    matrices in between, any rational expression), ``trace(T @ ...)``, or a quadratic form
    ``u.T @ ... @ v``; pruned (identity blocks with a deterministic row or column removed)."""
    ctx = _Context()
    if isinstance(expr, Trace):
        lin = linearize_matrix(expr.arg, ctx).absorbed()
        scale = 1 / expr.arg.shape[0]
        kind_random = expr
    else:
        if not isinstance(expr, MatrixExpr):
            raise InvalidArgument(f"linearize needs a matrix expression or a trace, got {expr!r}")
        lin = linearize_matrix(expr, ctx).absorbed()
        scale = sp.S.One
        kind_random = expr
    if not lin.dims:  # pragma: no cover - absorbed() always leaves a block
        raise InvalidArgument(f"{expr} has nothing to linearize")
    lams = _lams(expr)
    pencil = Pencil(
        dims=tuple(lin.dims),
        blocks={k: e for k, e in lin.q.items() if e},
        out_left={j: e for j, e in lin.u.items() if e},
        out_right={i: e for i, e in lin.v.items() if e},
        gaussians=dict(ctx.gaussians),
        lams=lams,
        scale=scale,
        random=kind_random,
    )
    if any(not _const(e) for e in pencil.out_left.values()):
        raise InvalidArgument(
            f"{expr} is random outside every resolvent (a Gaussian factor at its ends); the pencil "
            "engine derives resolvents and functionals of them: put the expression inside a resolvent "
            "or a trace of resolvents"
        )
    pencil = prune(pencil)
    if len(pencil.dims) > MAX_BLOCKS:
        raise InvalidArgument(
            f"the pencil of {expr} has {len(pencil.dims)} blocks, more than the limit {MAX_BLOCKS}; "
            "split the expression or derive its parts separately"
        )
    return pencil


def _lams(expr: Any) -> tuple[sp.Expr, ...]:
    out: list[sp.Expr] = []

    def walk(e: Any) -> None:
        if isinstance(e, Resolvent):
            if e.lam not in out:
                out.append(e.lam)
            walk(e.arg)
        elif isinstance(e, Product):
            for f in e.factors:
                walk(f)
        elif isinstance(e, Sum):
            for t in e.terms:
                walk(t)
        elif isinstance(e, Trace):
            walk(e.arg)

    walk(expr)
    return tuple(out)


# ---------------------------------------------------------------------------
# pruning: Schur complements of trivial blocks
# ---------------------------------------------------------------------------


def _is_identity(entry: Entry) -> bool:
    return len(entry) == 1 and not entry[0].random and entry[0].left is None and entry[0].coeff == 1


def prune(p: Pencil) -> Pencil:
    """Eliminate blocks ``b`` with ``L_bb = I`` whose row or column (off ``b``) is deterministic and
    that the read-out does not use: ``L' = L_rest - L_(rest,b) L_(b,rest)``, exact for every other
    block of the inverse, and still affine because one factor is deterministic."""
    changed = True
    while changed:
        changed = False
        k = len(p.dims)
        for b in range(k):
            if b in p.out_left or b in p.out_right or not _is_identity(p.blocks.get((b, b), ())):
                continue
            row = {j: e for (i, j), e in p.blocks.items() if i == b and j != b}
            col = {i: e for (i, j), e in p.blocks.items() if j == b and i != b}
            if not (all(_const(e) for e in row.values()) or all(_const(e) for e in col.values())):
                continue
            blocks = {key: e for key, e in p.blocks.items() if b not in key}
            for i, ci in col.items():
                for j, rj in row.items():
                    extra = _scale(_product(ci, rj), sp.S.NegativeOne)
                    blocks[(i, j)] = _simplify_entry(blocks.get((i, j), ()) + extra)
            p = _renumber(replace(p, blocks={key: e for key, e in blocks.items() if e}), b)
            changed = True
            break
    return p


def _renumber(p: Pencil, removed: int) -> Pencil:
    def r(i: int) -> int:
        return i - 1 if i > removed else i

    dims = tuple(d for i, d in enumerate(p.dims) if i != removed)
    return replace(
        p,
        dims=dims,
        blocks={(r(i), r(j)): e for (i, j), e in p.blocks.items()},
        out_left={r(j): e for j, e in p.out_left.items()},
        out_right={r(i): e for i, e in p.out_right.items()},
    )


def _simplify_entry(entry: Entry) -> Entry:
    """Collect monomials with the same sides (``a X + b X = (a + b) X``), drop zeros."""
    out: dict[tuple[Any, ...], Monomial] = {}
    for m in entry:
        key = (m.left, m.gaussian, m.transposed, m.right, m.shape)
        if key in out:
            out[key] = replace(out[key], coeff=sp.simplify(out[key].coeff + m.coeff))
        else:
            out[key] = m
    return tuple(m for m in out.values() if m.coeff != 0)


def free_letters(expr: Any) -> list[FreeMatrix]:
    """The free matrices of an expression tree (to refuse the unsupported laws early)."""
    out = []
    if isinstance(expr, Trace):
        return free_letters(expr.arg)
    for leaf in expr.leaves():
        if isinstance(leaf, FreeMatrix):
            out.append(leaf)
    return out


def check_linearizable(expr: Any) -> None:
    """Raise a clear error when ``expr`` has a part the pencil cannot represent."""
    for b in free_letters(expr):
        if not isinstance(b.law, (Wishart, Semicircle)):
            _free_as_gaussian(b, _Context())


def dims_of(p: Pencil) -> Sequence[sp.Expr]:  # pragma: no cover - convenience
    return p.dims
