"""The simulation witness of a derived loss: ridge regression run on sampled data.

:func:`check_monte_carlo` draws data ``X`` (rows :math:`\\Sigma^{1/2}z`) and labels
:math:`y=X\\beta+\\varepsilon` at several sizes ``D`` (``P = ratio * D``), fits
:math:`\\hat\\beta=(\\hat\\Sigma+\\lambda)^{-1}X^\\top y/P`, and compares each term of a
:class:`~detequiv.models.ridge.LossFormula` with its sample mean through
:func:`~detequiv.models.simulation.check_loss_terms` (tolerance from the standard error plus the
``O(1/D)`` finite-size term). Per draw, the bias and variance terms are the exact
conditional expectations over the label noise given ``X`` (the random functionals the
formula was derived from); the ``total`` row uses the realised noise, i.e. the error of
the fitted estimator itself. Importing this module registers the witness.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..derivations.formula import LossFormula
from ..errors import InvalidArgument
from ..witnesses.common import MonteCarloCheck
from ..witnesses.sampling import check_rng
from .simulation import SeededDraws, check_loss_terms, size_function

__all__ = ["check_monte_carlo", "simulate_ridge"]


def simulate_ridge(
    spectrum: np.ndarray,
    beta: np.ndarray,
    p: int,
    lam: float,
    noise: float,
    rng: np.random.Generator,
    *,
    test_covariance: np.ndarray | None = None,
    test_noise: float | None = None,
) -> dict[str, float]:
    """One draw of ridge regression: the terms of the test and training errors.

    Returns ``bias``, ``variance`` (conditional on ``X``, exact over the noise),
    ``noise``, ``E_test`` (realised noise), ``signal``, ``noise_part`` (training error
    parts, conditional on ``X``) and ``E_train`` (realised).

    >>> import numpy as np
    >>> out = simulate_ridge(np.ones(50), np.ones(50) / np.sqrt(50), 100, 1.0, 0.25, np.random.default_rng(0))
    >>> sorted(out)
    ['E_test', 'E_train', 'bias', 'noise', 'noise_part', 'signal', 'variance']
    """
    d = spectrum.shape[0]
    root = np.sqrt(spectrum)
    x = rng.standard_normal((p, d)) * root
    s_hat = x.T @ x / p
    g = np.linalg.inv(s_hat + lam * np.eye(d))
    s_test = np.diag(spectrum) if test_covariance is None else test_covariance
    noise_t = noise if test_noise is None else test_noise
    gb = g @ beta
    bias = lam**2 * gb @ s_test @ gb
    variance = noise / p * np.trace(s_test @ g @ s_hat @ g)
    eps = np.sqrt(noise) * rng.standard_normal(p)
    y = x @ beta + eps
    b_hat = g @ (x.T @ y) / p
    e = b_hat - beta
    e_test = e @ s_test @ e + noise_t
    resid = y - x @ b_hat
    e_train = resid @ resid / p
    signal = lam**2 * gb @ s_hat @ gb
    k = x @ x.T / p
    kinv = np.linalg.inv(k + lam * np.eye(p))
    noise_part = noise * lam**2 * np.trace(kinv @ kinv) / p
    return {
        "bias": float(bias),
        "variance": float(variance),
        "noise": float(noise_t),
        "E_test": float(e_test),
        "signal": float(signal),
        "noise_part": float(noise_part),
        "E_train": float(e_train),
    }


def _simulated_model(
    loss: LossFormula, lam: float, ratio: float, noise: float, test_spectrum: Callable[[int], Any] | None
) -> Any:
    """The validated inputs of :func:`check_monte_carlo`: the loss's ridge model."""
    if lam < 0 or ratio <= 0 or noise < 0:
        raise InvalidArgument(f"need lam >= 0, ratio > 0, noise >= 0; got {lam}, {ratio}, {noise}")
    model = loss.model
    if model is None:
        raise InvalidArgument("this loss has no model to simulate")
    if model.test_covariance is not None and test_spectrum is None:
        raise InvalidArgument("the model has a test covariance; pass test_spectrum=D -> eigenvalues")
    return model


