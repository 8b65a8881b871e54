r"""Online (one-pass) SGD on linear regression: the exact Volterra equation (MATH.md 5.2).

Fresh Gaussian batches :math:`x_b\sim\mathcal N(0,\Sigma)`, labels
:math:`y_b=\beta\cdot x_b+\varepsilon_b` with :math:`\operatorname{Var}\varepsilon=\sigma^2`,
and the step :math:`w\leftarrow w-\frac\eta B\sum_b x_b(x_b\cdot w-y_b)` on the batch
**mean** (MATH.md 5 conventions: :math:`L=\mathbb E(w\cdot x-y)^2` includes
:math:`\sigma^2`, no factor 1/2, :math:`w_0=0`). :func:`derive_online_sgd` derives, as
named steps with sympy expressions,

* ``gaussian_fourth_moment``:
  :math:`\mathbb E[xx^\top Cxx^\top]=2\Sigma C\Sigma+\Sigma\operatorname{Tr}\Sigma C`
  (Isserlis; checked symbolically on a generic 2x2 case);
* ``batch_gradient_noise``: the covariance of the batch-mean gradient given the error
  :math:`e=w-\beta`, :math:`\frac1B[\Sigma ee^\top\Sigma+\Sigma(e^\top\Sigma e+\sigma^2)]`;
* ``second_moment_recursion``:
  :math:`C_{t+1}=(I-\eta\Sigma)C_t(I-\eta\Sigma)+\frac{\eta^2}B[\Sigma C_t\Sigma+\Sigma L_t]`;
* ``eigenbasis_projection``: the diagonal of that recursion closes mode by mode,
  :math:`c_k(t+1)=a_kc_k(t)+b_kL_t` with :math:`a_k=(1-\eta\lambda_k)^2+\frac{\eta^2}B\lambda_k^2`
  and :math:`b_k=\frac{\eta^2}B\lambda_k` (computed, not typed: the off-diagonal entries drop out);
* ``forcing_term`` and ``sgd_kernel``: unrolling gives :math:`F_t=\sigma^2+\sum_k\lambda_kv_k^2a_k^t`
  and :math:`K_\tau=\sum_k\lambda_kb_ka_k^\tau`;
* ``volterra_equation``: :math:`L_t=F_t+\sum_{s<t}K_{t-1-s}L_s`;
* ``noise_floor``: the final-value theorem on :math:`L(z)=F(z)/(1-zK(z))` gives
  :math:`L_\infty=\sigma^2/(1-\sum_\tau K_\tau)`, the per-mode geometric sum simplified by sympy;
* ``stability``: :math:`a_k<1` for every mode and :math:`\sum_\tau K_\tau<1`.

:class:`OnlineSGD` evaluates the curve numerically from a spectrum, vectorized over the
modes, with the per-mode coefficients lambdified from the derivation: the exact
discrete-time recursion costs :math:`O(TD)` (``method="recursion"``, the default), the
Volterra form by direct convolution :math:`O(T^2+TD)` (``method="volterra"``).
:meth:`OnlineSGD.continuous_curve` gives the continuous-time limit (Talbot inversion of
:math:`\tilde F/(1-\frac\eta B\tilde K)`). :mod:`detequiv.models.sgd_mc` simulates
the SGD itself.

Also here:

* :func:`random_features_online_sgd`: online SGD on linear random features
  :math:`z=Fx` given ``F`` reduces exactly to the above (MATH.md 5.3), and
  :func:`random_features_online_sgd_de` is its deterministic equivalent averaged over
  ``F`` (continuous time, one-point functions and :math:`\kappa` only);
* :class:`MultiPassSGD`: multi-pass SGD on ``P`` fixed samples (MATH.md 5.4), the exact
  expected curves over the batch draws and the closed Volterra approximation, with its
  measured accuracy; :func:`multipass_sgd_de` is the continuous-time deterministic
  equivalent averaged over data sets.

>>> import numpy as np
>>> k = np.arange(1, 301)
>>> model = OnlineSGD(k**-1.5, k**-0.25, eta=0.2, batch=1, noise=0.04)
>>> round(model.kernel_sum(), 4), round(model.floor(), 6)
(0.279, 0.055477)
>>> curve = model.loss_curve(2000)
>>> curve.shape, float(curve[0]) == 0.04 + float(np.sum(k**-1.5 * k**-0.5))
((2001,), True)

References
----------
MATH.md 5.2 and 7 ("Online SGD floor"); the one-pass SGD Volterra equation in the
spirit of arXiv 2405.15074 and 2402.01092 (notation here is MATH.md's own).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import sympy as sp

from ..derivations.derivation import Step
from ..errors import InvalidArgument
from .rules import (
    BATCH_GRADIENT_NOISE,
    EIGENBASIS_PROJECTION,
    FORCING_TERM,
    GAUSSIAN_FOURTH_MOMENT,
    NOISE_FLOOR,
    SECOND_MOMENT_RECURSION,
    SGD_KERNEL,
    STABILITY,
    VOLTERRA_EQUATION,
)

__all__ = [
    "MultiPassSGD",
    "multipass_sgd_de",
    "OnlineSGD",
    "SGDDerivation",
    "derive_online_sgd",
    "iter_online_sgd_steps",
    "online_sgd_floor",
    "random_features_online_sgd",
    "random_features_online_sgd_de",
]

_REF = "MATH.md 5.2"

# symbols of the per-mode derivation
eta, B, lam, sigma2, L = sp.symbols("eta B lambda sigma2 L", positive=True)
c, v = sp.symbols("c v", real=True)
t, s, tau, k = sp.symbols("t s tau k", integer=True, nonnegative=True)
a_sym, b_sym = sp.symbols("a b", positive=True)


def _isserlis_check() -> tuple[sp.Matrix, sp.Matrix]:
    """Both sides of the Gaussian fourth-moment identity on a generic symmetric 2x2 case."""
    s11, s12, s22, c11, c12, c22 = sp.symbols("S11 S12 S22 C11 C12 C22", real=True)
    S = sp.Matrix([[s11, s12], [s12, s22]])
    C = sp.Matrix([[c11, c12], [c12, c22]])
    n = 2

    def pair(i: int, j: int, m: int, l_: int) -> sp.Expr:  # Isserlis: sum over the 3 pairings
        return S[i, j] * S[m, l_] + S[i, m] * S[j, l_] + S[i, l_] * S[j, m]

    lhs = sp.Matrix(
        n,
        n,
        lambda i, l_: sp.expand(sp.Add(*[C[j, m] * pair(i, j, m, l_) for j in range(n) for m in range(n)])),
    )
    rhs = (2 * S * C * S + S * (S * C).trace()).applyfunc(sp.expand)
    return lhs, rhs


def _projected_recursion() -> sp.Expr:
    """The (0, 0) entry of the matrix recursion for a diagonal 2x2 Sigma and generic C.

    Returns the new per-mode second moment as an expression of ``c`` (the old diagonal
    entry), ``L``, ``lambda``, ``eta`` and ``B``; raises if an off-diagonal entry or the
    other mode's ``c`` survives (the closure would then not be per-mode).
    """
    l2, c12, c22 = sp.symbols("lambda_2 C12 C22", positive=True)
    S = sp.diag(lam, l2)
    C = sp.Matrix([[c, c12], [c12, c22]])
    eye = sp.eye(2)
    new = (eye - eta * S) * C * (eye - eta * S) + eta**2 / B * (S * C * S + S * L)
    entry = sp.expand(new[0, 0])
    if entry.free_symbols & {l2, c12, c22}:  # pragma: no cover - would be a derivation bug
        raise AssertionError(f"the eigenbasis projection does not close: {entry}")
    return entry


def iter_online_sgd_steps() -> Iterator[Step]:
    r"""The named steps of the online-SGD derivation, in order (a generator).

    Three stages: the second-moment recursion of the error, its projection on the eigenbasis
    of :math:`\Sigma` (whose per-mode coefficients the last stage uses), and the renewal
    equation of the loss it unrolls to, with its final value and stability conditions.

    >>> [st.rule.name for st in iter_online_sgd_steps()][:3]
    ['gaussian_fourth_moment', 'batch_gradient_noise', 'second_moment_recursion']
    """
    yield from _moment_steps()
    coeff_c, coeff_l = yield from _eigenbasis_step()
    yield from _renewal_steps(coeff_c, coeff_l)


def _moment_steps() -> Iterator[Step]:
    """``gaussian_fourth_moment``, ``batch_gradient_noise``, ``second_moment_recursion``: the
    covariance ``C_t`` of the error ``e_t = w_t - beta`` one step on, in matrix form."""
    D = sp.Symbol("D", integer=True, positive=True)
    Sig = sp.MatrixSymbol("Sigma", D, D)
    Cm = sp.MatrixSymbol("C", D, D)
    e = sp.MatrixSymbol("e", D, 1)
    eye = sp.Identity(D)
    expect = sp.Function("E")
    cov = sp.Function("Cov")
    tr = sp.Trace

    lhs, rhs = _isserlis_check()
    if (lhs - rhs).applyfunc(sp.expand) != sp.zeros(2, 2):  # pragma: no cover
        raise AssertionError("Isserlis check of the Gaussian fourth moment failed")
    yield Step(
        GAUSSIAN_FOURTH_MOMENT,
        expect(sp.Symbol("x x^T C x x^T")),
        2 * Sig * Cm * Sig + Sig * tr(Sig * Cm),
        "Isserlis' theorem for x ~ N(0, Sigma), C symmetric; both sides expanded and "
        "compared symbolically on a generic 2x2 Sigma and C",
    )
    Lt = sp.Symbol("L_t", positive=True)
    yield Step(
        BATCH_GRADIENT_NOISE,
        cov(sp.Symbol("g | e")),
        (Sig * e * e.T * Sig + Sig * (tr(e.T * Sig * e) + sigma2)) / B,
        "g = (1/B) sum_b x_b (x_b.e - eps_b): B independent terms, each of covariance "
        "E[x x^T e e^T x x^T] + sigma2 Sigma - Sigma e e^T Sigma (fourth moment with C = e e^T)",
    )
    Ct = sp.MatrixSymbol("C_t", D, D)
    Ct1 = sp.MatrixSymbol("C_t+1", D, D)
    matrix_rec = (eye - eta * Sig) * Ct * (eye - eta * Sig) + eta**2 / B * (Sig * Ct * Sig + Sig * Lt)
    yield Step(
        SECOND_MOMENT_RECURSION,
        Ct1,
        matrix_rec,
        "e_{t+1} = (I - eta Sigma) e_t - eta (g - Sigma e_t); average the outer product over "
        "the batch (given e_t) and then over e_t; L_t = Tr(Sigma C_t) + sigma2",
        equation=sp.Eq(Lt, tr(Sig * Ct) + sigma2),
    )


def _eigenbasis_step() -> Generator[Step, None, tuple[sp.Expr, sp.Expr]]:
    """``eigenbasis_projection``: the per-mode recursion ``c_k(t+1) = a c_k(t) + b L_t``; returns
    the derived ``(a, b)``."""
    entry = _projected_recursion()
    coeff_c = sp.factor_terms(sp.expand(entry).coeff(c))
    coeff_l = sp.factor_terms(sp.expand(entry).coeff(L))
    if sp.expand(entry - coeff_c * c - coeff_l * L) != 0:  # pragma: no cover
        raise AssertionError(f"the per-mode recursion is not linear in (c, L): {entry}")
    c_next = sp.Symbol("c_k(t+1)")
    yield Step(
        EIGENBASIS_PROJECTION,
        c_next,
        a_sym * sp.Symbol("c_k(t)") + b_sym * L,
        "diagonal entry of the recursion in the eigenbasis of Sigma (computed on diag(lambda, "
        "lambda_2) with a generic C: off-diagonal entries and other modes drop out)",
        equation=sp.Tuple(sp.Eq(a_sym, coeff_c), sp.Eq(b_sym, coeff_l)),
    )
    return coeff_c, coeff_l


def _renewal_steps(coeff_c: sp.Expr, coeff_l: sp.Expr) -> Iterator[Step]:
    """``forcing_term``, ``sgd_kernel``, ``volterra_equation``, ``noise_floor``, ``stability``:
    the per-mode recursion with coefficients ``(coeff_c, coeff_l)`` unrolled into the renewal
    equation of the loss, its final value and its stability conditions."""
    lam_k = sp.IndexedBase("lambda")[k]
    v_k = sp.IndexedBase("v")[k]
    a_k = sp.IndexedBase("a")[k]
    b_k = sp.IndexedBase("b")[k]
    Lidx = sp.IndexedBase("L")
    Dk = sp.Symbol("D", integer=True, positive=True)
    forcing = sigma2 + sp.Sum(lam_k * v_k**2 * a_k**t, (k, 1, Dk))
    yield Step(
        FORCING_TERM,
        sp.Symbol("F_t"),
        forcing,
        "unroll c_k(t) = a_k^t v_k^2 + sum_{s<t} a_k^(t-1-s) b_k L_s with v = w_0 - beta; "
        "the homogeneous part of L_t = sigma2 + sum_k lambda_k c_k(t)",
    )
    kernel = sp.Sum(lam_k * b_k * a_k**tau, (k, 1, Dk))
    yield Step(
        SGD_KERNEL,
        sp.Symbol("K_tau"),
        kernel,
        "the driven part of the unrolled recursion, tau = t - 1 - s; lambda_k b_k = eta^2 lambda_k^2 / B",
    )
    yield Step(
        VOLTERRA_EQUATION,
        Lidx[t],
        forcing + sp.Sum(kernel.subs(tau, t - 1 - s) * Lidx[s], (s, 0, t - 1)),
        "exact in expectation for Gaussian x at any D (no large-D limit); generating "
        "function L(z) = F(z) / (1 - z K(z))",
    )
    per_mode = sp.simplify(lam * coeff_l / (1 - coeff_c))
    ksum = sp.Sum(per_mode.subs(lam, lam_k), (k, 1, Dk))
    yield Step(
        NOISE_FLOOR,
        sp.Symbol("L_inf"),
        sigma2 / (1 - ksum),
        "final value theorem: (1 - z) L(z) at z -> 1; F_inf = sigma2 and sum_tau K_tau "
        "is the per-mode geometric series lambda b / (1 - a), simplified",
        equation=sp.Eq(sp.Symbol("Sum_tau K_tau"), ksum),
    )
    yield Step(
        STABILITY,
        sp.Symbol("stable"),
        sp.And(sp.Lt(coeff_c, 1), sp.Lt(ksum, 1)),
        "every mode contracts (a_k < 1, i.e. eta lambda_k (1 + 1/B) < 2) and the "
        "renewal equation is subcritical (sum_tau K_tau < 1)",
    )


@dataclass(frozen=True, slots=True)
class SGDDerivation:
    """The online-SGD derivation: its steps and the derived per-mode expressions.

    Attributes
    ----------
    steps : tuple of Step
        The named steps of :func:`iter_online_sgd_steps`.
    decay : sympy.Expr
        :math:`a=(1-\\eta\\lambda)^2+\\eta^2\\lambda^2/B` as derived.
    drive : sympy.Expr
        :math:`b=\\eta^2\\lambda/B`, the coefficient of :math:`L_t` in :math:`c(t+1)`.
    kernel_sum_per_mode : sympy.Expr
        :math:`\\lambda b/(1-a)`, one mode's contribution to :math:`\\sum_\\tau K_\\tau`.
    symbols : tuple of sympy.Symbol
        ``(eta, B, lambda, sigma2)`` as used in the expressions.
    """

    steps: tuple[Step, ...]
    decay: sp.Expr
    drive: sp.Expr
    kernel_sum_per_mode: sp.Expr
    symbols: tuple[sp.Symbol, ...] = field(default=(eta, B, lam, sigma2))

    def rules(self) -> tuple[str, ...]:
        """The rule names, in order."""
        return tuple(st.rule.name for st in self.steps)

    def __str__(self) -> str:
        return "\n".join(str(st) for st in self.steps)


@functools.lru_cache(maxsize=1)
def derive_online_sgd() -> SGDDerivation:
    r"""Derive the online-SGD Volterra equation (MATH.md 5.2) as named steps.

    Returns
    -------
    SGDDerivation
        The steps and the per-mode coefficients as sympy expressions.

    Examples
    --------
    >>> d = derive_online_sgd()
    >>> d.rules()[3:6]
    ('eigenbasis_projection', 'forcing_term', 'sgd_kernel')
    >>> import sympy as sp
    >>> eta, B, lam, _ = d.symbols
    >>> sp.expand(d.decay - ((1 - eta * lam) ** 2 + eta**2 * lam**2 / B))
    0
    >>> d.drive
    eta**2*lambda/B
    >>> sp.simplify(d.kernel_sum_per_mode - eta * lam / (B * (2 - eta * lam * (1 + 1 / B))))
    0
    """
    steps = tuple(iter_online_sgd_steps())
    proj = next(st for st in steps if st.rule.name == "eigenbasis_projection")
    assert isinstance(proj.equation, sp.Tuple)
    decay = proj.equation[0].rhs
    drive = proj.equation[1].rhs
    per_mode = sp.simplify(lam * drive / (1 - decay))
    return SGDDerivation(steps, decay, drive, per_mode)


@functools.lru_cache(maxsize=1)
def _coefficients() -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """numpy functions ``(eta, B, lambda) -> a, b, lambda b / (1 - a)`` lambdified from the derivation."""
    d = derive_online_sgd()
    args = (eta, B, lam)
    return (
        sp.lambdify(args, d.decay, "numpy"),
        sp.lambdify(args, d.drive, "numpy"),
        sp.lambdify(args, d.kernel_sum_per_mode, "numpy"),
    )


def _as_spectrum(name: str, value: Any, size: int | None = None) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidArgument(f"{name} must be a non-empty 1-D array; got shape {arr.shape}")
    if size is not None and arr.size != size:
        raise InvalidArgument(
            f"{name} has {arr.size} entries but eigenvalues has {size}; give one coefficient per mode"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidArgument(f"{name} has non-finite entries; pass finite values")
    return arr


def _spectrum_inputs(eigenvalues: Any, beta: Any, batch: Any, eta: Any, noise: Any) -> tuple[Any, Any, int]:
    """Validated ``(eigenvalues, beta, batch)`` of the averaged (continuous-time) curves."""
    lams = _as_spectrum("eigenvalues", eigenvalues)
    if np.any(lams < 0):
        raise InvalidArgument(f"eigenvalues must be >= 0; the smallest is {lams.min():g}")
    b = _as_spectrum("beta", beta, lams.size)
    batch = _positive_int("batch", batch)
    if not isinstance(eta, numbers.Real) or not float(eta) > 0:
        raise InvalidArgument(f"eta={eta!r} must be a learning rate > 0")
    if not isinstance(noise, numbers.Real) or not float(noise) >= 0:
        raise InvalidArgument(f"noise={noise!r} is the label-noise variance; it must be >= 0")
    return lams, b, batch


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidArgument(f"{name}={value!r} must be a positive integer")
    return int(value)


@dataclass(frozen=True, eq=False)
class OnlineSGD:
    r"""Online SGD on Gaussian linear regression, from the spectrum (MATH.md 5.2).

    Parameters
    ----------
    eigenvalues : array_like, shape (D,)
        Eigenvalues :math:`\lambda_k\ge0` of the input covariance :math:`\Sigma`.
    beta : array_like, shape (D,)
        Target coefficients :math:`\beta_k` in the eigenbasis (only :math:`\beta_k^2`
        enters when ``w0`` is zero).
    eta : float
        Learning rate, a step on the batch-mean gradient.
    batch : int
        Batch size ``B`` (fresh samples every step).
    noise : float
        Label-noise variance :math:`\sigma^2` (included in the loss).
    w0 : array_like, optional
        Initial weights in the eigenbasis (default zero).

    Raises
    ------
    InvalidArgument
        Bad shapes or signs, or a learning rate at which the dynamics is unstable
        (some :math:`a_k\ge1` or :math:`\sum_\tau K_\tau\ge1`); the message gives the
        largest stable learning rate.

    Examples
    --------
    >>> import numpy as np
    >>> OnlineSGD(np.ones(10), np.ones(10), eta=1.0, batch=1, noise=0.1)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: eta=1.0 is unstable for batch=1: a_k = 1 >= 1 for the largest eigenvalue 1 (need eta * lambda_max * (1 + 1/B) < 2) and sum_tau K_tau = inf >= 1 (the loss diverges); the largest stable learning rate is eta < 0.166667
    """  # noqa: E501

    eigenvalues: np.ndarray
    beta: np.ndarray
    eta: float
    batch: int = 1
    noise: float = 0.0
    w0: np.ndarray | None = None

    def __post_init__(self) -> None:
        lams = _as_spectrum("eigenvalues", self.eigenvalues)
        if np.any(lams < 0):
            raise InvalidArgument(
                f"eigenvalues must be >= 0 (a covariance spectrum); the smallest is {lams.min():g}"
            )
        beta = _as_spectrum("beta", self.beta, lams.size)
        w0 = None if self.w0 is None else _as_spectrum("w0", self.w0, lams.size)
        batch = _positive_int("batch", self.batch)
        if not isinstance(self.eta, numbers.Real) or not self.eta > 0 or not math.isfinite(self.eta):
            raise InvalidArgument(f"eta={self.eta!r} must be a finite learning rate > 0")
        if not isinstance(self.noise, numbers.Real) or not self.noise >= 0 or not math.isfinite(self.noise):
            raise InvalidArgument(
                f"noise={self.noise!r} is the label-noise variance sigma^2; it must be >= 0"
            )
        object.__setattr__(self, "eigenvalues", lams)
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "w0", w0)
        object.__setattr__(self, "batch", batch)
        object.__setattr__(self, "eta", float(self.eta))
        object.__setattr__(self, "noise", float(self.noise))
        self._check_stable()

    # -- coefficients ---------------------------------------------------------------
    @property
    def decay(self) -> np.ndarray:
        """Per-mode contraction :math:`a_k=(1-\\eta\\lambda_k)^2+\\eta^2\\lambda_k^2/B`."""
        fa, _, _ = _coefficients()
        return np.asarray(fa(self.eta, self.batch, self.eigenvalues), dtype=float)

    @property
    def drive(self) -> np.ndarray:
        """Per-mode coefficient :math:`b_k=\\eta^2\\lambda_k/B` of :math:`L_t` in :math:`c_k(t+1)`."""
        _, fb, _ = _coefficients()
        return np.broadcast_to(
            np.asarray(fb(self.eta, self.batch, self.eigenvalues), dtype=float), (self.size,)
        )

    @property
    def size(self) -> int:
        """Number of modes ``D``."""
        return int(self.eigenvalues.size)

    @property
    def initial_error(self) -> np.ndarray:
        """:math:`v=w_0-\\beta` in the eigenbasis."""
        return (np.zeros_like(self.beta) if self.w0 is None else self.w0) - self.beta

    def _kernel_sum_at(self, eta_value: float) -> float:
        _, _, fk = _coefficients()
        # a_k < 1 iff eta lambda_k (1 + 1/B) < 2 for lambda_k > 0 (zero modes are neutral, a = 1);
        # tested in this form because a_k rounds to 1 for tiny lambda_k
        if np.any(eta_value * self.eigenvalues * (1 + 1 / self.batch) >= 2):
            return math.inf
        return float(np.sum(fk(eta_value, self.batch, self.eigenvalues)))

    def _max_stable_eta(self) -> float:
        lmax = float(self.eigenvalues.max())
        if lmax == 0:
            return math.inf
        hi = 2.0 / (lmax * (1 + 1 / self.batch))
        lo = 0.0
        for _ in range(80):  # bisection on the increasing sum_tau K_tau(eta) = 1
            mid = 0.5 * (lo + hi)
            if self._kernel_sum_at(mid) < 1:
                lo = mid
            else:
                hi = mid
        return lo

    def _check_stable(self) -> None:
        a = self.decay
        bad = self.eta * self.eigenvalues * (1 + 1 / self.batch) >= 2
        ksum = self._kernel_sum_at(self.eta)
        if not np.any(bad) and ksum < 1:
            return
        reasons = []
        if np.any(bad):
            lmax = float(self.eigenvalues.max())
            reasons.append(
                f"a_k = {float(a.max()):g} >= 1 for the largest eigenvalue {lmax:g} "
                "(need eta * lambda_max * (1 + 1/B) < 2)"
            )
        reasons.append(f"sum_tau K_tau = {ksum:g} >= 1 (the loss diverges)" if ksum >= 1 else "")
        why = " and ".join(r for r in reasons if r)
        raise InvalidArgument(
            f"eta={self.eta!r} is unstable for batch={self.batch}: {why}; "
            f"the largest stable learning rate is eta < {self._max_stable_eta():g}"
        )

    # -- closed forms -----------------------------------------------------------------
    def kernel_sum(self) -> float:
        r""":math:`\sum_\tau K_\tau=\frac\eta B\sum_k\lambda_k/(2-\eta\lambda_k(1+1/B))`."""
        return self._kernel_sum_at(self.eta)

    def floor(self) -> float:
        r"""The :math:`t\to\infty` loss :math:`L_\infty=\sigma^2/(1-\sum_\tau K_\tau)`."""
        return self.noise / (1.0 - self.kernel_sum())

    def forcing(self, times: Any) -> np.ndarray:
        r""":math:`F_t=\sigma^2+\sum_k\lambda_kv_k^2a_k^t` at integer ``times`` (any shape)."""
        tt = np.asarray(times)
        if not np.issubdtype(tt.dtype, np.integer) or np.any(tt < 0):
            raise InvalidArgument("times must be non-negative integers (SGD steps)")
        w = self.eigenvalues * self.initial_error**2
        return self.noise + self._power_sum(w, tt)

    def kernel(self, lags: Any) -> np.ndarray:
        r""":math:`K_\tau=\sum_k\lambda_kb_ka_k^\tau` at integer lags ``tau >= 0``."""
        tt = np.asarray(lags)
        if not np.issubdtype(tt.dtype, np.integer) or np.any(tt < 0):
            raise InvalidArgument("lags must be non-negative integers")
        return self._power_sum(self.eigenvalues * self.drive, tt)

    def _power_sum(self, weights: np.ndarray, times: np.ndarray, chunk: int = 2**22) -> np.ndarray:
        """``sum_k weights_k a_k^t`` for each t, in chunks of about ``chunk`` entries."""
        a = self.decay
        keep = weights != 0
        a, weights = a[keep], weights[keep]
        flat = times.reshape(-1).astype(float)
        out = np.zeros(flat.shape)
        if a.size == 0:
            return out.reshape(times.shape)
        with np.errstate(divide="ignore"):
            loga = np.log(a)  # a_k = 0 (eta lambda = 1/(1+1/B)) gives -inf: a^0 = 1, a^t = 0
        step = max(1, chunk // a.size)
        for i in range(0, flat.size, step):
            tt = flat[i : i + step, None]
            with np.errstate(invalid="ignore"):
                pw = np.where(tt == 0, 1.0, np.exp(tt * loga))
            out[i : i + step] = pw @ weights
        return out.reshape(times.shape)

    # -- the curve ------------------------------------------------------------------------
    def loss_curve(self, steps: int, *, method: Literal["recursion", "volterra"] = "recursion") -> np.ndarray:
        r"""The expected loss :math:`L_t` for :math:`t=0,\dots,` ``steps``.

        Parameters
        ----------
        steps : int
            Number of SGD steps ``T``; the result has ``T + 1`` entries.
        method : {"recursion", "volterra"}
            ``"recursion"`` iterates the exact per-mode second moments,
            :math:`c\leftarrow ac+bL_t`, :math:`O(TD)`; ``"volterra"`` builds
            :math:`F_t`, :math:`K_\tau` and solves the Volterra equation by direct
            convolution, :math:`O(T^2+TD)`. Both are exact (to rounding).

        Examples
        --------
        >>> import numpy as np
        >>> m = OnlineSGD(np.array([1.0]), np.array([1.0]), eta=0.5, batch=2, noise=0.0)
        >>> m.loss_curve(2).round(6).tolist()  # one mode: L_{t+1} = (a + b) L_t, a + b = 0.375 + 0.125
        [1.0, 0.5, 0.25]
        """
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
            raise InvalidArgument(f"steps={steps!r} must be a non-negative integer")
        n = int(steps) + 1
        if method == "recursion":
            return self._by_recursion(n)
        if method == "volterra":
            return self._by_volterra(n)
        raise InvalidArgument(f"method={method!r} is unknown; use 'recursion' or 'volterra'")

    def continuous_curve(self, times: Any, *, nodes: int = 16) -> np.ndarray:
        r"""The continuous-time limit at :math:`t_c=\eta\times` steps (MATH.md 5.2).

        :math:`\tilde L(s)=\tilde F(s)/(1-\frac\eta B\tilde K(s))` with
        :math:`\tilde F=\sigma^2/s+\sum_k\lambda_kv_k^2/(s+2\lambda_k)` and
        :math:`\tilde K=\sum_k\lambda_k^2/(s+2\lambda_k)`, inverted on Talbot contours
        (:func:`~detequiv.models.gradient_flow.inverse_laplace`). It is the
        :math:`\eta\to0` limit of :meth:`loss_curve` at fixed :math:`t_c` (MATH.md: 3.6e-3
        apart at :math:`\eta=0.05`).

        >>> import numpy as np
        >>> m = OnlineSGD(np.array([1.0]), np.array([1.0]), eta=0.01, batch=1, noise=0.0)
        >>> # one mode: 1 / (s + 2 lam - eta lam^2), so L = exp(-(2 - eta) t)
        >>> bool(abs(m.continuous_curve([1.0])[0] - np.exp(-(2 - 0.01))) < 1e-9)
        True
        """
        from ..derivations.laplace import inverse_laplace

        tt = np.asarray(times, dtype=float).reshape(-1)
        if np.any(~np.isfinite(tt)) or np.any(tt < 0):
            raise InvalidArgument("times must be finite continuous times t_c = eta * steps >= 0")
        lams = self.eigenvalues
        w = lams * self.initial_error**2
        k2 = lams**2
        gain = self.eta / self.batch

        def transform(sv: np.ndarray) -> np.ndarray:
            out = np.empty_like(sv)
            flat, res = sv.reshape(-1), out.reshape(-1)
            step = max(1, 2**20 // max(lams.size, 1))
            for i in range(0, flat.size, step):
                u = 1.0 / (flat[i : i + step, None] + 2 * lams)
                res[i : i + step] = (self.noise / flat[i : i + step] + u @ w) / (1 - gain * (u @ k2))
            return out

        out = np.empty(tt.size)
        zero = tt == 0
        out[zero] = self.noise + float(np.sum(w))
        if np.any(~zero):
            out[~zero] = inverse_laplace(transform, tt[~zero], nodes)
        return out

    def _by_recursion(self, n: int) -> np.ndarray:
        a = self.decay
        b = np.ascontiguousarray(self.drive)
        lams = self.eigenvalues
        cvec = self.initial_error**2
        out = np.empty(n)
        tmp = np.empty_like(cvec)
        sig = self.noise
        for i in range(n):
            loss = sig + float(lams @ cvec)
            out[i] = loss
            np.multiply(cvec, a, out=cvec)
            np.multiply(b, loss, out=tmp)
            cvec += tmp
        return out

    def _by_volterra(self, n: int) -> np.ndarray:
        times = np.arange(n)
        f = self.forcing(times)
        kern = self.kernel(times)
        out = np.empty(n)
        rev = kern[::-1]  # rev[n-1-j] = K_j
        for i in range(n):
            # L_i = F_i + sum_{s<i} K_{i-1-s} L_s
            out[i] = f[i] + (float(rev[n - i : n] @ out[:i]) if i else 0.0)
        return out


def online_sgd_floor(eigenvalues: Any, *, eta: float, batch: int = 1, noise: float) -> float:
    r"""The noise floor :math:`L_\infty=\sigma^2/(1-\frac\eta B\sum_k\lambda_k/(2-\eta\lambda_k(1+1/B)))`.

    Examples
    --------
    >>> import numpy as np
    >>> k = np.arange(1, 301)
    >>> round(online_sgd_floor(k**-1.5, eta=0.2, batch=1, noise=0.2**2), 6)
    0.055477
    """
    lams = np.asarray(eigenvalues, dtype=float)
    return OnlineSGD(lams, np.zeros_like(lams), eta=eta, batch=batch, noise=noise).floor()


# ---------------------------------------------------------------------------
# multi-pass SGD on a fixed data set (MATH.md 5.4)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MultiPassSGD:
    r"""Multi-pass SGD on ``P`` fixed samples, batches of ``B`` drawn with replacement (MATH.md 5.4).

    The update is :math:`w\leftarrow w-\frac\eta B\sum_b x_{i_b}(x_{i_b}\cdot w-y_{i_b})` with
    :math:`i_b` uniform on the ``P`` rows of ``x``, from :math:`w_0=0`. Everything is
    conditional on the data set; the expectation is over the batch draws only.

    * :meth:`exact_curves`: the exact first and second moments of :math:`e=w-\beta`
      (:math:`m'=m-\eta(\hat\Sigma m-h)`, and :math:`M'` with the batch covariance
      :math:`\frac1B[X^\top\operatorname{diag}(q)X/P-\bar g\bar g^\top]`,
      :math:`q_i=x_i^\top Mx_i-2\varepsilon_ix_i\cdot m+\varepsilon_i^2`), equivalent to
      the P-space recursion
      :math:`R'=(I-\eta K)R(I-\eta K)+\frac{\eta^2}B[PK\operatorname{diag}(R)K-KRK]`;
      cost :math:`O(PD^2)` per step. This is the ground truth.
    * :meth:`closed_curves`: the closed Volterra system of MATH.md 5.4 (Gaussian
      closure :math:`PK\operatorname{diag}(R)K\to P\hat LK^2+2KRK`, and the
      non-separable :math:`O(\eta^2/B)` term dropped from the test-loss propagation),
      evaluated by its equivalent per-mode recursion, :math:`O(P+D^2)` per step. It is
      an **approximation**: measured against :meth:`exact_curves` (D = 100-200,
      P = 60-300, eta = 0.1-0.5, B = 1 and 4) it is off by up to 12 % (test loss) and
      9 % (training loss) during the first ~50 steps and by 0.6-4 % afterwards
      (tests/derivations/test_sgd.py); MATH.md 8 quotes 0.5-3 % against simulation, which
      holds only after the early transient.

    Parameters
    ----------
    x : array_like, shape (P, D)
        The data set (rows are samples).
    y : array_like, shape (P,)
        Labels ``x @ beta + eps``.
    eigenvalues : array_like, shape (D,)
        The population covariance, diagonal in the coordinates of ``x``.
    beta : array_like, shape (D,)
        The teacher (``eps = y - x @ beta`` is recovered from it).
    eta : float
        Learning rate.
    batch : int
        Batch size ``B``.
    noise : float
        Label-noise variance of a fresh test point (added to the test loss).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> lams = np.arange(1, 21) ** -1.0
    >>> x = rng.standard_normal((40, 20)) * np.sqrt(lams)
    >>> y = x @ np.ones(20) / 4 + 0.3 * rng.standard_normal(40)
    >>> mp = MultiPassSGD(x, y, lams, np.ones(20) / 4, eta=0.5, batch=2, noise=0.09)
    >>> test, train = mp.exact_curves(200)
    >>> ctest, ctrain = mp.closed_curves(200)
    >>> bool(np.max(np.abs(ctest / test - 1)) < 0.05), bool(train[-1] < train[0])
    (True, True)
    """

    x: np.ndarray
    y: np.ndarray
    eigenvalues: np.ndarray
    beta: np.ndarray
    eta: float
    batch: int = 1
    noise: float = 0.0

    def __post_init__(self) -> None:
        x = np.asarray(self.x, dtype=float)
        if x.ndim != 2 or x.size == 0 or not np.all(np.isfinite(x)):
            raise InvalidArgument(f"x must be a finite (P, D) data matrix; got shape {x.shape}")
        p, d = x.shape
        y = np.asarray(self.y, dtype=float)
        if y.shape != (p,):
            raise InvalidArgument(f"y has shape {y.shape}; it needs one label per row of x, shape ({p},)")
        lams = _as_spectrum("eigenvalues", self.eigenvalues, d)
        if np.any(lams < 0):
            raise InvalidArgument(f"eigenvalues must be >= 0; the smallest is {lams.min():g}")
        beta = _as_spectrum("beta", self.beta, d)
        batch = _positive_int("batch", self.batch)
        if not isinstance(self.eta, numbers.Real) or not self.eta > 0:
            raise InvalidArgument(f"eta={self.eta!r} must be a learning rate > 0")
        if not isinstance(self.noise, numbers.Real) or not self.noise >= 0:
            raise InvalidArgument(f"noise={self.noise!r} is the label-noise variance; it must be >= 0")
        for name, val in (("x", x), ("y", y), ("eigenvalues", lams), ("beta", beta)):
            object.__setattr__(self, name, val)
        object.__setattr__(self, "batch", batch)
        object.__setattr__(self, "eta", float(self.eta))
        object.__setattr__(self, "noise", float(self.noise))
        s = np.linalg.eigvalsh(x.T @ x / p)
        smax = float(s.max())
        if self.eta * smax * (1 + 1 / batch) >= 2:
            raise InvalidArgument(
                f"eta={self.eta!r} is unstable on this data set: eta * s_max * (1 + 1/B) = "
                f"{self.eta * smax * (1 + 1 / batch):.4g} >= 2 (s_max = {smax:.4g} is the top "
                f"eigenvalue of X^T X / P); use eta < {2 / (smax * (1 + 1 / batch)):.4g}"
            )

        ksum = float(np.sum(self.eta / batch * s / (2 - self.eta * s * (1 + 1 / batch))))
        if ksum >= 1:
            raise InvalidArgument(
                f"eta={self.eta!r} is unstable on this data set: the train kernel sums to "
                f"(eta/B) sum_k s_k / (2 - eta s_k (1 + 1/B)) = {ksum:.4g} >= 1, so the expected "
                "loss diverges; lower eta (roughly eta < 2 B / Tr(X^T X / P)) or raise the batch size"
            )

    def kernel_sum(self) -> float:
        """The closed system's train-kernel sum (eta/B) sum_k s_k / (2 - eta s_k (1 + 1/B)); < 1."""
        s = np.linalg.eigvalsh(self.x.T @ self.x / self.x.shape[0])
        return float(np.sum(self.eta / self.batch * s / (2 - self.eta * s * (1 + 1 / self.batch))))

    @property
    def size(self) -> tuple[int, int]:
        """``(P, D)``."""
        return (int(self.x.shape[0]), int(self.x.shape[1]))

    def _check_steps(self, steps: Any) -> int:
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
            raise InvalidArgument(f"steps={steps!r} must be a non-negative integer")
        return int(steps)

    def exact_curves(self, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact expected test and train losses for ``t = 0..steps`` (over batch draws)."""
        n = self._check_steps(steps)
        x, y, lams = self.x, self.y, self.eigenvalues
        p, d = self.size
        eps = y - x @ self.beta
        a = x.T @ x / p
        h = x.T @ eps / p
        eta, bsz = self.eta, self.batch
        m = -self.beta.copy()
        mm = np.outer(m, m)
        test, train = np.empty(n + 1), np.empty(n + 1)
        for t in range(n + 1):
            xm = x @ mm
            quad = np.einsum("ij,ij->i", xm, x)  # x_i^T M x_i
            xmean = x @ m
            test[t] = float(lams @ np.diag(mm)) + self.noise
            train[t] = float(np.sum(quad - 2 * eps * xmean + eps**2) / p)
            if t == n:
                break
            q = quad - 2 * eps * xmean + eps**2
            second = (x.T * q) @ x / p  # E[g g^T] for one sample
            am = a @ mm
            amh = np.outer(a @ m, h)
            mean_outer = am @ a - amh - amh.T + np.outer(h, h)
            cross = mm @ a - np.outer(m, h)
            mm = mm - eta * (cross + cross.T) + eta**2 * (second / bsz + (1 - 1 / bsz) * mean_outer)
            mm = 0.5 * (mm + mm.T)  # rounding seeds an antisymmetric part that M A + A M^T would grow
            m = m - eta * (a @ m - h)
        return test, train

    def closed_curves(self, steps: int) -> tuple[np.ndarray, np.ndarray]:
        r"""The closed Volterra system of MATH.md 5.4: test and train losses for ``t = 0..steps``.

        With :math:`s_k,u_k` the eigenpairs of :math:`K=XX^\top/P` and
        :math:`a_k=p(s_k)=(1-\eta s_k)^2+\frac{\eta^2}Bs_k^2`:
        :math:`\hat L_n=\hat F_n+\frac{\eta^2}B\sum_{m<n}\hat K_{n-1-m}\hat L_m`,
        :math:`L_n=F_n+\frac{\eta^2}B\sum_{m<n}K_{n-1-m}\hat L_m`,
        :math:`\hat F_n=\frac1P\sum_ka_k^n(u_k\cdot y)^2`, :math:`\hat K_\tau=\sum_ks_k^2a_k^\tau`,
        :math:`K_\tau=\operatorname{Tr}[\Sigma\hat\Sigma p(\hat\Sigma)^\tau]`, and :math:`F_n`
        the test loss of the full-batch gradient-descent iterate.
        """
        n = self._check_steps(steps)
        x, y, lams = self.x, self.y, self.eigenvalues
        p, d = self.size
        eta, bsz = self.eta, self.batch
        s_p, u = np.linalg.eigh(x @ x.T / p)
        s_p = np.clip(s_p, 0.0, None)
        rho = (u.T @ y) ** 2  # train modes, rho_k(0) = (u_k . y)^2
        a_p = (1 - eta * s_p) ** 2 + eta**2 / bsz * s_p**2
        drive_p = eta**2 / bsz * p * s_p**2
        s_d, v = np.linalg.eigh(x.T @ x / p)
        s_d = np.clip(s_d, 0.0, None)
        a_d = (1 - eta * s_d) ** 2 + eta**2 / bsz * s_d**2
        weight_d = eta**2 / bsz * s_d * ((v**2).T @ lams)  # eta^2/B * s_k * v_k^T Sigma v_k
        z = np.zeros(d)
        sigma_hat = x.T @ x / p
        xty = x.T @ y / p
        w = np.zeros(d)
        test, train = np.empty(n + 1), np.empty(n + 1)
        for t in range(n + 1):
            lhat = float(rho.sum()) / p
            train[t] = lhat
            e = w - self.beta
            test[t] = float(lams @ e**2) + self.noise + float(weight_d @ z)
            if t == n:
                break
            rho = a_p * rho + drive_p * lhat
            z = a_d * z + lhat
            w = w - eta * (sigma_hat @ w - xty)  # full-batch GD iterate for F_n
        return test, train


def random_features_online_sgd(
    features: Any, eigenvalues: Any, beta: Any, *, eta: float, batch: int = 1, noise: float = 0.0
) -> OnlineSGD:
    r"""Online SGD on linear random features :math:`z=Fx`, conditional on ``F`` (MATH.md 5.3).

    Given ``F``, :math:`z\sim\mathcal N(0,\Sigma_F)` with :math:`\Sigma_F=F\Sigma F^\top`, and
    the residual :math:`y-w_*\cdot z`, :math:`w_*=\Sigma_F^+F\Sigma\beta`, is Gaussian,
    independent of ``z``, with variance
    :math:`\sigma_e^2=\sigma^2+\beta^\top\Sigma\beta-w_*^\top\Sigma_Fw_*`. So the problem
    is MATH.md 5.2 exactly, with :math:`\Sigma\to\Sigma_F`, :math:`\sigma^2\to\sigma_e^2`
    and the target :math:`w_*` (written in the eigenbasis of :math:`\Sigma_F`). The
    average over ``F`` (the one-point deterministic equivalent of MATH.md 5.3) is not
    implemented here.

    Parameters
    ----------
    features : array_like, shape (N, D)
        The feature map ``F``.
    eigenvalues, beta : array_like, shape (D,)
        The input covariance (diagonal in the input coordinates) and the teacher.
    eta, batch, noise : float, int, float
        As in :class:`OnlineSGD` (``noise`` is the label-noise variance of ``y``).

    Returns
    -------
    OnlineSGD
        The equivalent online-SGD problem in feature space (``N`` modes).

    Examples
    --------
    >>> import numpy as np
    >>> lams, beta = np.array([1.0, 0.5]), np.array([1.0, 2.0])
    >>> m = random_features_online_sgd(np.array([[1.0, 0.0]]), lams, beta, eta=0.1, noise=0.1)
    >>> m.eigenvalues.tolist(), round(m.noise, 12)  # the unseen direction is label noise
    ([1.0], 2.1)
    """
    f = np.asarray(features, dtype=float)
    lams = _as_spectrum("eigenvalues", eigenvalues)
    if f.ndim != 2 or f.shape[1] != lams.size or not np.all(np.isfinite(f)):
        raise InvalidArgument(
            f"features must be a finite (N, D) matrix with D = {lams.size} columns; got shape {f.shape}"
        )
    if np.any(lams < 0):
        raise InvalidArgument(f"eigenvalues must be >= 0; the smallest is {lams.min():g}")
    b = _as_spectrum("beta", beta, lams.size)
    if not isinstance(noise, numbers.Real) or not noise >= 0:
        raise InvalidArgument(f"noise={noise!r} is the label-noise variance; it must be >= 0")
    sigma_f = (f * lams) @ f.T
    mu, u = np.linalg.eigh(sigma_f)
    cut = mu.max(initial=0.0) * max(f.shape) * np.finfo(float).eps
    keep = mu > cut
    cross = f @ (lams * b)  # F Sigma beta
    w_star_eig = np.where(keep, (u.T @ cross) / np.where(keep, mu, 1.0), 0.0)
    mu = np.where(keep, mu, 0.0)  # the null space of Sigma_F (rounding noise) is exactly neutral
    explained = float(np.sum(mu[keep] * w_star_eig[keep] ** 2))
    resid = max(float(noise) + float(lams @ b**2) - explained, 0.0)
    return OnlineSGD(mu, w_star_eig, eta=eta, batch=batch, noise=resid)


def _kappa_rf(lam: np.ndarray, eigenvalues: np.ndarray, n_features: int) -> np.ndarray:
    r""":math:`\kappa(\lambda)` solving :math:`\kappa(1-n(\kappa)/N)=\lambda`.

    Here :math:`n(\kappa)=\operatorname{Tr}\Sigma(\Sigma+\kappa)^{-1}`.

    ``lam`` has shape ``(T, M)`` with the Talbot nodes in increasing ``theta`` along axis
    1; Newton on :math:`\kappa(N-n(\kappa))-N\lambda`, started on the real axis at
    :math:`|\lambda|` from the large-:math:`\kappa` side and continued node by node.
    """
    from ..errors import VerificationError

    big_n = float(n_features)
    ev = eigenvalues.astype(complex)

    def parts(kap: np.ndarray, lv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = 1.0 / (kap[..., None] + ev)
        n = u @ ev
        dn = -((u * u) @ ev)
        return kap * (big_n - n) - big_n * lv, big_n - n - kap * dn

    def newton(kap: np.ndarray, lv: np.ndarray) -> np.ndarray:
        for _ in range(100):
            phi, dphi = parts(kap, lv)
            step = phi / dphi
            kap = kap - step
            if np.all(np.abs(step) <= 1e-12 * np.abs(kap) + 1e-300):
                return kap
        phi, _ = parts(kap, lv)
        if not np.all(np.abs(phi) <= 1e-8 * big_n * (np.abs(kap) + np.abs(lv))):  # pragma: no cover
            raise VerificationError(f"Newton for kappa did not converge (residual {np.max(np.abs(phi)):.3g})")
        return kap

    out = np.empty_like(lam)
    prev = np.abs(lam[:, 0]).astype(complex)
    kap = newton(prev + float(eigenvalues.sum()) / big_n, prev)
    for j in range(lam.shape[1]):
        for sub in range(1, 5):  # small continuation steps keep Newton on the physical branch
            target = prev + (lam[:, j] - prev) * sub / 4
            before = prev + (lam[:, j] - prev) * (sub - 1) / 4
            _, dphi = parts(kap, before)
            kap = newton(kap + (target - before) * big_n / dphi, target)
        out[:, j] = kap
        prev = lam[:, j]
    return out


def _continuous_gain(eta: Any, batch: int, lams: np.ndarray, where: str, kernel: str) -> tuple[float, float]:
    r"""``(eta / B, Tr Sigma)`` once :math:`\frac\eta B\operatorname{Tr}\Sigma/2<1` is checked: the
    bound on the ``kernel`` sum of a continuous-time renewal equation (``where`` qualifies the
    instability in the message)."""
    gain = float(eta) / batch
    trace = float(lams.sum())
    if gain * trace / 2 >= 1:
        raise InvalidArgument(
            f"eta={eta!r} is unstable{where}: (eta/B) Tr(Sigma)/2 = {gain * trace / 2:.4g} >= 1 bounds the "
            f"{kernel} sum; use eta < {2 * batch / trace:.4g}"
        )
    return gain, trace


def random_features_online_sgd_de(
    eigenvalues: Any,
    beta: Any,
    n_features: int,
    times: Any,
    *,
    eta: float,
    batch: int = 1,
    noise: float = 0.0,
    nodes: int = 16,
) -> np.ndarray:
    r"""Online SGD on ``N`` Gaussian random features, averaged over ``F`` (MATH.md 5.3), continuous time.

    :math:`\tilde L(s)=\tilde F(s)/(1-\frac\eta B\tilde K(s))`,
    :math:`\tilde F(s)=\frac{\sigma^2}s+\frac12m(\frac s2)`,
    :math:`m(\lambda)=\frac\kappa\lambda\beta^\top\Sigma(\kappa+\Sigma)^{-1}\beta`,
    :math:`\tilde K(s)=\frac12[\operatorname{Tr}\Sigma-\frac s2n(\kappa(\frac s2))]`,
    :math:`\kappa(\lambda)=\lambda/(1-n(\kappa)/N)`: only one-point functions enter.
    ``F`` has iid :math:`\mathcal N(0,1/N)` entries (:math:`\mathbb EF^\top F=I_D`); the
    time is :math:`t_c=\eta\times` steps. A large-``N, D`` deterministic equivalent: it
    matches the conditional curves averaged over ``F`` up to :math:`O(1/N)` (see the tests).

    Examples
    --------
    >>> import numpy as np
    >>> lams, beta = np.ones(20), np.ones(20) / np.sqrt(20)
    >>> out = random_features_online_sgd_de(lams, beta, 10**9, [0.5], eta=0.05, noise=0.1)
    >>> exact = OnlineSGD(lams, beta, eta=0.05, noise=0.1).continuous_curve([0.5])  # N -> infinity
    >>> bool(abs(out[0] - exact[0]) < 1e-6)
    True
    """
    from ..derivations.laplace import inverse_laplace

    lams, b, batch = _spectrum_inputs(eigenvalues, beta, batch, eta, noise)
    n_feat = _positive_int("n_features", n_features)
    tt = np.asarray(times, dtype=float).reshape(-1)
    if np.any(~np.isfinite(tt)) or np.any(tt < 0):
        raise InvalidArgument("times must be finite continuous times t_c = eta * steps >= 0")
    gain, trace = _continuous_gain(eta, batch, lams, " in continuous time", "kernel")
    sb = lams * b**2

    def transform(sv: np.ndarray) -> np.ndarray:
        lam_half = sv / 2
        kap = _kappa_rf(lam_half, lams, n_feat)
        u = 1.0 / (kap[..., None] + lams)
        m = kap / lam_half * (u @ sb)
        n = u @ lams
        ftil = noise / sv + 0.5 * m
        ktil = 0.5 * (trace - lam_half * n)
        return ftil / (1 - gain * ktil)

    out = np.empty(tt.size)
    zero = tt == 0
    out[zero] = float(noise) + float(sb.sum())
    if np.any(~zero):
        out[~zero] = inverse_laplace(transform, tt[~zero], nodes)
    return out


@functools.lru_cache(maxsize=1)
def _gradient_flow_test_curve() -> Any:
    """The engine-derived gradient-flow test loss of MATH.md 5.1 (cached: derived once)."""
    from ..derivations.expressions import Deterministic, DeterministicVector, Gaussian
    from .gradient_flow import GradientFlow

    d, p = sp.symbols("D P", positive=True)
    flow = GradientFlow(Deterministic("Sigma", d), Gaussian("X", (p, d)), DeterministicVector("beta", d))
    return flow.test_loss()


def multipass_sgd_de(
    eigenvalues: Any,
    beta: Any,
    n_samples: int,
    times: Any,
    *,
    eta: float,
    batch: int = 1,
    noise: float = 0.0,
    nodes: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Multi-pass SGD on ``P`` Gaussian samples, averaged over data sets (MATH.md 5.4), continuous time.

    With :math:`\kappa=\kappa(s/2)` the data-set renormalized ridge
    (:math:`\kappa(1-n(\kappa)/P)=\lambda`) and :math:`R=(\Sigma+\kappa)^{-1}`:

    .. math:: \tilde{\hat L}(s)=\frac{\tilde{\hat F}(s)}{1-\frac\eta B\tilde{\hat K}(s)},\qquad
              L(t)=F(t)+\tfrac\eta B\mathcal L^{-1}_t\big[\tilde K(s)\tilde{\hat L}(s)\big],

    :math:`\tilde{\hat F}=\frac12\beta^\top\Sigma R\beta+\sigma^2[\frac{1-D/P}s+\frac1{2P}\frac{\kappa}{s/2}\operatorname{Tr}R]`,
    :math:`\tilde{\hat K}=\frac12[\operatorname{Tr}\Sigma-\frac s2n(\kappa)]`,
    :math:`\tilde K=\frac12\operatorname{Tr}\Sigma^2R`, and :math:`F(t)` the gradient-flow
    test loss derived by :class:`~detequiv.models.gradient_flow.GradientFlow` (two-point).
    Inherits the closed system's approximations (Gaussian closure, the non-separable
    term dropped) plus the large-``P, D`` limit; time :math:`t_c=\eta\times` steps.

    Returns
    -------
    test, train : numpy.ndarray
        The two curves at ``times``.
    """  # noqa: E501
    from ..derivations.laplace import inverse_laplace

    lams, b, batch = _spectrum_inputs(eigenvalues, beta, batch, eta, noise)
    p = _positive_int("n_samples", n_samples)
    tt = np.asarray(times, dtype=float).reshape(-1)
    if tt.size == 0 or np.any(~np.isfinite(tt)) or np.any(tt <= 0):
        raise InvalidArgument("times must be finite continuous times t_c = eta * steps > 0")
    gain, trace = _continuous_gain(eta, batch, lams, "", "train-kernel")
    d = lams.size
    sb = lams * b**2

    def pieces(sv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        half = sv / 2
        kap = _kappa_rf(half, lams, p)
        u = 1.0 / (kap[..., None] + lams)
        f_hat = 0.5 * (u @ sb) + noise * ((1 - d / p) / sv + kap / half * u.sum(axis=-1) / (2 * p))
        k_hat = 0.5 * (trace - half * (u @ lams))
        k_test = 0.5 * (u @ lams**2)
        l_hat = f_hat / (1 - gain * k_hat)
        return l_hat, k_test

    train = inverse_laplace(lambda sv: pieces(sv)[0], tt, nodes)
    driven = inverse_laplace(lambda sv: np.prod(pieces(sv), axis=0), tt, nodes)
    forcing = _gradient_flow_test_curve().evaluate(
        {"Sigma": lams, "beta": b, "P": p, "sigma2": float(noise)}, tt, nodes=nodes
    )["total"]
    return np.asarray(forcing) + gain * driven, train
