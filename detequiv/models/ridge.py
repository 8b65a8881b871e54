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

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from ..derivations.expressions import Deterministic, DeterministicVector, Gaussian, resolvent, trace
from ..derivations.laws import Wishart
from ..derivations.onepoint import Derivation, FixedPoint, Step, call_witness, derive, df1
from ..derivations.twopoint import derive_two_point, df2
from ..errors import InvalidArgument, VerificationError

__all__ = ["mtr", "LossFormula", "RidgeRegression", "lam_derivative", "SeriesReport", "SeriesSpec"]


# ---------------------------------------------------------------------------
# scalar atoms: normalized traces of deterministic matrix expressions
# ---------------------------------------------------------------------------


def _mdiff(m: sp.Basic, s: sp.Symbol) -> sp.Basic:
    """Derivative of a sympy matrix expression with respect to a scalar symbol."""
    if not m.has(s):
        return sp.ZeroMatrix(*m.shape)
    if isinstance(m, sp.MatAdd):
        parts = [_mdiff(a, s) for a in m.args if a.has(s)]
        return (sp.MatAdd(*parts) if len(parts) > 1 else parts[0]).doit()
    mats = _flat(m)
    if isinstance(m, sp.MatMul) or len(mats) > 1 or (mats and mats[0] != m):
        coeff = m.as_coeff_matrices()[0] if isinstance(m, sp.MatMul) else sp.S.One
        terms = []
        if coeff.has(s):
            terms.append(sp.MatMul(sp.diff(coeff, s), *mats))
        for i, f in enumerate(mats):
            if f.has(s):
                terms.append(sp.MatMul(coeff, *mats[:i], _mdiff(f, s), *mats[i + 1 :]))
        return (sp.MatAdd(*terms) if len(terms) > 1 else terms[0]).doit()
    if isinstance(m, sp.Inverse):
        inv = m
        return sp.MatMul(-1, inv, _mdiff(m.arg, s), inv).doit()
    raise InvalidArgument(f"cannot differentiate the matrix expression {m} with respect to {s}")


def _flat(m: sp.Basic) -> list[sp.Basic]:
    """The matrix factors of a product, flattened; ``X**-k`` becomes ``k`` inverses, ``A**k`` ``k`` copies."""
    if isinstance(m, sp.MatMul):
        return [f for a in m.as_coeff_matrices()[1] for f in _flat(a)]
    if isinstance(m, sp.MatPow) and m.args[1].is_Integer:
        k = int(m.args[1])
        base = m.args[0]
        return [sp.Inverse(base)] * (-k) if k < 0 else [f for _ in range(k) for f in _flat(base)]
    if isinstance(m, sp.Identity):
        return []
    return [m]


def _mtr_linear(m: sp.Basic) -> sp.Expr:
    """``tr`` of a matrix expression, by linearity: a sum of scalars times :class:`mtr` atoms."""
    if isinstance(m, sp.ZeroMatrix):
        return sp.S.Zero
    if isinstance(m, sp.MatAdd):
        return sp.Add(*[_mtr_linear(a) for a in m.args])
    if isinstance(m, sp.MatMul):
        coeff, mats = m.as_coeff_matrices()
        if not mats:
            return coeff
        inner = _distribute(mats)
        return coeff * sp.Add(*[c * _mtr_of(ms, m.shape[0]) for c, ms in inner])
    return mtr(m)


def _distribute(mats: Sequence[sp.Basic]) -> list[tuple[sp.Expr, list[sp.Basic]]]:
    """Expand a product of matrix factors over the sums among them (not inside inverses)."""
    out: list[tuple[sp.Expr, list[sp.Basic]]] = [(sp.S.One, [])]
    for f in mats:
        if isinstance(f, sp.MatAdd):
            parts = []
            for a in f.args:
                c, ms = a.as_coeff_matrices() if isinstance(a, sp.MatMul) else (sp.S.One, [a])
                parts.append((c, list(ms)))
        elif isinstance(f, sp.MatMul):
            c, ms = f.as_coeff_matrices()
            parts = [(c, list(ms))]
        else:
            parts = [(sp.S.One, [f])]
        out = [(c0 * c1, m0 + m1) for c0, m0 in out for c1, m1 in parts]
    return out


