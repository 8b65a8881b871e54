r"""Ridge and kernel regression: the train/test relation, GCV, and kernels in their eigenbasis.

Built on :class:`~detequiv.models.ridge.RidgeRegression` (MATH.md 4.1-4.4); nothing
here is typed in.

* :func:`train_test_relation` derives :math:`E_{test}` and :math:`E_{train}` with the engine
  and proves :math:`E_{test}=S^2E_{train}` with :math:`S=\kappa/\lambda=S_W(-\mathrm{df}_1)`
  (MATH.md 4.2) by exact algebra: the engine's own fixed point is solved for
  :math:`\lambda`, every trace atom is reduced to a basis with
  :math:`\Sigma(\kappa+\Sigma)^{-1}=I-\kappa(\kappa+\Sigma)^{-1}`, and the difference is
  cancelled as a rational function. Under covariate shift the difference does not
  vanish; the result then says so (``holds=False``) and carries a numerical
  counterexample.
* :func:`gcv_estimator` derives the equivalent of :math:`\widehat{\mathrm{df}}=\operatorname{Tr}
  \hat\Sigma(\hat\Sigma+\lambda)^{-1}=D-\operatorname{Tr}\lambda G` (a one-point trace) and
  shows that :math:`E_{train}/(1-\widehat{\mathrm{df}}/P)^2` has the equivalent of
  :math:`E_{test}`.
* :class:`KernelRegression` is kernel ridge regression written in the kernel's
  eigenbasis, mapped onto ridge regression with :math:`\Sigma=\operatorname{diag}(\lambda_k)`
  under the Gaussian-equivalence (universality) assumption.

>>> import sympy as sp
>>> import detequiv as de
>>> D, P = sp.symbols("D P", positive=True)
>>> ridge = RidgeRegression(de.Deterministic("Sigma", D), de.Gaussian("X", (P, D)),
...                         de.DeterministicVector("beta", D))
>>> rel = train_test_relation(ridge)
>>> rel.holds, rel.s_matches
(True, True)
>>> gcv_estimator(ridge).equals_test_error
True
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import sympy as sp

from ..derivations.derivation import Derivation, FixedPoint, Step
from ..derivations.derive import derive
from ..derivations.expressions import Deterministic, DeterministicVector, Gaussian, resolvent, trace
from ..derivations.formula import LossFormula
from ..derivations.laws import Wishart
from ..derivations.quantities import df1
from ..derivations.results import monte_carlo_witness
from ..derivations.traces import mtr
from ..errors import DetEquivError, InvalidArgument, VerificationError
from .ridge import RidgeRegression
from .rules import (
    DERIVE_TEST_ERROR,
    DERIVE_TRAINING_ERROR,
    EFFECTIVE_DEGREES_OF_FREEDOM,
    FIXED_POINT_FOR_RIDGE,
    GCV_DEFINITION,
    GCV_IS_TEST_ERROR,
    RATIO_OF_CONCENTRATED,
    S_TRANSFORM_OF_WISHART,
    TRACE_BASIS,
    TRAIN_TEST_RELATION,
)

__all__ = [
    "TrainTestRelation",
    "train_test_relation",
    "GCVEstimator",
    "gcv_estimator",
    "KernelRegression",
    "canonical_traces",
]


# ---------------------------------------------------------------------------
# exact algebra on trace atoms
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Basis:
    """The deterministic objects of one ridge model: ``Sigma``, ``kappa``, ``beta``."""

    sigma: sp.MatrixSymbol
    kappa: sp.Symbol
    beta: sp.MatrixSymbol
    dim: sp.Expr

    def is_resolvent(self, m: sp.Basic) -> bool:
        """Whether ``m`` is ``kappa I + Sigma`` (the argument of an inverse)."""
        if not isinstance(m, sp.MatAdd) or len(m.args) != 2 or self.sigma not in m.args:
            return False
        other = m.args[0] if m.args[1] == self.sigma else m.args[1]
        return bool(other == self.kappa * sp.Identity(self.dim))

    def factors(self, m: sp.Basic) -> tuple[sp.Expr, list[str]] | None:
        """``(scalar, letters)`` with letters ``S`` (Sigma), ``R`` (resolvent), ``b``/``bT``;
        ``None`` if some factor is not one of these."""
        coeff: sp.Expr = sp.S.One
        mats: Sequence[sp.Basic]
        if isinstance(m, sp.MatMul):
            coeff, mats = m.as_coeff_matrices()
        else:
            mats = [m]
        out: list[str] = []
        for f in mats:
            letters = self._letters(f)
            if letters is None:
                return None
            out += letters
        return coeff, out

    def _letters(self, f: sp.Basic) -> list[str] | None:
        if f == self.sigma:
            return ["S"]
        if isinstance(f, sp.Identity):
            return []
        if f == self.beta:
            return ["b"]
        if isinstance(f, sp.Transpose) and f.arg == self.beta:
            return ["bT"]
        if isinstance(f, sp.Inverse) and self.is_resolvent(f.arg):
            return ["R"]
        if isinstance(f, sp.MatPow) and f.args[1].is_Integer:
            k = int(f.args[1])
            if k < 0 and self.is_resolvent(f.args[0]):
                return ["R"] * (-k)
            inner = self._letters(f.args[0])
            if k > 0 and inner is not None:
                return inner * k
        return None


def _reduce(a: int, b: int, kappa: sp.Symbol, base: Any) -> sp.Expr:
    r""":math:`\Sigma^aR^b` reduced with :math:`\Sigma R=I-\kappa R` (exact) to pure powers."""
    if a == 0 or b == 0:
        return base(a, b)
    return _reduce(a - 1, b - 1, kappa, base) - kappa * _reduce(a - 1, b, kappa, base)


def _atom_symbol(vector: bool, a: int, b: int) -> sp.Symbol:
    if a == 0 and b == 0:
        return sp.Symbol("bb") if vector else sp.S.One  # type: ignore[return-value]
    word = f"Sigma^{a}" if a else f"R^{b}"
    return sp.Symbol(f"b.{word}.b" if vector else f"tr[{word}]")


def canonical_traces(
    expr: Any, model: RidgeRegression, kappa: sp.Symbol
) -> tuple[sp.Expr, dict[sp.Symbol, sp.Expr]]:
    r"""Rewrite the trace atoms of ``expr`` in an algebraically independent basis.

    Every :class:`~detequiv.models.ridge.mtr`, ``df1`` and ``Trace`` of a word in
    :math:`\Sigma` and :math:`R=(\kappa+\Sigma)^{-1}` (these commute) becomes a polynomial in
    ``tr[R^j]``, ``tr[Sigma^a]`` (and ``b.R^j.b``, ``b.Sigma^a.b``, ``bb`` for
    :math:`\beta^\top\cdot\beta`) through :math:`\Sigma R=I-\kappa R`, exact algebra.
    Atoms containing other matrices (a test covariance) are left as they are.

    Returns the rewritten expression and the meaning of each new symbol as an ``mtr``.

    >>> import sympy as sp
    >>> import detequiv as de
    >>> D, P = sp.symbols("D P", positive=True)
    >>> model = RidgeRegression(de.Deterministic("Sigma", D), de.Gaussian("X", (P, D)),
    ...                         de.DeterministicVector("beta", D))
    >>> k = sp.Symbol("kappa")
    >>> S = sp.MatrixSymbol("Sigma", D, D)
    >>> R = (k * sp.Identity(D) + S).inverse()
    >>> canonical_traces(mtr(S * S * R * R), model, k)[0]
    kappa**2*tr[R^2] - 2*kappa*tr[R^1] + 1
    """
    p, d = model.dims
    basis = _Basis(model.sigma.to_sympy(), kappa, sp.MatrixSymbol(model.beta.name, d, 1), d)
    meaning: dict[sp.Symbol, sp.Expr] = {}

    def base_for(vector: bool) -> Any:
        def base(a: int, b: int) -> sp.Expr:
            sym = _atom_symbol(vector, a, b)
            if isinstance(sym, sp.Symbol):
                mats = [basis.sigma] * a + [sp.Inverse(basis.kappa * sp.Identity(d) + basis.sigma)] * b
                if vector:
                    mats = [basis.beta.T, *mats, basis.beta]
                meaning[sym] = mtr(sp.MatMul(*mats) if len(mats) > 1 else mats[0])
            return sym

        return base

    def of_matrix(m: sp.Basic) -> sp.Expr | None:
        parsed = basis.factors(m)
        if parsed is None:
            return None
        coeff, letters = parsed
        vector = bool(letters) and letters[0] == "bT"
        if vector:
            if letters[-1] != "b" or "b" in letters[1:-1] or "bT" in letters[1:]:
                return None
            letters = letters[1:-1]
        elif "b" in letters or "bT" in letters:
            return None
        a, b = letters.count("S"), letters.count("R")
        return sp.expand(coeff * _reduce(a, b, kappa, base_for(vector)))

    def atom(e: mtr) -> sp.Expr:
        out = of_matrix(e.args[0])
        return e if out is None else out

    def d1(e: df1) -> sp.Expr:
        y, k = e.args
        out = of_matrix(sp.MatMul(y, sp.Inverse(k * sp.Identity(d) + y))) if k == kappa else None
        return e if out is None else out

    def tr_(e: sp.Trace) -> sp.Expr:
        m = e.arg
        terms = m.args if isinstance(m, sp.MatAdd) else (m,)
        parts = []
        for t in terms:
            out = of_matrix(t)
            if out is None:
                return e
            parts.append(out)
        return m.shape[0] * sp.Add(*parts)

    e = sp.sympify(expr)
    e = e.replace(lambda x: isinstance(x, sp.Trace), tr_)
    e = e.replace(lambda x: isinstance(x, df1), d1)
    e = e.replace(lambda x: isinstance(x, mtr), atom)
    return e, dict(sorted(meaning.items(), key=lambda kv: str(kv[0])))


@functools.lru_cache(maxsize=32)
def _derived(model: RidgeRegression) -> tuple[LossFormula, LossFormula]:
    """The engine's test and training errors of ``model`` (deterministic, so cached)."""
    return model.test_error(), model.training_error()


