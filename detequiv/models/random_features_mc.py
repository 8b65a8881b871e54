r"""The simulation witness of the random-feature ridge loss (MATH.md 4.5): replica estimators.

:func:`simulate_random_features` fits ridge regression on linear random features for one
draw of two independent data sets ``X, X'`` (``P x D``, rows :math:`\Sigma^{1/2}z`) and two
independent feature matrices ``F, F'`` (``N x D``, iid standard entries,
:math:`W_F=F^\top F/N`). With :math:`G=(\lambda+W_F\hat\Sigma)^{-1}` the noiseless error is
:math:`d(X,F)=\hat\beta-\beta=-\lambda G\beta`, and the fine-grained split of the test error
is estimated without bias from the four errors :math:`d(X,F), d(X',F), d(X,F'), d(X',F')`
(norms in :math:`\Sigma`):

* :math:`\mathcal B=\|\mathbb E_{X,F}d\|^2`: :math:`d(X,F)^\top\Sigma d(X',F')` (nothing shared);
* :math:`\mathcal B+\mathcal V_F=\mathbb E_F\|\mathbb E_Xd\|^2`: :math:`d(X,F)^\top\Sigma d(X',F)`
  (the features shared);
* :math:`\mathcal B+\mathcal V_X=\mathbb E_X\|\mathbb E_Fd\|^2`: :math:`d(X,F)^\top\Sigma d(X,F')`
  (the data shared);
* :math:`\mathbb E\|d\|^2`: :math:`d(X,F)^\top\Sigma d(X,F)`;

each averaged over the pairings of the four draws that have the same law. The label-noise
variance is the exact conditional expectation over the noise given ``(X, F)``,
:math:`\frac{\sigma^2}{P^2}\operatorname{Tr}\Sigma GW_FX^\top XW_FG^\top`, and ``E_test`` is
the realised test error :math:`(\hat\beta-\beta)^\top\Sigma(\hat\beta-\beta)+\sigma^2` of the
estimator fitted on noisy labels.

:func:`check_monte_carlo` compares every term of a
:class:`~detequiv.models.ridge.LossFormula` of
:class:`~detequiv.models.random_features.RandomFeatureRidge` (and its total, against
``E_test``) with these estimators at several ``D`` (``N = ratio_n D``, ``P = ratio_p D``)
through :func:`~detequiv.models.simulation.check_loss_terms`: tolerance ``n_se`` standard errors plus
``c_finite |exact| / D``. Importing this module registers it as the model's witness
(``loss.check_monte_carlo``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sympy as sp

from ..derivations.formula import LossFormula
from ..errors import InvalidArgument
from ..witnesses.common import MonteCarloCheck
from ..witnesses.sampling import check_rng
from .simulation import SeededDraws, check_loss_terms, size_function

__all__ = ["check_monte_carlo", "simulate_random_features", "TERMS"]

#: The keys of :func:`simulate_random_features`: the fine-grained terms of MATH.md 4.5,
#: then the realised test error.
TERMS = (
    "bias",
    "variance_features",
    "variance_data",
    "variance_interaction",
    "variance_noise",
    "noise",
    "E_test",
)


def _check_simulation_inputs(
    spectrum: Any, beta: Any, n: int, p: int, lam: float, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """The validated spectrum and target of :func:`simulate_random_features` (float arrays)."""
    spectrum = np.asarray(spectrum, dtype=float)
    beta = np.asarray(beta, dtype=float)
    d = spectrum.shape[0]
    if spectrum.ndim != 1 or beta.shape != (d,):
        raise InvalidArgument(
            f"spectrum has shape {spectrum.shape} and beta {beta.shape}; give two 1-D arrays of length D"
        )
    for name, value in (("n", n), ("p", p)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidArgument(f"{name}={value!r} must be a positive integer")
    if not lam > 0 or not noise >= 0:
        raise InvalidArgument(f"need lam > 0 and noise >= 0, got lam={lam!r}, noise={noise!r}")
    return spectrum, beta


def _replica_errors(
    spectrum: np.ndarray, beta: np.ndarray, n: int, p: int, lam: float, noise: float, rng: np.random.Generator
) -> tuple[dict[tuple[int, int], np.ndarray], list[float], list[float]]:
    r"""The noiseless errors :math:`d(X_i,F_j)` of the four pairings of the replicas, and, for the
    pairings ``(X, F)`` and ``(X', F')``, the label-noise variance (exact given the data and
    features) and the realised test error.

    Draws ``X, X'``, then ``F, F'``, then the label noise of ``(X, F)`` and of ``(X', F')``.
    """
    d = spectrum.shape[0]
    root = np.sqrt(spectrum)
    xs = [rng.standard_normal((p, d)) * root for _ in range(2)]  # X, X'
    fs = [rng.standard_normal((n, d)) for _ in range(2)]  # F, F'
    s_hat = [x.T @ x / p for x in xs]
    w_f = [f.T @ f / n for f in fs]
    eye = np.eye(d)
    errors: dict[tuple[int, int], np.ndarray] = {}
    noise_var, e_test = [], []
    for i in range(2):  # data copy
        for j in range(2):  # feature copy
            m = lam * eye + w_f[j] @ s_hat[i]
            if i != j:
                errors[i, j] = np.linalg.solve(m, -lam * beta)
                continue
            # (X, F) and (X', F'): also G W_F X^T / P, the map from the label noise to the error
            sol = np.linalg.solve(m, np.column_stack([-lam * beta, w_f[j] @ xs[i].T / p]))
            errors[i, j], a = sol[:, 0], sol[:, 1:]
            noise_var.append(noise * float(np.sum(spectrum[:, None] * a * a)))
            e = errors[i, j] + a @ (np.sqrt(noise) * rng.standard_normal(p))
            e_test.append(float(e @ (spectrum * e)) + noise)
    return errors, noise_var, e_test


def _split_estimators(
    errors: dict[tuple[int, int], np.ndarray], spectrum: np.ndarray
) -> tuple[float, float, float, float]:
    r"""``(B, B + V_F, B + V_X, E||d||^2)`` from the replica overlaps :math:`d^\top\Sigma d'`,
    each averaged over the pairings with the same law."""

    def overlap(a: tuple[int, int], b: tuple[int, int]) -> float:
        return float(errors[a] @ (spectrum * errors[b]))

    b = (overlap((0, 0), (1, 1)) + overlap((0, 1), (1, 0))) / 2  # nothing shared
    b_f = (overlap((0, 0), (1, 0)) + overlap((0, 1), (1, 1))) / 2  # features shared
    b_x = (overlap((0, 0), (0, 1)) + overlap((1, 0), (1, 1))) / 2  # data shared
    both = sum(overlap(k, k) for k in errors) / 4  # E ||d||^2
    return b, b_f, b_x, both


def simulate_random_features(
    spectrum: np.ndarray,
    beta: np.ndarray,
    n: int,
    p: int,
    lam: float,
    noise: float,
    rng: np.random.Generator,
) -> dict[str, float]:
    r"""One replica draw of random-feature ridge regression: unbiased estimates of every term.

    Parameters
    ----------
    spectrum, beta : numpy.ndarray
        Eigenvalues of :math:`\Sigma` (length ``D``) and the target in its eigenbasis.
    n, p : int
        Number of features ``N`` and of samples ``P``.
    lam : float
        Ridge (``> 0``).
    noise : float
        Label-noise variance :math:`\sigma^2`.
    rng : numpy.random.Generator
        Draws ``X, X', F, F'`` and the label noise.

    Returns
    -------
    dict
        :data:`TERMS`: ``bias`` (:math:`\mathcal B`), ``variance_features``
        (:math:`\mathcal V_F`), ``variance_data`` (:math:`\mathcal V_X`),
        ``variance_interaction`` (:math:`\mathcal V_{XF}`), ``variance_noise`` (exact over the
        noise given the data and features), ``noise`` and ``E_test`` (realised noise). Each
        has the mean of the corresponding term of MATH.md 4.5 at these sizes (the first four
        are differences of replica overlaps, so a single draw may be negative).

    Examples
    --------
    >>> import numpy as np
    >>> k = np.arange(1, 41.0)
    >>> out = simulate_random_features(k**-1.3, k**-0.6, 20, 80, 1e-2, 0.04, np.random.default_rng(0))
    >>> list(out) == list(TERMS)
    True
    >>> out["noise"], out["E_test"] > out["noise"]
    (0.04, True)
    """
    spectrum, beta = _check_simulation_inputs(spectrum, beta, n, p, lam, noise)
    errors, noise_var, e_test = _replica_errors(spectrum, beta, n, p, lam, noise, rng)
    b, b_f, b_x, both = _split_estimators(errors, spectrum)
    return {
        "bias": b,
        "variance_features": b_f - b,
        "variance_data": b_x - b,
        "variance_interaction": both - b_f - b_x + b,
        "variance_noise": float(np.mean(noise_var)),
        "noise": float(noise),
        "E_test": float(np.mean(e_test)),
    }


def _symbol_name(x: Any, what: str) -> str:
    if not isinstance(x, sp.Symbol):
        raise InvalidArgument(
            f"the model's {what} is {x!r}; the witness varies the sizes, so declare it as a sympy Symbol"
        )
    return x.name


def _simulated_model(
    loss: LossFormula, lam: float, noise: float, ratio_n: float, ratio_p: float
) -> tuple[Any, tuple[str, str, str], list[sp.Symbol]]:
    """The validated inputs of :func:`check_monte_carlo`: the loss's random-feature model, the
    names of its sizes ``(P, D, N)`` and its label-noise symbols (none or one)."""
    model = getattr(loss, "model", None)
    if model is None or not hasattr(model, "features"):
        raise InvalidArgument(
            f"loss={loss!r} has no RandomFeatureRidge model; pass RandomFeatureRidge(...).test_error()"
        )
    if not lam > 0 or not noise >= 0 or not ratio_n > 0 or not ratio_p > 0:
        raise InvalidArgument(
            f"need lam > 0, noise >= 0, ratio_n > 0, ratio_p > 0; got lam={lam!r}, noise={noise!r}, "
            f"ratio_n={ratio_n!r}, ratio_p={ratio_p!r}"
        )
    unknown = set(loss.terms) - set(TERMS)
    if unknown:
        raise InvalidArgument(f"no simulated estimator for the terms {sorted(unknown)}; known: {TERMS}")
    p_name, d_name = (_symbol_name(x, what) for x, what in zip(model.dims, ("P", "D"), strict=True))
    n_name = _symbol_name(model.n_features, "N")
    noise_syms = sorted(sp.sympify(model.noise).free_symbols, key=str)
    if len(noise_syms) > 1 or (not noise_syms and float(model.noise) != noise):
        raise InvalidArgument(
            f"the model's noise {model.noise} must be one symbol (set by noise=...) or equal noise={noise}"
        )
    return model, (p_name, d_name, n_name), noise_syms


def _feature_and_sample_sizes(d: int, ratio_n: float, ratio_p: float) -> tuple[int, int]:
    """``(N, P)`` at dimension ``d`` (at least 1 each)."""
    return max(1, round(ratio_n * d)), max(1, round(ratio_p * d))


def _formula_values(
    loss: LossFormula,
    model: Any,
    names: tuple[str, str, str],
    noise_syms: list[sp.Symbol],
    spectrum: np.ndarray,
    beta: np.ndarray,
    lam: float,
    noise: float,
    sizes: tuple[int, int, int],
) -> dict[Any, Any]:
    """The values at which ``loss`` is evaluated: ``names`` are those of ``(P, D, N)``, ``sizes``
    the values ``(D, N, P)``."""
    (p_name, d_name, n_name), (d, n, p) = names, sizes
    out: dict[Any, Any] = {model.sigma.name: spectrum, model.beta.name: beta, str(loss.lam): lam}
    out.update({d_name: d, n_name: n, p_name: p})
    out.update({s.name: noise for s in noise_syms})
    return out


def _label(lam: float, ratio_n: float, ratio_p: float, noise: float, name: str) -> str:
    """The report label of the term ``name``."""
    return (
        f"{name} of random-feature ridge at lam={lam:g}, N/D={ratio_n:g}, P/D={ratio_p:g}, sigma2={noise:g}"
    )


def check_monte_carlo(
    loss: LossFormula,
    sizes: Sequence[int] = (100, 200, 400),
    *,
    rng: np.random.Generator,
    lam: float = 1e-2,
    ratio_n: float = 0.5,
    ratio_p: float = 2.0,
    noise: float = 0.04,
    spectrum: Callable[[int], np.ndarray] | None = None,
    beta: Callable[[int], np.ndarray] | None = None,
    n_samples: int = 20,
    c_finite: float = 5.0,
    n_se: float = 4.0,
) -> MonteCarloCheck:
    """Compare every term (and the total) of a random-feature ridge loss with replica simulations.

    Parameters
    ----------
    loss : LossFormula
        ``RandomFeatureRidge(...).test_error()`` (anything with its ``name``, ``terms``,
        ``model`` and ``evaluate``).
    sizes : sequence of int
        Input dimensions ``D``; ``N = round(ratio_n * D)`` features, ``P = round(ratio_p * D)``
        samples. Keep ``N`` and ``P`` away from ``D`` and from each other: the finite-size
        corrections grow near the interpolation thresholds.
    lam, noise : float
        Ridge (``> 0``) and label-noise variance.
    spectrum, beta : callable, optional
        ``D -> eigenvalues`` of ``Sigma`` (default ``k^-1.3``) and ``D -> target`` in its
        eigenbasis (default ``k^-0.6``), ``k = 1..D`` (MATH.md 4.5).
    n_samples : int
        Replica draws per size (each draws two data sets and two feature matrices).
    c_finite, n_se : float
        Tolerance ``n_se * s.e. + c_finite * |exact| / D``.

    Returns
    -------
    MonteCarloCheck
        One :class:`~detequiv.witnesses.acceptance.VerificationReport` per term of ``loss``, in
        its order, then the total against the realised ``E_test``.

    Examples
    --------
    >>> import numpy as np
    >>> check_monte_carlo(None, rng=np.random.default_rng(0))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: loss=None has no RandomFeatureRidge model; pass ...
    """
    check_rng(rng)
    model, names, noise_syms = _simulated_model(loss, lam, noise, ratio_n, ratio_p)
    spec = size_function(spectrum, lambda d: np.arange(1, d + 1, dtype=float) ** -1.3)
    target = size_function(beta, lambda d: np.arange(1, d + 1, dtype=float) ** -0.6)

    def values(d: int) -> dict[Any, Any]:
        n, p = _feature_and_sample_sizes(d, ratio_n, ratio_p)
        return _formula_values(loss, model, names, noise_syms, spec(d), target(d), lam, noise, (d, n, p))

    def simulate(d: int, local: np.random.Generator) -> dict[str, float]:
        n, p = _feature_and_sample_sizes(d, ratio_n, ratio_p)
        return simulate_random_features(spec(d), target(d), n, p, lam, noise, local)

    return check_loss_terms(
        loss,
        values,
        SeededDraws(simulate),
        total="E_test",
        label=functools.partial(_label, lam, ratio_n, ratio_p, noise),
        sizes=sizes,
        n_samples=n_samples,
        rng=rng,
        c_finite=c_finite,
        n_se=n_se,
    )
