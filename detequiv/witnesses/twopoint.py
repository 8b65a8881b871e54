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
from typing import Any

import numpy as np
import sympy as sp

from ..derivations.results import witness_for
from ..derivations.twopoint import TwoPoint
from ..errors import InvalidArgument
from .acceptance import VerificationReport
from .common import (
    MonteCarloCheck,
    PairReport,
    PairSetting,
    check_pairs,
    deterministic_names,
    g1_m_g2_witness,
    named_values,
    proportions,
    two_resolvents,
)
from .sampling import check_rng

__all__ = ["check_monte_carlo", "TwoPointMonteCarloCheck", "TwoPointReport"]


@dataclass(frozen=True, slots=True)
class TwoPointReport(PairReport):
    """One ridge pair and test matrix: the check, the naive-product control and the correction size.

    It passes when the equivalent passes and the naive product is rejected.
    """

    naive: VerificationReport
    correction: float

    @property
    def control_reports(self) -> tuple[VerificationReport, ...]:
        """The naive product ``kappa kappa' R M R'`` (must fail)."""
        return (self.naive,)

    def __str__(self) -> str:
        return (
            f"{self.heading} correction term = {100 * self.correction:.1f}% "
            f"of the total\n{self.report}\nnaive product kappa kappa' R M R' (must fail):\n{self.naive}"
        )


#: All reports of :func:`check_monte_carlo`: the same container as the one-point check.
TwoPointMonteCarloCheck = MonteCarloCheck


def _setting(
    tp: TwoPoint,
    rng: np.random.Generator,
    values: Mapping[Any, Any] | None,
    dims: Mapping[Any, float] | None,
    spectrum: Callable[[int], Any] | None,
    samplers: Mapping[Any, Any] | None,
) -> PairSetting:
    """The numbers of the check: ``A`` of the given spectrum, the other deterministic factors of
    ``M`` dense, the random leaves of the two resolvents drawn per sample (seed from ``rng``)."""
    _, res1, res2 = two_resolvents(tp.random)
    n_dim = tp.a_matrix.dim
    if not isinstance(n_dim, sp.Symbol):
        raise InvalidArgument(f"A has the fixed size {n_dim}; give it a symbolic dimension")
    props = proportions([*res1.leaves(), *res2.leaves(), *tp.middle], n_dim, dims)
    params = named_values(values)
    a_name = tp.a_matrix.name
    return PairSetting(
        n_dim=n_dim,
        proportions=props,
        params=params,
        spectrum=spectrum,
        inside=[a_name],
        others=sorted(deterministic_names(tp.middle) - {a_name}),
        draws=[*res1.leaves(), *res2.leaves()],
        samplers=samplers,
        lams=(tp.lam, tp.lam2),
        child=np.random.default_rng(rng.integers(2**63)),
    )


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
    setting = _setting(tp, rng, values, dims, spectrum, samplers)
    witness = g1_m_g2_witness(tp, setting, ("naive", "naive_trace"), "naive ")
    checks = check_pairs(
        witness, lams, tests, rng=rng, sizes=sizes, n_samples=n_samples, c_finite=c_finite, n_se=n_se
    )
    reports = [TwoPointReport(c.lams, c.test, c.report, c.controls[0][1], c.corrections[0]) for c in checks]
    return TwoPointMonteCarloCheck(tuple(reports))


witness_for(TwoPoint)(check_monte_carlo)
