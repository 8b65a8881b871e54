"""The Monte Carlo witness for symbolic results: exact sympy values against simulation.

:func:`evaluate_traces` turns an exact expression in the deterministic traces
``tr(...)`` into a number for concrete matrices; :func:`sampler_for_law` gives a
seeded sampler for a free law; :func:`verify_mixed_moment` puts them together:
derive the limit of a word, then compare it with Monte Carlo at several ``N``.

>>> import numpy as np, sympy as sp
>>> from detequiv.derivations.laws import Wishart
>>> from detequiv.witnesses.moments import verify_mixed_moment
>>> A, W = sp.symbols("A W", commutative=False)
>>> report = verify_mixed_moment(A * W * A * W, {W: Wishart(sp.Rational(1, 2))},
...     deterministic={A: lambda N: np.linspace(0.5, 2.0, N)},
...     sizes=(50, 100), n_samples=20, rng=np.random.default_rng(1))
>>> report.passed
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import sympy as sp

from ..derivations.laws import Constant, FreePoisson, Law, Semicircle, STransformLaw, Wishart
from ..derivations.mixed import mixed_moment, to_trace_word
from ..derivations.quantities import tr
from ..errors import InvalidArgument
from .acceptance import VerificationReport, verify
from .sampling import (
    Sampler,
    fixed_matrix_sampler,
    goe_sampler,
    quantile_spectrum,
    rotated_spectrum,
    spectrum_sampler,
    wishart_sampler,
)

__all__ = ["evaluate_traces", "sampler_for_law", "verify_mixed_moment", "as_matrix_factory"]


def _name(key: Any) -> str:
    return key if isinstance(key, str) else str(getattr(key, "name", key))


def evaluate_traces(
    expr: sp.Expr, matrices: Mapping[Any, np.ndarray], values: Mapping[Any, Any] | None = None
) -> complex | float:
    """Numerical value of an expression in ``tr(...)`` symbols for concrete matrices.

    Parameters
    ----------
    expr : sympy.Expr
        For example ``q*tr(A)**2 + tr(A**2)``.
    matrices : mapping
        Letter (symbol or name) to a square array; ``tr`` is ``Tr / n``.
    values : mapping, optional
        Values of the other free symbols (ratios, variances).

    Raises
    ------
    InvalidArgument
        If a letter has no matrix or a symbol has no value (no silent NaN).

    Examples
    --------
    >>> import numpy as np, sympy as sp
    >>> A = sp.Symbol("A", commutative=False); q = sp.Symbol("q")
    >>> evaluate_traces(q * tr(A**2), {A: np.diag([1.0, 3.0])}, {q: 2})
    10.0
    """
    mats = {_name(k): np.asarray(v) for k, v in matrices.items()}
    subs: dict[Any, Any] = {}
    for atom in sp.sympify(expr).atoms(tr):
        letters = atom.letters
        missing = sorted({s.name for s in letters} - set(mats))
        if missing:
            raise InvalidArgument(f"{atom} needs matrices for {missing}; add them to `matrices`")
        prod = mats[letters[0].name]
        for s in letters[1:]:
            prod = prod @ mats[s.name]
        subs[atom] = complex(np.trace(prod)) / prod.shape[0]
    value = sp.sympify(expr).xreplace(subs)
    if values:
        value = value.subs({(sp.Symbol(k) if isinstance(k, str) else k): v for k, v in values.items()})
    leftover = value.free_symbols
    if leftover:
        raise InvalidArgument(f"no value for {sorted(map(str, leftover))} in {expr}; pass them in `values`")
    out = complex(value)
    return out.real if out.imag == 0 else out


def _number(x: Any, what: str) -> float:
    x = sp.sympify(x)
    if x.free_symbols:
        raise InvalidArgument(
            f"{what}={x} is symbolic; give numbers to simulate (e.g. Wishart(sp.Rational(1, 2)))"
        )
    return float(x)


def sampler_for_law(law: Law) -> Sampler:
    """A seeded matrix sampler realising a free law at size ``N``.

    ``Wishart(q)``: white Wishart of ratio ``q``; ``Semicircle(v)``: GOE of variance
    ``v``; ``FreePoisson(rate, jump)``: ``rate * jump`` times a white Wishart of
    ratio ``1/rate``; ``Constant(c)``: ``c I``. Laws given only by cumulants have no
    canonical matrix model and raise :class:`InvalidArgument`.

    ``STransformLaw``: ``O diag(e) O^T`` with Haar ``O``, where ``e`` is the law's
    ``spectrum(N)`` if it was given one, else the ``N`` quantiles ``(k - 1/2)/N`` of its
    distribution, found by Stieltjes inversion of the S-transform (see
    :func:`_s_law_density`; an atom, e.g. at 0 for a Wishart of ratio ``q > 1``, becomes
    a spike of relative width 1e-9). The inversion needs numeric parameters and a
    compactly supported law; otherwise it raises :class:`InvalidArgument` (give the law
    a ``spectrum=`` then).

    >>> import sympy as sp
    >>> from detequiv.derivations.laws import STransformLaw
    >>> t = sp.Symbol("t")
    >>> e = sampler_for_law(STransformLaw(1 / (1 + t / 2), t)).quantiles(1000)
    >>> [round(float(np.mean(e**k)), 3) for k in (1, 2, 3)]    # MP(1/2): 1, 1.5, 2.75
    [1.0, 1.5, 2.75]
    """
    if isinstance(law, STransformLaw):
        if law.spectrum is not None:
            return spectrum_sampler(law.spectrum)
        x, cdf = _s_law_density(law.s, law.t)
        return _QuantileSampler(x, cdf)
    if isinstance(law, Wishart):
        return wishart_sampler(_number(law.ratio, "ratio"))
    if isinstance(law, Semicircle):
        return goe_sampler(_number(law.variance, "variance"))
    if isinstance(law, FreePoisson):
        # c W_q has cumulants c^n q^(n-1); matching rate * jump^n needs q = 1/rate, c = rate * jump
        rate = _number(law.rate, "rate")
        base = wishart_sampler(1.0 / rate)
        scale = rate * _number(law.jump, "jump")
        return lambda N, rng: scale * base(N, rng)
    if isinstance(law, Constant):
        c = _number(law.value, "value")
        return fixed_matrix_sampler(lambda N: c * np.eye(N))
    raise InvalidArgument(f"{law} has no built-in matrix model; pass a sampler for it in `samplers`")


@dataclass(frozen=True, slots=True, eq=False)
class _QuantileSampler:
    """``(N, rng) -> O diag(quantiles) O^T`` for a law tabulated as a distribution function."""

    x: np.ndarray
    cdf: np.ndarray

    def quantiles(self, N: int) -> np.ndarray:
        return quantile_spectrum(lambda u: np.interp(u, self.cdf, self.x), N)

    def __call__(self, N: int, rng: np.random.Generator) -> np.ndarray:
        return rotated_spectrum(self.quantiles(N), rng)


def _stieltjes_on_line(
    s_num: Callable[[Any], Any],
    ds_num: Callable[[Any], Any],
    moments: Sequence[float],
    x: np.ndarray,
    height: float,
    top: float,
) -> tuple[np.ndarray, np.ndarray]:
    r"""``G(x + i height)`` on a grid, from :math:`\zeta yS(y)=1+y`, :math:`G=(1+y)/\zeta`.

    With :math:`y=\psi(1/\zeta)=\zeta G(\zeta)-1` the relation
    :math:`\chi(\psi(u))=u`, :math:`\chi(y)=S(y)y/(1+y)`, reads
    :math:`\zeta yS(y)=1+y`. The physical root is followed by Newton's method from
    :math:`\mathrm{Im}\,\zeta=top` (far from the spectrum, where
    :math:`y\approx\sum_km_k\zeta^{-k}`) down to ``height`` in small geometric steps,
    all grid points at once; the branch points lie on the real axis, so the root is
    never lost above it. Returns ``G`` and the final relative residual.
    """
    heights = np.geomspace(top, height, 100)
    zeta = x + 1j * heights[0]
    y = sum(m * zeta ** -(k + 1) for k, m in enumerate(moments))
    residual = np.full(x.shape, np.inf)
    with np.errstate(all="ignore"):
        for i, h in enumerate(heights):
            zeta = x + 1j * h
            # on the way down a few steps keep track of the root; polish at the end
            for _ in range(60 if i == heights.size - 1 else 6):
                sv = s_num(y)
                f = zeta * y * sv - 1 - y
                df = zeta * (sv + y * ds_num(y)) - 1
                step = f / df
                y = y - step
                if np.all(np.abs(step) <= 1e-13 * (1 + np.abs(y))):
                    break
        residual = np.abs(zeta * y * s_num(y) - 1 - y) / (1 + np.abs(y))
    return (1 + y) / zeta, residual


def _adaptive_density(
    density: Callable[[np.ndarray], tuple[np.ndarray, bool]], x: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray, bool]:
    r"""Refine the grid ``x`` where trapezoid and Simpson masses of an interval differ.

    Singular edges (e.g. :math:`x^{-2/3}` at 0 for a product of two Wisharts) and atoms
    (a Lorentzian of width :math:`\epsilon`) get bisected down to their own scale, so
    the tabulated mass converges. Returns the grid, the density and whether every
    evaluation found the physical root.
    """
    d, ok = density(x)
    active = np.ones(x.size - 1, dtype=bool)
    for _ in range(80):
        idx = np.flatnonzero(active)
        if idx.size == 0 or x.size > 400_000 or not ok:
            break
        a, b = x[idx], x[idx + 1]
        mid = (a + b) / 2
        dm, good = density(mid)
        ok = ok and good
        trap = (b - a) * (d[idx] + d[idx + 1]) / 2
        simpson = (b - a) * (d[idx] + 4 * dm + d[idx + 1]) / 6
        refine = np.abs(simpson - trap) > tol
        keep = idx[refine]
        x = np.insert(x, keep + 1, mid[refine])
        d = np.insert(d, keep + 1, dm[refine])
        # new intervals: both halves of each refined one are active, the rest are done
        flags = np.zeros(x.size - 1, dtype=bool)
        shifted = keep + np.arange(keep.size)  # positions of the left halves after insertion
        flags[shifted] = True
        flags[shifted + 1] = True
        active = flags
    return x, d, ok


@lru_cache(maxsize=32)
def _s_law_density(s: sp.Expr, t: sp.Symbol) -> tuple[np.ndarray, np.ndarray]:
    r"""Grid ``x`` and distribution function ``cdf`` of the law with S-transform ``s``.

    The density :math:`-\mathrm{Im}\,G(x+i\epsilon)/\pi` (:func:`_stieltjes_on_line`,
    :math:`\epsilon` a 1e-9 fraction of the window) on an adaptively refined grid
    (:func:`_adaptive_density`) over a window around the mean, widened until the captured
    mass is 1 within 1e-3. The table is then checked against the exact moments
    :math:`m_1, m_2` (relative error 1e-2); any failure (symbolic parameters, unbounded
    support, a non-physical root) raises :class:`InvalidArgument`.
    """
    law_text = f"the law with S({t}) = {s}"
    hint = "; give the STransformLaw a spectrum=lambda N: eigenvalues to sample it"
    params = s.free_symbols - {t}
    if params:
        raise InvalidArgument(
            f"{law_text} has the symbolic parameters {sorted(map(str, params))}; give them numbers "
            "(law.subs(...) or values=) to sample it, or give the STransformLaw a "
            "spectrum=lambda N: eigenvalues"
        )
    from ..derivations.transforms import moments_from_s

    m = [complex(v).real for v in moments_from_s(s, t, 4)]
    if not s.has(t):  # a constant law: its S-transform is 1/c
        return np.array([m[0], m[0]]), np.array([0.0, 1.0])
    s_num = sp.lambdify(t, s, "numpy")
    ds_num = sp.lambdify(t, sp.diff(s, t), "numpy")
    hankel = np.array([[1.0, m[0], m[1]], [m[0], m[1], m[2]], [m[1], m[2], m[3]]])
    low = float(np.linalg.eigvalsh(hankel)[0])
    if low < -1e-12 * float(np.abs(hankel).max()):
        raise InvalidArgument(
            f"{law_text} has moments {m} whose Hankel matrix (m_(i+j)) is not positive semidefinite "
            f"(eigenvalue {low:.3g}), so it is not the law of a real symmetric matrix and cannot be sampled"
        )
    sd = math.sqrt(max(m[1] - m[0] ** 2, 0.0))
    half = max(6.0 * sd, 0.5 * abs(m[0]), 1e-12)
    for _ in range(6):
        height, top = 1e-9 * half, 20.0 * (abs(m[0]) + half)

        def density(x: np.ndarray, height: float = height, top: float = top) -> tuple[np.ndarray, bool]:
            g, residual = _stieltjes_on_line(s_num, ds_num, m, x, height, top)
            good = bool(np.all(np.isfinite(g))) and float(np.max(residual, initial=0.0)) < 1e-6
            rho = -g.imag / math.pi
            good = good and float(np.min(rho, initial=0.0)) > -1e-6 * float(np.max(rho, initial=1.0))
            return np.clip(np.nan_to_num(rho), 0.0, None), good

        x, d, ok = _adaptive_density(density, np.linspace(m[0] - half, m[0] + half, 2001), 1e-7)
        if not ok:  # no physical root (Im G > 0 or Newton lost it): a wider window cannot help
            raise InvalidArgument(
                f"the numeric Stieltjes inversion of {law_text} found no Stieltjes transform of a "
                "probability law (Im G > 0 or no convergent root): S may not be the S-transform of a "
                "law" + hint
            )
        mass = float(np.sum((d[1:] + d[:-1]) * np.diff(x)) / 2)
        edge = max(d[0], d[-1]) * half
        if abs(mass - 1.0) < 1e-3 and edge < 1e-3:
            break
        half *= 2.0
    else:
        raise InvalidArgument(
            f"the numeric Stieltjes inversion of {law_text} did not give a compactly supported "
            "law of mass 1 (a heavy tail or a non-physical S)" + hint
        )
    cdf = np.concatenate([[0.0], np.cumsum((d[1:] + d[:-1]) * np.diff(x) / 2)])
    cdf /= cdf[-1]
    e = np.interp((np.arange(20000) + 0.5) / 20000, cdf, x)
    for k in (1, 2):
        got, want = float(np.mean(e**k)), m[k - 1]
        if abs(got - want) > 1e-2 * max(abs(want), m[1]):
            raise InvalidArgument(
                f"the numeric Stieltjes inversion of {law_text} gives m{k} = {got:.6g}, but the exact "
                f"value is {want:.6g}" + hint
            )
    x.setflags(write=False)
    cdf.setflags(write=False)
    return x, cdf


def as_matrix_factory(spec: Any) -> Callable[[int], np.ndarray]:
    """``N -> matrix`` from a callable returning a matrix or a spectrum (diagonal)."""
    if not callable(spec):
        raise InvalidArgument(
            f"{spec!r} is not callable; give N -> eigenvalues (length N) or N -> (N x N) matrix"
        )

    def factory(N: int) -> np.ndarray:
        m = np.asarray(spec(N))
        if m.shape == (N,):
            return np.diag(m)
        if m.shape != (N, N):
            raise InvalidArgument(
                f"the deterministic matrix at N={N} has shape {m.shape}; want ({N},) or ({N}, {N})"
            )
        return m

    return factory


def verify_mixed_moment(
    word: Any,
    laws: Mapping[Any, Law],
    *,
    deterministic: Mapping[Any, Any] | None = None,
    samplers: Mapping[Any, Sampler] | None = None,
    values: Mapping[Any, Any] | None = None,
    exact: sp.Expr | None = None,
    sizes: Sequence[int] = (200, 400, 800),
    n_samples: int | Callable[[int], int] = 20,
    rng: np.random.Generator,
    c_finite: float = 5.0,
    n_se: float = 4.0,
) -> VerificationReport:
    """Limit trace of a word (or a claimed ``exact`` expression) against Monte Carlo.

    Parameters
    ----------
    word : sympy.Expr or TraceWord
        The word, e.g. ``A*W*A*W``.
    laws : mapping
        Free letters and their laws (numeric parameters, or symbols given in ``values``).
    deterministic : mapping
        Deterministic letter to ``N -> eigenvalues`` (a diagonal matrix) or
        ``N -> matrix``.
    samplers : mapping, optional
        Samplers overriding :func:`sampler_for_law` for some free letters.
    exact : sympy.Expr, optional
        The claimed value; defaults to :func:`mixed_moment` of the word. Passing a
        wrong formula here shows that the check can fail.
    sizes, n_samples, rng, c_finite, n_se
        As in :func:`detequiv.witnesses.acceptance.verify`.
    """
    by_name = {_name(k): v for k, v in laws.items()}
    tw = to_trace_word(word, by_name)
    value = mixed_moment(tw, laws) if exact is None else sp.sympify(exact)
    subs = dict(values or {})
    det = {_name(k): as_matrix_factory(v) for k, v in (deterministic or {}).items()}
    missing = sorted({x.name for x in tw.letters if not x.free} - set(det))
    if missing:
        raise InvalidArgument(f"deterministic letters {missing} need matrices in `deterministic`")
    sampler_map: dict[Any, Sampler] = {}
    for name, law in by_name.items():
        if samplers and name in {_name(k) for k in samplers}:
            continue
        sub_law = law
        if subs and hasattr(law, "subs"):
            sub_law = law.subs(subs)
        sampler_map[name] = sampler_for_law(sub_law)
    for k, s in (samplers or {}).items():
        sampler_map[_name(k)] = s
    for name, factory in det.items():
        sampler_map[name] = fixed_matrix_sampler(factory)

    def exact_at(N: int) -> complex | float:
        return evaluate_traces(value, {n: f(N) for n, f in det.items()}, subs)

    return verify(
        exact_at,
        [x.name for x in tw.letters],
        sampler_map,
        sizes=sizes,
        n_samples=n_samples,
        rng=rng,
        c_finite=c_finite,
        n_se=n_se,
        label=str(tw),
    )