def _lam_from_fixed_point(fp: FixedPoint, lam: sp.Symbol) -> sp.Expr:
    """Solve the engine's fixed point ``kappa = rhs(kappa, lam)`` for ``lam`` (it is linear)."""
    sols = sp.solve(sp.Eq(fp.symbol, fp.rhs), lam, dict=True)
    if len(sols) != 1:
        raise DetEquivError(
            f"the fixed point {fp} does not determine {lam} uniquely ({len(sols)} solutions); "
            "the train/test relation needs a fixed point linear in the ridge"
        )
    return sols[0][lam]


def _generic_values(model: RidgeRegression, residual: sp.Expr) -> dict[str, Any]:
    """A generic numerical instance of the model (used for counterexamples)."""
    p, d = model.dims
    n = 7
    values: dict[str, Any] = {
        model.sigma.name: np.linspace(0.3, 2.1, n),
        model.beta.name: np.linspace(1.0, 0.2, n),
        str(model.lam): 0.37,
        str(d): n,
        str(p): 11,
    }
    if model.test_covariance is not None:
        values[model.test_covariance.name] = np.linspace(2.5, 0.1, n) ** 2
    free = [s for s in sorted(residual.free_symbols, key=str) if isinstance(s, sp.Symbol)]
    for i, s in enumerate(s for s in free if str(s) not in values and str(s) != "kappa"):
        values[str(s)] = 0.29 + 0.17 * i  # distinct values: distinct symbols are independent
    return values


