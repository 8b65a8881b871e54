r"""Derivations you can read: rules as objects, the steps they produce, fixed points.

A :class:`Rule` is a named piece of mathematics with its statement and reference (and,
for the rules that rewrite a whole expression, a ``match`` and an ``apply``, in the manner
of PyZX's matcher/applier pairs). Each application of a rule is a :class:`Step` that holds
the rule itself, the expression before and after, why it applies, and the equation it
introduced. A :class:`Derivation` is the tuple of steps, printable and rendered as LaTeX.
:class:`FixedPoint` is one equation of the renormalized ridges, and :func:`solve_order`
the order in which a system of them is solved.

>>> import sympy as sp
>>> x = sp.Symbol("x")
>>> double = Rule("double", "x + x = 2 x", "algebra")
>>> d = Derivation([Step(double, x + x, 2 * x, "collect equal terms")])
>>> print(d)
1. [double] 2*x  =  2*x   (collect equal terms)
>>> d.rules
('double',)
>>> d[0].rule is double, d[0].reference
(True, 'algebra')
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import sympy as sp

from ..errors import InvalidArgument
from .expressions import MatrixExpr, Trace
from .printing import aligned, latex, text

__all__ = [
    "Rule",
    "Step",
    "Derivation",
    "FixedPoint",
    "solve_order",
    "to_sympy",
]


@dataclass(frozen=True, slots=True)
class Rule:
    r"""A named rule of the engine: what it says, where it is proved, and how it is applied.

    Attributes
    ----------
    name : str
        The rule's name, after the mathematics (``free_factor_renormalization``).
    statement : str
        The identity or approximation it applies, in one line.
    reference : str
        Where it is stated and proved.
    match : callable, optional
        For rules that rewrite a whole expression (the strategies of
        :func:`~detequiv.derivations.derive.derive`): ``match(expr, context)`` returns a
        match object, or ``None`` when the rule does not apply.
    apply : callable, optional
        ``apply(match, context)``, a generator of :class:`Step` whose return value is the
        result (the derivation continues with ``yield from context.derive(...)``).

    Rules compare by name and statement; the callables do not take part.

    >>> Rule("ridge_rescaling", "lam (lam + c Y)^-1 = lam' (lam' + Y)^-1, lam' = lam / c", "algebra")
    Rule(name='ridge_rescaling', statement="lam (lam + c Y)^-1 = lam' (lam' + Y)^-1, lam' = lam / c", reference='algebra')
    """  # noqa: E501

    name: str
    statement: str
    reference: str
    match: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    apply: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise InvalidArgument(
                f"a rule's name must be an identifier (letters, digits, _), got {self.name!r}"
            )

    def __str__(self) -> str:
        return self.name

    def _latex(self, printer: Any) -> str:
        return text(self.name)


def rule_table(*rules: Rule) -> dict[str, Rule]:
    """Rules by name, in order; two rules with one name are refused.

    >>> rule_table(Rule("a", "a = a", "none"), Rule("b", "b = b", "none")).keys()
    dict_keys(['a', 'b'])
    """
    table: dict[str, Rule] = {}
    for rule in rules:
        if rule.name in table:
            raise InvalidArgument(f"two rules are named {rule.name!r}; give each rule its own name")
        table[rule.name] = rule
    return table


def to_sympy(side: Any) -> sp.Basic:
    """A step's side as a sympy object (detequiv expressions through their ``to_sympy``)."""
    return side.to_sympy() if isinstance(side, (MatrixExpr, Trace)) else side


@dataclass(frozen=True, slots=True)
class Step:
    """One application of a :class:`Rule`: ``before = after`` (and an equation it introduced).

    Attributes
    ----------
    rule : Rule
        The rule applied.
    before, after : sympy.Basic
        The expression before and after the rule.
    note : str
        Why the rule applies here.
    equation : sympy.Eq or None
        A fixed-point equation the step introduced or rewrote.
    """

    rule: Rule
    before: Any
    after: Any
    note: str = ""
    equation: sp.Basic | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rule, Rule):
            raise InvalidArgument(f"Step.rule must be a Rule, got {type(self.rule).__name__} {self.rule!r}")

    @property
    def name(self) -> str:
        """The rule's name."""
        return self.rule.name

    @property
    def reference(self) -> str:
        """Where the rule is stated."""
        return self.rule.reference

    def latex_row(self, printer: Any, number: int | None = None) -> str:
        """``before &= after`` with the rule's name (and the equation) as an ``align`` row."""
        label = self.rule.name if number is None else f"({number}) {self.rule.name}"
        row = printer._print(to_sympy(self.before)) + " &= " + printer._print(to_sympy(self.after))
        row += r" && " + text(label)
        if self.equation is not None:
            eq = self.equation
            lhs, rhs = (eq.lhs, eq.rhs) if isinstance(eq, sp.Eq) else (eq, None)
            where = printer._print(lhs) + (" = " + printer._print(rhs) if rhs is not None else "")
            row += r"\\ & \qquad " + text("with ") + where
        return row

    def _latex(self, printer: Any) -> str:
        return aligned([self.latex_row(printer)])

    def _repr_latex_(self) -> str:
        return "$" + latex(self) + "$"

    def __str__(self) -> str:
        out = f"[{self.rule.name}] {self.before}  =  {self.after}"
        if self.equation is not None:
            out += f"   with {self.equation}"
        if self.note:
            out += f"   ({self.note})"
        return out


