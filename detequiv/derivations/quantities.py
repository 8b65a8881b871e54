"""Special quantities that appear inside formulas, as sympy functions.

The normalized trace of a product of deterministic matrices is a commuting scalar
symbol :class:`tr` whose argument is a noncommutative monomial, kept in a canonical
rotation so that cyclically equal words are the same symbol:

>>> import sympy as sp
>>> from detequiv.derivations.quantities import tr, word_letters
>>> A, B = sp.symbols("A B", commutative=False)
>>> tr(B * A * A) == tr(A**2 * B)
True
>>> tr(A * B) - tr(B * A)
0
>>> word_letters(A**2 * B)
(A, A, B)
>>> word_letters((A * B)**2)
(A, B, A, B)
>>> sp.latex(tr(A * B)**2)
'\\\\operatorname{tr}\\\\left(A B\\\\right)^{2}'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sympy as sp

from ..errors import InvalidWord

__all__ = ["tr", "df1", "df2", "divided_difference", "word_letters", "word_from_letters", "least_rotation"]


def word_letters(expr: sp.Expr) -> tuple[sp.Symbol, ...]:
    """The letters of a noncommutative monomial, powers written out.

    Parameters
    ----------
    expr : sympy.Expr
        A noncommutative ``Symbol``, a positive integer ``Pow`` of one or of a
        product, or a ``Mul`` of such factors (no commutative coefficient).

    Returns
    -------
    tuple of sympy.Symbol

    Raises
    ------
    InvalidWord
        If ``expr`` has a commutative factor, a non-integer power or a sum.
    """
    if expr == sp.S.One:
        return ()
    factors = expr.args if isinstance(expr, sp.Mul) else (expr,)
    out: list[sp.Symbol] = []
    for f in factors:
        base, exp = (f.base, f.exp) if isinstance(f, sp.Pow) else (f, sp.S.One)
        if isinstance(base, sp.Mul) and exp.is_Integer and exp > 0:
            out.extend(word_letters(base) * int(exp))  # (A*W)**k
            continue
        if not (isinstance(base, sp.Symbol) and not base.is_commutative):
            raise InvalidWord(
                f"{f} in {expr} is not a noncommutative letter; build words from "
                "sp.Symbol(name, commutative=False) and move scalars outside tr(...)"
            )
        if not (exp.is_Integer and exp > 0):
            raise InvalidWord(
                f"{f} in {expr} has exponent {exp}; only positive integer powers of a "
                "letter can appear in a trace word"
            )
        out.extend([base] * int(exp))
    return tuple(out)


def least_rotation(items: Sequence[Any], key: Any = None) -> int:
    """Index at which the lexicographically least rotation of ``items`` starts.

    >>> least_rotation("bab")
    1
    """
    n = len(items)
    if n == 0:
        return 0
    keys = [key(x) for x in items] if key is not None else list(items)
    best = 0
    for i in range(1, n):
        if keys[i:] + keys[:i] < keys[best:] + keys[:best]:
            best = i
    return best


def word_from_letters(letters: Sequence[sp.Symbol]) -> sp.Expr:
    """The noncommutative monomial with the given letters (``1`` if empty)."""
    if not letters:
        return sp.S.One
    return sp.Mul(*letters)


class tr(sp.Function):
    """Normalized trace ``tr = Tr / n`` of a word in deterministic matrices.

    A commutative symbol standing for the limit moment of a noncommutative monomial.
    The argument is stored in its least rotation (by letter name), so words that are
    equal up to a cyclic shift give the same symbol; ``tr(1) = 1``.
    """

    nargs = 1
    is_commutative = True

    @classmethod
    def eval(cls, arg: sp.Expr) -> sp.Expr | None:
        if arg == sp.S.One:
            return sp.S.One
        letters = word_letters(arg)
        start = least_rotation(letters, key=lambda s: s.name)
        if start:
            return cls(word_from_letters(letters[start:] + letters[:start]))
        return None

    @property
    def letters(self) -> tuple[sp.Symbol, ...]:
        """The letters of the traced word, in canonical rotation."""
        return word_letters(self.args[0])

    def _latex(self, printer: Any, exp: Any = None) -> str:
        inner = " ".join(printer._print(s) for s in self.letters)
        tex = r"\operatorname{tr}\left(" + inner + r"\right)"
        if exp is not None:
            # sympy's Pow printer hands the exponent over already printed
            tex += "^{" + str(exp) + "}"
        return tex


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


class df2(sp.Function):  # noqa: N801 - the paper's name
    r""":math:`\mathrm{df}_2(Y,\kappa,\kappa')=\operatorname{tr}Y^2(Y+\kappa)^{-1}(Y+\kappa')^{-1}`

    >>> import sympy as sp
    >>> sp.latex(df2(sp.MatrixSymbol("A", 2, 2), sp.Symbol("k"), sp.Symbol("l")))
    '\\mathrm{df}_2\\left(A, k, l\\right)'
    """

    nargs = 3
    is_commutative = True

    def _latex(self, printer: Any, exp: Any = None) -> str:
        tex = r"\mathrm{df}_2\left(" + ", ".join(printer._print(a) for a in self.args) + r"\right)"
        return tex if exp is None else r"\left(" + tex + r"\right)^{" + str(exp) + "}"


class divided_difference(sp.Function):  # noqa: N801
    r""":math:`c(\lambda,\lambda')=(\lambda'\kappa-\lambda\kappa')/(\lambda'-\lambda)`, arguments
    ``(lam, lam2, kappa, kappa2)``; at :math:`\lambda=\lambda'` its limit
    :math:`\kappa-\lambda\,d\kappa/d\lambda` (MATH.md 3.2).
    """

    nargs = 4
    is_commutative = True

    def _latex(self, printer: Any, exp: Any = None) -> str:
        lam, lam2, k, k2 = (printer._print(a) for a in self.args)
        tex = r"\frac{" + f"{lam2} {k} - {lam} {k2}" + "}{" + f"{lam2} - {lam}" + "}"
        return tex if exp is None else r"\left(" + tex + r"\right)^{" + str(exp) + "}"