def _decide_zero(diff: sp.Expr, raw: sp.Expr, template: LossFormula) -> tuple[bool, sp.Expr, float | None]:
    """``(holds, simplified residual, counterexample)``: zero by algebra, or nonzero with a
    numerical witness; raises if neither can be established."""
    residual = sp.cancel(sp.together(diff))
    if residual == 0:
        return True, sp.S.Zero, None
    probe = replace(template, name="residual", terms={"residual": raw})
    value = probe.evaluate(_generic_values(template.model, raw))["residual"]
    scale = abs(complex(template.evaluate(_generic_values(template.model, raw))["total"]))
    if abs(complex(value)) > 1e-8 * max(scale, 1.0):
        return False, residual, float(np.real(value))
    raise VerificationError(
        "the residual did not simplify to 0, but vanishes at a generic numerical instance "
        f"({value}); cannot decide the identity:\n  {residual}"
    )


# ---------------------------------------------------------------------------
# 1. the train/test relation through the S-transform (MATH.md 4.2)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrainTestRelation:
    r"""The result of :func:`train_test_relation`.

    Attributes
    ----------
    test, train : LossFormula
        The engine's derived test and training errors.
    s : sympy.Expr
        :math:`S=\kappa/\lambda` with :math:`\lambda` from the engine's fixed point, in the
        trace basis of :func:`canonical_traces`.
    s_transform : sympy.Expr
        :math:`S_W(-\mathrm{df}_1(\kappa))` from :meth:`Wishart.s_transform`.
    s_matches : bool
        Whether ``s`` and ``s_transform`` agree (exact cancellation).
    ratio : sympy.Expr
        :math:`E_{test}/E_{train}` in the trace basis: simplified (it is :math:`S^2`) when
        ``holds``, the plain quotient otherwise.
    holds : bool
        Whether :math:`E_{test}-S^2E_{train}` cancels to 0.
    residual : sympy.Expr
        The simplified :math:`E_{test}-S^2E_{train}` (0 when ``holds``).
    counterexample : float or None
        When not ``holds``: the residual at a generic numerical instance (nonzero).
    atoms : dict
        The basis symbols and the :class:`mtr` each stands for.
    derivation : tuple of Step
    """

    test: LossFormula = field(repr=False)
    train: LossFormula = field(repr=False)
    s: sp.Expr
    s_transform: sp.Expr
    s_matches: bool
    ratio: sp.Expr
    holds: bool
    residual: sp.Expr
    counterexample: float | None
    atoms: Mapping[sp.Symbol, sp.Expr] = field(repr=False)
    derivation: tuple[Step, ...] = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "derivation", Derivation(self.derivation))

    def __str__(self) -> str:
        head = (
            "E_test = S^2 E_train holds, S = kappa/lam = S_W(-df1)"
            if self.holds
            else f"E_test != S^2 E_train (residual {self.counterexample:.6g} at a generic instance)"
        )
        lines = [head, f"  E_test / E_train = {self.ratio}", f"  S_W(-df1) = {self.s_transform}"]
        lines += [f"  {k} = {v}" for k, v in self.atoms.items()]
        lines.append("derivation:")
        lines += [f"  {i + 1}. {s}" for i, s in enumerate(self.derivation)]
        return "\n".join(lines)

    def require(self) -> TrainTestRelation:
        """Return ``self`` if the relation holds, else raise :class:`VerificationError`."""
        if not self.holds:
            raise VerificationError(
                "E_test = S^2 E_train does not hold for this model (covariate shift or test noise "
                f"different from the training noise): residual {self.residual}"
            )
        return self


