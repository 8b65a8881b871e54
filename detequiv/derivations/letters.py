r"""Noncommutative words in the letters of deterministic matrices and resolvents.

The layered two-point engine and its series witness work with polynomials in words of
letters: ``X`` (or ``X_sqrt``, ``X_isqrt`` for :math:`X^{\pm1/2}`) for deterministic
matrices, free letters, and ``R_kappa`` for the resolvents :math:`(\kappa+Y)^{-1}`.
:class:`WordPolynomial` is such a polynomial, :func:`normal_word` merges the commuting runs
(powers of :math:`X^{\pm1/2}` and resolvents of ``X``), :func:`trace_word` is the normalized
trace of a word as a commutative :class:`~detequiv.derivations.quantities.tr` atom, and
:class:`Letters` turns matrix expressions into letters.

>>> import sympy as sp
>>> s = sp.Symbol("A_sqrt", commutative=False); si = sp.Symbol("A_isqrt", commutative=False)
>>> b = sp.Symbol("B", commutative=False)
>>> normal_word((s, b, s, si, s))
(A_sqrt, B, A_sqrt)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sympy as sp

from ..errors import InvalidWord
from .expressions import Deterministic, FreeMatrix, Identity, MatrixExpr, Sqrt
from .quantities import tr

__all__ = ["Word", "WordPolynomial", "trace_word", "letter_family", "normal_word", "Letters"]


Word = tuple[sp.Symbol, ...]


class WordPolynomial:
    """``sum_w coeff_w * w`` over words ``w`` (tuples of noncommutative letters)."""

    __slots__ = ("terms",)

    def __init__(self, terms: Mapping[Word, sp.Expr] | None = None) -> None:
        self.terms: dict[Word, sp.Expr] = {}
        for w, c in (terms or {}).items():
            c = sp.sympify(c)
            if c != 0:
                self.terms[w] = self.terms.get(w, sp.S.Zero) + c

    @classmethod
    def word(cls, w: Word, c: Any = 1) -> WordPolynomial:
        return cls({tuple(w): sp.sympify(c)})

    def __add__(self, o: WordPolynomial) -> WordPolynomial:
        out = dict(self.terms)
        for w, c in o.terms.items():
            out[w] = out[w] + c if w in out else c
        return WordPolynomial(out)

    def __sub__(self, o: WordPolynomial) -> WordPolynomial:
        return self + o.scale(-1)

    def scale(self, c: Any) -> WordPolynomial:
        c = sp.sympify(c)
        return WordPolynomial({w: c * v for w, v in self.terms.items()})

    def __matmul__(self, o: WordPolynomial) -> WordPolynomial:
        out: dict[Word, sp.Expr] = {}
        for w1, c1 in self.terms.items():
            for w2, c2 in o.terms.items():
                w = w1 + w2
                out[w] = out[w] + c1 * c2 if w in out else c1 * c2
        return WordPolynomial(out)

    def trace(self, left: Word = ()) -> sp.Expr:
        """``tr(left . self)`` (normalized trace, linear in the words)."""
        return sp.Add(*[c * trace_word(left + w) for w, c in self.terms.items()])

    def xreplace(self, rep: Mapping[Any, Any]) -> WordPolynomial:
        return WordPolynomial({w: c.xreplace(rep) for w, c in self.terms.items()})


def trace_word(w: Word) -> sp.Expr:
    w = normal_word(w, cyclic=True)
    return tr(sp.Mul(*w)) if w else sp.S.One


def letter_family(x: sp.Symbol) -> tuple[str, int] | None:
    """``(base name, half-power)`` of ``X_sqrt`` (+1) / ``X_isqrt`` (-1); resolvent letters
    ``R_kappa(X)`` (``(kappa + X)^-1``) are ``(X, 0)``; others ``None``."""
    name = x.name
    if name.endswith("_isqrt"):
        return name[: -len("_isqrt")], -1
    if name.endswith("_sqrt"):
        return name[: -len("_sqrt")], 1
    if name.startswith("R_") and name.endswith(")") and "(" in name:
        return name[name.rindex("(") + 1 : -1], 0
    return None


def normal_word(w: Word, cyclic: bool = False) -> Word:
    """Merge commuting runs: powers of ``X^{1/2}``, ``X^{-1/2}`` and resolvents of ``X`` commute, so
    a run of them is ``X^{e/2}`` followed by its resolvent letters (sorted). Exact algebra; with
    ``cyclic`` the word is a trace and is first rotated to start outside a run."""
    w = tuple(w)
    if not w:
        return w
    fams = [letter_family(x) for x in w]
    if cyclic:
        starts = [i for i, f in enumerate(fams) if f is None]
        if not starts:
            if len({f[0] for f in fams if f is not None}) == 1:
                return _run(w, fams)
            return w
        i = starts[0]
        w, fams = w[i:] + w[:i], fams[i:] + fams[:i]
    out: list[sp.Symbol] = []
    i = 0
    while i < len(w):
        f = fams[i]
        if f is None:
            out.append(w[i])
            i += 1
            continue
        j = i
        while j < len(w) and fams[j] is not None and fams[j][0] == f[0]:  # type: ignore[index]
            j += 1
        out.extend(_run(w[i:j], fams[i:j]))
        i = j
    return tuple(out)


def _run(w: Word, fams: list[Any]) -> Word:
    base = fams[0][0]
    e = sum(f[1] for f in fams)
    rs = sorted((x for x, f in zip(w, fams, strict=True) if f[1] == 0), key=lambda x: x.name)
    power = sp.Symbol(f"{base}_sqrt" if e > 0 else f"{base}_isqrt", commutative=False)
    return (power,) * abs(e) + tuple(rs)


@dataclass(frozen=True, slots=True)
class Letters:
    """Letters of the polynomial: deterministic matrices (``X`` or ``X_sqrt``) and resolvents."""

    sqrt_names: frozenset[str]
    resolvents: tuple[tuple[sp.Symbol, sp.Symbol, Word], ...] = ()

    def det(self, name: str) -> Word:
        if name in self.sqrt_names:
            s = sp.Symbol(f"{name}_sqrt", commutative=False)
            return (s, s)
        return (sp.Symbol(name, commutative=False),)

    def half(self, name: str) -> Word:
        return (sp.Symbol(f"{name}_sqrt", commutative=False),)

    def inverse(self, f: MatrixExpr) -> Word:
        """Letters of ``f^-1`` for a deterministic ``f`` (``X^-1/2`` letters ``X_isqrt``)."""
        if isinstance(f, Sqrt):
            return (sp.Symbol(f"{f.base.name}_isqrt", commutative=False),)
        if isinstance(f, Deterministic) and f.name in self.sqrt_names:
            return (sp.Symbol(f"{f.name}_isqrt", commutative=False),) * 2
        raise InvalidWord(f"{f} cannot be inverted in a conjugation; only A and A^(1/2) can")

    def of(self, f: MatrixExpr) -> Word:
        if isinstance(f, Deterministic):
            return self.det(f.name)
        if isinstance(f, Sqrt):
            return self.half(f.base.name)
        if isinstance(f, FreeMatrix):
            return (sp.Symbol(f.name, commutative=False),)
        if isinstance(f, Identity):
            return ()
        raise InvalidWord(f"{f} cannot be a letter of a layered two-point word")

    def sym(self, m: sp.Basic) -> Word:
        """Letters of a sympy matrix expression (MatrixSymbol, its square root, products)."""
        if isinstance(m, sp.MatrixSymbol):
            return self.det(m.name)
        if isinstance(m, sp.MatPow) and m.exp == sp.Rational(1, 2) and isinstance(m.base, sp.MatrixSymbol):
            return self.half(m.base.name)
        if isinstance(m, sp.MatPow) and m.exp.is_Integer and m.exp > 0:
            return self.sym(m.base) * int(m.exp)
        if isinstance(m, sp.MatMul):
            return tuple(x for f in m.args for x in self.sym(f))
        if isinstance(m, sp.Identity):
            return ()
        raise InvalidWord(f"{m} is not a product of deterministic matrices")
