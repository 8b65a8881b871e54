"""What every Monte Carlo witness shares, so that each witness module says only what is
specific to its kind of result.

- Test inputs: :func:`default_spectrum`, :func:`default_test_matrix`, :func:`default_test_matrix_general`,
  :func:`dense_matrix`, :func:`spectrum_matrices`, :func:`matrix_root`.
- Numbers of symbolic things: :func:`scalar_value`, :func:`named_values`, :func:`proportions`,
  :func:`sizes_at`, :func:`deterministic_names`, :func:`numeric_matrix`.
- Random draws: :func:`law_symbols`, :func:`law_sampler`, :func:`free_sampler`, :func:`draw_makers`.
- Reports: :class:`MonteCarloCheck` (every report of one check) and :class:`PairReport` (one ridge
  pair of a two-resolvent check).
- Two resolvents ``c G1 ... G2`` (the two-point, layered and sandwich witnesses):
  :func:`two_resolvents`, :class:`PairSetting` (the numbers at each size), :data:`PairTrace`,
  :func:`trace_of`, :func:`g1_m_g2_trace`, :func:`g1_m_g2_witness`, :class:`PairWitness`,
  :func:`check_pairs` and its :class:`PairCheck`.

>>> import sympy as sp
>>> from detequiv.derivations.expressions import Gaussian
>>> D, P = sp.symbols("D P", positive=True)
>>> X = Gaussian("X", (P, D))
>>> props = proportions([X], D, {"P": 3})
>>> props, sizes_at(props, 10)
({'D': 1.0, 'P': 3.0}, {'D': 10, 'P': 30})
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial, reduce
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import sympy as sp

from ..derivations.expressions import (
    Deterministic,
    FreeMatrix,
    Gaussian,
    Identity,
    MatrixExpr,
    Product,
    Rectangular,
    Resolvent,
    Sqrt,
    Sum,
    Transpose,
)
from ..errors import InvalidArgument, VerificationError
from .acceptance import VerificationReport, verify
from .moments import sampler_for_law
from .sampling import Sampler

if TYPE_CHECKING:
    from ..derivations.layered import LayeredTwoPoint
    from ..derivations.twopoint import TwoPoint

__all__ = [
    "MonteCarloCheck",
    "PairReport",
    "default_spectrum",
    "default_test_matrix",
    "default_test_matrix_general",
    "dense_matrix",
    "spectrum_matrices",
    "matrix_root",
    "root_name",
    "scalar_value",
    "named_values",
    "proportions",
    "sizes_at",
    "deterministic_names",
    "numeric_matrix",
    "law_symbols",
    "law_sampler",
    "free_sampler",
    "draw_makers",
    "two_resolvents",
    "PairSize",
    "PairSetting",
    "PairTrace",
    "trace_of",
    "g1_m_g2_trace",
    "g1_m_g2_witness",
    "PairWitness",
    "PairCheck",
    "check_pairs",
]


# ---------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MonteCarloCheck:
    """The reports of one Monte Carlo check, one per ridge (or ridge pair) and test matrix.

    Every witness returns one; it passes when every report passes.

    Attributes
    ----------
    reports : tuple
        :class:`~detequiv.witnesses.acceptance.VerificationReport` or :class:`PairReport`
        objects (anything with ``passed`` and a printable table).

    Examples
    --------
    >>> import numpy as np
    >>> from detequiv.witnesses.acceptance import verify
    >>> one = verify(1.0, "I", {"I": lambda N, rng: np.eye(N)}, sizes=(4,), n_samples=2,
    ...              rng=np.random.default_rng(0))
    >>> check = MonteCarloCheck((one,))
    >>> check.passed, bool(check)
    (True, True)
    """

    reports: tuple[Any, ...]

    @property
    def passed(self) -> bool:
        """Every report passes."""
        return all(r.passed for r in self.reports)

    def __bool__(self) -> bool:
        return self.passed

    def raise_if_failed(self) -> None:
        """Raise :class:`~detequiv.errors.VerificationError` with the tables unless :attr:`passed`."""
        if not self.passed:
            raise VerificationError("Monte Carlo disagrees with the equivalent:\n" + str(self))

    def __str__(self) -> str:
        return "\n\n".join(str(r) for r in self.reports)


@dataclass(frozen=True, slots=True)
class PairReport:
    """One ridge pair and test matrix of a two-resolvent check: the check and its controls.

    The witnesses' reports (:class:`~detequiv.witnesses.twopoint.TwoPointReport`,
    :class:`~detequiv.witnesses.layered.LayeredReport`,
    :class:`~detequiv.witnesses.sandwich.SandwichReport`) add their controls (plausible wrong
    values, which must be rejected) and list them in :attr:`control_reports`.

    Attributes
    ----------
    lams : (lam, lam2)
        The ridge pair (a float where the ridge is real).
    test : {'I', 'T'}
        The test matrix.
    report : VerificationReport
        The equivalent against Monte Carlo.

    Examples
    --------
    >>> PairReport((0.5, 0.1 + 0.2j), "T", None).heading
    '(lam, lam2) = (0.5, (0.1+0.2j)), test T:'
    """

    lams: tuple[complex | float, complex | float]
    test: str
    report: VerificationReport

    @property
    def control_reports(self) -> tuple[VerificationReport, ...]:
        """The verification of each control (none here)."""
        return ()

    @property
    def passed(self) -> bool:
        """The equivalent passes and every control is rejected."""
        return self.report.passed and not any(r.passed for r in self.control_reports)

    @property
    def heading(self) -> str:
        """``(lam, lam2) = ..., test ...:``, the first words of the printed report."""
        return f"(lam, lam2) = {self.lams}, test {self.test}:"


# ---------------------------------------------------------------------------
# Test inputs
# ---------------------------------------------------------------------------


def default_spectrum(n: int) -> np.ndarray:
    """The spectrum of a deterministic matrix unless one is given: ``linspace(0.5, 2, n)``.

    >>> default_spectrum(4)
    array([0.5, 1. , 1.5, 2. ])
    """
    return np.linspace(0.5, 2.0, n)


def default_test_matrix(n: int) -> np.ndarray:
    """``diag(linspace(0, 2, n)) + (E + E^T) / 2``: weighs the spectrum unevenly and does
    not commute with a diagonal covariance.

    >>> default_test_matrix(3)
    array([[0. , 0.5, 0. ],
           [0.5, 1. , 0.5],
           [0. , 0.5, 2. ]])
    """
    return np.diag(np.linspace(0.0, 2.0, n)) + 0.5 * (np.eye(n, k=1) + np.eye(n, k=-1))


def default_test_matrix_general(n: int) -> np.ndarray:
    """The test matrix of a matrix declared ``symmetric=False``: :func:`default_test_matrix` plus
    ``0.5 E`` above the diagonal only, so ``A != A^T``.

    >>> a = default_test_matrix_general(3)
    >>> a[0, 2], a[2, 0]
    (np.float64(0.5), np.float64(0.0))
    """
    return default_test_matrix(n) + 0.5 * np.eye(n, k=2)


def dense_matrix(n: int, rng: np.random.Generator) -> np.ndarray:
    """A dense non-symmetric ``I + Z / sqrt(n)`` (``Z`` of iid ``N(0, 1)`` entries from ``rng``).

    >>> m = dense_matrix(3, np.random.default_rng(0))
    >>> m.shape, bool((m != m.T).any())
    ((3, 3), True)
    """
    return np.eye(n) + rng.standard_normal((n, n)) / np.sqrt(n)


def root_name(name: str) -> str:
    """The key under which the square root of the matrix ``name`` is kept.

    >>> root_name("Sigma")
    'Sigma^(1/2)'
    """
    return name + "^(1/2)"


def spectrum_matrices(name: str, e: np.ndarray) -> dict[str, np.ndarray]:
    """``diag(e)`` under ``name`` and its root ``diag(sqrt(e))`` under :func:`root_name`.

    >>> spectrum_matrices("A", np.array([1.0, 4.0]))["A^(1/2)"]
    array([[1., 0.],
           [0., 2.]])
    """
    return {name: np.diag(e), root_name(name): np.diag(np.sqrt(e))}


def matrix_root(m: np.ndarray) -> np.ndarray:
    """The real part of the principal square root of a diagonalizable ``m`` (by eigendecomposition).

    >>> r = matrix_root(np.array([[4.0, 1.0], [0.0, 9.0]]))
    >>> bool(np.allclose(r @ r, [[4.0, 1.0], [0.0, 9.0]]))
    True
    """
    w, v = np.linalg.eig(m)
    return np.real((v * np.sqrt(w.astype(complex))) @ np.linalg.inv(v))


# ---------------------------------------------------------------------------
# Numbers of symbolic things
# ---------------------------------------------------------------------------


def scalar_value(expr: Any, scal: Mapping[str, Any]) -> complex:
    """The complex number of a scalar expression, its symbols replaced by name from ``scal``.

    Raises :class:`~detequiv.errors.InvalidArgument` naming the symbols without a value.

    >>> D = sp.Symbol("D", positive=True)
    >>> scalar_value(D / 2, {"D": 100})
    (50+0j)
    """
    e = sp.sympify(expr)
    e = e.xreplace({s: sp.sympify(scal[s.name]) for s in e.free_symbols if s.name in scal})
    try:
        return complex(e)
    except TypeError:
        missing = sorted(map(str, e.free_symbols))
        raise InvalidArgument(f"no value for {missing}; pass them in values") from None


def named_values(values: Mapping[Any, Any] | None) -> dict[str, Any]:
    """The scalar values given by the user, keyed by name (a symbol's name, or the key as a string).

    >>> named_values({sp.Symbol("q1"): 0.7, "r": 2})
    {'q1': 0.7, 'r': 2}
    """
    return {str(getattr(k, "name", k)): v for k, v in (values or {}).items()}


def proportions(
    leaves: Sequence[MatrixExpr], n_dim: sp.Symbol, dims: Mapping[Any, float] | None
) -> dict[str, float]:
    """Every dimension symbol of ``leaves`` as a multiple of ``N``: 1 for ``n_dim``, else ``dims`` or 2.

    >>> from detequiv.derivations.expressions import Gaussian
    >>> D, P = sp.symbols("D P", positive=True)
    >>> proportions([Gaussian("X", (P, D))], D, None)
    {'D': 1.0, 'P': 2.0}
    """
    symbols = sorted({d for leaf in leaves for d in leaf.shape if isinstance(d, sp.Symbol)}, key=str)
    props = {d.name: (1.0 if d == n_dim else 2.0) for d in symbols}
    props.update({str(k): float(v) for k, v in (dims or {}).items()})
    return props


def sizes_at(props: Mapping[str, float], N: int) -> dict[str, int]:
    """The dimensions at size ``N``: ``max(1, round(p N))`` for each proportion ``p``.

    >>> sizes_at({"D": 1.0, "K": 0.001}, 100)
    {'D': 100, 'K': 1}
    """
    return {d: max(1, round(p * N)) for d, p in props.items()}


def deterministic_names(xs: Sequence[MatrixExpr]) -> set[str]:
    """Names of the deterministic matrices among ``xs`` (``A`` for ``A^(1/2)``).

    >>> from detequiv.derivations.expressions import Deterministic
    >>> A = Deterministic("A", sp.Symbol("D", positive=True))
    >>> sorted(deterministic_names([A.sqrt(), A]))
    ['A']
    """
    return {
        x.base.name if isinstance(x, Sqrt) else x.name for x in xs if isinstance(x, (Deterministic, Sqrt))
    }


#: ``(coefficient, scal) -> number``: how :func:`numeric_matrix` turns a coefficient into a number.
Coefficient = Callable[[Any, Mapping[str, Any]], Any]


def numeric_matrix(
    expr: MatrixExpr,
    mats: Mapping[str, np.ndarray],
    draws: Mapping[str, np.ndarray],
    scal: Mapping[str, Any],
    *,
    coefficient: Coefficient = scalar_value,
) -> np.ndarray:
    """The matrix of ``expr`` at one sample.

    Parameters
    ----------
    expr : MatrixExpr
        Products, sums, scalar multiples and transposes of leaves.
    mats : mapping
        Deterministic and rectangular matrices by name, roots under :func:`root_name`.
    draws : mapping
        The sample's Gaussian and free matrices by name.
    scal : mapping
        Values of the scalar symbols by name (dimensions, parameters).
    coefficient : callable, optional
        ``(coefficient, scal) -> number`` for the scalar factor of a product (default
        :func:`scalar_value`, a complex number).

    Examples
    --------
    >>> from detequiv.derivations.expressions import Gaussian
    >>> D, P = sp.symbols("D P", positive=True)
    >>> X = Gaussian("X", (P, D))
    >>> numeric_matrix(X.T @ X / P, {}, {"X": np.ones((2, 1))}, {"P": 2, "D": 1})
    array([[1.+0.j]])
    """
    if isinstance(expr, Product):
        out = numeric_matrix(expr.factors[0], mats, draws, scal, coefficient=coefficient)
        for f in expr.factors[1:]:
            out = out @ numeric_matrix(f, mats, draws, scal, coefficient=coefficient)
        return out if expr.coeff == 1 else coefficient(expr.coeff, scal) * out
    if isinstance(expr, Sum):
        parts = [numeric_matrix(t, mats, draws, scal, coefficient=coefficient) for t in expr.terms]
        return reduce(operator.add, parts)
    if isinstance(expr, (Deterministic, Rectangular)):
        return mats[expr.name]
    if isinstance(expr, Sqrt):
        return mats[root_name(expr.base.name)]
    if isinstance(expr, (Gaussian, FreeMatrix)):
        return draws[expr.name]
    if isinstance(expr, Transpose):
        if isinstance(expr.arg, (Deterministic, Rectangular)):
            return mats[expr.arg.name].T
        return draws[expr.arg.name].T
    if isinstance(expr, Identity):
        return np.eye(int(scalar_value(expr.dim, scal).real))
    raise InvalidArgument(f"cannot sample {expr}")  # pragma: no cover


# ---------------------------------------------------------------------------
# Random draws
# ---------------------------------------------------------------------------


def law_symbols(law: Any) -> set[sp.Symbol]:
    """The free symbols of a law's parameters.

    >>> from detequiv.derivations.laws import Wishart
    >>> q = sp.Symbol("q", positive=True)
    >>> law_symbols(Wishart(q))
    {q}
    """
    out: set[sp.Symbol] = set()
    for name in getattr(law, "__dataclass_fields__", {}):
        v = getattr(law, name)
        if isinstance(v, sp.Basic):
            out |= v.free_symbols
    return out


def law_sampler(law: Any, scal: Mapping[str, Any]) -> Sampler:
    """The built-in sampler of ``law`` (:func:`~detequiv.witnesses.moments.sampler_for_law`),
    its parameters replaced by name from ``scal``.

    >>> from detequiv.derivations.laws import Wishart
    >>> q = sp.Symbol("q", positive=True)
    >>> law_sampler(Wishart(q), {"q": 0.5})(4, np.random.default_rng(0)).shape
    (4, 4)
    """
    rep = {s: sp.sympify(scal[s.name]) for s in law_symbols(law) if s.name in scal}
    return sampler_for_law(law.subs(rep) if rep else law)


def free_sampler(
    x: FreeMatrix, samplers: Mapping[Any, Any] | None, scal: Mapping[str, Any]
) -> tuple[Callable[[int, np.random.Generator], Any], int]:
    """The sampler ``(n, rng) -> matrix`` of ``x`` and its size ``n``.

    The sampler is the first one given under ``x``'s name in ``samplers``, else its law's
    (:func:`law_sampler`).

    >>> from detequiv.derivations.expressions import FreeMatrix
    >>> from detequiv.derivations.laws import Wishart
    >>> D = sp.Symbol("D", positive=True)
    >>> W = FreeMatrix("W", D, Wishart(sp.Rational(1, 2)))
    >>> sampler, n = free_sampler(W, None, {"D": 6})
    >>> n, sampler(n, np.random.default_rng(0)).shape
    (6, (6, 6))
    """
    given = next((f for k, f in (samplers or {}).items() if str(getattr(k, "name", k)) == x.name), None)
    if given is None:
        given = law_sampler(x.law, scal)
    return given, int(scalar_value(x.dim, scal).real)


def draw_makers(
    xs: Sequence[MatrixExpr],
    scal: Mapping[str, Any],
    samplers: Mapping[Any, Any] | None,
    child: np.random.Generator,
) -> dict[str, Callable[[], np.ndarray]]:
    """Name -> a fresh draw from ``child``, for each Gaussian and free matrix among ``xs``.

    In the order of first appearance in ``xs`` (a sample draws its matrices in this order);
    a Gaussian matrix has iid ``N(0, 1)`` entries, a free one comes from :func:`free_sampler`.

    >>> from detequiv.derivations.expressions import Gaussian
    >>> D, P = sp.symbols("D P", positive=True)
    >>> X = Gaussian("X", (P, D))
    >>> makers = draw_makers([X.T, X], {"D": 3, "P": 5}, None, np.random.default_rng(0))
    >>> list(makers), makers["X"]().shape
    (['X'], (5, 3))
    """
    draws: dict[str, Any] = {}
    for x in xs:
        if isinstance(x, Gaussian) and x.name not in draws:
            shape = tuple(int(scalar_value(d, scal).real) for d in x.dims)
            draws[x.name] = lambda shape=shape: child.standard_normal(shape)
        elif isinstance(x, FreeMatrix) and x.name not in draws:
            given, m = free_sampler(x, samplers, scal)
            draws[x.name] = lambda g=given, m=m: np.asarray(g(m, child))
    return draws


# ---------------------------------------------------------------------------
# Two resolvents: the numbers at each size
# ---------------------------------------------------------------------------


def two_resolvents(expr: Any) -> tuple[Product, Resolvent, Resolvent]:
    """``expr = c G1 ... G2`` and its two outer resolvents.

    >>> from detequiv.derivations.expressions import Deterministic, resolvent
    >>> lam, lam2 = sp.symbols("lam lam2", positive=True)
    >>> A = Deterministic("A", sp.Symbol("D", positive=True))
    >>> _, g1, g2 = two_resolvents(resolvent(A, lam) @ A @ resolvent(A, lam2))
    >>> g1.lam, g2.lam
    (lam, lam2)
    """
    assert isinstance(expr, Product)
    res1, res2 = expr.factors[0], expr.factors[-1]
    assert isinstance(res1, Resolvent) and isinstance(res2, Resolvent)
    return expr, res1, res2


class PairSize(NamedTuple):
    """The numbers of a :class:`PairSetting` at one size."""

    #: Values of the scalar symbols by name: the parameters and the dimensions.
    scal: dict[str, Any]
    #: The spectrum ``e`` of the matrices of ``inside`` (length ``n``).
    spectrum: np.ndarray
    #: The deterministic matrices by name (roots under :func:`root_name`).
    mats: dict[str, np.ndarray]
    #: Name -> a fresh draw, from :func:`draw_makers`.
    makers: dict[str, Callable[[], np.ndarray]]


@dataclass(kw_only=True)
class PairSetting:
    """The numbers of a two-resolvent witness at each size ``N``, made once per size.

    At size ``N`` the dimensions are :func:`sizes_at` ``(proportions, N)`` and the resolvents
    are ``n x n`` (``n`` the value of ``n_dim``). The deterministic matrices named in
    ``inside`` are ``diag(e)`` with ``e = spectrum(n)`` (and their roots); those named in
    ``others`` are fixed per size: :func:`dense_matrix` from ``child`` or, with
    ``dense=False``, ``diag(e[::-1])`` (with ``roots``, also their :func:`matrix_root`).
    The random leaves ``draws`` get fresh matrices from ``child`` at each sample, in that order.

    Attributes
    ----------
    n_dim : sympy.Symbol
        The dimension of the resolvents.
    proportions : mapping
        Dimension name -> multiple of ``N``.
    params : mapping
        Other scalar values by name.
    spectrum : callable or None
        ``n -> e`` (default :func:`default_spectrum`).
    inside, others : sequence of str
        Deterministic matrices given the spectrum, and the fixed other ones.
    draws : sequence of MatrixExpr
        The leaves that are drawn (Gaussian and free matrices) in drawing order.
    samplers : mapping or None
        Free matrix name -> ``(n, rng) -> matrix``.
    lams : (sympy.Symbol, sympy.Symbol)
        The ridges, whose names key the values of :meth:`evaluate`.
    child : numpy.random.Generator
        The generator of every matrix drawn.

    Examples
    --------
    >>> from detequiv.derivations.expressions import Gaussian
    >>> D, P, lam, lam2 = sp.symbols("D P lam lam2", positive=True)
    >>> X = Gaussian("X", (P, D))
    >>> setting = PairSetting(n_dim=D, proportions={"D": 1.0, "P": 2.0}, params={}, spectrum=None,
    ...                       inside=["A"], others=["M"], draws=[X], samplers=None,
    ...                       lams=(lam, lam2), child=np.random.default_rng(0))
    >>> size = setting.at(10)
    >>> size.scal, sorted(size.mats)
    ({'D': 10, 'P': 20}, ['A', 'A^(1/2)', 'M'])
    >>> setting.draw(10)["X"].shape
    (20, 10)
    """

    n_dim: sp.Symbol
    proportions: Mapping[str, float]
    params: Mapping[str, Any]
    spectrum: Callable[[int], Any] | None
    inside: Sequence[str]
    others: Sequence[str]
    draws: Sequence[MatrixExpr]
    samplers: Mapping[Any, Any] | None
    lams: tuple[Any, Any]
    child: np.random.Generator
    dense: bool = True
    roots: bool = False
    _sizes: dict[int, PairSize] = field(default_factory=dict, init=False, repr=False)
    _values: dict[tuple[int, int, Any, Any], Any] = field(default_factory=dict, init=False, repr=False)

    def at(self, N: int) -> PairSize:
        """The numbers at size ``N`` (made at the first call: the ``others`` are drawn then)."""
        if N not in self._sizes:
            scal = {**self.params, **sizes_at(self.proportions, N)}
            n = int(scalar_value(self.n_dim, scal).real)
            e = np.asarray((self.spectrum or default_spectrum)(n), dtype=float)
            mats: dict[str, np.ndarray] = {}
            for name in self.inside:
                mats.update(spectrum_matrices(name, e))
            for name in self.others:
                mats[name] = dense_matrix(n, self.child) if self.dense else np.diag(e[::-1])
                if self.roots:
                    mats[root_name(name)] = matrix_root(mats[name])
            makers = draw_makers(self.draws, scal, self.samplers, self.child)
            self._sizes[N] = PairSize(scal, e, mats, makers)
        return self._sizes[N]

    def draw(self, N: int) -> dict[str, np.ndarray]:
        """One sample of the random leaves at size ``N``."""
        return {name: f() for name, f in self.at(N).makers.items()}

    def evaluate(self, result: Any, N: int, lam: Any, lam2: Any) -> Any:
        """``result.evaluate`` at size ``N`` and ridges ``(lam, lam2)`` (cached)."""
        key = (id(result), N, lam, lam2)
        if key not in self._values:
            size = self.at(N)
            vals: dict[Any, Any] = {**size.scal, str(self.lams[0]): lam, str(self.lams[1]): lam2}
            vals.update({name: size.spectrum for name in self.inside})
            vals.update({name: size.mats[name] for name in self.others})
            self._values[key] = result.evaluate(vals)
        return self._values[key]


# ---------------------------------------------------------------------------
# Two resolvents: the check over ridge pairs
# ---------------------------------------------------------------------------


#: ``(N, lam, lam2, t_of) -> tr(T .)`` where ``t_of(n)`` is the test matrix of size ``n``.
PairTrace = Callable[[int, Any, Any, Callable[[int], np.ndarray]], Any]


def trace_of(numbers: Callable[[int, Any, Any], Any], method: str = "trace") -> PairTrace:
    """The :data:`PairTrace` ``v.<method>(T)`` of ``v = numbers(N, lam, lam2)``, ``T`` of ``v``'s size.

    >>> class Value:
    ...     matrix = np.eye(2)
    ...     def trace(self, t):
    ...         return float(np.trace(t))
    >>> trace_of(lambda N, lam, lam2: Value())(10, 0.5, 0.2, np.eye)
    2.0
    """

    def trace(N: int, lam: Any, lam2: Any, t_of: Callable[[int], np.ndarray]) -> Any:
        v = numbers(N, lam, lam2)
        return getattr(v, method)(t_of(v.matrix.shape[0]))

    return trace


def g1_m_g2_trace(
    tp: TwoPoint | LayeredTwoPoint,
    lam: Any,
    lam2: Any,
    mats: Mapping[str, np.ndarray],
    draws: Mapping[str, np.ndarray],
    scal: Mapping[str, Any],
    t_of: Callable[[int], np.ndarray],
) -> Any:
    """``tr(T c G1 M G2) / n`` of ``tp.random`` at one sample (``draws``) and ridge pair.

    ``M`` is the product of ``tp.middle``; both resolvents see the same draws.

    With ``X = 0`` both resolvents are ``I / lam``, so the value is ``tr(A) / 2 = 2``:

    >>> from detequiv.derivations.expressions import Deterministic, Gaussian, resolvent
    >>> from detequiv.derivations.sandwich import derive_two_point
    >>> D, P, lam, lam2 = sp.symbols("D P lam lam2", positive=True)
    >>> A, X = Deterministic("A", D), Gaussian("X", (P, D))
    >>> tp = derive_two_point(resolvent(A @ X.T @ X / P, lam) @ A @ resolvent(X.T @ X @ A / P, lam2))
    >>> mats, draws = {"A": np.diag([1.0, 3.0])}, {"X": np.zeros((4, 2))}
    >>> complex(g1_m_g2_trace(tp, 1.0, 1.0, mats, draws, {"D": 2, "P": 4}, np.eye))
    (2+0j)
    """
    expr, res1, res2 = two_resolvents(tp.random)
    x1 = numeric_matrix(res1.arg, mats, draws, scal)
    x2 = numeric_matrix(res2.arg, mats, draws, scal)
    n = x1.shape[0]
    mid = np.eye(n)
    for f in tp.middle:
        mid = mid @ numeric_matrix(f, mats, draws, scal)
    c = scalar_value(expr.coeff, {**scal, str(tp.lam): lam, str(tp.lam2): lam2})
    g1 = np.linalg.inv(x1 + lam * np.eye(n))
    g2 = np.linalg.inv(x2 + lam2 * np.eye(n))
    return c * np.trace(t_of(n) @ g1 @ mid @ g2) / n


@dataclass(frozen=True)
class PairWitness:
    """What a two-resolvent witness compares at each ridge pair and test matrix.

    Attributes
    ----------
    exact : PairTrace
        The equivalent.
    sample : PairTrace
        One Monte Carlo sample of the random expression.
    controls : mapping of str to PairTrace
        Plausible wrong values, compared with the same samples (they must fail).
    name : str
        Template of the verification label (field ``test``).
    control_label : str
        Template of the prefix of a control's label (field ``name``).
    """

    exact: PairTrace
    sample: PairTrace
    controls: Mapping[str, PairTrace]
    name: str
    control_label: str


def g1_m_g2_witness(
    tp: TwoPoint | LayeredTwoPoint, setting: PairSetting, control: tuple[str, str], control_label: str
) -> PairWitness:
    """The :class:`PairWitness` of ``tr(T c G1 M G2)`` for ``tp`` (two-point or layered).

    The equivalent is ``tp.evaluate(...).trace``; the one control, named ``control[0]``, is
    the method ``control[1]`` of the same value (e.g. ``naive_trace``); a sample is
    :func:`g1_m_g2_trace` of the setting's draws.
    """
    numbers = partial(setting.evaluate, tp)

    def sample(N: int, lam: Any, lam2: Any, t_of: Callable[[int], np.ndarray]) -> Any:
        size = setting.at(N)
        return g1_m_g2_trace(tp, lam, lam2, size.mats, setting.draw(N), size.scal, t_of)

    controls = {control[0]: trace_of(numbers, control[1])}
    return PairWitness(trace_of(numbers), sample, controls, "tr({test} G1 M G2)", control_label)


@dataclass(frozen=True, slots=True)
class PairCheck:
    """What :func:`check_pairs` found at one ridge pair and test matrix.

    ``controls`` pairs each control's name with its verification; ``corrections`` are
    ``|exact - control| / |exact|`` at the largest size.
    """

    lams: tuple[Any, Any]
    test: str
    report: VerificationReport
    controls: tuple[tuple[str, VerificationReport], ...]
    corrections: tuple[float, ...]


class _Replayable:
    """The functional :func:`verify` estimates at one ridge pair: each call is a fresh sample
    (recorded), or after :meth:`rewind` the recorded ones again, in order."""

    def __init__(self, sample: PairTrace, lams: tuple[Any, Any], t_of: Callable[[int], np.ndarray]) -> None:
        self.sample = sample
        self.lams = lams
        self.t_of = t_of
        self.complex_pair = bool(complex(lams[0]).imag or complex(lams[1]).imag)
        self.recorded: dict[int, list[Any]] = {}
        self.replay: dict[int, list[Any]] = {}
        self.__name__ = ""

    def rewind(self) -> None:
        """Replay every recorded sample (the controls see the very samples of the equivalent)."""
        self.replay.update({k: list(v) for k, v in self.recorded.items()})

    def __call__(self, m: dict[Any, np.ndarray]) -> Any:
        N = m["N"].shape[0]
        if self.replay.get(N):
            return self.replay[N].pop(0)
        value = self.sample(N, *self.lams, self.t_of)
        out = value if self.complex_pair else value.real
        self.recorded.setdefault(N, []).append(out)
        return out


def _zeros(N: int, _rng: np.random.Generator) -> np.ndarray:
    """The sampler that only tells the functional the size ``N`` (draws nothing)."""
    return np.zeros((N, N))


def _check_pair(
    witness: PairWitness, lams: tuple[Any, Any], test: str, rng: np.random.Generator, **common: Any
) -> PairCheck:
    """:func:`check_pairs` at one ridge pair and test matrix (one seed drawn from ``rng``)."""

    def t_of(n: int) -> np.ndarray:
        return np.eye(n) if test == "I" else default_test_matrix(n)

    def exact_of(trace: PairTrace) -> Callable[[int], Any]:
        return lambda N: trace(N, *lams, t_of)

    functional = _Replayable(witness.sample, lams, t_of)
    functional.__name__ = f"{witness.name.format(test=test)} at ({lams[0]}, {lams[1]})"
    samplers_n: dict[Hashable, Sampler] = {"N": _zeros}
    seed = int(rng.integers(2**63))
    report = verify(
        exact_of(witness.exact), functional, samplers_n, rng=np.random.default_rng(seed), **common
    )
    done: list[tuple[str, VerificationReport]] = []
    corrections: list[float] = []
    big = max(common["sizes"])
    for key, trace in witness.controls.items():
        functional.rewind()
        label = witness.control_label.format(name=key) + functional.__name__
        seeded = np.random.default_rng(seed)
        done.append((key, verify(exact_of(trace), functional, samplers_n, rng=seeded, label=label, **common)))
        value = witness.exact(big, *lams, t_of)
        corrections.append(abs(value - trace(big, *lams, t_of)) / max(abs(value), 1e-300))
    return PairCheck(lams, test, report, tuple(done), tuple(corrections))


def check_pairs(
    witness: PairWitness,
    lams: Sequence[tuple[complex, complex]],
    tests: Sequence[str],
    *,
    rng: np.random.Generator,
    sizes: Sequence[int],
    n_samples: int,
    c_finite: float,
    n_se: float,
) -> list[PairCheck]:
    """Verify ``witness.exact`` against its samples at every ridge pair and test matrix, then each control.

    Each control is compared with the very samples the equivalent was (recorded, then
    replayed), so it costs no new draws. One seed of ``rng`` per pair and test; ``sizes``,
    ``n_samples``, ``c_finite`` and ``n_se`` as in :func:`~detequiv.witnesses.acceptance.verify`.

    Examples
    --------
    >>> def exact(N, lam, lam2, t_of):
    ...     return 1.0
    >>> def sample(N, lam, lam2, t_of):
    ...     return 1.0 + 0j
    >>> witness = PairWitness(exact, sample, {"two": lambda *a: 2.0}, "one({test})", "{name}: ")
    >>> [c] = check_pairs(witness, [(0.5, 0.2)], ["I"], rng=np.random.default_rng(0),
    ...                   sizes=(10, 20), n_samples=2, c_finite=5.0, n_se=4.0)
    >>> c.report.passed, c.controls[0][1].passed, c.corrections
    (True, False, (1.0,))
    """
    for test in tests:
        if test not in ("I", "T"):
            raise InvalidArgument(f"test {test!r} must be 'I' or 'T'")
    common: dict[str, Any] = dict(sizes=sizes, n_samples=n_samples, c_finite=c_finite, n_se=n_se)
    checks = []
    for pair in lams:
        lam, lam2 = (complex(z) for z in pair)
        for test in tests:
            plain = (lam if lam.imag else lam.real, lam2 if lam2.imag else lam2.real)
            checks.append(_check_pair(witness, plain, test, rng, **common))
    return checks
