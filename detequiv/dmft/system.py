r"""Declarative description of a DMFT system on a discrete time grid (DMFT.md 1, 2.2, 6).

A :class:`DMFTSystem` is a *bipartite single-site problem*: one process for a training
sample (the :class:`SampleSide`: loss and teacher), one for a weight coordinate (the weight
side: :class:`Ridge` or :class:`HeavyBall`), coupled through correlation and response
functions on the grid ``k = 0..steps`` of a :class:`Grid`. The noise of the algorithm is a
per-sample multiplier process ``s_k`` (:class:`GD`, :class:`SGF`, :class:`BernoulliVisits`).

Internal convention (DMFT.md 1), used by every solver of :mod:`detequiv.dmft`:

* rows ``x_mu ~ N(0, I_d / d)``, ``delta = n / d``, ``|theta*|^2 / d -> rho``
  (``teacher_norm``), labels ``y_mu = phi(x_mu . theta*, eps_mu)``;
* ``L(theta) = sum_mu l(x_mu . theta; y_mu) + sum_i Omega(theta_i)`` (a *sum* over samples);
* GD: ``theta_{k+1} = theta_k - dt [Omega'(theta_k) + X^T (s_k * l'(X theta_k; y))]``;
* SGF temperature ``tau = gamma n / B`` (one epoch lasts ``tau`` time units);
* reported losses: ``train(t) = (1/n) sum_mu l(r_mu(t); y_mu)``; for regression
  ``test(t) = |theta - theta*|^2 / d`` (the excess risk, times two).

The symbolic layer is thin: a loss is a sympy expression in ``(r, y)``; ``l'`` and ``l''``
are derived by sympy and lambdified to vectorized numpy, and the linearity test that
chooses the exact Gaussian route (:mod:`detequiv.dmft.linear`) is decided by sympy.

>>> import numpy as np
>>> system = DMFTSystem(delta=2.0, grid=Grid(dt=0.1, steps=50),
...                     sample_side=SampleSide(Square(), LinearTeacher(noise_var=0.25)),
...                     weight_side=Ridge(lam=0.1), noise=SGF(tau=0.5))
>>> system.is_linear, float(system.grid.times[-1])
(True, 5.0)
>>> DMFTSystem(delta=2.0, grid=Grid(0.5, 10),
...            sample_side=SampleSide(Logistic(), SignTeacher(noise=0.3))).is_linear
False
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from ..codegen.pycode import numpy_function
from ..errors import InvalidArgument

__all__ = [
    "Grid",
    "Loss",
    "Square",
    "Logistic",
    "CustomLoss",
    "LinearTeacher",
    "SignTeacher",
    "LogisticTeacher",
    "SampleSide",
    "Ridge",
    "HeavyBall",
    "GD",
    "SGF",
    "BernoulliVisits",
    "ZeroInit",
    "GaussianInit",
    "DMFTSystem",
]

_R, _Y = sp.symbols("r y", real=True)


def check_real(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    strict: bool = False,
    high: float | None = None,
    high_strict: bool = False,
) -> float:
    """Return ``value`` as a float after checking it is a real finite number in range.

    The one validator of the real parameters of :mod:`detequiv.dmft` (rates, variances,
    penalties); the error names the parameter and what it must be.

    Parameters
    ----------
    value : Any
        The value to check (``bool`` is refused although it is an ``int``).
    name : str
        The parameter's name, for the error message.
    low, high : float, optional
        Bounds; ``strict`` / ``high_strict`` make them exclusive.

    Returns
    -------
    float

    Raises
    ------
    InvalidArgument
        If ``value`` is not a real number, not finite, or out of range.

    Examples
    --------
    >>> check_real(2, "delta", low=0.0, strict=True)
    2.0
    >>> check_real(0.0, "delta", low=0.0, strict=True)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: delta=0.0 must be > 0.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidArgument(f"{name}={value!r} must be a real number")
    out = float(value)
    if not math.isfinite(out):
        raise InvalidArgument(f"{name}={value!r} must be finite")
    if low is not None and (out <= low if strict else out < low):
        raise InvalidArgument(f"{name}={value!r} must be {'>' if strict else '>='} {low}")
    if high is not None and (out >= high if high_strict else out > high):
        raise InvalidArgument(f"{name}={value!r} must be {'<' if high_strict else '<='} {high}")
    return out


