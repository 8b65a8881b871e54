"""The Monte Carlo witness of a two-point equivalent (MATH.md 3.1, acceptance rule).

:func:`check_monte_carlo` samples ``c G1 M G2`` of a
:class:`~detequiv.derivations.twopoint.TwoPoint` (both resolvents from the same draw) at
several sizes, with a random dense non-symmetric matrix for every deterministic factor of
``M``, and compares ``tr(T .)`` with the equivalent through :func:`verify` at real and
complex ridge pairs. It also runs the same check against the naive product
``kappa kappa' R M R'`` (which must fail) and reports the size of the correction term.
Importing this module registers it as :meth:`TwoPoint.check_monte_carlo`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp

from ..derivations.expressions import (
    Deterministic,
    FreeMatrix,
    Gaussian,
    Identity,
    MatrixExpr,
    Product,
    Resolvent,
    Sqrt,
    Sum,
    Transpose,
)
from ..derivations.results import witness_for
from ..derivations.twopoint import TwoPoint
from ..errors import InvalidArgument
from .acceptance import VerificationReport, verify
from .moments import sampler_for_law
from .onepoint import MonteCarloCheck, _law_symbols, _test_matrix
from .sampling import check_rng

if TYPE_CHECKING:
    from ..derivations.layered import LayeredTwoPoint

__all__ = ["check_monte_carlo", "TwoPointMonteCarloCheck", "TwoPointReport"]


@dataclass(frozen=True, slots=True)
class TwoPointReport:
    """One ridge pair and test matrix: the check, the naive-product control and the correction size."""

    lams: tuple[complex | float, complex | float]
    test: str
    report: VerificationReport
    naive: VerificationReport
    correction: float

    @property
    def passed(self) -> bool:
        """The equivalent passes and the naive product is rejected."""
        return self.report.passed and not self.naive.passed

    def __str__(self) -> str:
        return (
            f"(lam, lam2) = {self.lams}, test {self.test}: correction term = {100 * self.correction:.1f}% "
            f"of the total\n{self.report}\nnaive product kappa kappa' R M R' (must fail):\n{self.naive}"
        )


#: All reports of :func:`check_monte_carlo`: the same container as the one-point check.
TwoPointMonteCarloCheck = MonteCarloCheck


def _value(expr: Any, scal: Mapping[str, Any]) -> complex:
    e = sp.sympify(expr)
    e = e.xreplace({s: sp.sympify(scal[s.name]) for s in e.free_symbols if s.name in scal})
    try:
        return complex(e)
    except TypeError:
        missing = sorted(map(str, e.free_symbols))
        raise InvalidArgument(f"no value for {missing}; pass them in values") from None


def _numeric(
    expr: MatrixExpr, mats: Mapping[str, np.ndarray], draws: Mapping[str, np.ndarray], scal: Mapping[str, Any]
) -> np.ndarray:
    if isinstance(expr, Product):
        out = _numeric(expr.factors[0], mats, draws, scal)
        for f in expr.factors[1:]:
            out = out @ _numeric(f, mats, draws, scal)
        return out if expr.coeff == 1 else _value(expr.coeff, scal) * out
    if isinstance(expr, Sum):
        parts = [_numeric(t, mats, draws, scal) for t in expr.terms]
        return np.sum(parts, axis=0)
    if isinstance(expr, Deterministic):
        return mats[expr.name]
    if isinstance(expr, Sqrt):
        return mats[expr.base.name + "^(1/2)"]
    if isinstance(expr, (Gaussian, FreeMatrix)):
        return draws[expr.name]
    if isinstance(expr, Transpose):
        return draws[expr.arg.name].T
    if isinstance(expr, Identity):
        return np.eye(int(_value(expr.dim, scal).real))
    raise InvalidArgument(f"cannot sample {expr}")  # pragma: no cover


#: ``(N, lam, lam2, t_of) -> tr(T .)`` where ``t_of(n)`` is the test matrix of size ``n``.
PairTrace = Callable[[int, Any, Any, Callable[[int], np.ndarray]], Any]


def _two_resolvents(expr: Any) -> tuple[Product, Resolvent, Resolvent]:
    """``expr = c G1 ... G2`` and its two outer resolvents."""
    assert isinstance(expr, Product)
    res1, res2 = expr.factors[0], expr.factors[-1]
    assert isinstance(res1, Resolvent) and isinstance(res2, Resolvent)
    return expr, res1, res2


def _det_names(xs: Sequence[MatrixExpr]) -> set[str]:
    """Names of the deterministic matrices among ``xs`` (``A`` for ``A^(1/2)``)."""
    return {
        x.base.name if isinstance(x, Sqrt) else x.name for x in xs if isinstance(x, (Deterministic, Sqrt))
    }


def _proportions(
    leaves: Sequence[MatrixExpr], n_dim: sp.Symbol, dims: Mapping[Any, float] | None
) -> dict[str, float]:
    """Every dimension symbol of ``leaves`` as a multiple of ``N``: 1 for ``n_dim``, else ``dims`` or 2."""
    symbols = sorted({d for leaf in leaves for d in leaf.shape if isinstance(d, sp.Symbol)}, key=str)
    props = {d.name: (1.0 if d == n_dim else 2.0) for d in symbols}
    props.update({str(k): float(v) for k, v in (dims or {}).items()})
    return props


def _draw_makers(
    xs: Sequence[MatrixExpr],
    scal: Mapping[str, Any],
    samplers: Mapping[Any, Any] | None,
    child: np.random.Generator,
) -> dict[str, Callable[[], np.ndarray]]:
    """Name -> a fresh draw from ``child``, for each Gaussian and free matrix among ``xs`` (in order)."""
    draws: dict[str, Any] = {}
    for x in xs:
        if isinstance(x, Gaussian) and x.name not in draws:
            shape = tuple(int(_value(d, scal).real) for d in x.dims)
            draws[x.name] = lambda shape=shape: child.standard_normal(shape)
        elif isinstance(x, FreeMatrix) and x.name not in draws:
            given, m = _free_sampler(x, samplers, scal)
            draws[x.name] = lambda g=given, m=m: np.asarray(g(m, child))
    return draws


def _sample_g1_m_g2(
    tp: TwoPoint | LayeredTwoPoint,
    lam: Any,
    lam2: Any,
    mats: Mapping[str, np.ndarray],
    draws: Mapping[str, np.ndarray],
    scal: Mapping[str, Any],
    t_of: Callable[[int], np.ndarray],
) -> Any:
    """``tr(T c G1 M G2) / n`` of ``tp.random`` at one sample (``draws``) and ridge pair."""
    expr, res1, res2 = _two_resolvents(tp.random)
    x1 = _numeric(res1.arg, mats, draws, scal)
    x2 = _numeric(res2.arg, mats, draws, scal)
    n = x1.shape[0]
    mid = np.eye(n)
    for f in tp.middle:
        mid = mid @ _numeric(f, mats, draws, scal)
    c = _value(expr.coeff, {**scal, str(tp.lam): lam, str(tp.lam2): lam2})
    g1 = np.linalg.inv(x1 + lam * np.eye(n))
    g2 = np.linalg.inv(x2 + lam2 * np.eye(n))
    return c * np.trace(t_of(n) @ g1 @ mid @ g2) / n


def _trace_of(numbers: Callable[[int, Any, Any], Any], method: str = "trace") -> PairTrace:
    """The :data:`PairTrace` ``v.<method>(T)`` of ``v = numbers(N, lam, lam2)``, ``T`` of ``v``'s size."""

    def trace(N: int, lam: Any, lam2: Any, t_of: Callable[[int], np.ndarray]) -> Any:
        v = numbers(N, lam, lam2)
        return getattr(v, method)(t_of(v.matrix.shape[0]))

    return trace


