r"""The Monte Carlo bookkeeping shared by the models' simulation witnesses (the ``*_mc`` modules).

Every witness compares a derived value with the mean of a simulated random functional under
the project's acceptance rule :math:`|\overline{\rm MC}-{\rm exact}|<n_{se}\,{\rm s.e.}
+c_{finite}|{\rm exact}|/N`. What they share lives here, once:

* :func:`size_function`: the spectrum or the target of the simulated problem at dimension
  ``D``, the caller's function of ``D`` or the witness's default, as a float array;
* :func:`seed_matrix` and :class:`SeededDraws`: :func:`~detequiv.witnesses.acceptance.verify`
  samples ``N x N`` matrices, so a witness asks it for a zero matrix whose first row carries
  :data:`SEED_WIDTH` integers, and simulates the learning problem seeded by them, once per
  (size, seed): every term of a loss reads its value from the same draw;
* :func:`verify_terms`: one :func:`~detequiv.witnesses.acceptance.verify` report per term,
  every term replaying the stream of one master seed drawn from the caller's generator (the
  same draws for every term); :func:`check_loss_terms` does this for the terms and the total
  of a :class:`~detequiv.derivations.formula.LossFormula`;
* :func:`replay`, :func:`acceptance_row` and :func:`reports_check`: the same rule for the
  witnesses that draw their samples themselves (kernel ridge regression and GCV).

>>> import numpy as np
>>> draws = SeededDraws(lambda d, rng: {"mean": float(rng.standard_normal(d).mean())})
>>> check = verify_terms(
...     [TermCheck(lambda d: 0.0, draws.functional("mean", lambda out: out["mean"]), "mean of N(0, 1)")],
...     sizes=(50, 100), n_samples=10, rng=np.random.default_rng(0), c_finite=0.0, n_se=4.0)
>>> check.passed, [row.N for row in check.reports[0].rows]
(True, [50, 100])
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np

from ..derivations.formula import LossFormula
from ..witnesses.acceptance import VerificationReport, VerificationRow, verify
from ..witnesses.common import MonteCarloCheck

__all__ = [
    "SEED_WIDTH",
    "size_function",
    "seed_matrix",
    "SeededDraws",
    "TermCheck",
    "verify_terms",
    "check_loss_terms",
    "replay",
    "acceptance_row",
    "reports_check",
]

T = TypeVar("T")

#: How many integers of the first row of a :func:`seed_matrix` seed one simulated draw.
SEED_WIDTH = 4

Sampled = dict[Hashable, np.ndarray]


def size_function(
    given: Callable[[int], Any] | None, default: Callable[[int], Any]
) -> Callable[[int], np.ndarray]:
    """``D -> float array``: ``given(D)`` when a function is given, else ``default(D)``.

    Parameters
    ----------
    given : callable or None
        The caller's ``D -> values`` (a spectrum, a target).
    default : callable
        The witness's own ``D -> values``.

    Returns
    -------
    callable
        ``D -> numpy.ndarray`` of floats.

    Examples
    --------
    >>> import numpy as np
    >>> size_function(None, lambda d: np.arange(1, d + 1) ** -1.0)(3).tolist()
    [1.0, 0.5, 0.3333333333333333]
    >>> size_function(lambda d: [2] * d, np.ones)(2).tolist()
    [2.0, 2.0]
    """

    def at(d: int) -> np.ndarray:
        return np.asarray(given(d) if given is not None else default(d), dtype=float)

    return at


def seed_matrix(n: int, rng: np.random.Generator) -> np.ndarray:
    """A :func:`~detequiv.witnesses.acceptance.verify` sampler that carries the seed of one draw.

    An ``n x n`` zero matrix (``verify`` samples square matrices; ``n`` is the dimension
    ``D`` of the draw) whose first row starts with :data:`SEED_WIDTH` integers in
    ``[1, 2**31)`` from ``rng``.

    Parameters
    ----------
    n : int
        The size ``verify`` asks for (at least :data:`SEED_WIDTH`).
    rng : numpy.random.Generator
        Draws the seed.

    Returns
    -------
    numpy.ndarray, shape (n, n)

    Examples
    --------
    >>> import numpy as np
    >>> m = seed_matrix(5, np.random.default_rng(0))
    >>> m.shape, bool(np.all(m[0, :4] >= 1)), float(abs(m[1:]).sum() + abs(m[0, 4:]).sum())
    ((5, 5), True, 0.0)
    """
    out = np.zeros((n, n))
    out[0, :SEED_WIDTH] = rng.integers(1, 2**31, size=SEED_WIDTH)
    return out


class SeededDraws(Generic[T]):
    """Simulated draws of a learning problem, one per (dimension, seed) of a :func:`seed_matrix`.

    Calling it with the matrices ``verify`` sampled (key ``"seed"``) returns the draw of that
    seed, simulated on first use by ``simulate(D, rng)`` with ``rng`` seeded by the matrix's
    first :data:`SEED_WIDTH` entries, and kept: the functionals of every term read the same
    draw, and a term checked after another finds it simulated already.

    Parameters
    ----------
    simulate : callable
        ``(D, numpy.random.Generator) -> draw``.

    Examples
    --------
    >>> import numpy as np
    >>> calls = []
    >>> draws = SeededDraws(lambda d, rng: calls.append(d) or {"x": rng.standard_normal()})
    >>> sampled = {"seed": seed_matrix(5, np.random.default_rng(0))}
    >>> draws(sampled) is draws(sampled), calls
    (True, [5])
    >>> draws.functional("x", lambda out: out["x"]).__name__
    'x'
    """

    def __init__(self, simulate: Callable[[int, np.random.Generator], T]) -> None:
        self._simulate = simulate
        self._draws: dict[tuple[Any, ...], T] = {}

    def __call__(self, sampled: Mapping[Hashable, np.ndarray]) -> T:
        seed = sampled["seed"]
        d = seed.shape[0]
        key = (d, tuple(seed[0, :SEED_WIDTH]))
        if key not in self._draws:
            local = np.random.default_rng(seed[0, :SEED_WIDTH].astype(np.int64))
            self._draws[key] = self._simulate(d, local)
        return self._draws[key]

    def functional(self, name: str, pick: Callable[[T], Any]) -> Callable[[Sampled], Any]:
        """The functional for ``verify``: ``pick`` applied to the draw of the sampled seed.

        Parameters
        ----------
        name : str
            The functional's ``__name__``.
        pick : callable
            ``draw -> scalar``.
        """

        def functional(sampled: Sampled) -> Any:
            return pick(self(sampled))

        functional.__name__ = name
        return functional


class TermCheck(NamedTuple):
    """One term to verify: ``exact`` (``D -> value``), the simulated ``functional`` and the ``label``."""

    exact: Callable[[int], float]
    functional: Callable[[Sampled], Any]
    label: str


def verify_terms(
    checks: Iterable[TermCheck],
    *,
    sizes: Sequence[int],
    n_samples: int,
    rng: np.random.Generator,
    c_finite: float,
    n_se: float,
) -> MonteCarloCheck:
    """One :func:`~detequiv.witnesses.acceptance.verify` report per check, on the same draws.

    A master seed is drawn from ``rng`` first; every check's ``verify`` call replays the
    generator of that seed, so all checks sample the same seeds (and, through
    :class:`SeededDraws`, read the same simulations).

    Parameters
    ----------
    checks : iterable of TermCheck
        In report order.
    sizes, n_samples, c_finite, n_se
        As in :func:`~detequiv.witnesses.acceptance.verify`.
    rng : numpy.random.Generator
        Draws the master seed (one integer).

    Returns
    -------
    MonteCarloCheck

    Examples
    --------
    >>> import numpy as np
    >>> draws = SeededDraws(lambda d, rng: rng.standard_normal(2))
    >>> checks = [TermCheck(lambda d: 0.0, draws.functional(f"x{i}", lambda x, i=i: x[i]), f"x{i}")
    ...           for i in range(2)]
    >>> check = verify_terms(checks, sizes=(10,), n_samples=5, rng=np.random.default_rng(1),
    ...                      c_finite=0.0, n_se=5.0)
    >>> [r.label for r in check.reports], check.passed
    (['x0', 'x1'], True)
    """
    base = int(rng.integers(2**63))  # the same draws for every term (each simulated once)
    return MonteCarloCheck(
        tuple(
            verify(
                check.exact,
                check.functional,
                {"seed": seed_matrix},
                sizes=sizes,
                n_samples=n_samples,
                rng=np.random.default_rng(base),
                c_finite=c_finite,
                n_se=n_se,
                label=check.label,
            )
            for check in checks
        )
    )


def check_loss_terms(
    loss: LossFormula,
    values: Callable[[int], Mapping[Any, Any]],
    draws: SeededDraws[Mapping[str, Any]],
    *,
    label: Callable[[str], str],
    total: str | None = None,
    sizes: Sequence[int],
    n_samples: int,
    rng: np.random.Generator,
    c_finite: float,
    n_se: float,
) -> MonteCarloCheck:
    """Every term of ``loss``, then its total, against the simulated draws (:func:`verify_terms`).

    Parameters
    ----------
    loss : LossFormula
        Anything with ``name``, ``terms`` and ``evaluate``; it is evaluated once per size at
        ``values(D)``, and the real part of each term is the exact value.
    values : callable
        ``D -> values`` for ``loss.evaluate``.
    draws : SeededDraws
        Draws mapping the term names (and ``total``) to simulated values.
    label : callable
        ``term name -> report label``.
    total : str, optional
        The key of a draw compared with the total (default: ``loss.name``).
    sizes, n_samples, rng, c_finite, n_se
        As in :func:`verify_terms`.

    Returns
    -------
    MonteCarloCheck
        One report per term of ``loss``, in its order, then the total.

    Examples
    --------
    >>> import numpy as np
    >>> class Loss:  # the mean of two coins, split into its halves
    ...     name, terms = "mean", {"first": None, "second": None}
    ...     def evaluate(self, values):
    ...         return {"first": 0.25, "second": 0.25, "total": 0.5}
    >>> def coins(d, rng):
    ...     first, second = rng.integers(0, 2, size=2) / 2
    ...     return {"first": first, "second": second, "mean": first + second}
    >>> check = check_loss_terms(Loss(), lambda d: {}, SeededDraws(coins), label=str, sizes=(10,),
    ...                          n_samples=200, rng=np.random.default_rng(0), c_finite=0.0, n_se=4.0)
    >>> [r.label for r in check.reports], check.passed
    (['first', 'second', 'mean'], True)
    """
    evaluated: dict[int, Mapping[str, Any]] = {}
    total_key = loss.name if total is None else total

    def exact_for(name: str) -> Callable[[int], float]:
        def exact(d: int) -> float:
            if d not in evaluated:
                evaluated[d] = loss.evaluate(values(d))
            return float(np.real(evaluated[d]["total" if name == loss.name else name]))

        return exact

    def checks() -> Iterable[TermCheck]:
        for name in [*loss.terms, loss.name]:
            key = total_key if name == loss.name else name
            yield TermCheck(exact_for(name), draws.functional(name, operator.itemgetter(key)), label(name))

    return verify_terms(checks(), sizes=sizes, n_samples=n_samples, rng=rng, c_finite=c_finite, n_se=n_se)


def replay(base: int, n_samples: int, draw: Callable[[np.random.Generator], T]) -> list[T]:
    """``n_samples`` draws from one generator seeded with ``base`` (every size replays it).

    Examples
    --------
    >>> replay(3, 2, lambda rng: int(rng.integers(10))) == replay(3, 2, lambda rng: int(rng.integers(10)))
    True
    """
    local = np.random.default_rng(base)
    return [draw(local) for _ in range(n_samples)]


def acceptance_row(
    n: int, exact: float, samples: np.ndarray, n_se: float, c_finite: float
) -> VerificationRow:
    """The acceptance rule at size ``n`` for samples drawn by the witness itself.

    Tolerance ``n_se * s.e. + c_finite * |exact| / n``; the row is ``ok`` when
    ``|mean - exact|`` is below it (the rule of :func:`~detequiv.witnesses.acceptance.verify`).

    Examples
    --------
    >>> import numpy as np
    >>> row = acceptance_row(100, 1.0, np.array([0.9, 1.1, 1.0]), n_se=4.0, c_finite=5.0)
    >>> round(row.mean, 12), row.ok
    (1.0, True)
    """
    mean = float(np.mean(samples))
    se = float(np.std(samples, ddof=1) / np.sqrt(samples.size)) if samples.size > 1 else 0.0
    tol = n_se * se + c_finite * abs(exact) / n
    err = mean - exact
    return VerificationRow(
        N=n,
        exact=exact,
        mean=mean,
        se=se,
        n_samples=int(samples.size),
        error=err,
        tolerance=tol,
        ok=abs(err) < tol,
    )


def reports_check(
    keys: Sequence[str],
    rows: Mapping[str, Sequence[VerificationRow]],
    label: Callable[[str], str],
    *,
    n_se: float,
    c_finite: float,
) -> MonteCarloCheck:
    """One :class:`~detequiv.witnesses.acceptance.VerificationReport` per key, of its rows.

    Examples
    --------
    >>> import numpy as np
    >>> row = acceptance_row(10, 1.0, np.ones(3), n_se=4.0, c_finite=5.0)
    >>> check = reports_check(["x"], {"x": [row]}, lambda k: f"mean {k}", n_se=4.0, c_finite=5.0)
    >>> check.reports[0].label, check.passed
    ('mean x', True)
    """
    return MonteCarloCheck(
        tuple(
            VerificationReport(label=label(key), rows=tuple(rows[key]), n_se=n_se, c_finite=c_finite)
            for key in keys
        )
    )
