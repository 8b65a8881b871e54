"""The Monte Carlo witness of a layered two-point equivalent (MATH.md 3.5, acceptance rule).

:func:`check_monte_carlo` samples ``c G1 M G2`` of a
:class:`~detequiv.derivations.twopoint_layers.LayeredTwoPoint` from the exact matrices (every
Gaussian matrix drawn once per sample and shared by both resolvents), at several sizes, and
compares ``tr(T .)`` with the equivalent through :func:`~detequiv.codegen.verify.verify`
(tolerance ``n_se s.e. + c_finite |DE| / N``) at real and complex ridge pairs. On the same
samples it runs the control "without the outermost correction" (the inner two-point function
alone, i.e. the layer averaged first contributes nothing beyond its ridge), which must fail,
and reports the size of that correction. Importing this module registers it as
:meth:`LayeredTwoPoint.check_monte_carlo`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from ..derivations.expressions import Deterministic, FreeMatrix, Gaussian, Product, Resolvent, Sqrt
from ..derivations.twopoint_layers import LayeredTwoPoint, register_layered_witness
from ..errors import InvalidArgument
from .onepoint_mc import MonteCarloCheck, _law_symbols, _test_matrix
from .twopoint_mc import _numeric, _value
from .verify import VerificationReport, verify
from .witness import sampler_for_law

__all__ = ["check_monte_carlo", "LayeredReport"]


@dataclass(frozen=True, slots=True)
class LayeredReport:
    """One ridge pair and test matrix: the check, the no-outer-correction control and its size."""

    lams: tuple[complex | float, complex | float]
    test: str
    report: VerificationReport
    control: VerificationReport
    correction: float

    @property
    def passed(self) -> bool:
        """The equivalent passes and the control (without the outer correction) is rejected."""
        return self.report.passed and not self.control.passed

    @property
    def worst_ratio(self) -> float:
        """Largest ``|MC - DE| / tolerance`` of the equivalent over the sizes."""
        return float(self.report.max_ratio)

    @property
    def control_ratio(self) -> float:
        """Largest ``|MC - control| / tolerance`` (``> 1`` means the control is rejected)."""
        return float(self.control.max_ratio)

    def __str__(self) -> str:
        return (
            f"(lam, lam2) = {self.lams}, test {self.test}: outer correction = {100 * self.correction:.1f}% "
            f"of the total\n{self.report}\nwithout the outer correction (must fail):\n{self.control}"
        )


def check_monte_carlo(
    tp: LayeredTwoPoint,
    sizes: Sequence[int] = (100, 200),
    *,
    rng: np.random.Generator,
    lams: Sequence[tuple[complex, complex]] = ((0.5, 0.2), (0.1 + 0.3j, 0.2 - 0.1j)),
    dims: Mapping[Any, float] | None = None,
    spectrum: Callable[[int], Any] | None = None,
    dense_m: bool = True,
    samplers: Mapping[Any, Any] | None = None,
    n_samples: int = 20,
    c_finite: float = 5.0,
    n_se: float = 4.0,
    tests: Sequence[str] = ("I", "T"),
) -> MonteCarloCheck:
    """Compare ``tr(T c G1 M G2)`` with the layered equivalent by simulation.

    Parameters
    ----------
    sizes : sequence of int
        Values of the dimension of the resolvents' space (``D``); every other dimension
        symbol is ``dims[name] * D`` (default: the first Gram dimension in order of appearance
        ``2 D``, the next ``D / 2``, then ``D``).
    rng : numpy.random.Generator
    lams : sequence of (lam, lam2)
        Ridge pairs (default a real and a complex pair).
    spectrum : callable, optional
        ``n -> eigenvalues`` of the covariance (default ``linspace(0.5, 2, n)``).
    samplers : mapping, optional
        Free matrix name -> ``(n, rng) -> matrix`` for laws without a built-in model.
    dense_m : bool
        Deterministic matrices of ``M`` that are not the covariance become dense non-symmetric
        ``I + Z / sqrt(n)`` (fixed per size); otherwise their spectrum is the covariance's.
    n_samples, c_finite, n_se
        As in :func:`detequiv.codegen.verify.verify`.
    tests : sequence of {'I', 'T'}
        Test matrices: the identity and ``diag(linspace(0, 2, n)) + (E + E^T)/2``.
    """
    if not isinstance(rng, np.random.Generator):
        raise InvalidArgument(
            f"rng={rng!r} is not a numpy.random.Generator; pass np.random.default_rng(seed)"
        )
    expr = tp.random
    assert isinstance(expr, Product)
    res1, res2 = expr.factors[0], expr.factors[-1]
    assert isinstance(res1, Resolvent) and isinstance(res2, Resolvent)
    n_dim = tp.dim
    if not isinstance(n_dim, sp.Symbol):
        raise InvalidArgument(f"the resolvents have the fixed size {n_dim}; give them a symbolic dimension")
    leaves = [*res1.leaves(), *res2.leaves(), *tp.middle]
    gaussians: list[Gaussian] = []
    for leaf in leaves:
        if isinstance(leaf, Gaussian) and leaf not in gaussians:
            gaussians.append(leaf)
    symbols: list[sp.Symbol] = []
    for g in gaussians:
        for d in g.dims:
            if isinstance(d, sp.Symbol) and d != n_dim and d not in symbols:
                symbols.append(d)
    defaults = [2.0, 0.5]
    props = {d.name: (defaults[i] if i < len(defaults) else 1.0) for i, d in enumerate(symbols)}
    props[n_dim.name] = 1.0
    props.update({str(getattr(k, "name", k)): float(v) for k, v in (dims or {}).items()})
    spec = spectrum or (lambda n: np.linspace(0.5, 2.0, n))
    covs = sorted(
        {
            f.base.name if isinstance(f, Sqrt) else f.name
            for f in (*tp.side1, *tp.side2)
            if isinstance(f, (Deterministic, Sqrt))
        }
    )
    others = sorted(
        {
            f.base.name if isinstance(f, Sqrt) else f.name
            for f in tp.middle
            if isinstance(f, (Deterministic, Sqrt))
        }
        - set(covs)
    )
    child = np.random.default_rng(rng.integers(2**63))
    cache: dict[int, Any] = {}

    def prepared(n_size: int) -> Any:
        if n_size not in cache:
            scal = {d: max(1, round(p * n_size)) for d, p in props.items()}
            n = int(_value(n_dim, scal).real)
            e = np.asarray(spec(n), dtype=float)
            mats: dict[str, np.ndarray] = {}
            for name in covs:
                mats[name] = np.diag(e)
                mats[name + "^(1/2)"] = np.diag(np.sqrt(e))
            for name in others:
                if dense_m:
                    mats[name] = np.eye(n) + child.standard_normal((n, n)) / np.sqrt(n)
                else:
                    mats[name] = np.diag(e[::-1])
                w, v = np.linalg.eig(mats[name])
                mats[name + "^(1/2)"] = np.real((v * np.sqrt(w.astype(complex))) @ np.linalg.inv(v))
            shapes = {g.name: tuple(int(_value(d, scal).real) for d in g.dims) for g in gaussians}
            free: dict[str, Any] = {}
            for x in leaves:
                if isinstance(x, FreeMatrix) and x.name not in free:
                    given = next(
                        (f for k, f in (samplers or {}).items() if str(getattr(k, "name", k)) == x.name), None
                    )
                    if given is None:
                        law = x.law.subs(
                            {q: sp.sympify(scal[q.name]) for q in _law_symbols(x.law) if q.name in scal}
                        )
                        given = sampler_for_law(law)
                    free[x.name] = (given, int(_value(x.dim, scal).real))
            cache[n_size] = (scal, e, mats, (shapes, free))
        return cache[n_size]

    evaluated: dict[tuple[int, Any, Any], Any] = {}

    def numbers(n_size: int, lam: Any, lam2: Any) -> Any:
        key = (n_size, lam, lam2)
        if key not in evaluated:
            scal, e, mats, _ = prepared(n_size)
            vals: dict[Any, Any] = {**scal, str(tp.lam): lam, str(tp.lam2): lam2}
            vals.update({name: e for name in covs})
            vals.update({name: mats[name] for name in others})
            evaluated[key] = tp.evaluate(vals)
        return evaluated[key]

    reports = []
    for pair in lams:
        lam, lam2 = (complex(z) for z in pair)
        lam_c: Any = lam if lam.imag else lam.real
        lam2_c: Any = lam2 if lam2.imag else lam2.real
        complex_pair = bool(lam.imag or lam2.imag)
        for test in tests:

            def t_of(n: int, test: str = test) -> np.ndarray:
                return np.eye(n) if test == "I" else _test_matrix(n)

            def exact(
                n_size: int, control: bool = False, lam: Any = lam_c, lam2: Any = lam2_c, t_of: Any = t_of
            ) -> complex | float:
                v = numbers(n_size, lam, lam2)
                n = v.matrix.shape[0]
                return v.no_outer_trace(t_of(n)) if control else v.trace(t_of(n))

            recorded: dict[int, list[Any]] = {}
            replay: dict[int, list[Any]] = {}

            def functional(
                m: dict[Any, np.ndarray],
                lam: Any = lam_c,
                lam2: Any = lam2_c,
                t_of: Any = t_of,
                recorded: Any = recorded,
                replay: Any = replay,
                complex_pair: bool = complex_pair,
            ) -> Any:
                n_size = m["N"].shape[0]
                if replay.get(n_size):
                    return replay[n_size].pop(0)
                scal, _, mats, (shapes, free) = prepared(n_size)
                draws = {name: child.standard_normal(shape) for name, shape in shapes.items()}
                draws.update({name: np.asarray(g(k, child)) for name, (g, k) in free.items()})
                x1 = _numeric(res1.arg, mats, draws, scal)
                x2 = _numeric(res2.arg, mats, draws, scal)
                n = x1.shape[0]
                mid = np.eye(n)
                for f in tp.middle:
                    mid = mid @ _numeric(f, mats, draws, scal)
                c = _value(expr.coeff, {**scal, str(tp.lam): lam, str(tp.lam2): lam2})
                g1 = np.linalg.solve(x1 + lam * np.eye(n), np.eye(n))
                g2 = np.linalg.solve(x2 + lam2 * np.eye(n), np.eye(n))
                value = c * np.trace(t_of(n) @ g1 @ mid @ g2) / n
                out = value if complex_pair else value.real
                recorded.setdefault(n_size, []).append(out)
                return out

            functional.__name__ = f"tr({test} G1 M G2) at ({lam_c}, {lam2_c})"
            samplers_n: dict[Any, Any] = {"N": lambda n_size, _r: np.zeros((n_size, n_size))}
            seed = int(rng.integers(2**63))
            common: dict[str, Any] = dict(sizes=sizes, n_samples=n_samples, c_finite=c_finite, n_se=n_se)
            report = verify(exact, functional, samplers_n, rng=np.random.default_rng(seed), **common)
            replay.update({k: list(v) for k, v in recorded.items()})  # the same samples for the control
            control = verify(
                lambda n_size: exact(n_size, True),
                functional,
                samplers_n,
                rng=np.random.default_rng(seed),
                label=f"without outer correction {functional.__name__}",
                **common,
            )
            big = exact(max(sizes))
            corr = abs(big - exact(max(sizes), True)) / max(abs(big), 1e-300)
            reports.append(LayeredReport((lam_c, lam2_c), test, report, control, corr))
    return MonteCarloCheck(tuple(reports))


register_layered_witness("monte_carlo", check_monte_carlo)