class Derivation(tuple):  # type: ignore[type-arg]
    r"""The named steps of a derivation, in order (a tuple of :class:`Step`).

    Prints one numbered step per line and renders as an aligned LaTeX block in Jupyter.
    """

    __slots__ = ()

    def __iter__(self) -> Iterator[Step]:
        return super().__iter__()

    @property
    def rules(self) -> tuple[str, ...]:
        """The rules' names, in order."""
        return tuple(s.rule.name for s in self)

    def stats(self) -> dict[str, int]:
        """Steps per rule (PyZX's ``Stats``), in order of first use.

        >>> x = sp.Symbol("x"); r = Rule("r", "x = x", "none")
        >>> Derivation([Step(r, x, x), Step(r, x, x)]).stats()
        {'r': 2}
        """
        out: dict[str, int] = {}
        for s in self:
            out[s.rule.name] = out.get(s.rule.name, 0) + 1
        return out

    def __str__(self) -> str:
        return "\n".join(f"{i + 1}. {s}" for i, s in enumerate(self))

    def latex_rows(self, printer: Any) -> list[str]:
        """One ``align`` row per step, numbered."""
        return [s.latex_row(printer, i + 1) for i, s in enumerate(self)]

    def _latex(self, printer: Any) -> str:
        return aligned(self.latex_rows(printer))

    def _repr_latex_(self) -> str:
        return "$" + latex(self) + "$"


@dataclass(frozen=True, slots=True)
class FixedPoint:
    """A fixed-point equation ``symbol = rhs``, possibly implicit (``symbol`` in ``rhs``).

    ``depends_on`` lists the other fixed-point symbols ``rhs`` uses (not ``symbol``).
    """

    symbol: sp.Symbol
    equation: sp.Eq
    depends_on: tuple[sp.Symbol, ...] = ()

    @property
    def rhs(self) -> sp.Expr:
        return self.equation.rhs

    @property
    def implicit(self) -> bool:
        """Whether the symbol appears on the right-hand side (solved by a branch solver)."""
        return self.symbol in self.rhs.free_symbols

    def __str__(self) -> str:
        return f"{self.symbol} = {self.rhs}"

    def _latex(self, printer: Any) -> str:
        return printer._print(self.symbol) + " = " + printer._print(self.rhs)

    def _repr_latex_(self) -> str:
        return "$" + latex(self) + "$"


def solve_order(fixed_points: Sequence[FixedPoint]) -> tuple[FixedPoint, ...]:
    """The fixed points in an order where each depends only on earlier ones.

    Self-references (implicit equations) are allowed; a cycle through two or more
    equations, or a dependency on an undefined fixed point, raises
    :class:`InvalidArgument`.

    >>> import sympy as sp
    >>> a, b, lam = sp.symbols("a b lam")
    >>> fps = [FixedPoint(a, sp.Eq(a, lam + b), (b,)), FixedPoint(b, sp.Eq(b, lam / (1 + b)))]
    >>> [fp.symbol for fp in solve_order(fps)]
    [b, a]
    >>> solve_order([FixedPoint(a, sp.Eq(a, b), (b,)), FixedPoint(b, sp.Eq(b, a), (a,))])
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: cyclic fixed-point definitions a -> b -> a; compose the layers into one implicit equation (see layer_composition)
    """  # noqa: E501
    graph = nx.DiGraph()
    by_symbol = {fp.symbol: fp for fp in fixed_points}
    if len(by_symbol) != len(fixed_points):
        raise InvalidArgument("two fixed points define the same symbol; keep one equation each")
    for fp in fixed_points:
        graph.add_node(fp.symbol)
        for dep in fp.depends_on:
            if dep not in by_symbol:
                raise InvalidArgument(
                    f"{fp.symbol} depends on {dep}, which no fixed point defines; the "
                    "system is underdetermined: add an equation for it"
                )
            if dep != fp.symbol:
                graph.add_edge(dep, fp.symbol)
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join(str(u) for u, _ in cycle) + f" -> {cycle[0][0]}"
        raise InvalidArgument(
            f"cyclic fixed-point definitions {path}; compose the layers into one "
            "implicit equation (see layer_composition)"
        )
    order = nx.lexicographical_topological_sort(graph, key=str)
    return tuple(by_symbol[s] for s in order)
