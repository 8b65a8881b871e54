r"""Sampled (Monte Carlo) DMFT route for GLMs with a linear weight side (DMFT.md 2.2, 4.2).

The sample side of a :class:`~detequiv.dmft.system.DMFTSystem` is represented by ``N``
sample paths of the discrete-time single-sample process

.. code-block:: text

    r_k = w_k - dt sum_{j<k} R[k, j+1] s_j l'(r_j; y),     (w*, w_0, w_1, ...) Gaussian,

with the tangent ``J[k, j] = d r_k / d h_j`` propagated along the first ``N_J`` paths for the
response kernel ``Rg[k, j] = E l''(r_k) J[k, j]``; the memory kernel is estimated directly
from the noisy paths, ``Cg[k, l] = E[s_k l'_k s_l l'_l]`` (which contains the white-noise and
Ito cross-terms of the SGF, DMFT.md 2.1), and the teacher response by Stein's lemma,
``Rs[k] = (E[l'_k w*] - sum_j Rg[k, j] m_j) / rho``.  The weight side (ridge, heavy ball) is
linear and solved in closed form row by row: ``R`` (response), ``m`` (teacher overlap) and
``C = R B R^T`` (correlation).

Two solvers share the same step functions:

* ``method="march"`` (default): one causal sweep.  Row ``k + 1`` of ``(C, m, R)`` depends only
  on the sample paths up to step ``k``, so sampling ``w_k`` by sequential conditioning (a
  growing Cholesky factor whose vanishing pivots are dropped) solves the system exactly in one
  pass.
* ``method="picard"``: damped fixed-point iteration over the whole horizon with common random
  numbers; the fallback for formulations that are not causal.

>>> from detequiv.dmft.system import DMFTSystem, Grid, SampleSide, Logistic, SignTeacher, Ridge
>>> system = DMFTSystem(delta=2.0, grid=Grid(dt=0.5, steps=4),
...                     sample_side=SampleSide(Logistic(), SignTeacher(noise=0.3)),
...                     weight_side=Ridge(lam=0.05), teacher_norm=4.0)
>>> sol = solve_montecarlo(system, paths=2000, seed=0)
>>> sol.train_loss.shape, round(float(sol.train_loss[0]), 4)
((5,), 0.6931)
>>> bool(sol.train_loss[-1] < sol.train_loss[1] < sol.train_loss[0])
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular

from ..errors import InvalidArgument
from .linear import cosine_overlap
from .progress import ProgressBar
from .system import DMFTSystem, LinearTeacher, LogisticTeacher, SignTeacher, check_int

__all__ = ["MCSolution", "solve_montecarlo", "population_loss", "mc_relative_error"]

# Relative size below which a conditional variance counts as zero (its Cholesky pivot is dropped).
_PIVOT_TOL = 1e-10
# Memory budget (bytes) of the tangent array J (N_J x K x K floats).
_J_BUDGET = 256 * 2**20


def mc_relative_error(paths: int) -> float:
    """Relative Monte Carlo error ``sqrt(2 / N)`` of loss-like DMFT outputs (DMFT.md 4.2).

    >>> round(mc_relative_error(16000), 4)
    0.0112
    """
    return math.sqrt(2.0 / paths)


def default_response_paths(paths: int, size: int) -> int:
    """Default number ``N_J`` of tangent paths: ``min(N, 1000)``, lowered to keep ``J`` under 256 MiB.

    ``J`` holds ``N_J x size x size`` floats, ``size`` being the number of fields of one path
    (``K`` grid points, or ``K k`` for a ``k``-index model); at least 2 paths.

    >>> default_response_paths(16000, 101), default_response_paths(500, 101)
    (1000, 500)
    >>> default_response_paths(16000, 4001)
    2
    """
    return min(int(paths), 1000, max(2, _J_BUDGET // (8 * size * size)))


# --------------------------------------------------------------------------- Gaussian fields


def extend_cholesky(L: np.ndarray, active: list[int], cov: np.ndarray, floor: float) -> None:
    r"""Add row ``i = len(cov) - 1`` to a Cholesky factor grown by sequential conditioning.

    The fields ``x_0, x_1, ...`` are drawn one at a time as ``x_i = L[i, :i+1] . z[:i+1]``
    with independent standard normals ``z``. Given rows ``< i`` of ``L`` and the covariances
    ``cov[j] = E x_i x_j`` (``j <= i``), the new row solves ``L[a, a] row[a] = cov[a]`` on the
    ``active`` columns (the nonzero pivots so far) and the pivot is the square root of the
    conditional variance ``cov[i] - |row|^2``. A conditional variance below
    ``1e-10 max(|cov[i]|, floor)`` counts as zero: that pivot is dropped (``x_i`` is then a
    combination of the earlier fields), otherwise ``i`` joins ``active``.

    Parameters
    ----------
    L : numpy.ndarray
        The factor, filled in place (row ``i`` up to column ``i``).
    active : list of int
        Columns with a nonzero pivot; ``i`` is appended when its pivot is kept.
    cov : numpy.ndarray, shape (i + 1,)
        Covariances of ``x_i`` with ``x_0..x_i``.
    floor : float
        Scale below which ``|cov[i]|`` does not lower the zero-pivot threshold (the
        teacher's variance).

    Examples
    --------
    >>> L, active = np.zeros((3, 3)), [0]
    >>> L[0, 0] = 2.0
    >>> extend_cholesky(L, active, np.array([2.0, 1.0]), 4.0)    # x_1 = x_0 / 2: no pivot
    >>> extend_cholesky(L, active, np.array([0.0, 0.0, 1.0]), 4.0)
    >>> L, active
    (array([[2., 0., 0.],
           [1., 0., 0.],
           [0., 0., 1.]]), [0, 2])
    """
    i = cov.size - 1
    act = np.asarray(active)
    row = np.zeros(i + 1)
    if act.size:
        row[act] = solve_triangular(L[np.ix_(act, act)], cov[act], lower=True, check_finite=False)
    piv2 = cov[i] - float(row[act] @ row[act]) if act.size else cov[i]
    scale = max(abs(cov[i]), floor)
    if piv2 > _PIVOT_TOL * scale:
        row[i] = math.sqrt(piv2)
        active.append(i)
    L[i, : i + 1] = row


# --------------------------------------------------------------------------- population loss

_GH_NODES = 48
_HALF_NODES = 64


def _label_probability(teacher: Any, wstar: np.ndarray) -> np.ndarray:
    """``P(y = +1 | w*)`` for the classification teachers."""
    from scipy.special import ndtr

    if isinstance(teacher, SignTeacher):
        if teacher.noise > 0.0:
            p = ndtr(wstar / teacher.noise)
        else:
            p = (wstar > 0).astype(float) + 0.5 * (wstar == 0)
        return (1.0 - teacher.flip) * p + teacher.flip * (1.0 - p)
    if isinstance(teacher, LogisticTeacher):
        return 0.5 * (1.0 + np.tanh(0.5 * wstar / teacher.temperature))
    raise InvalidArgument(f"teacher={teacher!r} has no label probability; use SignTeacher or LogisticTeacher")


def population_loss(system: DMFTSystem, norm: Any, overlap: Any) -> np.ndarray:
    r"""Test loss as a function of ``q = |theta|^2/d`` and ``m = theta.theta*/d``.

    For a :class:`~detequiv.dmft.system.LinearTeacher` (regression) this is the excess risk
    ``q - 2 m + rho`` (DMFT.md 1).  For classification teachers it is
    ``E l(z; y)`` with ``(z, w*) ~ N(0, [[q, m], [m, rho]])`` and ``y`` drawn from the teacher
    given ``w*``, by quadrature: Gauss-Legendre on each half-line of ``w*`` (the label law may
    jump at ``w* = 0``) times Gauss-Hermite in the part of ``z`` independent of ``w*``.

    >>> from detequiv.dmft.system import DMFTSystem, Grid, SampleSide, Logistic, SignTeacher
    >>> s = DMFTSystem(2.0, Grid(0.1, 1), SampleSide(Logistic(), SignTeacher()), teacher_norm=1.0)
    >>> round(float(population_loss(s, 0.0, 0.0)), 6)   # theta = 0: log 2
    0.693147
    """
    q = np.atleast_1d(np.asarray(norm, dtype=float))
    m = np.atleast_1d(np.asarray(overlap, dtype=float))
    q, m = np.broadcast_arrays(q, m)
    rho = system.teacher_norm
    teacher = system.sample_side.teacher
    if isinstance(teacher, LinearTeacher):
        out = q - 2.0 * m + rho
        return out if np.ndim(norm) or np.ndim(overlap) else out.reshape(())
    loss = system.sample_side.loss
    sd = math.sqrt(rho)
    xg, wg = np.polynomial.legendre.leggauss(_HALF_NODES)
    upper = 9.0 * sd
    half = 0.5 * upper * (xg + 1.0)
    ws = np.concatenate([-half[::-1], half])
    gauss = np.exp(-0.5 * ws**2 / rho) / (sd * math.sqrt(2 * math.pi))
    ww = np.concatenate([wg[::-1], wg]) * 0.5 * upper * gauss
    xh, wh = np.polynomial.hermite_e.hermegauss(_GH_NODES)
    wh = wh / math.sqrt(2 * math.pi)
    p_plus = _label_probability(teacher, ws)
    out = np.empty(q.shape)
    for idx in np.ndindex(q.shape):
        slope = m[idx] / rho
        cond = max(float(q[idx] - m[idx] ** 2 / rho), 0.0)
        z = slope * ws[:, None] + math.sqrt(cond) * xh[None, :]
        lp = loss.value(z, 1.0)
        lm = loss.value(z, -1.0)
        inner = (p_plus[:, None] * lp + (1.0 - p_plus[:, None]) * lm) @ wh
        out[idx] = float(ww @ inner)
    return out if np.ndim(norm) or np.ndim(overlap) else out.reshape(())


# --------------------------------------------------------------------------- solution


@dataclass(frozen=True, eq=False)
class MCSolution:
    r"""Solution of a DMFT system by the sampled route.

    Attributes
    ----------
    system : DMFTSystem
        The solved system.
    times : ndarray, shape (K,)
        Grid times ``k dt``.
    train_loss, test_loss : ndarray, shape (K,)
        ``E l(r_k; y)`` over the sample paths, and the population loss of ``(C[k, k], m[k])``
        (:func:`population_loss`: excess risk for regression).
    C, R : ndarray, shape (K, K)
        Weight correlation ``E theta_k theta_l`` and response ``d theta_k / d theta_j``
        (lower triangular, unit diagonal).
    m : ndarray, shape (K,)
        Teacher overlap ``E theta_k theta*``.
    Cg, Rg, Rs : ndarray
        Sample-side memory kernel, response kernel and teacher response.
    method : str
        ``"march"`` or ``"picard"``.
    paths, response_paths, seed : int
        Monte Carlo sizes and seed.
    iterations : int
        Sweeps used (1 for the marcher).
    residual : float
        Last Picard change (0 for the marcher).
    converged : bool
        True for the marcher; for Picard, whether the change fell below ``tol`` within
        ``max_iter`` iterations (if not, raise ``max_iter`` or lower ``mixing``).
    """

    system: DMFTSystem
    times: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    C: np.ndarray
    R: np.ndarray
    m: np.ndarray
    Cg: np.ndarray
    Rg: np.ndarray
    Rs: np.ndarray
    beta: np.ndarray = field(repr=False)
    method: str = "march"
    paths: int = 0
    response_paths: int = 0
    seed: int = 0
    iterations: int = 1
    residual: float = 0.0
    converged: bool = True

    @property
    def norm(self) -> np.ndarray:
        """``|theta_k|^2 / d = C[k, k]``."""
        return np.diag(self.C).copy()

    @property
    def overlap(self) -> np.ndarray:
        """Cosine ``m[k] / sqrt(C[k, k] rho)`` of ``theta_k`` and ``theta*`` (0 where ``theta_k = 0``)."""
        return cosine_overlap(self.norm, self.m, self.system.teacher_norm)

    @property
    def sample_correlation(self) -> np.ndarray:
        """``Cg[k, l] = E[s_k l'_k s_l l'_l]`` (same name as in :mod:`detequiv.dmft.linear`)."""
        return self.Cg

    @property
    def sample_response(self) -> np.ndarray:
        """``Rg[k, j] = E[l''(r_k) d r_k / d h_j]`` (same name as in :mod:`detequiv.dmft.linear`)."""
        return self.Rg

    def index(self, t: float) -> int:
        """Grid index of time ``t`` (must lie on the grid up to 1e-9 relative)."""
        dt = self.system.grid.dt
        k = int(round(float(t) / dt))
        if not 0 <= k < self.times.size or abs(k * dt - float(t)) > 1e-9 * max(1.0, abs(float(t))):
            raise InvalidArgument(
                f"t={t!r} is not a grid time; use a multiple of dt={dt} between 0 and {self.times[-1]}"
            )
        return k

    def weight_law(self, t: float) -> tuple[float, float, float]:
        r"""Decomposition ``theta(t) = a theta(0) + b theta* + N(0, v)`` of the weight at time ``t``.

        Returns ``(a, b, v)``: the weight side is linear, so ``theta(t)`` is the sum of the
        propagated initial weight, the teacher coordinate times ``b = m(t) / rho`` and an
        independent centred Gaussian of variance ``v = C(t,t) - a^2 Var theta(0) - b^2 rho``.
        """
        k = self.index(t)
        a = float(self.R[k, 0])
        b = float(self.beta[k])
        var0 = self.system.init_variance
        v = float(self.C[k, k] - a * a * var0 - b * b * self.system.teacher_norm)
        return a, b, max(v, 0.0)

    def weight_samples(
        self, t: float, size: int = 10000, *, seed: int = 0, teacher: Any = None
    ) -> np.ndarray:
        r"""Samples of the single-site weight ``theta(t)`` (its law across coordinates).

        Parameters
        ----------
        t : float
            A grid time.
        size : int
            Number of samples.
        seed : int
            Seed of the draw.
        teacher : callable, optional
            ``teacher(size, rng)`` drawing teacher coordinates with second moment ``rho``;
            default ``N(0, rho)``.  The DMFT depends on the teacher only through ``rho``; the
            weight law does depend on the teacher's coordinate law.
        """
        check_int(size, "size")
        a, b, v = self.weight_law(t)
        rng = np.random.default_rng(seed)
        rho = self.system.teacher_norm
        if teacher is None:
            tstar = math.sqrt(rho) * rng.standard_normal(size)
        else:
            tstar = np.asarray(teacher(size, rng), dtype=float)
        theta0 = math.sqrt(self.system.init_variance) * rng.standard_normal(size)
        return a * theta0 + b * tstar + math.sqrt(v) * rng.standard_normal(size)


# --------------------------------------------------------------------------- the solver state


class _State:
    """Arrays shared by the marcher and the Picard sweep."""

    def __init__(
        self, system: DMFTSystem, paths: int, response_paths: int, seed: int, ito: bool, whiten: bool = True
    ) -> None:
        grid = system.grid
        K = grid.size
        self.system, self.K, self.N, self.NJ, self.ito = system, K, paths, response_paths, ito
        self.dt, self.delta, self.rho = grid.dt, system.delta, system.teacher_norm
        self.var0 = system.init_variance
        hb = system.momentum
        self.a, self.b = 1.0 + hb - grid.dt * system.lam, -hb
        self.loss = system.sample_side.loss
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((paths, K + 1))  # column 0 drives w*, column j+1 drives w_j
        if whiten and paths > K + 2:
            # moment matching: centred columns with identity empirical covariance (Gram-Schmidt),
            # so the sampled fields reproduce (rho, m, C) exactly; a variance reduction
            z -= z.mean(axis=0)
            q, r = np.linalg.qr(z)
            z = q * (np.sign(np.diag(r)) * math.sqrt(paths))
        self.z = z
        self.wstar = math.sqrt(self.rho) * self.z[:, 0]
        self.y = np.asarray(system.sample_side.teacher.labels(self.wstar, rng), dtype=float)
        self.s = np.asarray(system.noise.multipliers((paths, K), grid.dt, rng), dtype=float)
        # sample side
        self.G = np.zeros((paths, K))  # s_k l'_k
        self.LP = np.zeros((paths, K)) if not ito else None  # l'_k (only for the no-Ito variant)
        self.LPP = np.zeros((response_paths, K))  # l''_k on the response paths
        self.J = np.zeros((response_paths, K, K))
        self.train = np.zeros(K)
        self.Rg = np.zeros((K, K))
        self.Cg = np.zeros((K, K))
        self.Rs = np.zeros(K)
        # weight side
        self.R = np.zeros((K, K))
        self.beta = np.zeros(K)  # theta_k = R[k,0] theta_0 + beta_k theta* + noise
        self.C = np.zeros((K, K))
        self.C[0, 0] = self.var0
        self.R[0, 0] = 1.0
        # Cholesky rows of (w*, w_0, ..., w_{K-1})
        self.L = np.zeros((K + 1, K + 1))
        self.L[0, 0] = math.sqrt(self.rho)
        self.active: list[int] = [0]

    # ---- Gaussian fields by sequential conditioning

    def cholesky_row(self, k: int, C: np.ndarray, m: np.ndarray) -> None:
        """Row ``k + 1`` of the Cholesky factor of ``Cov(w*, w_0..w_k)``, vanishing pivots dropped."""
        cov = np.empty(k + 2)
        cov[0] = m[k]  # E w_k w* = m_k
        cov[1:] = C[k, : k + 1]
        extend_cholesky(self.L, self.active, cov, self.rho)

    # ---- one step of the sample side

    def sample_step(self, k: int, R: np.ndarray, m: np.ndarray) -> None:
        dt, N, NJ = self.dt, self.N, self.NJ
        w = self.z[:, : k + 2] @ self.L[k + 1, : k + 2]
        if k > 0:
            r = w - dt * (self.G[:, :k] @ R[k, 1 : k + 1])
        else:
            r = w
        y = self.y
        lp = self.loss.derivative(r, y)
        lpp = self.loss.second_derivative(r, y)
        self.train[k] = float(np.mean(self.loss.value(r, y)))
        self.G[:, k] = self.s[:, k] * lp
        if self.LP is not None:
            self.LP[:, k] = lp
        self.LPP[:, k] = lpp[:NJ]
        Jk = self.J[:, k, : k + 1]
        Jk[:, k] = 1.0
        if k > 0:
            weights = R[k, 1 : k + 1] * self.s[:NJ, :k] * self.LPP[:, :k]
            Jk[:, :k] = -dt * np.einsum("pi,pij->pj", weights, self.J[:, :k, :k])
        rg = (lpp[:NJ] @ Jk) / NJ
        rg[k] = float(np.mean(lpp))
        self.Rg[k, : k + 1] = rg
        cg = (self.G[:, : k + 1].T @ self.G[:, k]) / N
        if self.LP is not None and k > 0:
            cg[:k] = (self.LP[:, :k].T @ lp) / N
        self.Cg[k, : k + 1] = cg
        self.Cg[: k + 1, k] = cg
        self.Rs[k] = (float(np.mean(lp * self.wstar)) - float(rg @ m[: k + 1])) / self.rho

    # ---- one step of the weight side (row k + 1 from kernels up to row k)

    def weight_step(self, k: int, R: np.ndarray, beta: np.ndarray, C: np.ndarray) -> None:
        dt, delta = self.dt, self.delta
        prev = k - 1 if k > 0 else 0
        rg = self.Rg[k, : k + 1]
        memory = dt * delta * (rg @ R[: k + 1, : k + 1])
        R[k + 1, : k + 1] = self.a * R[k, : k + 1] + self.b * R[prev, : k + 1] - memory
        R[k + 1, k + 1] = 1.0
        drive = dt * delta * (float(rg @ beta[: k + 1]) + self.Rs[k])
        beta[k + 1] = self.a * beta[k] + self.b * beta[prev] - drive
        Q = R[: k + 2, 1 : k + 2]  # Q[l, i] = R[l, i+1]: response of theta_l to u_i
        noise = (dt * dt * delta) * ((Q[k + 1] @ self.Cg[: k + 1, : k + 1]) @ Q.T)
        row = self.var0 * R[k + 1, 0] * R[: k + 2, 0] + self.rho * beta[k + 1] * beta[: k + 2] + noise
        C[k + 1, : k + 2] = row
        C[: k + 2, k + 1] = row

    # ---- whole sweeps

    def march(self, progress: bool) -> None:
        """One causal sweep: at each step the fields and the sample side at ``k``, then row ``k + 1``
        of the weight side (which needs the kernels up to ``k`` only)."""
        K = self.K
        bar = ProgressBar(K, "DMFT march", progress)
        for k in range(K):
            self.cholesky_row(k, self.C, self.beta * self.rho)
            self.sample_step(k, self.R, self.beta * self.rho)
            if k + 1 < K:
                self.weight_step(k, self.R, self.beta, self.C)
            bar.update()
        bar.close()

    def sample_pass(self) -> None:
        """Redraw the fields for the current ``(C, m)`` and rerun the sample side over the whole
        horizon (the kernels half of a Picard iteration)."""
        self.L[:] = 0.0
        self.L[0, 0] = math.sqrt(self.rho)
        self.active = [0]
        m = self.rho * self.beta
        for k in range(self.K):
            self.cholesky_row(k, self.C, m)
            self.sample_step(k, self.R, m)

    def solution(
        self, *, method: str, seed: int, iterations: int, residual: float, converged: bool
    ) -> MCSolution:
        """The :class:`MCSolution` of the current state (copies of its arrays)."""
        system = self.system
        m = self.rho * self.beta
        test = population_loss(system, np.diag(self.C), m)
        return MCSolution(
            system=system,
            times=system.grid.times,
            train_loss=self.train.copy(),
            test_loss=np.asarray(test, dtype=float),
            C=self.C.copy(),
            R=self.R.copy(),
            m=m,
            Cg=self.Cg.copy(),
            Rg=self.Rg.copy(),
            Rs=self.Rs.copy(),
            beta=self.beta.copy(),
            method=method,
            paths=self.N,
            response_paths=self.NJ,
            seed=seed,
            iterations=iterations,
            residual=residual,
            converged=converged,
        )


def _check_options(
    system: Any,
    paths: Any,
    response_paths: Any,
    method: Any,
    seed: Any,
    mixing: Any,
    tol: Any,
    max_iter: Any,
) -> tuple[int, int]:
    """Validate the arguments of :func:`solve_montecarlo`; returns ``(N, N_J)``."""
    if not isinstance(system, DMFTSystem):
        raise InvalidArgument(f"system={system!r} must be a DMFTSystem")
    if method not in ("march", "picard"):
        raise InvalidArgument(f"method={method!r} must be 'march' or 'picard'")
    if isinstance(paths, bool) or not isinstance(paths, (int, np.integer)) or paths < 2:
        raise InvalidArgument(f"paths={paths!r} must be an integer >= 2 (e.g. 16000 for ~1% accuracy)")
    if response_paths is None:
        response_paths = default_response_paths(int(paths), system.grid.size)
    if (
        isinstance(response_paths, bool)
        or not isinstance(response_paths, (int, np.integer))
        or not 1 <= response_paths <= paths
    ):
        raise InvalidArgument(f"response_paths={response_paths!r} must be an integer in [1, paths={paths}]")
    check_int(seed, "seed", None)
    if not 0.0 < float(mixing) <= 1.0:
        raise InvalidArgument(f"mixing={mixing!r} must be in (0, 1]; 0.7 is a robust choice")
    if not float(tol) > 0.0:
        raise InvalidArgument(f"tol={tol!r} must be > 0 (e.g. 1e-6)")
    check_int(max_iter, "max_iter")
    return int(paths), int(response_paths)


def solve_montecarlo(
    system: DMFTSystem,
    *,
    paths: int = 16000,
    response_paths: int | None = None,
    method: str = "march",
    seed: int = 0,
    mixing: float = 0.7,
    tol: float = 1e-6,
    max_iter: int = 200,
    progress: bool = False,
) -> MCSolution:
    r"""Solve a DMFT system by the sampled route (Monte Carlo over sample-side paths).

    Parameters
    ----------
    system : DMFTSystem
        Any loss and teacher; the weight side must be :class:`Ridge` or :class:`HeavyBall`.
    paths : int
        Number ``N`` of sample-side paths; loss-like outputs carry a relative error of about
        ``sqrt(2/N)`` (:func:`mc_relative_error`).
    response_paths : int, optional
        Paths ``N_J <= N`` along which the tangent ``J`` is propagated (cost ``N_J K^3``,
        memory ``8 N_J K^2`` bytes).  Default ``min(N, 1000)``, lowered to keep ``J`` under 256 MiB.
    method : {"march", "picard"}
        One causal sweep (default) or damped Picard iteration with common random numbers.
    seed : int
        Seed of every random draw (Gaussian fields, labels, multipliers).
    mixing : float
        Picard only: weight of the new iterate, ``x <- (1 - mixing) x + mixing F(x)``.
    tol, max_iter : float, int
        Picard only: stop when the largest change of ``(C, m, R)`` is below ``tol``.
    progress : bool
        Show a tqdm bar (if tqdm is installed) over the grid steps or iterations.

    Returns
    -------
    MCSolution

    Notes
    -----
    With ``SGF(tau, ito_cross_term=False)`` the off-diagonal memory kernel is replaced by
    ``E[l'_k l'_l]``: the weight-side noise keeps its white part but loses the Ito cross-term
    (a deliberately wrong DMFT, DMFT.md 2.1, kept so tests can show simulation rejects it).
    """
    paths, response_paths = _check_options(system, paths, response_paths, method, seed, mixing, tol, max_iter)
    st = _State(system, paths, response_paths, int(seed), system.ito_cross_term)
    if method == "march":
        st.march(progress)
        iterations, residual = 1, 0.0
    else:
        iterations, residual = _picard(st, float(mixing), float(tol), int(max_iter), progress)
    return st.solution(
        method=method,
        seed=int(seed),
        iterations=iterations,
        residual=residual,
        converged=method == "march" or residual < float(tol),
    )


def _picard(st: _State, mixing: float, tol: float, max_iter: int, progress: bool) -> tuple[int, float]:
    """Damped Picard iteration over the whole horizon with common random numbers."""
    K = st.K
    # start: the weight side without data (Rg = Cg = Rs = 0)
    for k in range(K - 1):
        st.weight_step(k, st.R, st.beta, st.C)
    bar = ProgressBar(max_iter, "DMFT Picard", progress)
    residual = math.inf
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        st.sample_pass()
        R_new, beta_new, C_new = np.zeros((K, K)), np.zeros(K), np.zeros((K, K))
        R_new[0, 0], C_new[0, 0] = 1.0, st.var0
        for k in range(K - 1):
            st.weight_step(k, R_new, beta_new, C_new)
        residual = max(
            float(np.max(np.abs(C_new - st.C))),
            float(np.max(np.abs(R_new - st.R))),
            float(np.max(np.abs(st.rho * (beta_new - st.beta)))),
        )
        st.C = (1.0 - mixing) * st.C + mixing * C_new
        st.R = (1.0 - mixing) * st.R + mixing * R_new
        st.beta = (1.0 - mixing) * st.beta + mixing * beta_new
        bar.update(residual=f"{residual:.1e}")
        if residual < tol:
            break
    bar.close()
    st.sample_pass()  # so the losses and kernels match the returned (C, m, R)
    return iterations, residual