def _mtr_of(mats: Sequence[sp.Basic], n: sp.Expr) -> sp.Expr:
    flat = [f for a in mats for f in _flat(a)]
    if not flat:
        return sp.S.One
    return mtr(sp.MatMul(*flat) if len(flat) > 1 else flat[0])


class mtr(sp.Function):  # noqa: N801 - reads like tr
    r"""Normalized trace :math:`\operatorname{tr}M=\operatorname{Tr}M/n` of a deterministic matrix
    expression (for a ``1 x 1`` expression such as a quadratic form, its entry).

    Differentiable in the ridges inside it (:math:`\partial_\kappa(\kappa+A)^{-1}=-(\kappa+A)^{-2}`).

    >>> import sympy as sp
    >>> n, k = sp.Symbol("n"), sp.Symbol("kappa")
    >>> S = sp.MatrixSymbol("Sigma", n, n)
    >>> sp.diff(mtr(S * (k * sp.Identity(n) + S).inverse()), k)
    -mtr(Sigma*(kappa*I + Sigma)**(-1)*(kappa*I + Sigma)**(-1))
    """

    nargs = 1
    is_commutative = True

    def _eval_derivative(self, s: sp.Symbol) -> sp.Expr:
        return _mtr_linear(_mdiff(self.args[0], s))

    def _latex(self, printer: Any, exp: Any = None) -> str:
        m = self.args[0]
        body = printer._print(m)
        tex = body if m.shape == (1, 1) else r"\operatorname{tr}\left[" + body + r"\right]"
        return tex if exp is None else r"\left(" + tex + r"\right)^{" + str(exp) + "}"


def _to_atoms(expr: sp.Expr) -> sp.Expr:
    """Replace ``Trace``, ``df1`` and ``df2`` by :class:`mtr` atoms."""

    def r(y: sp.Basic, k: sp.Expr) -> sp.Basic:
        return (y + k * sp.Identity(y.shape[0])).inverse()

    out = expr.replace(
        lambda e: isinstance(e, df1), lambda e: _mtr_of([e.args[0], r(e.args[0], e.args[1])], sp.S.One)
    )
    out = out.replace(
        lambda e: isinstance(e, df2),
        lambda e: _mtr_of([e.args[0], e.args[0], r(e.args[0], e.args[1]), r(e.args[0], e.args[2])], sp.S.One),
    )
    out = out.replace(lambda e: isinstance(e, sp.Trace), lambda e: e.arg.shape[0] * _mtr_linear(e.arg))
    return out


def _quadratic(matrix_expr: sp.Basic, b: sp.MatrixSymbol) -> sp.Expr:
    """``b.T @ E @ b`` of a matrix equivalent ``E`` (scalars inside are kept), as :class:`mtr` atoms."""
    terms = matrix_expr.args if isinstance(matrix_expr, sp.MatAdd) else (matrix_expr,)
    out = []
    for t in terms:
        coeff, mats = t.as_coeff_matrices() if isinstance(t, sp.MatMul) else (sp.S.One, [t])
        out.append(_to_atoms(coeff) * _mtr_of([b.T, *mats, b], sp.S.One))
    return sp.Add(*out)


