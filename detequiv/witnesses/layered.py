"""The Monte Carlo witness of a layered two-point equivalent (MATH.md 3.5, acceptance rule).

:func:`check_monte_carlo` samples ``c G1 M G2`` of a
:class:`~detequiv.derivations.layered.LayeredTwoPoint` from the exact matrices (every
Gaussian matrix drawn once per sample and shared by both resolvents), at several sizes, and
compares ``tr(T .)`` with the equivalent through :func:`~detequiv.witnesses.acceptance.verify`
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

from ..derivations.expressions import FreeMatrix, Gaussian
from ..derivations.layered import LayeredTwoPoint
from ..derivations.results import witness_for
from ..errors import InvalidArgument
from .acceptance import VerificationReport
from .onepoint import MonteCarloCheck
from .sampling import check_rng
from .twopoint import (
    _check_pairs,
    _det_names,
    _free_sampler,
    _sample_g1_m_g2,
    _trace_of,
    _two_resolvents,
    _value,
)

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
        As in :func:`detequiv.witnesses.acceptance.verify`.
    tests : sequence of {'I', 'T'}
        Test matrices: the identity and ``diag(linspace(0, 2, n)) + (E + E^T)/2``.
    """
    check_rng(rng)
    expr, res1, res2 = _two_resolvents(tp.random)
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
    covs = sorted(_det_names([*tp.side1, *tp.side2]))
    others = sorted(_det_names(tp.middle) - set(covs))
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
                    free[x.name] = _free_sampler(x, samplers, scal)
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

    def sample(n_size: int, lam: Any, lam2: Any, t_of: Callable[[int], np.ndarray]) -> Any:
        scal, _, mats, (shapes, free) = prepared(n_size)
        draws = {name: child.standard_normal(shape) for name, shape in shapes.items()}
        draws.update({name: np.asarray(g(k, child)) for name, (g, k) in free.items()})
        return _sample_g1_m_g2(tp, lam, lam2, mats, draws, scal, t_of)

    checks = _check_pairs(
        lams,
        tests,
        rng=rng,
        exact=_trace_of(numbers),
        sample=sample,
        controls={"without outer correction": _trace_of(numbers, "no_outer_trace")},
        name="tr({test} G1 M G2)",
        control_label="{name} ",
        sizes=sizes,
        n_samples=n_samples,
        c_finite=c_finite,
        n_se=n_se,
    )
    reports = [LayeredReport(c.lams, c.test, c.report, c.controls[0][1], c.corrections[0]) for c in checks]
    return MonteCarloCheck(tuple(reports))


witness_for(LayeredTwoPoint)(check_monte_carlo)
