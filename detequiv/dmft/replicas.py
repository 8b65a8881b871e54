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
from .linear import CorrelationChannel, LinearCoefficients, LinearMarch
from .system import DMFTSystem

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
    coef = LinearCoefficients.of(system)
    shared_t, private_t = _partition(shared, private)
    var0 = float(system.init.variance)
    # aa: all sources shared (the ordinary DMFT); ab: a private source contributes nothing
    channels = (
        CorrelationChannel(var0, coef.noise_var, coef.v),
        CorrelationChannel(
            var0 if "init" in shared_t else 0.0,
            coef.noise_var if "labels" in shared_t else 0.0,
            coef.v if "sgd_noise" in shared_t else 0.0,
        ),
    )
    march = LinearMarch(coef, channels).run()
    return _replica_solution(system, shared_t, private_t, march)


def _replica_solution(
    system: DMFTSystem, shared: tuple[str, ...], private: tuple[str, ...], march: LinearMarch
) -> ReplicaSolution:
    """Read the two-replica solution off the marched ``aa`` and ``ab`` channels.

    With private data the marched ``ab`` channel does not apply: only the deterministic parts
    ``R[:, 0] theta_0 + (m / rho) theta*`` of the two runs are common (module docstring).
    """
    R, m, rho = march.R, march.m, march.coef.rho
    C_aa, C_ab = march.C
    residual_ab = march.Ce[1]
    if "data" in private:
        n = m.size
        C_ab = np.outer(m, m) / rho
        if "init" in shared:
            C_ab += float(system.init.variance) * np.outer(R[:, 0], R[:, 0])
        residual_ab = np.zeros((n, n))
    total = np.diag(C_aa) - 2.0 * m + rho
    mean_err = np.diag(C_ab) - 2.0 * m + rho
    return ReplicaSolution(
        system=system,
        shared=shared,
        private=private,
        times=system.grid.times,
        total=total,
        mean_predictor_error=mean_err,
        variance=np.diag(C_aa) - np.diag(C_ab),
        C_aa=C_aa,
        C_ab=C_ab,
        R=R,
        m=m,
        residual_aa=march.Ce[0],
        residual_ab=residual_ab,
    )
