r"""Bias/variance over subsets of the noise: the exact two-replica DMFT of linear regression.

DMFT.md 2.4 (last item) and 3 item 4.

Two replicas ``a, b`` of one training run share some disorder *sources* and draw the others
independently. The sources are

* ``"data"``: the inputs ``X`` (private data = independent training sets of the same size,
  which makes the labels and the SGD noise, attached to samples, private too);
* ``"labels"``: the label noise ``eps`` in ``y = X theta* + eps`` (``theta*`` is always shared);
* ``"init"``: ``theta(0)`` (only matters for :class:`~detequiv.dmft.system.GaussianInit`);
* ``"sgd_noise"``: the per-sample multipliers ``s_k`` (:class:`SGF`, :class:`BernoulliVisits`).

The replicas evolve independently given the shared sources, so in the DMFT every response is
replica-diagonal (``R_ab = 0``, ``R_aa = R_bb = R``, the single-replica response) and only the
correlations acquire a replica index. For the square loss ``l = a (r - y)^2 / 2`` the sample
side of replica ``a`` is ``e^a = A (w^a - y^a) - sqrt(v) K diag(xi^a) e^a`` (notation of
:mod:`detequiv.dmft.linear`: ``A = (I + dt a L)^{-1}``, ``K = dt a A L``, ``v = Var s_k``,
``xi = (s - 1) / sqrt(v)``), and the weight side is driven by Gaussian fields ``u^a`` with
``E u^a u^b = delta Cg_ab``. Writing ``[x] = 1`` when source ``x`` is shared and ``0``
otherwise, the cross-replica closure is

* ``Sigma_ab = C_ab - m 1^T - 1 m^T + rho + [labels] sigma^2``;
* ``Ce_ab = A Sigma_ab A^T + [sgd_noise] v K diag(c_ab) K^T``, ``c_ab = diag Ce_ab``;
* ``Cg_ab = a^2 [Ce_ab + [sgd_noise] v (diag(c_ab) - K diag(c_ab) - diag(c_ab) K^T)]``
  (the white and Ito terms need the *same* multiplier in both replicas; with private noise
  ``E[xi^a_k xi^b_l] = 0`` removes them);
* ``C_ab[0, 0] = [init] Var theta(0)``, and ``C_ab`` obeys the weight-side recursion of
  :mod:`detequiv.dmft.linear` with ``Cg_ab`` in place of ``Cg``.

With private data the two drives ``u^a, u^b`` come from different samples and are independent,
so only the deterministic parts of the single-site weight process
``theta_k = R[k, 0] theta_0 + (m_k / rho) theta* + (noise)`` are common:
``C_ab = m m^T / rho + [init] Var theta(0) R[:, 0] R[:, 0]^T`` (and ``residual_ab = 0``).

The ``aa`` block (all sources shared) is the ordinary DMFT. Both blocks are marched together
in one causal sweep, ``O(K^3)``. Read-outs, with ``theta*`` the teacher:

* ``total = E |theta_a - theta*|^2 / d`` (one run; equals :func:`~detequiv.dmft.linear.solve`'s
  ``test_loss``);
* ``mean_predictor_error = E (theta_a - theta*) . (theta_b - theta*) / d =
  |E_private theta - theta*|^2 / d``: the error of the infinite ensemble over the private
  sources (the "bias" with respect to them);
* ``variance = E |theta_a - theta_b|^2 / (2 d) = total - mean_predictor_error``: what that
  ensemble removes; an ensemble of ``M`` runs has error ``mean_predictor_error + variance / M``.

For a linear model the average over the SGD noise is the GD run (``E s_k = 1``), so with
private SGD noise ``mean_predictor_error`` is the GD test loss (DMFT.md 2.4: "E_SGD - E_GF").

>>> from detequiv.dmft.system import DMFTSystem, Grid, LinearTeacher, Ridge, SampleSide, SGF, Square
>>> system = DMFTSystem(2.0, Grid(0.1, 30), SampleSide(Square(), LinearTeacher(0.25)),
...                     Ridge(0.1), noise=SGF(0.5))
>>> rep = solve_replicas(system)
>>> bool(np.allclose(rep.total, rep.mean_predictor_error + rep.variance))
True
>>> float(rep.variance[0]), bool(rep.variance[-1] > 0)
(0.0, True)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgument
from .linear import _check
from .system import GD, SGF, DMFTSystem, HeavyBall

__all__ = ["REPLICA_SOURCES", "ReplicaSolution", "solve_replicas"]

#: Disorder sources two replicas can share or draw privately (see the module docstring).
REPLICA_SOURCES: tuple[str, ...] = ("data", "labels", "init", "sgd_noise")


@dataclass(frozen=True, slots=True, eq=False)
class ReplicaSolution:
    """Two-replica DMFT of a linear-regression run (DMFT.md 1 conventions).

    Attributes
    ----------
    system : DMFTSystem
        The solved system.
    shared, private : tuple of str
        The sources shared by / private to the two replicas (a partition of
        :data:`REPLICA_SOURCES`, in that order).
    times : numpy.ndarray, shape (K,)
        Grid times ``k dt``.
    total : numpy.ndarray, shape (K,)
        ``E |theta_a - theta*|^2 / d``, the test loss of one run.
    mean_predictor_error : numpy.ndarray, shape (K,)
        ``E (theta_a - theta*) . (theta_b - theta*) / d``, the test loss of the predictor
        averaged over the private sources (the bias with respect to them).
    variance : numpy.ndarray, shape (K,)
        ``E |theta_a - theta_b|^2 / (2 d) = total - mean_predictor_error``, the variance over
        the private sources.
    C_aa, C_ab : numpy.ndarray, shape (K, K)
        ``theta_a(k) . theta_a(l) / d`` and ``theta_a(k) . theta_b(l) / d`` (both symmetric).
    R : numpy.ndarray, shape (K, K)
        The (replica-diagonal) weight response, as in :class:`~detequiv.dmft.linear.DMFTSolution`.
    m : numpy.ndarray, shape (K,)
        Teacher overlap ``theta_a(k) . theta* / d`` (the same for both replicas).
    residual_aa, residual_ab : numpy.ndarray, shape (K, K)
        Training-residual correlations ``E e^a_k e^a_l`` and ``E e^a_k e^b_l`` of one sample
        (``e = r - y``; ``residual_aa`` has the SGD-noise part).
    """

    system: DMFTSystem
    shared: tuple[str, ...]
    private: tuple[str, ...]
    times: np.ndarray
    total: np.ndarray
    mean_predictor_error: np.ndarray
    variance: np.ndarray
    C_aa: np.ndarray
    C_ab: np.ndarray
    R: np.ndarray
    m: np.ndarray
    residual_aa: np.ndarray
    residual_ab: np.ndarray

    def ensemble_error(self, size: int) -> np.ndarray:
        """Test loss of the average of ``size`` runs that differ in the private sources.

        ``mean_predictor_error + variance / size``.

        >>> from detequiv.dmft.system import DMFTSystem, Grid, LinearTeacher, SampleSide, SGF, Square
        >>> rep = solve_replicas(DMFTSystem(2.0, Grid(0.1, 5), SampleSide(Square(), LinearTeacher()),
        ...                                 noise=SGF(1.0)))
        >>> bool(np.allclose(rep.ensemble_error(1), rep.total))
        True
        """
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise InvalidArgument(f"size={size!r} must be an integer >= 1 (number of runs averaged)")
        return self.mean_predictor_error + self.variance / int(size)


def _sources(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Iterable):
        raise InvalidArgument(f"{name}={value!r} must be a tuple of source names from {REPLICA_SOURCES}")
    out = tuple(value)
    for item in out:
        if item not in REPLICA_SOURCES:
            raise InvalidArgument(f"{name} contains {item!r}; the sources are {REPLICA_SOURCES}")
    return out


def _partition(shared: Any, private: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    pr = _sources(private, "private")
    sh = () if shared is None else _sources(shared, "shared")
    both = sorted(set(sh) & set(pr))
    if both:
        raise InvalidArgument(f"sources {both} are both shared and private; list each in one of them")
    if "data" in pr:
        tied = sorted(set(sh) & {"labels", "sgd_noise"})
        if tied:
            raise InvalidArgument(
                f"private 'data' with shared {tied}: labels and SGD noise belong to the samples, so "
                "independent data sets make them private too; remove them from shared"
            )
        pr = (*pr, "labels", "sgd_noise")
    private_set = set(pr)
    ordered_private = tuple(s for s in REPLICA_SOURCES if s in private_set)
    # sources named in neither list are shared
    ordered_shared = tuple(s for s in REPLICA_SOURCES if s not in private_set)
    return ordered_shared, ordered_private


def solve_replicas(
    system: DMFTSystem,
    shared: Iterable[str] | None = None,
    private: Iterable[str] = ("sgd_noise",),
) -> ReplicaSolution:
    r"""Solve the two-replica DMFT of a linear-regression system exactly (one causal sweep).

    Parameters
    ----------
    system : DMFTSystem
        Square-type loss, :class:`~detequiv.dmft.system.LinearTeacher`, ridge or heavy-ball
        weights, any noise (GD, SGF, Bernoulli visits), any init.
    shared : iterable of str, optional
        Sources (from :data:`REPLICA_SOURCES`) the replicas share. Default: every source not
        in ``private``; sources named in neither list are shared as well.
    private : iterable of str
        Sources the replicas draw independently (default ``("sgd_noise",)``, the ensemble
        over SGD noise). Private ``"data"`` makes ``"labels"`` and ``"sgd_noise"`` private.

    Returns
    -------
    ReplicaSolution

    Raises
    ------
    InvalidArgument
        If a side is not Gaussian-linear, a source name is unknown or listed twice, or
        ``"data"`` is private while labels or SGD noise are shared.

    Examples
    --------
    Private initialisations under GD: the ensemble over inits removes the init's contribution.

    >>> from detequiv.dmft.system import (DMFTSystem, GaussianInit, Grid, LinearTeacher,
    ...                                   SampleSide, Square)
    >>> system = DMFTSystem(2.0, Grid(0.1, 20), SampleSide(Square(), LinearTeacher(0.25)),
    ...                     init=GaussianInit(0.5))
    >>> rep = solve_replicas(system, private=("init",))
    >>> rep.private, float(rep.variance[0]), float(rep.mean_predictor_error[0])
    (('init',), 0.5, 1.0)
    >>> solve_replicas(system, private=("data",)).private
    ('data', 'labels', 'sgd_noise')
    >>> solve_replicas(system, shared=("labels",), private=("data",))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: private 'data' with shared ['labels']: labels and SGD noise ...
    """
    a = _check(system)
    shared_t, private_t = _partition(shared, private)
    grid = system.grid
    n, dt = grid.size, grid.dt
    delta, rho = system.delta, system.teacher_norm
    sigma2 = system.sample_side.teacher.noise_var  # type: ignore[union-attr]
    lam = system.lam
    beta = system.weight_side.beta if isinstance(system.weight_side, HeavyBall) else 0.0
    v = 0.0 if isinstance(system.noise, GD) else system.noise.variance(dt)
    ito = 1.0 if not isinstance(system.noise, SGF) or system.noise.ito_cross_term else 0.0
    var0 = float(system.init.variance)

    # (init covariance, label-noise covariance, multiplier variance seen by both) per block
    blocks = (
        (var0, sigma2, v),
        (
            var0 if "init" in shared_t else 0.0,
            sigma2 if "labels" in shared_t else 0.0,
            v if "sgd_noise" in shared_t else 0.0,
        ),
    )
    R = np.zeros((n, n))
    A = np.zeros((n, n))
    L = np.zeros((n, n))
    Kk = np.zeros((n, n))
    m = np.zeros(n)
    a1 = np.zeros(n)  # A 1
    am = np.zeros(n)  # A m
    P = np.zeros(n)
    Cs = [np.zeros((n, n)) for _ in blocks]
    Ces = [np.zeros((n, n)) for _ in blocks]
    cs = [np.zeros(n) for _ in blocks]
    R[0, 0] = 1.0
    for C, (c0, _, _) in zip(Cs, blocks, strict=True):
        C[0, 0] = c0
    for k in range(n):
        kk = k + 1
        # sample side, row k (replica-independent)
        L[k, :k] = R[k, 1:kk]
        A[k, :kk] = -dt * a * (L[k, :k] @ A[:k, :kk])
        A[k, k] = 1.0
        Kk[k, :k] = dt * a * (A[k, :kk] @ L[:kk, :k])
        a1[k] = A[k, :kk].sum()
        am[k] = A[k, :kk] @ m[:kk]
        rs = -a * a1[k]
        if kk < n:
            P[:kk] = -dt * delta * a * A[k, :kk]
            P[k] += 1.0 - dt * lam
            if k >= 1:  # theta_{-1} = theta_0: no momentum on the first step
                P[k] += beta
                P[k - 1] -= beta
            m[kk] = P[:kk] @ m[:kk] - dt * delta * rs * rho
            R[kk, :kk] = P[:kk] @ R[:kk, :kk]
            R[kk, kk] = 1.0
        p = P[:kk]
        for C, Ce, c, (_, s2, vv) in zip(Cs, Ces, cs, blocks, strict=True):
            # residual correlation row k: A Sigma A^T + vv K diag(c) K^T
            row = (A[k, :kk] @ C[:kk, :kk]) @ A[:kk, :kk].T
            row += (rho + s2) * a1[k] * a1[:kk] - am[k] * a1[:kk] - a1[k] * am[:kk]
            if vv:
                row += vv * ((Kk[k, :k] * c[:k]) @ Kk[:kk, :k].T)
            Ce[k, :kk] = row
            Ce[:kk, k] = row
            c[k] = row[k]
            if kk == n:
                continue
            g = row.copy()
            g[k] += vv * c[k]
            if vv and ito:
                g[:k] -= vv * Kk[k, :k] * c[:k]
            g *= a * a
            # weight side: theta_{k+1} = p . theta[:kk] - dt u_k - dt delta rs theta*
            eu = -dt * delta * (R[: kk + 1, 1 : kk + 1] @ g)  # E[u_k theta_l] (other replica)
            new = p @ C[:kk, :kk] - dt * eu[:kk] - dt * delta * rs * m[:kk]
            C[kk, :kk] = new
            C[:kk, kk] = new
            C[kk, kk] = p @ new - dt * eu[kk] - dt * delta * rs * m[kk]
    C_aa, C_ab = Cs
    residual_ab = Ces[1]
    if "data" in private_t:
        C_ab = np.outer(m, m) / rho
        if "init" in shared_t:
            C_ab += var0 * np.outer(R[:, 0], R[:, 0])
        residual_ab = np.zeros((n, n))
    total = np.diag(C_aa) - 2.0 * m + rho
    mean_err = np.diag(C_ab) - 2.0 * m + rho
    return ReplicaSolution(
        system=system,
        shared=shared_t,
        private=private_t,
        times=grid.times,
        total=total,
        mean_predictor_error=mean_err,
        variance=np.diag(C_aa) - np.diag(C_ab),
        C_aa=C_aa,
        C_ab=C_ab,
        R=R,
        m=m,
        residual_aa=Ces[0],
        residual_ab=residual_ab,
    )