def _formula_values(
    loss: LossFormula,
    model: Any,
    d: int,
    spectrum: np.ndarray,
    beta: np.ndarray,
    lam: float,
    ratio: float,
    noise: float,
    test_spectrum: Callable[[int], Any] | None,
) -> dict[Any, Any]:
    """The values at which ``loss`` is evaluated at dimension ``d`` (the test noise is ``noise``)."""
    out: dict[Any, Any] = {
        model.sigma.name: spectrum,
        model.beta.name: beta,
        str(loss.lam): lam,
        str(model.dims[1]): d,
        str(model.dims[0]): round(ratio * d),
        str(model.noise): noise,
    }
    if test_spectrum is not None:
        out[model.test_covariance.name] = np.asarray(test_spectrum(d), dtype=float)
    if model.test_noise is not None:
        for s in getattr(model.test_noise, "free_symbols", ()):
            out.setdefault(str(s), noise)
    return out


def _unit_power_law(d: int) -> np.ndarray:
    """The default target: ``k^-0.6``, ``k = 1..D``, normalized to 1."""
    v = np.arange(1, d + 1) ** -0.6
    return v / np.linalg.norm(v)


def check_monte_carlo(
    loss: LossFormula,
    sizes: Sequence[int] = (100, 200, 400),
    *,
    rng: np.random.Generator,
    lam: float = 0.1,
    ratio: float = 2.0,
    noise: float = 0.25,
    spectrum: Callable[[int], np.ndarray] | None = None,
    beta: Callable[[int], np.ndarray] | None = None,
    test_spectrum: Callable[[int], np.ndarray] | None = None,
    n_samples: int = 20,
    c_finite: float = 5.0,
    n_se: float = 4.0,
) -> MonteCarloCheck:
    """Compare every term (and the total) of a ridge loss with simulated ridge regression.

    Parameters
    ----------
    sizes : sequence of int
        Input dimensions ``D``; ``P = round(ratio * D)``.
    lam, ratio, noise : float
        Ridge, samples per dimension ``P / D`` and label-noise variance.
    spectrum, beta : callable, optional
        ``D -> eigenvalues`` of ``Sigma`` (default ``linspace(0.2, 2, D)``) and
        ``D -> target`` in its eigenbasis (default power law ``k^-0.6`` normalized to 1).
    test_spectrum : callable, optional
        ``D -> eigenvalues`` of a covariate-shifted test covariance, diagonal in the
        same basis (default: ``Sigma``).

    Returns
    -------
    MonteCarloCheck
        One report per term of ``loss``, in its order, then the total against the realised
        error (:func:`simulate_ridge`'s ``E_test`` or ``E_train``).

    Examples
    --------
    >>> import numpy as np
    >>> check_monte_carlo(None, rng=np.random.default_rng(0), ratio=-1.0)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: need lam >= 0, ratio > 0, noise >= 0; got 0.1, -1.0, 0.25
    """
    check_rng(rng)
    model = _simulated_model(loss, lam, ratio, noise, test_spectrum)
    shifted = model.test_covariance is not None
    spec = size_function(spectrum, lambda d: np.linspace(0.2, 2.0, d))
    target = size_function(beta, _unit_power_law)

    def values(d: int) -> dict[Any, Any]:
        test = test_spectrum if shifted else None
        return _formula_values(loss, model, d, spec(d), target(d), lam, ratio, noise, test)

    def simulate(d: int, local: np.random.Generator) -> dict[str, float]:
        s_test = np.diag(np.asarray(test_spectrum(d), dtype=float)) if shifted else None  # type: ignore[misc]
        # the test noise is the training noise (values() sets the test-noise symbols to it)
        return simulate_ridge(
            spec(d), target(d), round(ratio * d), lam, noise, local, test_covariance=s_test, test_noise=noise
        )

    return check_loss_terms(
        loss,
        values,
        SeededDraws(simulate),
        label=lambda name: f"{name} of ridge regression at lam={lam}, P/D={ratio}, sigma2={noise}",
        sizes=sizes,
        n_samples=n_samples,
        rng=rng,
        c_finite=c_finite,
        n_se=n_se,
    )
