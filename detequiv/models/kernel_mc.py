"""Simulation witnesses for :mod:`detequiv.models.kernel`: kernel ridge regression and GCV.

* :func:`simulate_kernel_ridge` fits :math:`\\hat f=K(\\cdot,X)(K+P\\lambda)^{-1}y` in the
  *dual* (the ``P x P`` Gram matrix; :mod:`~detequiv.models.ridge_mc` uses the primal),
  with Gaussian features (where the Gaussian-equivalent formula is exact in the limit)
  or the Fourier features of the circle (an actual kernel).
* :func:`check_kernel_monte_carlo` compares a :class:`~detequiv.models.kernel.KernelRegression`'s
  derived terms with the seed average: tolerance ``n_se`` standard errors plus
  ``c_finite |exact| / N``, ``N = min(D, P)`` (MATH.md, the project's rule).
* :func:`simulate_gcv` and :func:`check_gcv` compute the GCV estimator on simulated data
  sets and compare its *mean* with the derived test error (or, to show they are rejected,
  the training error alone or the unsquared correction).

Importing this module registers the witnesses ``kernel/monte_carlo`` and ``kernel/gcv``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from ..derivations.formula import LossFormula
from ..derivations.results import monte_carlo_witness
from ..errors import InvalidArgument
from ..witnesses.acceptance import VerificationRow
from ..witnesses.common import MonteCarloCheck
from ..witnesses.sampling import check_rng
from .kernel import GCVEstimator, KernelRegression
from .ridge import RidgeRegression
from .simulation import acceptance_row, replay, reports_check, size_function

__all__ = [
    "circle_features",
    "circle_fourier_kernel",
    "simulate_kernel_ridge",
    "check_kernel_monte_carlo",
    "simulate_gcv",
    "check_gcv",
]

Features = Literal["gaussian", "circle"] | Callable[[np.random.Generator, int, int], np.ndarray]


def circle_features(x: np.ndarray, d: int) -> np.ndarray:
    r"""The orthonormal Fourier basis on the circle at points ``x``: columns
    :math:`1,\sqrt2\cos x,\sqrt2\sin x,\sqrt2\cos2x,\dots` (``d`` of them, ``d`` odd).

    >>> import numpy as np
    >>> e = circle_features(np.linspace(0, 2 * np.pi, 1000, endpoint=False), 5)
    >>> bool(np.allclose(e.T @ e / 1000, np.eye(5)))
    True
    """
    if d < 1 or d % 2 == 0:
        raise InvalidArgument(f"the circle basis has 1 + 2 m functions; got d = {d}, pass an odd d")
    m = np.arange(1, (d - 1) // 2 + 1)
    out = np.empty((x.size, d))
    out[:, 0] = 1.0
    out[:, 1::2] = np.sqrt(2) * np.cos(np.outer(x, m))
    out[:, 2::2] = np.sqrt(2) * np.sin(np.outer(x, m))
    return out


def circle_fourier_kernel(
    d: int,
    samples: int,
    *,
    decay: float = 1.5,
    target_decay: float = 0.5,
    scale: float = 1 / 3,
    noise: float = 0.05,
) -> KernelRegression:
    r"""The finite-rank Fourier kernel of ``benchmarks/kernel_universality_circle.py``:
    eigenvalues :math:`1, m^{-\text{decay}}` (twice), weights
    :math:`\theta=0,\ \text{scale}\,m^{-\text{target\_decay}}` (twice), i.e. target
    coefficients :math:`c_k=\sqrt{\lambda_k}\theta_k`.

    >>> circle_fourier_kernel(5, 4).eigenvalues[:3]
    (1.0, 1.0, 1.0)
    """
    if d < 3 or d % 2 == 0:
        raise InvalidArgument(f"circle_fourier_kernel needs an odd d >= 3, got {d}")
    m = np.arange(1, (d - 1) // 2 + 1)
    eig = np.concatenate([[1.0], np.repeat(m**-decay, 2)])
    theta = np.concatenate([[0.0], np.repeat(scale * m**-target_decay, 2)])
    return KernelRegression(eig, np.sqrt(eig) * theta, samples=samples, noise=noise)


def _features(kind: Features, rng: np.random.Generator, p: int, d: int) -> np.ndarray:
    if callable(kind):
        out = np.asarray(kind(rng, p, d), dtype=float)
        if out.shape != (p, d):
            raise InvalidArgument(f"the feature map returned shape {out.shape}, expected ({p}, {d})")
        return out
    if kind == "gaussian":
        return rng.standard_normal((p, d))
    if kind == "circle":
        return circle_features(rng.uniform(0.0, 2 * np.pi, p), d)
    raise InvalidArgument(f"features = {kind!r}: use 'gaussian', 'circle' or a callable (rng, P, D) -> P x D")


def simulate_kernel_ridge(
    eigenvalues: np.ndarray,
    target: np.ndarray,
    p: int,
    lam: float,
    noise: float,
    rng: np.random.Generator,
    *,
    features: Features = "gaussian",
    conditional: bool = True,
) -> dict[str, float]:
    r"""One kernel ridge fit :math:`\hat f=K(\cdot,X)(K+P\lambda)^{-1}y` in the dual.

    ``features`` draws the eigenfunction values :math:`\phi_k(x_\mu)` (``P x D``,
    orthonormal in expectation). Returns ``E_test`` (realised noise:
    :math:`\sum_k(\hat c_k-c_k)^2+\sigma^2`), ``E_train`` and, if ``conditional``, the
    ``bias`` and ``variance`` conditional on the inputs (exact over the label noise) and
    ``noise``.

    >>> import numpy as np
    >>> out = simulate_kernel_ridge(np.ones(20), np.ones(20) / 5, 30, 0.1, 0.1, np.random.default_rng(0))
    >>> sorted(out)
    ['E_test', 'E_train', 'bias', 'noise', 'variance']
    """
    eig = np.asarray(eigenvalues, dtype=float)
    c = np.asarray(target, dtype=float)
    d = eig.size
    phi = _features(features, rng, p, d)
    root = np.sqrt(eig)
    psi = phi * root  # feature vectors sqrt(lambda_k) phi_k(x)
    gram = psi @ psi.T
    m = gram + p * lam * np.eye(p)
    clean = phi @ c
    y = clean + np.sqrt(noise) * rng.standard_normal(p)
    alpha = np.linalg.solve(m, y)
    c_hat = root * (psi.T @ alpha)
    diff = c_hat - c
    out = {
        "E_test": float(diff @ diff + noise),
        "E_train": float(np.sum((p * lam * alpha) ** 2) / p),
    }
    if conditional:
        m_inv = np.linalg.inv(m)
        a = root[:, None] * (psi.T @ m_inv)  # c_hat = a y
        mean_diff = a @ clean - c
        out["bias"] = float(mean_diff @ mean_diff)
        out["variance"] = float(noise * np.sum(a * a))
        out["noise"] = float(noise)
    return dict(sorted(out.items()))


def _kernel_problems(
    kernel: KernelRegression | Callable[[int], KernelRegression], sizes: Sequence[int]
) -> list[KernelRegression]:
    """The kernel problems of :func:`check_kernel_monte_carlo`: one, or the family at each size."""
    if callable(kernel) and not isinstance(kernel, KernelRegression):
        if not sizes:
            raise InvalidArgument("a kernel family (size -> KernelRegression) needs sizes=(...)")
        return [kernel(int(s)) for s in sizes]
    if isinstance(kernel, KernelRegression):
        if sizes:
            raise InvalidArgument(
                "sizes only apply to a kernel family; pass a callable size -> KernelRegression"
            )
        return [kernel]
    raise InvalidArgument(f"kernel must be a KernelRegression or a callable, got {type(kernel).__name__}")


def _kernel_draws(
    problem: KernelRegression, lam: float, features: Features, conditional: bool, base: int, n_samples: int
) -> list[dict[str, float]]:
    """``n_samples`` fits of ``problem`` on the stream of ``base`` (the same for every problem)."""
    return replay(
        base,
        n_samples,
        lambda local: simulate_kernel_ridge(
            np.asarray(problem.eigenvalues),
            np.asarray(problem.target),
            int(problem.samples),
            problem.ridge(lam),
            float(problem.noise),
            local,
            features=features,
            conditional=conditional,
        ),
    )


def check_kernel_monte_carlo(
    kernel: KernelRegression | Callable[[int], KernelRegression],
    sizes: Sequence[int] = (),
    *,
    rng: np.random.Generator,
    lam: float,
    features: Features = "gaussian",
    loss: LossFormula | None = None,
    terms: Sequence[str] | None = None,
    n_samples: int = 30,
    n_se: float = 4.0,
    c_finite: float = 5.0,
) -> MonteCarloCheck:
    """Compare a kernel's derived test error with simulated kernel ridge regression.

    Parameters
    ----------
    kernel : KernelRegression or callable
        A numerical kernel problem, or ``size -> KernelRegression`` evaluated at each of
        ``sizes`` (then ``N = min(D, P)`` must grow with the size).
    lam : float
        The ridge in the kernel's convention.
    features : {'gaussian', 'circle'} or callable
        How the eigenfunction values are drawn. Gaussian: the formula is exact in the
        limit and the tolerance is the project's ``4 s.e. + 5 |exact| / N``. Any other
        feature law tests universality: state the ``c_finite`` you accept.
    loss : LossFormula, optional
        The formula to check (default ``kernel.test_error()``); a doctored one shows the
        check can fail.
    terms : sequence of str, optional
        Terms to compare (default: ``bias``, ``variance`` and ``total`` for Gaussian
        features, ``total`` otherwise; the conditional terms cost a ``P x P`` inverse).

    Returns
    -------
    MonteCarloCheck
        One report per term, a row per kernel problem (by increasing ``N``), all problems
        replaying the same random stream.

    Examples
    --------
    >>> import numpy as np
    >>> check_kernel_monte_carlo(3, rng=np.random.default_rng(0), lam=1e-2)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: kernel must be a KernelRegression or a callable, got int
    """
    check_rng(rng)
    if n_samples < 2:
        raise InvalidArgument(f"n_samples = {n_samples}: need at least 2 draws for a standard error")
    problems = _kernel_problems(kernel, sizes)
    if not callable(features) and features not in ("gaussian", "circle"):
        raise InvalidArgument(
            f"features = {features!r}: use 'gaussian', 'circle' or a callable (rng, P, D) -> P x D"
        )
    if terms is None:
        terms = ("bias", "variance", "total") if features == "gaussian" else ("total",)
    conditional = any(t in ("bias", "variance", "noise") for t in terms)
    rows: dict[str, list[VerificationRow]] = {t: [] for t in terms}
    base = int(rng.integers(2**63))
    for problem in sorted(problems, key=lambda k: min(k.dimension, int(k.samples))):
        formula = loss if loss is not None else problem.test_error()
        exact = formula.evaluate(problem.values(lam))
        draws = _kernel_draws(problem, lam, features, conditional, base, n_samples)
        n = min(problem.dimension, int(problem.samples))
        for t in terms:
            key = "E_test" if t == "total" else t
            samples = np.array([dr[key] for dr in draws])
            rows[t].append(acceptance_row(n, float(np.real(exact[t])), samples, n_se, c_finite))
    feat = features if isinstance(features, str) else "custom"
    return reports_check(
        terms,
        rows,
        lambda t: f"{t} of kernel ridge regression ({feat} features) at lam={lam}",
        n_se=n_se,
        c_finite=c_finite,
    )


def simulate_gcv(
    spectrum: np.ndarray,
    beta: np.ndarray,
    p: int,
    lam: float,
    noise: float,
    rng: np.random.Generator,
) -> dict[str, float]:
    r"""One data set: the GCV estimator, its two wrong variants and the realised errors.

    ``gcv`` :math:`=E_{tr}/(1-\widehat{\mathrm{df}}/P)^2`, ``unsquared``
    :math:`=E_{tr}/(1-\widehat{\mathrm{df}}/P)`, ``E_train``, ``df_hat``
    :math:`=\operatorname{Tr}K(K+\lambda)^{-1}` and ``E_test``
    :math:`=(\hat\beta-\beta)^\top\Sigma(\hat\beta-\beta)+\sigma^2` (computed from the
    ``P x P`` Gram matrix :math:`K=XX^\top/P`).

    >>> import numpy as np
    >>> out = simulate_gcv(np.ones(30), np.ones(30) / 6, 20, 0.1, 0.1, np.random.default_rng(0))
    >>> out["gcv"] > out["unsquared"] > out["E_train"]
    True
    """
    spec = np.asarray(spectrum, dtype=float)
    b = np.asarray(beta, dtype=float)
    d = spec.size
    x = rng.standard_normal((p, d)) * np.sqrt(spec)
    y = x @ b + np.sqrt(noise) * rng.standard_normal(p)
    if p <= d:  # dual: K = X X^T / P
        mu, u = np.linalg.eigh(x @ x.T / p)
        alpha = u @ ((u.T @ y) / (mu + lam))  # (K + lam)^-1 y
        resid = lam * alpha  # y - X beta_hat
        beta_hat = x.T @ alpha / p
    else:  # primal: Sigma_hat = X^T X / P has the same nonzero spectrum
        mu, v = np.linalg.eigh(x.T @ x / p)
        beta_hat = v @ ((v.T @ (x.T @ y / p)) / (mu + lam))
        resid = y - x @ beta_hat
    e_train = float(resid @ resid / p)
    df_hat = float(np.sum(mu / (mu + lam)))
    diff = beta_hat - b
    shrink = 1 - df_hat / p
    return {
        "E_test": float(diff @ (spec * diff) + noise),
        "E_train": e_train,
        "df_hat": df_hat,
        "gcv": e_train / shrink**2,
        "unsquared": e_train / shrink,
    }


def _gcv_model(
    gcv: GCVEstimator | RidgeRegression,
    lam: float,
    ratio: float,
    noise: float,
    estimators: Sequence[str],
    n_samples: int,
) -> RidgeRegression:
    """The validated inputs of :func:`check_gcv`: the ridge model (without covariate shift)."""
    if not (lam > 0 and ratio > 0 and noise >= 0):
        raise InvalidArgument(f"need lam > 0, ratio > 0, noise >= 0; got {lam}, {ratio}, {noise}")
    bad = [e for e in estimators if e not in ("gcv", "unsquared", "E_train")]
    if bad or not estimators:
        raise InvalidArgument(
            f"estimators = {tuple(estimators)!r}: choose from 'gcv', 'unsquared', 'E_train'"
        )
    if n_samples < 2:
        raise InvalidArgument(f"n_samples = {n_samples}: need at least 2 draws for a standard error")
    model = gcv.model if isinstance(gcv, GCVEstimator) else gcv
    if not isinstance(model, RidgeRegression):
        raise InvalidArgument(f"check_gcv needs a GCVEstimator or RidgeRegression, got {type(gcv).__name__}")
    if model.test_covariance is not None:
        raise InvalidArgument("GCV estimates the in-distribution test error; the model has a test covariance")
    return model


def _gcv_values(
    model: RidgeRegression, spectrum: np.ndarray, beta: np.ndarray, lam: float, d: int, p: int, noise: float
) -> dict[str, Any]:
    """The values at which the model's test error is evaluated."""
    p_sym, d_sym = model.dims
    return {
        model.sigma.name: spectrum,
        model.beta.name: beta,
        str(model.lam): lam,
        str(d_sym): d,
        str(p_sym): p,
        str(model.noise): noise,
    }


