"""The Monte Carlo witness of a sandwiched equivalent (MATH.md 3.4, acceptance rule).

:func:`check_monte_carlo` samples the *original* expression ``c G1 Mid G2`` of a
:class:`~detequiv.derivations.sandwich.Combination` (every random matrix drawn once per
sample and shared by the resolvents and the middle) at several sizes, and compares
``tr(T .)`` with the combination's value through :func:`verify` at real and complex
ridge pairs. Deterministic matrices inside the resolvents get the spectrum
``linspace(0.5, 2, n)``; the others (only in the middle) are dense non-symmetric
``I + Z / sqrt(n)``. Optional controls (plausible wrong combinations, e.g. a dropped
term) are checked against the same samples and must fail. Importing this module
registers it as :meth:`Combination.check_monte_carlo`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import sympy as sp

from ..derivations.expressions import (
    MatrixExpr,
    Product,
    Resolvent,
)
from ..derivations.results import witness_for
from ..derivations.sandwich import Combination
from ..errors import InvalidArgument
from .acceptance import VerificationReport
from .common import (
    MonteCarloCheck,
    PairReport,
    PairSetting,
    PairWitness,
    check_pairs,
    deterministic_names,
    named_values,
    numeric_matrix,
    proportions,
    scalar_value,
    trace_of,
    two_resolvents,
)
from .sampling import check_rng

__all__ = ["check_monte_carlo", "SandwichReport"]


@dataclass(frozen=True, slots=True)
class SandwichReport(PairReport):
    """One ridge pair and test matrix: the check, and each control (which must fail).

    It passes when the equivalent passes and every control is rejected.
    """

    controls: tuple[tuple[str, VerificationReport], ...] = ()

    @property
    def control_reports(self) -> tuple[VerificationReport, ...]:
        """The verification of each control."""
        return tuple(r for _, r in self.controls)

    @property
    def rejection(self) -> float:
        """The smallest ``max |err|/tol`` over the controls (``inf`` without controls)."""
        return min((r.max_ratio for _, r in self.controls), default=float("inf"))

    def __str__(self) -> str:
        lines = [self.heading, str(self.report)]
        for name, r in self.controls:
            lines += [f"control {name} (must fail):", str(r)]
        return "\n".join(lines)


def _leaves(expr: Product) -> list[MatrixExpr]:
    out: list[MatrixExpr] = []
    for f in expr.factors:
        out.extend(f.leaves())
    return out


def _check_arguments(comb: Combination, controls: Mapping[str, Combination] | None) -> None:
    """``comb`` is a :class:`Combination` and every control one of the same expression."""
    if not isinstance(comb, Combination):
        raise InvalidArgument(
            f"check_monte_carlo needs a Combination (from derive_sandwich), got {type(comb).__name__}"
        )
    for name, other in (controls or {}).items():
        if not isinstance(other, Combination) or other.random != comb.random:
            raise InvalidArgument(
                f"control {name!r} must be a Combination of the same expression (use with_terms)"
            )


def _setting(
    comb: Combination,
    rng: np.random.Generator,
    values: Mapping[Any, Any] | None,
    dims: Mapping[Any, float] | None,
    spectrum: Callable[[int], Any] | None,
    samplers: Mapping[Any, Any] | None,
) -> PairSetting:
    """The numbers of the check: the deterministic matrices inside the resolvents of the given
    spectrum, the others (only in the middle) dense, every random leaf drawn once per sample
    (seed from ``rng``)."""
    expr, res1, res2 = two_resolvents(comb.random)
    n_dim = comb.dim
    if not isinstance(n_dim, sp.Symbol):
        raise InvalidArgument(f"the resolvents have the fixed size {n_dim}; give them a symbolic dimension")
    leaves = _leaves(expr)
    props = proportions(leaves, n_dim, dims)
    params = named_values(values)
    inside = deterministic_names([*res1.leaves(), *res2.leaves()])
    return PairSetting(
        n_dim=n_dim,
        proportions=props,
        params=params,
        spectrum=spectrum,
        inside=sorted(inside),
        others=sorted(deterministic_names(leaves) - inside),
        draws=leaves,
        samplers=samplers,
        lams=(comb.lam, comb.lam2),
        child=np.random.default_rng(rng.integers(2**63)),
    )


def _chain(
    comb: Combination,
    lam: Any,
    lam2: Any,
    mats: Mapping[str, np.ndarray],
    draws: Mapping[str, np.ndarray],
    scal: Mapping[str, Any],
) -> list[np.ndarray]:
    """The factors of ``comb.random`` at one sample (``draws``): each resolvent, its matrix
    built once, and each run of non-resolvent factors between them multiplied out (real)."""
    args: dict[MatrixExpr, np.ndarray] = {}
    chain: list[np.ndarray] = []
    run: np.ndarray | None = None
    expr, _, _ = two_resolvents(comb.random)
    for f in expr.factors:
        if isinstance(f, Resolvent):
            if run is not None:
                chain.append(run)
                run = None
            if f.arg not in args:
                args[f.arg] = numeric_matrix(f.arg, mats, draws, scal)
            x = args[f.arg]
            ridge = lam if f.lam == comb.lam else lam2
            chain.append(np.linalg.inv(x + ridge * np.eye(x.shape[0])))
        else:
            mat = numeric_matrix(f, mats, draws, scal)
            run = mat if run is None else run @ mat
    if run is not None:
        chain.append(run)
    return chain


def _sample(
    comb: Combination, setting: PairSetting, N: int, lam: Any, lam2: Any, t_of: Callable[[int], np.ndarray]
) -> Any:
    """``tr(T c G1 Mid G2) / n`` at one sample: ``tr(T F_1 ... F_k) = sum((T F_1 ... F_(k-1)) * F_k^T)``
    over the factors of :func:`_chain`."""
    size = setting.at(N)
    chain = _chain(comb, lam, lam2, size.mats, setting.draw(N), size.scal)
    n = chain[0].shape[0]
    out = t_of(n)
    for mat in chain[:-1]:
        out = out @ mat
    expr, _, _ = two_resolvents(comb.random)
    c = scalar_value(expr.coeff, {**size.scal, str(comb.lam): lam, str(comb.lam2): lam2})
    return c * np.sum(out * chain[-1].T) / n


def check_monte_carlo(
    comb: Combination,
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
    controls: Mapping[str, Combination] | None = None,
) -> MonteCarloCheck:
    """Compare ``tr(T c G1 Mid G2)`` with the combination by simulation.

    Parameters
    ----------
    comb : Combination
        From :func:`~detequiv.derivations.sandwich.derive_sandwich`.
    sizes : sequence of int
        Values of the dimension ``N`` of the resolvents; other dimension symbols are
        ``dims[d] * N`` (default 2, i.e. ratio 1/2 for a Gram pair ``X.T @ X / P``).
    rng : numpy.random.Generator
    lams : sequence of (lam, lam2)
        Ridge pairs (default a real and a complex pair; equal values are allowed).
    values : mapping, optional
        Other scalar symbols (law parameters).
    spectrum : callable, optional
        ``n -> eigenvalues`` of the deterministic matrices inside the resolvents
        (default ``linspace(0.5, 2, n)``).
    samplers : mapping, optional
        Free matrix name -> ``(n, rng) -> matrix`` for laws without a built-in model.
    n_samples, c_finite, n_se
        As in :func:`detequiv.witnesses.acceptance.verify` (tolerance
        ``n_se s.e. + c_finite |DE| / N``).
    tests : sequence of {'I', 'T'}
        Test matrices: the identity, and ``diag(linspace(0, 2, n)) + (E + E^T)/2``.
    controls : mapping, optional
        Name -> a wrong :class:`Combination` for the same expression; each is compared
        with the same samples and must be rejected.
    """
    check_rng(rng)
    _check_arguments(comb, controls)
    setting = _setting(comb, rng, values, dims, spectrum, samplers)
    witness = PairWitness(
        exact=trace_of(partial(setting.evaluate, comb)),
        sample=partial(_sample, comb, setting),
        controls={
            name: trace_of(partial(setting.evaluate, other)) for name, other in (controls or {}).items()
        },
        name="tr({test} c G1 Mid G2)",
        control_label="{name}: ",
    )
    checks = check_pairs(
        witness, lams, tests, rng=rng, sizes=sizes, n_samples=n_samples, c_finite=c_finite, n_se=n_se
    )
    return MonteCarloCheck(tuple(SandwichReport(c.lams, c.test, c.report, c.controls) for c in checks))


witness_for(Combination)(check_monte_carlo)
