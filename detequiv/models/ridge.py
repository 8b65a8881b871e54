r"""Learning-theory formulas derived from the equivalents: ridge regression (MATH.md 4.1-4.3).

Nothing here is typed in: :class:`RidgeRegression` writes the error of the ridge
estimator :math:`\hat\beta=(\hat\Sigma+\lambda)^{-1}X^\top y/P` as random functionals of the
resolvent :math:`G=(\lambda+\hat\Sigma)^{-1}` (exact algebra), and turns each into a
deterministic expression with the engine's rules:

* ``error_decomposition``: :math:`\hat\beta-\beta=-\lambda G\beta+GX^\top\varepsilon/P`; averaging
  the label noise gives bias :math:`\lambda^2\beta^\top G\Sigma'G\beta`, variance
  :math:`\frac{\sigma^2}{P}\operatorname{Tr}\Sigma'G\hat\Sigma G` and the test noise;
* ``two_point_coincidence``: the bias is the two-point equivalent of
  :func:`~detequiv.derivations.twopoint.derive_two_point` (form III, ``M`` the test
  covariance) at :math:`\lambda'=\lambda`, contracted with :math:`\beta`;
* ``resolvent_absorption``: :math:`G\hat\Sigma G=G-\lambda G^2=G+\lambda\,\partial_\lambda G`
  (exact), so variance and training error need one-point equivalents and their
  :math:`\lambda`-derivative;
* ``implicit_differentiation``: :math:`d\kappa/d\lambda=-\partial_\lambda\Phi/\partial_\kappa\Phi` from
  the fixed point :math:`\Phi(\kappa,\lambda)=0`, with traces differentiated as matrix
  functions (:math:`\partial_\kappa(\kappa+\Sigma)^{-1}=-(\kappa+\Sigma)^{-2}`).

Every term proves itself: :meth:`LossFormula.check_series` expands it in :math:`1/\lambda`
and compares each coefficient with the planar diagram sums of the random functional it
came from; :mod:`detequiv.models.ridge_mc` simulates ridge regression.

>>> import sympy as sp
>>> from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian
>>> D, P = sp.symbols("D P", positive=True)
>>> ridge = RidgeRegression(Deterministic("Sigma", D), Gaussian("X", (P, D)), DeterministicVector("beta", D))
>>> err = ridge.test_error()
>>> sorted(err.terms)
['bias', 'noise', 'variance']
>>> err.check_series(4).passed
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp

from ..derivations.derivation import FixedPoint, Step
from ..derivations.derive import derive
from ..derivations.expressions import Deterministic, DeterministicVector, Gaussian, resolvent, trace
from ..derivations.formula import LossFormula, LossModel, RandomTerm, SeriesSpec
from ..derivations.laws import Wishart
from ..derivations.onepoint import OnePoint
from ..derivations.rules import IMPLICIT_DIFFERENTIATION, RESOLVENT_ABSORPTION, TWO_POINT_COINCIDENCE
from ..derivations.sandwich import derive_two_point
from ..derivations.traces import lam_derivative, quadratic_form, to_atoms
from ..errors import InvalidArgument
from . import ridge_mc
from .rules import ERROR_DECOMPOSITION, TRAINING_DECOMPOSITION

__all__ = ["RidgeRegression", "check_linear_model", "sample_covariance"]


# ---------------------------------------------------------------------------
# ridge regression
# ---------------------------------------------------------------------------


def sample_covariance(sigma: Deterministic, gaussian: Gaussian) -> Any:
    r"""The expression :math:`\Sigma^{1/2}X^\top X\Sigma^{1/2}/P` of data with covariance ``sigma``."""
    s = sigma.sqrt()
    return s @ gaussian.T @ gaussian @ s / gaussian.dims[0]


def check_linear_model(model: str, sigma: Any, gaussian: Any, beta: Any) -> None:
    """Validate ``model(Sigma, X, beta)``: types and matching dimensions.

    Raises
    ------
    InvalidArgument
        Naming what is wrong and what was expected.

    Examples
    --------
    >>> import sympy as sp
    >>> D, P = sp.symbols("D P", positive=True)
    >>> sigma, beta = Deterministic("Sigma", D), DeterministicVector("beta", D)
    >>> check_linear_model("Model", sigma, Gaussian("X", (P, P)), beta)
    Traceback (most recent call last):
    ...
    detequiv.errors.InvalidArgument: X has P columns but Sigma is D x D
    """
    if not isinstance(sigma, Deterministic) or not isinstance(gaussian, Gaussian):
        raise InvalidArgument(f"{model}(Sigma, X, beta): Sigma Deterministic, X Gaussian (P x D)")
    p, d = gaussian.dims
    if sp.simplify(d - sigma.dim) != 0:
        raise InvalidArgument(f"X has {d} columns but Sigma is {sigma.dim} x {sigma.dim}")
    if not isinstance(beta, DeterministicVector) or sp.simplify(beta.dim - d) != 0:
        raise InvalidArgument(f"beta must be a DeterministicVector of dimension {d}")


@dataclass(frozen=True, slots=True)
class RidgeRegression(LossModel):
    r"""Linear ridge regression :math:`y=\beta\cdot x+\varepsilon`, :math:`x\sim\mathcal N(0,\Sigma)`,
    :math:`P` samples (rows of ``X`` are :math:`\Sigma^{1/2}z`), noise variance ``noise``,
    :math:`\hat\beta=(\hat\Sigma+\lambda)^{-1}X^\top y/P` (MATH.md 4.1).

    ``test_covariance`` (default ``Sigma``) and ``test_noise`` (default ``noise``) give the
    covariate-shifted test error (MATH.md 4.3).
    """

    sigma: Deterministic
    gaussian: Gaussian
    beta: DeterministicVector
    noise: sp.Expr = sp.Symbol("sigma2", nonnegative=True)
    test_covariance: Deterministic | None = None
    test_noise: sp.Expr | None = None
    lam: sp.Symbol = sp.Symbol("lam", positive=True)

    def __post_init__(self) -> None:
        check_linear_model("RidgeRegression", self.sigma, self.gaussian, self.beta)

    @property
    def dims(self) -> tuple[sp.Expr, sp.Expr]:
        """``(P, D)``."""
        return self.gaussian.dims

    @property
    def sample_covariance(self) -> Any:
        r""":math:`\hat\Sigma=\Sigma^{1/2}X^\top X\Sigma^{1/2}/P` (``X`` has iid standard entries)."""
        return sample_covariance(self.sigma, self.gaussian)

    def one_point(self) -> OnePoint:
        """The equivalent of :math:`\\lambda(\\lambda+\\hat\\Sigma)^{-1}`; its fixed point gives the ridge."""
        eq = derive(self.lam * resolvent(self.sample_covariance, self.lam))
        assert isinstance(eq, OnePoint)
        return eq

    def check_monte_carlo(
        self, loss: LossFormula, sizes: Sequence[int] | None, *, rng: Any, **options: Any
    ) -> Any:
        """Simulated ridge regression against ``loss``
        (:func:`detequiv.models.ridge_mc.check_monte_carlo`)."""
        if sizes is not None:
            options["sizes"] = sizes
        return ridge_mc.check_monte_carlo(loss, rng=rng, **options)

    def series_spec(self) -> SeriesSpec:
        """Letters and laws of the exact witness: ``G`` the resolvent, ``S`` the sample covariance."""
        p, d = self.dims
        half = sp.Symbol(f"{self.sigma.name}_sqrt", commutative=False)
        w = sp.Symbol(f"W_{self.gaussian.name}", commutative=False)
        s_hat = (half, w, half)
        return SeriesSpec(
            one=self.one_point(),
            sqrt_name=self.sigma.name,
            laws={w: Wishart(sp.simplify(d / p))},
            resolvents={"G": s_hat},
            blocks={"S": s_hat},
            dim=d,
        )

    def test_error(self) -> LossFormula:
        """Bias, variance and noise of the test error (MATH.md 4.1, 4.3), derived."""
        lam = self.lam
        p, d = self.dims
        sig = self.sigma.to_sympy()
        shift = self.test_covariance or self.sigma
        sig_t = shift.to_sympy()
        b = sp.MatrixSymbol(self.beta.name, d, 1)
        noise_t = self.noise if self.test_noise is None else self.test_noise
        steps = [
            Step(
                ERROR_DECOMPOSITION,
                sp.Symbol("E_test"),
                sp.Symbol("bias") + sp.Symbol("variance") + noise_t,
                "beta_hat - beta = -lam G beta + G X^T eps / P; the cross term has mean 0 over eps",
            )
        ]
        # bias: two-point equivalent at coincidence
        lam2 = sp.Symbol("lam2", positive=True)
        sh = self.sample_covariance
        tp = derive_two_point(lam * lam2 * resolvent(sh, lam) @ shift @ resolvent(sh, lam2))
        kappa = tp.kappa
        coincide = {lam2: lam, tp.kappa2: kappa}
        bias_matrix = tp.deterministic.xreplace(coincide)
        steps.extend(tp.derivation)
        steps.append(
            Step(
                TWO_POINT_COINCIDENCE,
                tp.deterministic,
                bias_matrix,
                "set lam' = lam (kappa' = kappa): lam^2 G M G",
            )
        )
        bias = quadratic_form(bias_matrix, b)
        # variance: (sigma2 / P) Tr(Sigma' G Sigma_hat G) = (sigma2 D / P) [tr(S' G) + lam d/dlam tr(S' G)]
        one = derive(trace(shift @ (lam * resolvent(sh, lam))))
        fp = one.inner.fixed_points[0]
        k1 = fp.symbol
        trg = to_atoms(one.deterministic).xreplace({k1: kappa}) / lam  # tr(S' G)
        fixed = sp.Eq(kappa, fp.rhs.xreplace({k1: kappa}))
        d_trg, dk = lam_derivative(trg, lam, kappa, fixed)
        variance = self.noise * d / p * (trg + lam * d_trg)
        steps.append(
            Step(
                RESOLVENT_ABSORPTION,
                sp.Symbol("G") * sp.Symbol("Sigma_hat") * sp.Symbol("G"),
                sp.Symbol("G") + lam * sp.Derivative(sp.Symbol("G"), lam),
                "variance = (sigma2/P) Tr(S' G) + lam (sigma2/P) d/dlam Tr(S' G)",
            )
        )
        steps.extend(one.derivation)
        steps.append(
            Step(
                IMPLICIT_DIFFERENTIATION,
                sp.Derivative(kappa, lam),
                dk,
                "dkappa/dlam = -dPhi/dlam / dPhi/dkappa, Phi = kappa - rhs",
                fixed,
            )
        )
        g = sp.MatrixSymbol("G", d, d)
        hat = sp.MatrixSymbol("Sigma_hat", d, d)
        random = {
            "bias": (RandomTerm(lam**2, ("G", sig_t, "G"), b),),
            "variance": (RandomTerm(self.noise * d / p, (sig_t, "G", "S", "G")),),
            "noise": (),
        }
        del g, hat, sig
        return LossFormula(
            name="E_test",
            terms={"bias": bias, "variance": variance, "noise": sp.sympify(noise_t)},
            random=random,
            fixed_points=(FixedPoint(kappa, fixed),),
            derivation=tuple(steps),
            lam=lam,
            kappa=kappa,
            model=self,
        )

    def training_error(self) -> LossFormula:
        r"""Training error :math:`\frac1P\|y-X\hat\beta\|^2` (MATH.md 4.2), derived.

        :math:`=\lambda^2\beta^\top G\hat\Sigma G\beta+\sigma^2(1-D/P)
        +\sigma^2\frac DP\lambda^2\operatorname{tr}G^2`
        (push-through :math:`X^\top(K+\lambda)^{-2}X/P=G\hat\Sigma G`, and
        :math:`\operatorname{Tr}_P(K+\lambda)^{-2}=(P-D)/\lambda^2+\operatorname{Tr}_DG^2`).
        """
        lam = self.lam
        p, d = self.dims
        b = sp.MatrixSymbol(self.beta.name, d, 1)
        sh = self.sample_covariance
        steps = [
            Step(
                TRAINING_DECOMPOSITION,
                sp.Symbol("E_train"),
                sp.Symbol("signal") + sp.Symbol("noise_part"),
                "push-through X^T (K + lam)^-2 X / P = G Sigma_hat G; "
                "Tr_P (K+lam)^-2 = (P - D)/lam^2 + Tr_D G^2",
            )
        ]
        one = derive(lam * resolvent(sh, lam))
        fp = one.fixed_points[0]
        kappa = fp.symbol
        fixed = sp.Eq(kappa, fp.rhs)
        eq_matrix = one.deterministic / lam  # G ~ (kappa/lam) R
        qg = quadratic_form(eq_matrix, b)  # b.T G b
        d_qg, dk = lam_derivative(qg, lam, kappa, fixed)
        signal = lam**2 * (to_atoms(qg) + lam * d_qg)
        trg = to_atoms(sp.Trace(eq_matrix) / d)
        d_trg, _ = lam_derivative(trg, lam, kappa, fixed)
        noise_part = self.noise * (1 - d / p) - self.noise * d / p * lam**2 * d_trg
        steps.extend(one.derivation)
        steps.append(
            Step(
                IMPLICIT_DIFFERENTIATION,
                sp.Derivative(kappa, lam),
                dk,
                "G Sigma_hat G = G + lam dG/dlam and tr G^2 = -d tr G / dlam",
                fixed,
            )
        )
        random = {
            "signal": (RandomTerm(lam**2, ("G", "S", "G"), b),),
            "noise_part": (
                RandomTerm(self.noise * (1 - d / p), ()),
                RandomTerm(self.noise * d / p * lam**2, ("G", "G")),
            ),
        }
        return LossFormula(
            name="E_train",
            terms={"signal": signal, "noise_part": noise_part},
            random=random,
            fixed_points=(FixedPoint(kappa, fixed),),
            derivation=tuple(steps),
            lam=lam,
            kappa=kappa,
            model=self,
        )


# ---------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# the exact witness
# ---------------------------------------------------------------------------
