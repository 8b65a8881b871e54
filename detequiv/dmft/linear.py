r"""Exact (sampling-free) DMFT of linear regression: square loss, ridge or heavy-ball weights.

DMFT.md 2.2-2.4.

When both sides are Gaussian-linear (:attr:`DMFTSystem.is_linear`), every DMFT expectation is
a matrix identity and the discrete-time DMFT of DMFT.md 2.2 closes on second moments. With
``l = a (r - y)^2 / 2``, residual ``e = r - y``, multipliers ``s_k = 1 + sqrt(v) xi_k``
(``v = tau / dt``; GD: ``v = 0``; Bernoulli visits have the same mean and variance, which is
all the square loss sees), ``L[k, j] = R[k, j + 1]`` (``j < k``):

* **sample side**: ``A = (I + dt a L)^{-1}``, ``Rg = a A``, ``Rs = -a A 1``,
  ``K = dt a A L`` and, with ``Sigma_z = C - m 1^T - 1 m^T + rho + sigma^2``,
  ``C_e = A Sigma_z A^T + v K diag(c) K^T`` (``c = diag C_e``, a Volterra recursion);
  the weight-side drive is
  ``Cg = a^2 [C_e + v diag(c) - v (K diag(c) + diag(c) K^T)]``; the last bracket is the Ito
  cross-term (dropped by ``SGF(tau, ito_cross_term=False)``, the wrong DMFT);
* **weight side**: ``theta_{k+1} = (1 + beta - dt lam) theta_k - beta theta_{k-1}
  - dt [u_k + delta sum_{j<=k} Rg[k, j] theta_j + delta Rs[k] theta*]``, ``u ~ N(0, delta Cg)``,
  so ``R`` (the response of ``theta_k`` to a kick of ``theta_j``), ``m = E theta theta*`` and
  ``C = E theta theta^T`` follow row by row.

Everything is causal (row ``k + 1`` needs rows ``<= k`` only), so :func:`solve` marches once
over the grid, ``O(K^3)`` flops in ``K`` matrix-vector products (``T = 800`` steps in about a
second on one core; DMFT.md 4.3 quotes 5 s for Picard iteration).

Outputs are in the convention of DMFT.md 1: ``train(t) = (1/n) sum_mu l(r_mu)`` and
``test(t) = |theta - theta*|^2 / d``. :func:`to_math_conventions` converts to MATH.md's
(:class:`~detequiv.models.gradient_flow.GradientFlow`): data ``x ~ N(0, I_D)`` with ``D = d``,
``P = n`` and the mean-gradient flow ``w' = -(1/P) X^T (X w - y)``. Writing
``theta = sqrt(d) w`` and ``x_ours = x / sqrt(d)``, our flow
``theta' = -X_ours^T (X_ours theta - y)`` is ``w' = -(1/d) X^T (X w - y)``, so
**t_MATH = delta t_DMFT**; ``beta = theta* / sqrt(d)`` (``|beta|^2 = rho``); the MATH.md test
loss ``sigma^2 + |w - beta|^2 = sigma^2 + test`` and training loss
``(1/P) |X w - y|^2 = 2 train`` (no factor 1/2).

>>> from detequiv.dmft.system import DMFTSystem, Grid, LinearTeacher, Ridge, SampleSide, Square
>>> sol = solve(DMFTSystem(delta=2.0, grid=Grid(dt=0.1, steps=20),
...                        sample_side=SampleSide(Square(), LinearTeacher(noise_var=0.25))))
>>> float(sol.train_loss[0]), float(sol.test_loss[0])   # (rho + sigma^2) / 2 and rho
(0.625, 1.0)
>>> bool(sol.train_loss[-1] < sol.train_loss[0]), sol.C.shape
(True, (21, 21))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgument
from .system import GD, DMFTSystem

__all__ = ["DMFTSolution", "solve", "to_math_conventions"]


def cosine_overlap(norm: np.ndarray, m: np.ndarray, rho: float) -> np.ndarray:
    """``m / sqrt(norm rho)``: the cosine of ``theta_k`` and ``theta*`` (0 where ``theta_k = 0``).

    >>> cosine_overlap(np.array([0.0, 4.0]), np.array([0.0, 2.0]), 1.0)
    array([0., 1.])
    """
    scale = np.asarray(norm, dtype=float) * rho
    out = np.zeros_like(np.asarray(m, dtype=float))
    ok = scale > 0
    out[ok] = np.asarray(m)[ok] / np.sqrt(scale[ok])
    return out


@dataclass(frozen=True, slots=True, eq=False)
class DMFTSolution:
    """Order parameters and loss curves of a solved DMFT system on its grid (DMFT.md 1 convention).

    Attributes
    ----------
    system : DMFTSystem
        The system that was solved.
    times : numpy.ndarray, shape (K,)
        Grid times ``k dt``.
    train_loss : numpy.ndarray, shape (K,)
        ``(1/n) sum_mu l(r_mu(t); y_mu)``.
    test_loss : numpy.ndarray, shape (K,)
        ``|theta - theta*|^2 / d = C(t, t) - 2 m(t) + rho`` (the excess risk, times two).
    C : numpy.ndarray, shape (K, K)
        Weight correlation ``C[k, l] = theta_k . theta_l / d``.
    R : numpy.ndarray, shape (K, K)
        Weight response ``R[k, j] = d theta_k / d (kick at step j)``, lower triangular, ``R[j, j] = 1``.
    m : numpy.ndarray, shape (K,)
        Teacher overlap ``theta_k . theta* / d``.
    sample_correlation : numpy.ndarray, shape (K, K)
        ``Cg[k, l] = E[s_k l'_k s_l l'_l]``, the weight-side drive (noise included).
    sample_response : numpy.ndarray, shape (K, K)
        ``Rg[k, j] = E[l''(r_k) d r_k / d h_j]``.
    """

    system: DMFTSystem
    times: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    C: np.ndarray
    R: np.ndarray
    m: np.ndarray
    sample_correlation: np.ndarray
    sample_response: np.ndarray

    @property
    def norm(self) -> np.ndarray:
        """``|theta_k|^2 / d``, the diagonal of :attr:`C`."""
        return np.diag(self.C).copy()

    @property
    def overlap(self) -> np.ndarray:
        """Cosine of the angle between ``theta_k`` and ``theta*`` (0 where ``theta_k = 0``)."""
        return cosine_overlap(self.norm, self.m, self.system.teacher_norm)


@dataclass(frozen=True, slots=True)
class LinearCoefficients:
    """The scalars of the exact linear DMFT of a Gaussian-linear system (module docstring notation).

    Build it with :meth:`of`, which also checks that the system is Gaussian-linear.

    Attributes
    ----------
    a : float
        Scale of the square loss ``l = a (r - y)^2 / 2``.
    size : int
        Number of grid points ``K = steps + 1``.
    dt, delta, rho, lam : float
        Grid step, sample ratio, teacher norm and ridge coefficient.
    noise_var : float
        Label-noise variance ``sigma^2`` of the linear teacher.
    momentum : float
        Heavy-ball coefficient ``beta`` (0 for ridge).
    v : float
        Multiplier variance ``Var s_k`` (0 for GD).
    ito : bool
        Whether the weight-side drive keeps the Ito cross-term (False only for
        ``SGF(tau, ito_cross_term=False)``).

    Examples
    --------
    >>> from detequiv.dmft.system import DMFTSystem, Grid, LinearTeacher, SampleSide, SGF, Square
    >>> system = DMFTSystem(2.0, Grid(0.1, 20), SampleSide(Square(), LinearTeacher(0.25)), noise=SGF(0.5))
    >>> coef = LinearCoefficients.of(system)
    >>> coef.a, coef.size, coef.noise_var, coef.v, coef.ito
    (1.0, 21, 0.25, 5.0, True)
    """

    a: float
    size: int
    dt: float
    delta: float
    rho: float
    lam: float
    noise_var: float
    momentum: float
    v: float
    ito: bool

    @classmethod
    def of(cls, system: DMFTSystem) -> LinearCoefficients:
        """The coefficients of ``system``.

        Raises
        ------
        InvalidArgument
            If ``system`` is not a :class:`DMFTSystem` or a side is not Gaussian-linear (the
            message names it and points to the Monte Carlo solver).
        """
        if not isinstance(system, DMFTSystem):
            raise InvalidArgument(f"system={system!r} must be a DMFTSystem")
        side = system.sample_side
        if not side.teacher.is_linear:
            raise InvalidArgument(
                f"teacher={side.teacher!r} is not linear; the exact route needs LinearTeacher "
                "(use the Monte Carlo solver for classification)"
            )
        scale = side.loss.square_scale
        if scale is None:
            raise InvalidArgument(
                f"loss={side.loss!r} is not a square loss a (r - y)^2 / 2; the exact route needs one "
                "(use the Monte Carlo solver for other losses)"
            )
        if not system.weight_side.is_linear:
            raise InvalidArgument(
                f"weight_side={system.weight_side!r} is not linear; use the Monte Carlo solver"
            )
        grid = system.grid
        return cls(
            a=scale,
            size=grid.size,
            dt=grid.dt,
            delta=system.delta,
            rho=system.teacher_norm,
            lam=system.lam,
            noise_var=side.teacher.noise_var,  # type: ignore[union-attr]
            momentum=system.momentum,
            v=0.0 if isinstance(system.noise, GD) else system.noise.variance(grid.dt),
            ito=system.ito_cross_term,
        )


@dataclass(frozen=True, slots=True)
class CorrelationChannel:
    """The disorder two copies of a run have in common, as seen by their correlation.

    The ordinary DMFT correlates a run with itself: everything is shared, one channel
    ``(Var theta(0), sigma^2, Var s_k)``. Two replicas that draw a source privately see 0 for
    it (:mod:`detequiv.dmft.replicas`).

    Attributes
    ----------
    init_variance : float
        ``E theta_a(0) theta_b(0)`` per coordinate.
    noise_var : float
        Covariance of the two copies' label noises.
    v : float
        Covariance of their multiplier fluctuations (``Var s_k`` when the SGD noise is shared).

    Examples
    --------
    >>> CorrelationChannel(init_variance=0.0, noise_var=0.25, v=5.0)
    CorrelationChannel(init_variance=0.0, noise_var=0.25, v=5.0)
    """

    init_variance: float
    noise_var: float
    v: float


class LinearMarch:
    """The causal sweep of the exact linear DMFT (module docstring), for one or more channels.

    The response ``R``, the teacher overlap ``m`` and the sample-side matrices ``A``, ``K``
    do not depend on what two copies of the run share; each :class:`CorrelationChannel`
    carries its own weight correlation ``C``, residual correlation ``Ce`` and drive ``Cg``.
    :meth:`run` fills all of them row by row: row ``k`` of the sample side
    (:meth:`sample_row`), row ``k + 1`` of ``R`` and ``m`` (:meth:`propagate`), then, per
    channel, row ``k`` of ``Ce`` and ``Cg`` (:meth:`drive_row`) and row ``k + 1`` of ``C``
    (:meth:`correlation_row`).

    Parameters
    ----------
    coef : LinearCoefficients
        The system's scalars.
    channels : sequence of CorrelationChannel
        One per correlation to march.

    Attributes
    ----------
    R, A : numpy.ndarray, shape (K, K)
        Weight response and ``A = (I + dt a L)^{-1}`` (lower triangular).
    m : numpy.ndarray, shape (K,)
        Teacher overlap.
    C, Ce, Cg : list of numpy.ndarray, shape (K, K)
        Per channel: weight correlation, residual correlation ``E e_k e_l`` and drive.

    Examples
    --------
    >>> from detequiv.dmft.system import DMFTSystem, Grid, LinearTeacher, SampleSide, Square
    >>> system = DMFTSystem(2.0, Grid(0.1, 20), SampleSide(Square(), LinearTeacher(0.25)))
    >>> march = LinearMarch(LinearCoefficients.of(system), [CorrelationChannel(0.0, 0.25, 0.0)]).run()
    >>> float(march.Ce[0][0, 0]), float(march.m[-1]) == float(solve(system).m[-1])
    (1.25, True)
    """

    def __init__(self, coef: LinearCoefficients, channels: Sequence[CorrelationChannel]) -> None:
        n = coef.size
        self.coef = coef
        self.channels = tuple(channels)
        self.R = np.zeros((n, n))
        self.A = np.zeros((n, n))
        self.L = np.zeros((n, n))  # L[k, j] = R[k, j + 1]
        self.Kk = np.zeros((n, n))  # K = dt a A L
        self.m = np.zeros(n)
        self.a1 = np.zeros(n)  # A 1
        self.am = np.zeros(n)  # A m
        self.P = np.zeros(n)  # row k of the one-step propagator theta_{k+1} = P theta + ...
        self.C = [np.zeros((n, n)) for _ in self.channels]
        self.Ce = [np.zeros((n, n)) for _ in self.channels]
        self.Cg = [np.zeros((n, n)) for _ in self.channels]
        self.c = [np.zeros(n) for _ in self.channels]  # diagonals of the Ce
        self.R[0, 0] = 1.0
        for C, channel in zip(self.C, self.channels, strict=True):
            C[0, 0] = channel.init_variance

    def sample_row(self, k: int) -> float:
        """Row ``k`` of ``L``, ``A``, ``K``, ``A 1`` and ``A m``; returns ``Rs[k] = -a (A 1)_k``."""
        dt, a = self.coef.dt, self.coef.a
        L, A, m, a1 = self.L, self.A, self.m, self.a1
        kk = k + 1
        L[k, :k] = self.R[k, 1:kk]
        A[k, :kk] = -dt * a * (L[k, :k] @ A[:k, :kk])
        A[k, k] = 1.0
        self.Kk[k, :k] = dt * a * (A[k, :kk] @ L[:kk, :k])
        a1[k] = A[k, :kk].sum()
        self.am[k] = A[k, :kk] @ m[:kk]
        return -a * a1[k]

    def propagate(self, k: int, rs: float) -> None:
        """Row ``k + 1`` of ``R`` and ``m`` through the one-step propagator ``P``.

        ``theta_{k+1} = P[:k+1] . theta[:k+1] - dt u_k - dt delta rs theta*`` with
        ``P = -dt delta a A[k] + (1 - dt lam + beta) e_k - beta e_{k-1}``.
        """
        cf = self.coef
        dt, delta, beta = cf.dt, cf.delta, cf.momentum
        P, m, R = self.P, self.m, self.R
        kk = k + 1
        P[:kk] = -dt * delta * cf.a * self.A[k, :kk]
        P[k] += 1.0 - dt * cf.lam
        if k >= 1:  # theta_{-1} = theta_0: no momentum on the first step
            P[k] += beta
            P[k - 1] -= beta
        p = P[:kk]
        m[kk] = p @ m[:kk] - dt * delta * rs * cf.rho
        R[kk, :kk] = p @ R[:kk, :kk]
        R[kk, kk] = 1.0

    def drive_row(self, k: int, i: int) -> np.ndarray:
        """Row ``k`` of ``Ce`` and of the drive ``Cg`` of channel ``i``; returns ``Cg[k, :k+1]``.

        ``Ce = A Sigma A^T + v K diag(c) K^T`` with ``Sigma = C - m 1^T - 1 m^T + rho + sigma^2``
        and ``Cg = a^2 [Ce + v diag(c) - v (K diag(c) + diag(c) K^T)]`` (the last bracket only
        with the Ito cross-term).
        """
        cf = self.coef
        A, Kk, a1, am = self.A, self.Kk, self.a1, self.am
        C, Ce, Cg, c = self.C[i], self.Ce[i], self.Cg[i], self.c[i]
        channel = self.channels[i]
        v = channel.v
        kk = k + 1
        row = (A[k, :kk] @ C[:kk, :kk]) @ A[:kk, :kk].T
        row += (cf.rho + channel.noise_var) * a1[k] * a1[:kk] - am[k] * a1[:kk] - a1[k] * am[:kk]
        if v:
            row += v * ((Kk[k, :k] * c[:k]) @ Kk[:kk, :k].T)
        Ce[k, :kk] = row
        Ce[:kk, k] = row
        c[k] = row[k]
        g = row.copy()
        g[k] += v * c[k]
        if v and cf.ito:
            g[:k] -= v * Kk[k, :k] * c[:k]
        g *= cf.a * cf.a
        Cg[k, :kk] = g
        Cg[:kk, k] = g
        return g

    def correlation_row(self, k: int, i: int, g: np.ndarray, rs: float) -> None:
        """Row ``k + 1`` of ``C`` of channel ``i`` from its drive row ``g = Cg[k, :k+1]``."""
        dt, delta = self.coef.dt, self.coef.delta
        C, m = self.C[i], self.m
        kk = k + 1
        p = self.P[:kk]
        eu = -dt * delta * (self.R[: kk + 1, 1 : kk + 1] @ g)  # E[u_k theta_l], l = 0..k+1
        new = p @ C[:kk, :kk] - dt * eu[:kk] - dt * delta * rs * m[:kk]
        C[kk, :kk] = new
        C[:kk, kk] = new
        C[kk, kk] = p @ new - dt * eu[kk] - dt * delta * rs * m[kk]

    def run(self) -> LinearMarch:
        """March over the whole grid (row ``k + 1`` needs rows ``<= k`` only); returns ``self``."""
        n = self.coef.size
        channels = range(len(self.channels))
        for k in range(n):
            rs = self.sample_row(k)
            last = k + 1 == n
            if not last:
                self.propagate(k, rs)
            for i in channels:
                g = self.drive_row(k, i)
                if not last:
                    self.correlation_row(k, i, g, rs)
        return self


def solve(system: DMFTSystem) -> DMFTSolution:
    """Solve a Gaussian-linear DMFT system exactly by one causal sweep over the grid.

    Parameters
    ----------
    system : DMFTSystem
        Square-type loss, :class:`~detequiv.dmft.system.LinearTeacher`, ridge or heavy-ball
        weights, any noise (GD, SGF, Bernoulli visits).

    Returns
    -------
    DMFTSolution

    Raises
    ------
    InvalidArgument
        If a side is not Gaussian-linear (the message names it).

    Examples
    --------
    >>> from detequiv.dmft.system import (DMFTSystem, Grid, LinearTeacher, Logistic, SampleSide,
    ...                                   SGF, Square)
    >>> grid = Grid(dt=0.05, steps=40)
    >>> gd = solve(DMFTSystem(2.0, grid, SampleSide(Square(), LinearTeacher(0.25))))
    >>> sgf = solve(DMFTSystem(2.0, grid, SampleSide(Square(), LinearTeacher(0.25)), noise=SGF(0.5)))
    >>> bool(np.all(sgf.test_loss[1:] > gd.test_loss[1:]))     # SGD noise costs test loss
    True
    >>> solve(DMFTSystem(2.0, grid, SampleSide(Logistic(), LinearTeacher())))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: loss=Logistic() is not a square loss a (r - y)^2 / 2; ...
    """
    coef = LinearCoefficients.of(system)
    channel = CorrelationChannel(system.init.variance, coef.noise_var, coef.v)
    march = LinearMarch(coef, [channel]).run()
    C, m, a = march.C[0], march.m, coef.a
    return DMFTSolution(
        system=system,
        times=system.grid.times,
        train_loss=0.5 * a * march.c[0],
        test_loss=np.diag(C) - 2.0 * m + coef.rho,
        C=C,
        R=march.R,
        m=m,
        sample_correlation=march.Cg[0],
        sample_response=a * march.A,
    )


def to_math_conventions(solution: DMFTSolution) -> dict[str, Any]:
    """The loss curves of a linear-regression solution in MATH.md's conventions.

    ``times = delta t`` (MATH.md's gradient flow uses the mean gradient over ``P = n``
    samples of ``x ~ N(0, I_D)``), ``test_loss = sigma^2 + |theta - theta*|^2 / d`` and
    ``train_loss = (1/n) |X theta - y|^2`` (no factor 1/2); see the module docstring.

    >>> from detequiv.dmft.system import DMFTSystem, Grid, LinearTeacher, SampleSide, Square
    >>> sol = solve(DMFTSystem(4.0, Grid(0.1, 2), SampleSide(Square(), LinearTeacher(0.5))))
    >>> out = to_math_conventions(sol)
    >>> out["times"].tolist(), float(out["test_loss"][0]), float(out["train_loss"][0])
    ([0.0, 0.4, 0.8], 1.5, 1.5)
    """
    system = solution.system
    teacher = system.sample_side.teacher
    if not hasattr(teacher, "noise_var"):
        raise InvalidArgument(
            f"teacher={teacher!r} is not a regression teacher; no MATH.md loss to convert to"
        )
    scale = system.sample_side.loss.square_scale
    if scale != 1.0:
        raise InvalidArgument(
            f"loss={system.sample_side.loss!r} is not (r - y)^2 / 2; MATH.md curves need it"
        )
    return {
        "times": system.delta * solution.times,
        "test_loss": solution.test_loss + teacher.noise_var,
        "train_loss": 2.0 * solution.train_loss,
    }
