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
>>> [s.rule for s in curve.derivation if s.rule in ("laplace_representation", "inverse_laplace")]
['laplace_representation', 'inverse_laplace']
>>> values = {"Sigma": np.ones(50), "beta": np.ones(50) / np.sqrt(50), "P": 100, "sigma2": 0.25}
>>> out = curve.evaluate(values, [0.0, 1.0, 1e6])
>>> bool(abs(out["total"][0] - 1.25) < 1e-8)        # L(0) = sigma^2 + beta' Sigma beta
True
>>> bool(abs(out["total"][2] - 0.25 / (1 - 0.5)) < 1e-6)   # ridgeless, D/P = 1/2
True
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from ..derivations.expressions import Deterministic, DeterministicVector, Gaussian, resolvent, trace
from ..derivations.layered import LayeredTwoPoint, derive_layered_two_point
from ..derivations.onepoint import Derivation, FixedPoint, Step, call_witness, derive, df1
from ..derivations.quantities import tr, word_letters
from ..derivations.twopoint import TwoPoint, derive_two_point
from ..errors import DetEquivError, InvalidArgument, VerificationError
from .ridge import _flat, _quadratic, _to_atoms, mtr, sample_covariance

__all__ = [
    "GradientFlow",
    "RandomFeatureGradientFlow",
    "LossCurve",
    "LaplacePiece",
    "talbot_nodes",
    "hyperbolic_nodes",
    "time_windows",
    "inverse_laplace",
]

_REF_LAPLACE = "MATH.md 5.1: e^{-tA} = (1/2 pi i) int_Br e^{lam t} (lam + A)^{-1} dlam"
_REF_TALBOT = "MATH.md 5.6 (Talbot contour, midpoint rule); Weideman-Trefethen, Math. Comp. 76 (2007)"
_REF_WINDOW = (
    "Weideman-Trefethen, Math. Comp. 76 (2007): one hyperbolic contour, trapezoid rule, "
    "for all times of a window [t0, 10 t0]"
)

# the windowed hyperbola lam(u) = mu (1 + sin(i u - alpha)) for times in [t0, WINDOW t0]: K = 2M upper
# nodes, mu = MU_PER_NODE * K / (WINDOW t0), u in (0, U_MAX). Tuned on sums of exponentials (rates 0 and
# 1e-8 .. 1e4 / t0, single and double poles): max error 3.5e-6, 2.6e-10, 5.8e-14 for M = 8, 12, 16 over
# the whole window; the largest |e^{lam t}| is e^{mu (1 - sin alpha) t} <= e^{5.2}, so roundoff stays ~1e-14.
WINDOW = 10.0
_ALPHA = 0.9
_U_MAX = 3.4
_MU_PER_NODE = 0.75


# ---------------------------------------------------------------------------
# Talbot inversion
# ---------------------------------------------------------------------------


def _contour_times(times: Any, nodes: Any, what: str, accuracy: str) -> np.ndarray:
    """The times as a flat float array, checked (finite, > 0), and ``nodes`` (an integer >= 2)."""
    if not isinstance(nodes, (int, np.integer)) or nodes < 2:
        raise InvalidArgument(f"nodes={nodes!r}: pass an integer >= 2 (16 is accurate to ~{accuracy})")
    t = np.asarray(times, dtype=float).reshape(-1)
    if np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise InvalidArgument(f"{what} needs finite times t > 0, got {t[(t <= 0) | ~np.isfinite(t)]}")
    return t


def talbot_nodes(times: Any, nodes: int = 16) -> tuple[np.ndarray, np.ndarray]:
    r"""Upper-half Talbot nodes and weights for each time (MATH.md 5.6).

    :math:`\lambda(\theta)=r\theta(\cot\theta+i)`, :math:`r=2M/(5t)`, midpoint nodes
    :math:`\theta_j=(j+\frac12)\pi/M`, :math:`j<M` (the lower half are the conjugates),
    weights :math:`w_j=\lambda'(\theta_j)/(2iM)`, so that for a real-symmetric transform
    :math:`f(t)\approx2\operatorname{Re}\sum_jw_je^{\lambda_jt}\hat f(\lambda_j)`.

    Returns arrays of shape ``(len(times), nodes)``, ordered by increasing ``theta``.

    >>> lam, w = talbot_nodes([1.0, 2.0], 16)
    >>> lam.shape
    (2, 16)
    >>> t = np.array([[1.0], [2.0]])
    >>> f = 2 * np.real(np.sum(w * np.exp(lam * t) / (lam + 0.5), axis=1))   # L^-1[1/(lam+a)]
    >>> bool(np.allclose(f, np.exp(-0.5 * t[:, 0]), rtol=1e-10))
    True
    """
    t = _contour_times(times, nodes, "Talbot inversion", "1e-10")
    theta = (np.arange(nodes) + 0.5) * np.pi / nodes
    cot = 1 / np.tan(theta)
    r = (2 * nodes / (5 * t))[:, None]
    lam = r * theta * (cot + 1j)
    dlam = r * (cot - theta / np.sin(theta) ** 2 + 1j)
    return lam, dlam / (2j * nodes)


