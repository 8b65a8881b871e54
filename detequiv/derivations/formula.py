r"""A derived loss: named terms of trace atoms and fixed points, with both witnesses.

:class:`LossFormula` is what a learning model's ``test_error`` or ``training_error``
returns: named terms (deterministic sympy expressions in ``lam``, the ridges and
:class:`~detequiv.derivations.traces.mtr` atoms) summing to the total, the random
functional each term replaces (:class:`RandomTerm`), the fixed points and the named steps.
It is model-agnostic: what it needs from the model that produced it (the one-point chain
that gives the ridges, the letters of the exact witness, the simulation) comes through the
abstract :class:`LossModel`.

* :meth:`LossFormula.check_series` expands every term in :math:`1/\lambda` and compares each
  coefficient with the planar diagram sums of its random functional (exact rationals);
* :meth:`LossFormula.check_monte_carlo` simulates the learning problem itself
  (:meth:`LossModel.check_monte_carlo`);
* :meth:`LossFormula.evaluate` gives numbers from spectra or matrices.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from ..errors import InvalidArgument
from .cumulants import check_order
from .derivation import Derivation, FixedPoint, Step
from .expressions import Deterministic, DeterministicVector
from .laurent import LaurentRing
from .mixed import mixed_moment
from .numeric import NumericMatrices, split_values, substitute_scalars, to_number
from .onepoint import OnePoint
from .quantities import tr
from .results import Evidence, Result, require_model
from .series import (
    Series,
    prepare_fixed_points,
    series_add,
    series_eval,
    series_inv,
    series_mul,
    series_pow,
    solve_fixed_point_series,
)
from .traces import flat_factors, mtr

__all__ = ["LossModel", "LossFormula", "RandomTerm", "SeriesReport", "SeriesSpec"]


@dataclass(frozen=True, slots=True)
class RandomTerm:
    """``coeff * F`` with ``F`` a normalized trace or quadratic form of a word in ``G`` (the
    resolvent of the sample covariance at ``lam``), ``S`` (the sample covariance) and
    deterministic sympy matrices; ``vector`` for ``b.T (word) b``."""

    coeff: sp.Expr
    word: tuple[Any, ...]
    vector: sp.MatrixSymbol | None = None

    def __str__(self) -> str:
        body = " ".join(w if isinstance(w, str) else str(w) for w in self.word)
        core = f"{self.vector}.T {body} {self.vector}" if self.vector is not None else f"tr({body})"
        return f"{self.coeff} * {core}"


@dataclass(frozen=True, slots=True)
class SeriesReport(Evidence):
    """Coefficients ``(equivalent, diagram sum)`` of ``lam^0 .. lam^-order`` of each term."""

    order: int
    coefficients: Mapping[str, tuple[tuple[sp.Expr, sp.Expr], ...]]
    failures: Mapping[str, int | None]

    @property
    def passed(self) -> bool:
        return all(v is None for v in self.failures.values())

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        lines = []
        for name, first in self.failures.items():
            if first is None:
                lines.append(
                    f"{name}: coefficients of lam^0 .. lam^-{self.order} agree with the diagram sums"
                )
            else:
                eqv, dia = self.coefficients[name][first]
                lines.append(f"{name}: FAILS at lam^-{first}\n  equivalent: {eqv}\n  diagrams:   {dia}")
        return "\n".join(lines)


class LossModel(abc.ABC):
    """What a :class:`LossFormula` needs from the learning model that derived it."""

    __slots__ = ()

    #: The population covariance, the target vector, and the covariance the test points are
    #: drawn from (``None``: the population covariance; a covariate shift otherwise).
    sigma: Deterministic
    beta: DeterministicVector
    test_covariance: Deterministic | None

    def deterministic_matrices(self) -> dict[str, Deterministic | DeterministicVector]:
        """The deterministic matrices and vectors a loss of this model is a function of, by name."""
        leaves: list[Deterministic | DeterministicVector] = [self.sigma, self.beta]
        if self.test_covariance is not None:
            leaves.append(self.test_covariance)
        return {leaf.name: leaf for leaf in leaves}

    @abc.abstractmethod
    def one_point(self) -> OnePoint:
        """The one-point chain whose fixed points give the loss's ridges."""

    @abc.abstractmethod
    def series_spec(self) -> SeriesSpec:
        """Letters and laws of the exact witness."""

    @abc.abstractmethod
    def check_monte_carlo(
        self, loss: LossFormula, sizes: Sequence[int] | None, *, rng: Any, **options: Any
    ) -> Any:
        """Simulate the learning problem and compare with ``loss``."""


