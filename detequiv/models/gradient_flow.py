r"""Gradient flow on a finite data set, derived from the engine's equivalents (MATH.md 5.1, 5.6).

:class:`GradientFlow` runs :math:`\dot w=-\frac1PX^\top(Xw-y)` from :math:`w_0=0` with
:math:`y=X\beta+\varepsilon`, :math:`\operatorname{Var}\varepsilon=\sigma^2`. Its losses
(no factor 1/2, the test loss includes :math:`\sigma^2`; MATH.md 5) are

.. math:: L(t)=\sigma^2+\beta^\top e^{-t\hat\Sigma}\Sigma e^{-t\hat\Sigma}\beta
          +\tfrac{\sigma^2}{P}\operatorname{Tr}\big[\Sigma g_t(\hat\Sigma)^2\hat\Sigma\big],\qquad
          \hat L(t)=\beta^\top\hat\Sigma e^{-2t\hat\Sigma}\beta
          +\tfrac{\sigma^2}{P}\big(P-D+\operatorname{Tr}_De^{-2t\hat\Sigma}\big),

with :math:`g_t(x)=(1-e^{-tx})/x`. Nothing below is typed in: each term is written as an
inverse Laplace transform of a resolvent functional and the resolvents are replaced by
the engine's equivalents. The named steps are

* ``laplace_representation``: :math:`e^{-tA}=\mathcal L^{-1}_t[(\lambda+A)^{-1}]` and
  :math:`g_s(A)=\mathcal L^{-1}_s[(\lambda+A)^{-1}/\lambda]`, so the forcing is the double
  transform :math:`\mathcal L^{-1}_{t,t}[\beta^\top G\Sigma G'\beta]` and
  :math:`g_t^2x=2g_t-g_{2t}` turns the noise term into single transforms;
* ``two_point_equivalent``: :math:`\lambda\lambda'G\Sigma G'` by
  :func:`~detequiv.derivations.twopoint.derive_two_point` (form III, ``M = Sigma``),
  divided by :math:`\lambda\lambda'` and contracted with :math:`\beta`;
* ``one_point_equivalents``: :math:`\lambda G\simeq\kappa R` and
  :math:`\operatorname{tr}\Sigma\lambda G\simeq\kappa\operatorname{tr}\Sigma R`
  by :func:`~detequiv.derivations.onepoint.derive`, with the exact absorption
  :math:`\hat\Sigma G=I-\lambda G` for the training signal;
* ``inverse_laplace``: one hyperbolic contour shared by each window ``[t0, 10 t0]`` of
  times (Weideman and Trefethen 2007; or one Talbot contour per time, MATH.md 5.6), the
  fixed point :math:`\kappa(\lambda)` solved on the contour nodes by a vectorized Newton
  continuation of the engine's own fixed-point equation; a two-variable transform is a
  matrix over pairs of nodes, computed once per window.

:class:`RandomFeatureGradientFlow` (MATH.md 5.5) is the same construction for linear random
features, with the layered two-point equivalent
(:func:`~detequiv.derivations.layered.derive_layered_two_point`) in place of the
single-layer one.

>>> import numpy as np, sympy as sp
>>> from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian
>>> D, P = sp.symbols("D P", positive=True)
>>> flow = GradientFlow(Deterministic("Sigma", D), Gaussian("X", (P, D)), DeterministicVector("beta", D))
>>> curve = flow.test_loss()
>>> list(curve.constant), list(curve.terms)
(['noise'], ['forcing', 'variance'])
>>> [s.rule.name for s in curve.derivation if s.rule.name in ("laplace_representation", "inverse_laplace")]
['laplace_representation', 'inverse_laplace']
>>> values = {"Sigma": np.ones(50), "beta": np.ones(50) / np.sqrt(50), "P": 100, "sigma2": 0.25}
>>> out = curve.evaluate(values, [0.0, 1.0, 1e6])
>>> bool(abs(out["total"][0] - 1.25) < 1e-8)        # L(0) = sigma^2 + beta' Sigma beta
True
>>> bool(abs(out["total"][2] - 0.25 / (1 - 0.5)) < 1e-6)   # ridgeless, D/P = 1/2
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp

from ..derivations.derivation import FixedPoint, Step
from ..derivations.derive import derive
from ..derivations.expressions import Deterministic, DeterministicVector, Gaussian, resolvent, trace
from ..derivations.laplace import CurveModel, LaplacePiece, LossCurve, inverse_laplace_step
from ..derivations.layered import LayeredTwoPoint, derive_layered_two_point
from ..derivations.quantities import df1, tr, word_letters
from ..derivations.rules import (
    LAPLACE_REPRESENTATION,
    ONE_POINT_EQUIVALENTS,
    RESOLVENT_IDENTITY,
    TWO_POINT_EQUIVALENT,
)
from ..derivations.sandwich import derive_two_point
from ..derivations.traces import mtr, quadratic_form, to_atoms
from ..derivations.twopoint import TwoPoint
from ..errors import DetEquivError, InvalidArgument, VerificationError
from . import gradient_flow_mc
from .random_features import RandomFeatureDerivation, RandomFeatureRidge, check_random_feature_model
from .ridge import check_linear_model, sample_covariance

__all__ = ["GradientFlow", "RandomFeatureGradientFlow"]

_REF_LAPLACE = "MATH.md 5.1: e^{-tA} = (1/2 pi i) int_Br e^{lam t} (lam + A)^{-1} dlam"


# ---------------------------------------------------------------------------
# Talbot inversion
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# the derived curve
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GradientFlow(CurveModel):
    r"""Gradient flow on ``P`` samples of linear regression (MATH.md 5.1).

    ``X`` is ``P x D`` Gaussian (rows :math:`\Sigma^{1/2}z`), the target ``beta`` and the
    label-noise variance ``noise``. :meth:`test_loss` and :meth:`training_loss` return
    derived :class:`LossCurve` objects.
    """

    sigma: Deterministic
    gaussian: Gaussian
    beta: DeterministicVector
    noise: sp.Expr = sp.Symbol("sigma2", nonnegative=True)
    lam: sp.Symbol = sp.Symbol("lam", positive=True)
    lam2: sp.Symbol = sp.Symbol("lam2", positive=True)

    def __post_init__(self) -> None:
        check_linear_model("GradientFlow", self.sigma, self.gaussian, self.beta)
        if self.lam == self.lam2:
            raise InvalidArgument(
                f"lam and lam2 are both {self.lam}; the forcing needs two Laplace variables"
            )

    @classmethod
    def from_ridge(cls, model: Any) -> GradientFlow:
        """The gradient flow of a :class:`~detequiv.models.ridge.RidgeRegression` (same data)."""
        return cls(model.sigma, model.gaussian, model.beta, model.noise)

    @property
    def dims(self) -> tuple[sp.Expr, sp.Expr]:
        """``(P, D)``."""
        return self.gaussian.dims

    @property
    def sample_covariance(self) -> Any:
        return sample_covariance(self.sigma, self.gaussian)

    def check_monte_carlo(
        self, curve: LossCurve, sizes: Sequence[int] | None, *, rng: Any, **options: Any
    ) -> Any:
        """Simulated gradient flow (random-feature gradient flow for a random-feature model)
        against ``curve`` (:func:`detequiv.models.gradient_flow_mc.check_monte_carlo`)."""
        if sizes is not None:
            options["sizes"] = sizes
        return gradient_flow_mc.check_monte_carlo(curve, rng=rng, **options)

    def ridge_ratio(self, scalars: Mapping[str, float]) -> float:
        """``c`` with ``kappa <= lam + c tr Sigma`` on the physical branch (``D / P``)."""
        p, d = self.dims
        return scalars[str(d)] / scalars[str(p)]

    def two_point(self) -> TwoPoint:
        r"""The engine's equivalent of
        :math:`\lambda\lambda'(\lambda+\hat\Sigma)^{-1}\Sigma(\lambda'+\hat\Sigma)^{-1}`."""
        sh = self.sample_covariance
        tp = derive_two_point(
            self.lam * self.lam2 * resolvent(sh, self.lam) @ self.sigma @ resolvent(sh, self.lam2)
        )
        assert isinstance(tp, TwoPoint)
        return tp

    def _laplace_step(self, note: str) -> Step:
        t = sp.Symbol("t", nonnegative=True)
        a = sp.MatrixSymbol("A", *self.sigma.to_sympy().shape)
        return Step(LAPLACE_REPRESENTATION, sp.exp(-t * a), sp.Symbol("L^-1_t[(lam + A)^-1]"), note)

    def test_loss(self, two_point: TwoPoint | None = None) -> LossCurve:
        r"""The test loss :math:`L(t)`: ``noise`` + ``forcing`` + ``variance``, derived.

        ``two_point`` replaces the engine's two-point equivalent (negative controls, e.g.
        ``flow.two_point().with_scale(0)``, the naive product of one-point equivalents).
        """
        p, d = self.dims
        lam, lam2 = self.lam, self.lam2
        b = sp.MatrixSymbol(self.beta.name, d, 1)
        steps = [
            self._laplace_step(
                "beta' e^{-t S^} Sigma e^{-t S^} beta = L^-1_{t,t}[beta' G(lam) Sigma G(lam2) beta]; "
                "(sigma2/P) Tr Sigma g_t(S^)^2 S^ = (sigma2/P)[2 Tr Sigma g_t(S^) - Tr Sigma g_2t(S^)], "
                "Tr Sigma g_s(S^) = L^-1_s[Tr(Sigma G)/lam]",
            )
        ]
        tp = self.two_point() if two_point is None else two_point
        steps.extend(tp.derivation)
        forcing = quadratic_form(tp.deterministic, b) / (lam * lam2)
        steps.append(
            Step(
                TWO_POINT_EQUIVALENT,
                sp.Symbol("beta' G(lam) Sigma G(lam2) beta"),
                forcing,
                "the engine's lam lam2 G Sigma G' divided by lam lam2, contracted with beta",
            )
        )
        one = derive(trace(self.sigma @ (lam * resolvent(self.sample_covariance, lam))))
        fp = one.inner.fixed_points[0]
        kappa = tp.kappa
        tr_sg = to_atoms(one.deterministic).xreplace({fp.symbol: kappa}) / lam  # tr(Sigma G)
        noise_transform = d * tr_sg / lam  # Tr(Sigma G) / lam
        steps.extend(one.derivation)
        steps.append(
            Step(
                ONE_POINT_EQUIVALENTS,
                sp.Symbol("Tr(Sigma G(lam))/lam"),
                noise_transform,
                "lam tr(Sigma G) ~ kappa tr(Sigma R) from the one-point engine",
            )
        )
        steps.append(inverse_laplace_step())
        pieces_f = (
            LaplacePiece(
                sp.S.One, forcing, (lam, lam2), (tp.kappa, tp.kappa2), 1, "beta' e^{-tS^} Sigma e^{-tS^} beta"
            ),
        )
        pieces_v = (
            LaplacePiece(2 * self.noise / p, noise_transform, (lam,), (kappa,), 1, "Tr Sigma g_t(S^)"),
            LaplacePiece(-self.noise / p, noise_transform, (lam,), (kappa,), 2, "Tr Sigma g_2t(S^)"),
        )
        return LossCurve(
            name="L_test",
            constant={"noise": sp.sympify(self.noise)},
            terms={"forcing": pieces_f, "variance": pieces_v},
            fixed_points=tp.fixed_points,
            derivation=tuple(steps),
            model=self,
            sources=(("forcing", tp), ("variance", one)),
        )

    def training_loss(self) -> LossCurve:
        r"""The training loss :math:`\hat L(t)=\frac1P\|Xw(t)-y\|^2`: ``signal`` + ``noise_part``, derived.

        :math:`\beta^\top\hat\Sigma e^{-2t\hat\Sigma}\beta=\mathcal L^{-1}_{2t}[\beta^\top\hat\Sigma G\beta]`
        with :math:`\hat\Sigma G=I-\lambda G\simeq I-\kappa R`, and
        :math:`\operatorname{Tr}_De^{-2t\hat\Sigma}=\mathcal L^{-1}_{2t}[\operatorname{Tr}G]`.
        """
        p, d = self.dims
        lam = self.lam
        b = sp.MatrixSymbol(self.beta.name, d, 1)
        steps = [
            self._laplace_step(
                "(1/P)|X w(t) - y|^2 averaged over the noise = beta' S^ e^{-2tS^} beta + (sigma2/P)(P - D + "
                "Tr_D e^{-2tS^}) (push-through: Tr_P e^{-2tK} = P - D + Tr_D e^{-2tS^})",
            )
        ]
        one = derive(lam * resolvent(self.sample_covariance, lam))
        fp = one.fixed_points[0]
        kappa = fp.symbol
        steps.extend(one.derivation)
        n = sp.Identity(d)
        absorbed = sp.MatAdd(n, -one.deterministic).doit()  # S^ G = I - lam G ~ I - kappa R
        if sp.simplify(one.prefactor - 1) != 0:  # pragma: no cover - lam G has prefactor 1
            raise DetEquivError(f"unexpected one-point prefactor {one.prefactor}")
        y = one.matrix
        cleared = sp.MatMul(y, (one.ridge * n + y).inverse())  # I - k (k + Y)^-1 = Y (k + Y)^-1
        steps.append(
            Step(
                ONE_POINT_EQUIVALENTS,
                sp.Symbol("S^ G(lam)"),
                absorbed,
                "signal transform beta' S^ G beta; noise transform Tr G = Tr(lam G)/lam",
            )
        )
        steps.append(
            Step(
                RESOLVENT_IDENTITY,
                absorbed,
                cleared,
                "avoids cancelling I against kappa R at large |lam| (the transform decays as 1/lam)",
            )
        )
        signal = quadratic_form(cleared, b)
        tr_g = to_atoms(sp.Trace(one.deterministic) / lam)
        steps.append(inverse_laplace_step())
        return LossCurve(
            name="L_train",
            constant={"noise_floor": self.noise * (1 - d / p)},
            terms={
                "signal": (LaplacePiece(sp.S.One, signal, (lam,), (kappa,), 2, "beta' S^ e^{-2tS^} beta"),),
                "noise_part": (LaplacePiece(self.noise / p, tr_g, (lam,), (kappa,), 2, "Tr_D e^{-2tS^}"),),
            },
            fixed_points=(FixedPoint(kappa, sp.Eq(kappa, fp.rhs)),),
            derivation=tuple(steps),
            model=self,
            sources=(("signal and noise_part", one),),
        )

    def train_loss(self) -> LossCurve:
        """Alias of :meth:`training_loss`."""
        return self.training_loss()


@dataclass(frozen=True, slots=True)
class RandomFeatureGradientFlow(CurveModel):
    r"""Gradient flow of linear random features on ``P`` samples (MATH.md 5.5).

    Features :math:`Fx\in\mathbb R^N` with ``F`` (``features``, ``N x D``) Gaussian, entries of
    variance ``1/N`` (so :math:`W_F=F^\top F` has :math:`\mathbb EW_F=I`); data ``X``
    (``gaussian``, ``P x D``, rows :math:`\Sigma^{1/2}z`), labels :math:`y=X\beta+\varepsilon`,
    :math:`\operatorname{Var}\varepsilon=` ``noise`` (default 0: noise-free labels);
    :math:`\dot w=-\frac1PFX^\top(XF^\top w-y)` from :math:`w_0=0`. The effective
    :math:`\hat\beta(t)=F^\top w(t)=g_t(B)W_FX^\top y/P`, :math:`B=W_F\hat\Sigma`, obeys
    :math:`\hat\beta-\beta=-e^{-tB}\beta+g_t(B)W_FX^\top\varepsilon/P`, so

    .. math:: L(t)=\sigma^2+\beta^\top e^{-t\hat\Sigma W_F}\Sigma e^{-tW_F\hat\Sigma}\beta
              +\tfrac{\sigma^2}{P}\big[2F(t)-F(2t)\big],\qquad
              F(s)=\operatorname{Tr}W_F\Sigma g_s(B)

    (:math:`g_t(B)W_F\hat\Sigma W_Fg_t(B)^\top` is :math:`W_Fg_t(C)^2C` with
    :math:`C=\hat\Sigma W_F`, and :math:`g_t^2x=2g_t-g_{2t}`).

    :meth:`test_loss` derives the forcing from the engine's layered two-point equivalent
    (:func:`~detequiv.derivations.layered.derive_layered_two_point`): every
    frequency is renormalized twice, :math:`\lambda\to\kappa_1\to\kappa_2`. The noise
    part is :math:`F(s)=\mathcal L^{-1}_s[f(\lambda)/\lambda^2]` with
    :math:`f=\lambda\operatorname{Tr}\Sigma(\lambda+W_F\hat\Sigma)^{-1}W_F`, whose equivalent
    is the one :class:`~detequiv.models.random_features.RandomFeatureRidge` derives for
    its label-noise variance (``conditional_equivalent`` with ``W_F`` held, then
    ``trace_concentration``).

    >>> import numpy as np, sympy as sp
    >>> from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian
    >>> D, N, P = sp.symbols("D N P", positive=True)
    >>> rf = RandomFeatureGradientFlow(Deterministic("Sigma", D), Gaussian("X", (P, D)),
    ...                                Gaussian("F", (N, D)), DeterministicVector("beta", D))
    >>> curve = rf.test_loss()
    >>> [str(k) for k in curve.terms["forcing"][0].ridges]
    ['kappa_2', "kappa_2'"]
    >>> out = curve.evaluate({"Sigma": np.ones(40), "beta": np.ones(40) / np.sqrt(40), "N": 20, "P": 1e13},
    ...                      [0.0, 1e7])
    >>> bool(abs(out["total"][0] - 1.0) < 1e-8)       # L(0) = beta' Sigma beta
    True
    >>> bool(abs(out["total"][1] - 0.5) < 1e-6)       # P -> oo: projection onto N = D/2 directions
    True
    >>> noisy = RandomFeatureGradientFlow(rf.sigma, rf.gaussian, rf.features, rf.beta, sp.Symbol("sigma2"))
    >>> list(noisy.test_loss().terms)
    ['forcing', 'variance']
    """

    sigma: Deterministic
    gaussian: Gaussian
    features: Gaussian
    beta: DeterministicVector
    noise: sp.Expr = sp.S.Zero
    lam: sp.Symbol = sp.Symbol("lam", positive=True)
    lam2: sp.Symbol = sp.Symbol("lam2", positive=True)

    def __post_init__(self) -> None:
        check_random_feature_model(
            "RandomFeatureGradientFlow", self.sigma, self.gaussian, self.features, self.beta
        )
        try:
            noise = sp.sympify(self.noise)
        except (sp.SympifyError, TypeError) as exc:
            raise InvalidArgument(
                f"noise={self.noise!r} is not a label-noise variance; pass a number >= 0 or a symbol"
            ) from exc
        if noise.is_negative or (noise.is_number and not noise.is_finite):
            raise InvalidArgument(f"noise={self.noise!r}: the label-noise variance must be finite and >= 0")
        object.__setattr__(self, "noise", noise)
        if self.lam == self.lam2:
            raise InvalidArgument(f"lam and lam2 are both {self.lam}; the loss needs two Laplace variables")

    @property
    def dims(self) -> tuple[sp.Expr, sp.Expr]:
        """``(P, D)``."""
        return self.gaussian.dims

    @property
    def n_features(self) -> sp.Expr:
        """``N``."""
        return self.features.dims[0]

    # the same witness as GradientFlow's: gradient_flow_mc.check_monte_carlo dispatches on the model
    check_monte_carlo = GradientFlow.check_monte_carlo

    def ridge_ratio(self, scalars: Mapping[str, float]) -> float:
        """``c`` with ``kappa_2 <= lam + c tr Sigma`` on the physical branch (``D/P + D/N``)."""
        p, d = self.dims
        n = str(self.n_features)
        if n not in scalars or scalars[n] <= 0:
            raise InvalidArgument(f"values needs the number of features {n} > 0")
        return scalars[str(d)] / scalars[str(p)] + scalars[str(d)] / scalars[n]

    def two_point(self) -> LayeredTwoPoint:
        r"""The engine's layered equivalent of
        :math:`\lambda\lambda'(\lambda+\hat\Sigma W_F)^{-1}\Sigma(\lambda'+W_F\hat\Sigma)^{-1}`."""
        p, d = self.dims
        s = self.sigma
        x, f = self.gaussian, self.features
        sh = s.sqrt() @ x.T @ x @ s.sqrt() / p
        wf = f.T @ f / self.n_features
        return derive_layered_two_point(
            self.lam * self.lam2 * resolvent(sh @ wf, self.lam) @ s @ resolvent(wf @ sh, self.lam2)
        )

    def test_loss(self, two_point: LayeredTwoPoint | None = None) -> LossCurve:
        r"""The test loss :math:`L(t)`: ``noise`` + ``forcing`` (+ ``variance`` if ``noise`` != 0), derived.

        ``two_point`` replaces the engine's layered equivalent (negative controls, e.g.
        ``rf.two_point().without_outer()``: the feature layer's correction dropped).
        """
        p, d = self.dims
        lam, lam2 = self.lam, self.lam2
        t = sp.Symbol("t", nonnegative=True)
        a = sp.MatrixSymbol("A", d, d)
        steps = [
            Step(
                LAPLACE_REPRESENTATION,
                sp.exp(-t * a),
                sp.Symbol("L^-1_t[(lam + A)^-1]"),
                "beta_hat(t) - beta = -e^{-t W_F S^} beta, so "
                "L(t) = beta' e^{-t S^ W_F} Sigma e^{-t W_F S^} beta "
                "= L^-1_{t,t}[beta' (lam + S^ W_F)^-1 Sigma (lam2 + W_F S^)^-1 beta]",
            )
        ]
        tp = self.two_point() if two_point is None else two_point
        steps.extend(tp.derivation)
        forcing, ridges, chain = _layered_quadratic(tp, self.sigma.name, self.beta.name, d, lam, lam2)
        steps.append(
            Step(
                TWO_POINT_EQUIVALENT,
                sp.Symbol("beta' (lam + S^ W_F)^-1 Sigma (lam2 + W_F S^)^-1 beta"),
                forcing,
                "the engine's layered lam lam2 T(lam, lam2; Sigma) divided by lam lam2, contracted with "
                "beta; "
                f"the intermediate ridges {', '.join(map(str, chain))} replaced by their one-point chain "
                f"equations in {ridges[0]}, {ridges[1]}",
            )
        )
        terms: dict[str, tuple[LaplacePiece, ...]] = {
            "forcing": (
                LaplacePiece(
                    sp.S.One, forcing, (lam, lam2), ridges, 1, "beta' e^{-t S^ W_F} Sigma e^{-t W_F S^} beta"
                ),
            )
        }
        if self.noise != 0:
            fps = {fp.symbol: fp for fp in tp.fixed_points}
            f_lam, f_steps = _rf_noise_trace(self, fps[ridges[0]])
            transform = f_lam / lam**2
            steps.append(
                Step(
                    LAPLACE_REPRESENTATION,
                    sp.Symbol("Tr W_F Sigma g_s(W_F S^)"),
                    sp.Symbol("L^-1_s[lam Tr(W_F Sigma (lam + W_F S^)^-1) / lam^2]"),
                    "label noise: beta_hat(t) = g_t(B) W_F X' y / P with B = W_F S^, so the noise part is "
                    "(sigma2/P) Tr Sigma g_t(B) W_F S^ W_F g_t(B)' = (sigma2/P) Tr W_F Sigma g_t(B)^2 B "
                    "(g(W_F S^) W_F = W_F g(S^ W_F)) = (sigma2/P)[2 F(t) - F(2t)], g_t^2 x = 2 g_t - g_2t, "
                    "F(s) = Tr W_F Sigma g_s(B)",
                )
            )
            steps.extend(f_steps)
            terms["variance"] = (
                LaplacePiece(
                    2 * self.noise / p, transform, (lam,), (ridges[0],), 1, "Tr W_F Sigma g_t(W_F S^)"
                ),
                LaplacePiece(
                    -self.noise / p, transform, (lam,), (ridges[0],), 2, "Tr W_F Sigma g_2t(W_F S^)"
                ),
            )
        steps.append(inverse_laplace_step())
        return LossCurve(
            name="L_test",
            constant={"noise": self.noise},
            terms=terms,
            fixed_points=tp.fixed_points,
            derivation=tuple(steps),
            model=self,
            sources=(("forcing", tp),),
        )


def _rf_noise_trace(flow: RandomFeatureGradientFlow, root: FixedPoint) -> tuple[sp.Expr, tuple[Step, ...]]:
    r"""The equivalent of :math:`f(\lambda)=\lambda\operatorname{Tr}\Sigma(\lambda+W_F\hat\Sigma)^{-1}W_F`
    in the ridge ``root`` (``kappa_2``), and the steps that derived it.

    It is :class:`~detequiv.models.random_features.RandomFeatureRidge`'s own derivation
    (:meth:`~detequiv.models.random_features.RandomFeatureDerivation.noise_trace`: the trace
    with ``W_F`` held fixed, then released by trace concentration),
    nothing copied. Its chain's fixed point is checked
    to be ``root``. The step ``resolvent_identity`` (:math:`\operatorname{tr}k(k+\Sigma)^{-1}
    =1-\operatorname{tr}\Sigma(k+\Sigma)^{-1}`, exact) avoids cancelling 1 against
    :math:`k\operatorname{tr}R` at large :math:`|\lambda|`.
    """
    p, d = flow.dims
    ridge = RandomFeatureRidge(flow.sigma, flow.gaussian, flow.features, flow.beta, flow.noise, flow.lam)
    der = RandomFeatureDerivation(ridge)
    f_lam = to_atoms(der.noise_trace())
    if der.kappa != root.symbol or sp.simplify(to_atoms(der.fixed.rhs) - to_atoms(root.rhs)) != 0:
        raise VerificationError(f"the label-noise trace is in {der.fixed}, not in the forcing's ridge {root}")
    steps = list(der.steps)
    k = root.symbol
    sig = sp.MatrixSymbol(flow.sigma.name, d, d)
    inv = (k * sp.Identity(d) + sig).inverse()
    rewritten = f_lam.xreplace({mtr(inv): (1 - mtr(sp.MatMul(sig, inv))) / k})
    rewritten = sp.factor(rewritten)
    if mtr(inv) in rewritten.atoms(mtr):  # pragma: no cover - the rewrite is exact
        raise VerificationError(f"could not absorb {mtr(inv)} in {f_lam}")
    steps.append(
        Step(
            RESOLVENT_IDENTITY,
            f_lam,
            rewritten,
            "f(lam) = lam Tr(Sigma G W_F) in df atoms only (no cancellation at large |lam|)",
        )
    )
    return rewritten, tuple(steps)


def _layered_quadratic(
    tp: LayeredTwoPoint, sigma_name: str, beta_name: str, d: sp.Expr, lam: sp.Symbol, lam2: sp.Symbol
) -> tuple[sp.Expr, tuple[sp.Symbol, sp.Symbol], tuple[sp.Symbol, ...]]:
    """``beta' T beta / (lam lam2)`` of a layered equivalent ``T`` whose letters are functions of
    ``Sigma`` alone, as :class:`mtr` atoms in the innermost ridges (returned), the intermediate
    ridges (returned as ``chain``) eliminated by their fixed-point equations."""
    sig = sp.MatrixSymbol(sigma_name, d, d)
    b = sp.MatrixSymbol(beta_name, d, 1)
    res = {r: (k, y) for r, k, y in tp.resolvents}
    own = {sigma_name, f"{sigma_name}_sqrt"}

    def halves(word: Sequence[sp.Symbol]) -> int:
        out = 0
        for x in word:
            if x.name not in own:
                raise InvalidArgument(
                    f"the layered equivalent has the letter {x}; only functions of {sigma_name} "
                    "can be evaluated on its spectrum"
                )
            out += 1 if x.name.endswith("_sqrt") else 2
        return out

    def factors(word: Sequence[sp.Symbol]) -> list[sp.Basic]:
        half, ks = 0, []
        for x in word:
            if x in res:
                k, y = res[x]
                if halves(y) != 2:
                    raise InvalidArgument(f"{x} is a resolvent of {y}, not of {sigma_name}")
                ks.append(k)
            else:
                half += halves((x,))
        mats: list[sp.Basic] = []
        if half:
            mats.append(sig if half == 2 else sp.MatPow(sig, sp.Rational(half, 2)))
        mats += [(k * sp.Identity(d) + sig).inverse() for k in sorted(ks, key=str)]
        return mats

    def trace_atoms(c: sp.Expr) -> sp.Expr:
        rep = {}
        for atom in sp.sympify(c).atoms(tr):
            mats = factors(word_letters(atom.args[0])) if atom.args[0] != 1 else []
            rep[atom] = mtr(sp.MatMul(*mats)) if mats else sp.S.One
        return sp.sympify(c).xreplace(rep)

    total = sp.S.Zero
    for word, c in tp.polynomial:
        quad = mtr(sp.MatMul(b.T, *factors(word), b))
        total += trace_atoms(c) * quad
    total = trace_atoms(tp.prefactor) * total / (lam * lam2)
    fps = {fp.symbol: fp for fp in tp.fixed_points}
    selfconsistent = [s for s, fp in fps.items() if s in to_atoms(fp.rhs).free_symbols | _df1_ridges(fp.rhs)]
    ridges = []
    for v in (lam, lam2):
        found = [s for s in selfconsistent if v in fps[s].rhs.free_symbols]
        if len(found) != 1:
            raise InvalidArgument(f"expected one self-consistent ridge in {v}, found {found}")
        ridges.append(found[0])
    chain = tuple(s for s in fps if s not in ridges)
    for _ in range(len(chain) + 1):  # the chain's equations in the innermost ridges
        present = [s for s in chain if s in total.free_symbols]
        if not present:
            break
        total = total.xreplace({s: to_atoms(fps[s].rhs) for s in present})
    left = (total.free_symbols & set(fps)) - set(ridges)
    if left:
        raise InvalidArgument(f"the ridges {sorted(map(str, left))} could not be eliminated")
    return total, (ridges[0], ridges[1]), chain


def _df1_ridges(rhs: sp.Expr) -> set[sp.Basic]:
    return {a.args[1] for a in sp.sympify(rhs).atoms(df1)}


# ---------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------
