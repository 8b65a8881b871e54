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

from ..derivations.expressions import FreeMatrix, Gaussian, MatrixExpr
from ..derivations.layered import LayeredTwoPoint
from ..derivations.results import witness_for
from ..errors import InvalidArgument
from .acceptance import VerificationReport
from .common import (
    MonteCarloCheck,
    PairReport,
    PairSetting,
    check_pairs,
    deterministic_names,
    g1_m_g2_witness,
    two_resolvents,
)
from .sampling import check_rng

__all__ = ["check_monte_carlo", "LayeredReport"]


@dataclass(frozen=True, slots=True)
class LayeredReport(PairReport):
    """One ridge pair and test matrix: the check, the no-outer-correction control and its size.

    It passes when the equivalent passes and the control (without the outer correction) is rejected.
    """

    control: VerificationReport
    correction: float

    @property
    def control_reports(self) -> tuple[VerificationReport, ...]:
        """The control without the outer correction (must fail)."""
        return (self.control,)

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
            f"{self.heading} outer correction = {100 * self.correction:.1f}% "
            f"of the total\n{self.report}\nwithout the outer correction (must fail):\n{self.control}"
        )


def _gaussians(leaves: Sequence[MatrixExpr]) -> list[Gaussian]:
    """The distinct Gaussian matrices among ``leaves``, in order of appearance."""
    gaussians: list[Gaussian] = []
    for leaf in leaves:
        if isinstance(leaf, Gaussian) and leaf not in gaussians:
            gaussians.append(leaf)
    return gaussians


def _proportions(
    gaussians: Sequence[Gaussian], n_dim: sp.Symbol, dims: Mapping[Any, float] | None
) -> dict[str, float]:
    """Every dimension as a multiple of ``D``: ``dims``, else the Gram dimensions in order of
    appearance ``2 D``, ``D / 2``, then ``D``."""
    symbols: list[sp.Symbol] = []
    for g in gaussians:
        for d in g.dims:
            if isinstance(d, sp.Symbol) and d != n_dim and d not in symbols:
                symbols.append(d)
    defaults = [2.0, 0.5]
    props = {d.name: (defaults[i] if i < len(defaults) else 1.0) for i, d in enumerate(symbols)}
    props[n_dim.name] = 1.0
    props.update({str(getattr(k, "name", k)): float(v) for k, v in (dims or {}).items()})
    return props


def _setting(
    tp: LayeredTwoPoint,
    rng: np.random.Generator,
    dims: Mapping[Any, float] | None,
    spectrum: Callable[[int], Any] | None,
    dense_m: bool,
    samplers: Mapping[Any, Any] | None,
) -> PairSetting:
    """The numbers of the check: the covariances of the given spectrum, the other deterministic
    matrices of ``M`` dense (or of the reversed spectrum) with their roots, and per sample every
    Gaussian matrix, then every free one (seed from ``rng``)."""
    _, res1, res2 = two_resolvents(tp.random)
    n_dim = tp.dim
    if not isinstance(n_dim, sp.Symbol):
        raise InvalidArgument(f"the resolvents have the fixed size {n_dim}; give them a symbolic dimension")
    leaves = [*res1.leaves(), *res2.leaves(), *tp.middle]
    gaussians = _gaussians(leaves)
    covs = sorted(deterministic_names([*tp.side1, *tp.side2]))
    return PairSetting(
        n_dim=n_dim,
        proportions=_proportions(gaussians, n_dim, dims),
        params={},
        spectrum=spectrum,
        inside=covs,
        others=sorted(deterministic_names(tp.middle) - set(covs)),
        draws=[*gaussians, *(x for x in leaves if isinstance(x, FreeMatrix))],
        samplers=samplers,
        lams=(tp.lam, tp.lam2),
        child=np.random.default_rng(rng.integers(2**63)),
        dense=dense_m,
        roots=True,
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
    setting = _setting(tp, rng, dims, spectrum, dense_m, samplers)
    witness = g1_m_g2_witness(tp, setting, ("without outer correction", "no_outer_trace"), "{name} ")
    checks = check_pairs(
        witness, lams, tests, rng=rng, sizes=sizes, n_samples=n_samples, c_finite=c_finite, n_se=n_se
    )
    reports = [LayeredReport(c.lams, c.test, c.report, c.controls[0][1], c.corrections[0]) for c in checks]
    return MonteCarloCheck(tuple(reports))


witness_for(LayeredTwoPoint)(check_monte_carlo)