def lam_derivative(
    expr: sp.Expr, lam: sp.Symbol, kappa: sp.Symbol, fixed_point: sp.Eq
) -> tuple[sp.Expr, sp.Expr]:
    r""":math:`d/d\lambda` of ``expr(lam, kappa, atoms)`` with ``kappa = kappa(lam)`` from its fixed point.

    Returns ``(derivative, dkappa/dlam)``; the latter by implicit differentiation of
    :math:`\Phi=\kappa-\mathrm{rhs}(\kappa,\lambda)=0`.

    >>> import sympy as sp
    >>> lam, k, q = sp.symbols("lam kappa q")
    >>> d, dk = lam_derivative(k / lam, lam, k, sp.Eq(k, lam + q))   # kappa = lam + q
    >>> sp.simplify(dk), sp.simplify(d - (1 / lam - k / lam**2))
    (1, 0)
    """
    phi = kappa - _to_atoms(fixed_point.rhs)
    dk = -sp.diff(phi, lam) / sp.diff(phi, kappa)
    e = _to_atoms(expr)
    return sp.diff(e, lam) + sp.diff(e, kappa) * dk, dk


# ---------------------------------------------------------------------------
# random functionals (the exact side) and their series
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RandomTerm:
    """``coeff * F`` with ``F`` a normalized trace or quadratic form of a word in ``G`` (the
    resolvent of the sample covariance at ``lam``), ``S`` (the sample covariance) and
    deterministic sympy matrices; ``vector`` for ``b.T (word) b``."""

    coeff: sp.Expr
    word: tuple[Any, ...]
    vector: sp.MatrixSymbol | None = None

    def __str__(self) -> str:
        body = " ".join(w if isinstance(w, str) else str(w) for w in self.word)
        core = f"{self.vector}.T {body} {self.vector}" if self.vector is not None else f"tr({body})"
        return f"{self.coeff} * {core}"


