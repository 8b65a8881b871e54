"""Layered two-point engine (MATH.md 3.5): the random-feature two-point function derived by
averaging one free factor at a time, checked against exact double series (planar diagram sums),
the two displays of MATH.md 3.5 re-implemented here in numpy, exact identities computed here
from an independent one-point solver, and negative controls."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import brentq

from detequiv.derivations.expressions import Deterministic, FreeMatrix, Gaussian, resolvent
from detequiv.derivations.laws import CumulantLaw
from detequiv.derivations.layered import LayeredTwoPoint, derive_layered_two_point
from detequiv.derivations.sandwich import derive_two_point
from detequiv.errors import InvalidArgument, InvalidWord

lam, lam2 = sp.symbols("lam lam2", positive=True)
D, N, P, G = sp.symbols("D N P G", positive=True)
S = Deterministic("Sigma", D)
M = Deterministic("M", D)
X = Gaussian("X", (P, D))
F = Gaussian("F", (N, D))
Z = Gaussian("Z", (G, D))
WX = X.T @ X / P
WF = F.T @ F / N
WG = Z.T @ Z / G
SH = S.sqrt() @ WX @ S.sqrt()
AP = S.sqrt() @ WF @ S.sqrt()


def features_first(mid=M):
    """T = lam lam2 (lam + Sh W_F)^-1 M (lam2 + W_F Sh)^-1: W_F is averaged first."""
    return derive_layered_two_point(lam * lam2 * resolvent(SH @ WF, lam) @ mid @ resolvent(WF @ SH, lam2))


def data_first(mid=M):
    """lam lam2 (lam + W_X A')^-1 M (lam2 + A' W_X)^-1, A' = S^1/2 W_F S^1/2: W_X averaged first.

    Sigma^1/2 [this with M -> Sigma^-1/2 M Sigma^-1/2] Sigma^1/2 is the same T (similarity)."""
    return derive_layered_two_point(lam * lam2 * resolvent(WX @ AP, lam) @ mid @ resolvent(AP @ WX, lam2))


@pytest.fixture(scope="module")
def tf():
    return features_first()


@pytest.fixture(scope="module")
def td():
    return data_first()


# -- independent numerics: MATH.md 2.4 and 3.5 written out in numpy ----------------------------


def kappa_rf(lam_v, e, qp, qn):
    """kappa_2 solving lam = kappa (1 - qP df1)(1 - qN df1), physical branch (bisection)."""

    def df(k):
        return np.mean(e / (e + k))

    def h(k):
        return k * (1 - qp * df(k)) * (1 - qn * df(k)) - lam_v

    cap = min(1 / qp, 1 / qn)
    lo = 1e-14 if cap >= 1 else brentq(lambda k: df(k) - cap, 1e-14, 1e6)
    return brentq(h, lo * (1 + 1e-12) + 1e-14, lam_v + 10 * e.max() + 10, xtol=1e-15, rtol=1e-15)


def sqrtm(a):
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(w)) @ v.T


def math_display_1(sig, m, k, k2, qp, qn):
    """MATH.md 3.5, features first: Theta(M) + c_F Tr Theta / (1 - c_F Tr Psi) Psi."""
    n = sig.shape[0]
    eye = np.eye(n)
    r, r2 = np.linalg.inv(sig + k * eye), np.linalg.inv(sig + k2 * eye)
    tr = lambda a: np.trace(a) / n  # noqa: E731
    gx = qp * tr(sig @ sig @ r @ r2)

    def theta(mm):
        return k * k2 * r @ mm @ r2 + k * k2 * qp * tr(mm @ sig @ r @ r2) / (1 - gx) * sig @ r @ r2

    psi = sig @ sig @ r @ r2 + k * k2 * qp * tr(sig @ r @ r2) / (1 - gx) * sig @ r @ r2
    th = theta(m)
    return th + qn * tr(th) / (1 - qn * tr(psi)) * psi


def math_display_2(sig, m, k, k2, qp, qn):
    """MATH.md 3.5, data first: S^1/2 [Theta_F(M~) + c_X Tr(M~ Xi)/(1 - c_X Tr Xi) Theta_F(I)] S^1/2."""
    n = sig.shape[0]
    eye = np.eye(n)
    r, r2 = np.linalg.inv(sig + k * eye), np.linalg.inv(sig + k2 * eye)
    tr = lambda a: np.trace(a) / n  # noqa: E731
    gf = qn * tr(sig @ sig @ r @ r2)

    def theta_f(mm):
        return k * k2 * r @ mm @ r2 + k * k2 * qn * tr(mm @ sig @ r @ r2) / (1 - gf) * sig @ r @ r2

    xi = sig @ sig @ r @ r2 + k * k2 * qn * tr(sig @ r @ r2) / (1 - gf) * sig @ r @ r2
    sh = sqrtm(sig)
    shi = np.linalg.inv(sh)
    mt = shi @ m @ shi
    return sh @ (theta_f(mt) + qp * tr(mt @ xi) / (1 - qp * tr(xi)) * theta_f(eye)) @ sh


def random_case(seed, n=6):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    sig = (q * rng.uniform(0.4, 2.0, n)) @ q.T
    m = np.eye(n) + rng.standard_normal((n, n)) / np.sqrt(n)
    return sig, m


DIMS = {"D": 6, "P": 10, "N": 4}  # qP = 0.6, qN = 1.5
QP, QN = 0.6, 1.5


# -- structure -------------------------------------------------------------------------------------


def test_rf_structure_and_named_steps(tf):
    assert isinstance(tf, LayeredTwoPoint)
    assert [str(fp.symbol) for fp in tf.fixed_points] == ["kappa_2", "kappa_1", "kappa_2'", "kappa_1'"]
    rules = [s.rule.name for s in tf.derivation]
    for rule in (
        "free_factor_renormalization",
        "conjugation_exponent",
        "operator_valued_subordination",
        "linear_divided_difference",
        "one_point_chain",
        "two_point_single_layer",
        "resolvent_absorption",
        "trace_of_equivalence",
    ):
        assert rule in rules
    conj = next(s for s in tf.derivation if s.rule.name == "conjugation_exponent")
    assert conj.after == 0  # A W_F on the left, W_F A on the right: form I
    text = str(tf)
    assert "layer 1" in text and "kappa_1'" in text
    assert tf._repr_latex_().startswith("$\\begin{aligned}")
    assert isinstance(tf.deterministic, sp.MatrixExpr)


def test_normal_word_cancels_square_roots():
    from detequiv.derivations.letters import normal_word

    s, si, m = sp.symbols("Sigma_sqrt Sigma_isqrt M", commutative=False)
    r = sp.Symbol("R_kappa(Sigma)", commutative=False)
    assert normal_word((s, r, si, m, si, s, s)) == (r, m, s)
    assert normal_word((si, m, s, r), cyclic=True) == (m, r)  # the trace wraps around
    assert normal_word((s, si)) == ()


def test_derive_two_point_dispatches(tf):
    tp = derive_two_point(lam * lam2 * resolvent(SH @ WF, lam) @ M @ resolvent(WF @ SH, lam2))
    assert isinstance(tp, LayeredTwoPoint)
    assert dict(tp.polynomial) == dict(tf.polynomial)
    single = derive_two_point(lam * lam2 * resolvent(SH, lam) @ M @ resolvent(SH, lam2))
    assert type(single).__name__ == "TwoPoint"


# -- exact series -------------------------------------------------------------------------------------


def test_series_features_first_order_4(tf):
    check = tf.check_series(4)
    assert check.passed, str(check)
    assert len(check.coefficients) == 15


def test_series_data_first_order_4(td):
    assert td.check_series(4).passed


def test_lowest_order_by_hand(tf):
    """[x y] of tr(N .) is lim tr(N Sh W_F M W_F Sh) = tr(N S M S) + qP tr(M S) tr(N S) + qN tr(S N S M)...

    computed here by the free product rule by hand: W_F between Sh and M on both sides:
    tr(N Sh W_F M W_F Sh) -> tr(N Sh M Sh) + qN tr(M) tr(Sh N Sh), then the data average."""
    coeffs = {k: (e, d) for k, e, d in tf.check_series(2).coefficients}
    n, s, m = sp.symbols("N_test Sigma_sqrt M", commutative=False)
    from detequiv.derivations.quantities import tr

    qp, qn = D / P, D / N
    expected = (
        tr(n * s**2 * m * s**2)
        + qp * tr(m * s**2) * tr(n * s**2)
        + qn * tr(m) * (tr(n * s**4) + qp * tr(n * s**2) * tr(s**2))
    )
    assert sp.expand(coeffs[(1, 1)][1] - expected) == 0
    assert sp.expand(coeffs[(1, 1)][0] - expected) == 0


def test_data_first_on_the_same_matrix_by_conjugation(tf):
    """outer='W_X' on T itself: (lam + S^1/2 W_X S^1/2 W_F)^-1 = S^1/2 (lam + W_X A')^-1 S^-1/2 (exact
    similarity), so the middle is S^-1/2 M S^-1/2 and the square roots cancel in the result: the
    exact series, and the numbers of MATH.md display 2 and of the features-first derivation."""
    t = derive_layered_two_point(
        lam * lam2 * resolvent(SH @ WF, lam) @ M @ resolvent(WF @ SH, lam2), outer="W_X"
    )
    assert "similarity_conjugation" in [s.rule.name for s in t.derivation]
    assert t.check_series(3).passed
    sig, m = random_case(7)
    e = np.linalg.eigvalsh(sig)
    lv, lv2 = 0.4, 0.15
    k, k2 = kappa_rf(lv, e, QP, QN), kappa_rf(lv2, e, QP, QN)
    got = t.evaluate({"lam": lv, "lam2": lv2, "Sigma": sig, "M": m, **DIMS})
    assert np.allclose(got.matrix, math_display_2(sig, m, k, k2, QP, QN), rtol=1e-8, atol=1e-10)
    other = tf.evaluate({"lam": lv, "lam2": lv2, "Sigma": sig, "M": m, **DIMS})
    assert np.allclose(got.matrix, other.matrix, rtol=1e-8, atol=1e-10)
    assert got.kappas["kappa_1"] == pytest.approx(lv / (1 - QP * np.mean(e / (e + k))), rel=1e-9)


def test_unnormalized_gram_and_scaled_resolvents(tf):
    """X.T @ X and F.T @ F without 1/P, 1/N (ridge rescaling by N P), and 3 lam lam2 (lam + 2 ...)^-1."""
    raw = derive_layered_two_point(
        lam
        * lam2
        * resolvent(S.sqrt() @ X.T @ X @ S.sqrt() @ F.T @ F, lam)
        @ M
        @ resolvent(F.T @ F @ S.sqrt() @ X.T @ X @ S.sqrt(), lam2)
    )
    assert raw.coeff == N * P and raw.check_series(2).passed
    sig, m = random_case(0)
    v = raw.evaluate({"lam": 0.3 * 40, "lam2": 0.5 * 40, "Sigma": sig, "M": m, **DIMS})
    w = tf.evaluate({"lam": 0.3, "lam2": 0.5, "Sigma": sig, "M": m, **DIMS})
    assert np.allclose(v.matrix, w.matrix, rtol=1e-9)  # lam (lam + c Y)^-1 = (lam/c) (lam/c + Y)^-1
    scaled = derive_layered_two_point(
        3 * lam * lam2 * resolvent(2 * SH @ WF, lam) @ M @ resolvent(2 * WF @ SH, lam2)
    )
    assert scaled.prefactor == 3 and scaled.check_series(2).passed


def _poisson_layer():
    from detequiv.derivations.laws import FreePoisson

    B = FreeMatrix("B", D, FreePoisson(sp.Rational(3, 2), sp.Rational(1, 2)))
    return derive_layered_two_point(lam * lam2 * resolvent(SH @ B, lam) @ M @ resolvent(B @ SH, lam2))


def test_free_poisson_outer_layer_series():
    """A free (non-Gram) outer factor with S(t) = 1/(a(t + r)): lam = kappa a (r - df1) is linear."""
    t = _poisson_layer()
    assert "linear_divided_difference" in [s.rule.name for s in t.derivation]
    assert t.check_series(3).passed


def test_series_m_equal_sigma():
    assert features_first(S).check_series(2).passed


def test_three_layer_chain_series():
    """Sh W_F W_G | W_G Sh W_F: W_G first, then W_F (A = Sh W_F, form with a = 1), then W_X."""
    t3 = derive_layered_two_point(
        lam * lam2 * resolvent(SH @ WF @ WG, lam) @ M @ resolvent(WG @ SH @ WF, lam2)
    )
    assert [str(fp.symbol) for fp in t3.fixed_points][:3] == ["kappa_3", "kappa_1", "kappa_2"]
    layers = [s.note.split(":")[0] for s in t3.derivation if s.rule.name == "conjugation_exponent"]
    assert sorted(set(layers)) == ["layer 1", "layer 2"]  # layer 2 twice: for M and for I
    assert t3.check_series(3).passed


@pytest.mark.slow
def test_series_order_6_both_orders(tf, td):
    assert tf.check_series(6).passed
    assert td.check_series(6).passed


@pytest.mark.slow
def test_three_layer_chain_series_order_4():
    t3 = derive_layered_two_point(
        lam * lam2 * resolvent(SH @ WF @ WG, lam) @ M @ resolvent(WG @ SH @ WF, lam2)
    )
    assert t3.check_series(4).passed


def test_negative_control_without_outer_correction(tf):
    """Dropping the feature-layer correction fails the exact series at the first order it enters."""
    check = tf.without_outer().check_series(2)
    assert not check.passed
    assert (1, 1) in check.failures


# -- numbers against MATH.md 3.5 (both displays), written independently ---------------------------------


@pytest.mark.parametrize("seed,lv,lv2", [(0, 0.3, 0.7), (1, 1.5, 0.05), (2, 0.2, 0.2)])
def test_math_display_both_orders(tf, td, seed, lv, lv2):
    sig, m = random_case(seed)
    k, k2 = kappa_rf(lv, np.linalg.eigvalsh(sig), QP, QN), kappa_rf(lv2, np.linalg.eigvalsh(sig), QP, QN)
    expected1 = math_display_1(sig, m, k, k2, QP, QN)
    expected2 = math_display_2(sig, m, k, k2, QP, QN)
    assert np.allclose(expected1, expected2, rtol=1e-10, atol=1e-12)  # MATH.md: both orders agree
    got = tf.evaluate({"lam": lv, "lam2": lv2, "Sigma": sig, "M": m, **DIMS})
    assert got.kappas["kappa_2"] == pytest.approx(k, rel=1e-9)
    assert np.allclose(got.matrix, expected1, rtol=1e-8, atol=1e-10)
    # the data-first derivation of the similar matrix: T = S^1/2 T_B(S^-1/2 M S^-1/2) S^1/2
    sh = sqrtm(sig)
    shi = np.linalg.inv(sh)
    got_b = td.evaluate({"lam": lv, "lam2": lv2, "Sigma": sig, "M": shi @ m @ shi, **DIMS})
    assert np.allclose(sh @ got_b.matrix @ sh, expected2, rtol=1e-8, atol=1e-10)
    # the feature-layer correction is resolvable: not the inner two-point alone
    assert not np.allclose(got.no_outer, expected1, rtol=1e-3)


# -- exact identities ----------------------------------------------------------------------------------------


def test_m_identity_resolvent_identity():
    """M = I, both resolvents of Sh W_F (a = 1): lam lam2 G G' = lam lam2 (G - G')/(lam2 - lam)
    -> (lam2 k R - lam k' R')/(lam2 - lam) with lam G ~ k R (MATH.md 2.4, 3.3)."""
    t = derive_layered_two_point(lam * lam2 * resolvent(SH @ WF, lam) @ resolvent(SH @ WF, lam2))
    sig, _ = random_case(3)
    e = np.linalg.eigvalsh(sig)
    eye = np.eye(6)
    for lv, lv2 in ((0.3, 0.9), (2.0, 0.1)):
        k, k2 = kappa_rf(lv, e, QP, QN), kappa_rf(lv2, e, QP, QN)
        r, r2 = np.linalg.inv(sig + k * eye), np.linalg.inv(sig + k2 * eye)
        expected = (lv2 * k * r - lv * k2 * r2) / (lv2 - lv)
        got = t.evaluate({"lam": lv, "lam2": lv2, "Sigma": sig, **DIMS}).matrix
        assert np.allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_equal_ridges_derivative_of_one_point():
    """lam2 -> lam, M = I: lam^2 G^2 = -lam^2 dG/dlam with lam G ~ k R (finite differences of k(lam))."""
    t = derive_layered_two_point(lam * lam2 * resolvent(SH @ WF, lam) @ resolvent(SH @ WF, lam2))
    sig, _ = random_case(4)
    e = np.linalg.eigvalsh(sig)
    eye = np.eye(6)

    def g(lv):
        k = kappa_rf(lv, e, QP, QN)
        return k / lv * np.linalg.inv(sig + k * eye)

    lv, h = 0.4, 1e-5
    expected = -(lv**2) * (g(lv + h) - g(lv - h)) / (2 * h)
    got = t.evaluate({"lam": lv, "lam2": lv, "Sigma": sig, **DIMS}).matrix
    assert np.allclose(got, expected, rtol=1e-6, atol=1e-8)


def test_complex_ridges_conjugate_symmetry(tf):
    """T(conj lam, conj lam2) = conj T(lam, lam2) for real matrices (physical branch)."""
    sig, m = random_case(5)
    v = tf.evaluate({"lam": 0.2 + 0.3j, "lam2": 0.5 - 0.1j, "Sigma": sig, "M": m, **DIMS}).matrix
    w = tf.evaluate({"lam": 0.2 - 0.3j, "lam2": 0.5 + 0.1j, "Sigma": sig, "M": m, **DIMS}).matrix
    assert np.allclose(v, np.conj(w), rtol=1e-8)
    assert np.abs(v.imag).max() > 1e-3


# -- errors --------------------------------------------------------------------------------------------------


def test_errors():
    with pytest.raises(InvalidArgument, match="two symbols"):
        derive_layered_two_point(lam * resolvent(SH @ WF, lam) @ M @ resolvent(WF @ SH, lam))
    with pytest.raises(InvalidWord, match="same A"):
        other = S.sqrt() @ WX @ S
        derive_layered_two_point(lam * lam2 * resolvent(SH @ WF, lam) @ M @ resolvent(WF @ other, lam2))
    with pytest.raises(InvalidWord, match="both random"):
        side = WF @ S @ WX @ S @ WG
        derive_layered_two_point(lam * lam2 * resolvent(side, lam) @ M @ resolvent(side, lam2), outer="W_X")
    with pytest.raises(InvalidArgument, match="outer='W_Q'"):
        derive_layered_two_point(
            lam * lam2 * resolvent(SH @ WF, lam) @ M @ resolvent(WF @ SH, lam2), outer="W_Q"
        )
    B = FreeMatrix("B", D, CumulantLaw("b"))
    with pytest.raises(InvalidWord, match="alpha"):
        derive_layered_two_point(lam * lam2 * resolvent(SH @ B, lam) @ M @ resolvent(B @ SH, lam2))
    with pytest.raises(InvalidArgument, match="order"):
        features_first().check_series(0)


# -- Monte Carlo of the exact matrices -------------------------------------------------------------------


def _mc_summary(check):
    worst = max(r.worst_ratio for r in check.reports)
    rejection = min(r.control_ratio for r in check.reports)
    return worst, rejection


def test_monte_carlo_features_first_dense_m(tf):
    """D = 100, 200 (P = 2D, N = D/2), real and complex ridge pairs, dense non-symmetric M: the
    equivalent passes and the inner two-point alone (no feature-layer correction) is rejected."""
    import detequiv.witnesses.layered  # noqa: F401 - registers the witness

    check = tf.check_monte_carlo((100, 200), rng=np.random.default_rng(1), n_samples=12)
    assert check.passed, str(check)
    worst, rejection = _mc_summary(check)
    assert worst < 1 and rejection > 3
    assert all(r.correction > 0.1 for r in check.reports)


def test_monte_carlo_m_sigma_data_first():
    """M = Sigma in the data-first form (W_X averaged first), one real and one complex pair."""
    import detequiv.witnesses.layered  # noqa: F401

    check = data_first(S).check_monte_carlo(
        (80, 160), rng=np.random.default_rng(2), n_samples=12, tests=("T",)
    )
    assert check.passed, str(check)


@pytest.mark.slow
def test_monte_carlo_more_sizes_and_three_layers(tf, td):
    import detequiv.witnesses.layered  # noqa: F401

    rng = np.random.default_rng(3)
    for t in (tf, td):
        assert t.check_monte_carlo((100, 200, 300), rng=rng, lams=((0.05, 0.05), (1.0, 0.3 + 0.2j))).passed
    t3 = derive_layered_two_point(
        lam * lam2 * resolvent(SH @ WF @ WG, lam) @ M @ resolvent(WG @ SH @ WF, lam2)
    )
    assert t3.check_monte_carlo((100, 200), rng=rng).passed
    assert _poisson_layer().check_monte_carlo((100, 200), rng=rng, n_samples=12).passed
    conj = derive_layered_two_point(
        lam * lam2 * resolvent(SH @ WF, lam) @ M @ resolvent(WF @ SH, lam2), outer="W_X"
    )
    assert conj.check_monte_carlo((100, 200, 300), rng=rng).passed


# -- MATH.md 3.5 symbolically: its displays pass the same exact series check -----------------------------


def _math_polynomial(display, k, k2, qp, qn):
    """MATH.md 3.5 written as a polynomial in the letters Sigma_sqrt, M, R_kappa_2, R_kappa_2'.

    display 1 (features first): Theta(M) + qN tr Theta / (1 - qN tr Psi) Psi;
    display 2's bracket (data first, the form lam lam2 (lam + W_X A')^-1 M (lam2 + A' W_X)^-1):
    Theta_F(M) + qP tr(M Xi)/(1 - qP tr Xi) Theta_F(I)."""
    from detequiv.derivations.quantities import tr

    s, m = sp.symbols("Sigma_sqrt M", commutative=False)
    r = sp.Symbol("R_kappa_2(Sigma)", commutative=False)
    r2 = sp.Symbol("R_kappa_2'(Sigma)", commutative=False)
    sig = (s, s)

    def poly(*pairs):
        out = {}
        for word, c in pairs:
            out[tuple(word)] = out.get(tuple(word), 0) + c
        return out

    def trace(p, left=()):
        return sum(c * (tr(sp.Mul(*left, *w)) if (left + w) else 1) for w, c in p.items())

    def add(p, q, c=1):
        out = dict(p)
        for w, v in q.items():
            out[w] = out.get(w, 0) + c * v
        return out

    def theta(q, mid):
        g = q * tr(sp.Mul(*sig, *sig, r, r2))
        mm = (m,) if mid else ()
        return poly(
            ((r, *mm, r2), k * k2), ((*sig, r, r2), k * k2 * q * (tr(sp.Mul(*mm, *sig, r, r2)) / (1 - g)))
        )

    def psi(q):
        g = q * tr(sp.Mul(*sig, *sig, r, r2))
        return poly(((*sig, *sig, r, r2), 1), ((*sig, r, r2), k * k2 * q * tr(sp.Mul(*sig, r, r2)) / (1 - g)))

    if display == 1:
        th, ps = theta(qp, True), psi(qp)
        return add(th, ps, qn * trace(th) / (1 - qn * trace(ps)))
    xi = psi(qn)
    return add(theta(qn, True), theta(qn, False), qp * trace(xi, (m,)) / (1 - qp * trace(xi)))


@pytest.mark.parametrize("display", [1, 2])
def test_math_displays_pass_the_series_check(tf, td, display):
    """The formulas of MATH.md 3.5, put in place of the engine's polynomial, agree with the nested
    diagram sums to total order 4: independent confirmation of what the engine is compared with."""
    from dataclasses import replace

    base = tf if display == 1 else td
    k, k2 = sp.Symbol("kappa_2"), sp.Symbol("kappa_2'")
    poly = _math_polynomial(display, k, k2, D / P, D / N)
    math = replace(base, polynomial=tuple(poly.items()), outer=())
    assert math.check_series(4).passed
    # and a plausible misreading (qP and qN swapped in display 1) fails
    if display == 1:
        wrong = replace(base, polynomial=tuple(_math_polynomial(1, k, k2, D / N, D / P).items()), outer=())
        assert not wrong.check_series(2).passed