def inverse_laplace(transform: Callable[[np.ndarray], np.ndarray], times: Any, nodes: int = 16) -> np.ndarray:
    r"""Talbot inversion of a transform with :math:`\hat f(\bar\lambda)=\overline{\hat f(\lambda)}`.

    ``transform`` maps an array of complex ``lam`` (shape ``(T, nodes)``) to values of
    the same shape.

    >>> f = inverse_laplace(lambda s: 1 / s**2, [0.5, 3.0])     # L^-1[1/s^2] = t
    >>> bool(np.allclose(f, [0.5, 3.0], rtol=1e-10))
    True
    """
    lam, w = talbot_nodes(times, nodes)
    t = np.asarray(times, dtype=float).reshape(-1, 1)
    return np.asarray(2 * np.real(np.sum(w * np.exp(lam * t) * transform(lam), axis=1)))


def hyperbolic_nodes(t0: Any, nodes: int = 16) -> tuple[np.ndarray, np.ndarray]:
    r"""Upper-half nodes and weights of one hyperbolic contour for all times in ``[t0, 10 t0]``.

    :math:`\lambda(u)=\mu(1+\sin(iu-\alpha))`, :math:`\alpha=0.9`, :math:`\mu=0.75K/(10t_0)`,
    midpoint nodes :math:`u_j=(j+\frac12)h`, :math:`h=3.4/K`, :math:`K=2M` nodes (the lower half
    are the conjugates), weights :math:`w_j=h\lambda'(u_j)/(2\pi i)`: for a real-symmetric
    transform :math:`f(t)\approx2\operatorname{Re}\sum_jw_je^{\lambda_jt}\hat f(\lambda_j)`
    at every ``t`` of the window (Weideman and Trefethen 2007). ``M = 16`` is accurate to
    ~1e-13 on sums of exponentials, as Talbot's ``M = 16`` is at its single time.

    Returns arrays of shape ``(len(t0), 2 * nodes)``, ordered by increasing ``u`` (from the
    crossing of the positive real axis outwards).

    >>> lam, w = hyperbolic_nodes([1.0], 16)
    >>> t = np.array([[1.0], [3.0], [10.0]])            # one contour for the whole window
    >>> f = 2 * np.real(np.sum(w * np.exp(lam * t) / (lam + 0.5), axis=1))   # L^-1[1/(lam+a)]
    >>> bool(np.allclose(f, np.exp(-0.5 * t[:, 0]), rtol=1e-11))
    True
    """
    t = _contour_times(t0, nodes, "contour inversion", "1e-13")
    k = 2 * nodes
    h = _U_MAX / k
    u = (np.arange(k) + 0.5) * h
    mu = (_MU_PER_NODE * k / (WINDOW * t))[:, None]
    lam = mu * (1 + np.sin(1j * u - _ALPHA))
    dlam = mu * 1j * np.cos(1j * u - _ALPHA)
    return lam, h * dlam / (2j * np.pi)


def time_windows(times: Any) -> list[np.ndarray]:
    """Indices of ``times`` (all > 0) grouped into windows ``[t0, 10 t0]``, each sharing one contour.

    >>> [w.tolist() for w in time_windows([5.0, 0.1, 0.5, 1.0, 1.5])]
    [[1, 2, 3], [4, 0]]
    """
    t = np.asarray(times, dtype=float).reshape(-1)
    order = np.argsort(t, kind="stable")
    out: list[np.ndarray] = []
    i = 0
    while i < order.size:
        top = t[order[i]] * WINDOW * (1 + 1e-12)
        j = int(np.searchsorted(t[order], top, side="right"))
        out.append(order[i:j])
        i = j
    return out


# ---------------------------------------------------------------------------
# the derived curve
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LaplacePiece:
    r"""``coeff * L^{-1}[transform](time_factor * t)``.

    ``transform`` is a sympy expression in ``variables`` (``(lam,)`` or ``(lam, lam2)``),
    their ridges ``ridges`` (``kappa``, ``kappa'``, solved by the curve's fixed points),
    the dimensions and :class:`~detequiv.models.ridge.mtr` atoms of ``Sigma`` and
    ``beta``; a two-variable transform is inverted in both variables at the same time.
    ``random`` names the random functional whose transform it is.
    """

    coeff: sp.Expr
    transform: sp.Expr
    variables: tuple[sp.Symbol, ...]
    ridges: tuple[sp.Symbol, ...]
    time_factor: int
    random: str

    def __str__(self) -> str:
        return f"{self.coeff} * L^-1[{self.transform}]({self.time_factor} t)   # {self.random}"

    def _latex(self) -> str:
        arg = "t" if self.time_factor == 1 else f"{self.time_factor}t"
        variables = ",".join(sp.latex(v) for v in self.variables)
        return (
            sp.latex(self.coeff)
            + r"\,\mathcal{L}^{-1}_{"
            + variables
            + r"}\left["
            + sp.latex(self.transform)
            + r"\right]("
            + arg
            + ")"
        )