def train_test_relation(model: RidgeRegression) -> TrainTestRelation:
    r"""Derive :math:`E_{test}` and :math:`E_{train}` and test :math:`E_{test}=S^2E_{train}`.

    Steps: (1) both errors from the engine (:meth:`RidgeRegression.test_error`,
    :meth:`RidgeRegression.training_error`); (2) the engine's fixed point solved for
    :math:`\lambda=\kappa(1-\tfrac DP\mathrm{df}_1)`; (3) trace atoms in the basis of
    :func:`canonical_traces`; (4) :math:`S=\kappa/\lambda` against
    :math:`S_W(-\mathrm{df}_1)` of :class:`~detequiv.derivations.laws.Wishart` with ratio
    :math:`D/P`; (5) :math:`E_{test}-S^2E_{train}` cancelled as a rational function.

    The relation is an identity of the equivalents when the test distribution is the
    training one. With ``test_covariance`` (or a different ``test_noise``) it fails; the
    result then has ``holds=False`` and a numerical counterexample (use
    :meth:`TrainTestRelation.require` to raise instead).

    >>> import sympy as sp
    >>> import detequiv as de
    >>> D, P = sp.symbols("D P", positive=True)
    >>> S, X, b = de.Deterministic("Sigma", D), de.Gaussian("X", (P, D)), de.DeterministicVector("beta", D)
    >>> rel = train_test_relation(RidgeRegression(S, X, b))
    >>> rel.ratio
    P**2/(D*kappa*tr[R^1] - D + P)**2
    >>> shifted = train_test_relation(RidgeRegression(S, X, b, test_covariance=de.Deterministic("St", D)))
    >>> shifted.holds, shifted.counterexample != 0
    (False, True)
    """
    if not isinstance(model, RidgeRegression):
        raise InvalidArgument(f"train_test_relation needs a RidgeRegression, got {type(model).__name__}")
    test, train = _derived(model)
    lam, kappa = test.lam, test.kappa
    if train.kappa != kappa:
        raise DetEquivError(f"test and training errors use different ridges {kappa}, {train.kappa}")
    fp = test.fixed_points[0]
    lam_k = _lam_from_fixed_point(fp, lam)
    steps = _engine_steps(test, train, fp, lam_k)
    sub = {lam: lam_k}
    e_test, atoms = canonical_traces(test.total.xreplace(sub), model, kappa)
    e_train, atoms2 = canonical_traces(train.total.xreplace(sub), model, kappa)
    atoms.update(atoms2)
    steps.append(
        Step(
            TRACE_BASIS,
            sp.Symbol("Sigma") * sp.Symbol("R"),
            1 - kappa * sp.Symbol("R"),
            "Sigma (kappa + Sigma)^-1 = I - kappa (kappa + Sigma)^-1 reduces every trace atom "
            "to tr R^j, b.R^j.b (algebraically independent)",
        )
    )
    s, sw, s_matches, s_step = _s_transform_check(model, lam, kappa, lam_k, atoms)
    steps.append(s_step)
    raw = test.total - (kappa / lam) ** 2 * train.total
    holds, residual, counter, step = _identity_step(
        TRAIN_TEST_RELATION,
        sp.Symbol("E_test") - sp.Symbol("S") ** 2 * sp.Symbol("E_train"),
        e_test - s**2 * e_train,
        raw,
        test,
        "rational cancellation in the trace basis",
    )
    # simplified when the relation holds (then it is S^2); left as the quotient otherwise
    ratio = sp.factor(sp.cancel(sp.together(e_test / e_train))) if holds else e_test / e_train
    steps.append(step)
    return TrainTestRelation(
        test=test,
        train=train,
        s=s,
        s_transform=sw,
        s_matches=s_matches,
        ratio=ratio,
        holds=holds,
        residual=residual,
        counterexample=counter,
        atoms=dict(sorted(atoms.items(), key=lambda kv: str(kv[0]))),
        derivation=tuple(steps),
    )


def _engine_steps(test: LossFormula, train: LossFormula, fp: FixedPoint, lam_k: sp.Expr) -> list[Step]:
    """The first steps of :func:`train_test_relation`: both errors from the engine, and its fixed
    point solved for the ridge."""
    return [
        Step(
            DERIVE_TEST_ERROR,
            sp.Symbol("E_test"),
            test.total,
            "engine: RidgeRegression.test_error",
        ),
        Step(
            DERIVE_TRAINING_ERROR,
            sp.Symbol("E_train"),
            train.total,
            "engine: RidgeRegression.training_error",
        ),
        Step(
            FIXED_POINT_FOR_RIDGE,
            test.lam,
            lam_k,
            "the engine's fixed point solved for lam (it is linear in lam)",
            fp.equation,
        ),
    ]


