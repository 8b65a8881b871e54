r"""LaTeX for derived results: the result and its derivation as one ``align*``.

Every formula is printed by the one printer of the project,
:class:`~detequiv.derivations.printing.DetEquivLatexPrinter` (``lam`` as :math:`\lambda`,
``kappa_i`` as :math:`\kappa_i`, ``sigma2`` as :math:`\sigma^2`), through each result's
``latex_rows`` and each step's ``latex_row``, the same pieces its ``_repr_latex_`` shows in
a notebook; this module only arranges them in an ``align*`` environment.

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

from typing import Any

import sympy as sp

from ..derivations.printing import DetEquivLatexPrinter, symbol_latex
from ..derivations.results import Result
from ..errors import InvalidArgument

__all__ = ["DetEquivLatexPrinter", "to_latex", "symbol_names"]


def symbol_names(*exprs: sp.Basic) -> dict[sp.Symbol, str]:
    r"""The engine's LaTeX names of the scalars in ``exprs`` (``lam`` -> :math:`\lambda`, ``lam2`` ->
    :math:`\lambda'`, ``kappa_2`` -> :math:`\kappa_{2}`, ``sigma2`` -> :math:`\sigma^{2}`...).

    >>> symbol_names(sp.Symbol("lam") + sp.Symbol("kappa_2"))
    {kappa_2: '\\kappa_{2}', lam: '\\lambda'}
    """
    out: dict[sp.Symbol, str] = {}
    for expr in exprs:
        for s in sp.sympify(expr).atoms(sp.Symbol):
            if isinstance(s, sp.MatrixSymbol):
                continue
            name = symbol_latex(s.name)
            if name is not None:
                out[s] = name
    return dict(sorted(out.items(), key=lambda kv: kv[0].name))


def to_latex(eq: Result, *, derivation: bool = True, settings: dict[str, Any] | None = None) -> str:
    r"""The result, its fixed points and (optionally) its derivation as an ``align*``.

    Parameters
    ----------
    eq : Result
        Any derived result: a one-point, contracted, two-point, layered or sandwich
        equivalent, a loss formula or a loss curve.
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
    if not isinstance(eq, Result):
        raise InvalidArgument(
            f"to_latex needs a derived result (derive, derive_two_point, derive_sandwich, a "
            f"LossFormula or a LossCurve), got {type(eq).__name__}"
        )
    printer = DetEquivLatexPrinter(settings or {})
    rows = eq.latex_rows(printer)
    steps = eq.derivation if derivation else ()
    if steps:
        rows.append(r"\intertext{Derivation:}" + steps[0].latex_row(printer, 1))
        rows += [s.latex_row(printer, i) for i, s in enumerate(steps[1:], start=2)]
    return "\\begin{align*}\n" + "\\\\\n".join(rows) + "\n\\end{align*}"
