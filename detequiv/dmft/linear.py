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

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgument
from .system import GD, SGF, DMFTSystem, HeavyBall

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


def _check(system: DMFTSystem) -> float:
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
        raise InvalidArgument(f"weight_side={system.weight_side!r} is not linear; use the Monte Carlo solver")
    return scale


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
    a = _check(system)
    grid = system.grid
    n, dt = grid.size, grid.dt
    delta, rho = system.delta, system.teacher_norm
    sigma2 = system.sample_side.teacher.noise_var  # type: ignore[union-attr]
    lam = system.lam
    beta = system.weight_side.beta if isinstance(system.weight_side, HeavyBall) else 0.0
    v = 0.0 if isinstance(system.noise, GD) else system.noise.variance(dt)
    ito = 1.0 if not isinstance(system.noise, SGF) or system.noise.ito_cross_term else 0.0

    R = np.zeros((n, n))
    A = np.zeros((n, n))
    L = np.zeros((n, n))
    Kk = np.zeros((n, n))
    C = np.zeros((n, n))
    Ce = np.zeros((n, n))
    Cg = np.zeros((n, n))
    m = np.zeros(n)
    c = np.zeros(n)
    a1 = np.zeros(n)  # A 1
    am = np.zeros(n)  # A m
    P = np.zeros(n)  # row k of the one-step propagator theta_{k+1} = P theta + ...
    R[0, 0] = 1.0
    C[0, 0] = system.init.variance
    for k in range(n):
        kk = k + 1
        # sample side, row k
        L[k, :k] = R[k, 1:kk]
        A[k, :kk] = -dt * a * (L[k, :k] @ A[:k, :kk])
        A[k, k] = 1.0
        Kk[k, :k] = dt * a * (A[k, :kk] @ L[:kk, :k])
        a1[k] = A[k, :kk].sum()
        am[k] = A[k, :kk] @ m[:kk]
        rs = -a * a1[k]
        # (A Sigma_z A^T)[k, :kk] with Sigma_z = C - m 1^T - 1 m^T + rho + sigma^2
        row = (A[k, :kk] @ C[:kk, :kk]) @ A[:kk, :kk].T
        row += (rho + sigma2) * a1[k] * a1[:kk] - am[k] * a1[:kk] - a1[k] * am[:kk]
        if v:
            row += v * ((Kk[k, :k] * c[:k]) @ Kk[:kk, :k].T)
        Ce[k, :kk] = row
        Ce[:kk, k] = row
        c[k] = row[k]
        g = row.copy()
        g[k] += v * c[k]
        if v and ito:
            g[:k] -= v * Kk[k, :k] * c[:k]
        g *= a * a
        Cg[k, :kk] = g
        Cg[:kk, k] = g
        if kk == n:
            break
        # weight side: theta_{k+1} = P[:kk] . theta[:kk] - dt u_k - dt delta rs theta*
        P[:kk] = -dt * delta * a * A[k, :kk]
        P[k] += 1.0 - dt * lam
        if k >= 1:  # theta_{-1} = theta_0: no momentum on the first step
            P[k] += beta
            P[k - 1] -= beta
        p = P[:kk]
        m[kk] = p @ m[:kk] - dt * delta * rs * rho
        R[kk, :kk] = p @ R[:kk, :kk]
        R[kk, kk] = 1.0
        eu = -dt * delta * (R[: kk + 1, 1 : kk + 1] @ g)  # E[u_k theta_l], l = 0..k+1
        new = p @ C[:kk, :kk] - dt * eu[:kk] - dt * delta * rs * m[:kk]
        C[kk, :kk] = new
        C[:kk, kk] = new
        C[kk, kk] = p @ new - dt * eu[kk] - dt * delta * rs * m[kk]
    diag = np.diag(C)
    return DMFTSolution(
        system=system,
        times=grid.times,
        train_loss=0.5 * a * c,
        test_loss=diag - 2.0 * m + rho,
        C=C,
        R=R,
        m=m,
        sample_correlation=Cg,
        sample_response=a * A,
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
