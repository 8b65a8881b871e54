"""The Monte Carlo witness for symbolic results: exact sympy values against simulation.

:func:`evaluate_traces` turns an exact expression in the deterministic traces
``tr(...)`` into a number for concrete matrices; :func:`sampler_for_law` gives a
seeded sampler for a free law; :func:`verify_mixed_moment` puts them together:
derive the limit of a word, then compare it with Monte Carlo at several ``N``.

>>> import numpy as np, sympy as sp
>>> from detequiv.derivations.laws import Wishart
>>> from detequiv.codegen.witness import verify_mixed_moment
>>> A, W = sp.symbols("A W", commutative=False)
>>> report = verify_mixed_moment(A * W * A * W, {W: Wishart(sp.Rational(1, 2))},
...     deterministic={A: lambda N: np.linspace(0.5, 2.0, N)},
...     sizes=(50, 100), n_samples=20, rng=np.random.default_rng(1))
>>> report.passed
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import sympy as sp

from ..derivations.laws import Constant, FreePoisson, Law, Semicircle, Wishart
from ..derivations.mixed import mixed_moment, to_trace_word
from ..derivations.quantities import tr
from ..errors import InvalidArgument
from .montecarlo import Sampler, fixed_matrix_sampler, goe_sampler, wishart_sampler
from .verify import VerificationReport, verify

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
    """
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
        As in :func:`detequiv.codegen.verify.verify`.
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
