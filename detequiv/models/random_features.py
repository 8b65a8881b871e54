r"""Linear random-feature ridge regression, derived with the fine-grained split (MATH.md 4.5).

The model: features :math:`Fx\in\mathbb R^N` with ``F`` an ``N x D`` Gaussian matrix scaled so
that :math:`W_F=F^\top F/N` has mean :math:`I`, :math:`P` samples, and the ridge estimator
:math:`\hat w=\arg\min\frac1P\|y-XF^\top w\|^2/N+\lambda\|w\|^2`, whose effective linear
predictor is :math:`\hat\beta=(\lambda+W_F\hat\Sigma)^{-1}W_FX^\top y/P`. Then

.. math:: \hat\beta-\beta=-\lambda G\beta+GW_FX^\top\varepsilon/P,\qquad G=(\lambda+W_F\hat\Sigma)^{-1}.

Nothing below is typed in. The rules, all named in :attr:`LossFormula.derivation`:

* ``replica_decomposition``: with independent copies :math:`X',F'`,
  :math:`\|\mathbb E_{X,F}d\|^2=\mathbb E\,d(X,F)^\top\Sigma d(X',F')`,
  :math:`\mathbb E_F\|\mathbb E_Xd\|^2=\mathbb E\,d(X,F)^\top\Sigma d(X',F)`, and so on: each
  part of the fine-grained split is a two-point function whose two resolvents share some
  of the random factors and have independent copies of the others;
* ``replica_factorization``: a factor not shared is averaged on each side alone (a
  one-point equivalent, :func:`~detequiv.derivations.onepoint.derive`);
* ``conditional_equivalent``: the shared factor is held fixed (a deterministic placeholder)
  while the other is averaged, then ``spectral_parameter_substitution``: the two-point
  equivalent of the shared factor (:func:`~detequiv.derivations.twopoint.derive_two_point`)
  is taken at the conditional ridges, whose fixed point is checked symbolically to be the
  chain's own (``kappa_2`` of :func:`~detequiv.derivations.onepoint.derive`);
* the total (both factors shared) is the layered two-point equivalent at coincidence
  (:func:`~detequiv.derivations.layered.derive_layered_two_point`);
* the label-noise variance uses ``resolvent_absorption``
  (:math:`GW_F\hat\Sigma W_FG^\top=\partial_\lambda[\lambda GW_F]`), the conditional trace
  :math:`\lambda\operatorname{Tr}\Sigma GW_F\simeq\kappa_1\operatorname{Tr}W_F\Sigma(\kappa_1+W_F\Sigma)^{-1}`
  and ``trace_concentration`` of the remaining feature trace, then
  ``implicit_differentiation``.

Each term is checked by :meth:`LossFormula.check_series` against the planar diagram sums of
its random functional (with the replicas as independent free families) and by
simulation (:mod:`detequiv.models.random_features_mc`).

>>> import sympy as sp
>>> from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian
>>> D, N, P = sp.symbols("D N P", positive=True)
>>> model = RandomFeatureRidge(Deterministic("Sigma", D), Gaussian("X", (P, D)),
...                            Gaussian("F", (N, D)), DeterministicVector("beta", D))
>>> err = model.test_error()
>>> list(err.terms)
['bias', 'variance_features', 'variance_data', 'variance_interaction', 'variance_noise', 'noise']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import sympy as sp

from ..derivations.derivation import FixedPoint, Step
from ..derivations.derive import derive
from ..derivations.expressions import (
    Deterministic,
    DeterministicVector,
    Gaussian,
    MatrixExpr,
    resolvent,
    trace,
)
from ..derivations.formula import LossFormula, LossModel, RandomTerm, SeriesSpec
from ..derivations.laws import Wishart
from ..derivations.layered import derive_layered_two_point
from ..derivations.onepoint import OnePoint
from ..derivations.rules import (
    CONDITIONAL_EQUIVALENT,
    IMPLICIT_DIFFERENTIATION,
    REPLICA_DECOMPOSITION,
    REPLICA_FACTORIZATION,
    RESOLVENT_ABSORPTION,
    SPECTRAL_PARAMETER_SUBSTITUTION,
    TRACE_CONCENTRATION,
    TWO_POINT_COINCIDENCE,
)
from ..derivations.sandwich import derive_two_point
from ..derivations.traces import lam_derivative, quadratic_form, to_atoms
from ..errors import InvalidArgument, VerificationError
from . import random_features_mc
from .kernel import canonical_traces
from .rules import ERROR_DECOMPOSITION

__all__ = ["RandomFeatureRidge", "RandomFeatureDerivation", "check_random_feature_model"]


def _merge_sqrt(m: sp.Basic) -> sp.Basic:
    """``A^(1/2) A^(1/2) -> A`` inside products (the layered printer keeps both halves)."""

    def merge(e: sp.MatMul) -> sp.Basic:
        coeff, mats = _factors(e)  # nested products keep their scalars
        out: list[sp.Basic] = []
        for f in mats:
            if (
                out
                and isinstance(f, sp.MatPow)
                and f.exp == sp.Rational(1, 2)
                and isinstance(out[-1], sp.MatPow)
                and out[-1] == f
            ):
                out[-1] = f.base
            else:
                out.append(f)
        body = out[0] if len(out) == 1 else sp.MatMul(*out)
        return body if coeff == 1 else sp.MatMul(coeff, body)

    return m.replace(lambda e: isinstance(e, sp.MatMul), merge)


def check_random_feature_model(model: str, sigma: Any, gaussian: Any, features: Any, beta: Any) -> None:
    """Validate ``model(Sigma, X, F, beta)``: types, matching dimensions, distinct names.

    Raises
    ------
    InvalidArgument
        Naming what is wrong and what was expected.
    """
    if not isinstance(sigma, Deterministic):
        raise InvalidArgument(f"{model}(Sigma, X, F, beta): Sigma must be Deterministic, got {sigma!r}")
    for g, what in ((gaussian, "X (P x D)"), (features, "F (N x D)")):
        if not isinstance(g, Gaussian):
            raise InvalidArgument(f"{model}(Sigma, X, F, beta): {what} must be Gaussian, got {g!r}")
        if sp.simplify(g.dims[1] - sigma.dim) != 0:
            raise InvalidArgument(f"{g.name} has {g.dims[1]} columns but Sigma is {sigma.dim} x {sigma.dim}")
    if gaussian.name == features.name:
        raise InvalidArgument(
            f"the data X and the features F are both named {gaussian.name!r}; they are independent and "
            "need different names"
        )
    if not isinstance(beta, DeterministicVector) or sp.simplify(beta.dim - sigma.dim) != 0:
        raise InvalidArgument(f"beta must be a DeterministicVector of dimension {sigma.dim}")


def _root(one: OnePoint) -> FixedPoint:
    """The implicit fixed point of a chain (the final ridge); the others are explicit in it."""
    roots = [fp for fp in one.fixed_points if fp.implicit]
    if len(roots) != 1:
        raise VerificationError(f"expected one implicit ridge, got {[str(fp) for fp in roots]}")
    return roots[0]


def _explicit(one: OnePoint) -> dict[sp.Symbol, sp.Expr]:
    """The explicit (intermediate) ridges of a chain as functions of the root."""
    return {fp.symbol: fp.rhs for fp in one.fixed_points if not fp.implicit}


@dataclass(frozen=True, slots=True)
class RandomFeatureRidge(LossModel):
    r"""Ridge regression on linear random features (MATH.md 4.5).

    Parameters
    ----------
    sigma : Deterministic
        Data covariance :math:`\Sigma` (``D x D``).
    gaussian : Gaussian
        Data ``X`` (``P x D``, rows :math:`\Sigma^{1/2}z`).
    features : Gaussian
        Feature matrix ``F`` (``N x D``, iid standard entries; the features are
        :math:`Fx/\sqrt N`).
    beta : DeterministicVector
        Target, :math:`y=\beta\cdot x+\varepsilon`.
    noise : sympy expression
        Label-noise variance :math:`\sigma^2`.
    """

    sigma: Deterministic
    gaussian: Gaussian
    features: Gaussian
    beta: DeterministicVector
    noise: sp.Expr = sp.Symbol("sigma2", nonnegative=True)
    lam: sp.Symbol = sp.Symbol("lam", positive=True)

    def __post_init__(self) -> None:
        check_random_feature_model("RandomFeatureRidge", self.sigma, self.gaussian, self.features, self.beta)

    # -- the random matrices --------------------------------------------------
    @property
    def dims(self) -> tuple[sp.Expr, sp.Expr]:
        """``(P, D)``."""
        return self.gaussian.dims

    @property
    def n_features(self) -> sp.Expr:
        """``N``, the number of features."""
        return self.features.dims[0]

    @property
    def test_covariance(self) -> None:
        """No covariate shift: the test covariance is ``Sigma`` (code generation reads this)."""
        return None

    def _wf(self) -> MatrixExpr:
        r""":math:`W_F=F^\top F/N`."""
        return self.features.T @ self.features / self.n_features

    def _sh(self) -> MatrixExpr:
        r""":math:`\hat\Sigma=\Sigma^{1/2}X^\top X\Sigma^{1/2}/P`."""
        s = self.sigma.sqrt()
        return s @ self.gaussian.T @ self.gaussian @ s / self.dims[0]

    def one_point(self) -> OnePoint:
        """The chain :math:`\\lambda(\\lambda+W_F\\hat\\Sigma)^{-1}`, data averaged first."""
        return derive(
            self.lam * resolvent(self._wf() @ self._sh(), self.lam),
            order=(self.gaussian.name, self.features.name),
        )

    # -- the loss -------------------------------------------------------------
    def test_error(self) -> LossFormula:
        """Test error with the fine-grained split (MATH.md 4.5), derived."""
        return RandomFeatureDerivation(self).test_error()

    def check_monte_carlo(
        self, loss: LossFormula, sizes: Sequence[int] | None, *, rng: Any, **options: Any
    ) -> Any:
        """Simulated random-feature ridge against ``loss``
        (:func:`detequiv.models.random_features_mc.check_monte_carlo`)."""
        if sizes is not None:
            options["sizes"] = sizes
        return random_features_mc.check_monte_carlo(loss, rng=rng, **options)

    def series_spec(self) -> SeriesSpec:
        """Letters and laws of the exact witness (the replicas are independent families)."""
        p, d = self.dims
        n = self.n_features
        half = sp.Symbol(f"{self.sigma.name}_sqrt", commutative=False)
        wx, wx2 = (sp.Symbol(f"W_{self.gaussian.name}{c}", commutative=False) for c in ("", "'"))
        wf, wf2 = (sp.Symbol(f"W_{self.features.name}{c}", commutative=False) for c in ("", "'"))
        laws = {wx: Wishart(d / p), wx2: Wishart(d / p), wf: Wishart(d / n), wf2: Wishart(d / n)}
        resolvents = {}
        for xs, x in (("", wx), ("'", wx2)):
            for fs, f in (("", wf), ("'", wf2)):
                resolvents[f"G[X{xs},F{fs}]"] = (f, half, x, half)  # (lam + W_F S_hat)^-1
                resolvents[f"Gt[X{xs},F{fs}]"] = (half, x, half, f)  # (lam + S_hat W_F)^-1
        blocks = {"S": (half, wx, half), "WF": (wf,)}
        return SeriesSpec(
            one=self.one_point(),
            sqrt_name=self.sigma.name,
            laws=laws,
            resolvents=resolvents,
            blocks=blocks,
            dim=d,
            margin=6,  # the interaction term (a difference of the split) starts late
        )


def _opaque(expr: sp.Expr) -> tuple[sp.Expr, dict[sp.Symbol, sp.Basic]]:
    """Trace atoms replaced by plain symbols (rational algebra on them is fast), and the way back."""
    from ..derivations.traces import mtr

    atoms = sorted(sp.sympify(expr).atoms(mtr), key=str)
    fwd = {a: sp.Dummy(f"t{i}") for i, a in enumerate(atoms)}
    return sp.sympify(expr).xreplace(fwd), {v: k for k, v in fwd.items()}


def _solve_linear(expr: sp.Expr, x: sp.Symbol, what: Any) -> sp.Expr:
    """The root of ``expr = 0`` in ``x`` when its numerator is linear in ``x`` (fixed points are
    linear in their spectral parameter); trace atoms are opaque symbols meanwhile."""
    opaque, back = _opaque(to_atoms(expr))
    num = sp.numer(sp.together(opaque))
    poly = sp.Poly(sp.expand(num), x)
    if poly.degree() != 1:
        raise VerificationError(f"{what} is not linear in {x}; cannot solve it for {x}")
    c1, c0 = poly.all_coeffs()
    return sp.factor(-c0 / c1).xreplace(back)


def _is_zero(expr: sp.Expr) -> bool:
    """Exact zero test of a rational function of scalars and (opaque) trace atoms."""
    return bool(sp.cancel(sp.together(_opaque(to_atoms(expr))[0])) == 0)


def _factors(m: sp.Basic) -> tuple[sp.Expr, list[sp.Basic]]:
    """``(scalar, [matrix factors])`` of a (nested) product."""
    if isinstance(m, sp.MatMul):
        coeff, mats = m.as_coeff_matrices()
        out: list[sp.Basic] = []
        for f in mats:
            c, fs = _factors(f)
            coeff *= c
            out += fs
        return coeff, out
    return sp.S.One, [m]


class RandomFeatureDerivation:
    r"""The derivation of :meth:`RandomFeatureRidge.test_error`, kept apart from the value class.

    One instance derives one loss: each part of the fine-grained split (MATH.md 4.5) is a
    method that returns its equivalent, in the chain's ridge ``kappa``, and appends its named
    steps to :attr:`steps`; :meth:`test_error` runs them all in order.
    :class:`~detequiv.models.gradient_flow.RandomFeatureGradientFlow` reuses
    :meth:`noise_trace` for its label-noise term.

    Parameters
    ----------
    model : RandomFeatureRidge
        The model to derive.

    Attributes
    ----------
    m : RandomFeatureRidge
        The model.
    lam : sympy.Symbol
        Its ridge.
    steps : list of Step
        The steps recorded so far, in order.
    chain : OnePoint
        The one-point chain :math:`\lambda(\lambda+W_F\hat\Sigma)^{-1}` (data averaged first).
    kappa : sympy.Symbol
        The chain's final (implicit) ridge, in which every part is written.
    fixed : FixedPoint
        Its fixed point.
    explicit : dict
        The chain's intermediate ridges as functions of ``kappa``.
    b : sympy.MatrixSymbol
        The target :math:`\beta` (``D x 1``).
    d : sympy.Expr
        The dimension ``D``.
    k, k2 : sympy.Symbol
        Spectral parameters of the conditional (held-factor) equivalents.

    Examples
    --------
    >>> import sympy as sp
    >>> from detequiv.derivations.expressions import Deterministic, DeterministicVector, Gaussian
    >>> D, N, P = sp.symbols("D N P", positive=True)
    >>> model = RandomFeatureRidge(Deterministic("Sigma", D), Gaussian("X", (P, D)),
    ...                            Gaussian("F", (N, D)), DeterministicVector("beta", D))
    >>> der = RandomFeatureDerivation(model)
    >>> trace_value = der.noise_trace()
    >>> [s.rule.name for s in der.steps][-2:]
    ['conditional_equivalent', 'trace_concentration']
    """

    def __init__(self, model: RandomFeatureRidge) -> None:
        self.m = model
        self.lam = model.lam
        self.steps: list[Step] = []
        self.chain = model.one_point()
        root = _root(self.chain)
        self.kappa: sp.Symbol = root.symbol
        self.fixed = root
        self.explicit = _explicit(self.chain)
        self.b = sp.MatrixSymbol(model.beta.name, model.sigma.dim, 1)
        self.d = model.sigma.dim
        self.k = sp.Symbol("k", positive=True)
        self.k2 = sp.Symbol("k2", positive=True)

    # -- helpers ----------------------------------------------------------------
    def _lam_of(self, eq: sp.Eq, kappa: sp.Symbol) -> sp.Expr:
        """``lam`` as a function of the final ridge, from an implicit fixed point."""
        return _solve_linear(eq.lhs - eq.rhs, self.lam, eq).xreplace({kappa: self.kappa})

    def _same_chain(self, eq: sp.Eq, kappa: sp.Symbol, what: str) -> None:
        """Check that ``eq`` (an equation for ``kappa`` and ``lam``) is the chain's fixed point."""
        mine = self._lam_of(eq, kappa)
        chain = self._lam_of(self.fixed.equation, self.kappa)
        # traces in the basis tr R^j (Sigma R = I - kappa R), where equal expressions are equal
        diff = canonical_traces(mine - chain, cast(Any, self.m), self.kappa)[0]
        if sp.cancel(sp.together(diff)) != 0:
            raise VerificationError(f"{what}: {eq} is not the chain's {self.fixed}")

    def _canonical(self, expr: sp.Expr, one: OnePoint, what: str) -> sp.Expr:
        """``one``'s result in the chain's ridge (its fixed point checked to be the chain's)."""
        root = _root(one)
        self._same_chain(root.equation, root.symbol, what)
        out = sp.sympify(expr).xreplace(_explicit(one))
        return out.xreplace({root.symbol: self.kappa})

    def _quadratic_form(self, matrix: sp.Basic) -> sp.Expr:
        return quadratic_form(_merge_sqrt(matrix), self.b)

    def _released_trace(self, a: sp.Basic, held: str, shared: Any, k: sp.Expr) -> tuple[sp.Expr, FixedPoint]:
        """``tr k (k + A)^-1`` with the held placeholder in ``A`` random again, by the engine."""
        sig = self.m.sigma.to_sympy()
        w = sp.MatrixSymbol(held, *sig.shape)
        table = {
            sp.MatMul(sig, w): self.m.sigma @ shared,
            sp.MatMul(w, sig): shared @ self.m.sigma,
            w: shared,
        }
        if a not in table:
            raise InvalidArgument(f"cannot release the placeholder {held} in {a}")
        one = derive(trace(self.k * resolvent(table[a], self.k)))
        return sp.sympify(one.deterministic).xreplace({self.k: k}), _root(one)

    def _release(self, expr: sp.Expr, held: str, shared: Any) -> tuple[sp.Expr, list[FixedPoint]]:
        """Every trace of ``expr`` that contains the placeholder ``held``, derived with it random."""
        from ..derivations.quantities import df1

        fps: list[FixedPoint] = []
        rep: dict[sp.Basic, sp.Basic] = {}
        for atom in sp.sympify(expr).atoms(df1):
            a, kk = atom.args
            if sp.Symbol(held) in {sp.Symbol(s.name) for s in a.atoms(sp.MatrixSymbol)}:
                value, fp = self._released_trace(a, held, shared, kk)
                rep[atom] = 1 - value
                fps.append(fp)
        for atom in sp.sympify(expr).atoms(sp.Trace):
            if held not in {s.name for s in atom.arg.atoms(sp.MatrixSymbol)}:
                continue
            c, mats = _factors(atom.arg)
            inv = mats[-1]
            if not isinstance(inv, sp.Inverse) or not isinstance(inv.arg, sp.MatAdd):
                raise InvalidArgument(f"cannot release {atom}: not of the form A (k + A)^-1")
            ident = [t for t in inv.arg.args if t.has(sp.Identity)]
            rest = [t for t in inv.arg.args if not t.has(sp.Identity)]
            if len(ident) != 1 or len(rest) != 1:
                raise InvalidArgument(f"cannot release {atom}: not of the form A (k + A)^-1")
            kk = ident[0].as_coeff_matrices()[0] if isinstance(ident[0], sp.MatMul) else sp.S.One
            a = rest[0]
            pre = mats[:-1]
            body = pre[0] if len(pre) == 1 else (sp.MatMul(*pre) if pre else None)
            value, fp = self._released_trace(a, held, shared, kk)
            fps.append(fp)
            if body is None:  # Tr (k + A)^-1 = D tr k (k + A)^-1 / k
                rep[atom] = c * self.d * value / kk
            elif body == a:  # Tr A (k + A)^-1 = D (1 - tr k (k + A)^-1)  (resolvent absorption)
                rep[atom] = c * self.d * (1 - value)
            else:
                raise InvalidArgument(f"cannot release {atom}: not of the form A (k + A)^-1")
        return sp.sympify(expr).xreplace(rep), fps

    def _conditional(self, held: str, avg: str, side: str, test: Any = None) -> OnePoint:
        """One-point equivalent of a resolvent of the chain with one factor held fixed."""
        m, lam = self.m, self.lam
        w = Deterministic(held, self.d)
        if avg == "X":  # F held
            sh = m._sh()
            g = resolvent(sh @ w, lam) if side == "left" else resolvent(w @ sh, lam)
        else:  # X held: the placeholder is the sample covariance
            wf = m._wf()
            g = resolvent(w @ wf, lam) if side == "left" else resolvent(wf @ w, lam)
        expr = lam * g if test is None else trace(test(w) @ (lam * g))
        return derive(expr)

    # -- the parts of the split ----------------------------------------------------
    def mean_part(self) -> sp.Expr:
        """``E d(X,F)' Sigma d(X',F')``: nothing shared, two one-point equivalents."""
        m = self.m
        left = derive(
            self.lam * resolvent(m._sh() @ m._wf(), self.lam), order=(m.gaussian.name, m.features.name)
        )
        lmat = self._canonical(left.deterministic, left, "left replica")
        rmat = self._canonical(self.chain.deterministic, self.chain, "right replica")
        matrix = sp.MatMul(lmat, m.sigma.to_sympy(), rmat)
        self.steps.extend(left.derivation)
        self.steps.append(
            Step(
                REPLICA_FACTORIZATION,
                sp.Symbol("E[lam^2 G(X,F)' Sigma G(X',F')]"),
                matrix,
                "the mean predictor's error: each resolvent averaged alone",
            )
        )
        return self._quadratic_form(matrix)

    def shared_part(self, which: str) -> sp.Expr:
        """``E d(X,F)' Sigma d(X',F)`` (``which='F'``) or ``E d(X,F)' Sigma d(X,F')`` (``'X'``)."""
        m, k, k2 = self.m, self.k, self.k2
        if which == "F":
            held, avg, shared = f"W_{m.features.name}", "X", m._wf()
            word = k * k2 * resolvent(m.sigma @ shared, k) @ m.sigma @ resolvent(shared @ m.sigma, k2)
        else:
            held, avg, shared = f"{m.sigma.name}_hat", "F", m._sh()
            word = k * k2 * resolvent(shared, k) @ m.sigma @ resolvent(shared, k2)
        left = self._conditional(held, avg, "left")
        right = self._conditional(held, avg, "right")
        fl, fr = _root(left), _root(right)
        self.steps.extend(left.derivation)
        self.steps.append(
            Step(
                CONDITIONAL_EQUIVALENT,
                sp.Symbol(f"E_{avg}[lam^2 G Sigma G'] | {held}"),
                sp.MatMul(
                    left.deterministic,
                    m.sigma.to_sympy(),
                    right.deterministic.xreplace({fr.symbol: fl.symbol}),
                ),
                f"{held} is a deterministic placeholder",
                fl.equation,
            )
        )
        tp = derive_two_point(word)
        self.steps.extend(tp.derivation)
        kc = self._conditional_ridge(fl, held, shared, tp)
        if not _is_zero(kc - self._conditional_ridge(fr, held, shared, tp, record=False)):
            raise VerificationError(f"the two conditional ridges differ: {fl} vs {fr}")
        matrix = tp.deterministic.xreplace({tp.kappa2: tp.kappa}).xreplace({k: kc, k2: kc})
        matrix = matrix.xreplace({tp.kappa: self.kappa})
        self.steps.append(
            Step(
                SPECTRAL_PARAMETER_SUBSTITUTION,
                tp.deterministic,
                matrix,
                f"k = k2 = the concentrated conditional ridge {fl.symbol} = {kc}",
            )
        )
        return self._quadratic_form(matrix)

    def _conditional_ridge(
        self, fl: FixedPoint, held: str, shared: Any, tp: Any, record: bool = True
    ) -> sp.Expr:
        """The conditional ridge once the held factor is random, as a function of the chain's ridge.

        Its equation's traces are released (derived with the factor random, in the ridge
        ``kappa(k)`` of the shared factor's own fixed point); ``k`` is then explicit in that
        ridge (the fixed point is linear in ``k``) and the equation becomes the chain's."""
        k = self.k
        inner = tp.fixed_points[0]
        eq_c = fl.equation.xreplace({fl.symbol: k})
        released, fps = self._release(eq_c.rhs, held, shared)
        for fp in fps:
            if not _is_zero(fp.rhs.xreplace({fp.symbol: inner.symbol}) - inner.rhs.xreplace({self.k2: k})):
                raise VerificationError(f"released trace ridge {fp} differs from {inner}")
            released = released.xreplace({fp.symbol: inner.symbol})
        k_of = _solve_linear(inner.symbol - inner.rhs, k, inner)
        eq = sp.Eq(k_of, released.xreplace({k: k_of}))
        self._same_chain(eq, inner.symbol, f"conditional ridge {fl.symbol}")
        if not record:
            return k_of.xreplace({inner.symbol: self.kappa})
        self.steps.append(
            Step(
                TRACE_CONCENTRATION,
                fl.equation,
                sp.Eq(fl.symbol, released.xreplace({k: fl.symbol})),
                f"{held} released; {fl.symbol} = {k_of.xreplace({inner.symbol: self.kappa})} "
                f"(the shared factor's fixed point solved for its spectral parameter) makes this the chain's "
                f"{self.fixed.symbol}",
                eq.xreplace({inner.symbol: self.kappa}),
            )
        )
        return k_of.xreplace({inner.symbol: self.kappa})

    def total_part(self) -> sp.Expr:
        """``E d' Sigma d`` at sigma = 0: the layered two-point equivalent at coincidence."""
        m, lam = self.m, self.lam
        lam2 = sp.Symbol("lam2", positive=True)
        tp = derive_layered_two_point(
            lam * lam2 * resolvent(m._sh() @ m._wf(), lam) @ m.sigma @ resolvent(m._wf() @ m._sh(), lam2),
            outer=f"W_{m.gaussian.name}",
        )
        self.steps.extend(tp.derivation)
        rep: dict[sp.Basic, sp.Basic] = {lam2: lam}
        for fp in tp.fixed_points:
            if str(fp.symbol).endswith("'"):
                rep[fp.symbol] = sp.Symbol(str(fp.symbol)[:-1])
        matrix = tp.deterministic.xreplace(rep)
        unprimed = [fp for fp in tp.fixed_points if not str(fp.symbol).endswith("'")]
        expl = {fp.symbol: fp.rhs for fp in unprimed if not fp.implicit}
        roots = [fp for fp in unprimed if fp.implicit]
        if len(roots) != 1:
            raise VerificationError(f"expected one implicit ridge in {unprimed}")
        self._same_chain(roots[0].equation, roots[0].symbol, "layered two-point")
        matrix = matrix.xreplace(expl).xreplace({roots[0].symbol: self.kappa})
        self.steps.append(
            Step(
                TWO_POINT_COINCIDENCE,
                tp.deterministic,
                matrix,
                "set lam' = lam (primed ridges = unprimed)",
            )
        )
        return self._quadratic_form(matrix)

    def noise_variance(self) -> sp.Expr:
        """``(sigma2/P) Tr Sigma G W_F S_hat W_F G'`` = ``(sigma2/P) d/dlam [lam Tr Sigma G W_F]``."""
        lam, p = self.lam, self.m.dims[0]
        trace_value = self.noise_trace()
        fixed = sp.Eq(self.kappa, self.fixed.rhs)
        d_val, dk = lam_derivative(trace_value, lam, self.kappa, fixed)
        variance = self.m.noise / p * d_val
        self.steps.append(
            Step(
                RESOLVENT_ABSORPTION,
                sp.Symbol("G W_F S_hat W_F G'"),
                sp.Derivative(sp.Symbol("lam") * sp.Symbol("G W_F"), lam),
                "variance = (sigma2/P) d/dlam [lam Tr(Sigma G W_F)]",
            )
        )
        self.steps.append(
            Step(
                IMPLICIT_DIFFERENTIATION,
                sp.Derivative(self.kappa, lam),
                dk,
                "dkappa/dlam = -dPhi/dlam / dPhi/dkappa",
                fixed,
            )
        )
        return variance

    def noise_trace(self) -> sp.Expr:
        """The equivalent of ``lam Tr(Sigma G W_F)`` in the chain's ridge (``kappa_1 n``), its steps
        recorded: ``conditional_equivalent`` with ``W_F`` held, then ``trace_concentration``."""
        m = self.m
        held = f"W_{m.features.name}"
        sig = m.sigma
        cond = self._conditional(held, "X", "right", test=lambda w: w @ sig)
        fc = _root(cond)
        k = self.k
        tp_inner = derive(trace(k * resolvent(sig @ m._wf(), k)))
        inner = _root(tp_inner)
        value = cond.deterministic.xreplace({fc.symbol: k})  # tr(W_F Sigma lam G) at kappa_c = k
        released, fps = self._release(value, held, m._wf())
        eq_c, fps2 = self._release(fc.rhs.xreplace({fc.symbol: k}), held, m._wf())
        for fp in [*fps, *fps2]:
            if not _is_zero(fp.rhs.xreplace({fp.symbol: inner.symbol}) - inner.rhs):
                raise VerificationError(f"released trace ridge {fp} differs from {inner}")
        released = released.xreplace({fp.symbol: inner.symbol for fp in fps})
        eq_c = eq_c.xreplace({fp.symbol: inner.symbol for fp in fps2})
        k_of = _solve_linear(inner.symbol - inner.rhs, k, inner)
        self._same_chain(sp.Eq(k_of, eq_c.xreplace({k: k_of})), inner.symbol, "noise-variance ridge")
        trace_value = self.d * released.xreplace({k: k_of}).xreplace({inner.symbol: self.kappa})
        self.steps.extend(cond.derivation)
        self.steps.append(
            Step(
                CONDITIONAL_EQUIVALENT,
                sp.Symbol(f"lam Tr(Sigma G W_F) | {held}"),
                cond.deterministic,
                f"{held} is a deterministic placeholder; ridge {fc.symbol}",
                fc.equation,
            )
        )
        self.steps.append(
            Step(
                TRACE_CONCENTRATION,
                cond.deterministic,
                trace_value / self.d,
                f"lam Tr(Sigma G W_F) ~ {trace_value}",
            )
        )
        return trace_value

    # -- the loss -------------------------------------------------------------------
    def test_error(self) -> LossFormula:
        """The test error with the fine-grained split: every part derived, its steps in order."""
        m = self.m
        p, d = m.dims
        self.steps.append(
            Step(
                ERROR_DECOMPOSITION,
                sp.Symbol("E_test"),
                sp.Symbol("E||d||_Sigma^2") + sp.Symbol("variance_noise") + m.noise,
                "beta_hat - beta = -lam G beta + G W_F X^T eps / P, G = (lam + W_F S_hat)^-1; "
                "the cross term has mean 0 over eps",
            )
        )
        self.steps.append(
            Step(
                REPLICA_DECOMPOSITION,
                sp.Symbol("E||d||_Sigma^2"),
                sp.Symbol("B") + sp.Symbol("V_F") + sp.Symbol("V_X") + sp.Symbol("V_XF"),
                "B = E d(X,F)'S d(X',F'), B + V_F = E d(X,F)'S d(X',F), B + V_X = E d(X,F)'S d(X,F'), "
                "B + V_F + V_X + V_XF = E d(X,F)'S d(X,F)",
            )
        )
        b = self.mean_part()
        bf = self.shared_part("F")
        bx = self.shared_part("X")
        tot = self.total_part()
        var_noise = self.noise_variance()
        terms = {
            "bias": b,
            "variance_features": bf - b,
            "variance_data": bx - b,
            "variance_interaction": tot - bf - bx + b,
            "variance_noise": var_noise,
            "noise": sp.sympify(m.noise),
        }
        lam = self.lam
        sig = m.sigma.to_sympy()

        def pair(xs: str, fs: str) -> RandomTerm:
            return RandomTerm(lam**2, ("Gt[X,F]", sig, f"G[X{xs},F{fs}]"), self.b)

        both, shf, shx, none = pair("", ""), pair("'", ""), pair("", "'"), pair("'", "'")
        neg = lambda t: RandomTerm(-t.coeff, t.word, t.vector)  # noqa: E731
        random = {
            "bias": (none,),
            "variance_features": (shf, neg(none)),
            "variance_data": (shx, neg(none)),
            "variance_interaction": (both, neg(shf), neg(shx), none),
            "variance_noise": (RandomTerm(m.noise * d / p, (sig, "G[X,F]", "WF", "S", "WF", "Gt[X,F]")),),
            "noise": (),
        }
        return LossFormula(
            name="E_test",
            terms=terms,
            random=random,
            fixed_points=(FixedPoint(self.kappa, sp.Eq(self.kappa, self.fixed.rhs)),),
            derivation=tuple(self.steps),
            lam=lam,
            kappa=self.kappa,
            model=m,
        )