@dataclass(frozen=True, slots=True)
class LossCurve:
    r"""A derived loss curve :math:`L(t)`: a constant plus named sums of :class:`LaplacePiece`.

    :meth:`evaluate` gives numbers on a grid of times from spectra.
    """

    name: str
    constant: Mapping[str, sp.Expr]
    terms: Mapping[str, tuple[LaplacePiece, ...]]
    fixed_points: tuple[FixedPoint, ...]
    derivation: tuple[Step, ...]
    model: Any = field(repr=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "derivation", Derivation(self.derivation))

    def _repr_latex_(self) -> str:
        """The curve, its terms (inverse Laplace transforms) and fixed points, for Jupyter."""
        names = [*self.constant, *self.terms]
        rows = [
            sp.latex(sp.Symbol(self.name)) + "(t) &= " + " + ".join(sp.latex(sp.Symbol(k)) for k in names)
        ]
        rows += [sp.latex(sp.Symbol(k)) + " &= " + sp.latex(v) for k, v in self.constant.items()]
        rows += [
            sp.latex(sp.Symbol(k)) + " &= " + " + ".join(p._latex() for p in pieces)
            for k, pieces in self.terms.items()
        ]
        rows += [sp.latex(fp.symbol) + " &= " + sp.latex(fp.rhs) for fp in self.fixed_points]
        return r"$\begin{aligned}" + r"\\".join(rows) + r"\end{aligned}$"

    def __str__(self) -> str:
        names = [*self.constant, *self.terms]
        lines = [f"{self.name}(t) = {' + '.join(names)}"]
        lines += [f"  {k} = {v}" for k, v in self.constant.items()]
        for k, pieces in self.terms.items():
            lines.append(f"  {k} = " + "\n      + ".join(str(p) for p in pieces))
        lines += [f"  {fp}" for fp in self.fixed_points]
        lines.append("derivation:")
        lines += [f"  {i + 1}. {s}" for i, s in enumerate(self.derivation)]
        return "\n".join(lines)

    def evaluate(
        self,
        values: Mapping[Any, Any],
        times: Any,
        *,
        nodes: int = 16,
        chunk: int | None = None,
        contour: str = "hyperbolic",
    ) -> dict[str, np.ndarray]:
        r"""Every term and the ``total`` on a grid of times.

        Parameters
        ----------
        values : mapping
            ``Sigma`` (its name or the object) to its eigenvalues (1-D) or a symmetric
            matrix; ``beta`` to the target (in the eigenbasis when ``Sigma`` is given by
            eigenvalues); ``P`` and the noise variance (``sigma2``) to numbers; ``D``
            defaults to the spectrum length.
        times : array_like
            Times ``t >= 0``; ``t = 0`` uses the initial-value theorem
            :math:`f(0)=\lim_{\lambda\to\infty}\lambda\hat f(\lambda)`.
        nodes : int
            Accuracy parameter ``M``: ``2M`` upper nodes per hyperbolic contour, or ``M`` per
            Talbot contour (MATH.md 5.6: 16 is accurate to ~1e-13 and ~1e-10 respectively;
            many more loses digits to cancellation).
        chunk : int, optional
            Contours per vectorized block (arrays of ``chunk * nodes * D`` complex numbers);
            by default about ``2e6 / (nodes * D)``.
        contour : {"hyperbolic", "talbot"}
            ``"hyperbolic"`` (default): the times are grouped into windows ``[t0, 10 t0]``
            sharing one contour each (:func:`hyperbolic_nodes`), so ``kappa`` is solved and the
            transforms evaluated once per window, and each time costs one small matrix product;
            ``"talbot"``: one Talbot contour per time (:func:`talbot_nodes`), the reference.
        """
        if contour not in ("hyperbolic", "talbot"):
            raise InvalidArgument(f"contour={contour!r}: pass 'hyperbolic' or 'talbot'")
        return _evaluate_curve(self, values, times, nodes, chunk, contour)

    def check_monte_carlo(self, sizes: Sequence[int] = (200, 400), *, rng: Any, **kwargs: Any) -> Any:
        """Simulation of gradient flow itself (:mod:`detequiv.models.gradient_flow_mc`)."""
        return call_witness("dynamics/monte_carlo", "dynamics_mc", self, sizes, rng, **kwargs)