def check_int(value: Any, name: str, low: int | None = 1) -> int:
    """Return ``value`` as an int after checking it is an integer ``>= low``.

    The validator of the counts (paths, seeds, dimensions) and seeds of :mod:`detequiv.dmft`.

    Parameters
    ----------
    value, name : Any, str
        As for :func:`check_real`.
    low : int or None
        Smallest allowed value; ``None`` accepts any integer (a seed).

    Returns
    -------
    int

    Raises
    ------
    InvalidArgument
        If ``value`` is not an integer or is below ``low``.

    Examples
    --------
    >>> check_int(np.int64(3), "seeds")
    3
    >>> check_int(1, "d", 2)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: d=1 must be an integer >= 2
    >>> check_int(True, "seed", None)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: seed=True must be an integer
    """
    bound = "" if low is None else f" >= {low}"
    too_small = low is not None and isinstance(value, (int, np.integer)) and value < low
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or too_small:
        raise InvalidArgument(f"{name}={value!r} must be an integer{bound}")
    return int(value)


# --------------------------------------------------------------------------- grid


@dataclass(frozen=True, slots=True)
class Grid:
    """Uniform time grid ``t_k = k dt``, ``k = 0..steps`` (``steps + 1`` points).

    Parameters
    ----------
    dt : float
        Step of the discrete algorithm (GD learning rate per sample sum), ``> 0``.
    steps : int
        Number of steps ``T >= 1``.

    >>> Grid(dt=0.25, steps=4).times
    array([0.  , 0.25, 0.5 , 0.75, 1.  ])
    >>> Grid(dt=0.0, steps=4)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: dt=0.0 must be > 0.0
    """

    dt: float
    steps: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "dt", check_real(self.dt, "dt", low=0.0, strict=True))
        if isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise InvalidArgument(f"steps={self.steps!r} must be an integer >= 1 (number of grid steps)")
        object.__setattr__(self, "steps", int(self.steps))

    @property
    def size(self) -> int:
        """Number of grid points ``K = steps + 1``."""
        return self.steps + 1

    @property
    def times(self) -> np.ndarray:
        """The grid times ``k dt`` as a float array of length ``steps + 1``."""
        return np.arange(self.size) * self.dt


# --------------------------------------------------------------------------- losses


@functools.lru_cache(maxsize=64)
def _derived(expr: sp.Expr, r: sp.Symbol, y: sp.Symbol) -> tuple[sp.Expr, sp.Expr, Any, Any, Any]:
    d1 = sp.simplify(sp.diff(expr, r))
    d2 = sp.simplify(sp.diff(d1, r))
    # vectorized numpy step functions printed by the codegen stage (cse, no sympy at call time)
    fs = tuple(numpy_function(f"_loss_{k}", (r, y), [e])[1] for k, e in enumerate((expr, d1, d2)))
    return (d1, d2, *fs)


@functools.lru_cache(maxsize=64)
def _affine_derivative(expr: sp.Expr, r: sp.Symbol, y: sp.Symbol) -> bool:
    return bool(sp.simplify(sp.diff(_derived(expr, r, y)[1], r)) == 0)


@functools.lru_cache(maxsize=64)
def _square_scale(expr: sp.Expr, r: sp.Symbol, y: sp.Symbol) -> float | None:
    a = sp.simplify(_derived(expr, r, y)[1])
    if a.free_symbols or not a.is_positive:
        return None
    if sp.simplify(expr - a * (r - y) ** 2 / 2) != 0:
        return None
    return float(a)


