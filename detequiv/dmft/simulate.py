r"""Direct simulation of the finite system a :class:`DMFTSystem` describes (DMFT.md 1, 5.2).

The data are ``X in R^{n x d}`` with rows ``x_mu ~ N(0, I_d / d)``, ``n = round(delta d)``;
the teacher ``theta*`` is Gaussian rescaled to ``|theta*|^2 = rho d`` exactly (this removes
one source of seed-to-seed spread, DMFT.md 5.2), labels ``y_mu = phi(x_mu . theta*, eps_mu)``
come from the system's teacher.  The loss is summed over samples.  Three algorithms:

* ``"gd"``: ``theta <- theta - dt [Omega'(theta) + X^T l'(X theta; y)]`` (heavy ball adds
  ``beta (theta_k - theta_{k-1})``) -- the discrete algorithm of the DMFT for :class:`GD`;
* ``"multipliers"``: the same step with each sample's gradient multiplied by the system's
  ``s_k`` (:class:`SGF` Gaussian or :class:`BernoulliVisits`) -- the *exact* finite-size
  counterpart of the discrete DMFT with noise (no ``dt`` bias);
* ``"sgd"``: real SGD with batch ``B`` drawn with replacement, step ``gamma = tau B / n``, the
  gradient of sample ``mu`` multiplied by ``(n / B) 1[mu in batch]``; its DMFT is the SGF in
  the limit ``dt -> 0`` (so compare at small ``dt``).

Losses are recorded on the system's grid: ``train = (1/n) sum_mu l(x_mu . theta; y_mu)`` and
the test loss from ``(|theta|^2/d, theta.theta*/d)`` by :func:`~detequiv.dmft.montecarlo.population_loss`.
Seeds are vectorized (one batched matrix product per step).

>>> from detequiv.dmft.system import DMFTSystem, Grid, SampleSide, Square, LinearTeacher, Ridge
>>> system = DMFTSystem(2.0, Grid(0.1, 5), SampleSide(Square(), LinearTeacher(0.25)), Ridge(0.1))
>>> sim = simulate(system, d=50, seeds=3, seed=0)
>>> sim.train_loss.shape, float(sim.test_loss[0, 0])
((3, 6), 1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgument
from .linear import cosine_overlap
from .montecarlo import population_loss
from .progress import ProgressBar
from .system import GD, DMFTSystem, check_int

__all__ = ["SimulationResult", "simulate"]


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """Loss curves of ``seeds`` independent finite-size runs on the system's grid.

    Attributes
    ----------
    times : ndarray, shape (K,)
        The grid's times.
    train_loss : ndarray, shape (seeds, K)
        Per-seed train loss.
    test_loss : ndarray, shape (seeds, K)
        Per-seed test loss.
    norm : ndarray, shape (seeds, K)
        Per-seed ``|theta|^2/d``.
    m : ndarray, shape (seeds, K)
        Per-seed ``theta.theta*/d``.
    d, n : int
        Dimension and number of samples.
    algorithm : str
        ``"gd"``, ``"multipliers"`` or ``"sgd"``.
    rho : float
        Teacher norm ``|theta*|^2 / d`` (exact in the simulation).
    """

    times: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    norm: np.ndarray
    m: np.ndarray
    d: int
    n: int
    algorithm: str
    rho: float

    @staticmethod
    def _se(a: np.ndarray) -> np.ndarray:
        if a.shape[0] < 2:
            return np.full(a.shape[1], np.inf)
        return a.std(axis=0, ddof=1) / math.sqrt(a.shape[0])

    @property
    def overlap(self) -> np.ndarray:
        """Per-seed cosine ``theta.theta* / (|theta| |theta*|)`` (0 where ``theta = 0``)."""
        return cosine_overlap(self.norm, self.m, self.rho)

    @property
    def train_mean(self) -> np.ndarray:
        """Mean train loss over seeds."""
        return self.train_loss.mean(axis=0)

    @property
    def train_se(self) -> np.ndarray:
        """Standard error of :attr:`train_mean` (inf with one seed)."""
        return self._se(self.train_loss)

    @property
    def test_mean(self) -> np.ndarray:
        """Mean test loss over seeds."""
        return self.test_loss.mean(axis=0)

    @property
    def test_se(self) -> np.ndarray:
        """Standard error of :attr:`test_mean` (inf with one seed)."""
        return self._se(self.test_loss)


def _check_options(system: Any, d: Any, seeds: Any, batch: Any, algorithm: Any) -> tuple[int, int, int, str]:
    """Validate the arguments of :func:`simulate`; returns ``(d, seeds, batch, algorithm)``."""
    if not isinstance(system, DMFTSystem):
        raise InvalidArgument(f"system={system!r} must be a DMFTSystem")
    d = check_int(d, "d", 2)
    seeds = check_int(seeds, "seeds")
    batch = check_int(batch, "batch")
    if algorithm is None:
        algorithm = "gd" if isinstance(system.noise, GD) else "sgd"
    if algorithm not in ("gd", "multipliers", "sgd"):
        raise InvalidArgument(f"algorithm={algorithm!r} must be 'gd', 'multipliers' or 'sgd'")
    if algorithm == "sgd" and system.tau <= 0.0:
        raise InvalidArgument("algorithm='sgd' needs a noise with tau > 0 (SGF(tau) or BernoulliVisits(tau))")
    if algorithm == "sgd" and system.momentum:
        raise InvalidArgument("heavy ball with algorithm='sgd' is not simulated; use 'gd' or 'multipliers'")
    return d, seeds, batch, algorithm


def simulate(
    system: DMFTSystem,
    d: int,
    *,
    seeds: int = 8,
    seed: int = 0,
    algorithm: str | None = None,
    batch: int = 1,
    progress: bool = False,
) -> SimulationResult:
    r"""Run the finite system at dimension ``d`` for ``seeds`` independent draws.

    Parameters
    ----------
    system : DMFTSystem
        The model; ``n = round(delta d)``.
    d : int
        Dimension ``>= 2``.
    seeds : int
        Independent runs (data, teacher, labels, noise), vectorized.
    seed : int
        Master seed.
    algorithm : {"gd", "multipliers", "sgd"}, optional
        Default ``"gd"`` for :class:`GD` noise and ``"sgd"`` otherwise.
    batch : int
        Batch size ``B`` of ``"sgd"``.
    progress : bool
        tqdm bar over the grid steps when tqdm is installed.
    """
    d, seeds, batch, algorithm = _check_options(system, d, seeds, batch, algorithm)
    run = _FiniteRuns(system, d, seeds, np.random.default_rng(seed))
    bar = ProgressBar(system.grid.size - 1, f"simulate d={d}", progress)
    if algorithm in ("gd", "multipliers"):
        run.full_batch(algorithm == "multipliers", bar)
    else:
        run.sgd(batch, bar)
    bar.close()
    return run.result(algorithm)


class _FiniteRuns:
    """``seeds`` finite systems advanced together: data, teacher, labels, weights, recorded curves.

    The draws, in this order from ``rng``: ``X`` (rows ``N(0, I_d / d)``), the teacher rescaled
    to ``|theta*|^2 = rho d``, the labels, ``theta(0)``; the algorithms then draw their noise.
    """

    def __init__(self, system: DMFTSystem, d: int, seeds: int, rng: np.random.Generator) -> None:
        self.system, self.d, self.seeds, self.rng = system, d, seeds, rng
        self.n = n = max(1, int(round(system.delta * d)))
        K = system.grid.size
        self.X = rng.standard_normal((seeds, n, d)) / math.sqrt(d)
        self.tstar = rng.standard_normal((seeds, d))
        self.tstar *= math.sqrt(system.teacher_norm * d) / np.linalg.norm(self.tstar, axis=1, keepdims=True)
        wstar = np.einsum("snd,sd->sn", self.X, self.tstar)
        self.y = np.asarray(system.sample_side.teacher.labels(wstar, rng), dtype=float)
        self.theta = math.sqrt(system.init_variance) * rng.standard_normal((seeds, d))
        self.train = np.empty((seeds, K))
        self.norm = np.empty((seeds, K))
        self.overlap = np.empty((seeds, K))

    def record(self, k: int) -> np.ndarray:
        """Record the curves at grid step ``k``; returns the preactivations ``X theta``."""
        theta, d = self.theta, self.d
        r = np.einsum("snd,sd->sn", self.X, theta)
        self.train[:, k] = self.system.sample_side.loss.value(r, self.y).mean(axis=1)
        self.norm[:, k] = np.einsum("sd,sd->s", theta, theta) / d
        self.overlap[:, k] = np.einsum("sd,sd->s", theta, self.tstar) / d
        return r

    def full_batch(self, multipliers: bool, bar: ProgressBar) -> None:
        """GD (heavy ball included) on the grid, each sample's gradient times the system's ``s_k``
        when ``multipliers``."""
        system, X = self.system, self.X
        K, dt = system.grid.size, system.grid.dt
        lam, hb, loss = system.lam, system.momentum, system.sample_side.loss
        theta = self.theta
        theta_prev = theta.copy()
        for k in range(K):
            r = self.record(k)
            if k + 1 == K:
                break
            g = loss.derivative(r, self.y)
            if multipliers:
                g = g * system.noise.multipliers((self.seeds, self.n), dt, self.rng)
            grad = lam * theta + np.einsum("snd,sn->sd", X, g)
            new = theta - dt * grad + hb * (theta - theta_prev)
            theta_prev, theta = theta, new
            self.theta = theta
            bar.update()

    def sgd(self, batch: int, bar: ProgressBar) -> None:
        """SGD with batches drawn with replacement, step ``gamma = tau B / n``, recorded on the grid."""
        system, X, y, n = self.system, self.X, self.y, self.n
        K, dt = system.grid.size, system.grid.dt
        lam, loss = system.lam, system.sample_side.loss
        gamma = system.tau * batch / n
        per = dt / gamma
        steps_per = int(round(per))
        if steps_per < 1 or abs(per - steps_per) > 1e-6 * per:
            raise InvalidArgument(
                f"dt={dt} is not a whole number of SGD steps gamma = tau B / n = {gamma:.6g} "
                f"(dt/gamma = {per:.6g}); choose dt, tau, batch and d so that dt n / (tau B) is an integer"
            )
        rows = np.arange(self.seeds)[:, None]
        scale = n / batch
        for k in range(K):
            self.record(k)
            if k + 1 == K:
                break
            picks = self.rng.integers(0, n, size=(steps_per, self.seeds, batch))
            theta = self.theta
            for step in range(steps_per):
                idx = picks[step]
                xb = X[rows, idx]  # (seeds, batch, d)
                rb = np.einsum("sbd,sd->sb", xb, theta)
                g = loss.derivative(rb, y[rows, idx])
                theta = theta - gamma * (lam * theta + scale * np.einsum("sbd,sb->sd", xb, g))
            self.theta = theta
            bar.update()

    def result(self, algorithm: str) -> SimulationResult:
        """The recorded curves, with the test loss from ``(|theta|^2 / d, theta . theta* / d)``."""
        system = self.system
        test = population_loss(system, self.norm, self.overlap)
        return SimulationResult(
            times=system.grid.times,
            train_loss=self.train,
            test_loss=np.asarray(test, dtype=float),
            norm=self.norm,
            m=self.overlap,
            d=self.d,
            n=self.n,
            algorithm=algorithm,
            rho=system.teacher_norm,
        )
