r"""Exact noncommutative series: the arithmetic of the pencil engine's exact witness.

A coefficient of a :math:`1/\lambda` series is a polynomial in the sizes, the user's
scalars and the normalized traces :math:`\operatorname{tr}(w)` of words ``w`` in the
deterministic matrices. :class:`Poly` is such a (Laurent) polynomial with exact rational
coefficients; :class:`NCSeries` is a truncated series in one or more variables
``x = 1/lam`` (``y = 1/lam'``...) whose coefficients are noncommutative polynomials
(``word -> Poly``) of the deterministic letters, or scalars (the empty word).

Two sides are computed with it:

* :func:`from_sympy` expands a derived result (sympy matrix and scalar expressions with
  ``Inverse``, ``Trace`` and fixed-point unknowns) as such a series;
* :func:`planar_expectation` sums, for a word in Gaussian letters ``Z``, ``Z^T`` and
  deterministic letters, the Wick pairings of ``Z`` with ``Z^T`` that are non-crossing (the
  planar part, exact at leading order; crossing pairings and ``Z``-``Z`` pairings of a real
  Gaussian are ``O(1/n)``), each face of the pairing a trace of its deterministic word.

Letters carry their shapes, so a trace over a ``P``-space is ``P tr(.)``; every deterministic
matrix with a square root in play is written as two half letters so that words have one
canonical form; traces are canonical under rotation and under transposition
(:math:`\operatorname{tr}w=\operatorname{tr}w^\top`).

>>> import sympy as sp
>>> D, P = sp.symbols("D P", positive=True)
>>> L = LetterTable()
>>> z = L.gaussian("Z", P, D)
>>> s = L.deterministic("S", D)
>>> # E Tr(Z S Z^T) = Tr(S) Tr(I_P) pairs Z with Z^T once: P * D * tr(S)
>>> poly_to_sympy(planar_expectation((z, s, L.transpose(z)), L), L)
D*P*tr(S)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy as sp
from sympy.external.gmpy import MPQ

from ..errors import InvalidArgument
from .quantities import tr
from .traces import mtr

__all__ = [
    "LetterTable",
    "Letter",
    "Poly",
    "poly_of",
    "poly_to_sympy",
    "NCSeries",
    "SympyExpander",
    "planar_expectation",
    "expected_words",
    "from_sympy",
    "exponents",
    "Word",
]

Word = tuple[int, ...]
Monomial = tuple[tuple[Any, int], ...]


# ---------------------------------------------------------------------------
# letters
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Letter:
    """One letter: a deterministic matrix (or half of one), or a Gaussian ``Z`` / ``Z^T``."""

    name: str
    rows: sp.Expr
    cols: sp.Expr
    kind: str  # "det" or "gauss"
    transposed: bool = False
    symmetric: bool = False
    variance: sp.Expr = sp.S.One


class LetterTable:
    """The letters of one computation, each with an integer id (words are tuples of ids)."""

    def __init__(self) -> None:
        self.letters: list[Letter] = []
        self.index: dict[Letter, int] = {}
        self.halves: dict[str, int] = {}  # names whose matrix is written as two half letters

    def _add(self, letter: Letter) -> int:
        if letter not in self.index:
            self.index[letter] = len(self.letters)
            self.letters.append(letter)
        return self.index[letter]

    def deterministic(
        self, name: str, rows: sp.Expr, cols: sp.Expr | None = None, symmetric: bool = True
    ) -> int:
        """A deterministic letter (square symmetric by default)."""
        cols = rows if cols is None else cols
        return self._add(Letter(name, sp.sympify(rows), sp.sympify(cols), "det", False, symmetric))

    def half(self, name: str, dim: sp.Expr) -> int:
        """The letter of :math:`A^{1/2}` (symmetric); ``A`` itself is then two of them."""
        i = self._add(Letter(f"{name}_sqrt", sp.sympify(dim), sp.sympify(dim), "det", False, True))
        self.halves[name] = i
        return i

    def gaussian(self, name: str, rows: sp.Expr, cols: sp.Expr, variance: sp.Expr = sp.S.One) -> int:
        """A Gaussian letter ``Z`` (``rows x cols``, iid entries of ``variance``)."""
        return self._add(
            Letter(name, sp.sympify(rows), sp.sympify(cols), "gauss", False, False, sp.sympify(variance))
        )

    def wigner(self, name: str, dim: sp.Expr, variance: sp.Expr) -> int:
        """A Wigner letter: a symmetric Gaussian (its own transpose) of entry ``variance``."""
        return self._add(
            Letter(name, sp.sympify(dim), sp.sympify(dim), "gauss", False, True, sp.sympify(variance))
        )

    def transpose(self, i: int) -> int:
        """The id of the transpose of letter ``i``."""
        a = self.letters[i]
        if a.symmetric:
            return i
        return self._add(Letter(a.name, a.cols, a.rows, a.kind, not a.transposed, a.symmetric, a.variance))

    def name(self, i: int) -> str:
        a = self.letters[i]
        return a.name + ("^T" if a.transposed else "")

    def word_transpose(self, w: Word) -> Word:
        return tuple(self.transpose(i) for i in reversed(w))

    def canonical_trace(self, w: Word) -> Word:
        """The least rotation of ``w`` or of its transpose (both have the same trace)."""
        best: Word | None = None
        for v in (w, self.word_transpose(w)):
            for k in range(len(v)):
                r = v[k:] + v[:k]
                key = tuple(self.name(i) for i in r)
                if best is None or key < tuple(self.name(i) for i in best):
                    best = r
        assert best is not None
        return best

    def word_sympy(self, w: Word) -> sp.Expr:
        """The word as a product of noncommutative symbols (for ``tr`` atoms and display)."""
        return sp.Mul(*[sp.Symbol(self.name(i), commutative=False) for i in w])


# ---------------------------------------------------------------------------
# commutative Laurent polynomials with exact coefficients
# ---------------------------------------------------------------------------


_ATOMS: dict[Any, int] = {}
_ATOM_LIST: list[Any] = []


def atom_id(a: Any) -> int:
    """The integer id of an atom (a sympy symbol, or ``("tr", canonical word)``)."""
    i = _ATOMS.get(a)
    if i is None:
        i = _ATOMS[a] = len(_ATOM_LIST)
        _ATOM_LIST.append(a)
    return i


class Poly:
    """A Laurent polynomial over Q in atoms: sympy symbols (sizes, scalars) and trace atoms
    ``("tr", canonical word)``; monomials are tuples ``((atom id, exponent), ...)`` sorted by id."""

    __slots__ = ("terms",)

    def __init__(self, terms: Mapping[Monomial, MPQ] | None = None) -> None:
        self.terms: dict[Monomial, MPQ] = {m: c for m, c in (terms or {}).items() if c}

    @staticmethod
    def const(c: Any) -> Poly:
        if not isinstance(c, type(MPQ(1))):
            c = MPQ(int(c.numerator), int(c.denominator)) if hasattr(c, "numerator") else MPQ(int(c))
        return Poly({(): c})

    @staticmethod
    def atom(a: Any, power: int = 1) -> Poly:
        return Poly({((atom_id(a), power),): MPQ(1)})

    def __bool__(self) -> bool:
        return bool(self.terms)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Poly) and self.terms == other.terms

    def __hash__(self) -> int:  # pragma: no cover - not used as a key
        return hash(frozenset(self.terms.items()))

    def __add__(self, other: Poly) -> Poly:
        out = dict(self.terms)
        for m, c in other.terms.items():
            out[m] = out.get(m, 0) + c
        return Poly(out)

    def __neg__(self) -> Poly:
        return Poly({m: -c for m, c in self.terms.items()})

    def __sub__(self, other: Poly) -> Poly:
        return self + (-other)

    def __mul__(self, other: Poly) -> Poly:
        out: dict[Monomial, MPQ] = {}
        for m1, c1 in self.terms.items():
            for m2, c2 in other.terms.items():
                m = _mono_mul(m1, m2)
                out[m] = out.get(m, 0) + c1 * c2
        return Poly(out)

    def inverse(self) -> Poly:
        """The inverse of a single monomial (a nonzero rational times atoms to integer powers)."""
        if len(self.terms) != 1:
            raise InvalidArgument(f"cannot invert {self} exactly: it is not a single monomial")
        ((m, c),) = self.terms.items()
        return Poly({tuple((a, -e) for a, e in m): 1 / c})

    def __repr__(self) -> str:
        return f"Poly({self.terms})"


def _mono_mul(a: Monomial, b: Monomial) -> Monomial:
    if not a:
        return b
    if not b:
        return a
    d = dict(a)
    for k, e in b:
        d[k] = d.get(k, 0) + e
    return tuple(sorted((k, e) for k, e in d.items() if e))


def poly_of(expr: Any) -> Poly:
    """A sympy scalar that is a polynomial in symbols (sizes, the user's scalars), as a Poly."""
    e = sp.expand(sp.sympify(expr))
    if not e.free_symbols:
        if not e.is_Rational:
            raise InvalidArgument(f"the coefficient {e} is not rational; the exact witness needs rationals")
        return Poly.const(MPQ(int(e.p), int(e.q)))
    out = Poly()
    for term in sp.Add.make_args(e):
        c, rest = term.as_coeff_Mul()
        if not c.is_Rational:
            raise InvalidArgument(f"the coefficient {term} is not rational")
        mono: dict[int, int] = {}
        for base, exp in rest.as_powers_dict().items():
            if not (isinstance(base, sp.Symbol) and exp.is_Integer):
                raise InvalidArgument(
                    f"{term} is not a monomial in symbols; the exact witness needs sizes and scalars "
                    "that are products of symbols"
                )
            i = atom_id(base)
            mono[i] = mono.get(i, 0) + int(exp)
        out = out + Poly({tuple(sorted(mono.items())): MPQ(int(c.p), int(c.q))})
    return out


def poly_to_sympy(p: Poly, letters: LetterTable) -> sp.Expr:
    """A Poly back as a sympy expression (trace atoms as :class:`~detequiv.derivations.quantities.tr`)."""
    out = []
    for m, c in p.terms.items():
        factors: list[sp.Expr] = [sp.Rational(c.numerator, c.denominator)]
        for i, e in m:
            a = _ATOM_LIST[i]
            base = tr(letters.word_sympy(a[1])) if isinstance(a, tuple) else a
            factors.append(base**e)
        out.append(sp.Mul(*factors))
    return sp.Add(*out)


# ---------------------------------------------------------------------------
# noncommutative series
# ---------------------------------------------------------------------------

Exponent = tuple[int, ...]


@dataclass
class NCSeries:
    """``sum_e x^e sum_w c_{e,w} w`` truncated at total degree ``order`` (``x`` a tuple of
    variables, ``e`` may be negative in the expansion of ``lam = 1/x``); ``shape`` is the
    matrix shape (``(1, 1)`` with only the empty word for scalars)."""

    nvars: int
    order: int
    shape: tuple[sp.Expr, sp.Expr]
    terms: dict[tuple[Exponent, Word], Poly] = field(default_factory=dict)

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def zero(cls, nvars: int, order: int, shape: tuple[sp.Expr, sp.Expr]) -> NCSeries:
        return cls(nvars, order, shape)

    @classmethod
    def scalar(cls, nvars: int, order: int, p: Poly, exponent: Exponent | None = None) -> NCSeries:
        e = exponent or (0,) * nvars
        return cls(nvars, order, (sp.S.One, sp.S.One), {(e, ()): p} if p else {})

    @classmethod
    def identity(cls, nvars: int, order: int, dim: sp.Expr, p: Poly | None = None) -> NCSeries:
        return cls(nvars, order, (dim, dim), {((0,) * nvars, ()): p or Poly.const(1)})

    @classmethod
    def letter(cls, nvars: int, order: int, i: int, letters: LetterTable) -> NCSeries:
        a = letters.letters[i]
        return cls(nvars, order, (a.rows, a.cols), {((0,) * nvars, (i,)): Poly.const(1)})

    def is_scalar(self) -> bool:
        return all(not w for _, w in self.terms)

    # -- arithmetic ----------------------------------------------------------------------
    def _keep(self, e: Exponent) -> bool:
        return sum(e) <= self.order

    def __add__(self, other: NCSeries) -> NCSeries:
        out = dict(self.terms)
        for k, c in other.terms.items():
            out[k] = out[k] + c if k in out else c
        shape = self.shape if self.shape != (sp.S.One, sp.S.One) else other.shape
        return NCSeries(self.nvars, self.order, shape, {k: c for k, c in out.items() if c})

    def __neg__(self) -> NCSeries:
        return NCSeries(self.nvars, self.order, self.shape, {k: -c for k, c in self.terms.items()})

    def __sub__(self, other: NCSeries) -> NCSeries:
        return self + (-other)

    def __matmul__(self, other: NCSeries) -> NCSeries:
        out: dict[tuple[Exponent, Word], Poly] = {}
        for (e1, w1), c1 in self.terms.items():
            for (e2, w2), c2 in other.terms.items():
                e = tuple(a + b for a, b in zip(e1, e2, strict=True))
                if not self._keep(e):
                    continue
                k = (e, w1 + w2)
                c = c1 * c2
                out[k] = out[k] + c if k in out else c
        shape = (self.shape[0], other.shape[1])
        return NCSeries(self.nvars, self.order, shape, {k: c for k, c in out.items() if c})

    def scale(self, p: Poly, exponent: Exponent | None = None) -> NCSeries:
        e0 = exponent or (0,) * self.nvars
        out: dict[tuple[Exponent, Word], Poly] = {}
        for (e, w), c in self.terms.items():
            ee = tuple(a + b for a, b in zip(e, e0, strict=True))
            if self._keep(ee):
                out[(ee, w)] = c * p
        return NCSeries(self.nvars, self.order, self.shape, {k: c for k, c in out.items() if c})

    def times_scalar(self, s: NCSeries) -> NCSeries:
        """``self`` times a scalar series ``s`` (commutes with everything)."""
        out = NCSeries(self.nvars, self.order, self.shape)
        for (e, _), c in s.terms.items():
            out = out + self.scale(c, e)
        return out

    def min_degree(self) -> int:
        return min((sum(e) for e, _ in self.terms), default=self.order + 1)

    def inverse(self, letters: LetterTable) -> NCSeries:
        """The inverse of a series whose lowest-degree part is a single monomial times the
        identity (``lam I`` -> degree -1, ``c I``...): ``a^-1 (I + a^-1 R)^-1`` by Neumann."""
        d = self.min_degree()
        lead = {k: c for k, c in self.terms.items() if sum(k[0]) == d}
        if len(lead) != 1 or next(iter(lead))[1] != ():
            raise InvalidArgument(
                "cannot expand the inverse: its leading part is not a multiple of the identity "
                f"({[letters.word_sympy(w) for _, w in lead]})"
            )
        ((e0, _), c0) = next(iter(lead.items()))
        inv_c = c0.inverse()
        neg_e = tuple(-a for a in e0)
        rest = NCSeries(
            self.nvars, self.order, self.shape, {k: c for k, c in self.terms.items() if k not in lead}
        )
        q = rest.scale(-inv_c, neg_e)  # -(a^-1) R: positive degree
        if q.terms and q.min_degree() < 1:
            raise InvalidArgument(
                "cannot expand the inverse: the correction does not vanish as lam -> infinity"
            )
        dim = self.shape[0]
        inner = self.order + sum(e0)  # the factor x^-e0 shifts every degree by -sum(e0)
        total = NCSeries.identity(self.nvars, inner, dim)
        power = NCSeries.identity(self.nvars, inner, dim)
        q = NCSeries(self.nvars, inner, q.shape, {k: c for k, c in q.terms.items() if sum(k[0]) <= inner})
        for _ in range(inner + 1):
            power = power @ q
            if not power.terms:
                break
            total = total + power
        out = total.scale(inv_c, neg_e)
        return NCSeries(
            self.nvars,
            self.order,
            self.shape,
            {k: c for k, c in out.terms.items() if sum(k[0]) <= self.order},
        )

    def trace(self, letters: LetterTable, normalized: bool = False) -> NCSeries:
        """``Tr`` (or ``tr``) of a square series: a scalar series, words become trace atoms."""
        dim = self.shape[0]
        out: dict[tuple[Exponent, Word], Poly] = {}
        dim_poly = poly_of(dim)
        for (e, w), c in self.terms.items():
            if not w:
                value = c if normalized else c * dim_poly
            else:
                row = letters.letters[w[0]].rows
                atom = Poly.atom(("tr", letters.canonical_trace(w)))
                value = c * atom * (poly_of(row) * dim_poly.inverse() if normalized else poly_of(row))
            k = (e, ())
            out[k] = out[k] + value if k in out else value
        return NCSeries(self.nvars, self.order, (sp.S.One, sp.S.One), {k: v for k, v in out.items() if v})

    def coefficients(self) -> dict[Exponent, Poly]:
        """The scalar coefficients by exponent (for scalar series)."""
        if not self.is_scalar():
            raise InvalidArgument("coefficients() needs a scalar series; take a trace first")
        return {e: c for (e, _), c in self.terms.items()}


# ---------------------------------------------------------------------------
# the planar expectation of a word in Gaussian letters
# ---------------------------------------------------------------------------


def _planar_pairings(word: Word, letters: LetterTable) -> Iterable[list[tuple[int, int]]]:
    """Non-crossing pairings of the Gaussian positions of the cyclic ``word``, each pair a
    ``Z`` with its ``Z^T`` (stack discipline: open, or close the top if it is the partner)."""
    positions = [k for k, i in enumerate(word) if letters.letters[i].kind == "gauss"]
    n = len(positions)
    if n % 2:
        return

    def partner(a: int, b: int) -> bool:
        la, lb = letters.letters[word[a]], letters.letters[word[b]]
        return la.name == lb.name and (la.symmetric or la.transposed != lb.transposed)

    def rec(k: int, stack: list[int], pairs: list[tuple[int, int]]) -> Iterable[list[tuple[int, int]]]:
        if k == n:
            if not stack:
                yield list(pairs)
            return
        if len(stack) > n - k:
            return
        p = positions[k]
        if stack and partner(stack[-1], p):
            top = stack.pop()
            pairs.append((top, p))
            yield from rec(k + 1, stack, pairs)
            pairs.pop()
            stack.append(top)
        stack.append(p)
        yield from rec(k + 1, stack, pairs)
        stack.pop()

    yield from rec(0, [], [])


def _faces(word: Word, pairs: Sequence[tuple[int, int]], letters: LetterTable) -> list[tuple[Word, sp.Expr]]:
    """The faces of a pairing: each a cyclic word of deterministic letters and the size of the
    space its trace is over. Index ``k`` sits after letter ``k``; a Gaussian letter at ``p``
    paired with ``q`` sends the traversal from index ``p - 1`` to index ``q`` (face permutation)."""
    L = len(word)
    mate = {}
    for a, b in pairs:
        mate[a], mate[b] = b, a
    seen: set[int] = set()
    faces = []
    for start in range(L):
        if start in seen:
            continue
        w: list[int] = []
        k = start  # index k: between letter k and letter k + 1
        dim = letters.letters[word[(start + 1) % L]].rows
        while k not in seen:
            seen.add(k)
            nxt = (k + 1) % L
            if letters.letters[word[nxt]].kind == "gauss":
                k = mate[nxt]  # jump over the pair: continue after the partner
            else:
                w.append(word[nxt])
                k = nxt
        faces.append((tuple(w), dim))
    return faces


def planar_expectation(word: Word, letters: LetterTable) -> Poly:
    """The planar part of :math:`\\mathbb E\\operatorname{Tr}(w)` for the cyclic word ``w``:
    the sum over non-crossing ``Z``/``Z^T`` pairings of the product of the variances and of
    the faces' traces (``Tr`` of a face's deterministic word, or its size when empty)."""
    total = Poly()
    for pairs in _planar_pairings(word, letters):
        value = Poly.const(1)
        for a, _ in pairs:
            value = value * poly_of(letters.letters[word[a]].variance)
        for face, dim in _faces(word, pairs, letters):
            if face:
                value = (
                    value
                    * Poly.atom(("tr", letters.canonical_trace(face)))
                    * poly_of(letters.letters[face[0]].rows)
                )
            else:
                value = value * poly_of(dim)
        total = total + value
    return total


# ---------------------------------------------------------------------------
# sympy expressions of a derived result -> series
# ---------------------------------------------------------------------------


@dataclass
class SympyExpander:
    """Expand sympy matrix / scalar expressions as :class:`NCSeries`.

    ``variables`` maps each spectral variable (``lam``, ``lam2``...) to its position in the
    exponent tuple (``lam = 1/x_i``); ``unknowns`` maps fixed-point symbols to their series;
    ``letters`` names the deterministic matrices (``MatrixSymbol`` names; a name in
    ``letters.halves`` is written as two half letters).
    """

    letters: LetterTable
    variables: dict[sp.Symbol, int]
    order: int
    unknowns: dict[sp.Symbol, NCSeries] = field(default_factory=dict)
    cache: dict[Any, NCSeries] = field(default_factory=dict)

    @property
    def nvars(self) -> int:
        return len(self.variables)

    def scalar(self, e: sp.Expr) -> NCSeries:
        """A scalar sympy expression."""
        e = sp.sympify(e)
        if e in self.cache:
            return self.cache[e]
        out = self._scalar(e)
        self.cache[e] = out
        return out

    def _scalar(self, e: sp.Expr) -> NCSeries:
        n, K = self.nvars, self.order
        if e in self.unknowns:
            return self.unknowns[e]
        if e in self.variables:
            exp = [0] * n
            exp[self.variables[e]] = -1
            return NCSeries.scalar(n, K, Poly.const(1), tuple(exp))
        if not (e.free_symbols & (set(self.variables) | set(self.unknowns))) and not e.atoms(sp.Trace, mtr):
            return NCSeries.scalar(n, K, poly_of(e))
        if isinstance(e, sp.Add):
            out = NCSeries.scalar(n, K, Poly())
            for a in e.args:
                out = out + self.scalar(a)
            return out
        if isinstance(e, sp.Mul):
            out = NCSeries.scalar(n, K, Poly.const(1))
            for a in e.args:
                out = out @ self.scalar(a)
            return out
        if isinstance(e, sp.Pow) and e.exp.is_Integer:
            base = self.scalar(e.base)
            if e.exp < 0:
                base = base.inverse(self.letters)
            out = NCSeries.scalar(n, K, Poly.const(1))
            for _ in range(abs(int(e.exp))):
                out = out @ base
            return out
        if isinstance(e, sp.Trace):
            return self.matrix(e.arg).trace(self.letters)
        if isinstance(e, mtr):
            return self.matrix(e.args[0]).trace(self.letters, normalized=True)
        raise InvalidArgument(f"cannot expand {e} as a series in 1/lam")

    def matrix(self, m: sp.Basic) -> NCSeries:
        """A sympy matrix expression."""
        if m in self.cache:
            return self.cache[m]
        out = self._matrix(m)
        self.cache[m] = out
        return out

    def _matrix(self, m: sp.Basic) -> NCSeries:
        n, K, L = self.nvars, self.order, self.letters
        if isinstance(m, sp.Identity):
            return NCSeries.identity(n, K, m.shape[0])
        if isinstance(m, sp.ZeroMatrix):
            return NCSeries.zero(n, K, m.shape)
        if isinstance(m, sp.MatrixSymbol):
            if m.name in L.halves:
                h = NCSeries.letter(n, K, L.halves[m.name], L)
                return h @ h
            return NCSeries.letter(n, K, self._det_letter(m), L)
        if isinstance(m, sp.MatPow) and m.exp == sp.Rational(1, 2) and isinstance(m.base, sp.MatrixSymbol):
            return NCSeries.letter(n, K, L.half(m.base.name, m.base.shape[0]), L)
        if isinstance(m, sp.MatPow) and m.exp.is_Integer and m.exp > 0:
            out = self.matrix(m.base)
            for _ in range(int(m.exp) - 1):
                out = out @ self.matrix(m.base)
            return out
        if isinstance(m, sp.Transpose):
            return self._transpose(self.matrix(m.arg))
        if isinstance(m, sp.Inverse):
            return self.matrix(m.arg).inverse(L)
        if isinstance(m, sp.MatPow) and m.exp == -1:
            return self.matrix(m.base).inverse(L)
        if isinstance(m, sp.MatAdd):
            parts = [self.matrix(a) for a in m.args]
            out = parts[0]
            for p in parts[1:]:
                out = out + p
            return out
        if isinstance(m, sp.MatMul):
            scalars = [a for a in m.args if not getattr(a, "is_Matrix", False)]
            mats = [a for a in m.args if getattr(a, "is_Matrix", False)]
            out = self.matrix(mats[0])
            for f in mats[1:]:
                out = out @ self.matrix(f)
            if scalars:
                out = out.times_scalar(self.scalar(sp.Mul(*scalars)))
            return out
        raise InvalidArgument(f"cannot expand the matrix {m} as a series in 1/lam")

    def _det_letter(self, m: sp.MatrixSymbol) -> int:
        rows, cols = m.shape
        for i, a in enumerate(self.letters.letters):
            if a.name == m.name and a.kind == "det" and not a.transposed:
                return i
        return self.letters.deterministic(m.name, rows, cols, symmetric=(rows == cols))

    def _transpose(self, s: NCSeries) -> NCSeries:
        terms = {(e, self.letters.word_transpose(w)): c for (e, w), c in s.terms.items()}
        return NCSeries(s.nvars, s.order, (s.shape[1], s.shape[0]), terms)


def from_sympy(expr: sp.Basic, expander: SympyExpander) -> NCSeries:
    """A sympy matrix or scalar expression as a series (see :class:`SympyExpander`)."""
    if getattr(expr, "is_Matrix", False):
        return expander.matrix(expr)
    return expander.scalar(expr)


def expected_words(
    terms: Iterable[tuple[Exponent, Word, Poly]],
    letters: LetterTable,
    nvars: int,
    order: int,
    normalize: sp.Expr,
) -> NCSeries:
    """``sum c x^e E tr(w)`` (planar) of weighted cyclic words: the exact side of a series check."""
    out: dict[tuple[Exponent, Word], Poly] = {}
    inv_n = poly_of(normalize).inverse()
    for e, w, c in terms:
        if sum(e) > order:
            continue
        value = c * planar_expectation(w, letters) * inv_n
        k = (e, ())
        out[k] = out[k] + value if k in out else value
    return NCSeries(nvars, order, (sp.S.One, sp.S.One), {k: v for k, v in out.items() if v})


def exponents(nvars: int, order: int) -> list[Exponent]:
    """All exponent tuples of total degree ``0..order``."""
    return [e for e in itertools.product(range(order + 1), repeat=nvars) if sum(e) <= order]