def _s_transform_check(
    model: RidgeRegression, lam: sp.Symbol, kappa: sp.Symbol, lam_k: sp.Expr, atoms: dict[sp.Symbol, sp.Expr]
) -> tuple[sp.Expr, sp.Expr, bool, Step]:
    r""":math:`S=\kappa/\lambda` and :math:`S_W(-\mathrm{df}_1)` of the Wishart law of ratio
    ``D/P`` in the trace basis (their atoms added to ``atoms``), whether they cancel, and the step."""
    p, d = model.dims
    s, _ = canonical_traces(kappa / lam_k, model, kappa)
    law = Wishart(sp.simplify(d / p))
    sw_raw = law.s_transform(-df1(model.sigma.to_sympy(), kappa))
    sw, atoms3 = canonical_traces(sw_raw, model, kappa)
    atoms.update(atoms3)
    s_matches = sp.cancel(sp.together(s - sw)) == 0
    step = Step(
        S_TRANSFORM_OF_WISHART,
        kappa / lam,
        sw_raw,
        f"S_W(t) of Wishart(D/P) at t = -df1; kappa/lam - S_W(-df1) cancels: {s_matches}",
    )
    return s, sw, bool(s_matches), step


def _identity_step(
    rule: Any, before: sp.Expr, diff: sp.Expr, raw: sp.Expr, template: LossFormula, note: str
) -> tuple[bool, sp.Expr, float | None, Step]:
    """Decide ``diff = 0`` in the trace basis (:func:`_decide_zero`, ``raw`` its form for a
    numerical counterexample) and record it as a step of ``rule``: ``(holds, residual,
    counterexample, step)``."""
    holds, residual, counter = _decide_zero(diff, raw, template)
    step = Step(
        rule,
        before,
        residual,
        note + ("" if holds else f"; nonzero: {counter:.6g} at a generic numerical instance"),
    )
    return holds, residual, counter, step


# ---------------------------------------------------------------------------
# 2. generalized cross-validation
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GCVEstimator:
    r"""The equivalent of the GCV estimator :math:`E_{train}/(1-\widehat{\mathrm{df}}/P)^2`.

    Attributes
    ----------
    formula : LossFormula
        Terms ``signal`` and ``noise_part`` of :math:`E_{train}`, each divided by
        :math:`(1-\mathrm{df}/P)^2` (the equivalents; evaluate with :meth:`evaluate`). It has
        no planar series of its own (a ratio of random functionals): its checks are the
        algebraic identity below and :meth:`check_monte_carlo`.
    df_hat : sympy.Expr
        The equivalent of :math:`\widehat{\mathrm{df}}=D-\operatorname{Tr}\lambda G`.
    equals_test_error : bool
        Whether the GCV equivalent minus the derived :math:`E_{test}` cancels to 0.
    residual : sympy.Expr
    counterexample : float or None
    model : RidgeRegression
    derivation : tuple of Step
    """

    formula: LossFormula = field(repr=False)
    df_hat: sp.Expr
    equals_test_error: bool
    residual: sp.Expr
    counterexample: float | None
    model: RidgeRegression = field(repr=False)
    derivation: tuple[Step, ...] = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "derivation", Derivation(self.derivation))

    def evaluate(self, values: Mapping[Any, Any]) -> dict[str, complex | float]:
        """Numbers for the GCV equivalent (``values`` as in :meth:`LossFormula.evaluate`)."""
        return self.formula.evaluate(values)

    def check_monte_carlo(self, *, rng: Any, **kwargs: Any) -> Any:
        """Mean of the GCV computed on simulated data sets against the derived test error
        (:func:`detequiv.models.kernel_mc.check_gcv`)."""
        return monte_carlo_witness(self, None, rng=rng, **kwargs)

    def __str__(self) -> str:
        lines = [f"GCV = E_train / (1 - df_hat / P)^2,  df_hat ~ {self.df_hat}"]
        lines.append(
            "GCV ~ E_test (exact cancellation)"
            if self.equals_test_error
            else f"GCV != E_test: {self.residual}"
        )
        lines.append("derivation:")
        lines += [f"  {i + 1}. {s}" for i, s in enumerate(self.derivation)]
        return "\n".join(lines)


