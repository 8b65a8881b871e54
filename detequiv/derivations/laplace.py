r"""Loss curves in time as inverse Laplace transforms of resolvent functionals.

Gradient flow (and other linear dynamics) writes a loss at time :math:`t` as inverse
Laplace transforms of resolvent functionals: :math:`e^{-tA}=\mathcal L^{-1}_t[(\lambda+A)^{-1}]`.
Once the engine has replaced the resolvents by their equivalents, a :class:`LossCurve` is
a constant plus named sums of :class:`LaplacePiece`, whose transforms are sympy
expressions in the spectral variables, their ridges (fixed points) and trace atoms.
:meth:`LossCurve.evaluate` inverts them numerically: one hyperbolic contour per window of
times ``[t0, 10 t0]`` (Weideman and Trefethen 2007), or one Talbot contour per time, with
the ridge solved on the contour nodes by Newton continuation of the engine's own fixed
point.

What a curve needs from its learning model (the covariance and target names, the sizes,
a bound on the ridge, the simulation) comes through the abstract :class:`CurveModel`.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from ..errors import InvalidArgument, VerificationError
from .derivation import Derivation, FixedPoint, Step
from .quantities import df1
from .results import Evidence, Result, require_model
from .rules import INVERSE_LAPLACE
from .traces import flat_factors, mtr

__all__ = [
    "CurveModel",
    "LossCurve",
    "LaplacePiece",
    "talbot_nodes",
    "hyperbolic_nodes",
    "time_windows",
    "inverse_laplace",
    "inverse_laplace_step",
]


_REF_TALBOT = "MATH.md 5.6 (Talbot contour, midpoint rule); Weideman-Trefethen, Math. Comp. 76 (2007)"


_REF_WINDOW = (
    "Weideman-Trefethen, Math. Comp. 76 (2007): one hyperbolic contour, trapezoid rule, "
    "for all times of a window [t0, 10 t0]"
)


# the windowed hyperbola lam(u) = mu (1 + sin(i u - alpha)) for times in [t0, WINDOW t0]: K = 2M upper
# nodes, mu = MU_PER_NODE * K / (WINDOW t0), u in (0, U_MAX). Tuned on sums of exponentials (rates 0 and
# 1e-8 .. 1e4 / t0, single and double poles): max error 3.5e-6, 2.6e-10, 5.8e-14 for M = 8, 12, 16 over
# the whole window; the largest |e^{lam t}| is e^{mu (1 - sin alpha) t} <= e^{5.2}, so roundoff stays ~1e-14.
WINDOW = 10.0


_ALPHA = 0.9


_U_MAX = 3.4


_MU_PER_NODE = 0.75


def _contour_times(times: Any, nodes: Any, what: str, accuracy: str) -> np.ndarray:
    """The times as a flat float array, checked (finite, > 0), and ``nodes`` (an integer >= 2)."""
    if not isinstance(nodes, (int, np.integer)) or nodes < 2:
        raise InvalidArgument(f"nodes={nodes!r}: pass an integer >= 2 (16 is accurate to ~{accuracy})")
    t = np.asarray(times, dtype=float).reshape(-1)
    if np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise InvalidArgument(f"{what} needs finite times t > 0, got {t[(t <= 0) | ~np.isfinite(t)]}")
    return t


def talbot_nodes(times: Any, nodes: int = 16) -> tuple[np.ndarray, np.ndarray]:
    r"""Upper-half Talbot nodes and weights for each time (MATH.md 5.6).

    :math:`\lambda(\theta)=r\theta(\cot\theta+i)`, :math:`r=2M/(5t)`, midpoint nodes
    :math:`\theta_j=(j+\frac12)\pi/M`, :math:`j<M` (the lower half are the conjugates),
    weights :math:`w_j=\lambda'(\theta_j)/(2iM)`, so that for a real-symmetric transform
    :math:`f(t)\approx2\operatorname{Re}\sum_jw_je^{\lambda_jt}\hat f(\lambda_j)`.

    Returns arrays of shape ``(len(times), nodes)``, ordered by increasing ``theta``.

    >>> lam, w = talbot_nodes([1.0, 2.0], 16)
    >>> lam.shape
    (2, 16)
    >>> t = np.array([[1.0], [2.0]])
    >>> f = 2 * np.real(np.sum(w * np.exp(lam * t) / (lam + 0.5), axis=1))   # L^-1[1/(lam+a)]
    >>> bool(np.allclose(f, np.exp(-0.5 * t[:, 0]), rtol=1e-10))
    True
    """
    t = _contour_times(times, nodes, "Talbot inversion", "1e-10")
    theta = (np.arange(nodes) + 0.5) * np.pi / nodes
    cot = 1 / np.tan(theta)
    r = (2 * nodes / (5 * t))[:, None]
    lam = r * theta * (cot + 1j)
    dlam = r * (cot - theta / np.sin(theta) ** 2 + 1j)
    return lam, dlam / (2j * nodes)


def inverse_laplace(transform: Callable[[np.ndarray], np.ndarray], times: Any, nodes: int = 16) -> np.ndarray:
    r"""Talbot inversion of a transform with :math:`\hat f(\bar\lambda)=\overline{\hat f(\lambda)}`.

    ``transform`` maps an array of complex ``lam`` (shape ``(T, nodes)``) to values of
    the same shape.

    >>> f = inverse_laplace(lambda s: 1 / s**2, [0.5, 3.0])     # L^-1[1/s^2] = t
    >>> bool(np.allclose(f, [0.5, 3.0], rtol=1e-10))
    True
    """
    lam, w = talbot_nodes(times, nodes)
    t = np.asarray(times, dtype=float).reshape(-1, 1)
    return np.asarray(2 * np.real(np.sum(w * np.exp(lam * t) * transform(lam), axis=1)))


def hyperbolic_nodes(t0: Any, nodes: int = 16) -> tuple[np.ndarray, np.ndarray]:
    r"""Upper-half nodes and weights of one hyperbolic contour for all times in ``[t0, 10 t0]``.

    :math:`\lambda(u)=\mu(1+\sin(iu-\alpha))`, :math:`\alpha=0.9`, :math:`\mu=0.75K/(10t_0)`,
    midpoint nodes :math:`u_j=(j+\frac12)h`, :math:`h=3.4/K`, :math:`K=2M` nodes (the lower half
    are the conjugates), weights :math:`w_j=h\lambda'(u_j)/(2\pi i)`: for a real-symmetric
    transform :math:`f(t)\approx2\operatorname{Re}\sum_jw_je^{\lambda_jt}\hat f(\lambda_j)`
    at every ``t`` of the window (Weideman and Trefethen 2007). ``M = 16`` is accurate to
    ~1e-13 on sums of exponentials, as Talbot's ``M = 16`` is at its single time.

    Returns arrays of shape ``(len(t0), 2 * nodes)``, ordered by increasing ``u`` (from the
    crossing of the positive real axis outwards).

    >>> lam, w = hyperbolic_nodes([1.0], 16)
    >>> t = np.array([[1.0], [3.0], [10.0]])            # one contour for the whole window
    >>> f = 2 * np.real(np.sum(w * np.exp(lam * t) / (lam + 0.5), axis=1))   # L^-1[1/(lam+a)]
    >>> bool(np.allclose(f, np.exp(-0.5 * t[:, 0]), rtol=1e-11))
    True
    """
    t = _contour_times(t0, nodes, "contour inversion", "1e-13")
    k = 2 * nodes
    h = _U_MAX / k
    u = (np.arange(k) + 0.5) * h
    mu = (_MU_PER_NODE * k / (WINDOW * t))[:, None]
    lam = mu * (1 + np.sin(1j * u - _ALPHA))
    dlam = mu * 1j * np.cos(1j * u - _ALPHA)
    return lam, h * dlam / (2j * np.pi)


def time_windows(times: Any) -> list[np.ndarray]:
    """Indices of ``times`` (all > 0) grouped into windows ``[t0, 10 t0]``, each sharing one contour.

    >>> [w.tolist() for w in time_windows([5.0, 0.1, 0.5, 1.0, 1.5])]
    [[1, 2, 3], [4, 0]]
    """
    t = np.asarray(times, dtype=float).reshape(-1)
    order = np.argsort(t, kind="stable")
    out: list[np.ndarray] = []
    i = 0
    while i < order.size:
        top = t[order[i]] * WINDOW * (1 + 1e-12)
        j = int(np.searchsorted(t[order], top, side="right"))
        out.append(order[i:j])
        i = j
    return out


@dataclass(frozen=True, slots=True)
class LaplacePiece:
    r"""``coeff * L^{-1}[transform](time_factor * t)``.

    ``transform`` is a sympy expression in ``variables`` (``(lam,)`` or ``(lam, lam2)``),
    their ridges ``ridges`` (``kappa``, ``kappa'``, solved by the curve's fixed points),
    the dimensions and :class:`~detequiv.models.ridge.mtr` atoms of ``Sigma`` and
    ``beta``; a two-variable transform is inverted in both variables at the same time.
    ``random`` names the random functional whose transform it is.
    """

    coeff: sp.Expr
    transform: sp.Expr
    variables: tuple[sp.Symbol, ...]
    ridges: tuple[sp.Symbol, ...]
    time_factor: int
    random: str

    def __str__(self) -> str:
        return f"{self.coeff} * L^-1[{self.transform}]({self.time_factor} t)   # {self.random}"

    def _latex(self, printer: Any) -> str:
        arg = "t" if self.time_factor == 1 else f"{self.time_factor}t"
        variables = ",".join(printer._print(v) for v in self.variables)
        return (
            printer._print(self.coeff)
            + r"\,\mathcal{L}^{-1}_{"
            + variables
            + r"}\left["
            + printer._print(self.transform)
            + r"\right]("
            + arg
            + ")"
        )


class CurveModel(abc.ABC):
    """What a :class:`LossCurve` needs from the model of the dynamics that derived it."""

    __slots__ = ()

    #: The population covariance and the target (their names key the values).
    sigma: Any
    beta: Any

    @property
    @abc.abstractmethod
    def dims(self) -> tuple[sp.Expr, sp.Expr]:
        """``(P, D)``: samples and dimension."""

    @abc.abstractmethod
    def ridge_ratio(self, scalars: Mapping[str, float]) -> float:
        """``c`` with ``kappa <= lam + c tr Sigma`` on the physical branch (a bracket for Newton)."""

    @abc.abstractmethod
    def check_monte_carlo(
        self, curve: LossCurve, sizes: Sequence[int] | None, *, rng: Any, **options: Any
    ) -> Any:
        """Simulate the dynamics and compare with ``curve``."""


@dataclass(frozen=True, slots=True)
class CurveSeriesCheck(Evidence):
    """Evidence of :meth:`LossCurve.check_series`: the exact witness of every equivalent the
    curve's transforms were built from (the inversion in time is exact algebra plus
    quadrature, checked by :meth:`LossCurve.check_monte_carlo`)."""

    checks: tuple[tuple[str, Evidence], ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for _, c in self.checks)

    def __str__(self) -> str:
        return "\n".join(f"{name}: {check}" for name, check in self.checks)


@dataclass(frozen=True, slots=True)
class LossCurve(Result):
    r"""A derived loss curve :math:`L(t)`: a constant plus named sums of :class:`LaplacePiece`.

    :meth:`evaluate` gives numbers on a grid of times from spectra.
    """

    name: str
    constant: Mapping[str, sp.Expr]
    terms: Mapping[str, tuple[LaplacePiece, ...]]
    fixed_points: tuple[FixedPoint, ...]
    derivation: tuple[Step, ...]
    model: CurveModel | None = field(repr=False, default=None)
    sources: tuple[tuple[str, Result], ...] = field(repr=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "derivation", Derivation(self.derivation))
        if self.model is not None and not isinstance(self.model, CurveModel):
            raise InvalidArgument(f"model must be a CurveModel, got {type(self.model).__name__}")

    def _model(self) -> CurveModel:
        return require_model(self.name, self.model)

    def check_series(self, order: int = 4) -> CurveSeriesCheck:
        """The exact witness of each equivalent the transforms were built from (``sources``),
        at ``order``."""
        if not self.sources:
            raise InvalidArgument(f"{self.name} records no equivalents to check; derive it with a model")
        return CurveSeriesCheck(tuple((name, r.check_series(order)) for name, r in self.sources))

    def latex_rows(self, printer: Any) -> list[str]:
        """The curve, its terms (inverse Laplace transforms) and fixed points."""
        names = [sp.Symbol(k) for k in (*self.constant, *self.terms)]
        rows = [
            printer._print(sp.Symbol(self.name)) + "(t) &= " + " + ".join(printer._print(n) for n in names)
        ]
        rows += [printer._print(sp.Symbol(k)) + " &= " + printer._print(v) for k, v in self.constant.items()]
        rows += [
            printer._print(sp.Symbol(k)) + " &= " + " + ".join(printer._print(p) for p in pieces)
            for k, pieces in self.terms.items()
        ]
        rows += [printer._print(fp.symbol) + " &= " + printer._print(fp.rhs) for fp in self.fixed_points]
        return rows

    def __str__(self) -> str:
        names = [*self.constant, *self.terms]
        lines = [f"{self.name}(t) = {' + '.join(names)}"]
        lines += [f"  {k} = {v}" for k, v in self.constant.items()]
        for k, pieces in self.terms.items():
            lines.append(f"  {k} = " + "\n      + ".join(str(p) for p in pieces))
        lines += [f"  {fp}" for fp in self.fixed_points]
        lines.append("derivation:")
        lines += [f"  {i + 1}. {s}" for i, s in enumerate(self.derivation)]
        return "\n".join(lines)

    def evaluate(
        self,
        values: Mapping[Any, Any],
        times: Any,
        *,
        nodes: int = 16,
        chunk: int | None = None,
        contour: str = "hyperbolic",
    ) -> dict[str, np.ndarray]:
        r"""Every term and the ``total`` on a grid of times.

        Parameters
        ----------
        values : mapping
            ``Sigma`` (its name or the object) to its eigenvalues (1-D) or a symmetric
            matrix; ``beta`` to the target (in the eigenbasis when ``Sigma`` is given by
            eigenvalues); ``P`` and the noise variance (``sigma2``) to numbers; ``D``
            defaults to the spectrum length.
        times : array_like
            Times ``t >= 0``; ``t = 0`` uses the initial-value theorem
            :math:`f(0)=\lim_{\lambda\to\infty}\lambda\hat f(\lambda)`.
        nodes : int
            Accuracy parameter ``M``: ``2M`` upper nodes per hyperbolic contour, or ``M`` per
            Talbot contour (MATH.md 5.6: 16 is accurate to ~1e-13 and ~1e-10 respectively;
            many more loses digits to cancellation).
        chunk : int, optional
            Contours per vectorized block (arrays of ``chunk * nodes * D`` complex numbers);
            by default about ``2e6 / (nodes * D)``.
        contour : {"hyperbolic", "talbot"}
            ``"hyperbolic"`` (default): the times are grouped into windows ``[t0, 10 t0]``
            sharing one contour each (:func:`hyperbolic_nodes`), so ``kappa`` is solved and the
            transforms evaluated once per window, and each time costs one small matrix product;
            ``"talbot"``: one Talbot contour per time (:func:`talbot_nodes`), the reference.
        """
        if contour not in ("hyperbolic", "talbot"):
            raise InvalidArgument(f"contour={contour!r}: pass 'hyperbolic' or 'talbot'")
        return _evaluate_curve(self, values, times, nodes, chunk, contour)

    def check_monte_carlo(self, sizes: Sequence[int] | None = None, *, rng: Any, **options: Any) -> Any:
        """Simulation of the dynamics itself (the model's witness, e.g.
        :mod:`detequiv.models.gradient_flow_mc`)."""
        return self._model().check_monte_carlo(self, sizes, rng=rng, **options)


def inverse_laplace_step() -> Step:
    """The step that records how a curve's transforms are inverted."""
    return Step(
        INVERSE_LAPLACE,
        sp.Symbol("L^-1[F](t)"),
        sp.Symbol("2 Re sum_j w_j exp(lam_j t) F(lam_j)"),
        "hyperbolic contour lam(u) = mu (1 + sin(i u - alpha)) shared by the times of each window "
        "[t0, 10 t0] (or one Talbot contour lam(theta) = r theta (cot theta + i), r = 2M/(5t), per time); "
        "kappa on the nodes by Newton continuation along the contour of the engine's fixed point; "
        "two-variable transforms by the double sum, a matrix of node pairs per window",
    )