@dataclass(frozen=True, slots=True)
class LossFormula(Result):
    r"""A derived loss: named terms (deterministic sympy expressions) summing to the total.

    The terms are expressions in ``lam``, the ridge ``kappa`` (solved by ``fixed_points``)
    and :class:`mtr` atoms of the deterministic matrices and the target ``beta``.
    """

    name: str
    terms: Mapping[str, sp.Expr]
    random: Mapping[str, tuple[RandomTerm, ...]]
    fixed_points: tuple[FixedPoint, ...]
    derivation: tuple[Step, ...]
    lam: sp.Symbol
    kappa: sp.Symbol
    model: LossModel | None = field(repr=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "derivation", Derivation(self.derivation))
        if self.model is not None and not isinstance(self.model, LossModel):
            raise InvalidArgument(f"model must be a LossModel, got {type(self.model).__name__}")

    def _model(self) -> LossModel:
        return require_model(self.name, self.model)

    @property
    def total(self) -> sp.Expr:
        return sp.Add(*self.terms.values())

    @property
    def deterministic(self) -> sp.Expr:
        return self.total

    def __str__(self) -> str:
        lines = [f"{self.name} = {' + '.join(self.terms)}"]
        lines += [f"  {k} = {v}" for k, v in self.terms.items()]
        lines += [f"  {fp}" for fp in self.fixed_points]
        lines.append("derivation:")
        lines += [f"  {i + 1}. {s}" for i, s in enumerate(self.derivation)]
        return "\n".join(lines)

    @property
    def random_expr(self) -> sp.Expr:
        return sp.Symbol(self.name)

    def latex_rows(self, printer: Any) -> list[str]:
        names = [sp.Symbol(k) for k in self.terms]
        rows = [printer._print(sp.Symbol(self.name)) + " &= " + " + ".join(printer._print(n) for n in names)]
        rows += [
            printer._print(n) + " &= " + printer._print(v)
            for n, v in zip(names, self.terms.values(), strict=True)
        ]
        rows += [printer._print(fp.symbol) + " &= " + printer._print(fp.rhs) for fp in self.fixed_points]
        return rows

    def evaluate(self, values: Mapping[Any, Any]) -> dict[str, complex | float]:
        """Numbers for every term and the total.

        ``values`` maps the deterministic matrices (objects or names) to spectra or
        matrices, the target vector to a 1-D array, ``lam`` and the dimensions and noise
        levels to numbers.
        """
        return _evaluate(self, values)

    def check_series(self, order: int = 6) -> SeriesReport:
        """Exact :math:`1/\\lambda` series of every term against the planar diagram sums of its
        random functional (the exact side never sees the equivalent)."""
        return _check_series(self, order)

    def check_monte_carlo(self, sizes: Sequence[int] | None = None, *, rng: Any, **options: Any) -> Any:
        """Simulation of the learning problem itself (the model's own witness, beside it in
        :mod:`detequiv.models`)."""
        return self._model().check_monte_carlo(self, sizes, rng=rng, **options)


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    r"""What the exact witness of a model's loss needs.

    ``one`` is the one-point chain whose fixed points give the ridges; ``laws`` the free
    letters (replicas are separate letters); ``resolvents`` maps a word item's name to the
    letters ``Y`` of :math:`(\lambda+Y)^{-1}`; ``blocks`` maps a name to plain letters.
    """

    one: Any
    sqrt_name: str
    laws: Mapping[sp.Symbol, Any]
    resolvents: Mapping[str, tuple[sp.Symbol, ...]]
    blocks: Mapping[str, tuple[sp.Symbol, ...]]
    dim: sp.Expr
    margin: int = 4