# ---------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GradientFlow:
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
        if not isinstance(self.sigma, Deterministic) or not isinstance(self.gaussian, Gaussian):
            raise InvalidArgument("GradientFlow(Sigma, X, beta): Sigma Deterministic, X Gaussian (P x D)")
        p, d = self.gaussian.dims
        if sp.simplify(d - self.sigma.dim) != 0:
            raise InvalidArgument(f"X has {d} columns but Sigma is {self.sigma.dim} x {self.sigma.dim}")
        if not isinstance(self.beta, DeterministicVector) or sp.simplify(self.beta.dim - d) != 0:
            raise InvalidArgument(f"beta must be a DeterministicVector of dimension {d}")
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

    def _ridge_ratio(self, scalars: Mapping[str, float]) -> float:
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
        return Step(
            "laplace_representation", sp.exp(-t * a), sp.Symbol("L^-1_t[(lam + A)^-1]"), _REF_LAPLACE, note
        )

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
        forcing = _quadratic(tp.deterministic, b) / (lam * lam2)
        steps.append(
            Step(
                "two_point_equivalent",
                sp.Symbol("beta' G(lam) Sigma G(lam2) beta"),
                forcing,
                "MATH.md 3.1 form III with M = Sigma; 5.1 forcing",
                "the engine's lam lam2 G Sigma G' divided by lam lam2, contracted with beta",
            )
        )
        one = derive(trace(self.sigma @ (lam * resolvent(self.sample_covariance, lam))))
        fp = one.inner.fixed_points[0]
        kappa = tp.kappa
        tr_sg = _to_atoms(one.deterministic).xreplace({fp.symbol: kappa}) / lam  # tr(Sigma G)
        noise_transform = d * tr_sg / lam  # Tr(Sigma G) / lam
        steps.extend(one.derivation)
        steps.append(
            Step(
                "one_point_equivalents",
                sp.Symbol("Tr(Sigma G(lam))/lam"),
                noise_transform,
                "MATH.md 2.1; 5.1 noise part",
                "lam tr(Sigma G) ~ kappa tr(Sigma R) from the one-point engine",
            )
        )
        steps.append(_inverse_step())
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
                "one_point_equivalents",
                sp.Symbol("S^ G(lam)"),
                absorbed,
                "exact algebra S^ G = I - lam G; MATH.md 2.1 for lam G",
                "signal transform beta' S^ G beta; noise transform Tr G = Tr(lam G)/lam",
            )
        )
        steps.append(
            Step(
                "resolvent_identity",
                absorbed,
                cleared,
                "exact algebra: I - k (k + Y)^-1 = Y (k + Y)^-1",
                "avoids cancelling I against kappa R at large |lam| (the transform decays as 1/lam)",
            )
        )
        signal = _quadratic(cleared, b)
        tr_g = _to_atoms(sp.Trace(one.deterministic) / lam)
        steps.append(_inverse_step())
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
        )

    def train_loss(self) -> LossCurve:
        """Alias of :meth:`training_loss`."""
        return self.training_loss()


@dataclass(frozen=True, slots=True)
class RandomFeatureGradientFlow:
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
        from .random_features import check_random_feature_model

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

    def _ridge_ratio(self, scalars: Mapping[str, float]) -> float:
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
                "laplace_representation",
                sp.exp(-t * a),
                sp.Symbol("L^-1_t[(lam + A)^-1]"),
                _REF_LAPLACE + "; MATH.md 5.5",
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
                "two_point_equivalent",
                sp.Symbol("beta' (lam + S^ W_F)^-1 Sigma (lam2 + W_F S^)^-1 beta"),
                forcing,
                "MATH.md 3.5 with M = Sigma; 5.5",
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
                    "laplace_representation",
                    sp.Symbol("Tr W_F Sigma g_s(W_F S^)"),
                    sp.Symbol("L^-1_s[lam Tr(W_F Sigma (lam + W_F S^)^-1) / lam^2]"),
                    _REF_LAPLACE + "; g_s(A) = L^-1_s[(lam + A)^-1 / lam]",
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
        steps.append(_inverse_step())
        return LossCurve(
            name="L_test",
            constant={"noise": self.noise},
            terms=terms,
            fixed_points=tp.fixed_points,
            derivation=tuple(steps),
            model=self,
        )


def _rf_noise_trace(flow: RandomFeatureGradientFlow, root: FixedPoint) -> tuple[sp.Expr, tuple[Step, ...]]:
    r"""The equivalent of :math:`f(\lambda)=\lambda\operatorname{Tr}\Sigma(\lambda+W_F\hat\Sigma)^{-1}W_F`
    in the ridge ``root`` (``kappa_2``), and the steps that derived it.

    It is :class:`~detequiv.models.random_features.RandomFeatureRidge`'s own derivation
    (``noise_trace``: the trace with ``W_F`` held fixed, then released by trace concentration),
    nothing copied. Its chain's fixed point is checked
    to be ``root``. The step ``resolvent_identity`` (:math:`\operatorname{tr}k(k+\Sigma)^{-1}
    =1-\operatorname{tr}\Sigma(k+\Sigma)^{-1}`, exact) avoids cancelling 1 against
    :math:`k\operatorname{tr}R` at large :math:`|\lambda|`.
    """
    from .random_features import RandomFeatureRidge, _RFDerivation

    p, d = flow.dims
    ridge = RandomFeatureRidge(flow.sigma, flow.gaussian, flow.features, flow.beta, flow.noise, flow.lam)
    der = _RFDerivation(ridge)
    f_lam = _to_atoms(der.noise_trace())
    if der.kappa != root.symbol or sp.simplify(_to_atoms(der.fixed.rhs) - _to_atoms(root.rhs)) != 0:
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
            "resolvent_identity",
            f_lam,
            rewritten,
            "exact algebra: k tr (k + Sigma)^-1 = 1 - tr Sigma (k + Sigma)^-1",
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
    selfconsistent = [s for s, fp in fps.items() if s in _to_atoms(fp.rhs).free_symbols | _df1_ridges(fp.rhs)]
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
        total = total.xreplace({s: _to_atoms(fps[s].rhs) for s in present})
    left = (total.free_symbols & set(fps)) - set(ridges)
    if left:
        raise InvalidArgument(f"the ridges {sorted(map(str, left))} could not be eliminated")
    return total, (ridges[0], ridges[1]), chain


def _df1_ridges(rhs: sp.Expr) -> set[sp.Basic]:
    return {a.args[1] for a in sp.sympify(rhs).atoms(df1)}


