r"""The simulation witness of a derived gradient-flow curve: gradient flow run on sampled data.

:func:`simulate_gradient_flow` draws ``X`` (rows :math:`\Sigma^{1/2}z`) and labels
:math:`y=X\beta+\varepsilon`, and runs gradient flow from :math:`w_0=0` exactly through the
eigendecomposition :math:`\hat\Sigma=V\operatorname{diag}(s)V^\top`:
:math:`w(t)=Vg_t(s)V^\top X^\top y/P` with :math:`g_t(s)=(1-e^{-ts})/s` (:math:`g_t(0)=t`).
It returns, on a grid of times, the realised test and training losses and the terms of
:class:`~detequiv.models.gradient_flow.GradientFlow`'s curves as exact conditional
expectations over the label noise given ``X`` (the random functionals they were derived
from). :func:`check_monte_carlo` compares a curve with the sample means through
:func:`~detequiv.models.simulation.verify_terms` at each time (tolerance from the standard error
plus the ``O(1/D)`` finite-size term). Importing this module registers the witness.

:func:`simulate_random_feature_flow` does the same for linear random features
(:class:`~detequiv.models.gradient_flow.RandomFeatureGradientFlow`): gradient flow in
feature space is solved exactly through the eigendecomposition of the ``N x N`` kernel
:math:`K_F=F\hat\Sigma F^\top`, with the label-noise variance exact given ``X, F``, and
:func:`check_monte_carlo` dispatches on the curve's model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import sympy as sp

from ..derivations.laplace import LossCurve
from ..errors import InvalidArgument
from ..witnesses.common import MonteCarloCheck
from ..witnesses.sampling import check_rng
from .simulation import SeededDraws, TermCheck, size_function, verify_terms

__all__ = ["simulate_gradient_flow", "simulate_random_feature_flow", "check_monte_carlo"]


def simulate_gradient_flow(
    spectrum: np.ndarray,
    beta: np.ndarray,
    p: int,
    noise: float,
    times: Any,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """One draw of gradient flow on ``p`` samples; every entry is an array over ``times``.

    Returns ``noise``, ``forcing``, ``variance`` (test-loss terms, conditional on ``X``),
    ``L_test`` (the realised test loss of :math:`w(t)`), ``noise_floor``, ``signal``,
    ``noise_part`` (training-loss terms, conditional on ``X``) and ``L_train`` (realised).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> out = simulate_gradient_flow(np.ones(40), np.ones(40) / np.sqrt(40), 80, 0.25, [0.0, 1.0], rng)
    >>> sorted(out)
    ['L_test', 'L_train', 'forcing', 'noise', 'noise_floor', 'noise_part', 'signal', 'variance']
    >>> round(float(out["forcing"][0]), 12), round(float(out["variance"][0]), 12)  # w(0) = 0
    (1.0, 0.0)
    """
    spectrum = np.asarray(spectrum, dtype=float)
    beta = np.asarray(beta, dtype=float)
    t = np.asarray(times, dtype=float).reshape(-1)
    if spectrum.ndim != 1 or beta.shape != spectrum.shape:
        raise InvalidArgument(f"spectrum {spectrum.shape} and beta {beta.shape} must be 1-D of equal length")
    if p < 1 or noise < 0 or np.any(t < 0):
        raise InvalidArgument(f"need p >= 1, noise >= 0, times >= 0; got {p}, {noise}, {t.min()}")
    d = spectrum.shape[0]
    x = rng.standard_normal((p, d)) * np.sqrt(spectrum)
    eps = np.sqrt(noise) * rng.standard_normal(p)
    y = x @ beta + eps
    s, v = np.linalg.eigh(x.T @ x / p)
    s = np.clip(s, 0.0, None)
    ts = t[:, None] * s[None, :]  # (T, D)
    decay = np.exp(-ts)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(s > 1e-12 * max(s.max(), 1e-300), -np.expm1(-ts) / s, t[:, None])
    b = v.T @ beta  # target in the eigenbasis of Sigma_hat
    sig_v = (v * spectrum[:, None]).T @ v  # V' Sigma V
    # test loss terms: e^{-t S^} beta and (sigma2 / P) Tr Sigma g_t^2 S^
    eb = decay * b  # (T, D) coordinates of e^{-t S^} beta
    forcing = np.einsum("ti,ij,tj->t", eb, sig_v, eb)
    variance = noise / p * (g**2 * s) @ np.diag(sig_v)
    # realised: w(t) = V g_t V' X' y / P
    u = v.T @ (x.T @ y) / p
    err = (g * u) @ v.T - beta  # (T, D)
    l_test = np.einsum("ti,i,ti->t", err, spectrum, err) + noise
    resid = (g * u) @ v.T @ x.T - y  # (T, P)
    l_train = np.mean(resid**2, axis=1)
    signal = (np.exp(-2 * ts) * s) @ b**2
    noise_part = noise / p * np.exp(-2 * ts).sum(axis=1)
    return {
        "noise": np.full(t.shape, float(noise)),
        "forcing": forcing,
        "variance": variance,
        "L_test": l_test,
        "noise_floor": np.full(t.shape, noise * (1 - d / p)),
        "signal": signal,
        "noise_part": noise_part,
        "L_train": l_train,
    }


def simulate_random_feature_flow(
    spectrum: np.ndarray,
    beta: np.ndarray,
    n: int,
    p: int,
    times: Any,
    rng: np.random.Generator,
    noise: float = 0.0,
) -> dict[str, np.ndarray]:
    r"""One draw of random-feature gradient flow (``n`` features, ``p`` samples, label noise ``noise``).

    ``X`` has rows :math:`\Sigma^{1/2}z`, ``F`` iid :math:`\mathcal N(0,1/n)` entries, labels
    :math:`y=X\beta+\varepsilon` (:math:`\operatorname{Var}\varepsilon=` ``noise``, drawn after
    ``X`` and ``F``); :math:`\dot w=-\frac1pFX^\top(XF^\top w-y)` from ``w = 0`` is
    :math:`w(t)=g_t(K_F)FX^\top y/p` with :math:`K_F=F\hat\Sigma F^\top=V\operatorname{diag}(s)V^\top`
    and :math:`g_t(s)=(1-e^{-ts})/s`. Returns over ``times``: ``noise`` (the constant),
    ``forcing`` (the realised noise-free error :math:`\|F^\top w_0(t)-\beta\|_\Sigma^2`, ``w_0``
    the flow on :math:`y=X\beta`), ``variance`` (its exact mean over :math:`\varepsilon` given
    ``X, F``: :math:`\frac{\sigma^2}p\sum_ia_ig_t(s_i)^2s_i`, :math:`a=\operatorname{diag}V^\top
    F\Sigma F^\top V`) and ``L_test`` (the realised :math:`\|F^\top w(t)-\beta\|_\Sigma^2+\sigma^2`).

    >>> import numpy as np
    >>> out = simulate_random_feature_flow(np.ones(30), np.ones(30) / np.sqrt(30), 20, 60, [0.0, 1e9],
    ...                                    np.random.default_rng(0))
    >>> round(float(out["L_test"][0]), 12)                       # w(0) = 0
    1.0
    >>> bool(0 < out["L_test"][1] < 1)                          # N < D: beta is not recovered
    True
    """
    spectrum = np.asarray(spectrum, dtype=float)
    beta = np.asarray(beta, dtype=float)
    t = np.asarray(times, dtype=float).reshape(-1)
    if spectrum.ndim != 1 or beta.shape != spectrum.shape:
        raise InvalidArgument(f"spectrum {spectrum.shape} and beta {beta.shape} must be 1-D of equal length")
    if n < 1 or p < 1 or np.any(t < 0) or not noise >= 0:
        raise InvalidArgument(
            f"need n >= 1, p >= 1, times >= 0, noise >= 0; got {n}, {p}, {t.min()}, {noise}"
        )
    d = spectrum.shape[0]
    x = rng.standard_normal((p, d)) * np.sqrt(spectrum)
    f = rng.standard_normal((n, d)) / np.sqrt(n)
    eps = np.sqrt(noise) * rng.standard_normal(p)
    xf = x @ f.T  # (p, n): the features of the samples
    s, v = np.linalg.eigh(xf.T @ xf / p)  # K_F = F S^ F', diagonalized once
    s = np.clip(s, 0.0, None)
    c0 = v.T @ (xf.T @ (x @ beta) / p)  # F X' X beta / p in the eigenbasis of K_F
    ce = v.T @ (xf.T @ eps / p)  # F X' eps / p
    ts = t[:, None] * s[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(s > 1e-12 * max(s.max(), 1e-300), -np.expm1(-ts) / s, t[:, None])
    fv = v.T @ f  # (n, d): F in the eigenbasis of K_F
    err0 = (g * c0) @ fv - beta  # noise-free beta_hat(t) - beta, (T, d)
    err = err0 + (g * ce) @ fv  # with the realised noise
    forcing = np.einsum("ti,i,ti->t", err0, spectrum, err0)
    a = np.einsum("id,d,id->i", fv, spectrum, fv)  # diag V' F Sigma F' V
    variance = noise / p * (g**2 * s) @ a  # E_eps of the noise part: (s2/p^2) Tr Sigma F'gV'(pK)VgF
    loss = np.einsum("ti,i,ti->t", err, spectrum, err) + noise
    return {"noise": np.full(t.shape, float(noise)), "forcing": forcing, "variance": variance, "L_test": loss}


def _validated(
    curve: LossCurve,
    simulate_model: Any,
    noise: float | None,
    ratio: float,
    feature_ratio: float,
    c_finite: float,
) -> tuple[Any, bool, float, float]:
    """The validated inputs of :func:`check_monte_carlo`: the curve's model, whether random
    features are simulated, the label-noise variance (default 0.09, or 0 for a noise-free
    model) and the finite-size coefficient (scaled to ``min(D, N, P)`` for random features,
    MATH.md's rule)."""
    model = curve.model
    if model is None:
        raise InvalidArgument("this curve has no model to simulate")
    rf = hasattr(model if simulate_model is None else simulate_model, "features")
    model_noise = sp.sympify(getattr(model, "noise", 0))
    if rf and noise and model_noise == 0:
        raise InvalidArgument(
            f"noise={noise}: this curve was derived with noise-free labels (its model has noise=0); "
            "build RandomFeatureGradientFlow(..., noise=sympy.Symbol('sigma2')) to simulate label noise"
        )
    noise = (0.0 if model_noise == 0 else 0.09) if noise is None else noise
    if ratio <= 0 or noise < 0:
        raise InvalidArgument(f"need ratio > 0 and noise >= 0; got {ratio}, {noise}")
    if rf and feature_ratio <= 0:
        raise InvalidArgument(f"need feature_ratio > 0; got {feature_ratio}")
    if rf:  # MATH.md's rule: the finite-size term uses the smallest dimension min(D, N, P)
        c_finite = c_finite / min(1.0, ratio, feature_ratio)
    return model, rf, noise, c_finite


def _curve_values(
    model: Any,
    spectrum: np.ndarray,
    beta: np.ndarray,
    d: int,
    ratio: float,
    feature_ratio: float,
    noise: float,
) -> dict[str, Any]:
    """The values at which the curve of ``model`` is evaluated at dimension ``d``."""
    values = {
        model.sigma.name: spectrum,
        model.beta.name: beta,
        str(model.dims[0]): round(ratio * d),
    }
    if hasattr(model, "features"):
        values[str(model.n_features)] = round(feature_ratio * d)
    for name in sorted(str(x) for x in sp.sympify(getattr(model, "noise", 0)).free_symbols):
        values[name] = noise  # the label-noise variance symbol (sigma2)
    return values


def _label(rf: bool, ratio: float, feature_ratio: float, noise: float, name: str, time: float) -> str:
    """The report label of ``name`` at ``time``."""
    if rf:
        return (
            f"{name} of random-feature gradient flow at t={time:g}, P/D={ratio}, "
            f"N/D={feature_ratio}, sigma2={noise}"
        )
    return f"{name} of gradient flow at t={time:g}, P/D={ratio}, sigma2={noise}"


def _term_checks(
    curve: LossCurve,
    terms: Sequence[str] | None,
    rf: bool,
    t: np.ndarray,
    theory: Callable[[int], dict[str, np.ndarray]],
    draws: SeededDraws[dict[str, np.ndarray]],
    label: Callable[[str, float], str],
) -> Iterator[TermCheck]:
    """Each term (default: the constants, unless random features are simulated, the terms and the
    total) at each time: the curve's value against the simulated draws' value of the same name."""
    # the constant noise term (the simulation returns the same constant, nothing to check) is left out there
    constants = [] if rf else list(curve.constant)
    names = list(terms) if terms is not None else [*constants, *curve.terms, curve.name]
    for name in names:
        key = "total" if name == curve.name else name
        for i in range(t.size):
            yield TermCheck(
                functools.partial(_at_time, theory, key, i),
                draws.functional(f"{name}(t={t[i]:g})", functools.partial(_drawn_at_time, name, i)),
                label(name, t[i]),
            )


def _at_time(theory: Callable[[int], dict[str, np.ndarray]], key: str, i: int, d: int) -> float:
    """The curve's ``key`` at the ``i``-th time, at dimension ``d``."""
    return float(theory(d)[key][i])


def _drawn_at_time(name: str, i: int, draw: dict[str, np.ndarray]) -> float:
    """The simulated ``name`` at the ``i``-th time."""
    return float(draw[name][i])


def check_monte_carlo(
    curve: LossCurve,
    sizes: Sequence[int] = (200, 400),
    *,
    rng: np.random.Generator,
    times: Sequence[float] = (0.3, 3.0, 30.0, 300.0),
    ratio: float = 2.0,
    noise: float | None = None,
    spectrum: Callable[[int], np.ndarray] | None = None,
    beta: Callable[[int], np.ndarray] | None = None,
    n_samples: int = 16,
    c_finite: float = 5.0,
    n_se: float = 4.0,
    terms: Sequence[str] | None = None,
    feature_ratio: float = 1.0,
    simulate_model: Any = None,
) -> MonteCarloCheck:
    """Compare the terms (and the total) of a gradient-flow curve with simulated gradient flow.

    Parameters
    ----------
    sizes : sequence of int
        Input dimensions ``D``; ``P = round(ratio * D)``.
    times : sequence of float
        Times at which each term is checked (one report per term and time).
    ratio, noise : float
        Samples per dimension ``P / D`` and the label-noise variance (default 0.09, or 0 for a
        curve whose model has ``noise = 0``, which refuses any other value).
    spectrum, beta : callable, optional
        ``D -> eigenvalues`` of ``Sigma`` (default ``k^-1.2``) and ``D -> target`` in its
        eigenbasis (default ``k^-0.4``), as in MATH.md 5.1.
    terms : sequence of str, optional
        Which terms to check (default: every term and the total, compared with the
        realised loss).
    feature_ratio : float
        Features per dimension ``N / D`` (random-feature curves only, ``N = round(feature_ratio
        * D)``). The finite-size term then uses the smallest dimension (MATH.md's acceptance
        rule): ``c_finite |DE| / min(D, N, P)``.
    simulate_model : optional
        The model to simulate (default: the curve's own). A negative control compares a wrong
        curve with the simulation of the right model, e.g. the plain
        :class:`~detequiv.models.gradient_flow.GradientFlow` curve against random features.

    Returns
    -------
    MonteCarloCheck
        One report per term and time (terms in the order above, each at every time).

    Examples
    --------
    >>> import numpy as np
    >>> class Curve:  # a curve without its model
    ...     model = None
    >>> check_monte_carlo(Curve(), rng=np.random.default_rng(0))
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: this curve has no model to simulate
    """
    check_rng(rng)
    model, rf, noise, c_finite = _validated(curve, simulate_model, noise, ratio, feature_ratio, c_finite)
    t = np.asarray(times, dtype=float)
    spec = size_function(spectrum, lambda d: np.arange(1, d + 1) ** -1.2)
    target = size_function(beta, lambda d: np.arange(1, d + 1) ** -0.4)

    def simulate(d: int, local: np.random.Generator) -> dict[str, np.ndarray]:
        p, n = round(ratio * d), round(feature_ratio * d)
        if rf:
            return simulate_random_feature_flow(spec(d), target(d), n, p, t, local, noise)
        return simulate_gradient_flow(spec(d), target(d), p, noise, t, local)

    @functools.cache
    def theory(d: int) -> dict[str, np.ndarray]:
        return curve.evaluate(_curve_values(model, spec(d), target(d), d, ratio, feature_ratio, noise), t)

    label = functools.partial(_label, rf, ratio, feature_ratio, noise)
    checks = _term_checks(curve, terms, rf, t, theory, SeededDraws(simulate), label)
    return verify_terms(checks, sizes=sizes, n_samples=n_samples, rng=rng, c_finite=c_finite, n_se=n_se)