def gcv_estimator(model: RidgeRegression) -> GCVEstimator:
    r"""Derive the equivalent of the GCV estimator and compare it with the derived test error.

    :math:`\widehat{\mathrm{df}}=\operatorname{Tr}\hat\Sigma(\hat\Sigma+\lambda)^{-1}
    =D-\operatorname{Tr}\lambda G` (exact), whose equivalent is the engine's one-point
    trace :math:`D\operatorname{tr}\kappa(\kappa+\Sigma)^{-1}` subtracted from :math:`D`.
    Both :math:`\widehat{\mathrm{df}}/P` and :math:`E_{train}` concentrate, so the
    equivalent of the ratio is the ratio of the equivalents (MATH.md 4.2).

    >>> import sympy as sp
    >>> import detequiv as de
    >>> D, P = sp.symbols("D P", positive=True)
    >>> g = gcv_estimator(RidgeRegression(de.Deterministic("Sigma", D), de.Gaussian("X", (P, D)),
    ...                                   de.DeterministicVector("beta", D)))
    >>> g.df_hat
    D*(-kappa*mtr((kappa*I + Sigma)**(-1)) + 1)
    >>> g.equals_test_error
    True
    """
    if not isinstance(model, RidgeRegression):
        raise InvalidArgument(f"gcv_estimator needs a RidgeRegression, got {type(model).__name__}")
    test, train = _derived(model)
    lam, kappa = train.lam, train.kappa
    df_hat, steps = _df_hat_equivalent(model, lam, kappa)
    scale = (1 - df_hat / model.dims[0]) ** 2
    terms = {k: v / scale for k, v in train.terms.items()}
    formula = LossFormula(
        name="GCV",
        terms=terms,
        random={},
        fixed_points=train.fixed_points,
        derivation=tuple(steps),
        lam=lam,
        kappa=kappa,
        model=model,
    )
    lam_k = _lam_from_fixed_point(test.fixed_points[0], lam)
    sub = {lam: lam_k}
    gcv_c, _ = canonical_traces(formula.total.xreplace(sub), model, kappa)
    test_c, _ = canonical_traces(test.total.xreplace(sub), model, kappa)
    holds, residual, counter, step = _identity_step(
        GCV_IS_TEST_ERROR,
        sp.Symbol("GCV") - sp.Symbol("E_test"),
        gcv_c - test_c,
        formula.total - test.total,
        test,
        "engine fixed point substituted, trace basis, rational cancellation",
    )
    steps.append(step)
    formula = replace(formula, derivation=tuple(steps))
    return GCVEstimator(
        formula=formula,
        df_hat=df_hat,
        equals_test_error=holds,
        residual=residual,
        counterexample=counter,
        model=model,
        derivation=tuple(steps),
    )


def _df_hat_equivalent(
    model: RidgeRegression, lam: sp.Symbol, kappa: sp.Symbol
) -> tuple[sp.Expr, list[Step]]:
    r"""The equivalent of :math:`\widehat{\mathrm{df}}=D-\operatorname{Tr}\lambda G` in the ridge
    ``kappa`` (the engine's one-point trace), and the steps from the definition of GCV to the
    ratio of the equivalents."""
    p, d = model.dims
    one = derive(trace(lam * resolvent(model.sample_covariance, lam)))
    k1 = one.fixed_points[0].symbol
    tr_lam_g = one.deterministic.xreplace({k1: kappa})
    tr_atoms, _ = _trace_atoms(tr_lam_g)
    df_hat = d * (1 - tr_atoms)
    steps = [
        Step(
            GCV_DEFINITION,
            sp.Symbol("GCV"),
            sp.Symbol("E_train") / (1 - sp.Symbol("df_hat") / p) ** 2,
            "df_hat = Tr Sigma_hat (Sigma_hat + lam)^-1 = D - Tr lam G (exact: Sigma_hat G = I - lam G)",
        ),
        *one.derivation,
        Step(
            EFFECTIVE_DEGREES_OF_FREEDOM,
            sp.Symbol("df_hat"),
            df_hat,
            "D - D tr(lam G) with the one-point equivalent tr(lam G) ~ tr(kappa R)",
        ),
        Step(
            RATIO_OF_CONCENTRATED,
            sp.Symbol("GCV"),
            sp.Symbol("E_train") / (1 - df_hat / p) ** 2,
            "E_train and df_hat / P concentrate: the equivalent of the ratio is the ratio of equivalents",
        ),
    ]
    return df_hat, steps


def _trace_atoms(expr: sp.Expr) -> tuple[sp.Expr, None]:
    """``Trace(c * M) / n`` as ``c * mtr(M)`` (normalized traces as :class:`mtr` atoms)."""

    def conv(e: sp.Trace) -> sp.Expr:
        m = e.arg
        terms = m.args if isinstance(m, sp.MatAdd) else (m,)
        out = []
        for t in terms:
            coeff, mats = t.as_coeff_matrices() if isinstance(t, sp.MatMul) else (sp.S.One, [t])
            out.append(coeff * mtr(sp.MatMul(*mats) if len(mats) > 1 else mats[0]))
        return m.shape[0] * sp.Add(*out)

    return sp.sympify(expr).replace(lambda x: isinstance(x, sp.Trace), conv), None


# ---------------------------------------------------------------------------
# 3. kernel ridge regression in the kernel's eigenbasis
# ---------------------------------------------------------------------------

_D, _P = sp.symbols("D P", positive=True)


@functools.lru_cache(maxsize=8)
def _kernel_ridge(spectrum: str, weights: str, noise: str) -> RidgeRegression:
    return RidgeRegression(
        Deterministic(spectrum, _D),
        Gaussian("Phi", (_P, _D)),
        DeterministicVector(weights, _D),
        noise=sp.Symbol(noise, nonnegative=True),
    )


def _kernel_losses(spectrum: str, weights: str, noise: str) -> tuple[LossFormula, LossFormula]:
    return _derived(_kernel_ridge(spectrum, weights, noise))