def _evaluate(loss: LossFormula, values: Mapping[Any, Any]) -> dict[str, complex | float]:
    model = loss._model()
    vec_name = model.beta.name
    rest: dict[Any, Any] = {}
    vectors: dict[str, np.ndarray] = {}
    for key, value in values.items():
        name = key.name if isinstance(key, DeterministicVector) else key if isinstance(key, str) else None
        if name is not None and name == vec_name:
            v = np.asarray(value, dtype=float)
            if v.ndim != 1:
                raise InvalidArgument(f"the vector {name} must be 1-D, got shape {v.shape}")
            vectors[name] = v.reshape(-1, 1)
        else:
            rest[key] = value
    one = model.one_point()
    sol = one.evaluate(rest)
    kappa = sol[loss.kappa]
    mats, scalars = split_values(rest)
    mats.update(vectors)
    numeric = NumericMatrices(mats, scalars)
    lam_value = to_number(scalars[str(loss.lam)], str(loss.lam))
    out: dict[str, complex | float] = {}
    for name, expr in loss.terms.items():
        e = substitute_scalars(sp.sympify(expr), {k: v for k, v in scalars.items() if k != str(loss.lam)})
        rep: dict[sp.Basic, Any] = {loss.lam: sp.sympify(lam_value), loss.kappa: sp.sympify(complex(kappa))}
        for atom in e.atoms(mtr):
            m = atom.args[0].xreplace(rep)
            a = _numeric_matrix(numeric, m)
            rep[atom] = sp.sympify(complex(np.trace(a) / a.shape[0]))
        value = to_number(e.xreplace(rep), name)
        out[name] = value.real if value.imag == 0 else value
    out["total"] = sum(out.values())  # type: ignore[assignment]
    return out


def _numeric_matrix(numeric: Any, m: sp.Basic) -> np.ndarray:
    if isinstance(m, sp.Inverse):
        return np.linalg.inv(_numeric_matrix(numeric, m.arg))
    if isinstance(m, sp.MatMul):
        coeff, mats = m.as_coeff_matrices()
        out = _numeric_matrix(numeric, mats[0])
        for f in mats[1:]:
            out = out @ _numeric_matrix(numeric, f)
        return complex(coeff) * out if coeff != 1 else out
    if isinstance(m, sp.MatAdd):
        return sum((_numeric_matrix(numeric, a) for a in m.args[1:]), _numeric_matrix(numeric, m.args[0]))
    if isinstance(m, sp.Transpose):
        return _numeric_matrix(numeric, m.arg).T
    if isinstance(m, sp.MatPow) and m.args[1].is_Integer and m.args[1] > 0:
        return np.linalg.matrix_power(_numeric_matrix(numeric, m.args[0]), int(m.args[1]))
    if isinstance(m, sp.MatrixSymbol) and m.shape[1] == 1:
        return numeric.mats[m.name]
    return numeric.matrix(m)


class _PrecisionLost(Exception):
    """A term's series lost leading orders to cancellation: retry with more working precision."""


def _check_series(loss: LossFormula, order: int) -> SeriesReport:
    """Both sides of every term's series to ``lam^-order``, and the first disagreement."""
    witness = _LossSeries(loss, check_order(order))
    series = witness.equivalents()
    K = witness.K
    coefficients: dict[str, tuple[tuple[sp.Expr, sp.Expr], ...]] = {}
    failures: dict[str, int | None] = {}
    for name, expr in loss.terms.items():
        randoms = loss.random.get(name, ())
        dia = [sp.S.Zero] * (K + 1) if randoms else [sp.sympify(expr)] + [sp.S.Zero] * K
        for term in randoms:
            dia = [a + b for a, b in zip(dia, witness.exact(term), strict=True)]
        pairs = tuple((sp.expand(a), sp.expand(b)) for a, b in zip(series[name], dia, strict=True))
        coefficients[name] = pairs
        first = next(
            (k for k, (a, b) in enumerate(pairs) if sp.cancel(sp.together(sp.expand(a - b))) != 0), None
        )
        failures[name] = first
    return SeriesReport(order=order, coefficients=coefficients, failures=failures)