def _broadcast(f: Callable[..., Any], r: Any, y: Any) -> np.ndarray:
    r_arr, y_arr = np.broadcast_arrays(np.asarray(r, dtype=float), np.asarray(y, dtype=float))
    return np.broadcast_to(np.asarray(f(r_arr, y_arr), dtype=float), r_arr.shape).copy()


class Loss:
    """Base of the per-sample losses ``l(r; y)`` (``r`` the preactivation, ``y`` the label).

    Subclasses provide :attr:`expr`, :attr:`r`, :attr:`y`. Derivatives are taken by sympy;
    :meth:`value`, :meth:`derivative` and :meth:`second_derivative` are vectorized numpy.
    """

    expr: sp.Expr
    r: sp.Symbol
    y: sp.Symbol

    @property
    def first(self) -> sp.Expr:
        """Symbolic ``l'(r; y) = d l / d r``."""
        return _derived(self.expr, self.r, self.y)[0]

    @property
    def second(self) -> sp.Expr:
        """Symbolic ``l''(r; y)``."""
        return _derived(self.expr, self.r, self.y)[1]

    def value(self, r: Any, y: Any) -> np.ndarray:
        """``l(r; y)`` elementwise (broadcasting)."""
        return _broadcast(_derived(self.expr, self.r, self.y)[2], r, y)

    def derivative(self, r: Any, y: Any) -> np.ndarray:
        """``l'(r; y)`` elementwise (broadcasting)."""
        return _broadcast(_derived(self.expr, self.r, self.y)[3], r, y)

    def second_derivative(self, r: Any, y: Any) -> np.ndarray:
        """``l''(r; y)`` elementwise (broadcasting)."""
        return _broadcast(_derived(self.expr, self.r, self.y)[4], r, y)

    @property
    def is_gaussian_linear(self) -> bool:
        """True when ``l'`` is affine in ``r`` (``l''`` free of ``r``), decided by sympy."""
        return _affine_derivative(self.expr, self.r, self.y)

    @property
    def square_scale(self) -> float | None:
        """``a`` when ``l = a (r - y)^2 / 2`` exactly with a constant ``a > 0``, else None.

        >>> Square().square_scale, Logistic().square_scale
        (1.0, None)
        """
        return _square_scale(self.expr, self.r, self.y)


@dataclass(frozen=True, slots=True)
class Square(Loss):
    """Square loss ``l(r; y) = (r - y)^2 / 2``.

    >>> Square().derivative([1.0, 2.0], 0.5)
    array([0.5, 1.5])
    >>> Square().is_gaussian_linear
    True
    """

    @property
    def expr(self) -> sp.Expr:  # type: ignore[override]
        return (_R - _Y) ** 2 / 2

    @property
    def r(self) -> sp.Symbol:  # type: ignore[override]
        return _R

    @property
    def y(self) -> sp.Symbol:  # type: ignore[override]
        return _Y


@dataclass(frozen=True, slots=True)
class Logistic(Loss):
    """Logistic loss ``l(r; y) = log(1 + exp(-y r))`` for labels ``y = +-1``.

    The numpy functions are written in overflow-safe form (``logaddexp``, ``tanh``); the
    symbolic :attr:`expr` is the same function (a doctest of the test suite compares them).

    >>> Logistic().value([0.0], [1.0])
    array([0.69314718])
    >>> float(Logistic().derivative(0.0, 1.0)), float(Logistic().second_derivative(0.0, 1.0))
    (-0.5, 0.25)
    >>> Logistic().value(-1000.0, 1.0)
    array(1000.)
    """

    @property
    def expr(self) -> sp.Expr:  # type: ignore[override]
        return sp.log(1 + sp.exp(-_Y * _R))

    @property
    def r(self) -> sp.Symbol:  # type: ignore[override]
        return _R

    @property
    def y(self) -> sp.Symbol:  # type: ignore[override]
        return _Y

    def value(self, r: Any, y: Any) -> np.ndarray:
        r_arr, y_arr = np.broadcast_arrays(np.asarray(r, dtype=float), np.asarray(y, dtype=float))
        return np.asarray(np.logaddexp(0.0, -y_arr * r_arr))

    def derivative(self, r: Any, y: Any) -> np.ndarray:
        r_arr, y_arr = np.broadcast_arrays(np.asarray(r, dtype=float), np.asarray(y, dtype=float))
        # -y sigmoid(-y r) = -y (1 - tanh(y r / 2)) / 2
        return np.asarray(-y_arr * 0.5 * (1.0 - np.tanh(0.5 * y_arr * r_arr)))

    def second_derivative(self, r: Any, y: Any) -> np.ndarray:
        r_arr, y_arr = np.broadcast_arrays(np.asarray(r, dtype=float), np.asarray(y, dtype=float))
        # y^2 sigma(yr) sigma(-yr) = y^2 (1 - tanh^2(y r / 2)) / 4
        return np.asarray(y_arr**2 * 0.25 * (1.0 - np.tanh(0.5 * y_arr * r_arr) ** 2))


