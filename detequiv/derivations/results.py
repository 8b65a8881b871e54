r"""One protocol for every derived result, and the dispatch of its Monte Carlo witness.

Every result of the engine (one-point, contracted, two-point, layered, sandwich) and of
the learning models (loss formulas and loss curves) is a :class:`Result`:

* ``derivation``: the named steps that produced it (a
  :class:`~detequiv.derivations.derivation.Derivation`);
* ``check_series(order)``: the exact witness, its :math:`1/\lambda` series against the
  planar diagram sums, returning :class:`Evidence`; ``verify_series(order)`` raises on
  failure;
* ``check_monte_carlo(sizes, *, rng, **options)``: the simulation witness;
* ``evaluate(values, ...)``: numbers;
* ``latex_rows(printer)`` and ``_repr_latex_``: one LaTeX printer
  (:mod:`~detequiv.derivations.printing`) for the notebook view and for
  :func:`~detequiv.codegen.latex.to_latex`.

The simulation witnesses live above the engine (:mod:`detequiv.witnesses`, and the
models beside their simulations), so the engine cannot call them by name.
:func:`monte_carlo_witness` is a :func:`functools.singledispatch` generic function on the
result's type: each witness module registers its implementation for the result type it
checks, and ``import detequiv`` imports all of them.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import DetEquivError, InvalidArgument, VerificationError
from .derivation import Derivation, to_sympy
from .printing import DetEquivLatexPrinter, aligned

__all__ = ["Result", "Equivalence", "Evidence", "monte_carlo_witness", "witness_for", "require_model"]


class Evidence(abc.ABC):
    """What a witness returns: ``passed`` (also its truth value), and a readable ``str``."""

    __slots__ = ()

    @property
    @abc.abstractmethod
    def passed(self) -> bool:
        """Whether the check passed."""

    def __bool__(self) -> bool:
        return self.passed


@functools.singledispatch
def monte_carlo_witness(result: Any, sizes: Sequence[int] | None, *, rng: Any, **options: Any) -> Any:
    """Simulate the random problem behind ``result`` and compare (dispatched on its type).

    Implementations are registered by :mod:`detequiv.witnesses` (engine results) and by
    :mod:`detequiv.models` (learning problems); ``sizes=None`` means the witness's default
    sizes.
    """
    raise DetEquivError(
        f"no Monte Carlo witness for {type(result).__name__}; register one with "
        "detequiv.derivations.results.monte_carlo_witness.register"
    )


def require_model(name: str, model: Any) -> Any:
    """``model``, or a clear error when a result built by hand has none."""
    if model is None:
        raise InvalidArgument(f"{name} has no model: numbers and witnesses need the model that derived it")
    return model


def witness_for(result_type: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``function(result, sizes=..., *, rng, **options)`` as the Monte Carlo witness of
    ``result_type`` (a decorator; the function is returned unchanged).

    ``sizes=None`` from :meth:`Result.check_monte_carlo` means the function's default sizes.
    """

    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        def call(result: Any, sizes: Sequence[int] | None, *, rng: Any, **options: Any) -> Any:
            if sizes is None:
                return function(result, rng=rng, **options)
            return function(result, sizes, rng=rng, **options)

        monte_carlo_witness.register(result_type)(call)
        return function

    return register


class Result(abc.ABC):
    """Base of every derived result (see the module docstring for the protocol)."""

    __slots__ = ()

    derivation: Derivation

    # -- witnesses -----------------------------------------------------------
    @abc.abstractmethod
    def check_series(self, order: int = 6) -> Evidence:
        """The exact witness: the :math:`1/\\lambda` series against the planar diagram sums."""

    def verify_series(self, order: int | None = None) -> Evidence:
        """:meth:`check_series` (at its default order unless ``order`` is given), raising
        :class:`~detequiv.errors.VerificationError` with the evidence when it fails."""
        report = self.check_series() if order is None else self.check_series(order)
        if not report.passed:
            raise VerificationError(str(report))
        return report

    def check_monte_carlo(self, sizes: Sequence[int] | None = None, *, rng: Any, **options: Any) -> Any:
        """The simulation witness at several sizes (see the registered implementation for
        the options)."""
        return monte_carlo_witness(self, sizes, rng=rng, **options)

    # -- numbers -------------------------------------------------------------
    @abc.abstractmethod
    def evaluate(self, values: Mapping[Any, Any], /, *args: Any, **options: Any) -> Any:
        """Numbers, from spectra or matrices and the scalars."""

    # -- printing ------------------------------------------------------------
    @abc.abstractmethod
    def latex_rows(self, printer: DetEquivLatexPrinter) -> list[str]:
        """The result and its fixed points as ``align`` rows (``lhs &= rhs``)."""

    def _latex(self, printer: DetEquivLatexPrinter) -> str:
        return aligned(self.latex_rows(printer))

    def _repr_latex_(self) -> str:
        return "$" + DetEquivLatexPrinter().doprint(self) + "$"


class Equivalence(Result):
    """A result ``random ~ deterministic`` with fixed points (one- and two-point equivalents).

    Subclasses have the fields ``random`` (the expression derived), ``deterministic``
    (its equivalent), ``fixed_points`` and ``derivation``.
    """

    __slots__ = ()

    random: Any
    deterministic: Any
    fixed_points: tuple[Any, ...]

    def __str__(self) -> str:
        lines = [f"{self.random}  ~  {self.deterministic}"]
        lines += [f"  {fp}" for fp in self.fixed_points]
        lines.append("derivation:")
        lines += [f"  {i + 1}. {s}" for i, s in enumerate(self.derivation)]
        return "\n".join(lines)

    def latex_rows(self, printer: DetEquivLatexPrinter) -> list[str]:
        rows = [printer._print(to_sympy(self.random)) + r" &\simeq " + printer._print(self.deterministic)]
        rows += [printer._print(fp.symbol) + " &= " + printer._print(fp.rhs) for fp in self.fixed_points]
        return rows