def _vector(value: Any, what: str) -> tuple[float, ...] | str:
    if isinstance(value, str):
        if not value.isidentifier():
            raise InvalidArgument(f"{what} name {value!r} must be a Python identifier, e.g. 'Lambda'")
        return value
    arr = np.asarray(value, dtype=float)
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise InvalidArgument(
            f"{what} must be a non-empty 1-D array of finite numbers (or a name), got shape {arr.shape}"
        )
    return tuple(float(v) for v in arr)


@dataclass(frozen=True, slots=True)
class KernelRegression:
    r"""Kernel ridge regression in the kernel's eigenbasis (Gaussian-equivalence theory).

    Kernel :math:`K(x,x')=\sum_k\lambda_k\phi_k(x)\phi_k(x')` with :math:`\phi_k` orthonormal
    in :math:`L^2` of the data distribution (Mercer), target
    :math:`f^*=\sum_kc_k\phi_k`, labels :math:`y_\mu=f^*(x_\mu)+\varepsilon_\mu`,
    :math:`\varepsilon\sim\mathcal N(0,\sigma^2)`, ``samples`` :math:`P` points, and the
    estimator

    .. math:: \hat f(x)=K(x,X)\,(K(X,X)+P\lambda)^{-1}y,

    the minimiser of :math:`\frac1P\sum_\mu(f(x_\mu)-y_\mu)^2+\lambda\|f\|_{\mathcal H}^2`
    (``convention="mean"``). With ``convention="sum"`` the ridge ``r`` given to
    :meth:`evaluate` is that of :math:`(K+r)^{-1}`, i.e. :math:`\lambda=r/P`.

    **Mapping.** Features :math:`\psi_k(x)=\sqrt{\lambda_k}\phi_k(x)` make this linear
    ridge regression (:class:`RidgeRegression`) with :math:`\Sigma=\operatorname{diag}(\lambda_k)`
    and weights :math:`\theta_k=c_k/\sqrt{\lambda_k}`, *if* the feature vectors are
    Gaussian. The derived test error is then the eigenlearning form
    :math:`E=\frac{\kappa^2\sum_kc_k^2/(\kappa+\lambda_k)^2+\sigma^2}{1-\gamma}`,
    :math:`\gamma=\frac1P\sum_k\lambda_k^2/(\kappa+\lambda_k)^2`,
    :math:`\kappa(1-\frac1P\sum_k\frac{\lambda_k}{\lambda_k+\kappa})=\lambda`.

    **Caveat (universality).** Real kernel features are not Gaussian. For the Fourier kernel
    on the circle (:math:`x` uniform, eigenvalues :math:`m^{-1.5}` twice, target weights
    :math:`\theta=m^{-0.5}/3`, :math:`\sigma^2=0.05`, :math:`\lambda=10^{-3}`,
    :math:`P=0.75D`) the simulated error is *below* this formula by 21 %, 12 %, 5.9 %,
    1.7 % at :math:`D=101,201,401,801` (``benchmarks/kernel_universality_circle.py``; the
    same kernel with Gaussian features is within its standard error, 0.4-3 %, in
    ``benchmarks/bench_kernel.py``). The gap is 2-4 times the :math:`5/N` allowance of
    Gaussian data up to :math:`D=401`; it falls inside the Gaussian tolerance
    (4 s.e. + :math:`5|E|/P`) from :math:`D=801` on (measured -1.4 % at :math:`D=801`,
    -0.4 % at :math:`D=1601`, tolerance 2.5 % and 1.3 %; the slow test of
    ``tests/derivations/test_kernel.py``). It vanishes as :math:`D,P\to\infty` here; it
    need not for every kernel (MATH.md 8: non-Gaussian features are not covered).

    Parameters
    ----------
    eigenvalues : array-like or str
        The kernel eigenvalues :math:`\lambda_k>0` (finite rank ``D``), or a name for a
        symbolic spectrum.
    target : array-like or str
        The coefficients :math:`c_k` of :math:`f^*` in the eigenbasis, or a name (of the
        weights :math:`\theta`).
    samples : int
        :math:`P`.
    noise : float
        :math:`\sigma^2`.

    Examples
    --------
    >>> import numpy as np
    >>> k = np.arange(1, 201)
    >>> krr = KernelRegression(k**-1.5, k**-1.0, samples=100, noise=0.1)
    >>> out = krr.evaluate(1e-3)
    >>> sorted(out)
    ['bias', 'noise', 'total', 'variance']
    >>> round(out["noise"], 3)
    0.1
    """

    eigenvalues: Any
    target: Any
    samples: Any
    noise: Any = 0.0
    convention: Literal["mean", "sum"] = "mean"

    def __post_init__(self) -> None:
        eig = _vector(self.eigenvalues, "eigenvalues")
        tgt = _vector(self.target, "target")
        object.__setattr__(self, "eigenvalues", eig)
        object.__setattr__(self, "target", tgt)
        if isinstance(eig, tuple):
            if min(eig) <= 0:
                raise InvalidArgument(
                    f"kernel eigenvalues must be > 0, got min {min(eig)}; drop the zero modes "
                    "(a target component outside the kernel's span cannot be learned; add c_k^2 to the noise)"
                )
            if isinstance(tgt, tuple) and len(tgt) != len(eig):
                raise InvalidArgument(
                    f"target has {len(tgt)} coefficients but the kernel has {len(eig)} eigenvalues"
                )
        if isinstance(self.samples, (int, np.integer)) and not isinstance(self.samples, bool):
            if self.samples < 1:
                raise InvalidArgument(f"samples = {self.samples} must be a positive integer")
        elif not isinstance(self.samples, sp.Symbol):
            raise InvalidArgument(f"samples = {self.samples!r} must be a positive int (or a sympy Symbol)")
        if not isinstance(self.noise, sp.Basic):
            noise = float(self.noise)
            if not np.isfinite(noise) or noise < 0:
                raise InvalidArgument(f"noise = {self.noise} must be a finite variance >= 0")
            object.__setattr__(self, "noise", noise)
        if self.convention not in ("mean", "sum"):
            raise InvalidArgument(
                f"convention = {self.convention!r}: use 'mean' for (K + P lam)^-1 or 'sum' for (K + lam)^-1"
            )

    # -- names ----------------------------------------------------------------

    @property
    def spectrum_name(self) -> str:
        return self.eigenvalues if isinstance(self.eigenvalues, str) else "Lambda"

    @property
    def weights_name(self) -> str:
        return self.target if isinstance(self.target, str) else "theta"

    @property
    def numeric(self) -> bool:
        """Whether eigenvalues, target, samples and noise are all numbers."""
        return (
            isinstance(self.eigenvalues, tuple)
            and isinstance(self.target, tuple)
            and not isinstance(self.samples, sp.Basic)
            and not isinstance(self.noise, sp.Basic)
        )

    @property
    def dimension(self) -> int:
        """The rank ``D`` of the kernel."""
        if not isinstance(self.eigenvalues, tuple):
            raise InvalidArgument("a symbolic spectrum has no numerical rank; pass eigenvalues as an array")
        return len(self.eigenvalues)

    # -- the mapping ----------------------------------------------------------

    def ridge_regression(self) -> RidgeRegression:
        r"""The equivalent linear model: :math:`\Sigma=\operatorname{diag}(\lambda_k)`, weights
        :math:`\theta_k=c_k/\sqrt{\lambda_k}`, Gaussian features ``Phi`` (``P x D``)."""
        return _kernel_ridge(self.spectrum_name, self.weights_name, "sigma2")

    def test_error(self) -> LossFormula:
        """The engine-derived test error :math:`\\mathbb E(\\hat f-f^*)^2+\\sigma^2` (bias,
        variance, noise) of the equivalent ridge model."""
        return _kernel_losses(self.spectrum_name, self.weights_name, "sigma2")[0]

    def training_error(self) -> LossFormula:
        """The engine-derived training error :math:`\\frac1P\\|y-\\hat f(X)\\|^2`."""
        return _kernel_losses(self.spectrum_name, self.weights_name, "sigma2")[1]

    def ridge(self, lam: float) -> float:
        """The ridge :math:`\\lambda` of :math:`(K+P\\lambda)^{-1}` for a value in this convention."""
        lam = float(lam)
        if not lam > 0:
            raise InvalidArgument(f"the ridge must be > 0, got {lam}")
        return lam / self.samples if self.convention == "sum" else lam

    def values(self, lam: float) -> dict[str, Any]:
        """The values for :meth:`LossFormula.evaluate` of :meth:`test_error` at ridge ``lam``."""
        if not self.numeric:
            raise InvalidArgument(
                "this KernelRegression is symbolic; pass numerical eigenvalues, target, samples and "
                "noise to evaluate it"
            )
        eig = np.asarray(self.eigenvalues)
        theta = np.asarray(self.target) / np.sqrt(eig)
        return {
            self.spectrum_name: eig,
            self.weights_name: theta,
            "lam": self.ridge(lam),
            "D": eig.size,
            "P": int(self.samples),
            "sigma2": float(self.noise),
        }

    def evaluate(self, lam: float) -> dict[str, complex | float]:
        """Bias, variance, noise and total of the test error at ridge ``lam`` (numbers)."""
        return self.test_error().evaluate(self.values(lam))

    def effective_ridge(self, lam: float) -> float:
        r""":math:`\kappa` solving the engine's fixed point at ridge ``lam`` (the
        "effective regularization" of the kernel literature)."""
        model = self.ridge_regression()
        one = derive(model.lam * resolvent(model.sample_covariance, model.lam))
        v = self.values(lam)
        sol = one.evaluate({k: v[k] for k in (self.spectrum_name, "lam", "D", "P")})
        return float(np.real(complex(sol[one.fixed_points[0].symbol])))

    def check_monte_carlo(self, lam: float, *, rng: Any, **kwargs: Any) -> Any:
        """Simulated kernel ridge regression (:func:`detequiv.models.kernel_mc.check_kernel_monte_carlo`)."""
        return monte_carlo_witness(self, None, rng=rng, lam=lam, **kwargs)