def _inverse_step() -> Step:
    return Step(
        "inverse_laplace",
        sp.Symbol("L^-1[F](t)"),
        sp.Symbol("2 Re sum_j w_j exp(lam_j t) F(lam_j)"),
        _REF_TALBOT + "; " + _REF_WINDOW,
        "hyperbolic contour lam(u) = mu (1 + sin(i u - alpha)) shared by the times of each window "
        "[t0, 10 t0] (or one Talbot contour lam(theta) = r theta (cot theta + i), r = 2M/(5t), per time); "
        "kappa on the nodes by Newton continuation along the contour of the engine's fixed point; "
        "two-variable transforms by the double sum, a matrix of node pairs per window",
    )


# ---------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Spectral:
    """Eigenvalues ``l``, squared target coefficients ``b2`` and scalar values."""

    l: np.ndarray  # noqa: E741 - the eigenvalues lambda_k
    b2: np.ndarray
    scalars: dict[str, float]


def _name(key: Any) -> str:
    return key if isinstance(key, str) else str(getattr(key, "name", key))


def _spectral(curve: LossCurve, values: Mapping[Any, Any]) -> _Spectral:
    model: GradientFlow | RandomFeatureGradientFlow = curve.model
    by_name = {_name(k): v for k, v in values.items()}
    sig_name, beta_name = model.sigma.name, model.beta.name
    if sig_name not in by_name or beta_name not in by_name:
        raise InvalidArgument(f"values needs {sig_name} (eigenvalues or matrix) and {beta_name} (vector)")
    s = np.asarray(by_name[sig_name], dtype=float)
    beta = np.asarray(by_name[beta_name], dtype=float)
    if s.ndim == 2:
        if s.shape[0] != s.shape[1] or not np.allclose(s, s.T):
            raise InvalidArgument(
                f"{sig_name} must be a symmetric matrix or a 1-D spectrum, got shape {s.shape}"
            )
        s, vecs = np.linalg.eigh(s)
        beta = vecs.T @ beta
    if s.ndim != 1 or beta.shape != s.shape:
        raise InvalidArgument(
            f"{sig_name} has shape {s.shape} and {beta_name} {beta.shape}; pass a 1-D spectrum and "
            "the target in its eigenbasis, of equal length"
        )
    if np.any(s < 0) or not np.all(np.isfinite(s)):
        raise InvalidArgument(
            f"{sig_name} must be positive semi-definite; its smallest eigenvalue is {s.min()}"
        )
    scalars: dict[str, float] = {}
    for k, v in by_name.items():
        if k in (sig_name, beta_name):
            continue
        if np.ndim(v) != 0:
            raise InvalidArgument(f"{k} must be a number, got shape {np.shape(v)}")
        scalars[k] = float(v)
    p, d = model.dims
    scalars.setdefault(str(d), float(s.shape[0]))
    if str(d) in scalars and scalars[str(d)] != s.shape[0]:
        raise InvalidArgument(f"{d}={scalars[str(d)]} but the spectrum has {s.shape[0]} entries")
    if str(p) not in scalars or scalars[str(p)] <= 0:
        raise InvalidArgument(f"values needs the number of samples {p} > 0")
    return _Spectral(s, beta**2, scalars)


def _numbers(expr: sp.Expr, scalars: Mapping[str, float]) -> sp.Expr:
    """Substitute numbers for scalar symbols outside the trace atoms (whose matrices keep their shapes)."""
    e = sp.sympify(expr)
    atoms = sorted(e.atoms(mtr) | e.atoms(df1), key=str)
    hide = {a: sp.Dummy(f"atom{i}") for i, a in enumerate(atoms)}
    e = e.xreplace(hide)
    rep = {s: sp.Float(scalars[s.name]) for s in e.free_symbols if s.name in scalars}
    return e.xreplace(rep).xreplace({v: k for k, v in hide.items()})


def _float(expr: sp.Expr, scalars: Mapping[str, float], what: str) -> float:
    value = _numbers(expr, scalars)
    if value.free_symbols:
        missing = sorted(str(s) for s in value.free_symbols)
        raise InvalidArgument(f"values lacks numbers for {missing} (needed by {what}); pass them")
    return float(value)


def _params(names: Sequence[str], scalars: Mapping[str, float], what: str) -> list[float]:
    missing = [n for n in names if n not in scalars]
    if missing:
        raise InvalidArgument(f"values lacks numbers for {missing} (needed by {what}); pass them")
    return [scalars[n] for n in names]


@functools.lru_cache(maxsize=64)
def _solver_functions(
    fp: FixedPoint, lam: sp.Symbol, sigma_name: str
) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    """Lambdified ``Psi = kappa den - num`` (the fixed point cleared of its pole) and its partials."""
    rhs = fp.rhs
    k = fp.symbol
    f = sp.Dummy("df1")
    atoms = rhs.atoms(df1)
    for a in atoms:
        if str(a.args[0]) != sigma_name or a.args[1] != k:
            raise InvalidArgument(f"the fixed point {fp} uses {a}; only df1({sigma_name}, {k}) is supported")
    num, den = sp.fraction(sp.together(rhs.xreplace({a: f for a in atoms})))
    r = sp.expand(k * den - num)  # cleared of the pole at the ridgeless kappa_0: Newton stays on the branch
    params = sorted(r.free_symbols - {k, lam, f}, key=str)
    args = (k, lam, f, *params)
    funcs = tuple(sp.lambdify(args, e, "numpy") for e in (r, sp.diff(r, k), sp.diff(r, f), sp.diff(r, lam)))
    return funcs, tuple(str(x) for x in params)