@dataclass(frozen=True, slots=True)
class CustomLoss(Loss):
    """A loss given as a sympy expression ``expr`` in the preactivation ``r`` and label ``y``.

    Parameters
    ----------
    expr : sympy.Expr
        ``l(r; y)``; may contain only the symbols ``r`` and ``y`` (substitute numbers first).
    r, y : sympy.Symbol
        The preactivation and label symbols.

    >>> import sympy as sp
    >>> r, y = sp.symbols("r y")
    >>> huber_ish = CustomLoss(sp.sqrt(1 + (r - y) ** 2) - 1, r, y)
    >>> huber_ish.first
    (r - y)/sqrt((r - y)**2 + 1)
    >>> huber_ish.is_gaussian_linear
    False
    >>> CustomLoss(3 * (r - y) ** 2 / 2, r, y).square_scale
    3.0
    >>> CustomLoss(r * y * sp.Symbol("a"), r, y)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: CustomLoss expr=a*r*y has free symbols [a] besides ...
    """

    expr: sp.Expr
    r: sp.Symbol
    y: sp.Symbol

    def __post_init__(self) -> None:
        for name in ("r", "y"):
            if not isinstance(getattr(self, name), sp.Symbol):
                raise InvalidArgument(f"CustomLoss {name}={getattr(self, name)!r} must be a sympy Symbol")
        if self.r == self.y:
            raise InvalidArgument(f"CustomLoss r={self.r} and y={self.y} must be different symbols")
        expr = sp.sympify(self.expr)
        if not isinstance(expr, sp.Expr):
            raise InvalidArgument(f"CustomLoss expr={self.expr!r} must be a sympy expression in r and y")
        extra = sorted(expr.free_symbols - {self.r, self.y}, key=str)
        if extra:
            raise InvalidArgument(
                f"CustomLoss expr={expr} has free symbols {extra} besides r={self.r} and y={self.y}; "
                "substitute numbers for them"
            )
        if self.r not in expr.free_symbols:
            raise InvalidArgument(f"CustomLoss expr={expr} does not depend on r={self.r}")
        object.__setattr__(self, "expr", expr)


# --------------------------------------------------------------------------- teachers


@dataclass(frozen=True, slots=True)
class LinearTeacher:
    """Regression labels ``y = w* + eps`` with ``eps ~ N(0, noise_var)``.

    >>> LinearTeacher(noise_var=0.25).labels(np.zeros(3), np.random.default_rng(0)).shape
    (3,)
    >>> LinearTeacher(noise_var=-1)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: noise_var=-1 must be >= 0.0
    """

    noise_var: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_var", check_real(self.noise_var, "noise_var", low=0.0))

    @property
    def is_linear(self) -> bool:
        """Labels are a linear Gaussian function of ``(w*, eps)``."""
        return True

    def labels(self, wstar: Any, rng: np.random.Generator) -> np.ndarray:
        """Draw labels for teacher fields ``wstar`` (any shape)."""
        w = np.asarray(wstar, dtype=float)
        return w + math.sqrt(self.noise_var) * rng.standard_normal(w.shape)


