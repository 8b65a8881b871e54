r"""One LaTeX printer for everything detequiv prints: results, steps, derivations, documents.

:class:`DetEquivLatexPrinter` is sympy's :class:`~sympy.printing.latex.LatexPrinter` with
the engine's spelling of its scalars, so that every ``_repr_latex_``, :func:`latex` and
:func:`~detequiv.codegen.latex.to_latex` print the same thing:

* ``lam`` as :math:`\lambda` (``lam2``, ``lam'`` as :math:`\lambda'`), ``kappa``,
  ``kappa_i`` as :math:`\kappa`, :math:`\kappa_{i}`;
* a variance ``sigma2`` (``sigma2_test``...) as :math:`\sigma^{2}`;
* multi-letter words that are not Greek letters (``bias``, ``E_test``) upright, as
  :math:`\mathrm{bias}`, :math:`E_{\mathrm{test}}`.

Objects take part through sympy's printer protocol: anything with a method
``_latex(self, printer)`` is printed by it (results, :class:`~detequiv.derivations.derivation.Step`,
laws, ``df1``...), recursing with ``printer._print``.

>>> import sympy as sp
>>> latex(sp.Symbol("lam") * sp.Symbol("kappa_2") + sp.Symbol("sigma2"))
'\\kappa_{2} \\lambda + \\sigma^{2}'
>>> latex(sp.Symbol("E_test") + sp.Symbol("bias"))
'E_{\\mathrm{test}} + \\mathrm{bias}'
>>> aligned(["a &= b", "c &= d"])
'\\begin{aligned}a &= b\\\\c &= d\\end{aligned}'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import sympy as sp
from sympy.printing.latex import LatexPrinter

__all__ = ["DetEquivLatexPrinter", "latex", "aligned", "text", "symbol_latex"]

_KAPPA = re.compile(r"kappa(?:_(\d+))?('*)\Z")
_LAM = re.compile(r"(?:lam|lambda)(2|')?\Z")
_SIGMA2 = re.compile(r"sigma2(?:_(\w+))?\Z")
_WORD = re.compile(r"[A-Za-z]{2,}\Z")
_GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda",
    "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega",
}  # fmt: skip


def _word(part: str) -> str:
    """A name part: Greek letters and one-letter names as sympy prints them, words upright."""
    if part.lower() in _GREEK or not _WORD.match(part):
        return sp.latex(sp.Symbol(part))
    return r"\mathrm{" + part + "}"


def symbol_latex(name: str) -> str | None:
    r"""The engine's LaTeX for a scalar name, or ``None`` to let sympy decide.

    >>> symbol_latex("lam2"), symbol_latex("kappa_1"), symbol_latex("sigma2_test")
    ("\\lambda'", '\\kappa_{1}', '\\sigma^{2}_{\\mathrm{test}}')
    >>> symbol_latex("E_train"), symbol_latex("x") is None
    ('E_{\\mathrm{train}}', True)
    """
    if m := _LAM.match(name):
        return r"\lambda" + ("'" if m.group(1) else "")
    if m := _KAPPA.match(name):
        return (r"\kappa" if m.group(1) is None else r"\kappa_{" + m.group(1) + "}") + m.group(2)
    if m := _SIGMA2.match(name):
        return r"\sigma^{2}" + ("" if m.group(1) is None else "_{" + _word(m.group(1)) + "}")
    head, _, tail = name.partition("_")
    if tail and _WORD.match(tail) and head.isalpha():
        return _word(head) + "_{" + _word(tail) + "}"
    if _WORD.match(name) and name.lower() not in _GREEK:
        return r"\mathrm{" + name + "}"
    return None


class DetEquivLatexPrinter(LatexPrinter):
    """sympy's LaTeX printer with detequiv's spelling of ``lam``, ``kappa``, ``sigma2`` and words."""

    printmethod = "_latex"

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:
        names = self._settings.get("symbol_names") or {}
        if expr in names:
            return names[expr]
        own = symbol_latex(expr.name)
        return own if own is not None else super()._print_Symbol(expr, style=style)


def latex(obj: Any, **settings: Any) -> str:
    """LaTeX of a sympy expression or any object with a ``_latex(printer)`` method."""
    return DetEquivLatexPrinter(settings).doprint(obj)


def aligned(rows: Sequence[str]) -> str:
    """Rows ``lhs &= rhs`` as one ``aligned`` block (inline math in notebooks)."""
    return r"\begin{aligned}" + r"\\".join(rows) + r"\end{aligned}"


def text(words: str) -> str:
    r"""Plain words inside math, with TeX's special characters escaped (``\text{...}``).

    >>> text("a_b & 50% #1 $x$ {y} ~^\\")
    '\\text{a\\_b \\& 50\\% \\#1 \\$x\\$ \\{y\\} \\textasciitilde{}\\textasciicircum{}\\textbackslash{}}'
    """
    out = []
    for ch in words:
        if ch == "\\":
            out.append(r"\textbackslash{}")
        elif ch == "~":
            out.append(r"\textasciitilde{}")
        elif ch == "^":
            out.append(r"\textasciicircum{}")
        elif ch in "_&%#${}":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return r"\text{" + "".join(out) + "}"