def _free_sampler(
    x: FreeMatrix, samplers: Mapping[Any, Any] | None, scal: Mapping[str, Any]
) -> tuple[Callable[[int, np.random.Generator], Any], int]:
    """The sampler ``(n, rng) -> matrix`` of ``x`` and its size ``n``.

    The sampler is the one given under ``x``'s name in ``samplers``, else its law's.
    """
    given = next((f for k, f in (samplers or {}).items() if str(getattr(k, "name", k)) == x.name), None)
    if given is None:
        law = x.law.subs({s: sp.sympify(scal[s.name]) for s in _law_symbols(x.law) if s.name in scal})
        given = sampler_for_law(law)
    return given, int(_value(x.dim, scal).real)


@dataclass(frozen=True, slots=True)
class _PairCheck:
    """What :func:`_check_pairs` found at one ridge pair and test matrix."""

    lams: tuple[Any, Any]
    test: str
    report: VerificationReport
    controls: tuple[tuple[str, VerificationReport], ...]
    corrections: tuple[float, ...]


def _check_pairs(
    lams: Sequence[tuple[complex, complex]],
    tests: Sequence[str],
    *,
    rng: np.random.Generator,
    exact: PairTrace,
    sample: PairTrace,
    controls: Mapping[str, PairTrace],
    name: str,
    control_label: str,
    sizes: Sequence[int],
    n_samples: int,
    c_finite: float,
    n_se: float,
) -> list[_PairCheck]:
    """Verify ``exact`` against ``sample`` at every ridge pair and test matrix, then each control.

    Each control is compared with the very samples the equivalent was (recorded, then
    replayed), so it costs no new draws. ``name`` and ``control_label`` are templates of the
    verification labels (fields ``test`` and ``name``). The ``corrections`` are
    ``|exact - control| / |exact|`` at the largest size. One seed of ``rng`` per pair and test.
    """
    for test in tests:
        if test not in ("I", "T"):
            raise InvalidArgument(f"test {test!r} must be 'I' or 'T'")
    samplers_n: dict[Any, Any] = {"N": lambda N, _r: np.zeros((N, N))}
    common: dict[str, Any] = dict(sizes=sizes, n_samples=n_samples, c_finite=c_finite, n_se=n_se)
    big = max(sizes)

    def one(lam_c: Any, lam2_c: Any, test: str) -> _PairCheck:
        complex_pair = bool(complex(lam_c).imag or complex(lam2_c).imag)

        def t_of(n: int) -> np.ndarray:
            return np.eye(n) if test == "I" else _test_matrix(n)

        def exact_of(trace: PairTrace) -> Callable[[int], Any]:
            return lambda N: trace(N, lam_c, lam2_c, t_of)

        recorded: dict[int, list[Any]] = {}
        replay: dict[int, list[Any]] = {}

        def functional(m: dict[Any, np.ndarray]) -> Any:
            N = m["N"].shape[0]
            if replay.get(N):
                return replay[N].pop(0)
            value = sample(N, lam_c, lam2_c, t_of)
            out = value if complex_pair else value.real
            recorded.setdefault(N, []).append(out)
            return out

        functional.__name__ = f"{name.format(test=test)} at ({lam_c}, {lam2_c})"
        seed = int(rng.integers(2**63))
        report = verify(exact_of(exact), functional, samplers_n, rng=np.random.default_rng(seed), **common)
        done: list[tuple[str, VerificationReport]] = []
        corrections: list[float] = []
        for key, trace in controls.items():
            replay.update({k: list(v) for k, v in recorded.items()})  # the same samples
            label = control_label.format(name=key) + functional.__name__
            check = verify(
                exact_of(trace),
                functional,
                samplers_n,
                rng=np.random.default_rng(seed),
                label=label,
                **common,
            )
            done.append((key, check))
            value = exact(big, lam_c, lam2_c, t_of)
            corrections.append(abs(value - trace(big, lam_c, lam2_c, t_of)) / max(abs(value), 1e-300))
        return _PairCheck((lam_c, lam2_c), test, report, tuple(done), tuple(corrections))

    checks = []
    for pair in lams:
        lam, lam2 = (complex(z) for z in pair)
        for test in tests:
            checks.append(one(lam if lam.imag else lam.real, lam2 if lam2.imag else lam2.real, test))
    return checks