@dataclass(frozen=True, slots=True)
class _Spectral:
    """Eigenvalues ``l``, squared target coefficients ``b2`` and scalar values."""

    l: np.ndarray  # noqa: E741 - the eigenvalues lambda_k
    b2: np.ndarray
    scalars: dict[str, float]


def _name(key: Any) -> str:
    return key if isinstance(key, str) else str(getattr(key, "name", key))


def _spectral(curve: LossCurve, values: Mapping[Any, Any]) -> _Spectral:
    model = curve._model()
    by_name = {_name(k): v for k, v in values.items()}
    sig_name, beta_name = model.sigma.name, model.beta.name
    if sig_name not in by_name or beta_name not in by_name:
        raise InvalidArgument(f"values needs {sig_name} (eigenvalues or matrix) and {beta_name} (vector)")
    s = np.asarray(by_name[sig_name], dtype=float)
    beta = np.asarray(by_name[beta_name], dtype=float)
    if s.ndim == 2:
        if s.shape[0] != s.shape[1] or not np.allclose(s, s.T):
            raise InvalidArgument(
                f"{sig_name} must be a symmetric matrix or a 1-D spectrum, got shape {s.shape}"
            )
        s, vecs = np.linalg.eigh(s)
        beta = vecs.T @ beta
    if s.ndim != 1 or beta.shape != s.shape:
        raise InvalidArgument(
            f"{sig_name} has shape {s.shape} and {beta_name} {beta.shape}; pass a 1-D spectrum and "
            "the target in its eigenbasis, of equal length"
        )
    if np.any(s < 0) or not np.all(np.isfinite(s)):
        raise InvalidArgument(
            f"{sig_name} must be positive semi-definite; its smallest eigenvalue is {s.min()}"
        )
    scalars: dict[str, float] = {}
    for k, v in by_name.items():
        if k in (sig_name, beta_name):
            continue
        if np.ndim(v) != 0:
            raise InvalidArgument(f"{k} must be a number, got shape {np.shape(v)}")
        scalars[k] = float(v)
    p, d = model.dims
    scalars.setdefault(str(d), float(s.shape[0]))
    if str(d) in scalars and scalars[str(d)] != s.shape[0]:
        raise InvalidArgument(f"{d}={scalars[str(d)]} but the spectrum has {s.shape[0]} entries")
    if str(p) not in scalars or scalars[str(p)] <= 0:
        raise InvalidArgument(f"values needs the number of samples {p} > 0")
    return _Spectral(s, beta**2, scalars)


