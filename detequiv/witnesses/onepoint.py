"""The Monte Carlo witness of a one-point equivalent.

:func:`check_monte_carlo` samples the original random expression of a
:class:`~detequiv.derivations.onepoint.OnePoint` at several sizes and compares ``tr(T .)``
with the equivalent (solved by :meth:`OnePoint.evaluate`) through :func:`verify`, at real
and complex ridges. Importing this module registers it as
:meth:`OnePoint.check_monte_carlo` (the dependency points ``codegen -> derivations``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from ..derivations.algebra import resolvent_parts
from ..derivations.contraction import Contracted
from ..derivations.expressions import (
    Deterministic,
    DeterministicVector,
    FreeMatrix,
    MatrixExpr,
    Rectangular,
    Resolvent,
    Sqrt,
    Transpose,
)
from ..derivations.numeric import (
    contracted_value,
    contraction_factor,
    plain_number,
    split_values,
    substitute_scalars,
    to_number,
)
from ..derivations.onepoint import OnePoint
from ..derivations.results import witness_for
from ..errors import InvalidArgument
from .acceptance import verify
from .common import (
    MonteCarloCheck,
    default_spectrum,
    default_test_matrix,
    default_test_matrix_general,
    draw_makers,
    numeric_matrix,
    proportions,
    root_name,
    sizes_at,
    spectrum_matrices,
)
from .sampling import check_rng

__all__ = ["check_monte_carlo", "MonteCarloCheck"]


# ---------------------------------------------------------------------------
# Test inputs and numbers
# ---------------------------------------------------------------------------


def _test_rectangular(rows: int, cols: int) -> np.ndarray:
    """The default for a :class:`Rectangular` matrix: one fixed draw of iid N(0, 1) entries
    (seeded by the shape, so it is the same matrix in every sample: deterministic)."""
    return np.random.default_rng(rows * 100003 + cols).standard_normal((rows, cols))


def _test_vector(n: int) -> np.ndarray:
    """A unit vector with uneven weights ``linspace(0.2, 1, n)`` (normalized)."""
    v = np.linspace(0.2, 1.0, n)
    return v / np.linalg.norm(v)


def _coefficient(c: Any, scal: Mapping[str, Any]) -> complex | float:
    """A product's coefficient as a number (a float when it is real)."""
    return plain_number(to_number(substitute_scalars(c, scal), f"coefficient {c}"))


def _given(value: Any, *args: int) -> np.ndarray:
    """A user's input: ``value(*args)`` if it is callable, else ``value`` itself."""
    return np.asarray(value(*args) if callable(value) else value, dtype=float)