def check_gcv(
    gcv: GCVEstimator | RidgeRegression,
    sizes: Sequence[int] = (300,),
    *,
    rng: np.random.Generator,
    lam: float,
    ratio: float,
    noise: float,
    spectrum: Callable[[int], np.ndarray] | None = None,
    beta: Callable[[int], np.ndarray] | None = None,
    estimators: Sequence[str] = ("gcv",),
    n_samples: int = 30,
    n_se: float = 4.0,
    c_finite: float = 5.0,
) -> MonteCarloCheck:
    """Mean of estimators over simulated data sets against the derived test error.

    ``sizes`` are dimensions ``D``, ``P = round(ratio * D)``; ``N = min(D, P)``. Default
    spectrum ``k^-1.2`` and target ``beta_k = k^-0.45`` (MATH.md 4.2). ``estimators``
    (one report each, all from the same data sets): ``gcv`` (should pass), ``E_train`` or
    ``unsquared`` (should be rejected).

    >>> import numpy as np
    >>> check_gcv(None, rng=np.random.default_rng(0), lam=0.0, ratio=1.0, noise=0.1)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: need lam > 0, ratio > 0, noise >= 0; got 0.0, 1.0, 0.1
    """
    check_rng(rng)
    model = _gcv_model(gcv, lam, ratio, noise, estimators, n_samples)
    test = model.test_error()
    spec_at = size_function(spectrum, lambda d: np.arange(1, d + 1) ** -1.2)
    beta_at = size_function(beta, lambda d: np.arange(1, d + 1) ** -0.45)
    rows: dict[str, list[VerificationRow]] = {e: [] for e in estimators}
    base = int(rng.integers(2**63))
    for d in sorted(int(s) for s in sizes):
        spec, b, p = spec_at(d), beta_at(d), round(ratio * d)
        exact = float(np.real(test.evaluate(_gcv_values(model, spec, b, lam, d, p, noise))["total"]))
        draws = replay(base, n_samples, functools.partial(simulate_gcv, spec, b, p, lam, noise))
        for e in estimators:
            rows[e].append(
                acceptance_row(min(d, p), exact, np.array([dr[e] for dr in draws]), n_se, c_finite)
            )
    return reports_check(
        estimators,
        rows,
        lambda e: f"mean {e} vs E_test at lam={lam}, P/D={ratio}, sigma2={noise}",
        n_se=n_se,
        c_finite=c_finite,
    )


@monte_carlo_witness.register(KernelRegression)
def _kernel_witness(
    kernel: KernelRegression, sizes: Sequence[int] | None, *, rng: np.random.Generator, **kw: Any
) -> Any:
    return check_kernel_monte_carlo(kernel, sizes or (), rng=rng, **kw)


@monte_carlo_witness.register(GCVEstimator)
def _gcv_witness(
    gcv: GCVEstimator, sizes: Sequence[int] | None, *, rng: np.random.Generator, **kw: Any
) -> Any:
    return check_gcv(gcv, sizes or (300,), rng=rng, **kw)