class _LossSeries:
    """The two sides of a loss's series: the exact diagram sums of each random functional, and
    the equivalent expanded in ``x = 1/lam`` (``kappa`` as a series, atoms expanded in ``1/kappa``)."""

    def __init__(self, loss: LossFormula, K: int) -> None:
        self.loss, self.K = loss, K
        model = loss._model()
        self.spec = model.series_spec()
        self.d = self.spec.dim
        self.sig = self.spec.sqrt_name
        self.half = sp.Symbol(f"{self.sig}_sqrt", commutative=False)
        self.laws = dict(self.spec.laws)
        self.b_letter = sp.Symbol(f"{model.beta.name}*{model.beta.name}.T", commutative=False)
        self.x = sp.Symbol("x_series")

    def letters(self, m: sp.Basic) -> tuple[sp.Symbol, ...]:
        """The noncommutative letters of a deterministic matrix expression."""
        half, sig = self.half, self.sig
        if isinstance(m, sp.MatrixSymbol):
            return (half, half) if m.name == sig else (sp.Symbol(m.name, commutative=False),)
        if isinstance(m, sp.MatPow) and m.args[0].name == sig:
            return (half,) * int(2 * m.args[1])
        if isinstance(m, sp.MatPow) and m.args[1].is_Integer:
            return self.letters(m.args[0]) * int(m.args[1])
        if isinstance(m, sp.MatMul) and m.as_coeff_matrices()[0] == 1:
            return tuple(y for f in m.args for y in self.letters(f))
        raise InvalidArgument(f"no letters for {m}")

    # -- the exact side ------------------------------------------------------------------
    def _word(self, word: tuple[Any, ...], powers: tuple[int, ...]) -> tuple[sp.Symbol, ...]:
        """The letters of a word whose resolvent items are expanded to the given powers."""
        spec = self.spec
        it = iter(powers)
        out: list[sp.Symbol] = []
        for f in word:
            if isinstance(f, str) and f in spec.resolvents:
                out += list(spec.resolvents[f]) * next(it)
            elif isinstance(f, str):
                out += list(spec.blocks[f])
            else:
                out += list(self.letters(f))
        return tuple(out)

    def exact(self, term: RandomTerm) -> list[sp.Expr]:
        """The diagram sums: ``(lam + Y)^-1 = sum_j (-1)^j x^(j+1) Y^j`` for every resolvent item."""
        K, x = self.K, self.x
        coeff = sp.sympify(term.coeff).xreplace({self.loss.lam: 1 / x})
        n_g = sum(1 for f in term.word if isinstance(f, str) and f in self.spec.resolvents)
        out = [sp.S.Zero] * (K + 1)
        c_series = sp.series(coeff, x, 0, K + 3).removeO() if coeff.has(x) else coeff
        for total in range(0, K + 1):
            for powers in itertools.product(range(total + 1), repeat=n_g):
                if sum(powers) != total:
                    continue
                word = self._word(term.word, powers)
                if term.vector is not None:
                    value = self.d * mixed_moment(sp.Mul(self.b_letter, *word), self.laws)
                else:
                    value = mixed_moment(sp.Mul(*word), self.laws) if word else sp.S.One
                contrib = sp.expand((-1) ** total * x ** (total + n_g) * value * c_series)
                for k in range(K + 1):
                    out[k] += contrib.coeff(x, k)
        return [sp.expand(v) for v in out]

    # -- the equivalent side -------------------------------------------------------------
    def expansion(self, atom: mtr, work: int) -> list[tuple[sp.Expr, int, sp.Expr]]:
        """``[(trace, total power j, sign)]``: ``mtr = sum sign * kappa^-(j + #inv) * trace``."""
        kappa, d = self.loss.kappa, self.d
        m = atom.args[0]
        scalar = m.as_coeff_matrices()[0] if isinstance(m, sp.MatMul) else sp.S.One
        mats = flat_factors(m)
        vec = bool(mats) and isinstance(mats[0], sp.Transpose) and isinstance(mats[0].arg, sp.MatrixSymbol)
        if vec:
            mats = list(mats[1:-1])
        inv = [f for f in mats if isinstance(f, sp.Inverse)]
        out = []
        for powers in itertools.product(range(work + 1), repeat=len(inv)):
            if sum(powers) > work:
                continue
            it = iter(powers)
            word: list[sp.Symbol] = []
            for f in mats:
                if isinstance(f, sp.Inverse):
                    ys = [a for a in f.arg.args if not a.has(kappa)]
                    if len(ys) != 1 or sp.simplify(f.arg - ys[0] - kappa * sp.Identity(d)) != sp.ZeroMatrix(
                        d, d
                    ):
                        raise InvalidArgument(f"cannot expand {f} in 1/{kappa}")
                    word += list(self.letters(ys[0])) * next(it)
                else:
                    word += list(self.letters(f))
            t = d * tr(sp.Mul(self.b_letter, *word)) if vec else (tr(sp.Mul(*word)) if word else sp.S.One)
            out.append((scalar * t, sum(powers) + len(inv), (-1) ** sum(powers)))
        return out

    def equivalents(self) -> dict[str, list[sp.Expr]]:
        """Every term's series; lam^2 prefactors, derivatives and the differences of a split cancel
        leading orders, so the working precision starts at the model's margin and widens."""
        margin = self.spec.margin
        for margin in (self.spec.margin, self.spec.margin + 4, self.spec.margin + 8):
            try:
                return self._equivalents(self.K + margin)
            except _PrecisionLost:
                continue
        raise InvalidArgument(
            f"the series of a term of {self.loss.name} lost precision even with margin {margin}"
        )

    def _equivalents(self, work: int) -> dict[str, list[sp.Expr]]:
        """Series of every term at working precision ``work`` (raises _PrecisionLost)."""
        loss = self.loss
        prepared = prepare_fixed_points(self.spec.one, work, {self.sig})
        atoms = sorted({a for e in loss.terms.values() for a in sp.sympify(e).atoms(mtr)}, key=str)
        expansions = {a: self.expansion(a, work) for a in atoms}
        exprs: list[Any] = []
        for _, _, terms, tg in prepared:
            exprs += [c for _, c in terms] + [y for ms, _ in tg for y in ms]
        exprs += [t for ex in expansions.values() for t, _, _ in ex]
        for e in loss.terms.values():
            scalars = {
                a
                for a in sp.sympify(e).xreplace({m: 1 for m in sp.sympify(e).atoms(mtr)}).free_symbols
                if not isinstance(a, sp.MatrixSymbol)
            }
            exprs.append(sp.Add(*(scalars - {loss.lam, loss.kappa}), sp.S.Zero))
        alg = LaurentRing.of(exprs)
        u = solve_fixed_point_series(prepared, work, alg)[loss.kappa]
        expander = _AtomSeries(alg, work + 1, (-1, list(u[: work + 1])), expansions)
        return {name: expander.term(expr, loss, self.K) for name, expr in loss.terms.items()}


