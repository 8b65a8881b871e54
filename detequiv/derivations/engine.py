r"""The derivation engine: rules tried in order on an expression, steps yielded as made.

:func:`derive_steps` is the generator of a derivation (DisCoPy's ``normalize``): the first
rule whose ``match`` accepts the expression is applied, its steps are yielded as they are
made, and the result carrying exactly those steps is returned. :func:`collect` runs it to
the end; when a step fails, the exception carries the partial derivation. A rule continues
with a sub-expression through ``yield from context.derive(sub_expression)``, which is how
the strategies of :mod:`~detequiv.derivations.derive` (and a user's own rules) compose.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any

import sympy as sp  # noqa: F401 - used by doctests

from ..errors import InvalidArgument
from .derivation import Derivation, FixedPoint, Rule, Step  # noqa: F401 - FixedPoint in doctests
from .results import Result

__all__ = ["Context", "Steps", "derive_steps", "collect"]


#: What a rule's ``apply`` returns: a generator of steps whose return value is the result.
Steps = Generator[Step, None, Any]


@dataclass(frozen=True, slots=True)
class Context:
    """What a rule sees besides the expression: the rules in force and the averaging order.

    ``rules`` are tried in order by :func:`derive_steps`; a rule continues the derivation
    of a sub-expression with ``inner = yield from context.derive(sub_expression)``.
    """

    rules: tuple[Rule, ...]
    order: tuple[str, ...] | None = None

    def derive(self, expr: Any, **changes: Any) -> Steps:
        """The steps deriving ``expr`` with these rules (``changes`` replace fields)."""
        return derive_steps(expr, replace(self, **changes) if changes else self)


def _recorded(steps: Steps, record: list[Step]) -> Steps:
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            return stop.value
        record.append(step)
        yield step


def derive_steps(expr: Any, context: Context) -> Steps:
    """The generator of a derivation (DisCoPy's ``normalize``): the first rule of
    ``context.rules`` whose ``match`` accepts ``expr`` is applied; its steps are yielded as
    they are made, and the result, carrying exactly those steps, is returned.

    >>> x = sp.Symbol("x")
    >>> double = Rule("double", "x + x = 2 x", "algebra", match=lambda e, c: e if e == x + x else None,
    ...               apply=lambda m, c: (yield Step(double, m, 2 * x)) or FixedPoint(x, sp.Eq(x, 2 * x)))
    >>> steps = derive_steps(x + x, Context((double,)))
    >>> print(next(steps))
    [double] 2*x  =  2*x
    """
    for rule in context.rules:
        if rule.match is None or rule.apply is None:
            continue
        found = rule.match(expr, context)
        if found is None:
            continue
        record: list[Step] = []
        result = yield from _recorded(rule.apply(found, context), record)
        if not isinstance(result, Result):
            raise InvalidArgument(
                f"the rule {rule.name} returned {type(result).__name__}, not a Result; its apply must "
                "return a derived result (e.g. the one of context.derive(...))"
            )
        return replace(result, derivation=Derivation(record))
    names = ", ".join(r.name for r in context.rules if r.match is not None)
    raise InvalidArgument(f"no rule derives {expr} (tried: {names})")


def collect(steps: Steps) -> Any:
    """Run a derivation to its end and return its result (``derive`` is this collector).

    When a step fails, the exception raised carries the steps made so far as its
    ``derivation`` attribute (and in a note), so a failed derivation shows how far it got.
    """
    record: list[Step] = []
    try:
        while True:
            record.append(next(steps))
    except StopIteration as stop:
        return stop.value
    except Exception as err:
        partial = Derivation(record)
        try:
            err.derivation = partial  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - exceptions with __slots__
            pass
        if record:
            err.add_note("derivation so far:\n" + str(partial))
        raise
