"""Compare an exact large-N value with Monte Carlo at several matrix sizes.

The acceptance rule of the project (MATH.md, "Monte Carlo acceptance rule"): at each
size ``N`` the Monte Carlo mean must satisfy::

    |MC - exact| < n_se * s.e. + c_finite * |exact| / N

(defaults ``n_se = 4``, ``c_finite = 5``), and the error must not grow with ``N``
beyond noise: ``|err(N_max)| <= |err(N_min)| + n_se (se_min + se_max)``. A fitted
log-log slope of ``|err|`` against ``N`` is reported as information (about -1 when
the finite-size bias dominates, noisy when the error is at the noise level).

>>> import numpy as np
>>> from detequiv.witnesses.sampling import wishart_sampler
>>> from detequiv.witnesses.acceptance import verify
>>> q = 1.0
>>> report = verify(1 + 3 * q + q**2, "WWW", {"W": wishart_sampler(q)},
...                 sizes=(50, 100), n_samples=20, rng=np.random.default_rng(0))
>>> report.passed
True
>>> [row.N for row in report.rows]
[50, 100]

Dropping the ``q^2`` of the Marchenko-Pastur moment is caught:

>>> wrong = verify(1 + 3 * q, "WWW", {"W": wishart_sampler(q)},
...                sizes=(50, 100), n_samples=20, rng=np.random.default_rng(0))
>>> wrong.passed, wrong.max_ratio > 1
(False, True)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgument, VerificationError
from .sampling import MCEstimate, Sampler, check_rng, mc_estimate, trace_moment

__all__ = [
    "VerificationRow",
    "VerificationReport",
    "verify",
    "check_mc",
    "is_consistent_mc",
]


@dataclass(frozen=True, slots=True)
class VerificationRow:
    """One matrix size of a verification.

    Attributes
    ----------
    N : int
        Matrix dimension.
    exact : float or complex
        The exact (limit) value used at this ``N``.
    mean, se : float or complex, float
        Monte Carlo mean and standard error.
    n_samples : int
        Number of Monte Carlo samples.
    error : float or complex
        ``mean - exact``.
    tolerance : float
        ``n_se * se + c_finite * |exact| / N``.
    ok : bool
        ``|error| < tolerance``.
    """

    N: int
    exact: float | complex
    mean: float | complex
    se: float
    n_samples: int
    error: float | complex
    tolerance: float
    ok: bool

    @property
    def abs_error(self) -> float:
        """``|mean - exact|``."""
        return abs(self.error)

    @property
    def ratio(self) -> float:
        """``|error| / tolerance``; below 1 means the row passes."""
        if self.tolerance == 0:
            return 0.0 if self.abs_error == 0 else math.inf
        return self.abs_error / self.tolerance


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """The result of :func:`verify`: one row per size plus the trend check.

    Attributes
    ----------
    label : str
        What was measured (a trace word or a functional's name).
    rows : tuple of VerificationRow
        Sorted by increasing ``N``.
    n_se, c_finite : float
        The tolerance parameters.
    """

    label: str
    rows: tuple[VerificationRow, ...]
    n_se: float
    c_finite: float

    @property
    def rows_ok(self) -> bool:
        """Every row within its tolerance."""
        return all(r.ok for r in self.rows)

    @property
    def trend_ok(self) -> bool:
        """Whether the error at the largest ``N`` stays below that at the smallest.

        Up to noise: ``|err(N_max)| <= |err(N_min)| + n_se (se_min + se_max)``.
        """
        lo, hi = self.rows[0], self.rows[-1]
        return hi.abs_error <= lo.abs_error + self.n_se * (lo.se + hi.se)

    @property
    def passed(self) -> bool:
        """``rows_ok and trend_ok``."""
        return self.rows_ok and self.trend_ok

    @property
    def max_ratio(self) -> float:
        """Largest ``|error| / tolerance`` over the rows (> 1 means some row fails)."""
        return max(r.ratio for r in self.rows)

    @property
    def slope(self) -> float | None:
        """Least-squares slope of ``log |error|`` against ``log N`` (information only).

        ``None`` with fewer than two sizes or if some error is exactly zero.
        """
        if len(self.rows) < 2 or any(r.abs_error == 0 for r in self.rows):
            return None
        x = np.log([r.N for r in self.rows])
        y = np.log([r.abs_error for r in self.rows])
        return float(np.polyfit(x, y, 1)[0])

    def raise_if_failed(self) -> None:
        """Raise :class:`VerificationError` carrying the table if the check failed."""
        if not self.passed:
            raise VerificationError("Monte Carlo disagrees with the exact value:\n" + str(self))

    def __str__(self) -> str:
        head = (
            f"{'N':>6} {'exact':>14} {'MC mean':>14} {'s.e.':>9} "
            f"{'error':>11} {'tolerance':>10} {'|err|/tol':>9}  ok"
        )
        lines = [
            f"verify {self.label}: tolerance = {self.n_se:g} s.e. + {self.c_finite:g} |exact| / N",
            head,
        ]
        for r in self.rows:
            lines.append(
                f"{r.N:>6} {_fmt(r.exact, 14)} {_fmt(r.mean, 14)} {r.se:>9.2e} "
                f"{_fmt(r.error, 11, '.2e')} {r.tolerance:>10.2e} {r.ratio:>9.3f}  "
                f"{'yes' if r.ok else 'NO'}"
            )
        slope = self.slope
        lines.append(
            "trend (|err(N_max)| <= |err(N_min)| + n_se (se_min + se_max)): "
            f"{'ok' if self.trend_ok else 'FAILED'}; "
            "fitted slope of log|err| vs log N: " + ("n/a" if slope is None else f"{slope:.2f}")
        )
        lines.append(f"passed: {self.passed} (max |err|/tol = {self.max_ratio:.3f})")
        return "\n".join(lines)


def _fmt(x: float | complex, width: int, spec: str = ".8g") -> str:
    if isinstance(x, complex):
        return format(f"{x.real:{spec}}{x.imag:+{spec}}j", f">{width}")
    return format(x, f">{width}{spec}")


def _as_number(x: Any) -> float | complex:
    """A finite Python float or complex from a number (numpy, sympy scalars too)."""
    value: float | complex
    try:
        if isinstance(x, (str, bytes)):
            raise TypeError
        if isinstance(x, complex) or np.iscomplexobj(x):
            value = complex(x)
        else:
            try:
                value = float(x)
            except TypeError:
                value = complex(x)
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"exact value {x!r} is not a number; give a number or a callable N -> number"
        ) from None
    if not (math.isfinite(value.real) and math.isfinite(value.imag)):
        raise InvalidArgument(f"exact value {x!r} is not finite; give a finite number")
    return value


def _check_sizes(sizes: Any) -> tuple[int, ...]:
    try:
        items = tuple(sizes)
    except TypeError:
        raise InvalidArgument(f"sizes={sizes!r} is not a sequence; pass e.g. sizes=(200, 400, 800)") from None
    if not items:
        raise InvalidArgument("sizes is empty; pass at least one matrix size")
    for n in items:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise InvalidArgument(f"size {n!r} in sizes={sizes!r} is not a positive integer")
    if len(set(items)) != len(items):
        raise InvalidArgument(f"sizes={sizes!r} repeats a size; give distinct sizes")
    return tuple(sorted(int(n) for n in items))


def _label(target: Any) -> str:
    if callable(target):
        return getattr(target, "__name__", repr(target))
    letters = tuple(target)
    if all(isinstance(x, str) and len(x) == 1 for x in letters):
        return "tr(" + "".join(letters) + ")"
    return "tr(" + " ".join(str(x) for x in letters) + ")"


def _check_tolerance(**params: Any) -> None:
    """Each tolerance parameter (``c_finite``, ``n_se``) is a finite real ``>= 0``."""
    for name, value in params.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
            or value < 0
        ):
            raise InvalidArgument(f"{name}={value!r} must be a finite real >= 0")


def _row(N: int, exact: float | complex, est: MCEstimate, n_se: float, c_finite: float) -> VerificationRow:
    """The acceptance decision at one size: ``|mean - exact| < n_se se + c_finite |exact| / N``."""
    err = est.mean - exact
    tol = n_se * est.se + c_finite * abs(exact) / N
    return VerificationRow(
        N=N,
        exact=exact,
        mean=est.mean,
        se=est.se,
        n_samples=est.n_samples,
        error=err,
        tolerance=float(tol),
        ok=bool(abs(err) < tol),
    )


def verify(
    exact: Any,
    target: Sequence[Hashable] | Callable[[dict[Hashable, np.ndarray]], Any],
    samplers: Mapping[Hashable, Sampler],
    *,
    sizes: Sequence[int] = (200, 400, 800),
    n_samples: int | Callable[[int], int] = 40,
    rng: np.random.Generator,
    c_finite: float = 5.0,
    n_se: float = 4.0,
    label: str | None = None,
) -> VerificationReport:
    """Compare an exact value with Monte Carlo at several sizes.

    Parameters
    ----------
    exact : number or callable
        The claimed large-``N`` value, or ``N -> value`` when it depends on the
        deterministic matrices used at that size (e.g. ``tr A^2`` of a spectrum
        ``linspace(0.5, 2, N)``).
    target : word or callable
        A word of letter keys (estimated with
        :func:`~detequiv.witnesses.sampling.trace_moment`) or a functional of the
        dict of sampled matrices (:func:`~detequiv.witnesses.sampling.mc_estimate`).
    samplers : mapping
        Letter key -> sampler ``f(N, rng)``.
    sizes : sequence of int
        Matrix sizes (distinct; sorted increasingly in the report).
    n_samples : int or callable
        Samples per size, or ``N -> samples``.
    rng : numpy.random.Generator
        Used for all sizes in increasing order.
    c_finite, n_se : float
        Tolerance ``n_se * se + c_finite * |exact| / N`` at each ``N``.
    label : str, optional
        Name printed in the report (default: the word or the functional's name).

    Returns
    -------
    VerificationReport
        ``passed`` is ``True`` iff every row is within tolerance and the error does
        not grow with ``N`` beyond noise.
    """
    check_rng(rng)
    ns = _check_sizes(sizes)
    _check_tolerance(c_finite=c_finite, n_se=n_se)
    estimate = mc_estimate if callable(target) else trace_moment
    rows = []
    for N in ns:
        ex = _as_number(exact(N) if callable(exact) else exact)  # before the draws at N
        m = n_samples(N) if callable(n_samples) else n_samples
        rows.append(_row(N, ex, estimate(target, samplers, N, m, rng), n_se, c_finite))  # type: ignore[arg-type]
    return VerificationReport(
        label=label if label is not None else _label(target),
        rows=tuple(rows),
        n_se=float(n_se),
        c_finite=float(c_finite),
    )


def check_mc(
    exact: Any,
    target: Sequence[Hashable] | Callable[[dict[Hashable, np.ndarray]], Any],
    samplers: Mapping[Hashable, Sampler],
    **kwargs: Any,
) -> tuple[bool, VerificationReport]:
    """``(passed, report)`` of :func:`verify` (same arguments): verdict and evidence."""
    report = verify(exact, target, samplers, **kwargs)
    return report.passed, report


def is_consistent_mc(
    exact: Any,
    target: Sequence[Hashable] | Callable[[dict[Hashable, np.ndarray]], Any],
    samplers: Mapping[Hashable, Sampler],
    **kwargs: Any,
) -> bool:
    """Whether :func:`verify` (same arguments) passes."""
    return verify(exact, target, samplers, **kwargs).passed
