r"""One Laurent-polynomial ring for the exact series witnesses.

The coefficients of a :math:`1/\lambda` series are polynomials in the ratios, the
cumulants and the ``tr(...)`` moments, and in their inverses (``1/kappa_1``, ``1/q``).
:class:`LaurentRing` gives each atom a generator and, when it is invertible, an inverse
generator; arithmetic runs in :class:`sympy.polys.rings.PolyRing` (far faster than
``expand``), and :meth:`LaurentRing.reduce` cancels ``a * (1/a)`` to the canonical form.

>>> import sympy as sp
>>> q, k = sp.symbols("q k")
>>> R = LaurentRing({q, k})
>>> x = R.to(q / k) * R.to(k)
>>> R.expr(R.reduce(x))
q
>>> R.expr(R.inv(R.to(2 * q / k)))
k/(2*q)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sympy as sp
from sympy.polys.domains import QQ
from sympy.polys.rings import ring

from ..errors import InvalidArgument
from .quantities import tr

__all__ = ["LaurentRing"]


class LaurentRing:
    """Laurent polynomials over QQ in ``atoms`` (each with an inverse generator when
    ``invertible(atom)``, by default always).

    Attributes
    ----------
    R : sympy.polys.rings.PolyRing
        The polynomial ring of the generators and inverse generators.
    cap : float
        A working precision that a series algorithm may attach (``inf`` by default).
    """

    def __init__(self, atoms: Iterable[sp.Expr], invertible: Callable[[sp.Expr], bool] | None = None) -> None:
        ordered = sorted(set(atoms), key=str)
        inv_ok = (lambda a: True) if invertible is None else invertible
        self.forward = {a: sp.Dummy(f"g{i}") for i, a in enumerate(ordered)}
        self.inverse = {self.forward[a]: sp.Dummy(f"h{i}") for i, a in enumerate(ordered) if inv_ok(a)}
        gens = list(self.forward.values()) + list(self.inverse.values())
        self.R, *_ = ring(gens or [sp.Dummy("unused")], QQ)
        self.n = len(ordered)
        self.inv_index = {i: self.n + j for j, i in enumerate(i for i, a in enumerate(ordered) if inv_ok(a))}
        back: dict[Any, Any] = {g: a for a, g in self.forward.items()}
        back.update({h: 1 / back[g] for g, h in self.inverse.items()})
        self.back = back
        self.cap: float = math.inf

    @classmethod
    def of(cls, exprs: Sequence[sp.Expr]) -> LaurentRing:
        """The ring of the symbols and ``tr(...)`` atoms of ``exprs`` (the symbols inside a
        ``tr`` atom are not atoms of their own)."""
        atoms: set[sp.Expr] = set()
        for e in exprs:
            atoms |= sp.sympify(e).atoms(tr)
            atoms |= sp.sympify(e).free_symbols
        atoms -= {x for a in list(atoms) if isinstance(a, tr) for x in a.free_symbols}
        return cls(atoms)

    def to(self, e: Any) -> Any:
        """``e`` (a sympy expression) as an element of the ring."""
        expr = sp.expand(sp.sympify(e)).xreplace(self.forward)
        expr = expr.replace(
            lambda p: isinstance(p, sp.Pow) and p.exp.is_Integer and p.exp < 0 and p.base in self.inverse,
            lambda p: self.inverse[p.base] ** (-p.exp),
        )
        try:
            return self.R.from_expr(expr)
        except (ValueError, sp.PolynomialError, sp.CoercionFailed) as exc:
            raise InvalidArgument(
                f"the series coefficient {e} is not a Laurent polynomial in its symbols ({exc}); the "
                "exact series check needs polynomial transforms"
            ) from None

    def expr(self, r: Any) -> sp.Expr:
        """An element back as a sympy expression."""
        return sp.expand(r.as_expr().xreplace(self.back))

    def reduce(self, r: Any) -> Any:
        """Cancel ``a * (1/a)`` in every monomial: the canonical form of a Laurent polynomial."""
        if not self.inv_index:
            return r
        out: dict[tuple[int, ...], Any] = {}
        changed = False
        for monom, c in r.items():
            m = list(monom)
            for i, j in self.inv_index.items():
                k = min(m[i], m[j])
                if k:
                    m[i] -= k
                    m[j] -= k
                    changed = True
            key = tuple(m)
            out[key] = out[key] + c if key in out else c
        if not changed:
            return r
        return self.R.from_dict({k: v for k, v in out.items() if v})

    def inv(self, r: Any) -> Any:
        """The inverse of a single monomial (``1``, ``1/kappa_1``, ``q``...)."""
        terms = self.reduce(r).terms()
        if len(terms) != 1:
            raise InvalidArgument(
                f"cannot invert the series constant {self.expr(r)} in the Laurent ring; it must be a "
                "single monomial (e.g. 1, 1/kappa_1, q)"
            )
        ((monom, c),) = terms
        new = [0] * self.R.ngens
        for i in range(self.n):
            j = self.inv_index.get(i)
            e = monom[i] - (monom[j] if j is not None else 0)
            if e > 0:
                if j is None:
                    raise InvalidArgument(
                        f"cannot invert {self.expr(r)}: {list(self.forward)[i]} is not invertible"
                    )
                new[j] = e
            elif e < 0:
                new[i] = -e
        return self.R({tuple(new): 1 / c})