class _KappaSolver:
    r"""Vectorized Newton for the engine's fixed point ``kappa = rhs(kappa, lam, df1(Sigma, kappa))``."""

    def __init__(self, fp: FixedPoint, lam: sp.Symbol, spec: _Spectral, sigma_name: str) -> None:
        funcs, params = _solver_functions(fp, lam, sigma_name)
        args = _params(params, spec.scalars, f"the fixed point {fp}")
        self.g, self.gk, self.gf, self.gl = ((lambda k, x, f, fn=fn: fn(k, x, f, *args)) for fn in funcs)
        self.l = spec.l
        self.l_mean = (spec.l / spec.l.size).astype(complex)

    def _parts(self, kap: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = 1 / (kap[..., None] + self.l)
        f = u @ self.l_mean
        df = -((u * u) @ self.l_mean)
        phi = self.g(kap, lam, f) + 0 * kap
        dphi = self.gk(kap, lam, f) + self.gf(kap, lam, f) * df
        return phi, dphi, -self.gl(kap, lam, f) + 0 * kap

    def newton(self, kap: np.ndarray, lam: np.ndarray, iters: int = 60) -> np.ndarray:
        kap = np.array(kap, copy=True)
        for _ in range(iters):
            phi, dphi, _ = self._parts(kap, lam)
            step = phi / dphi
            kap = kap - step
            # quadratic convergence: after a step of relative size 1e-8 the error is ~1e-16
            if np.all(np.abs(step) <= 1e-8 * np.abs(kap) + 1e-300):
                return kap
        phi, _, _ = self._parts(kap, lam)
        if not np.all(np.abs(phi) <= 1e-10 * np.abs(kap)):
            raise VerificationError(
                f"Newton for kappa did not converge (max residual {np.max(np.abs(phi)):.3g})"
            )
        return kap

    def real(self, lam: np.ndarray, q_bound: float) -> np.ndarray:
        """Physical root for real ``lam > 0``: Newton from the large-``kappa`` side."""
        start = lam + q_bound
        return self.newton(start.astype(complex), lam.astype(complex)).real.astype(complex)

    def contour(self, lam: np.ndarray, q_bound: float, substeps: int = 1) -> np.ndarray:
        """``kappa`` on ``lam`` of shape ``(T, M)`` (theta increasing), continued from ``|lam[:, 0]|``."""
        out = np.empty_like(lam)
        prev_lam = np.abs(lam[:, 0]).astype(complex)
        kap = self.real(prev_lam.real, q_bound)
        for j in range(lam.shape[1]):
            for s in range(1, substeps + 1):
                target = prev_lam + (lam[:, j] - prev_lam) * s / substeps
                before = prev_lam + (lam[:, j] - prev_lam) * (s - 1) / substeps
                _, dphi, gl = self._parts(kap, before)
                kap = self.newton(kap + (target - before) * gl / dphi, target)
            out[:, j] = kap
            prev_lam = lam[:, j]
        return out


@functools.lru_cache(maxsize=256)
def _atom_structure(
    atom: mtr, ridges: tuple[sp.Symbol, ...], sigma_name: str, beta_name: str
) -> tuple[bool, complex, float, tuple[int, ...]]:
    """``(quadratic, scalar, power of Sigma, powers of the resolvents)`` of an atom: it is
    ``sum_k w_k scalar l_k^power prod_i (ridge_i + l_k)^-powers_i`` with ``w = beta_k^2`` or ``1/D``."""
    m = atom.args[0]
    scalar = complex(m.as_coeff_matrices()[0]) if isinstance(m, sp.MatMul) else 1.0
    mats = _flat(m)
    quad = False
    if mats and isinstance(mats[0], sp.Transpose):
        if (
            mats[0].arg.name != beta_name
            or not isinstance(mats[-1], sp.MatrixSymbol)
            or mats[-1].name != beta_name
        ):
            raise InvalidArgument(
                f"cannot evaluate {atom}: a quadratic form must be {beta_name}' ... {beta_name}"
            )
        quad = True
        mats = mats[1:-1]
    power = 0.0
    powers = [0] * len(ridges)
    for f in mats:
        if isinstance(f, sp.MatrixSymbol) and f.name == sigma_name:
            power += 1
        elif (
            isinstance(f, sp.MatPow)
            and isinstance(f.args[0], sp.MatrixSymbol)
            and f.args[0].name == sigma_name
        ):
            power += float(f.args[1])
        elif isinstance(f, sp.Inverse):
            ridge = sp.simplify(
                sp.Trace(f.arg - sp.MatrixSymbol(sigma_name, *f.arg.shape)).doit() / f.arg.shape[0]
            )
            if ridge not in ridges:
                raise InvalidArgument(f"cannot evaluate {atom}: {f} is not (ridge + {sigma_name})^-1")
            powers[ridges.index(ridge)] += 1
        elif isinstance(f, sp.Identity):
            continue
        else:
            raise InvalidArgument(f"cannot evaluate {atom}: unknown factor {f}")
    return quad, scalar, power, tuple(powers)


def _atom_plan(
    atom: mtr, ridges: Sequence[sp.Symbol], spec: _Spectral, sigma_name: str, beta_name: str
) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(weights, powers)``: the atom is ``sum_k weights_k prod_i (ridge_i + l_k)^-powers_i``."""
    quad, scalar, power, powers = _atom_structure(atom, tuple(ridges), sigma_name, beta_name)
    weights = spec.b2 if quad else np.full_like(spec.l, 1.0 / spec.l.shape[0])
    if power:
        weights = weights * spec.l**power
    if scalar != 1:
        weights = weights * (scalar.real if scalar.imag == 0 else scalar)
    return weights, powers


@functools.lru_cache(maxsize=64)
def _transform_function(piece: LaplacePiece) -> tuple[Any, tuple[mtr, ...], tuple[str, ...]]:
    """The transform lambdified in ``(variables, ridges, atoms, scalar parameters)``."""
    expr = sp.sympify(piece.transform)
    atoms = tuple(sorted(expr.atoms(mtr), key=str))
    dummies = [sp.Dummy(f"a{i}") for i in range(len(atoms))]
    expr = expr.xreplace(dict(zip(atoms, dummies, strict=True)))
    params = sorted(expr.free_symbols - set(piece.variables) - set(piece.ridges) - set(dummies), key=str)
    f = sp.lambdify((*piece.variables, *piece.ridges, *dummies, *params), expr, "numpy")
    return f, atoms, tuple(str(x) for x in params)


class _Transform:
    """Vectorized numbers for one :class:`LaplacePiece` transform."""

    def __init__(
        self, piece: LaplacePiece, spec: _Spectral, model: GradientFlow | RandomFeatureGradientFlow
    ) -> None:
        func, atoms, params = _transform_function(piece)
        args = _params(params, spec.scalars, piece.random)
        self.f = lambda *xs: func(*xs, *args)
        self.plans = [_atom_plan(a, piece.ridges, spec, model.sigma.name, model.beta.name) for a in atoms]
        self.l = spec.l

    def single(self, lam: np.ndarray, kap: np.ndarray) -> np.ndarray:
        """The transform at nodes ``lam`` (any shape) with ridges ``kap``."""
        u = 1 / (kap[..., None] + self.l)
        vals = [
            np.asarray(w.sum()) if not pw[0] else (u if pw[0] == 1 else u ** pw[0]) @ w
            for w, pw in self.plans
        ]
        return np.asarray(self.f(lam, kap, *vals))

    def double(self, lam: np.ndarray, kap: np.ndarray) -> np.ndarray:
        """Two variables on upper nodes ``lam`` (``T x M``) and on all nodes (``T x 2M``, the
        conjugates appended): an array ``T x M x 2M``."""
        u = 1 / (kap[..., None] + self.l)  # (T, M, D)
        ub = np.concatenate([u, u.conj()], axis=1)  # (T, 2M, D)
        lam2 = np.concatenate([lam, lam.conj()], axis=1)
        kap2 = np.concatenate([kap, kap.conj()], axis=1)
        done: dict[tuple[Any, ...], np.ndarray] = {}
        vals = []
        for w, (p1, p2) in self.plans:
            key = (p1, p2, w.tobytes())
            if key not in done:
                a = u**p1 if p1 != 1 else u
                b = ub**p2 if p2 != 1 else ub
                if p1 and p2:
                    done[key] = np.matmul(a * w, np.swapaxes(b, 1, 2))
                elif p1:
                    done[key] = (a @ w)[:, :, None]
                elif p2:
                    done[key] = (b @ w)[:, None, :]
                else:
                    done[key] = np.asarray(w.sum())
            vals.append(done[key])
        return np.asarray(self.f(lam[:, :, None], lam2[:, None, :], kap[:, :, None], kap2[:, None, :], *vals))


def _evaluate_curve(
    curve: LossCurve,
    values: Mapping[Any, Any],
    times: Any,
    nodes: int,
    chunk: int | None,
    contour: str = "hyperbolic",
) -> dict[str, np.ndarray]:
    model: GradientFlow | RandomFeatureGradientFlow = curve.model
    spec = _spectral(curve, values)
    if chunk is None:
        chunk = max(1, int(2e6 // (max(nodes, 1) * spec.l.size)))
    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise InvalidArgument(f"chunk={chunk!r}: pass a positive integer (times per block)")
    t = np.asarray(times, dtype=float).reshape(-1)
    if np.any(~np.isfinite(t)) or np.any(t < 0):
        raise InvalidArgument(f"times must be finite and >= 0, got {t[(t < 0) | ~np.isfinite(t)]}")
    q = model._ridge_ratio(spec.scalars)
    bound = q * float(spec.l.mean()) + 1e-300  # kappa <= lam + (D/P) tr Sigma on the physical branch
    solvers = {fp.symbol: fp for fp in curve.fixed_points}
    kappas: dict[tuple[Any, ...], np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    for name, c in curve.constant.items():
        out[name] = np.full(t.shape, _float(c, spec.scalars, name))
    for name, pieces in curve.terms.items():
        total = np.zeros(t.shape)
        for piece in pieces:
            fp = solvers.get(piece.ridges[0])
            if fp is None:
                raise InvalidArgument(f"no fixed point for {piece.ridges[0]}")
            if len(piece.variables) == 2:
                fp2 = solvers.get(piece.ridges[1])
                same = {piece.ridges[1]: piece.ridges[0], piece.variables[1]: piece.variables[0]}
                if fp2 is None or sp.simplify(fp2.rhs.xreplace(same) - fp.rhs) != 0:
                    raise InvalidArgument(
                        f"the two ridges of {piece.random} solve different fixed points; "
                        "only kappa' = kappa(lam2) of the same equation is supported"
                    )
            solver = _KappaSolver(fp, piece.variables[0], spec, model.sigma.name)
            transform = _Transform(piece, spec, model)
            coeff = _float(piece.coeff, spec.scalars, name)
            tau = piece.time_factor * t
            key = (str(fp.equation), piece.time_factor)
            invert = _invert if contour == "talbot" else _invert_windows
            res, kap = invert(
                transform, solver, tau, bound, nodes, chunk, len(piece.variables), kappas.get(key)
            )
            kappas[key] = kap
            total += coeff * res
        out[name] = total
    out["total"] = sum(out.values(), np.zeros(t.shape))
    return out


def _invert(
    transform: _Transform,
    solver: _KappaSolver,
    tau: np.ndarray,
    bound: float,
    nodes: int,
    chunk: int,
    nvar: int,
    known: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``L^{-1}[transform](tau)`` and the ridges on the contour nodes (reused as ``known``)."""
    res, zero = _at_zero(transform, solver, tau, bound, nvar)
    idx = np.flatnonzero(~zero)
    kaps = np.empty((tau.size, nodes), dtype=complex) if known is None else known
    for start in range(0, idx.size, chunk):
        sel = idx[start : start + chunk]
        tt = tau[sel]
        lam, w = talbot_nodes(tt, nodes)
        if known is None:
            kaps[sel] = solver.contour(lam, bound)
        kap = kaps[sel]
        e = w * np.exp(lam * tt[:, None])
        if nvar == 1:
            res[sel] = 2 * np.real(np.sum(e * transform.single(lam, kap), axis=1))
        else:
            e2 = np.concatenate([e, e.conj()], axis=1)
            res[sel] = 2 * np.real(np.einsum("tj,tjl,tl->t", e, transform.double(lam, kap), e2))
    return res, kaps


def _invert_windows(
    transform: _Transform,
    solver: _KappaSolver,
    tau: np.ndarray,
    bound: float,
    nodes: int,
    chunk: int,
    nvar: int,
    known: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r""":func:`_invert` with one hyperbolic contour per window of times: ``kappa`` and the
    transform (a ``2M x 4M`` matrix for two variables) once per window, then per time
    ``2 Re e(t)' F e(t)`` with :math:`e_j(t)=w_je^{\lambda_jt}`."""
    res, zero = _at_zero(transform, solver, tau, bound, nvar)
    idx = np.flatnonzero(~zero)
    windows = [idx[w] for w in time_windows(tau[idx])]
    t0 = np.array([tau[w].min() for w in windows])
    lam_all, w_all = hyperbolic_nodes(t0, nodes) if windows else (np.zeros((0, 2 * nodes)),) * 2
    kaps = np.empty(lam_all.shape, dtype=complex) if known is None else known
    for start in range(0, len(windows), chunk):
        stop = min(start + chunk, len(windows))
        lam = lam_all[start:stop]
        if known is None:
            kaps[start:stop] = solver.contour(lam, bound)
        kap = kaps[start:stop]
        values = transform.single(lam, kap) if nvar == 1 else transform.double(lam, kap)
        for b in range(stop - start):
            sel = windows[start + b]
            e = w_all[start + b] * np.exp(np.outer(tau[sel], lam[b]))  # (T_b, 2M)
            if nvar == 1:
                res[sel] = 2 * np.real(e @ values[b])
            else:
                e2 = np.concatenate([e, e.conj()], axis=1)
                res[sel] = 2 * np.real(np.sum((e @ values[b]) * e2, axis=1))
    return res, kaps


def _at_zero(
    transform: _Transform, solver: _KappaSolver, tau: np.ndarray, bound: float, nvar: int
) -> tuple[np.ndarray, np.ndarray]:
    """The result array with its ``tau = 0`` entries filled, and the mask of those entries."""
    res = np.zeros(tau.shape)
    zero = tau == 0
    if np.any(zero):
        # initial-value theorem f(0) = lim lam F(lam) (lam lam' F for two variables), with one
        # Richardson step in 1/lam: error O(scale^2 / lam^2) against cancellation O(eps lam / scale)
        scale = 1 + float(solver.l.max()) + bound
        vals = []
        for big_value in (1e5 * scale, 2e5 * scale):
            big = np.array([[big_value]], dtype=complex)
            kap = solver.real(big.real, bound)
            if nvar == 1:
                val = big * transform.single(big, kap)
            else:
                val = big**2 * transform.double(big, kap)
            vals.append(float(np.real(np.ravel(val)[0])))
        res[zero] = 2 * vals[1] - vals[0]
    return res, zero
