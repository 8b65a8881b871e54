"""Tests of the Monte Carlo verification report.

The exact values are closed forms written in this file: Marchenko-Pastur moments
(Narayana), the semicircle's Catalan numbers, the planar Wishart formula
tr(A W A W) -> tr A^2 + q (tr A)^2, and the free-probability formula for
tr(A B A B) with A, B free. The same machinery must reject plausible wrong answers
(commuting A and B; a 10 % wrong Wishart ratio) by a clear margin.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from detequiv.errors import InvalidArgument, VerificationError
from detequiv.witnesses.acceptance import (
    VerificationReport,
    VerificationRow,
    check_mc,
    is_consistent_mc,
    verify,
)
from detequiv.witnesses.sampling import (
    fixed_matrix_sampler,
    goe_sampler,
    spectrum_sampler,
    wishart_sampler,
)

FAST = (100, 200, 400)
SLOW = (200, 400, 800)


def ntr(x: np.ndarray) -> float:
    """Normalized trace of diag(x) for a vector of eigenvalues x."""
    return float(np.mean(x))


def a_spectrum(N: int) -> np.ndarray:
    return np.linspace(0.5, 2.0, N)


def wide_spectrum(N: int) -> np.ndarray:
    return np.linspace(0.0, 3.0, N)


def two_point_spectrum(N: int) -> np.ndarray:
    return np.where(np.arange(N) % 2 == 0, 0.5, 2.5)


def awaw_limit(q: float):
    """tr(A W A W) -> tr A^2 + q (tr A)^2 (kappa_2(W) = q, kappa_1(W) = 1)."""
    return lambda N: ntr(a_spectrum(N) ** 2) + q * ntr(a_spectrum(N)) ** 2


def free_abab(N: int) -> float:
    """Free A, B: tr(ABAB) = tr(A^2) tr(B)^2 + tr(A)^2 tr(B^2) - tr(A)^2 tr(B)^2."""
    a, b = wide_spectrum(N), two_point_spectrum(N)
    return ntr(a**2) * ntr(b) ** 2 + ntr(a) ** 2 * ntr(b**2) - ntr(a) ** 2 * ntr(b) ** 2


def commuting_abab(N: int) -> float:
    """The wrong answer for free A, B: tr(A^2 B^2) = tr(A^2) tr(B^2)."""
    a, b = wide_spectrum(N), two_point_spectrum(N)
    return ntr(a**2) * ntr(b**2)


def awaw_samplers(q: float) -> dict:
    return {"A": spectrum_sampler(a_spectrum, rotate=False), "W": wishart_sampler(q)}


def abab_samplers() -> dict:
    # A deterministic diagonal, B in a Haar-random basis: asymptotically free
    return {
        "A": spectrum_sampler(wide_spectrum, rotate=False),
        "B": spectrum_sampler(two_point_spectrum),
    }


# --- true limits ---


@pytest.mark.parametrize("q", [0.5, 2.0])
def test_awaw_limit_passes(q):
    report = verify(
        awaw_limit(q),
        ("A", "W", "A", "W"),
        awaw_samplers(q),
        sizes=FAST,
        n_samples=10,
        rng=np.random.default_rng(101),
    )
    print(report)
    assert report.passed
    assert [r.N for r in report.rows] == list(FAST)
    report.raise_if_failed()  # no exception


@pytest.mark.parametrize("q", [0.5, 1.0, 2.5])
def test_marchenko_pastur_third_moment_passes(q):
    # Narayana: m3 = N(3,1) + N(3,2) q + N(3,3) q^2 = 1 + 3q + q^2
    report = verify(
        1 + 3 * q + q**2,
        "WWW",
        {"W": wishart_sampler(q)},
        sizes=FAST,
        n_samples=10,
        rng=np.random.default_rng(102),
    )
    print(report)
    assert report.passed


def test_goe_fourth_moment_passes():
    # semicircle m4 = Catalan C_2 = 2
    report = verify(
        2.0, "HHHH", {"H": goe_sampler()}, sizes=FAST, n_samples=8, rng=np.random.default_rng(103)
    )
    print(report)
    assert report.passed


def test_free_product_abab_passes():
    report = verify(
        free_abab, "ABAB", abab_samplers(), sizes=FAST, n_samples=10, rng=np.random.default_rng(104)
    )
    print(report)
    assert report.passed


# --- wrong answers ---


def test_commuting_abab_is_rejected():
    # the commuting claim differs from the free value by Var(A) Var(B) ~ 0.77
    report = verify(
        commuting_abab, "ABAB", abab_samplers(), sizes=FAST, n_samples=10, rng=np.random.default_rng(104)
    )
    print(report)
    print(f"rejection margin: max |err|/tol = {report.max_ratio:.2f}")
    assert not report.passed
    assert not report.rows[-1].ok
    assert report.max_ratio > 2.5
    with pytest.raises(VerificationError, match="ABAB"):
        report.raise_if_failed()


def test_wrong_wishart_ratio_is_rejected():
    q = 2.0
    report = verify(
        awaw_limit(1.1 * q),
        "AWAW",
        awaw_samplers(q),
        sizes=FAST,
        n_samples=10,
        rng=np.random.default_rng(105),
    )
    print(report)
    print(f"rejection margin: max |err|/tol = {report.max_ratio:.2f}")
    assert not report.passed
    assert report.max_ratio > 1.5  # 1.9-3.0 over 20 other seeds


def test_wrong_marchenko_pastur_ratio_is_rejected():
    q = 1.0
    wrong = 1 + 3 * (1.1 * q) + (1.1 * q) ** 2
    report = verify(
        wrong, "WWW", {"W": wishart_sampler(q)}, sizes=FAST, n_samples=10, rng=np.random.default_rng(106)
    )
    print(report)
    print(f"rejection margin: max |err|/tol = {report.max_ratio:.2f}")
    assert not report.passed
    assert report.max_ratio > 2.0


# --- report logic ---


def _identity_samplers() -> dict:
    # deterministic: tr(I) = 1 and s.e. = 0, so every row is plain arithmetic
    return {"I": fixed_matrix_sampler(np.eye)}


def test_tolerance_arithmetic_with_zero_noise():
    rng = np.random.default_rng(0)
    # claimed 1.4 at N = 10: |1 - 1.4| = 0.4 < 5 * 1.4 / 10 = 0.7
    ok = verify(1.4, "I", _identity_samplers(), sizes=(10,), n_samples=2, rng=rng)
    row = ok.rows[0]
    assert row.tolerance == pytest.approx(0.7)
    assert row.error == pytest.approx(-0.4)
    assert row.se == 0 and row.ok and ok.passed
    # claimed 2.0 at N = 10: |1 - 2| = 1.0 exactly the tolerance 5 * 2 / 10 -> not ok
    bad = verify(2.0, "I", _identity_samplers(), sizes=(10,), n_samples=2, rng=rng)
    assert not bad.rows[0].ok and not bad.passed
    # c_finite = 0 means only the statistical part: any deviation fails
    strict = verify(1.001, "I", _identity_samplers(), sizes=(10,), n_samples=2, rng=rng, c_finite=0.0)
    assert not strict.passed


def test_trend_check_catches_error_growing_with_N():
    # exact(N) = 1 at N = 10 and 1 - 3/40 at N = 40: both rows are within
    # 5 |exact| / N, but the error grows from 0 to 0.075 with zero noise.
    def exact(N: int) -> float:
        return 1.0 if N == 10 else 1.0 - 3.0 / N

    report = verify(
        exact, "I", _identity_samplers(), sizes=(40, 10), n_samples=2, rng=np.random.default_rng(0)
    )
    assert [r.N for r in report.rows] == [10, 40]
    assert report.rows_ok
    assert not report.trend_ok
    assert not report.passed
    assert "FAILED" in str(report)


def test_slope_of_pure_finite_size_error_is_minus_one():
    report = verify(
        lambda N: 1.0 + 1.0 / N,
        "I",
        _identity_samplers(),
        sizes=(10, 20, 40, 80),
        n_samples=2,
        rng=np.random.default_rng(0),
    )
    assert report.passed
    assert report.slope == pytest.approx(-1.0, abs=1e-9)
    exact_report = verify(
        1.0, "I", _identity_samplers(), sizes=(10, 20), n_samples=2, rng=np.random.default_rng(0)
    )
    assert exact_report.slope is None  # zero errors: no log-log fit


def test_functional_target_complex_and_sympy_exact():
    c = {"C": fixed_matrix_sampler(lambda n: (1 + 2j) * np.eye(n))}

    def tr_c(m):
        return np.trace(m["C"]) / m["C"].shape[0]

    report = verify(1 + 2 * sp.I, tr_c, c, sizes=(5, 10), n_samples=2, rng=np.random.default_rng(0))
    assert report.passed and report.label == "tr_c"
    assert isinstance(report.rows[0].exact, complex)
    assert "tr_c" in str(report)
    half = verify(
        sp.Rational(1, 1), "I", _identity_samplers(), sizes=(5,), n_samples=2, rng=np.random.default_rng(0)
    )
    assert half.rows[0].exact == 1.0


def test_n_samples_callable_and_check_pairs():
    q = 0.5
    kwargs = dict(sizes=(20, 40), n_samples=lambda N: N // 5, rng=np.random.default_rng(7))
    ok, report = check_mc(1 + q, "WW", {"W": wishart_sampler(q)}, **kwargs)
    assert isinstance(report, VerificationReport)
    assert all(isinstance(r, VerificationRow) for r in report.rows)
    assert [r.n_samples for r in report.rows] == [4, 8]
    assert ok == report.passed
    assert (
        is_consistent_mc(
            2.0, "I", _identity_samplers(), sizes=(10,), n_samples=2, rng=np.random.default_rng(0)
        )
        is False
    )


def test_report_string_is_a_table():
    report = verify(1.0, "I", _identity_samplers(), sizes=(10, 20), n_samples=2, rng=np.random.default_rng(0))
    text = str(report)
    assert "tr(I)" in text and "tolerance" in text and "passed: True" in text
    assert len(text.splitlines()) == 2 + 2 + 2  # title, header, 2 rows, trend, verdict


def test_verify_bad_inputs():
    s = _identity_samplers()
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidArgument, match="default_rng"):
        verify(1.0, "I", s, sizes=(10,), n_samples=2, rng=3)
    with pytest.raises(InvalidArgument, match="empty"):
        verify(1.0, "I", s, sizes=(), n_samples=2, rng=rng)
    with pytest.raises(InvalidArgument, match="repeats"):
        verify(1.0, "I", s, sizes=(10, 10), n_samples=2, rng=rng)
    with pytest.raises(InvalidArgument, match="positive integer"):
        verify(1.0, "I", s, sizes=(10, 0), n_samples=2, rng=rng)
    with pytest.raises(InvalidArgument, match="n_se"):
        verify(1.0, "I", s, sizes=(10,), n_samples=2, rng=rng, n_se=-1.0)
    with pytest.raises(InvalidArgument, match="not a number"):
        verify("one", "I", s, sizes=(10,), n_samples=2, rng=rng)
    with pytest.raises(InvalidArgument, match="not a number"):
        verify(lambda N: [1.0, 2.0], "I", s, sizes=(10,), n_samples=2, rng=rng)
    with pytest.raises(InvalidArgument, match="not finite"):
        verify(float("nan"), "I", s, sizes=(10,), n_samples=2, rng=rng)


# --- slow ---


@pytest.mark.slow
def test_slow_true_limits_pass():
    for exact, word, samplers in (
        (awaw_limit(0.5), "AWAW", awaw_samplers(0.5)),
        (free_abab, "ABAB", abab_samplers()),
        (2.0, "HHHH", {"H": goe_sampler()}),
        (1 + 3 * 0.5 + 0.25, "WWW", {"W": wishart_sampler(0.5)}),
    ):
        report = verify(exact, word, samplers, sizes=SLOW, n_samples=20, rng=np.random.default_rng(201))
        print(report)
        assert report.passed


@pytest.mark.slow
def test_slow_wrong_answers_rejected():
    for exact, word, samplers in (
        (commuting_abab, "ABAB", abab_samplers()),
        (awaw_limit(1.1 * 0.5), "AWAW", awaw_samplers(0.5)),
    ):
        report = verify(exact, word, samplers, sizes=SLOW, n_samples=20, rng=np.random.default_rng(202))
        print(report)
        print(f"rejection margin: max |err|/tol = {report.max_ratio:.2f}")
        assert not report.passed
        assert report.max_ratio > 2.0