class _AtomSeries:
    """Series of trace atoms in powers of ``1/kappa``, and of whole terms, in a Laurent ring."""

    def __init__(self, alg: LaurentRing, n: int, kappa: Series, expansions: dict[Any, Any]) -> None:
        self.alg, self.n, self.kappa, self.expansions = alg, n, kappa, expansions
        self.inv_kappa = series_inv(kappa, alg)
        self.powers: list[Series] = [series_pow(self.inv_kappa, 0, alg)]

    def inv_power(self, j: int) -> Series:
        while len(self.powers) <= j:
            self.powers.append(series_mul(self.powers[-1], self.inv_kappa, self.alg))
        return self.powers[j]

    def atom(self, atom: mtr) -> Series:
        alg = self.alg
        grouped: dict[int, Any] = {}
        for t, power, sign in self.expansions[atom]:
            grouped[power] = grouped.get(power, alg.R.zero) + alg.to(sign * t)
        total: Series = (0, [alg.R.zero] * self.n)
        for power, coeff in grouped.items():
            c = self.inv_power(power)
            total = series_add(total, (c[0], [v * coeff for v in c[1]]), alg)
        return total

    def term(self, expr: sp.Expr, loss: LossFormula, K: int) -> list[sp.Expr]:
        alg, n = self.alg, self.n
        e = sp.sympify(expr)
        env: dict[sp.Basic, Series] = {
            loss.lam: (-1, [alg.R.one] + [alg.R.zero] * (n - 1)),
            loss.kappa: self.kappa,
        }
        for atom in e.atoms(mtr):
            env[atom] = self.atom(atom)
        shift, cs = series_eval(e, env, n, alg)
        if shift < 0:
            if any(cs[:-shift]):
                raise InvalidArgument(f"the term has a pole at lam = infinity: {expr}")
            full = cs[-shift:]
        else:
            full = [alg.R.zero] * shift + cs
        if len(full) < K + 1:
            raise _PrecisionLost(f"the series of {expr} lost precision ({len(full)} < {K + 1} terms)")
        return [alg.expr(c) for c in full[: K + 1]]
