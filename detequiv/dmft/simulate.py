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
from .system import GD, DMFTSystem, GaussianInit, HeavyBall

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


def _pos_int(value: Any, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidArgument(f"{name}={value!r} must be an integer >= {low}")
    return int(value)


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
    if not isinstance(system, DMFTSystem):
        raise InvalidArgument(f"system={system!r} must be a DMFTSystem")
    d = _pos_int(d, "d", 2)
    seeds = _pos_int(seeds, "seeds")
    batch = _pos_int(batch, "batch")
    if algorithm is None:
        algorithm = "gd" if isinstance(system.noise, GD) else "sgd"
    if algorithm not in ("gd", "multipliers", "sgd"):
        raise InvalidArgument(f"algorithm={algorithm!r} must be 'gd', 'multipliers' or 'sgd'")
    if algorithm == "sgd" and system.tau <= 0.0:
        raise InvalidArgument("algorithm='sgd' needs a noise with tau > 0 (SGF(tau) or BernoulliVisits(tau))")
    n = max(1, int(round(system.delta * d)))
    grid = system.grid
    K, dt = grid.size, grid.dt
    rho, lam = system.teacher_norm, system.lam
    hb = float(system.weight_side.beta) if isinstance(system.weight_side, HeavyBall) else 0.0
    if algorithm == "sgd" and hb:
        raise InvalidArgument("heavy ball with algorithm='sgd' is not simulated; use 'gd' or 'multipliers'")
    loss = system.sample_side.loss
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((seeds, n, d)) / math.sqrt(d)
    tstar = rng.standard_normal((seeds, d))
    tstar *= math.sqrt(rho * d) / np.linalg.norm(tstar, axis=1, keepdims=True)
    wstar = np.einsum("snd,sd->sn", X, tstar)
    y = np.asarray(system.sample_side.teacher.labels(wstar, rng), dtype=float)
    var0 = float(system.init.variance) if isinstance(system.init, GaussianInit) else 0.0
    theta = math.sqrt(var0) * rng.standard_normal((seeds, d))
    theta_prev = theta.copy()
    train = np.empty((seeds, K))
    norm = np.empty((seeds, K))
    overlap = np.empty((seeds, K))

    def record(k: int) -> np.ndarray:
        r = np.einsum("snd,sd->sn", X, theta)
        train[:, k] = loss.value(r, y).mean(axis=1)
        norm[:, k] = np.einsum("sd,sd->s", theta, theta) / d
        overlap[:, k] = np.einsum("sd,sd->s", theta, tstar) / d
        return r

    bar = ProgressBar(K - 1, f"simulate d={d}", progress)
    if algorithm in ("gd", "multipliers"):
        for k in range(K):
            r = record(k)
            if k + 1 == K:
                break
            g = loss.derivative(r, y)
            if algorithm == "multipliers":
                g = g * system.noise.multipliers((seeds, n), dt, rng)
            grad = lam * theta + np.einsum("snd,sn->sd", X, g)
            new = theta - dt * grad + hb * (theta - theta_prev)
            theta_prev, theta = theta, new
            bar.update()
    else:
        gamma = system.tau * batch / n
        per = dt / gamma
        steps_per = int(round(per))
        if steps_per < 1 or abs(per - steps_per) > 1e-6 * per:
            raise InvalidArgument(
                f"dt={dt} is not a whole number of SGD steps gamma = tau B / n = {gamma:.6g} "
                f"(dt/gamma = {per:.6g}); choose dt, tau, batch and d so that dt n / (tau B) is an integer"
            )
        rows = np.arange(seeds)[:, None]
        scale = n / batch
        for k in range(K):
            record(k)
            if k + 1 == K:
                break
            picks = rng.integers(0, n, size=(steps_per, seeds, batch))
            for step in range(steps_per):
                idx = picks[step]
                xb = X[rows, idx]  # (seeds, batch, d)
                rb = np.einsum("sbd,sd->sb", xb, theta)
                g = loss.derivative(rb, y[rows, idx])
                theta = theta - gamma * (lam * theta + scale * np.einsum("sbd,sb->sd", xb, g))
            bar.update()
    bar.close()
    test = population_loss(system, norm, overlap)
    return SimulationResult(
        times=grid.times,
        train_loss=train,
        test_loss=np.asarray(test, dtype=float),
        norm=norm,
        m=overlap,
        d=d,
        n=n,
        algorithm=algorithm,
        rho=rho,
    )
