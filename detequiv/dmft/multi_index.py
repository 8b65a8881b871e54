r"""DMFT of ``k``-index models: ``k`` student fields, ``k*`` teacher fields (DMFT.md 2.1-2.2).

Conventions of DMFT.md 1: rows ``x_mu ~ N(0, I/d)``, ``n = delta d``; parameters
``Theta in R^{d x k}`` with fields ``r_mu = x_mu . Theta in R^k``; a teacher
``Theta* in R^{d x k*}`` with ``Theta*^T Theta* / d = rho`` (a ``k* x k*`` matrix), teacher
fields ``w*_mu = x_mu . Theta*`` and labels ``y_mu = phi(w*_mu, eps_mu)``; the loss is summed
over samples, ``L(Theta) = sum_mu l(r_mu; y_mu) + lam |Theta|_F^2 / 2`` (ridge on each
column), and GD reads ``Theta_{t+1} = (1 - dt lam) Theta_t - dt X^T G_t`` with
``G_t[mu] = s_{mu,t} grad_r l(r_mu(t); y_mu)`` (``s == 1`` for GD; the SGF/Bernoulli
multipliers of :mod:`detequiv.dmft.system` otherwise, one scalar per sample and step).

**The DMFT.** Every kernel of DMFT.md 2.2 becomes a ``k x k`` block (``k x k*`` for the teacher
ones); ``g_k = s_k grad l(r_k)``, ``H_k = Hess l(r_k)`` (``k x k``):

.. code-block:: text

    sample side   r_k = w_k - dt sum_{j<k} R[k, j+1] g_j                      (k-vectors)
                  (w*, w_0, w_1, ...) centred Gaussian:  E w_k w_l^T = C[k, l],
                  E w_k w*^T = m_k,  E w* w*^T = rho
                  J[k, j] = d r_k / d h_j:  J[k, k] = I,
                  J[k, j] = -dt sum_{i=j}^{k-1} R[k, i+1] s_i H_i J[i, j]
                  Rg[k, j] = E[ H_k J[k, j] ],     Cg[k, l] = E[ g_k g_l^T ]
                  Rs[k]    = ( E[ g_k w*^T ] - sum_{j<=k} Rg[k, j] m_j ) rho^{-1}   (Stein, k x k*)
    weight side   theta_{k+1} = (1 - dt lam) theta_k - dt [ u_k + delta sum_{j<=k} Rg[k, j] theta_j
                                                          + delta Rs[k] theta* ]
                  u centred Gaussian, E u_k u_l^T = delta Cg[k, l]
                  => R[k+1, j] = (1 - dt lam) R[k, j] - dt delta sum_{i=j}^{k} Rg[k, i] R[i, j],
                     R[k, k] = I,
                     beta_{k+1} = (1 - dt lam) beta_k - dt delta ( sum_{i<=k} Rg[k, i] beta_i + Rs[k] ),
                     beta_0 = 0,
                     m_k = beta_k rho,
                     C[k, l] = v0 R[k, 0] R[l, 0]^T + beta_k rho beta_l^T
                               + dt^2 delta sum_{i<k, j<l} R[k, i+1] Cg[i, j] R[l, j+1]^T

Here ``R[k, j]_{ab} = E d theta_a(k) / d eta_b(j)`` (a kick of column ``b`` at step ``j``),
``theta`` is one row of ``Theta`` (a ``k``-vector), ``theta*`` one row of ``Theta*``, and
``Theta_0`` has i.i.d. ``N(0, v0)`` entries.  Derivation (the scalar cavity argument done
componentwise): removing sample ``mu`` and re-adding its force ``-dt x_mu g_mu(j)`` through the
response gives ``r_a(k) = w_a(k) - dt sum_j sum_b (1/d) sum_i R_{ia, ib}(k, j+1) g_b(j)``;
removing coordinate ``i`` and re-adding ``x_{mu i} theta_i(j)`` to every field gives
``sum_mu x_{mu i} g_{mu, a}(k) = u_a(k) + delta sum_{j, b} Rg[k, j]_{ab} theta_b(j)
+ delta sum_c Rs[k]_{ac} theta*_c``; the teacher response follows from Stein's lemma over the
jointly Gaussian ``(w*, w_0, w_1, ...)``, whose response to ``w_j`` is ``Rg[k, j]``.  For
``k = 1`` this is exactly DMFT.md 2.2.

Numerically every ``(step, component)`` pair is one index of a ``K k``-dimensional block
matrix, so ``R``, ``C``, ``Rg``, ``Cg`` are lower-triangular / symmetric ``(K k) x (K k)``
matrices and the solver is the causal marcher of :mod:`detequiv.dmft.montecarlo` with blocks:
the fields are drawn by sequential conditioning (growing Cholesky factor, vanishing pivots
dropped), with moment-matched (whitened) normals, and the tangent ``J`` is propagated along
the first ``N_J`` paths.

``couplings="diagonal"`` zeroes the off-diagonal (``a != b``) entries of every ``Rg`` and
``Cg`` block: a deliberately wrong DMFT (``k`` decoupled scalar DMFTs sharing the teacher),
kept so tests can show simulation rejects it.

Two models (:class:`SeparableSquare` and :class:`Committee`) are provided.

>>> system = MultiIndexSystem(delta=2.0, grid=Grid(0.5, 6), model=Committee(2, 2),
...                           lam=0.01, init_variance=0.25)
>>> sol = solve_multi_index(system, paths=2000, seed=0)
>>> sol.C.shape, sol.m.shape, bool(sol.train_loss[-1] < sol.train_loss[0])
((7, 7, 2, 2), (7, 2, 2), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular

from ..errors import InvalidArgument
from .montecarlo import default_response_paths, extend_cholesky
from .system import GD, SGF, BernoulliVisits, Grid, check_int, check_real

__all__ = [
    "SeparableSquare",
    "Committee",
    "MultiIndexSystem",
    "MultiIndexSolution",
    "MultiIndexSimulation",
    "solve_multi_index",
    "simulate_multi_index",
]

# --------------------------------------------------------------------------- models


@dataclass(frozen=True, slots=True)
class SeparableSquare:
    r"""``k`` independent linear regressions: ``l(r; y) = sum_a (r_a - y_a)^2 / 2``, ``y = w* + eps``.

    ``k* = k`` and ``eps ~ N(0, noise_var I_k)``.  Separable and quadratic in each field, so
    each component is the scalar linear-regression DMFT (a test of the block machinery).

    >>> SeparableSquare(2, 0.25).grad(np.array([[1.0, 2.0]]), np.array([[0.0, 1.0]]))
    array([[1., 1.]])
    """

    k: int
    noise_var: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", check_int(self.k, "k"))
        object.__setattr__(self, "noise_var", check_real(self.noise_var, "noise_var", low=0.0))

    @property
    def k_star(self) -> int:
        return self.k

    def labels(self, wstar: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Labels ``(..., k)`` from teacher fields ``(..., k*)``."""
        return wstar + math.sqrt(self.noise_var) * rng.standard_normal(wstar.shape)

    def value(self, r: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 0.5 * np.sum((r - y) ** 2, axis=-1)

    def grad(self, r: np.ndarray, y: np.ndarray) -> np.ndarray:
        return r - y

    def hessian(self, r: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.eye(self.k), r.shape + (self.k,)).copy()

    def mean_loss(self, r: np.ndarray, wstar: np.ndarray) -> np.ndarray:
        """``E_eps l(r; phi(w*, eps))``."""
        return 0.5 * np.sum((r - wstar) ** 2, axis=-1) + 0.5 * self.k * self.noise_var


@dataclass(frozen=True, slots=True)
class Committee:
    r"""Soft committee machine with square loss (fixed second layer).

    Student prediction ``f(r) = (1/k) sum_a tanh(r_a)``, teacher ``y = (1/k*) sum_c tanh(w*_c)
    + eps`` with ``eps ~ N(0, noise_var)``, loss ``l(r; y) = (f(r) - y)^2 / 2``.

    Why this model: it is smooth with bounded derivatives of every order (so the response
    ``Hess l`` exists everywhere and the tangent propagation is well defined), it genuinely
    couples the ``k`` fields (``Hess l`` has off-diagonal entries ``f_a' f_b' / k^2`` and the
    ``k`` gradients share the residual ``f - y``, so the off-diagonal blocks of ``C``, ``R``
    matter), its finite-``d`` simulation is cheap, and it is the classic two-layer model of
    the online-learning literature (Saad-Solla).

    >>> c = Committee(2, 1)
    >>> r = np.array([[0.0, 0.0]]); y = np.array([[1.0]])
    >>> c.grad(r, y)          # (f - y) f'_a / k with f = 0, tanh'(0) = 1
    array([[-0.5, -0.5]])
    >>> c.hessian(r, y)[0]    # f'_a f'_b / k^2 (tanh''(0) = 0)
    array([[0.25, 0.25],
           [0.25, 0.25]])
    """

    k: int
    k_star: int
    noise_var: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", check_int(self.k, "k"))
        object.__setattr__(self, "k_star", check_int(self.k_star, "k_star"))
        object.__setattr__(self, "noise_var", check_real(self.noise_var, "noise_var", low=0.0))

    def labels(self, wstar: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        f = np.mean(np.tanh(wstar), axis=-1, keepdims=True)
        return f + math.sqrt(self.noise_var) * rng.standard_normal(f.shape)

    def _f(self, r: np.ndarray) -> np.ndarray:
        return np.mean(np.tanh(r), axis=-1, keepdims=True)

    def value(self, r: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 0.5 * ((self._f(r) - y) ** 2)[..., 0]

    def grad(self, r: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (self._f(r) - y) * (1.0 - np.tanh(r) ** 2) / self.k

    def hessian(self, r: np.ndarray, y: np.ndarray) -> np.ndarray:
        t = np.tanh(r)
        fp = (1.0 - t * t) / self.k  # d f / d r_a
        fpp = -2.0 * t * (1.0 - t * t) / self.k  # d^2 f / d r_a^2
        out = fp[..., :, None] * fp[..., None, :]
        diag = np.einsum("...aa->...a", out)
        diag += (self._f(r) - y) * fpp
        return out

    def mean_loss(self, r: np.ndarray, wstar: np.ndarray) -> np.ndarray:
        """``E_eps l(r; phi(w*, eps)) = (f(r) - f*(w*))^2 / 2 + noise_var / 2``."""
        diff = self._f(r)[..., 0] - np.mean(np.tanh(wstar), axis=-1)
        return 0.5 * diff**2 + 0.5 * self.noise_var


Model = SeparableSquare | Committee


# --------------------------------------------------------------------------- system


@dataclass(frozen=True, eq=False)
class MultiIndexSystem:
    r"""A ``k``-index model trained by GD (or SGF / Bernoulli visits) with ridge on each column.

    Parameters
    ----------
    delta : float
        ``n / d > 0``.
    grid : Grid
        Time grid (``dt`` is the GD step).
    model : SeparableSquare or Committee
        Loss and teacher.
    lam : float
        Ridge ``>= 0`` (the same on every column).
    noise : GD, SGF or BernoulliVisits
        Per-sample multipliers.
    teacher_overlap : array_like, optional
        ``rho = Theta*^T Theta* / d``, a symmetric positive definite ``k* x k*`` matrix;
        default the identity.
    init_variance : float
        Entries of ``Theta_0`` are i.i.d. ``N(0, init_variance)`` (``0``: zero init).

    >>> MultiIndexSystem(2.0, Grid(0.1, 3), Committee(2, 2), teacher_overlap=[[1.0, 2.0], [2.0, 1.0]])
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: teacher_overlap=[[1.0, 2.0], [2.0, 1.0]] must be positive definite ...
    """

    delta: float
    grid: Grid
    model: Model
    lam: float = 0.0
    noise: Any = GD()
    teacher_overlap: Any = None
    init_variance: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "delta", check_real(self.delta, "delta", low=0.0, strict=True))
        if not isinstance(self.grid, Grid):
            raise InvalidArgument(f"grid={self.grid!r} must be a Grid(dt, steps)")
        if not isinstance(self.model, (SeparableSquare, Committee)):
            raise InvalidArgument(f"model={self.model!r} must be SeparableSquare(k) or Committee(k, k_star)")
        object.__setattr__(self, "lam", check_real(self.lam, "lam", low=0.0))
        if not isinstance(self.noise, (GD, SGF, BernoulliVisits)):
            raise InvalidArgument(f"noise={self.noise!r} must be GD(), SGF(tau) or BernoulliVisits(tau)")
        if isinstance(self.noise, SGF) and not self.noise.ito_cross_term:
            raise InvalidArgument("SGF(ito_cross_term=False) is not supported here; use SGF(tau)")
        ks = self.model.k_star
        raw = self.teacher_overlap
        rho = np.eye(ks) if raw is None else np.array(raw, dtype=float)
        if rho.shape != (ks, ks) or not np.all(np.isfinite(rho)):
            raise InvalidArgument(f"teacher_overlap={raw!r} must be a finite {ks} x {ks} matrix (k* = {ks})")
        if not np.allclose(rho, rho.T, rtol=0.0, atol=1e-12 * max(1.0, float(np.max(np.abs(rho))))):
            raise InvalidArgument(f"teacher_overlap={raw!r} must be symmetric")
        if np.min(np.linalg.eigvalsh(rho)) <= 0.0:
            raise InvalidArgument(
                f"teacher_overlap={raw!r} must be positive definite (it is a Gram matrix Theta*^T Theta* / d)"
            )
        rho.setflags(write=False)
        object.__setattr__(self, "teacher_overlap", rho)
        object.__setattr__(self, "init_variance", check_real(self.init_variance, "init_variance", low=0.0))

    @property
    def k(self) -> int:
        return self.model.k

    @property
    def k_star(self) -> int:
        return self.model.k_star

    @property
    def rho(self) -> np.ndarray:
        """The teacher Gram matrix ``k* x k*``."""
        return self.teacher_overlap

    def population_loss(self, Q: Any, M: Any, nodes: int = 12) -> np.ndarray:
        r"""``E_x l(x . Theta; y)`` from ``Q = Theta^T Theta / d`` (``k x k``) and ``M = Theta^T Theta* / d``.

        Gauss-Hermite quadrature over ``(z, w*) ~ N(0, [[Q, M], [M^T, rho]])`` with ``nodes``
        points per dimension; ``Q``, ``M`` may carry leading batch axes.

        >>> s = MultiIndexSystem(2.0, Grid(0.1, 1), SeparableSquare(2, 0.5))
        >>> round(float(s.population_loss(np.zeros((2, 2)), np.zeros((2, 2)))), 10)  # (tr rho + k sigma^2)/2
        1.5
        """
        Q = np.asarray(Q, dtype=float)
        M = np.asarray(M, dtype=float)
        k, ks = self.k, self.k_star
        batch = Q.shape[:-2]
        xh, wh = np.polynomial.hermite_e.hermegauss(nodes)
        wh = wh / math.sqrt(2.0 * math.pi)
        dim = k + ks
        grids = np.stack(np.meshgrid(*([xh] * dim), indexing="ij"), axis=-1).reshape(-1, dim)
        weights = np.ones(1)
        for _ in range(dim):
            weights = np.multiply.outer(weights, wh).reshape(-1)
        out = np.empty(batch)
        for idx in np.ndindex(batch):
            cov = np.zeros((dim, dim))
            cov[:k, :k] = Q[idx]
            cov[:k, k:] = M[idx]
            cov[k:, :k] = M[idx].T
            cov[k:, k:] = self.rho
            vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
            root = vecs * np.sqrt(np.clip(vals, 0.0, None))
            pts = grids @ root.T
            out[idx] = float(weights @ self.model.mean_loss(pts[:, :k], pts[:, k:]))
        return out


# --------------------------------------------------------------------------- solution


@dataclass(frozen=True, eq=False)
class MultiIndexSolution:
    r"""Solution of a :class:`MultiIndexSystem` (blocks indexed ``[k, l, a, b]``).

    Attributes
    ----------
    system : MultiIndexSystem
    times : ndarray (K,)
    train_loss, test_loss : ndarray (K,)
        ``E l(r_k; y)`` over the sample paths; population loss of ``(C[k, k], m_k)``.
    C, R : ndarray (K, K, k, k)
        Weight correlation ``E theta_k theta_l^T`` and response ``d theta_k / d eta_l``.
    m : ndarray (K, k, k*)
        Teacher overlap ``E theta_k theta*^T`` (the simulation's ``Theta^T Theta* / d``).
    Cg, Rg : ndarray (K, K, k, k);  Rs : ndarray (K, k, k*)
        Sample-side kernels.
    paths, response_paths, seed : int
    couplings : str
        ``"full"`` or ``"diagonal"`` (the wrong DMFT).
    """

    system: MultiIndexSystem
    times: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    C: np.ndarray
    R: np.ndarray
    m: np.ndarray
    Cg: np.ndarray
    Rg: np.ndarray
    Rs: np.ndarray
    paths: int = 0
    response_paths: int = 0
    seed: int = 0
    couplings: str = "full"

    @property
    def Q(self) -> np.ndarray:
        """``Q_k = C[k, k]`` (``K x k x k``), the simulation's ``Theta^T Theta / d``."""
        return np.einsum("kkab->kab", self.C).copy()


def _blocks(big: np.ndarray, K: int, k: int) -> np.ndarray:
    """``(K k) x (K k)`` -> ``(K, K, k, k)``."""
    return big.reshape(K, k, K, k).transpose(0, 2, 1, 3).copy()


def solve_multi_index(
    system: MultiIndexSystem,
    paths: int = 16000,
    seed: int = 0,
    *,
    response_paths: int | None = None,
    couplings: str = "full",
) -> MultiIndexSolution:
    r"""Solve the ``k``-index DMFT by one causal Monte Carlo sweep (module docstring).

    Parameters
    ----------
    system : MultiIndexSystem
    paths : int
        Sample-side paths ``N``; loss-like outputs carry a relative error of about
        ``sqrt(2 / N)`` (:func:`detequiv.dmft.montecarlo.mc_relative_error`).  Must exceed
        ``k* + K k`` for the moment-matching whitening to apply (it is skipped otherwise).
    seed : int
        Seed of every draw (fields, labels, multipliers).
    response_paths : int, optional
        Paths ``N_J <= N`` carrying the tangent ``J`` (memory ``8 N_J (K k)^2`` bytes);
        default ``min(N, 1000)``, lowered to keep ``J`` under 256 MiB.
    couplings : {"full", "diagonal"}
        ``"diagonal"`` drops the off-diagonal ``a != b`` couplings of ``Rg`` and ``Cg`` (the
        deliberately wrong DMFT).

    Returns
    -------
    MultiIndexSolution
    """
    N, NJ = _check_solver_options(system, paths, seed, response_paths, couplings)
    march = _BlockMarch(system, N, NJ, int(seed), couplings)
    K = system.grid.size
    for step in range(K):
        w, m_big = march.fields(step)
        rg = march.sample_step(step, w, m_big)
        if step + 1 < K:
            march.weight_step(step, rg)
    return march.solution()


def _check_solver_options(
    system: Any, paths: Any, seed: Any, response_paths: Any, couplings: Any
) -> tuple[int, int]:
    """Validate the arguments of :func:`solve_multi_index`; returns ``(N, N_J)``."""
    if not isinstance(system, MultiIndexSystem):
        raise InvalidArgument(f"system={system!r} must be a MultiIndexSystem")
    N = check_int(paths, "paths", 2)
    check_int(seed, "seed", None)
    if couplings not in ("full", "diagonal"):
        raise InvalidArgument(f"couplings={couplings!r} must be 'full' or 'diagonal'")
    if response_paths is None:
        return N, default_response_paths(N, system.grid.size * system.k)
    NJ = check_int(response_paths, "response_paths")
    if NJ > N:
        raise InvalidArgument(f"response_paths={response_paths!r} must be <= paths={N}")
    return N, NJ


class _BlockMarch:
    """State of the causal marcher of :func:`solve_multi_index` (module docstring).

    Every ``(step, component)`` pair is one index ``step * k + component`` of the
    ``D = K k``-dimensional block matrices ``R``, ``C``, ``Rg``, ``Cg``; ``beta`` is
    ``D x k*`` (``m_k = beta_k rho``). The Gaussian fields ``(w*, w_0^1..w_0^k, w_1^1, ...)``
    are drawn from moment-matched normals ``z`` through a Cholesky factor ``L`` grown by
    sequential conditioning.
    """

    def __init__(self, system: MultiIndexSystem, N: int, NJ: int, seed: int, couplings: str) -> None:
        K, k, ks = system.grid.size, system.k, system.k_star
        D = K * k
        self.system, self.N, self.NJ, self.seed, self.couplings = system, N, NJ, seed, couplings
        self.K, self.k, self.ks = K, k, ks
        self.dt, self.delta, self.rho = system.grid.dt, system.delta, system.rho
        self.a = 1.0 - self.dt * system.lam
        rng = np.random.default_rng(seed)
        nvar = ks + D
        z = rng.standard_normal((N, nvar))
        if N > nvar + 2:  # moment matching (as in montecarlo.py): identity empirical covariance
            z -= z.mean(axis=0)
            chol = np.linalg.cholesky(np.einsum("ni,nj->ij", z, z) / N)
            z = solve_triangular(chol, z.T, lower=True, check_finite=False).T
        self.z = z
        # Cholesky factor of Cov(w*, w_0^1..w_0^k, w_1^1, ...); rows of w* first
        self.L = np.zeros((nvar, nvar))
        self.L[:ks, :ks] = np.linalg.cholesky(self.rho)
        self.active = list(range(ks))
        self.wstar = z[:, :ks] @ self.L[:ks, :ks].T
        self.y = np.asarray(system.model.labels(self.wstar, rng), dtype=float)
        self.s = np.asarray(system.noise.multipliers((N, K), self.dt, rng), dtype=float)
        self.rho_inv = np.linalg.inv(self.rho)
        self.R = np.zeros((D, D))
        self.C = np.zeros((D, D))
        self.beta = np.zeros((D, ks))
        self.Rg = np.zeros((D, D))
        self.Cg = np.zeros((D, D))
        self.Rs = np.zeros((K, k, ks))
        self.eye = np.eye(k)
        self.R[:k, :k] = self.eye
        self.C[:k, :k] = system.init_variance * self.eye
        self.G = np.zeros((N, D))  # s_k grad l(r_k), flattened (step, component)
        self.W = np.zeros((NJ, k, D))  # s_i H_i on the response paths, stacked along columns (i, b)
        self.J = np.zeros((NJ, D, D))
        self.train = np.zeros(K)

    def fields(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` fields ``w_step`` on every path (``N x k``), by conditioning on the earlier ones.

        Also returns ``E w_j w*^T = m_j`` for ``j <= step`` (``(step + 1) k x k*``).
        """
        k, ks, C = self.k, self.ks, self.C
        lo, hi = step * k, (step + 1) * k
        m_big = self.beta[:hi] @ self.rho  # E w_j w*^T for j <= step
        floor = float(np.max(np.diag(self.rho)))
        for comp in range(k):
            cov = np.concatenate([m_big[lo + comp], C[lo + comp, : lo + comp + 1]])
            extend_cholesky(self.L, self.active, cov, floor)
        # thin products by einsum: multithreaded BLAS is slow on them under load
        w = np.einsum("nj,aj->na", self.z[:, : ks + hi], self.L[ks + lo : ks + hi, : ks + hi])  # (N, k)
        return w, m_big

    def sample_step(self, step: int, w: np.ndarray, m_big: np.ndarray) -> np.ndarray:
        """Row block ``step`` of the sample side: ``r_k``, the gradients and Hessians, the tangent
        and the kernels ``Rg``, ``Cg``, ``Rs``; returns the ``Rg`` row block (``k x (step + 1) k``)."""
        k, N, NJ, dt, model, y = self.k, self.N, self.NJ, self.dt, self.system.model, self.y
        G, eye = self.G, self.eye
        lo, hi = step * k, (step + 1) * k
        if step > 0:
            # r_k = w_k - dt sum_{j<k} R[k, j+1] g_j: columns j+1 = k..hi of the row block
            r = w - dt * np.einsum("nj,aj->na", G[:, :lo], self.R[lo:hi, k:hi])
        else:
            r = w
        g = model.grad(r, y)
        H = model.hessian(r, y)
        self.train[step] = float(np.mean(model.value(r, y)))
        G[:, lo:hi] = self.s[:, step, None] * g
        self.W[:, :, lo:hi] = self.s[:NJ, step, None, None] * H[:NJ]
        Jrow = self.tangent_row(step)
        rg = np.einsum("pab,pbj->aj", H[:NJ], Jrow) / NJ
        rg[:, lo:hi] = H.mean(axis=0)
        cg = np.einsum("na,nj->aj", G[:, lo:hi], G[:, :hi]) / N
        if self.couplings == "diagonal":
            rg = (rg.reshape(k, step + 1, k) * eye[:, None, :]).reshape(k, hi)
            cg = (cg.reshape(k, step + 1, k) * eye[:, None, :]).reshape(k, hi)
        self.Rg[lo:hi, :hi] = rg
        self.Cg[lo:hi, :hi] = cg
        self.Cg[:hi, lo:hi] = cg.T
        self.Rs[step] = (np.einsum("na,nc->ac", g, self.wstar) / N - rg @ m_big) @ self.rho_inv
        return rg

    def tangent_row(self, step: int) -> np.ndarray:
        """Row block ``step`` of the tangent on the response paths (``N_J x k x (step + 1) k``):
        ``J[k, k] = I``, ``J[k, j] = -dt sum_{i<k} R[k, i+1] s_i H_i J[i, j]``."""
        k, NJ, R, W, J = self.k, self.NJ, self.R, self.W, self.J
        lo, hi = step * k, (step + 1) * k
        Jrow = J[:, lo:hi, :hi]
        Jrow[:, :, lo:hi] = self.eye
        if step > 0:
            RW = np.empty((NJ, k, lo))
            for i in range(step):
                RW[:, :, i * k : (i + 1) * k] = np.einsum(
                    "ac,pcb->pab", R[lo:hi, (i + 1) * k : (i + 2) * k], W[:, :, i * k : (i + 1) * k]
                )
            Jrow[:, :, :lo] = -self.dt * (RW @ J[:, :lo, :lo])
        return Jrow

    def weight_step(self, step: int, rg: np.ndarray) -> None:
        """Row block ``step + 1`` of ``R``, ``beta`` and ``C`` from the kernels up to ``step``."""
        k, dt, delta, a, rho = self.k, self.dt, self.delta, self.a, self.rho
        R, C, beta, Cg = self.R, self.C, self.beta, self.Cg
        lo, hi = step * k, (step + 1) * k
        nlo, nhi = hi, hi + k
        R[nlo:nhi, :hi] = a * R[lo:hi, :hi] - dt * delta * (rg @ R[:hi, :hi])
        R[nlo:nhi, nlo:nhi] = self.eye
        beta[nlo:nhi] = a * beta[lo:hi] - dt * delta * (rg @ beta[:hi] + self.Rs[step])
        Qs = R[:nhi, k:nhi]  # Q[(l, a), (i, b)] = R[l, i+1]_{ab}: response to u_i
        noise = (dt * dt * delta) * ((Qs[nlo:nhi] @ Cg[:hi, :hi]) @ Qs.T)
        init = self.system.init_variance * (R[nlo:nhi, :k] @ R[:nhi, :k].T)
        teach = beta[nlo:nhi] @ rho @ beta[:nhi].T
        block = init + teach + noise
        C[nlo:nhi, :nhi] = block
        C[:nhi, nlo:nhi] = block.T

    def solution(self) -> MultiIndexSolution:
        """The marched arrays as ``[k, l, a, b]`` blocks, with the population test loss."""
        system, K, k, ks = self.system, self.K, self.k, self.ks
        Cb = _blocks(self.C, K, k)
        m = (self.beta @ self.rho).reshape(K, k, ks)
        Q = np.einsum("kkab->kab", Cb)
        return MultiIndexSolution(
            system=system,
            times=system.grid.times,
            train_loss=self.train,
            test_loss=system.population_loss(Q, m),
            C=Cb,
            R=_blocks(self.R, K, k),
            m=m,
            Cg=_blocks(self.Cg, K, k),
            Rg=_blocks(self.Rg, K, k),
            Rs=self.Rs,
            paths=self.N,
            response_paths=self.NJ,
            seed=self.seed,
            couplings=self.couplings,
        )


# --------------------------------------------------------------------------- finite system


@dataclass(frozen=True, eq=False)
class MultiIndexSimulation:
    r"""GD on the finite ``k``-index system, over independent seeds.

    Attributes
    ----------
    times : ndarray (K,)
    train_loss : ndarray (S, K)
        ``(1/n) sum_mu l(r_mu(t); y_mu)`` per seed.
    Q : ndarray (S, K, k, k)
        ``Theta^T Theta / d``.
    M : ndarray (S, K, k, k*)
        ``Theta^T Theta* / d``.
    d, n : int
    """

    times: np.ndarray
    train_loss: np.ndarray
    Q: np.ndarray
    M: np.ndarray
    d: int
    n: int

    @staticmethod
    def mean_and_error(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean over seeds (axis 0) and its standard error."""
        S = values.shape[0]
        return values.mean(axis=0), values.std(axis=0, ddof=1) / math.sqrt(S)


def simulate_multi_index(
    system: MultiIndexSystem, d: int, seeds: int = 8, seed: int = 0
) -> MultiIndexSimulation:
    r"""Run the finite system of ``system`` at dimension ``d`` (``n = round(delta d)``), ``seeds`` copies.

    Each copy draws ``X`` with rows ``N(0, I/d)``, a teacher ``Theta*`` with the exact Gram
    matrix ``Theta*^T Theta* / d = rho`` (Gaussian directions, orthonormalised), labels from the
    model, ``Theta_0`` with i.i.d. ``N(0, init_variance)`` entries, and the per-sample
    multipliers of ``system.noise``; the copies are advanced together (batched matmuls).

    >>> s = MultiIndexSystem(2.0, Grid(0.5, 4), Committee(2, 2), init_variance=0.25)
    >>> sim = simulate_multi_index(s, d=50, seeds=2)
    >>> sim.train_loss.shape, sim.Q.shape, sim.M.shape
    ((2, 5), (2, 5, 2, 2), (2, 5, 2, 2))
    """
    if not isinstance(system, MultiIndexSystem):
        raise InvalidArgument(f"system={system!r} must be a MultiIndexSystem")
    d = check_int(d, "d", 2)
    S = check_int(seeds, "seeds")
    check_int(seed, "seed", None)
    n = max(1, round(system.delta * d))
    k, ks, K, dt = system.k, system.k_star, system.grid.size, system.grid.dt
    if d <= ks:
        raise InvalidArgument(f"d={d} must exceed k*={ks}")
    rng = np.random.default_rng(int(seed))
    model = system.model
    X = rng.standard_normal((S, n, d)) / math.sqrt(d)
    Z = rng.standard_normal((S, d, ks))
    q, rr = np.linalg.qr(Z)
    q = q * np.sign(np.einsum("sii->si", rr))[:, None, :]
    tstar = math.sqrt(d) * q @ np.linalg.cholesky(system.rho).T  # Gram exactly d rho
    wstar = X @ tstar
    y = np.asarray(model.labels(wstar, rng), dtype=float)
    theta = math.sqrt(system.init_variance) * rng.standard_normal((S, d, k))
    decay = 1.0 - dt * system.lam
    train = np.zeros((S, K))
    Q = np.zeros((S, K, k, k))
    M = np.zeros((S, K, k, ks))
    for step in range(K):
        r = X @ theta
        train[:, step] = model.value(r, y).mean(axis=1)
        Q[:, step] = np.swapaxes(theta, 1, 2) @ theta / d
        M[:, step] = np.swapaxes(theta, 1, 2) @ tstar / d
        if step + 1 < K:
            g = model.grad(r, y) * system.noise.multipliers((S, n, 1), dt, rng)
            theta = decay * theta - dt * (np.swapaxes(X, 1, 2) @ g)
    return MultiIndexSimulation(times=system.grid.times, train_loss=train, Q=Q, M=M, d=d, n=n)