@dataclass(frozen=True, slots=True)
class SignTeacher:
    """Classification labels ``y = sign(w* + noise * xi)``, then flipped with probability ``flip``.

    ``xi ~ N(0, 1)``; ``noise`` is the Gaussian label-noise standard deviation (DMFT.md 5.2
    uses 0.3), ``flip`` an independent label-flip probability in ``[0, 1/2]``.

    >>> SignTeacher(noise=0.0).labels(np.array([-2.0, 3.0]), np.random.default_rng(0))
    array([-1.,  1.])
    >>> SignTeacher(flip=0.7)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: flip=0.7 must be <= 0.5
    """

    noise: float = 0.0
    flip: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise", check_real(self.noise, "noise", low=0.0))
        object.__setattr__(self, "flip", check_real(self.flip, "flip", low=0.0, high=0.5))

    @property
    def is_linear(self) -> bool:
        return False

    def labels(self, wstar: Any, rng: np.random.Generator) -> np.ndarray:
        w = np.asarray(wstar, dtype=float)
        y = np.where(w + self.noise * rng.standard_normal(w.shape) >= 0.0, 1.0, -1.0)
        if self.flip > 0.0:
            y = np.where(rng.random(w.shape) < self.flip, -y, y)
        return y


@dataclass(frozen=True, slots=True)
class LogisticTeacher:
    """Classification labels ``y = +1`` with probability ``sigmoid(w* / temperature)``, else ``-1``.

    >>> LogisticTeacher(temperature=0.0)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: temperature=0.0 must be > 0.0
    """

    temperature: float = 1.0

    def __post_init__(self) -> None:
        temperature = check_real(self.temperature, "temperature", low=0.0, strict=True)
        object.__setattr__(self, "temperature", temperature)

    @property
    def is_linear(self) -> bool:
        return False

    def labels(self, wstar: Any, rng: np.random.Generator) -> np.ndarray:
        w = np.asarray(wstar, dtype=float)
        p = 0.5 * (1.0 + np.tanh(0.5 * w / self.temperature))
        return np.where(rng.random(w.shape) < p, 1.0, -1.0)


Teacher = LinearTeacher | SignTeacher | LogisticTeacher


@dataclass(frozen=True, slots=True)
class SampleSide:
    """The single-sample process: a per-sample :class:`Loss` and a teacher.

    >>> SampleSide(Square(), LinearTeacher(0.1)).is_gaussian_linear
    True
    >>> SampleSide(Square(), SignTeacher()).is_gaussian_linear
    False
    >>> SampleSide("square", LinearTeacher())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: loss='square' must be a Loss (Square(), Logistic() or ...
    """

    loss: Loss
    teacher: Teacher

    def __post_init__(self) -> None:
        if not isinstance(self.loss, Loss):
            raise InvalidArgument(
                f"loss={self.loss!r} must be a Loss (Square(), Logistic() or CustomLoss(expr, r, y))"
            )
        if not isinstance(self.teacher, (LinearTeacher, SignTeacher, LogisticTeacher)):
            raise InvalidArgument(
                f"teacher={self.teacher!r} must be LinearTeacher, SignTeacher or LogisticTeacher"
            )

    @property
    def is_gaussian_linear(self) -> bool:
        """Loss with affine ``l'`` and linear-Gaussian labels: the sample side is Gaussian."""
        return self.loss.is_gaussian_linear and self.teacher.is_linear


# --------------------------------------------------------------------------- weight side


