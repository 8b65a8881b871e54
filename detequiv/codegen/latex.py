r"""LaTeX for derived equivalents: the result and its derivation as one ``align*``.

Every formula is printed by a :class:`sympy.printing.latex.LatexPrinter` (subclass
:class:`DetEquivLatexPrinter`, which spells ``lam`` as :math:`\lambda` and ``kappa_i``
as :math:`\kappa_i` through ``symbol_names``); this module only arranges the printed
pieces in an ``align*`` environment.

>>> import sympy as sp, detequiv as de
>>> lam = sp.Symbol("lam", positive=True); D, P = sp.symbols("D P", positive=True)
>>> Sigma = de.Deterministic("Sigma", D); X = de.Gaussian("X", (P, D))
>>> eq = de.derive(lam * de.resolvent(Sigma @ X.T @ X / P, lam))
>>> tex = to_latex(eq)
>>> tex.splitlines()[0]
'\\begin{align*}'
>>> r"\kappa &= \frac{\lambda}{" in tex
True
"""

from __future__ import annotations

import re
from typing import Any

import sympy as sp
from sympy.printing.latex import LatexPrinter

from ..derivations.layered import LayeredTwoPoint
from ..derivations.onepoint import Contracted, OnePoint, Step
from ..derivations.sandwich import Combination
from ..derivations.twopoint import TwoPoint
from ..errors import InvalidArgument
from ..models.ridge import LossFormula

__all__ = ["DetEquivLatexPrinter", "to_latex", "symbol_names"]

_KAPPA = re.compile(r"kappa(?:_(\d+))?('*)\Z")
_LAM = re.compile(r"(?:lam|lambda)(2|')?\Z")


def symbol_names(*exprs: sp.Basic) -> dict[sp.Symbol, str]:
    r"""LaTeX names for the engine's scalars: ``lam`` -> :math:`\lambda`, ``lam2`` -> :math:`\lambda'`, ``kappa_2`` -> :math:`\kappa_{2}`.

    >>> symbol_names(sp.Symbol("lam") + sp.Symbol("kappa_2"))
    {kappa_2: '\\kappa_{2}', lam: '\\lambda'}
    """  # noqa: E501
    out: dict[sp.Symbol, str] = {}
    for expr in exprs:
        for s in sp.sympify(expr).atoms(sp.Symbol):
            if isinstance(s, sp.MatrixSymbol):
                continue
            if m := _LAM.match(s.name):
                out[s] = r"\lambda" + ("'" if m.group(1) else "")
            elif m := _KAPPA.match(s.name):
                out[s] = (r"\kappa" if m.group(1) is None else r"\kappa_{" + m.group(1) + "}") + m.group(2)
    return dict(sorted(out.items(), key=lambda kv: kv[0].name))


class DetEquivLatexPrinter(LatexPrinter):
    """sympy's LaTeX printer with detequiv's defaults (``\\operatorname{tr}``, ``\\mathbb{I}``)."""

    printmethod = "_latex"


def _text(words: str) -> str:
    escaped = words.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("&", r"\&")
    escaped = escaped.replace("%", r"\%").replace("#", r"\#").replace("$", r"\$")
    return r"\text{" + escaped + "}"


def to_latex(eq: Any, *, derivation: bool = True, settings: dict[str, Any] | None = None) -> str:
    r"""The equivalent, its fixed points and (optionally) its derivation as an ``align*``.

    Parameters
    ----------
    eq : OnePoint or TwoPoint
        A result of :func:`~detequiv.derivations.onepoint.derive` or
        :func:`~detequiv.derivations.twopoint.derive_two_point`.
    derivation : bool
        Also list the steps, each labelled with its rule's name.
    settings : dict, optional
        Extra :class:`~sympy.printing.latex.LatexPrinter` settings.

    Returns
    -------
    str
        ``\begin{align*} ... \end{align*}``, to be used inside a document loading
        ``amsmath`` and ``amssymb`` (see :func:`detequiv.codegen.texdoc.latex_document`).
    """
    if not isinstance(eq, (OnePoint, TwoPoint, LayeredTwoPoint, Contracted, Combination, LossFormula)):
        raise InvalidArgument(
            f"to_latex needs a derived result (derive, derive_two_point, derive_sandwich or a "
            f"LossFormula), got {type(eq).__name__}"
        )
    steps: tuple[Step, ...] = eq.derivation if derivation else ()
    if isinstance(eq, LossFormula):
        heads: list[tuple[sp.Basic, sp.Basic]] = [(sp.Symbol(k), v) for k, v in eq.terms.items()]
        first = [(sp.Symbol(eq.name), sp.Add(*[sp.Symbol(k) for k in eq.terms], evaluate=False))]
    else:
        heads, first = [], [(eq.random.to_sympy(), eq.deterministic)]
    exprs: list[sp.Basic] = [x for pair in first + heads for x in pair]
    exprs += [fp.equation for fp in eq.fixed_points]
    exprs += [x for s in steps for x in (s.before, s.after, s.equation) if x is not None]
    printer = DetEquivLatexPrinter({"symbol_names": symbol_names(*exprs), **(settings or {})})
    p = printer.doprint
    relation = " &= " if isinstance(eq, LossFormula) else r" &\simeq "
    rows = [p(first[0][0]) + relation + p(first[0][1])]
    rows += [p(a) + " &= " + p(b) for a, b in heads]
    rows += [p(fp.symbol) + " &= " + p(fp.rhs) for fp in eq.fixed_points]
    if steps:
        rows.append(
            r"\intertext{" + "Derivation:" + "}" + p(steps[0].before) + " &= " + _step_tail(p, steps[0], 1)
        )
        for i, s in enumerate(steps[1:], start=2):
            rows.append(p(s.before) + " &= " + _step_tail(p, s, i))
    return "\\begin{align*}\n" + "\\\\\n".join(rows) + "\n\\end{align*}"


def _step_tail(p: Any, step: Step, number: int) -> str:
    tail = p(step.after) + r" && " + _text(f"({number}) {step.rule}")
    if step.equation is not None:
        eq = step.equation
        lhs, rhs = (eq.lhs, eq.rhs) if isinstance(eq, sp.Eq) else (eq, None)
        where = p(lhs) + (" = " + p(rhs) if rhs is not None else "")
        tail += r"\\ & \qquad " + _text("with ") + where
    return tail
