r"""Random-matrix expressions: immutable, shape-checked, printable as mathematics.

The building blocks of the one-point engine (:mod:`detequiv.derivations.onepoint`):
deterministic square matrices (covariances, test matrices), Gaussian matrices with iid
standard entries, free rotation-invariant factors given by a law, products (``@``),
sums, scalar multiples, transposes, the resolvent ``resolvent(X, lam)`` meaning
:math:`(X+\lambda I)^{-1}` and the normalized trace ``trace(X)``. Dimensions may be
sympy symbols. Every node is a frozen dataclass; printing goes through sympy's matrix
expressions (``to_sympy``), so ``str`` and ``_repr_latex_`` use sympy's printers.

>>> import sympy as sp
>>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
>>> D, P = sp.symbols("D P", positive=True)
>>> lam = sp.Symbol("lam", positive=True)
>>> Sigma = Deterministic("Sigma", D); X = Gaussian("X", (P, D))
>>> Sigma_hat = Sigma.sqrt() @ X.T @ X @ Sigma.sqrt() / P
>>> Sigma_hat.shape
(D, D)
>>> print(lam * resolvent(Sigma_hat, lam))
lam*(lam*I + 1/P*Sigma**(1/2)*X.T*X*Sigma**(1/2))**(-1)
>>> try:
...     Sigma @ X
... except de.errors.InvalidArgument as e:
...     print(e)
shape mismatch in Sigma @ X: (D, D) @ (P, D); the columns of the left factor must equal the rows of the right one
"""  # noqa: E501

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import sympy as sp

from ..errors import InvalidArgument
from .laws import Law

__all__ = [
    "MatrixExpr",
    "Deterministic",
    "DeterministicVector",
    "Sqrt",
    "Gaussian",
    "Rectangular",
    "FreeMatrix",
    "Identity",
    "Transpose",
    "Product",
    "Sum",
    "Resolvent",
    "Trace",
    "resolvent",
    "trace",
]


def _dim(value: Any, what: str) -> sp.Expr:
    """A dimension: a positive integer or a sympy expression not known to be <= 0."""
    if isinstance(value, bool):
        raise InvalidArgument(f"{what} must be a positive integer or a symbol, got {value!r}")
    try:
        expr = sp.sympify(value, strict=True)
    except (sp.SympifyError, TypeError):
        raise InvalidArgument(f"{what} must be a positive integer or a sympy symbol, got {value!r}") from None
    if expr.is_number:
        if not (expr.is_Integer and expr > 0):
            raise InvalidArgument(f"{what} must be a positive integer, got {expr}")
    elif expr.is_positive is False or expr.is_commutative is False:
        raise InvalidArgument(
            f"{what} = {expr} is not a valid dimension; use a positive integer or "
            "sp.Symbol('D', positive=True)"
        )
    return expr


def _shape(name: Any, dims: Any, kind: str, example: str) -> tuple[sp.Expr, sp.Expr]:
    """Validated ``(rows, cols)`` of a rectangular matrix called ``name``."""
    if not isinstance(name, str) or not name.isidentifier():
        raise InvalidArgument(f"matrix name {name!r} must be an identifier such as {example!r}")
    try:
        rows, cols = dims
    except (TypeError, ValueError):
        raise InvalidArgument(f"{kind} {name!r} needs a shape (rows, cols), got {dims!r}") from None
    return (_dim(rows, f"rows of {name}"), _dim(cols, f"columns of {name}"))


def _scalar(value: Any) -> sp.Expr:
    """A commutative sympy scalar, or InvalidArgument."""
    if isinstance(value, MatrixExpr):
        raise InvalidArgument(f"{value} is a matrix, not a scalar; combine matrices with @")
    try:
        expr = sp.sympify(value, strict=True)
    except (sp.SympifyError, TypeError):
        raise InvalidArgument(f"{value!r} is not a scalar (number or sympy expression)") from None
    if not isinstance(expr, sp.Expr) or expr.is_commutative is False or isinstance(expr, sp.MatrixExpr):
        raise InvalidArgument(f"{value!r} is not a commutative scalar")
    return expr


