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
from .onepoint import MonteCarloCheck
from .sampling import check_rng
from .twopoint import (
    _check_pairs,
    _det_names,
    _draw_makers,
    _numeric,
    _proportions,
    _trace_of,
    _two_resolvents,
    _value,
)

__all__ = ["check_monte_carlo", "SandwichReport"]


@dataclass(frozen=True, slots=True)
class SandwichReport:
    """One ridge pair and test matrix: the check, and each control (which must fail)."""

    lams: tuple[complex | float, complex | float]
    test: str
    report: VerificationReport
    controls: tuple[tuple[str, VerificationReport], ...] = ()

    @property
    def passed(self) -> bool:
        """The equivalent passes and every control is rejected."""
        return self.report.passed and not any(r.passed for _, r in self.controls)

    @property
    def rejection(self) -> float:
        """The smallest ``max |err|/tol`` over the controls (``inf`` without controls)."""
        return min((r.max_ratio for _, r in self.controls), default=float("inf"))

    def __str__(self) -> str:
        lines = [f"(lam, lam2) = {self.lams}, test {self.test}:", str(self.report)]
        for name, r in self.controls:
            lines += [f"control {name} (must fail):", str(r)]
        return "\n".join(lines)


def _leaves(expr: Product) -> list[MatrixExpr]:
    out: list[MatrixExpr] = []
    for f in expr.factors:
        out.extend(f.leaves())
    return out


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
    if not isinstance(comb, Combination):
        raise InvalidArgument(
            f"check_monte_carlo needs a Combination (from derive_sandwich), got {type(comb).__name__}"
        )
    for name, other in (controls or {}).items():
        if not isinstance(other, Combination) or other.random != comb.random:
            raise InvalidArgument(
                f"control {name!r} must be a Combination of the same expression (use with_terms)"
            )
    expr, res1, res2 = _two_resolvents(comb.random)
    n_dim = comb.dim
    if not isinstance(n_dim, sp.Symbol):
        raise InvalidArgument(f"the resolvents have the fixed size {n_dim}; give them a symbolic dimension")
    leaves = _leaves(expr)
    props = _proportions(leaves, n_dim, dims)
    params = {str(getattr(k, "name", k)): v for k, v in (values or {}).items()}
    spec = spectrum or (lambda n: np.linspace(0.5, 2.0, n))
    inside = _det_names([*res1.leaves(), *res2.leaves()])
    others = sorted(_det_names(leaves) - inside)
    child = np.random.default_rng(rng.integers(2**63))
    cache: dict[int, Any] = {}

    def prepared(N: int) -> Any:
        if N not in cache:
            scal = {**params, **{d: max(1, round(p * N)) for d, p in props.items()}}
            n = int(_value(n_dim, scal).real)
            e = np.asarray(spec(n), dtype=float)
            mats: dict[str, np.ndarray] = {}
            spectra: dict[str, np.ndarray] = {}
            for name in sorted(inside):
                mats[name], mats[name + "^(1/2)"] = np.diag(e), np.diag(np.sqrt(e))
                spectra[name] = e
            for name in others:
                mats[name] = np.eye(n) + child.standard_normal((n, n)) / np.sqrt(n)
            draws = _draw_makers(leaves, scal, samplers, child)
            cache[N] = (scal, spectra, mats, draws)
        return cache[N]

    evaluated: dict[tuple[int, int, Any, Any], Any] = {}

    def numbers(which: Combination, N: int, lam: Any, lam2: Any) -> Any:
        key = (id(which), N, lam, lam2)
        if key not in evaluated:
            scal, spectra, mats, _ = prepared(N)
            vals: dict[Any, Any] = {**scal, str(comb.lam): lam, str(comb.lam2): lam2, **spectra}
            vals.update({k: mats[k] for k in others})
            evaluated[key] = which.evaluate(vals)
        return evaluated[key]

    def sample(N: int, lam: Any, lam2: Any, t_of: Callable[[int], np.ndarray]) -> Any:
        scal, _, mats, draws = prepared(N)
        sampled = {name: f() for name, f in draws.items()}
        # runs of non-resolvent factors are multiplied first (real), each resolvent
        # matrix is built once; tr(T F_1 ... F_k) = sum((T F_1 ... F_(k-1)) * F_k^T)
        args: dict[MatrixExpr, np.ndarray] = {}
        chain: list[np.ndarray] = []
        run: np.ndarray | None = None
        for f in expr.factors:
            if isinstance(f, Resolvent):
                if run is not None:
                    chain.append(run)
                    run = None
                if f.arg not in args:
                    args[f.arg] = _numeric(f.arg, mats, sampled, scal)
                x = args[f.arg]
                ridge = lam if f.lam == comb.lam else lam2
                chain.append(np.linalg.inv(x + ridge * np.eye(x.shape[0])))
            else:
                mat = _numeric(f, mats, sampled, scal)
                run = mat if run is None else run @ mat
        if run is not None:
            chain.append(run)
        n = chain[0].shape[0]
        out = t_of(n)
        for mat in chain[:-1]:
            out = out @ mat
        c = _value(expr.coeff, {**scal, str(comb.lam): lam, str(comb.lam2): lam2})
        return c * np.sum(out * chain[-1].T) / n

    checks = _check_pairs(
        lams,
        tests,
        rng=rng,
        exact=_trace_of(partial(numbers, comb)),
        sample=sample,
        controls={name: _trace_of(partial(numbers, other)) for name, other in (controls or {}).items()},
        name="tr({test} c G1 Mid G2)",
        control_label="{name}: ",
        sizes=sizes,
        n_samples=n_samples,
        c_finite=c_finite,
        n_se=n_se,
    )
    reports = [SandwichReport(c.lams, c.test, c.report, c.controls) for c in checks]
    return MonteCarloCheck(tuple(reports))


witness_for(Combination)(check_monte_carlo)