def _numbers(expr: sp.Expr, scalars: Mapping[str, float]) -> sp.Expr:
    """Substitute numbers for scalar symbols outside the trace atoms (whose matrices keep their shapes)."""
    e = sp.sympify(expr)
    atoms = sorted(e.atoms(mtr) | e.atoms(df1), key=str)
    hide = {a: sp.Dummy(f"atom{i}") for i, a in enumerate(atoms)}
    e = e.xreplace(hide)
    rep = {s: sp.Float(scalars[s.name]) for s in e.free_symbols if s.name in scalars}
    return e.xreplace(rep).xreplace({v: k for k, v in hide.items()})


def _float(expr: sp.Expr, scalars: Mapping[str, float], what: str) -> float:
    value = _numbers(expr, scalars)
    if value.free_symbols:
        missing = sorted(str(s) for s in value.free_symbols)
        raise InvalidArgument(f"values lacks numbers for {missing} (needed by {what}); pass them")
    return float(value)


def _params(names: Sequence[str], scalars: Mapping[str, float], what: str) -> list[float]:
    missing = [n for n in names if n not in scalars]
    if missing:
        raise InvalidArgument(f"values lacks numbers for {missing} (needed by {what}); pass them")
    return [scalars[n] for n in names]


@functools.lru_cache(maxsize=64)
def _solver_functions(
    fp: FixedPoint, lam: sp.Symbol, sigma_name: str
) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    """Lambdified ``Psi = kappa den - num`` (the fixed point cleared of its pole) and its partials."""
    rhs = fp.rhs
    k = fp.symbol
    f = sp.Dummy("df1")
    atoms = rhs.atoms(df1)
    for a in atoms:
        if str(a.args[0]) != sigma_name or a.args[1] != k:
            raise InvalidArgument(f"the fixed point {fp} uses {a}; only df1({sigma_name}, {k}) is supported")
    num, den = sp.fraction(sp.together(rhs.xreplace({a: f for a in atoms})))
    r = sp.expand(k * den - num)  # cleared of the pole at the ridgeless kappa_0: Newton stays on the branch
    params = sorted(r.free_symbols - {k, lam, f}, key=str)
    args = (k, lam, f, *params)
    funcs = tuple(sp.lambdify(args, e, "numpy") for e in (r, sp.diff(r, k), sp.diff(r, f), sp.diff(r, lam)))
    return funcs, tuple(str(x) for x in params)