@dataclass(frozen=True, slots=True)
class Ridge:
    """Ridge weights, ``Omega(theta) = lam theta^2 / 2``, plain (GD) steps.

    >>> Ridge(0.1).is_linear
    True
    >>> Ridge(lam=-0.5)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: lam=-0.5 must be >= 0.0
    """

    lam: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "lam", check_real(self.lam, "lam", low=0.0))

    @property
    def is_linear(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class HeavyBall:
    """Heavy-ball momentum on ridge weights (DMFT.md 3.1):
    ``theta_{k+1} = theta_k - dt grad_k + beta (theta_k - theta_{k-1})``, ``theta_{-1} = theta_0``.

    >>> HeavyBall(beta=0.5, lam=0.1).is_linear
    True
    >>> HeavyBall(beta=1.0)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: beta=1.0 must be < 1.0
    """

    beta: float
    lam: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", check_real(self.beta, "beta", low=0.0, high=1.0, high_strict=True))
        object.__setattr__(self, "lam", check_real(self.lam, "lam", low=0.0))

    @property
    def is_linear(self) -> bool:
        return True


WeightSide = Ridge | HeavyBall


# --------------------------------------------------------------------------- noise


@dataclass(frozen=True, slots=True)
class GD:
    """Full-batch gradient descent: multipliers ``s_k = 1``.

    >>> GD().multipliers((2, 3), 0.1, np.random.default_rng(0))
    array([[1., 1., 1.],
           [1., 1., 1.]])
    """

    @property
    def tau(self) -> float:
        return 0.0

    def variance(self, dt: float) -> float:
        """``Var s_k`` at step ``dt``."""
        return 0.0

    def multipliers(self, shape: Any, dt: float, rng: np.random.Generator) -> np.ndarray:
        """Draw the per-sample, per-step multipliers ``s_k``."""
        return np.ones(shape)


@dataclass(frozen=True, slots=True)
class SGF:
    """Stochastic gradient flow at temperature ``tau``: ``s_k = 1 + sqrt(tau / dt) xi_k``.

    ``ito_cross_term=False`` builds the *wrong* DMFT that drops the Ito cross-term of the
    weight-side noise covariance (DMFT.md 2.1); it exists so tests can show it is rejected.

    >>> SGF(tau=0.5).variance(0.1)
    5.0
    >>> SGF(tau=-0.5)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: tau=-0.5 must be >= 0.0
    """

    tau: float
    ito_cross_term: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "tau", check_real(self.tau, "tau", low=0.0))
        if not isinstance(self.ito_cross_term, bool):
            raise InvalidArgument(f"ito_cross_term={self.ito_cross_term!r} must be True or False")

    def variance(self, dt: float) -> float:
        return self.tau / dt

    def multipliers(self, shape: Any, dt: float, rng: np.random.Generator) -> np.ndarray:
        return 1.0 + math.sqrt(self.tau / dt) * rng.standard_normal(shape)


@dataclass(frozen=True, slots=True)
class BernoulliVisits:
    """Batch-1 SGD visits: ``s_k = Bernoulli(p) / p`` with ``p = dt / (tau + dt)`` (mean 1, var ``tau/dt``).

    >>> BernoulliVisits(tau=2.0).variance(0.5)
    4.0
    """

    tau: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "tau", check_real(self.tau, "tau", low=0.0))

    def probability(self, dt: float) -> float:
        """Visit probability per step, ``dt / (tau + dt)``."""
        return dt / (self.tau + dt)

    def variance(self, dt: float) -> float:
        return self.tau / dt

    def multipliers(self, shape: Any, dt: float, rng: np.random.Generator) -> np.ndarray:
        p = self.probability(dt)
        return (rng.random(shape) < p) / p


Noise = GD | SGF | BernoulliVisits


# --------------------------------------------------------------------------- init


@dataclass(frozen=True, slots=True)
class ZeroInit:
    """``theta(0) = 0``."""

    @property
    def variance(self) -> float:
        return 0.0


@dataclass(frozen=True, slots=True)
class GaussianInit:
    """``theta_i(0) ~ N(0, variance)`` independent of the teacher.

    >>> GaussianInit(variance=-1.0)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: variance=-1.0 must be >= 0.0
    """

    variance: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "variance", check_real(self.variance, "variance", low=0.0))


Init = ZeroInit | GaussianInit


