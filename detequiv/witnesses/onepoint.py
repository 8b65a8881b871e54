"""The Monte Carlo witness of a one-point equivalent.

:func:`check_monte_carlo` samples the original random expression of a
:class:`~detequiv.derivations.onepoint.OnePoint` at several sizes and compares ``tr(T .)``
with the equivalent (solved by :meth:`OnePoint.evaluate`) through :func:`verify`, at real
and complex ridges. Importing this module registers it as
:meth:`OnePoint.check_monte_carlo` (the dependency points ``codegen -> derivations``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import sympy as sp

from ..derivations.expressions import (
    Deterministic,
    DeterministicVector,
    FreeMatrix,
    Gaussian,
    MatrixExpr,
    Product,
    Rectangular,
    Sqrt,
    Sum,
    Transpose,
)
from ..derivations.numeric import (
    _number,
    _plain,
    _split_values,
    _substitute,
    contracted_value,
    contraction_factor,
)
from ..derivations.onepoint import Contracted, OnePoint, _resolvent_parts, register_witness
from ..errors import InvalidArgument
from .acceptance import verify
from .common import MonteCarloCheck
from .moments import sampler_for_law
from .sampling import check_rng

__all__ = ["check_monte_carlo", "MonteCarloCheck"]


# ---------------------------------------------------------------------------
# Monte Carlo
# ---------------------------------------------------------------------------


def _test_matrix(n: int) -> np.ndarray:
    """``diag(linspace(0, 2, n)) + (E + E^T) / 2``: weighs the spectrum unevenly and does
    not commute with a diagonal covariance."""
    return np.diag(np.linspace(0.0, 2.0, n)) + 0.5 * (np.eye(n, k=1) + np.eye(n, k=-1))


def _test_matrix_general(n: int) -> np.ndarray:
    """The default for a matrix declared ``symmetric=False``: :func:`_test_matrix` plus
    ``0.5 E`` above the diagonal only, so ``A != A^T``."""
    return _test_matrix(n) + 0.5 * np.eye(n, k=2)


def _test_rectangular(rows: int, cols: int) -> np.ndarray:
    """The default for a :class:`Rectangular` matrix: one fixed draw of iid N(0, 1) entries
    (seeded by the shape, so it is the same matrix in every sample: deterministic)."""
    return np.random.default_rng(rows * 100003 + cols).standard_normal((rows, cols))


def _test_vector(n: int) -> np.ndarray:
    """A unit vector with uneven weights ``linspace(0.2, 1, n)`` (normalized)."""
    v = np.linspace(0.2, 1.0, n)
    return v / np.linalg.norm(v)


def _numeric_expr(
    expr: MatrixExpr, det: Mapping[str, np.ndarray], draws: dict[str, np.ndarray], scal: Mapping[str, Any]
) -> np.ndarray:
    if isinstance(expr, Product):
        out = _numeric_expr(expr.factors[0], det, draws, scal)
        for f in expr.factors[1:]:
            out = out @ _numeric_expr(f, det, draws, scal)
        if expr.coeff == 1:
            return out
        c = _plain(_number(_substitute(expr.coeff, scal), f"coefficient {expr.coeff}"))
        return c * out
    if isinstance(expr, Sum):
        return sum(_numeric_expr(t, det, draws, scal) for t in expr.terms)  # type: ignore[return-value]
    if isinstance(expr, Deterministic):
        return det[expr.name]
    if isinstance(expr, Sqrt):
        return det[expr.base.name + "^(1/2)"]
    if isinstance(expr, (Gaussian, FreeMatrix)):
        return draws[expr.name]
    if isinstance(expr, Rectangular):
        return det[expr.name]
    if isinstance(expr, Transpose):
        if isinstance(expr.arg, (Deterministic, Rectangular)):
            return det[expr.arg.name].T
        return draws[expr.arg.name].T
    raise InvalidArgument(f"cannot sample {expr}")  # pragma: no cover


def check_monte_carlo(
    eq: OnePoint | Contracted,
    sizes: Sequence[int] = (100, 200, 400),
    *,
    rng: np.random.Generator,
    lams: Sequence[complex] = (0.5, 0.3 + 0.4j),
    values: Mapping[Any, Any] | None = None,
    dims: Mapping[Any, float] | None = None,
    spectra: Mapping[Any, Any] | None = None,
    samplers: Mapping[Any, Any] | None = None,
    n_samples: int = 20,
    c_finite: float = 5.0,
    n_se: float = 4.0,
    vectors: Mapping[Any, Any] | None = None,
) -> MonteCarloCheck:
    """Compare ``tr(T .)`` of the random expression with the equivalent, by simulation.

    Parameters
    ----------
    sizes : sequence of int
        Values of the resolvent's dimension ``N``; every other dimension symbol is
        ``round(dims[d] * N)`` (default proportion 2 for the others, 1 for ``N``'s).
    rng : numpy.random.Generator
    lams : sequence of numbers
        Ridges at which to compare (default a real and a complex one).
    values : mapping, optional
        Other symbols (law parameters such as ``q1``).
    spectra : mapping, optional
        Deterministic matrix -> ``n -> eigenvalues`` (default ``linspace(0.5, 2, n)``).
    samplers : mapping, optional
        Free matrix (or name) -> ``(n, rng) -> matrix`` for laws without a built-in model.
    n_samples, c_finite, n_se
        As in :func:`detequiv.witnesses.acceptance.verify`.
    vectors : mapping, optional
        For a quadratic form: vector (or name) -> ``n -> 1-D array`` (default the unit
        vector ``linspace(0.2, 1, n) / norm``).

    Notes
    -----
    The test matrices are the identity and ``diag(linspace(0, 2, n)) + (E + E^T)/2``,
    which weighs the spectrum unevenly and does not commute with a diagonal covariance.

    For a :class:`~detequiv.derivations.onepoint.Contracted` result the functional is
    the user's contraction itself: ``tr(T .)`` with the test matrices of the input
    (``spectra`` entries, default the matrix above unless it is also in the resolvent)
    or ``u.T . v``. A quadratic form with a bounded vector does not self-average: one
    sample fluctuates as ``O(1/sqrt(N))`` (MATH.md 6.7), not ``O(1/N)`` like a
    normalized trace. The tolerance ``n_se * se + c_finite |exact| / N`` of
    :func:`~detequiv.witnesses.acceptance.verify` uses the empirical standard error ``se``
    of the ``n_samples`` draws, so it widens to ``O(1/sqrt(N n_samples))`` by itself
    (the finite-size bias stays ``O(1/N)``); a wrong formula off by ``O(1)`` is still
    rejected, more surely with more samples.
    """
    check_rng(rng)
    contracted = isinstance(eq, Contracted)
    base = eq.inner if isinstance(eq, Contracted) else eq
    c_out, res = _resolvent_parts(base.random)
    leaves = res.arg.leaves()
    n_dim = res.shape[0]
    if not isinstance(n_dim, sp.Symbol):
        raise InvalidArgument(f"the resolvent has the fixed size {n_dim}; give it a symbolic dimension")
    symbols = sorted({d for leaf in leaves for d in leaf.shape if isinstance(d, sp.Symbol)}, key=str)
    props = {d.name: (1.0 if d == n_dim else 2.0) for d in symbols}
    for key, value in (dims or {}).items():
        props[str(key)] = float(value)
    _, params = _split_values(values or {})
    det_leaves = {x.name: x for x in leaves if isinstance(x, Deterministic)}
    det_leaves.update(
        {x.arg.name: x.arg for x in leaves if isinstance(x, Transpose) and isinstance(x.arg, Deterministic)}
    )
    rect_leaves = {x.name: x for x in leaves if isinstance(x, Rectangular)}
    rect_leaves.update(
        {x.arg.name: x.arg for x in leaves if isinstance(x, Transpose) and isinstance(x.arg, Rectangular)}
    )
    det_leaves.update({x.base.name: x.base for x in leaves if isinstance(x, Sqrt)})
    spec: dict[str, Any] = {
        name: (lambda n: np.linspace(0.5, 2.0, n)) if x.symmetric else _test_matrix_general
        for name, x in det_leaves.items()
    }
    rect_spec: dict[str, Any] = {name: _test_rectangular for name in rect_leaves}
    for key, value in (spectra or {}).items():
        name = key.name if isinstance(key, (Deterministic, Rectangular)) else str(key)
        (rect_spec if name in rect_leaves else spec)[name] = value
    free = {x.name: x for x in leaves if isinstance(x, FreeMatrix)}
    free_samplers: dict[str, Any] = {}
    for name, x in free.items():
        free_samplers[name] = ("law", x)
        for key, given in (samplers or {}).items():
            if (key.name if isinstance(key, FreeMatrix) else str(key)) == name:
                free_samplers[name] = ("given", given)

    def sizes_at(N: int) -> dict[str, int]:
        return {d: max(1, round(p * N)) for d, p in props.items()}

    def setting(N: int) -> tuple[dict[str, int], dict[str, np.ndarray]]:
        dd = sizes_at(N)
        scal = {**params, **dd}
        det: dict[str, np.ndarray] = {}
        for name, x in det_leaves.items():
            n = int(_substitute(x.dim, scal))
            e = np.asarray(spec[name](n) if callable(spec[name]) else spec[name], dtype=float)
            det[name] = e
        for name, r in rect_leaves.items():
            rows, cols = (int(_substitute(d, scal)) for d in r.dims)
            f = rect_spec[name]
            value = np.asarray(f(rows, cols) if callable(f) else f, dtype=float)
            if value.shape != (rows, cols):
                raise InvalidArgument(
                    f"the matrix given for {name} has shape {value.shape}, want {(rows, cols)}"
                )
            det[name] = value
        return dd, det

    child = np.random.default_rng(rng.integers(2**63))
    cache: dict[int, Any] = {}

    def prepared(N: int) -> Any:
        if N not in cache:
            dd, det = setting(N)
            scal = {**params, **dd}
            mats: dict[str, np.ndarray] = {}
            for name, e in det.items():
                if name in rect_leaves:
                    mats[name] = e
                elif e.ndim == 1:
                    mats[name] = np.diag(e)
                    mats[name + "^(1/2)"] = np.diag(np.sqrt(e))
                elif not det_leaves[name].symmetric:
                    mats[name] = e
                else:
                    w, v = np.linalg.eigh(e)
                    mats[name] = e
                    mats[name + "^(1/2)"] = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
            draw_fns: dict[str, Callable[[], Any]] = {}
            for x in leaves:
                if isinstance(x, Gaussian):
                    r, c = (int(_substitute(d, scal)) for d in x.dims)
                    draw_fns[x.name] = partial(child.standard_normal, (r, c))
                elif isinstance(x, FreeMatrix):
                    kind, obj = free_samplers[x.name]
                    n = int(_substitute(x.dim, scal))
                    if kind == "law":
                        law = obj.law.subs({sp.Symbol(k): sp.sympify(v) for k, v in scal.items()})
                        law = _subs_by_name(law, scal)
                        sampler = sampler_for_law(law)
                    else:
                        sampler = obj
                    draw_fns[x.name] = partial(sampler, n, child)
            cache[N] = (dd, det, mats, draw_fns)
        return cache[N]

    vec_names: set[str] = set()
    test_names: set[str] = set()
    general: set[str] = set()
    if isinstance(eq, Contracted):
        for f in (*eq.left, *eq.right):
            if isinstance(f, DeterministicVector):
                vec_names.add(f.name)
            elif isinstance(f, (Deterministic, Sqrt)):
                test_names.add(f.base.name if isinstance(f, Sqrt) else f.name)
            elif isinstance(f, Transpose) and isinstance(f.arg, Deterministic):
                test_names.add(f.arg.name)
                general.add(f.arg.name)
    given_vectors = {
        (k.name if isinstance(k, DeterministicVector) else str(k)): v for k, v in (vectors or {}).items()
    }
    given_spectra = {
        (k.name if isinstance(k, Deterministic) else str(k)): v for k, v in (spectra or {}).items()
    }

    def contraction_inputs(n: int, det: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Numbers of the test matrices and vectors at size ``n`` (resolvent leaves reused)."""
        out: dict[str, np.ndarray] = {}
        for name in sorted(test_names):
            if name in det:
                out[name] = det[name]
            elif name in given_spectra:
                g = given_spectra[name]
                out[name] = np.asarray(g(n) if callable(g) else g, dtype=float)
            else:
                out[name] = _test_matrix_general(n) if name in general else _test_matrix(n)
        for name in sorted(vec_names):
            g = given_vectors.get(name, _test_vector)
            out[name] = np.asarray(g(n) if callable(g) else g)
        return out

    def exact_for(lam: complex, test: str) -> Callable[[int], complex | float]:
        def exact(N: int) -> complex | float:
            dd, det, _, _ = prepared(N)
            vals: dict[Any, Any] = {**params, **dd, str(eq.lam): lam}
            vals.update(det)
            if isinstance(eq, Contracted):
                n = int(_substitute(n_dim, dd))
                vals.update(contraction_inputs(n, det))
                return contracted_value(eq, vals)
            value = base.evaluate(vals)
            n = value.matrix_y.shape[0]
            return value.trace(None if test == "I" else _test_matrix(n))

        return exact

    def functional_for(lam: complex, test: str) -> Callable[[dict[Any, np.ndarray]], complex]:
        def functional(m: dict[Any, np.ndarray]) -> complex:
            t = m["T"]
            N = t.shape[0]
            dd, _, mats, draw_fns = prepared(N)
            draws = {name: np.asarray(f()) for name, f in draw_fns.items()}
            a = _numeric_expr(res.arg, mats, draws, {**params, **dd})
            n = a.shape[0]
            c = complex(_substitute(c_out, {**params, **dd}).xreplace({eq.lam: sp.sympify(lam)}))
            if isinstance(eq, Contracted):
                inputs = contraction_inputs(n, prepared(N)[1])
                mats_c, _ = _split_values({k: v for k, v in inputs.items() if k not in vec_names})
                vecs = {k: v for k, v in inputs.items() if k in vec_names}
                left = [contraction_factor(f, mats_c, vecs, n) for f in eq.left]
                right = [contraction_factor(f, mats_c, vecs, n) for f in eq.right]
                r = c * np.linalg.inv(a + lam * np.eye(n))
                out = np.eye(n) if eq.kind == "trace" else np.ones((1, 1))
                for mat in (*right, *left) if eq.kind == "trace" else (*left, r, *right):
                    out = out @ mat
                value = np.trace(out @ r) / n if eq.kind == "trace" else out[0, 0]
                return value if isinstance(lam, complex) and lam.imag else value.real
            sol = np.linalg.solve(a + lam * np.eye(n), t if test == "T" else np.eye(n))
            value = c * np.trace(sol) / n
            return value if isinstance(lam, complex) and lam.imag else value.real

        functional.__name__ = (
            f"{eq.random} at {eq.lam}={lam}" if contracted else f"tr({test} {eq.random}) at {eq.lam}={lam}"
        )
        return functional

    def t_sampler(N: int, _rng: np.random.Generator) -> np.ndarray:
        n = int(_substitute(n_dim, sizes_at(N)))
        return _test_matrix(n)

    reports = []
    for lam_value in lams:
        lam = _number(lam_value, "lam")
        lam_c: complex | float = lam if lam.imag else lam.real
        for test in ("F",) if contracted else ("I", "T"):
            reports.append(
                verify(
                    exact_for(lam_c, test),  # type: ignore[arg-type]
                    functional_for(lam_c, test),
                    {"T": t_sampler},
                    sizes=sizes,
                    n_samples=n_samples,
                    rng=rng,
                    c_finite=c_finite,
                    n_se=n_se,
                )
            )
    return MonteCarloCheck(tuple(reports))


def _law_symbols(law: Any) -> set[sp.Symbol]:
    out: set[sp.Symbol] = set()
    for name in getattr(law, "__dataclass_fields__", {}):
        v = getattr(law, name)
        if isinstance(v, sp.Basic):
            out |= v.free_symbols
    return out


def _subs_by_name(law: Any, scal: Mapping[str, Any]) -> Any:
    rep = {s: sp.sympify(scal[s.name]) for s in _law_symbols(law) if s.name in scal}
    return law.subs(rep) if rep else law


register_witness("monte_carlo", check_monte_carlo)