class _KappaSolver:
    r"""Vectorized Newton for the engine's fixed point ``kappa = rhs(kappa, lam, df1(Sigma, kappa))``."""

    def __init__(self, fp: FixedPoint, lam: sp.Symbol, spec: _Spectral, sigma_name: str) -> None:
        funcs, params = _solver_functions(fp, lam, sigma_name)
        args = _params(params, spec.scalars, f"the fixed point {fp}")
        self.g, self.gk, self.gf, self.gl = ((lambda k, x, f, fn=fn: fn(k, x, f, *args)) for fn in funcs)
        self.l = spec.l
        self.l_mean = (spec.l / spec.l.size).astype(complex)

    def _parts(self, kap: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = 1 / (kap[..., None] + self.l)
        f = u @ self.l_mean
        df = -((u * u) @ self.l_mean)
        phi = self.g(kap, lam, f) + 0 * kap
        dphi = self.gk(kap, lam, f) + self.gf(kap, lam, f) * df
        return phi, dphi, -self.gl(kap, lam, f) + 0 * kap

    def newton(self, kap: np.ndarray, lam: np.ndarray, iters: int = 60) -> np.ndarray:
        kap = np.array(kap, copy=True)
        for _ in range(iters):
            phi, dphi, _ = self._parts(kap, lam)
            step = phi / dphi
            kap = kap - step
            # quadratic convergence: after a step of relative size 1e-8 the error is ~1e-16
            if np.all(np.abs(step) <= 1e-8 * np.abs(kap) + 1e-300):
                return kap
        phi, _, _ = self._parts(kap, lam)
        if not np.all(np.abs(phi) <= 1e-10 * np.abs(kap)):
            raise VerificationError(
                f"Newton for kappa did not converge (max residual {np.max(np.abs(phi)):.3g})"
            )
        return kap

    def real(self, lam: np.ndarray, q_bound: float) -> np.ndarray:
        """Physical root for real ``lam > 0``: Newton from the large-``kappa`` side."""
        start = lam + q_bound
        return self.newton(start.astype(complex), lam.astype(complex)).real.astype(complex)

    def contour(self, lam: np.ndarray, q_bound: float, substeps: int = 1) -> np.ndarray:
        """``kappa`` on ``lam`` of shape ``(T, M)`` (theta increasing), continued from ``|lam[:, 0]|``."""
        out = np.empty_like(lam)
        prev_lam = np.abs(lam[:, 0]).astype(complex)
        kap = self.real(prev_lam.real, q_bound)
        for j in range(lam.shape[1]):
            for s in range(1, substeps + 1):
                target = prev_lam + (lam[:, j] - prev_lam) * s / substeps
                before = prev_lam + (lam[:, j] - prev_lam) * (s - 1) / substeps
                _, dphi, gl = self._parts(kap, before)
                kap = self.newton(kap + (target - before) * gl / dphi, target)
            out[:, j] = kap
            prev_lam = lam[:, j]
        return out


@functools.lru_cache(maxsize=256)
def _atom_structure(
    atom: mtr, ridges: tuple[sp.Symbol, ...], sigma_name: str, beta_name: str
) -> tuple[bool, complex, float, tuple[int, ...]]:
    """``(quadratic, scalar, power of Sigma, powers of the resolvents)`` of an atom: it is
    ``sum_k w_k scalar l_k^power prod_i (ridge_i + l_k)^-powers_i`` with ``w = beta_k^2`` or ``1/D``."""
    m = atom.args[0]
    scalar = complex(m.as_coeff_matrices()[0]) if isinstance(m, sp.MatMul) else 1.0
    mats = flat_factors(m)
    quad = False
    if mats and isinstance(mats[0], sp.Transpose):
        if (
            mats[0].arg.name != beta_name
            or not isinstance(mats[-1], sp.MatrixSymbol)
            or mats[-1].name != beta_name
        ):
            raise InvalidArgument(
                f"cannot evaluate {atom}: a quadratic form must be {beta_name}' ... {beta_name}"
            )
        quad = True
        mats = mats[1:-1]
    power = 0.0
    powers = [0] * len(ridges)
    for f in mats:
        if isinstance(f, sp.MatrixSymbol) and f.name == sigma_name:
            power += 1
        elif (
            isinstance(f, sp.MatPow)
            and isinstance(f.args[0], sp.MatrixSymbol)
            and f.args[0].name == sigma_name
        ):
            power += float(f.args[1])
        elif isinstance(f, sp.Inverse):
            ridge = sp.simplify(
                sp.Trace(f.arg - sp.MatrixSymbol(sigma_name, *f.arg.shape)).doit() / f.arg.shape[0]
            )
            if ridge not in ridges:
                raise InvalidArgument(f"cannot evaluate {atom}: {f} is not (ridge + {sigma_name})^-1")
            powers[ridges.index(ridge)] += 1
        elif isinstance(f, sp.Identity):
            continue
        else:
            raise InvalidArgument(f"cannot evaluate {atom}: unknown factor {f}")
    return quad, scalar, power, tuple(powers)


def _atom_plan(
    atom: mtr, ridges: Sequence[sp.Symbol], spec: _Spectral, sigma_name: str, beta_name: str
) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(weights, powers)``: the atom is ``sum_k weights_k prod_i (ridge_i + l_k)^-powers_i``."""
    quad, scalar, power, powers = _atom_structure(atom, tuple(ridges), sigma_name, beta_name)
    weights = spec.b2 if quad else np.full_like(spec.l, 1.0 / spec.l.shape[0])
    if power:
        weights = weights * spec.l**power
    if scalar != 1:
        weights = weights * (scalar.real if scalar.imag == 0 else scalar)
    return weights, powers


@functools.lru_cache(maxsize=64)
def _transform_function(piece: LaplacePiece) -> tuple[Any, tuple[mtr, ...], tuple[str, ...]]:
    """The transform lambdified in ``(variables, ridges, atoms, scalar parameters)``."""
    expr = sp.sympify(piece.transform)
    atoms = tuple(sorted(expr.atoms(mtr), key=str))
    dummies = [sp.Dummy(f"a{i}") for i in range(len(atoms))]
    expr = expr.xreplace(dict(zip(atoms, dummies, strict=True)))
    params = sorted(expr.free_symbols - set(piece.variables) - set(piece.ridges) - set(dummies), key=str)
    f = sp.lambdify((*piece.variables, *piece.ridges, *dummies, *params), expr, "numpy")
    return f, atoms, tuple(str(x) for x in params)


class _Transform:
    """Vectorized numbers for one :class:`LaplacePiece` transform."""

    def __init__(self, piece: LaplacePiece, spec: _Spectral, model: CurveModel) -> None:
        func, atoms, params = _transform_function(piece)
        args = _params(params, spec.scalars, piece.random)
        self.f = lambda *xs: func(*xs, *args)
        self.plans = [_atom_plan(a, piece.ridges, spec, model.sigma.name, model.beta.name) for a in atoms]
        self.l = spec.l

    def single(self, lam: np.ndarray, kap: np.ndarray) -> np.ndarray:
        """The transform at nodes ``lam`` (any shape) with ridges ``kap``."""
        u = 1 / (kap[..., None] + self.l)
        vals = [
            np.asarray(w.sum()) if not pw[0] else (u if pw[0] == 1 else u ** pw[0]) @ w
            for w, pw in self.plans
        ]
        return np.asarray(self.f(lam, kap, *vals))

    def double(self, lam: np.ndarray, kap: np.ndarray) -> np.ndarray:
        """Two variables on upper nodes ``lam`` (``T x M``) and on all nodes (``T x 2M``, the
        conjugates appended): an array ``T x M x 2M``."""
        u = 1 / (kap[..., None] + self.l)  # (T, M, D)
        ub = np.concatenate([u, u.conj()], axis=1)  # (T, 2M, D)
        lam2 = np.concatenate([lam, lam.conj()], axis=1)
        kap2 = np.concatenate([kap, kap.conj()], axis=1)
        done: dict[tuple[Any, ...], np.ndarray] = {}
        vals = []
        for w, (p1, p2) in self.plans:
            key = (p1, p2, w.tobytes())
            if key not in done:
                a = u**p1 if p1 != 1 else u
                b = ub**p2 if p2 != 1 else ub
                if p1 and p2:
                    done[key] = np.matmul(a * w, np.swapaxes(b, 1, 2))
                elif p1:
                    done[key] = (a @ w)[:, :, None]
                elif p2:
                    done[key] = (b @ w)[:, None, :]
                else:
                    done[key] = np.asarray(w.sum())
            vals.append(done[key])
        return np.asarray(self.f(lam[:, :, None], lam2[:, None, :], kap[:, :, None], kap2[:, None, :], *vals))


def _evaluate_curve(
    curve: LossCurve,
    values: Mapping[Any, Any],
    times: Any,
    nodes: int,
    chunk: int | None,
    contour: str = "hyperbolic",
) -> dict[str, np.ndarray]:
    model = curve._model()
    spec = _spectral(curve, values)
    if chunk is None:
        chunk = max(1, int(2e6 // (max(nodes, 1) * spec.l.size)))
    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise InvalidArgument(f"chunk={chunk!r}: pass a positive integer (times per block)")
    t = np.asarray(times, dtype=float).reshape(-1)
    if np.any(~np.isfinite(t)) or np.any(t < 0):
        raise InvalidArgument(f"times must be finite and >= 0, got {t[(t < 0) | ~np.isfinite(t)]}")
    q = model.ridge_ratio(spec.scalars)
    bound = q * float(spec.l.mean()) + 1e-300  # kappa <= lam + (D/P) tr Sigma on the physical branch
    solvers = {fp.symbol: fp for fp in curve.fixed_points}
    kappas: dict[tuple[Any, ...], np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    for name, c in curve.constant.items():
        out[name] = np.full(t.shape, _float(c, spec.scalars, name))
    for name, pieces in curve.terms.items():
        total = np.zeros(t.shape)
        for piece in pieces:
            fp = solvers.get(piece.ridges[0])
            if fp is None:
                raise InvalidArgument(f"no fixed point for {piece.ridges[0]}")
            if len(piece.variables) == 2:
                fp2 = solvers.get(piece.ridges[1])
                same = {piece.ridges[1]: piece.ridges[0], piece.variables[1]: piece.variables[0]}
                if fp2 is None or sp.simplify(fp2.rhs.xreplace(same) - fp.rhs) != 0:
                    raise InvalidArgument(
                        f"the two ridges of {piece.random} solve different fixed points; "
                        "only kappa' = kappa(lam2) of the same equation is supported"
                    )
            solver = _KappaSolver(fp, piece.variables[0], spec, model.sigma.name)
            transform = _Transform(piece, spec, model)
            coeff = _float(piece.coeff, spec.scalars, name)
            tau = piece.time_factor * t
            key = (str(fp.equation), piece.time_factor)
            invert = _invert if contour == "talbot" else _invert_windows
            res, kap = invert(
                transform, solver, tau, bound, nodes, chunk, len(piece.variables), kappas.get(key)
            )
            kappas[key] = kap
            total += coeff * res
        out[name] = total
    out["total"] = sum(out.values(), np.zeros(t.shape))
    return out


def _invert(
    transform: _Transform,
    solver: _KappaSolver,
    tau: np.ndarray,
    bound: float,
    nodes: int,
    chunk: int,
    nvar: int,
    known: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``L^{-1}[transform](tau)`` and the ridges on the contour nodes (reused as ``known``)."""
    res, zero = _at_zero(transform, solver, tau, bound, nvar)
    idx = np.flatnonzero(~zero)
    kaps = np.empty((tau.size, nodes), dtype=complex) if known is None else known
    for start in range(0, idx.size, chunk):
        sel = idx[start : start + chunk]
        tt = tau[sel]
        lam, w = talbot_nodes(tt, nodes)
        if known is None:
            kaps[sel] = solver.contour(lam, bound)
        kap = kaps[sel]
        e = w * np.exp(lam * tt[:, None])
        if nvar == 1:
            res[sel] = 2 * np.real(np.sum(e * transform.single(lam, kap), axis=1))
        else:
            e2 = np.concatenate([e, e.conj()], axis=1)
            res[sel] = 2 * np.real(np.einsum("tj,tjl,tl->t", e, transform.double(lam, kap), e2))
    return res, kaps


def _invert_windows(
    transform: _Transform,
    solver: _KappaSolver,
    tau: np.ndarray,
    bound: float,
    nodes: int,
    chunk: int,
    nvar: int,
    known: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r""":func:`_invert` with one hyperbolic contour per window of times: ``kappa`` and the
    transform (a ``2M x 4M`` matrix for two variables) once per window, then per time
    ``2 Re e(t)' F e(t)`` with :math:`e_j(t)=w_je^{\lambda_jt}`."""
    res, zero = _at_zero(transform, solver, tau, bound, nvar)
    idx = np.flatnonzero(~zero)
    windows = [idx[w] for w in time_windows(tau[idx])]
    t0 = np.array([tau[w].min() for w in windows])
    lam_all, w_all = hyperbolic_nodes(t0, nodes) if windows else (np.zeros((0, 2 * nodes)),) * 2
    kaps = np.empty(lam_all.shape, dtype=complex) if known is None else known
    for start in range(0, len(windows), chunk):
        stop = min(start + chunk, len(windows))
        lam = lam_all[start:stop]
        if known is None:
            kaps[start:stop] = solver.contour(lam, bound)
        kap = kaps[start:stop]
        values = transform.single(lam, kap) if nvar == 1 else transform.double(lam, kap)
        for b in range(stop - start):
            sel = windows[start + b]
            e = w_all[start + b] * np.exp(np.outer(tau[sel], lam[b]))  # (T_b, 2M)
            if nvar == 1:
                res[sel] = 2 * np.real(e @ values[b])
            else:
                e2 = np.concatenate([e, e.conj()], axis=1)
                res[sel] = 2 * np.real(np.sum((e @ values[b]) * e2, axis=1))
    return res, kaps


def _at_zero(
    transform: _Transform, solver: _KappaSolver, tau: np.ndarray, bound: float, nvar: int
) -> tuple[np.ndarray, np.ndarray]:
    """The result array with its ``tau = 0`` entries filled, and the mask of those entries."""
    res = np.zeros(tau.shape)
    zero = tau == 0
    if np.any(zero):
        # initial-value theorem f(0) = lim lam F(lam) (lam lam' F for two variables), with one
        # Richardson step in 1/lam: error O(scale^2 / lam^2) against cancellation O(eps lam / scale)
        scale = 1 + float(solver.l.max()) + bound
        vals = []
        for big_value in (1e5 * scale, 2e5 * scale):
            big = np.array([[big_value]], dtype=complex)
            kap = solver.real(big.real, bound)
            if nvar == 1:
                val = big * transform.single(big, kap)
            else:
                val = big**2 * transform.double(big, kap)
            vals.append(float(np.real(np.ravel(val)[0])))
        res[zero] = 2 * vals[1] - vals[0]
    return res, zero