@dataclass
class _Inputs:
    """The deterministic matrices of the resolvent and how to make each at a given size.

    ``spec`` maps a square matrix to ``n -> spectrum`` (a 1-D array, the matrix is then
    diagonal) or ``n -> matrix``; ``rect_spec`` a rectangular one to ``(rows, cols) -> matrix``.
    """

    det_leaves: dict[str, Deterministic]
    rect_leaves: dict[str, Rectangular]
    spec: dict[str, Any]
    rect_spec: dict[str, Any]

    @classmethod
    def of(cls, leaves: Sequence[MatrixExpr], spectra: Mapping[Any, Any] | None) -> _Inputs:
        """The inputs of ``leaves``: the given ``spectra``, else :func:`default_spectrum` for a
        symmetric matrix, the general test matrix for a non-symmetric one, and
        :func:`_test_rectangular` for a rectangular one."""
        det_leaves = {x.name: x for x in leaves if isinstance(x, Deterministic)}
        det_leaves.update(
            {
                x.arg.name: x.arg
                for x in leaves
                if isinstance(x, Transpose) and isinstance(x.arg, Deterministic)
            }
        )
        rect_leaves = {x.name: x for x in leaves if isinstance(x, Rectangular)}
        rect_leaves.update(
            {x.arg.name: x.arg for x in leaves if isinstance(x, Transpose) and isinstance(x.arg, Rectangular)}
        )
        det_leaves.update({x.base.name: x.base for x in leaves if isinstance(x, Sqrt)})
        spec: dict[str, Any] = {
            name: default_spectrum if x.symmetric else default_test_matrix_general
            for name, x in det_leaves.items()
        }
        rect_spec: dict[str, Any] = {name: _test_rectangular for name in rect_leaves}
        for key, value in (spectra or {}).items():
            name = key.name if isinstance(key, (Deterministic, Rectangular)) else str(key)
            (rect_spec if name in rect_leaves else spec)[name] = value
        return cls(det_leaves, rect_leaves, spec, rect_spec)

    def numbers(self, scal: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Each matrix's numbers (a spectrum or a matrix) at the dimensions ``scal``."""
        det: dict[str, np.ndarray] = {}
        for name, x in self.det_leaves.items():
            det[name] = _given(self.spec[name], int(substitute_scalars(x.dim, scal)))
        for name, r in self.rect_leaves.items():
            rows, cols = (int(substitute_scalars(d, scal)) for d in r.dims)
            value = _given(self.rect_spec[name], rows, cols)
            if value.shape != (rows, cols):
                raise InvalidArgument(
                    f"the matrix given for {name} has shape {value.shape}, want {(rows, cols)}"
                )
            det[name] = value
        return det

    def matrices(self, det: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The matrices of :meth:`numbers`, with the roots of the square ones (by name
        :func:`~detequiv.witnesses.common.root_name`) except the non-symmetric ones."""
        mats: dict[str, np.ndarray] = {}
        for name, e in det.items():
            if name in self.rect_leaves:
                mats[name] = e
            elif e.ndim == 1:
                mats.update(spectrum_matrices(name, e))
            elif not self.det_leaves[name].symmetric:
                mats[name] = e
            else:
                w, v = np.linalg.eigh(e)
                mats[name] = e
                mats[root_name(name)] = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        return mats


@dataclass
class _Contraction:
    """The test matrices and vectors of a contracted result (none for a plain one)."""

    vec_names: set[str]
    test_names: set[str]
    general: set[str]
    given_vectors: dict[str, Any]
    given_spectra: dict[str, Any]

    @classmethod
    def of(
        cls, eq: OnePoint | Contracted, vectors: Mapping[Any, Any] | None, spectra: Mapping[Any, Any] | None
    ) -> _Contraction:
        """The names in the contraction of ``eq`` and the inputs given for them."""
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
        return cls(vec_names, test_names, general, given_vectors, given_spectra)

    def inputs(self, n: int, det: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Numbers of the test matrices and vectors at size ``n`` (resolvent leaves reused)."""
        out: dict[str, np.ndarray] = {}
        for name in sorted(self.test_names):
            if name in det:
                out[name] = det[name]
            elif name in self.given_spectra:
                out[name] = _given(self.given_spectra[name], n)
            else:
                out[name] = default_test_matrix_general(n) if name in self.general else default_test_matrix(n)
        for name in sorted(self.vec_names):
            g = self.given_vectors.get(name, _test_vector)
            out[name] = np.asarray(g(n) if callable(g) else g)
        return out

    def sample_value(self, eq: Contracted, r: np.ndarray, det: Mapping[str, np.ndarray]) -> Any:
        """The contraction ``tr(L R R') `` or ``u.T L R R' v`` of one sample's ``r = c (A + lam I)^-1``."""
        n = r.shape[0]
        inputs = self.inputs(n, det)
        mats_c, _ = split_values({k: v for k, v in inputs.items() if k not in self.vec_names})
        vecs = {k: v for k, v in inputs.items() if k in self.vec_names}
        left = [contraction_factor(f, mats_c, vecs, n) for f in eq.left]
        right = [contraction_factor(f, mats_c, vecs, n) for f in eq.right]
        out = np.eye(n) if eq.kind == "trace" else np.ones((1, 1))
        for mat in (*right, *left) if eq.kind == "trace" else (*left, r, *right):
            out = out @ mat
        return np.trace(out @ r) / n if eq.kind == "trace" else out[0, 0]


# ---------------------------------------------------------------------------
# The simulation
# ---------------------------------------------------------------------------


@dataclass
class _Simulation:
    """What :func:`check_monte_carlo` needs at each size, ridge and test matrix.

    ``prepared(N)`` makes the numbers at size ``N`` once: the dimensions, the deterministic
    inputs, their matrices and the makers of the random draws (from ``child``).
    """

    eq: OnePoint | Contracted
    c_out: sp.Expr
    res: Resolvent
    n_dim: sp.Symbol
    props: dict[str, float]
    params: dict[str, Any]
    inputs: _Inputs
    samplers: dict[str, Any]
    child: np.random.Generator
    contraction: _Contraction
    _cache: dict[int, Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def contracted(self) -> bool:
        """Whether the result is a contraction (one functional, no test matrices)."""
        return isinstance(self.eq, Contracted)

    def prepared(self, N: int) -> tuple[dict[str, int], dict[str, np.ndarray], dict[str, np.ndarray], Any]:
        """``(dims, numbers, matrices, draw makers)`` at size ``N``."""
        if N not in self._cache:
            dd = sizes_at(self.props, N)
            scal = {**self.params, **dd}
            det = self.inputs.numbers(scal)
            mats = self.inputs.matrices(det)
            draw_fns = draw_makers(self.res.arg.leaves(), scal, self.samplers, self.child)
            self._cache[N] = (dd, det, mats, draw_fns)
        return self._cache[N]

    def exact(self, lam: complex | float, test: str, N: int) -> complex | float:
        """The equivalent at size ``N``: ``tr(test E)`` or the contracted value."""
        eq = self.eq
        dd, det, _, _ = self.prepared(N)
        vals: dict[Any, Any] = {**self.params, **dd, str(eq.lam): lam}
        vals.update(det)
        if isinstance(eq, Contracted):
            n = int(substitute_scalars(self.n_dim, dd))
            vals.update(self.contraction.inputs(n, det))
            return contracted_value(eq, vals)
        value = eq.evaluate(vals)
        n = value.matrix_y.shape[0]
        return value.trace(None if test == "I" else default_test_matrix(n))

    def exact_for(self, lam: complex | float, test: str) -> Callable[[int], complex | float]:
        """``N -> exact(lam, test, N)``, the exact value :func:`verify` compares with."""
        return lambda N: self.exact(lam, test, N)

    def sample(self, lam: complex | float, test: str, t: np.ndarray) -> Any:
        """One sample of ``tr(test c R)`` (or the contraction), ``t`` the test matrix."""
        eq = self.eq
        N = t.shape[0]
        dd, det, mats, draw_fns = self.prepared(N)
        draws = {name: np.asarray(f()) for name, f in draw_fns.items()}
        a = numeric_matrix(self.res.arg, mats, draws, {**self.params, **dd}, coefficient=_coefficient)
        n = a.shape[0]
        c = complex(substitute_scalars(self.c_out, {**self.params, **dd}).xreplace({eq.lam: sp.sympify(lam)}))
        if isinstance(eq, Contracted):
            value = self.contraction.sample_value(eq, c * np.linalg.inv(a + lam * np.eye(n)), det)
        else:
            sol = np.linalg.solve(a + lam * np.eye(n), t if test == "T" else np.eye(n))
            value = c * np.trace(sol) / n
        return value if isinstance(lam, complex) and lam.imag else value.real

    def functional_for(self, lam: complex | float, test: str) -> Callable[[dict[Any, np.ndarray]], Any]:
        """The functional :func:`verify` estimates (named for the report)."""

        def functional(m: dict[Any, np.ndarray]) -> Any:
            return self.sample(lam, test, m["T"])

        eq = self.eq
        functional.__name__ = (
            f"{eq.random} at {eq.lam}={lam}"
            if self.contracted
            else f"tr({test} {eq.random}) at {eq.lam}={lam}"
        )
        return functional

    def t_sampler(self, N: int, _rng: np.random.Generator) -> np.ndarray:
        """The test matrix at size ``N`` (it also tells the functional the size)."""
        n = int(substitute_scalars(self.n_dim, sizes_at(self.props, N)))
        return default_test_matrix(n)


def _simulation(
    eq: OnePoint | Contracted,
    rng: np.random.Generator,
    values: Mapping[Any, Any] | None,
    dims: Mapping[Any, float] | None,
    spectra: Mapping[Any, Any] | None,
    samplers: Mapping[Any, Any] | None,
    vectors: Mapping[Any, Any] | None,
) -> _Simulation:
    """Check the arguments of :func:`check_monte_carlo` and set up the simulation (seed from ``rng``)."""
    base = eq.inner if isinstance(eq, Contracted) else eq
    c_out, res = resolvent_parts(base.random)
    leaves = res.arg.leaves()
    n_dim = res.shape[0]
    if not isinstance(n_dim, sp.Symbol):
        raise InvalidArgument(f"the resolvent has the fixed size {n_dim}; give it a symbolic dimension")
    props = proportions(leaves, n_dim, dims)
    _, params = split_values(values or {})
    inputs = _Inputs.of(leaves, spectra)
    # by name; of two keys naming the same matrix the last one counts
    given = {(k.name if isinstance(k, FreeMatrix) else str(k)): f for k, f in (samplers or {}).items()}
    child = np.random.default_rng(rng.integers(2**63))
    contraction = _Contraction.of(eq, vectors, spectra)
    return _Simulation(eq, c_out, res, n_dim, props, params, inputs, given, child, contraction)


# ---------------------------------------------------------------------------
# Monte Carlo
# ---------------------------------------------------------------------------


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
    sim = _simulation(eq, rng, values, dims, spectra, samplers, vectors)
    reports = []
    for lam_value in lams:
        lam = to_number(lam_value, "lam")
        lam_c: complex | float = lam if lam.imag else lam.real
        for test in ("F",) if sim.contracted else ("I", "T"):
            functional = sim.functional_for(lam_c, test)
            reports.append(
                verify(
                    sim.exact_for(lam_c, test),
                    functional,
                    {"T": sim.t_sampler},
                    sizes=sizes,
                    n_samples=n_samples,
                    rng=rng,
                    c_finite=c_finite,
                    n_se=n_se,
                )
            )
    return MonteCarloCheck(tuple(reports))


witness_for(OnePoint)(check_monte_carlo)
witness_for(Contracted)(check_monte_carlo)
