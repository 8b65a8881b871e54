"""Mixed moments of words in mutually free families, as exact sympy expressions.

The normalized trace of a word in deterministic matrices (one family, with symbolic
joint moments ``tr(...)``) and free random matrices (each given by its law) is
computed by the free product formula with the Kreweras complement, applied one
free letter at a time (Nica and Speicher, Lecture 14):

    phi(s d_1 s d_2 ... s d_k) = sum_{pi in NC(k)} kappa_pi(s) prod_{U in K(pi)} phi(prod_{i in U} d_i),

with memoisation on canonical words. :func:`diagram_sum` computes the same value by
the other route, summing the weights of the planar diagrams of the word (each
diagram's faces give its deterministic traces); the two are independent witnesses.

>>> import sympy as sp
>>> from detequiv.derivations.laws import Wishart
>>> from detequiv.derivations.mixed import mixed_moment
>>> A, W = sp.symbols("A W", commutative=False)
>>> q = sp.Symbol("q", positive=True)
>>> mixed_moment(A * W * A * W, {W: Wishart(q)})
q*tr(A)**2 + tr(A**2)

References
----------
A. Nica and R. Speicher, Lectures on the Combinatorics of Free Probability,
Cambridge University Press (2006), Theorem 14.4.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from functools import cache
from typing import Any

import sympy as sp

from ..diagrams.partitions import noncrossing_partitions
from ..diagrams.words import Letter, TraceWord
from ..errors import InvalidWord
from .quantities import tr, word_letters

__all__ = ["mixed_moment", "diagram_sum", "polynomial_moment", "to_trace_word", "deterministic_trace"]


def _law_names(laws: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, law in laws.items():
        name = key if isinstance(key, str) else getattr(key, "name", None)
        if not isinstance(name, str):
            raise InvalidWord(
                f"law key {key!r} is neither a letter name nor a sympy Symbol; map "
                "sp.Symbol('W', commutative=False) (or 'W') to its law"
            )
        if not hasattr(law, "cumulant"):
            raise InvalidWord(
                f"{law!r} given for {name!r} is not a law; use e.g. Wishart(q), "
                "Semicircle() or CumulantLaw('B')"
            )
        out[name] = law
    return out


def to_trace_word(word: Any, free_names: Any = ()) -> TraceWord:
    """A :class:`TraceWord` from a sympy noncommutative monomial or a TraceWord.

    Letters whose names are in ``free_names`` are free random letters; the others
    are deterministic.
    """
    if isinstance(word, TraceWord):
        return word
    if isinstance(word, sp.Expr):
        letters = word_letters(word)
        names = set(free_names)
        return TraceWord([Letter(s.name, free=s.name in names) for s in letters])
    raise InvalidWord(
        f"{word!r} is not a word; pass a product of sp.Symbol(..., commutative=False) or a TraceWord"
    )


def deterministic_trace(word: TraceWord) -> sp.Expr:
    """The symbol ``tr(...)`` of a word in deterministic letters (``1`` if empty)."""
    if not word.letters:
        return sp.S.One
    return tr(sp.Mul(*[sp.Symbol(x.name, commutative=False) for x in word.letters]))


def mixed_moment(word: Any, laws: Mapping[Any, Any]) -> sp.Expr:
    """Limit normalized trace of a word in deterministic and mutually free random matrices.

    Parameters
    ----------
    word : sympy.Expr or TraceWord
        A product of noncommutative symbols, e.g. ``A*W*A*W``.
    laws : mapping
        Free letter (symbol or name) to its law (``Wishart(q)``, ``Semicircle()``,
        ``CumulantLaw(...)``, ...). Letters without a law are deterministic, with
        symbolic joint moments ``tr(...)``.

    Returns
    -------
    sympy.Expr
        An expanded polynomial in the laws' cumulants and the deterministic traces.

    Examples
    --------
    >>> import sympy as sp
    >>> from detequiv.derivations.laws import Semicircle
    >>> S = sp.Symbol("S", commutative=False)
    >>> [mixed_moment(S**k, {S: Semicircle()}) for k in (2, 4, 6)]
    [1, 2, 5]
    """
    by_name = _law_names(laws)
    tw = to_trace_word(word, by_name)
    for x in tw.free_letters:
        if x.name not in by_name:  # pragma: no cover - to_trace_word marks only named ones free
            raise InvalidWord(f"free letter {x.name!r} has no law")
    evaluator = _Evaluator(by_name)
    return sp.expand(evaluator(tw))


class _Evaluator:
    """Memoised free-product recursion for one set of laws."""

    def __init__(self, laws: dict[str, Any]) -> None:
        self.laws = laws
        self.cache: dict[TraceWord, sp.Expr] = {}
        self._kappa: dict[tuple[str, int], sp.Expr] = {}

    def kappa(self, name: str, n: int) -> sp.Expr:
        key = (name, n)
        if key not in self._kappa:
            self._kappa[key] = sp.sympify(self.laws[name].cumulant(n))
        return self._kappa[key]

    def __call__(self, word: TraceWord) -> sp.Expr:
        if word in self.cache:
            return self.cache[word]
        value = self._compute(word)
        self.cache[word] = value
        return value

    def _compute(self, word: TraceWord) -> sp.Expr:
        if word.is_deterministic():
            return deterministic_trace(word)
        s = word.free_letters[0]
        letters = word.letters
        pos = [i for i, x in enumerate(letters) if x == s]
        k = len(pos)
        n = len(letters)
        gaps = [
            tuple(letters[j % n] for j in range(pos[i] + 1, pos[i] + 1 + (pos[(i + 1) % k] - pos[i] - 1) % n))
            for i in range(k)
        ]
        terms: Counter[tuple[tuple[int, ...], tuple[TraceWord, ...]]] = Counter()
        for pi in noncrossing_partitions(k):
            sizes = tuple(sorted(len(b) for b in pi.blocks))
            subwords = tuple(
                sorted(
                    (TraceWord([x for i in block for x in gaps[i]]) for block in pi.kreweras().blocks),
                    key=lambda w: (len(w), str(w)),
                )
            )
            terms[(sizes, subwords)] += 1
        out = []
        for (sizes, subwords), count in sorted(terms.items(), key=lambda kv: str(kv[0])):
            factors = [self.kappa(s.name, m) for m in sizes]
            factors.extend(self(w) for w in subwords if w.letters)
            out.append(count * sp.Mul(*factors))
        return sp.Add(*out)


@cache
def _planar_weights(
    word: TraceWord,
) -> tuple[tuple[tuple[tuple[str, int], ...], tuple[TraceWord, ...], int], ...]:
    counts: Counter[tuple[tuple[tuple[str, int], ...], tuple[TraceWord, ...]]] = Counter()
    for d in word.planar_diagrams():
        counts[(tuple(sorted(d.cumulant_blocks)), d.trace_factors)] += 1
    return tuple(
        (blocks, faces, c) for (blocks, faces), c in sorted(counts.items(), key=lambda kv: str(kv[0]))
    )


def diagram_sum(word: Any, laws: Mapping[Any, Any]) -> sp.Expr:
    """The same limit moment, summed over the planar diagrams of the word.

    Each planar diagram contributes the product of the free cumulants of its blocks
    and of the traces of the deterministic letters on each of its faces. This is the
    brute-force witness for :func:`mixed_moment`.

    Examples
    --------
    >>> import sympy as sp
    >>> from detequiv.derivations.laws import Wishart
    >>> A, W = sp.symbols("A W", commutative=False)
    >>> q = sp.Symbol("q", positive=True)
    >>> diagram_sum(A * W * A * W, {W: Wishart(q)})
    q*tr(A)**2 + tr(A**2)
    """
    by_name = _law_names(laws)
    tw = to_trace_word(word, by_name)
    out = []
    for blocks, faces, count in _planar_weights(tw):
        factors = [sp.sympify(by_name[name].cumulant(size)) for name, size in blocks]
        factors.extend(deterministic_trace(f) for f in faces)
        out.append(count * sp.Mul(*factors))
    return sp.expand(sp.Add(*out))


def polynomial_moment(poly: sp.Expr, laws: Mapping[Any, Any], *, method: str = "recursion") -> sp.Expr:
    """Limit normalized trace of a noncommutative polynomial, by linearity over its words.

    Needed for sums of free matrices (additive models): ``tr(M (A + S)^k)`` is the sum of
    the mixed moments of the ``2^k`` words of the expanded power.

    Parameters
    ----------
    poly : sympy.Expr
        A polynomial in noncommutative symbols with commutative coefficients, e.g.
        ``M*(A + S)**2``; it is expanded first.
    laws : mapping
        As in :func:`mixed_moment`.
    method : {'recursion', 'diagrams'}
        :func:`mixed_moment` (default) or :func:`diagram_sum` for each word.

    Examples
    --------
    >>> import sympy as sp
    >>> from detequiv.derivations.laws import Semicircle
    >>> A, S = sp.symbols("A S", commutative=False)
    >>> polynomial_moment((A + S)**2, {S: Semicircle()})
    tr(A**2) + 1
    >>> polynomial_moment(3 + 2 * A, {})
    2*tr(A) + 3
    """
    if method not in ("recursion", "diagrams"):
        raise InvalidWord(f"method={method!r}; use 'recursion' or 'diagrams'")
    one = mixed_moment if method == "recursion" else diagram_sum
    expanded = sp.expand(sp.sympify(poly))
    out = []
    for term in sp.Add.make_args(expanded):
        commutative, noncommutative = term.args_cnc()
        coeff = sp.Mul(*commutative)
        if coeff.free_symbols & {s for s in term.free_symbols if not s.is_commutative}:
            raise InvalidWord(f"term {term} mixes letters into its coefficient")
        if not noncommutative:
            out.append(coeff)
            continue
        out.append(coeff * one(sp.Mul(*noncommutative), laws))
    return sp.expand(sp.Add(*out))