class MatrixExpr:
    """Base class of matrix expressions (frozen dataclasses).

    Operators: ``A @ B`` (product, shapes checked), ``A + B``, ``A - B``, ``-A``,
    ``c * A``, ``A * c``, ``A / c`` (sympy scalars), ``A.T``.
    """

    __slots__ = ()

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def is_square(self) -> bool:
        """Whether rows and columns are the same expression."""
        r, c = self.shape
        return bool(sp.simplify(r - c) == 0)

    @property
    def T(self) -> MatrixExpr:  # noqa: N802 - numpy spelling
        """The transpose (pushed down to the leaves; symmetric leaves are unchanged)."""
        return _transpose(self)

    def to_sympy(self) -> sp.Expr:  # pragma: no cover - abstract
        """The same expression as a sympy matrix expression (for printing)."""
        raise NotImplementedError

    def leaves(self) -> tuple[MatrixExpr, ...]:
        """The leaves (matrices) of the expression, in order of appearance."""
        return (self,)

    # -- operators ---------------------------------------------------------
    def __matmul__(self, other: Any) -> MatrixExpr:
        if not isinstance(other, MatrixExpr):
            raise InvalidArgument(
                f"cannot form {self} @ {other!r}: the right operand is not a matrix "
                "expression; use * or / for scalars"
            )
        if sp.simplify(self.shape[1] - other.shape[0]) != 0:
            raise InvalidArgument(
                f"shape mismatch in {self} @ {other}: {self.shape} @ {other.shape}; the "
                "columns of the left factor must equal the rows of the right one"
            )
        return Product.make(sp.S.One, (self, other))

    def __mul__(self, other: Any) -> MatrixExpr:
        if isinstance(other, MatrixExpr):
            raise InvalidArgument(f"use @ for the matrix product of {self} and {other}")
        return Product.make(_scalar(other), (self,))

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> MatrixExpr:
        c = _scalar(other)
        if c.is_zero:
            raise InvalidArgument(f"division of {self} by zero")
        return Product.make(1 / c, (self,))

    def __neg__(self) -> MatrixExpr:
        return Product.make(sp.S.NegativeOne, (self,))

    def __add__(self, other: Any) -> MatrixExpr:
        if not isinstance(other, MatrixExpr):
            raise InvalidArgument(
                f"cannot add {other!r} to the matrix {self}; write c * Identity(dim) for "
                "a multiple of the identity"
            )
        if any(sp.simplify(a - b) != 0 for a, b in zip(self.shape, other.shape, strict=True)):
            raise InvalidArgument(f"shape mismatch in {self} + {other}: {self.shape} + {other.shape}")
        return Sum.make((self, other))

    def __sub__(self, other: Any) -> MatrixExpr:
        return self + (-other)

    # -- printing ----------------------------------------------------------
    def __str__(self) -> str:
        return str(self.to_sympy())

    def _repr_latex_(self) -> str:
        return "$" + sp.latex(self.to_sympy()) + "$"

    def _latex(self, printer: Any = None) -> str:
        return sp.latex(self.to_sympy())