def check_monte_carlo(
    tp: TwoPoint,
    sizes: Sequence[int] = (100, 200, 400),
    *,
    rng: np.random.Generator,
    lams: Sequence[tuple[complex, complex]] = ((0.5, 0.2), (0.1 + 0.3j, 0.2 - 0.1j)),
    values: Mapping[Any, Any] | None = None,
    dims: Mapping[Any, float] | None = None,
    spectrum: Callable[[int], Any] | None = None,
    samplers: Mapping[Any, Any] | None = None,
    n_samples: int = 20,
    c_finite: float = 5.0,
    n_se: float = 4.0,
    tests: Sequence[str] = ("I", "T"),
) -> TwoPointMonteCarloCheck:
    """Compare ``tr(T c G1 M G2)`` with the two-point equivalent by simulation.

    Parameters
    ----------
    sizes : sequence of int
        Values of the dimension ``N`` of ``A``; other dimension symbols are ``dims[d] * N``
        (default 2, i.e. ratio 1/2 for a Gram pair ``X.T @ X / P``).
    rng : numpy.random.Generator
    lams : sequence of (lam, lam2)
        Ridge pairs (default a real and a complex pair).
    values : mapping, optional
        Other scalar symbols (law parameters).
    spectrum : callable, optional
        ``n -> eigenvalues`` of ``A`` (default ``linspace(0.5, 2, n)``).
    samplers : mapping, optional
        Free matrix name -> ``(n, rng) -> matrix`` for laws without a built-in model.
    n_samples, c_finite, n_se
        As in :func:`detequiv.witnesses.acceptance.verify` (tolerance
        ``n_se s.e. + c_finite |DE| / N``).
    tests : sequence of {'I', 'T'}
        Test matrices: the identity, and ``diag(linspace(0, 2, n)) + (E + E^T)/2``.

    Notes
    -----
    The deterministic factors of ``M`` other than ``A`` are dense non-symmetric matrices
    ``I + Z / sqrt(n)`` (``Z`` Gaussian, fixed per size, seeded from ``rng``).
    """
    check_rng(rng)
    expr, res1, res2 = _two_resolvents(tp.random)
    n_dim = tp.a_matrix.dim
    if not isinstance(n_dim, sp.Symbol):
        raise InvalidArgument(f"A has the fixed size {n_dim}; give it a symbolic dimension")
    leaves = [*res1.leaves(), *res2.leaves(), *tp.middle]
    props = _proportions(leaves, n_dim, dims)
    params = {str(getattr(k, "name", k)): v for k, v in (values or {}).items()}
    spec = spectrum or (lambda n: np.linspace(0.5, 2.0, n))
    a_name = tp.a_matrix.name
    others = sorted(_det_names(tp.middle) - {a_name})
    child = np.random.default_rng(rng.integers(2**63))
    cache: dict[int, Any] = {}

    def prepared(N: int) -> Any:
        if N not in cache:
            scal = {**params, **{d: max(1, round(p * N)) for d, p in props.items()}}
            n = int(_value(n_dim, scal).real)
            e = np.asarray(spec(n), dtype=float)
            mats = {a_name: np.diag(e), a_name + "^(1/2)": np.diag(np.sqrt(e))}
            for name in others:
                z = child.standard_normal((n, n))
                mats[name] = np.eye(n) + z / np.sqrt(n)
            draws = _draw_makers([*res1.leaves(), *res2.leaves()], scal, samplers, child)
            cache[N] = (scal, e, mats, draws)
        return cache[N]

    evaluated: dict[tuple[int, Any, Any], Any] = {}

    def numbers(N: int, lam: complex, lam2: complex) -> Any:
        key = (N, lam, lam2)
        if key in evaluated:
            return evaluated[key]
        scal, e, mats, _ = prepared(N)
        vals: dict[Any, Any] = {**scal, str(tp.lam): lam, str(tp.lam2): lam2, a_name: e}
        vals.update({k: v for k, v in mats.items() if k in others})
        evaluated[key] = tp.evaluate(vals)
        return evaluated[key]

    def sample(N: int, lam: Any, lam2: Any, t_of: Callable[[int], np.ndarray]) -> Any:
        scal, _, mats, draws = prepared(N)
        sampled = {name: f() for name, f in draws.items()}
        return _sample_g1_m_g2(tp, lam, lam2, mats, sampled, scal, t_of)

    checks = _check_pairs(
        lams,
        tests,
        rng=rng,
        exact=_trace_of(numbers),
        sample=sample,
        controls={"naive": _trace_of(numbers, "naive_trace")},
        name="tr({test} G1 M G2)",
        control_label="naive ",
        sizes=sizes,
        n_samples=n_samples,
        c_finite=c_finite,
        n_se=n_se,
    )
    reports = [TwoPointReport(c.lams, c.test, c.report, c.controls[0][1], c.corrections[0]) for c in checks]
    return TwoPointMonteCarloCheck(tuple(reports))


witness_for(TwoPoint)(check_monte_carlo)