# --------------------------------------------------------------------------- system


@dataclass(frozen=True, slots=True)
class DMFTSystem:
    """A DMFT system in the convention of DMFT.md 1 (see the module docstring).

    Parameters
    ----------
    delta : float
        Sample ratio ``n / d > 0``.
    grid : Grid
        Discrete time grid of the algorithm.
    sample_side : SampleSide
        Loss and teacher.
    weight_side : Ridge or HeavyBall
        Regulariser / optimiser on the weight coordinate (default ``Ridge(0)``).
    noise : GD, SGF or BernoulliVisits
        Per-sample gradient multipliers (default ``GD()``).
    teacher_norm : float
        ``rho = |theta*|^2 / d > 0``.
    init : ZeroInit or GaussianInit
        Law of ``theta(0)`` (default ``ZeroInit()``).

    >>> DMFTSystem(delta=0.0, grid=Grid(0.1, 10), sample_side=SampleSide(Square(), LinearTeacher()))
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: delta=0.0 must be > 0.0
    """

    delta: float
    grid: Grid
    sample_side: SampleSide
    weight_side: WeightSide = Ridge(0.0)
    noise: Noise = GD()
    teacher_norm: float = 1.0
    init: Init = ZeroInit()

    def __post_init__(self) -> None:
        object.__setattr__(self, "delta", check_real(self.delta, "delta", low=0.0, strict=True))
        rho = check_real(self.teacher_norm, "teacher_norm", low=0.0, strict=True)
        object.__setattr__(self, "teacher_norm", rho)
        checks = (
            ("grid", Grid, "Grid(dt, steps)"),
            ("sample_side", SampleSide, "SampleSide(loss, teacher)"),
            ("weight_side", (Ridge, HeavyBall), "Ridge(lam) or HeavyBall(beta, lam)"),
            ("noise", (GD, SGF, BernoulliVisits), "GD(), SGF(tau) or BernoulliVisits(tau)"),
            ("init", (ZeroInit, GaussianInit), "ZeroInit() or GaussianInit(variance)"),
        )
        for name, kind, hint in checks:
            if not isinstance(getattr(self, name), kind):
                raise InvalidArgument(f"{name}={getattr(self, name)!r} must be {hint}")

    @property
    def tau(self) -> float:
        """SGD temperature of the noise (0 for GD)."""
        return float(self.noise.tau)

    @property
    def is_linear(self) -> bool:
        """True when both sides are Gaussian-linear, so the exact route of
        :mod:`detequiv.dmft.linear` applies (square-type loss, linear teacher, linear weights).

        For a square loss the second moments depend on ``s_k`` only through its mean and
        variance, so SGF and Bernoulli visits both stay on the exact route.
        """
        return self.sample_side.is_gaussian_linear and self.weight_side.is_linear

    @property
    def lam(self) -> float:
        """Ridge coefficient of the weight side."""
        return float(self.weight_side.lam)

    @property
    def momentum(self) -> float:
        """Heavy-ball coefficient ``beta`` of the weight side (0 for :class:`Ridge`).

        >>> side = SampleSide(Square(), LinearTeacher())
        >>> DMFTSystem(2.0, Grid(0.1, 5), side, HeavyBall(0.5)).momentum
        0.5
        >>> DMFTSystem(2.0, Grid(0.1, 5), side, Ridge(0.1)).momentum
        0.0
        """
        return float(self.weight_side.beta) if isinstance(self.weight_side, HeavyBall) else 0.0

    @property
    def init_variance(self) -> float:
        """``Var theta_i(0)`` of the initial weights (0 for :class:`ZeroInit`)."""
        return float(self.init.variance)

    @property
    def ito_cross_term(self) -> bool:
        """Whether the weight-side noise keeps its Ito cross-term: False only for
        ``SGF(tau, ito_cross_term=False)``, the deliberately wrong DMFT (DMFT.md 2.1)."""
        return not isinstance(self.noise, SGF) or self.noise.ito_cross_term