@dataclass(frozen=True, slots=True)
class Deterministic(MatrixExpr):
    """A deterministic ``dim x dim`` matrix (a covariance, a test matrix).

    Symmetric by default (``A.T`` is ``A``); ``symmetric=False`` declares a general
    matrix (a non-symmetric test matrix, a teacher-student coupling), whose transpose
    ``A.T`` is a letter of its own.

    >>> import sympy as sp
    >>> D = sp.Symbol("D", positive=True)
    >>> S = Deterministic("Sigma", D)
    >>> S.T is S, str(S.sqrt()), str(2 * S)
    (True, 'Sigma**(1/2)', '2*Sigma')
    >>> M = Deterministic("M", D, symmetric=False)
    >>> str(M.T @ S @ M)
    'M.T*Sigma*M'
    """

    name: str
    dim: sp.Expr
    symmetric: bool = field(default=True, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise InvalidArgument(f"matrix name {self.name!r} must be an identifier such as 'Sigma'")
        if not isinstance(self.symmetric, bool):
            raise InvalidArgument(f"symmetric={self.symmetric!r} must be True or False")
        object.__setattr__(self, "dim", _dim(self.dim, f"dimension of {self.name}"))

    def __repr__(self) -> str:
        extra = "" if self.symmetric else ", symmetric=False"
        return f"Deterministic(name={self.name!r}, dim={self.dim!r}{extra})"

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (self.dim, self.dim)

    @property
    def T(self) -> MatrixExpr:  # noqa: N802
        return self if self.symmetric else Transpose(self)

    def sqrt(self) -> Sqrt:
        """The symmetric square root :math:`A^{1/2}` (of a symmetric matrix)."""
        if not self.symmetric:
            raise InvalidArgument(
                f"{self.name} is declared symmetric=False; the square root is defined here for "
                "symmetric positive semidefinite matrices only"
            )
        return Sqrt(self)

    def to_sympy(self) -> sp.Expr:
        return sp.MatrixSymbol(self.name, self.dim, self.dim)


@dataclass(frozen=True, slots=True)
class DeterministicVector(MatrixExpr):
    """A deterministic column vector ``u`` of shape ``(dim, 1)`` (``u.T`` is the row).

    Used in quadratic forms ``u.T @ R @ u``; the vector is meant bounded (``|u| = O(1)``).

    >>> import sympy as sp
    >>> u = DeterministicVector("u", sp.Symbol("D", positive=True))
    >>> u.shape, u.T.shape, u.T.T == u
    ((D, 1), (1, D), True)
    """

    name: str
    dim: sp.Expr
    transposed: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise InvalidArgument(f"vector name {self.name!r} must be an identifier such as 'u'")
        object.__setattr__(self, "dim", _dim(self.dim, f"dimension of {self.name}"))

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (sp.S.One, self.dim) if self.transposed else (self.dim, sp.S.One)

    @property
    def T(self) -> MatrixExpr:  # noqa: N802
        return DeterministicVector(self.name, self.dim, not self.transposed)

    def to_sympy(self) -> sp.Expr:
        u = sp.MatrixSymbol(self.name, self.dim, 1)
        return sp.Transpose(u) if self.transposed else u


@dataclass(frozen=True, slots=True)
class Sqrt(MatrixExpr):
    """The symmetric square root of a :class:`Deterministic` matrix."""

    base: Deterministic

    def __post_init__(self) -> None:
        if not isinstance(self.base, Deterministic):
            raise InvalidArgument(f"only a Deterministic matrix has .sqrt(), got {self.base}")

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.base.shape

    @property
    def T(self) -> MatrixExpr:  # noqa: N802
        return self

    def to_sympy(self) -> sp.Expr:
        return sp.MatPow(self.base.to_sympy(), sp.Rational(1, 2))


@dataclass(frozen=True, slots=True)
class _RectangularLeaf(MatrixExpr):
    """A named ``rows x cols`` leaf (the common part of :class:`Gaussian` and :class:`Rectangular`)."""

    name: str
    dims: tuple[sp.Expr, sp.Expr]

    #: how error messages call the class, and the example name they suggest
    kind: ClassVar[str] = "matrix"
    example: ClassVar[str] = "X"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", _shape(self.name, self.dims, self.kind, self.example))

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.dims

    def to_sympy(self) -> sp.Expr:
        return sp.MatrixSymbol(self.name, *self.dims)


@dataclass(frozen=True, slots=True)
class Gaussian(_RectangularLeaf):
    """A ``rows x cols`` matrix with iid standard normal entries.

    ``X.T @ X / P`` for ``X = Gaussian("X", (P, D))`` is a white Wishart matrix on
    D-space with ratio ``D / P``.
    """

    kind: ClassVar[str] = "Gaussian"
    example: ClassVar[str] = "X"


@dataclass(frozen=True, slots=True)
class Rectangular(_RectangularLeaf):
    """A deterministic ``rows x cols`` matrix (fixed features, a sketch, a projection).

    Inside a resolvent it makes a rectangular chain, e.g. ``F @ Sigma_hat @ F.T`` in
    feature space with the features ``F`` held fixed (data averaged first).

    >>> import sympy as sp
    >>> N, D = sp.symbols("N D", positive=True)
    >>> F = Rectangular("F", (N, D))
    >>> F.shape, str(F @ F.T)
    ((N, D), 'F*F.T')
    """

    kind: ClassVar[str] = "Rectangular"
    example: ClassVar[str] = "F"


@dataclass(frozen=True, slots=True)
class FreeMatrix(MatrixExpr):
    """A symmetric rotation-invariant random matrix, free from everything else.

    Its limit spectral law is ``law`` (e.g. ``Wishart(q)``, ``FreePoisson``, a
    :class:`~detequiv.derivations.laws.CumulantLaw` with symbolic cumulants).
    """

    name: str
    dim: sp.Expr
    law: Law

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise InvalidArgument(f"matrix name {self.name!r} must be an identifier such as 'B'")
        object.__setattr__(self, "dim", _dim(self.dim, f"dimension of {self.name}"))
        if not isinstance(self.law, Law):
            raise InvalidArgument(
                f"the law of {self.name} must be a Law (Wishart(q), CumulantLaw('B'), ...), got {self.law!r}"
            )

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (self.dim, self.dim)

    @property
    def T(self) -> MatrixExpr:  # noqa: N802
        return self

    def to_sympy(self) -> sp.Expr:
        return sp.MatrixSymbol(self.name, self.dim, self.dim)


@dataclass(frozen=True, slots=True)
class Identity(MatrixExpr):
    """The identity on a space of dimension ``dim``."""

    dim: sp.Expr

    def __post_init__(self) -> None:
        object.__setattr__(self, "dim", _dim(self.dim, "dimension of the identity"))

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (self.dim, self.dim)

    @property
    def T(self) -> MatrixExpr:  # noqa: N802
        return self

    def to_sympy(self) -> sp.Expr:
        return sp.Identity(self.dim)


@dataclass(frozen=True, slots=True)
class Transpose(MatrixExpr):
    """The transpose of a :class:`Gaussian` or of a non-symmetric :class:`Deterministic`
    (other transposes are pushed to the leaves)."""

    arg: Gaussian | Deterministic | Rectangular

    def __post_init__(self) -> None:
        ok = isinstance(self.arg, (Gaussian, Rectangular)) or (
            isinstance(self.arg, Deterministic) and not self.arg.symmetric
        )
        if not ok:
            raise InvalidArgument(
                f"Transpose wraps a Gaussian, a Rectangular or a non-symmetric Deterministic only, "
                f"got {self.arg!r}; use expr.T, which pushes transposes to the leaves"
            )

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        r, c = self.arg.shape
        return (c, r)

    @property
    def T(self) -> MatrixExpr:  # noqa: N802
        return self.arg

    def to_sympy(self) -> sp.Expr:
        return sp.Transpose(self.arg.to_sympy())


@dataclass(frozen=True, slots=True)
class Product(MatrixExpr):
    """``coeff * factors[0] @ factors[1] @ ...`` (flat: no nested products)."""

    coeff: sp.Expr
    factors: tuple[MatrixExpr, ...]

    @staticmethod
    def make(coeff: sp.Expr, factors: tuple[MatrixExpr, ...]) -> MatrixExpr:
        """Flatten nested products and collect scalar coefficients."""
        c = sp.sympify(coeff)
        flat: list[MatrixExpr] = []
        for f in factors:
            if isinstance(f, Product):
                c = c * f.coeff
                flat.extend(f.factors)
            else:
                flat.append(f)
        return Product(sp.simplify(c) if c.free_symbols else c, tuple(flat))

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (self.factors[0].shape[0], self.factors[-1].shape[1])

    def to_sympy(self) -> sp.Expr:
        mats = [f.to_sympy() for f in self.factors]
        return sp.MatMul(self.coeff, *mats) if self.coeff != 1 else sp.MatMul(*mats)

    def leaves(self) -> tuple[MatrixExpr, ...]:
        return tuple(x for f in self.factors for x in f.leaves())


@dataclass(frozen=True, slots=True)
class Sum(MatrixExpr):
    """A sum of matrix expressions of one shape."""

    terms: tuple[MatrixExpr, ...]

    @staticmethod
    def make(terms: tuple[MatrixExpr, ...]) -> Sum:
        flat: list[MatrixExpr] = []
        for t in terms:
            flat.extend(t.terms if isinstance(t, Sum) else (t,))
        return Sum(tuple(flat))

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.terms[0].shape

    def to_sympy(self) -> sp.Expr:
        return sp.MatAdd(*[t.to_sympy() for t in self.terms])

    def leaves(self) -> tuple[MatrixExpr, ...]:
        return tuple(x for t in self.terms for x in t.leaves())


@dataclass(frozen=True, slots=True)
class Resolvent(MatrixExpr):
    r"""The resolvent :math:`(X+\lambda I)^{-1}` of a square matrix expression."""

    arg: MatrixExpr
    lam: sp.Expr

    def __post_init__(self) -> None:
        if not isinstance(self.arg, MatrixExpr):
            raise InvalidArgument(f"resolvent needs a matrix expression, got {self.arg!r}")
        if not self.arg.is_square:
            raise InvalidArgument(
                f"resolvent of the non-square {self.arg} (shape {self.arg.shape}); a "
                "resolvent needs a square matrix, e.g. X.T @ X / P instead of X"
            )
        object.__setattr__(self, "lam", _scalar(self.lam))

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.arg.shape

    def to_sympy(self) -> sp.Expr:
        n = self.arg.shape[0]
        return sp.Inverse(sp.MatAdd(self.arg.to_sympy(), self.lam * sp.Identity(n)))

    def leaves(self) -> tuple[MatrixExpr, ...]:
        return self.arg.leaves()


@dataclass(frozen=True, slots=True)
class Trace:
    """The normalized trace ``tr = Tr / n`` of a square matrix expression (a scalar)."""

    arg: MatrixExpr

    def __post_init__(self) -> None:
        if not isinstance(self.arg, MatrixExpr) or not self.arg.is_square:
            raise InvalidArgument(f"trace needs a square matrix expression, got {self.arg}")

    def to_sympy(self) -> sp.Expr:
        return sp.Trace(self.arg.to_sympy()) / self.arg.shape[0]

    def __str__(self) -> str:
        return f"tr({self.arg})"

    def _repr_latex_(self) -> str:
        return r"$\operatorname{tr}\left(" + sp.latex(self.arg.to_sympy()) + r"\right)$"


def _transpose(arg: MatrixExpr) -> MatrixExpr:
    if isinstance(arg, Transpose):
        return arg.arg
    if isinstance(arg, Product):
        return Product.make(arg.coeff, tuple(f.T for f in reversed(arg.factors)))
    if isinstance(arg, Sum):
        return Sum.make(tuple(t.T for t in arg.terms))
    if isinstance(arg, Resolvent):
        return Resolvent(arg.arg.T, arg.lam)
    if isinstance(arg, Deterministic):
        return arg.T
    if isinstance(arg, (Sqrt, FreeMatrix, Identity)):
        return arg
    if isinstance(arg, DeterministicVector):
        return arg.T
    if isinstance(arg, (Gaussian, Rectangular)):
        return Transpose(arg)
    raise InvalidArgument(f"cannot transpose {arg!r}: not a matrix expression")


def resolvent(arg: MatrixExpr, lam: Any) -> Resolvent:
    r""":math:`(X+\lambda I)^{-1}` (ridge convention of MATH.md 1.2).

    >>> import sympy as sp
    >>> resolvent(Gaussian("X", (3, 2)), sp.Symbol("lam"))   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: resolvent of the non-square X (shape (3, 2)); ...
    """
    return Resolvent(arg, lam)


def trace(arg: MatrixExpr) -> Trace:
    """The normalized trace ``tr(arg)``."""
    return Trace(arg)