@dataclass(frozen=True, slots=True)
class SeriesReport:
    """Coefficients ``(equivalent, diagram sum)`` of ``lam^0 .. lam^-order`` of each term."""

    order: int
    coefficients: Mapping[str, tuple[tuple[sp.Expr, sp.Expr], ...]]
    failures: Mapping[str, int | None]

    @property
    def passed(self) -> bool:
        return all(v is None for v in self.failures.values())

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        lines = []
        for name, first in self.failures.items():
            if first is None:
                lines.append(
                    f"{name}: coefficients of lam^0 .. lam^-{self.order} agree with the diagram sums"
                )
            else:
                eqv, dia = self.coefficients[name][first]
                lines.append(f"{name}: FAILS at lam^-{first}\n  equivalent: {eqv}\n  diagrams:   {dia}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LossFormula:
    r"""A derived loss: named terms (deterministic sympy expressions) summing to the total.

    The terms are expressions in ``lam``, the ridge ``kappa`` (solved by ``fixed_points``)
    and :class:`mtr` atoms of the deterministic matrices and the target ``beta``.
    """

    name: str
    terms: Mapping[str, sp.Expr]
    random: Mapping[str, tuple[RandomTerm, ...]]
    fixed_points: tuple[FixedPoint, ...]
    derivation: tuple[Step, ...]
    lam: sp.Symbol
    kappa: sp.Symbol
    model: Any = field(repr=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "derivation", Derivation(self.derivation))

    @property
    def total(self) -> sp.Expr:
        return sp.Add(*self.terms.values())

    @property
    def deterministic(self) -> sp.Expr:
        return self.total

    def __str__(self) -> str:
        lines = [f"{self.name} = {' + '.join(self.terms)}"]
        lines += [f"  {k} = {v}" for k, v in self.terms.items()]
        lines += [f"  {fp}" for fp in self.fixed_points]
        lines.append("derivation:")
        lines += [f"  {i + 1}. {s}" for i, s in enumerate(self.derivation)]
        return "\n".join(lines)

    @property
    def random_expr(self) -> sp.Expr:
        return sp.Symbol(self.name)

    def _repr_latex_(self) -> str:
        rows = [f"{self.name} &= " + " + ".join(sp.latex(sp.Symbol(k)) for k in self.terms)]
        rows += [sp.latex(sp.Symbol(k)) + " &= " + sp.latex(v) for k, v in self.terms.items()]
        rows += [sp.latex(fp.symbol) + " &= " + sp.latex(fp.rhs) for fp in self.fixed_points]
        return r"$\begin{aligned}" + r"\\".join(rows) + r"\end{aligned}$"

    def evaluate(self, values: Mapping[Any, Any]) -> dict[str, complex | float]:
        """Numbers for every term and the total.

        ``values`` maps the deterministic matrices (objects or names) to spectra or
        matrices, the target vector to a 1-D array, ``lam`` and the dimensions and noise
        levels to numbers.
        """
        return _evaluate(self, values)

    def check_series(self, order: int = 6) -> SeriesReport:
        """Exact :math:`1/\\lambda` series of every term against the planar diagram sums of its
        random functional (the exact side never sees the equivalent)."""
        return _check_series(self, order)

    def verify_series(self, order: int = 6) -> SeriesReport:
        report = self.check_series(order)
        if not report.passed:
            raise VerificationError(str(report))
        return report

    def check_monte_carlo(self, sizes: Sequence[int] = (100, 200, 400), *, rng: Any, **kwargs: Any) -> Any:
        """Simulation of the learning problem itself (:mod:`detequiv.models.ridge_mc`, or the
        model's own witness)."""
        key, module = getattr(self.model, "witness", ("learning/monte_carlo", "learning_mc"))
        return call_witness(key, module, self, sizes, rng, **kwargs)


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    r"""What the exact witness of a model's loss needs.

    ``one`` is the one-point chain whose fixed points give the ridges; ``laws`` the free
    letters (replicas are separate letters); ``resolvents`` maps a word item's name to the
    letters ``Y`` of :math:`(\lambda+Y)^{-1}`; ``blocks`` maps a name to plain letters.
    """

    one: Any
    sqrt_name: str
    laws: Mapping[sp.Symbol, Any]
    resolvents: Mapping[str, tuple[sp.Symbol, ...]]
    blocks: Mapping[str, tuple[sp.Symbol, ...]]
    dim: sp.Expr
    margin: int = 4


# ---------------------------------------------------------------------------
# ridge regression
# ---------------------------------------------------------------------------


def sample_covariance(sigma: Deterministic, gaussian: Gaussian) -> Any:
    r"""The expression :math:`\Sigma^{1/2}X^\top X\Sigma^{1/2}/P` of data with covariance ``sigma``."""
    s = sigma.sqrt()
    return s @ gaussian.T @ gaussian @ s / gaussian.dims[0]


@dataclass(frozen=True, slots=True)
class RidgeRegression:
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
        if not isinstance(self.sigma, Deterministic) or not isinstance(self.gaussian, Gaussian):
            raise InvalidArgument("RidgeRegression(Sigma, X, beta): Sigma Deterministic, X Gaussian (P x D)")
        p, d = self.gaussian.dims
        if sp.simplify(d - self.sigma.dim) != 0:
            raise InvalidArgument(f"X has {d} columns but Sigma is {self.sigma.dim} x {self.sigma.dim}")
        if not isinstance(self.beta, DeterministicVector) or sp.simplify(self.beta.dim - d) != 0:
            raise InvalidArgument(f"beta must be a DeterministicVector of dimension {d}")

    @property
    def dims(self) -> tuple[sp.Expr, sp.Expr]:
        """``(P, D)``."""
        return self.gaussian.dims

    @property
    def sample_covariance(self) -> Any:
        r""":math:`\hat\Sigma=\Sigma^{1/2}X^\top X\Sigma^{1/2}/P` (``X`` has iid standard entries)."""
        return sample_covariance(self.sigma, self.gaussian)

    def _one_point(self) -> Any:
        return derive(self.lam * resolvent(self.sample_covariance, self.lam))

    def series_spec(self) -> SeriesSpec:
        """Letters and laws of the exact witness: ``G`` the resolvent, ``S`` the sample covariance."""
        p, d = self.dims
        half = sp.Symbol(f"{self.sigma.name}_sqrt", commutative=False)
        w = sp.Symbol(f"W_{self.gaussian.name}", commutative=False)
        s_hat = (half, w, half)
        return SeriesSpec(
            one=self._one_point(),
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
                "error_decomposition",
                sp.Symbol("E_test"),
                sp.Symbol("bias") + sp.Symbol("variance") + noise_t,
                "exact algebra (MATH.md 4.1)",
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
                "two_point_coincidence",
                tp.deterministic,
                bias_matrix,
                "MATH.md 3.1 (form III is regular at lam = lam')",
                "set lam' = lam (kappa' = kappa): lam^2 G M G",
            )
        )
        bias = _quadratic(bias_matrix, b)
        # variance: (sigma2 / P) Tr(Sigma' G Sigma_hat G) = (sigma2 D / P) [tr(S' G) + lam d/dlam tr(S' G)]
        one = derive(trace(shift @ (lam * resolvent(sh, lam))))
        fp = one.inner.fixed_points[0]
        k1 = fp.symbol
        trg = _to_atoms(one.deterministic).xreplace({k1: kappa}) / lam  # tr(S' G)
        fixed = sp.Eq(kappa, fp.rhs.xreplace({k1: kappa}))
        d_trg, dk = lam_derivative(trg, lam, kappa, fixed)
        variance = self.noise * d / p * (trg + lam * d_trg)
        steps.append(
            Step(
                "resolvent_absorption",
                sp.Symbol("G") * sp.Symbol("Sigma_hat") * sp.Symbol("G"),
                sp.Symbol("G") + lam * sp.Derivative(sp.Symbol("G"), lam),
                "exact algebra: Sigma_hat G = I - lam G, G^2 = -dG/dlam (MATH.md 3.4)",
                "variance = (sigma2/P) Tr(S' G) + lam (sigma2/P) d/dlam Tr(S' G)",
            )
        )
        steps.extend(one.derivation)
        steps.append(
            Step(
                "implicit_differentiation",
                sp.Derivative(kappa, lam),
                dk,
                "implicit function theorem on the fixed point",
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
                "training_decomposition",
                sp.Symbol("E_train"),
                sp.Symbol("signal") + sp.Symbol("noise_part"),
                "exact algebra (MATH.md 4.2): y - X beta_hat = lam (K + lam)^-1 y, K = X X^T / P",
                "push-through X^T (K + lam)^-2 X / P = G Sigma_hat G; "
                "Tr_P (K+lam)^-2 = (P - D)/lam^2 + Tr_D G^2",
            )
        ]
        one = derive(lam * resolvent(sh, lam))
        fp = one.fixed_points[0]
        kappa = fp.symbol
        fixed = sp.Eq(kappa, fp.rhs)
        eq_matrix = one.deterministic / lam  # G ~ (kappa/lam) R
        qg = _quadratic(eq_matrix, b)  # b.T G b
        d_qg, dk = lam_derivative(qg, lam, kappa, fixed)
        signal = lam**2 * (_to_atoms(qg) + lam * d_qg)
        trg = _to_atoms(sp.Trace(eq_matrix) / d)
        d_trg, _ = lam_derivative(trg, lam, kappa, fixed)
        noise_part = self.noise * (1 - d / p) - self.noise * d / p * lam**2 * d_trg
        steps.extend(one.derivation)
        steps.append(
            Step(
                "implicit_differentiation",
                sp.Derivative(kappa, lam),
                dk,
                "implicit function theorem on the fixed point",
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


def _evaluate(loss: LossFormula, values: Mapping[Any, Any]) -> dict[str, complex | float]:
    from ..derivations.numeric import _Matrices, _number, _split_values, _substitute

    model = loss.model
    vec_name = model.beta.name if model is not None else None
    rest: dict[Any, Any] = {}
    vectors: dict[str, np.ndarray] = {}
    for key, value in values.items():
        name = key.name if isinstance(key, DeterministicVector) else key if isinstance(key, str) else None
        if name is not None and name == vec_name:
            v = np.asarray(value, dtype=float)
            if v.ndim != 1:
                raise InvalidArgument(f"the vector {name} must be 1-D, got shape {v.shape}")
            vectors[name] = v.reshape(-1, 1)
        else:
            rest[key] = value
    one = model._one_point()
    sol = one.evaluate(rest)
    kappa = sol[loss.kappa]
    mats, scalars = _split_values(rest)
    mats.update(vectors)
    numeric = _Matrices(mats, scalars)
    lam_value = _number(scalars[str(loss.lam)], str(loss.lam))
    out: dict[str, complex | float] = {}
    for name, expr in loss.terms.items():
        e = _substitute(sp.sympify(expr), {k: v for k, v in scalars.items() if k != str(loss.lam)})
        rep: dict[sp.Basic, Any] = {loss.lam: sp.sympify(lam_value), loss.kappa: sp.sympify(complex(kappa))}
        for atom in e.atoms(mtr):
            m = atom.args[0].xreplace(rep)
            a = _numeric_matrix(numeric, m)
            rep[atom] = sp.sympify(complex(np.trace(a) / a.shape[0]))
        value = _number(e.xreplace(rep), name)
        out[name] = value.real if value.imag == 0 else value
    out["total"] = sum(out.values())  # type: ignore[assignment]
    return out


def _numeric_matrix(numeric: Any, m: sp.Basic) -> np.ndarray:
    if isinstance(m, sp.Inverse):
        return np.linalg.inv(_numeric_matrix(numeric, m.arg))
    if isinstance(m, sp.MatMul):
        coeff, mats = m.as_coeff_matrices()
        out = _numeric_matrix(numeric, mats[0])
        for f in mats[1:]:
            out = out @ _numeric_matrix(numeric, f)
        return complex(coeff) * out if coeff != 1 else out
    if isinstance(m, sp.MatAdd):
        return sum((_numeric_matrix(numeric, a) for a in m.args[1:]), _numeric_matrix(numeric, m.args[0]))
    if isinstance(m, sp.Transpose):
        return _numeric_matrix(numeric, m.arg).T
    if isinstance(m, sp.MatPow) and m.args[1].is_Integer and m.args[1] > 0:
        return np.linalg.matrix_power(_numeric_matrix(numeric, m.args[0]), int(m.args[1]))
    if isinstance(m, sp.MatrixSymbol) and m.shape[1] == 1:
        return numeric.mats[m.name]
    return numeric.matrix(m)


# ---------------------------------------------------------------------------
# the exact witness
# ---------------------------------------------------------------------------


class _PrecisionLost(Exception):
    """A term's series lost leading orders to cancellation: retry with more working precision."""


def _check_series(loss: LossFormula, order: int) -> SeriesReport:
    from ..derivations.cumulants import _check_order
    from ..derivations.mixed import mixed_moment
    from ..derivations.quantities import tr
    from ..derivations.series import (
        _prepare,
        _Ring,
        _s_add,
        _s_eval,
        _s_inv,
        _s_mul,
        _s_pow,
        _Series,
        _solve_fixed_points,
    )

    K = _check_order(order)
    model = loss.model
    spec: SeriesSpec = model.series_spec()
    d = spec.dim
    sig = spec.sqrt_name
    half = sp.Symbol(f"{sig}_sqrt", commutative=False)
    laws = dict(spec.laws)
    b_letter = sp.Symbol(f"{model.beta.name}*{model.beta.name}.T", commutative=False)
    x = sp.Symbol("x_series")

    def letters(m: sp.Basic) -> tuple[sp.Symbol, ...]:
        if isinstance(m, sp.MatrixSymbol):
            return (half, half) if m.name == sig else (sp.Symbol(m.name, commutative=False),)
        if isinstance(m, sp.MatPow) and m.args[0].name == sig:
            return (half,) * int(2 * m.args[1])
        if isinstance(m, sp.MatPow) and m.args[1].is_Integer:
            return letters(m.args[0]) * int(m.args[1])
        if isinstance(m, sp.MatMul) and m.as_coeff_matrices()[0] == 1:
            return tuple(y for f in m.args for y in letters(f))
        raise InvalidArgument(f"no letters for {m}")

    # exact side: (lam + Y)^-1 = sum_j (-1)^j x^(j+1) Y^j for every resolvent item of the word
    def exact(term: RandomTerm) -> list[sp.Expr]:
        coeff = sp.sympify(term.coeff).xreplace({loss.lam: 1 / x})
        n_g = sum(1 for f in term.word if isinstance(f, str) and f in spec.resolvents)
        out = [sp.S.Zero] * (K + 1)
        c_series = sp.series(coeff, x, 0, K + 3).removeO() if coeff.has(x) else coeff

        def expand(word: tuple[Any, ...], powers: tuple[int, ...]) -> tuple[sp.Symbol, ...]:
            it = iter(powers)
            out_letters: list[sp.Symbol] = []
            for f in word:
                if isinstance(f, str) and f in spec.resolvents:
                    out_letters += list(spec.resolvents[f]) * next(it)
                elif isinstance(f, str):
                    out_letters += list(spec.blocks[f])
                else:
                    out_letters += list(letters(f))
            return tuple(out_letters)

        for total in range(0, K + 1):
            for powers in itertools.product(range(total + 1), repeat=n_g):
                if sum(powers) != total:
                    continue
                word = expand(term.word, powers)
                if term.vector is not None:
                    value = d * mixed_moment(sp.Mul(b_letter, *word), laws)
                else:
                    value = mixed_moment(sp.Mul(*word), laws) if word else sp.S.One
                sign = (-1) ** total
                contrib = sp.expand(sign * x ** (total + n_g) * value * c_series)
                for k in range(K + 1):
                    out[k] += contrib.coeff(x, k)
        return [sp.expand(v) for v in out]

    def equivalents(work: int) -> dict[str, list[sp.Expr]]:
        """Series of every term at working precision ``work`` (raises _PrecisionLost)."""
        # equivalent side: kappa as a series in x, mtr atoms expanded in 1/kappa
        one = spec.one
        prepared = _prepare(one, work, {sig})

        def expansion(atom: mtr) -> list[tuple[sp.Expr, int, sp.Expr]]:
            """``[(trace, total power j, sign)]``: mtr = sum sign * kappa^-(j + #inv) * trace."""
            m = atom.args[0]
            scalar = m.as_coeff_matrices()[0] if isinstance(m, sp.MatMul) else sp.S.One
            mats = _flat(m)
            vec = False
            if mats and isinstance(mats[0], sp.Transpose) and isinstance(mats[0].arg, sp.MatrixSymbol):
                vec = True
                mats = list(mats[1:-1])
            inv = [f for f in mats if isinstance(f, sp.Inverse)]
            out = []
            for powers in itertools.product(range(work + 1), repeat=len(inv)):
                if sum(powers) > work:
                    continue
                it = iter(powers)
                word: list[sp.Symbol] = []
                for f in mats:
                    if isinstance(f, sp.Inverse):
                        ys = [a for a in f.arg.args if not a.has(loss.kappa)]
                        if len(ys) != 1 or sp.simplify(
                            f.arg - ys[0] - loss.kappa * sp.Identity(d)
                        ) != sp.ZeroMatrix(d, d):
                            raise InvalidArgument(f"cannot expand {f} in 1/{loss.kappa}")
                        word += list(letters(ys[0])) * next(it)
                    else:
                        word += list(letters(f))
                t = d * tr(sp.Mul(b_letter, *word)) if vec else (tr(sp.Mul(*word)) if word else sp.S.One)
                out.append((scalar * t, sum(powers) + len(inv), (-1) ** sum(powers)))
            return out

        atoms = sorted({a for e in loss.terms.values() for a in sp.sympify(e).atoms(mtr)}, key=str)
        expansions = {a: expansion(a) for a in atoms}
        exprs: list[Any] = []
        for _, _, terms, tg in prepared:
            exprs += [c for _, c in terms] + [y for ms, _ in tg for y in ms]
        exprs += [t for ex in expansions.values() for t, _, _ in ex]
        for e in loss.terms.values():
            scalars = {
                a
                for a in sp.sympify(e).xreplace({m: 1 for m in sp.sympify(e).atoms(mtr)}).free_symbols
                if not isinstance(a, sp.MatrixSymbol)
            }
            exprs.append(sp.Add(*(scalars - {loss.lam, loss.kappa}), sp.S.Zero))
        alg = _Ring(exprs)
        solved = _solve_fixed_points(prepared, work, alg)
        u = solved[loss.kappa]
        n = work + 1
        kappa_series: _Series = (-1, list(u[:n]))
        inv_kappa = _s_inv(kappa_series, alg)

        powers_of_inv: list[_Series] = [_s_pow(inv_kappa, 0, alg)]

        def inv_power(j: int) -> _Series:
            while len(powers_of_inv) <= j:
                powers_of_inv.append(_s_mul(powers_of_inv[-1], inv_kappa, alg))
            return powers_of_inv[j]

        def atom_series(atom: mtr) -> _Series:
            grouped: dict[int, Any] = {}
            for t, power, sign in expansions[atom]:
                grouped[power] = grouped.get(power, alg.R.zero) + alg.to(sign * t)
            total: _Series = (0, [alg.R.zero] * n)
            for power, coeff in grouped.items():
                c = inv_power(power)
                total = _s_add(total, (c[0], [v * coeff for v in c[1]]), alg)
            return total

        def equivalent(expr: sp.Expr) -> list[sp.Expr]:
            e = sp.sympify(expr)
            env: dict[sp.Basic, _Series] = {
                loss.lam: (-1, [alg.R.one] + [alg.R.zero] * (n - 1)),
                loss.kappa: kappa_series,
            }
            for atom in e.atoms(mtr):
                env[atom] = atom_series(atom)
            shift, cs = _s_eval(e, env, n, alg)
            if shift < 0:
                if any(cs[:-shift]):
                    raise InvalidArgument(f"the term has a pole at lam = infinity: {expr}")
                full = cs[-shift:]
            else:
                full = [alg.R.zero] * shift + cs
            if len(full) < K + 1:
                raise _PrecisionLost(f"the series of {expr} lost precision ({len(full)} < {K + 1} terms)")
            return [alg.expr(c) for c in full[: K + 1]]

        return {name: equivalent(expr) for name, expr in loss.terms.items()}

    # working precision: lam^2 prefactors, derivatives and the differences of the split cancel
    # leading orders; start with the model's margin and widen it if a term runs out
    for margin in (spec.margin, spec.margin + 4, spec.margin + 8):
        try:
            series = equivalents(K + margin)
            break
        except _PrecisionLost:
            continue
    else:
        raise InvalidArgument(f"the series of a term of {loss.name} lost precision even with margin {margin}")

    coefficients: dict[str, tuple[tuple[sp.Expr, sp.Expr], ...]] = {}
    failures: dict[str, int | None] = {}
    for name, expr in loss.terms.items():
        eqv = series[name]
        dia = [sp.S.Zero] * (K + 1)
        randoms = loss.random.get(name, ())
        if not randoms:
            dia = [sp.sympify(expr)] + [sp.S.Zero] * K
        for term in randoms:
            dia = [a + b for a, b in zip(dia, exact(term), strict=True)]
        pairs = tuple((sp.expand(a), sp.expand(b)) for a, b in zip(eqv, dia, strict=True))
        coefficients[name] = pairs
        first = next(
            (k for k, (a, b) in enumerate(pairs) if sp.cancel(sp.together(sp.expand(a - b))) != 0), None
        )
        failures[name] = first
    return SeriesReport(order=order, coefficients=coefficients, failures=failures)
