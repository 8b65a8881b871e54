"""Tests of the Monte Carlo samplers and trace estimators.

Every expected value comes from an independent source: Wick's theorem (written out
in the comments), Catalan numbers, Weingarten integrals for the Haar measure, or a
naive product written here. A sign-uncorrected QR (the classic non-Haar mistake) is
used as a negative control to show that the Haar checks can fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from detequiv.errors import InvalidArgument, InvalidWord
from detequiv.witnesses.sampling import (
    MCEstimate,
    fixed_matrix_sampler,
    gaussian,
    goe,
    goe_sampler,
    haar_orthogonal,
    mc_estimate,
    quantile_spectrum,
    rotated_spectrum,
    sample_matrices,
    spectrum_sampler,
    trace_moment,
    trace_moments,
    white_wishart,
    wishart_sampler,
    wishart_size,
)


def ntr(m: np.ndarray) -> float:
    return float(np.trace(m)) / m.shape[0]


def z_score(values: np.ndarray, expected: float) -> float:
    values = np.asarray(values, dtype=float)
    se = values.std(ddof=1) / np.sqrt(values.size)
    return float(abs(values.mean() - expected) / se)


# --- Wishart ---


def test_wishart_shape_symmetry_and_size():
    rng = np.random.default_rng(1)
    W = white_wishart(7, 0.5, rng)
    assert W.shape == (7, 7)
    assert np.allclose(W, W.T)
    assert np.all(np.linalg.eigvalsh(W) > -1e-12)
    assert wishart_size(100, 0.5) == 200
    assert wishart_size(30, 0.7) == 43  # round(42.857...)
    assert wishart_size(10, 10.0) == 1
    with pytest.raises(InvalidArgument, match="P=round"):
        wishart_size(10, 21.0)  # round(10/21) = 0 samples


def test_wishart_mean_is_identity_entrywise():
    # E W = E Z^T Z / P = I exactly; each entry checked against its own s.e.
    rng = np.random.default_rng(2)
    N, n = 6, 3000
    draws = np.array([white_wishart(N, 0.5, rng) for _ in range(n)])
    mean = draws.mean(axis=0)
    se = draws.std(axis=0, ddof=1) / np.sqrt(n)
    z = np.abs(mean - np.eye(N)) / se
    assert z.max() < 5.0, z.max()  # 36 entries, P(any |z| > 5) ~ 2e-5


def test_wishart_second_moment_exact_finite_size():
    # Wick: E sum_ij (Z^T Z)_ij^2 = N(N-1) P + N P(P+2) = N P (N + P + 1),
    # so E tr W^2 = (N + P + 1) / P = 1 + q + 1/P with q = N/P.
    rng = np.random.default_rng(3)
    N, ratio = 20, 0.5
    P = 40
    est = trace_moment("WW", {"W": wishart_sampler(ratio)}, N, 4000, rng)
    exact = 1 + N / P + 1 / P
    planar = 1 + N / P
    print(
        f"E tr W^2: {est}, exact {exact}, z = {est.z_score(exact):.2f}, "
        f"planar limit z = {est.z_score(planar):.1f}"
    )
    assert est.z_score(exact) < 4
    assert est.z_score(planar) > 8  # the 1/P term is resolved at this sample size


def test_wishart_realised_ratio_is_N_over_P():
    # ratio 0.7 at N = 30 gives P = 43: the realised q is 30/43, not 0.7.
    rng = np.random.default_rng(4)
    N = 30
    P = round(N / 0.7)
    est = trace_moment(["W", "W"], {"W": wishart_sampler(0.7)}, N, 3000, rng)
    assert est.z_score(1 + N / P + 1 / P) < 4


def test_independent_keys_are_independent_draws():
    # E tr(W1 W2) = tr(E W1 E W2) = 1 for independent W1, W2; the same key twice
    # is the same matrix (1 + q + 1/P = 1.525 here).
    rng = np.random.default_rng(5)
    s = wishart_sampler(0.5)
    indep = trace_moment(("W1", "W2"), {"W1": s, "W2": s}, 20, 2000, rng)
    same = trace_moment(("W1", "W1"), {"W1": s, "W2": s}, 20, 2000, rng)
    assert indep.z_score(1.0) < 4
    assert same.z_score(1.525) < 4
    assert indep.z_score(1.525) > 20


# --- GOE ---


def test_goe_entry_variances():
    # off-diagonal variance 1/N, diagonal 2/N (times the variance parameter)
    rng = np.random.default_rng(6)
    N, n = 5, 4000
    draws = np.array([goe(N, rng, variance=3.0) for _ in range(n)])
    assert np.array_equal(draws, np.transpose(draws, (0, 2, 1)))
    assert z_score(draws[:, 0, 1] ** 2, 3.0 / N) < 4
    assert z_score(draws[:, 2, 2] ** 2, 6.0 / N) < 4


@pytest.mark.parametrize("variance", [1.0, 2.0])
def test_goe_moments_are_catalan(variance):
    # semicircle of variance s: m2 = s, m4 = 2 s^2 (Catalan C_1, C_2);
    # finite-N tolerance 4 s.e. + 5 |exact| / N.
    rng = np.random.default_rng(7)
    N = 300
    m2, m4 = trace_moments(["HH", "HHHH"], {"H": goe_sampler(variance)}, N, 12, rng)
    for est, exact in ((m2, variance), (m4, 2 * variance**2)):
        assert abs(est.mean - exact) < 4 * est.se + 5 * exact / N, (est, exact)
    # the wrong Catalan number (m4 = 3 s^2, Gaussian scalar moment) is rejected
    assert abs(m4.mean - 3 * variance**2) > 4 * m4.se + 5 * 3 * variance**2 / N


def test_goe_second_moment_exact():
    # E tr H^2 = (1/N)[N(N-1)/N + N 2/N] = 1 + 1/N exactly
    rng = np.random.default_rng(8)
    N = 8
    est = trace_moment("HH", {"H": goe_sampler()}, N, 4000, rng)
    assert est.z_score(1 + 1 / N) < 4


# --- Haar ---


def _naive_qr(N: int, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((N, N)))
    return q


def _haar_statistics(sampler, N: int, n: int, rng) -> dict[str, float]:
    draws = np.array([sampler(N, rng) for _ in range(n)])
    o11 = draws[:, 0, 0]
    tr1 = np.trace(draws, axis1=1, axis2=2)
    tr2 = np.einsum("sij,sji->s", draws, draws)
    # Weingarten / uniform first column: E O11 = 0, E O11^2 = 1/N,
    # E O11^4 = 3/(N(N+2)), E Tr O = 0, E Tr O^2 = N E O11^2 + 0 = 1,
    # P(O11 > 0) = 1/2.
    return {
        "O11": z_score(o11, 0.0),
        "O11^2": z_score(o11**2, 1.0 / N),
        "O11^4": z_score(o11**4, 3.0 / (N * (N + 2))),
        "sign": z_score((o11 > 0).astype(float), 0.5) if 0 < (o11 > 0).mean() < 1 else np.inf,
        "TrO": z_score(tr1, 0.0),
        "TrO^2": z_score(tr2, 1.0),
    }


def test_haar_orthogonal_is_orthogonal():
    o = haar_orthogonal(9, np.random.default_rng(9))
    assert np.allclose(o.T @ o, np.eye(9), atol=1e-12)
    assert np.allclose(o @ o.T, np.eye(9), atol=1e-12)


def test_haar_orthogonal_distribution():
    rng = np.random.default_rng(10)
    stats = _haar_statistics(haar_orthogonal, 5, 4000, rng)
    print("Haar z-scores:", {k: round(v, 2) for k, v in stats.items()})
    assert max(stats.values()) < 4, stats


def test_haar_checks_reject_sign_uncorrected_qr():
    # negative control: plain QR is not Haar (LAPACK fixes the sign of R's diagonal)
    rng = np.random.default_rng(10)
    stats = _haar_statistics(_naive_qr, 5, 4000, rng)
    print("uncorrected QR z-scores:", {k: round(v, 2) for k, v in stats.items()})
    assert stats["O11"] > 20 and stats["sign"] > 20 and stats["TrO"] > 20


def test_haar_column_signs_symmetric():
    # every column's first entry is positive with probability 1/2
    rng = np.random.default_rng(11)
    n, N = 3000, 4
    pos = np.array([haar_orthogonal(N, rng)[0] > 0 for _ in range(n)], dtype=float)
    for j in range(N):
        assert z_score(pos[:, j], 0.5) < 4


def test_rotated_spectrum():
    rng = np.random.default_rng(12)
    e = np.array([0.5, 1.0, 2.0, 4.0])
    M = rotated_spectrum(e, rng)
    assert np.allclose(M, M.T)
    assert np.allclose(np.linalg.eigvalsh(M), np.sort(e))
    # E O D O^T = tr(D) I (Schur): diagonal mean 1.875, off-diagonal 0
    draws = np.array([rotated_spectrum(e, rng) for _ in range(3000)])
    assert z_score(draws[:, 0, 0], e.mean()) < 4
    assert z_score(draws[:, 1, 3], 0.0) < 4


def test_quantile_and_spectrum_samplers():
    e = quantile_spectrum(lambda u: 0.5 + 1.5 * u, 3)
    assert np.allclose(e, [0.75, 1.25, 1.75])
    rng = np.random.default_rng(13)
    fixed = spectrum_sampler([1.0, 2.0, 3.0], rotate=False)
    assert np.array_equal(fixed(3, rng), np.diag([1.0, 2.0, 3.0]))
    rot = spectrum_sampler(lambda N: np.arange(1.0, N + 1))
    M = rot(4, rng)
    assert np.allclose(np.linalg.eigvalsh(M), [1, 2, 3, 4])
    assert not np.allclose(M, np.diag(np.diag(M)))
    with pytest.raises(InvalidArgument, match="shape"):
        fixed(4, rng)


# --- finite-size exact ---


def _dense_spd(N: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed).standard_normal((N, N))
    return g @ g.T / N + 0.5 * np.eye(N)


def test_exact_finite_size_sigma_w_sigma_w():
    # Wick: E[Z^T Z A Z^T Z] = P(P-1) A + P(A + A^T + Tr A I), so for symmetric S
    # E tr(S W S W) = (1 + 1/P) tr S^2 + q (tr S)^2  (MATH.md section 7).
    N, P = 6, 12
    q = N / P
    S = _dense_spd(N, 99)
    samplers = {"S": fixed_matrix_sampler(lambda n: S), "W": wishart_sampler(q)}
    est = trace_moment("SWSW", samplers, N, 20000, np.random.default_rng(14))
    exact = (1 + 1 / P) * ntr(S @ S) + q * ntr(S) ** 2
    planar = ntr(S @ S) + q * ntr(S) ** 2
    print(
        f"tr(SWSW) at N=6, P=12: {est}; "
        f"exact {exact:.5f} (z = {est.z_score(exact):.2f});"
        f" planar {planar:.5f} (z = {est.z_score(planar):.1f})"
    )
    assert est.z_score(exact) < 4
    assert est.z_score(planar) > 10


def test_exact_finite_size_two_nonsymmetric_matrices():
    # E tr[N S^ M S^] = tr(Nt Mt) + q tr Nt tr Mt + (1/P) tr(Nt Mt^T), with
    # S^ = S^{1/2} W S^{1/2} and At = S^{1/2} A S^{1/2} (same Wick identity).
    # N = M = I + K with K antisymmetric, so tr(Nt Mt^T) and tr(Nt Mt) differ a lot:
    # the transposed 1/P term is rejected as well as the planar limit.
    n, P = 6, 12
    q = n / P
    S = _dense_spd(n, 7)
    w, v = np.linalg.eigh(S)
    Sh = (v * np.sqrt(w)) @ v.T
    g = np.random.default_rng(8).standard_normal((n, n))
    Nm = np.eye(n) + (g - g.T) / 2
    Mm = Nm.copy()
    Nt, Mt = Sh @ Nm @ Sh, Sh @ Mm @ Sh

    def shat(size, rng):
        return Sh @ white_wishart(size, q, rng) @ Sh

    samplers = {
        "N": fixed_matrix_sampler(lambda size: Nm),
        "M": fixed_matrix_sampler(lambda size: Mm),
        "X": shat,
    }
    est = trace_moment("NXMX", samplers, n, 20000, np.random.default_rng(15))
    planar = ntr(Nt @ Mt) + q * ntr(Nt) * ntr(Mt)
    exact = planar + ntr(Nt @ Mt.T) / P
    transposed = planar + ntr(Nt @ Mt) / P
    print(
        f"tr(N S^ M S^): {est}; exact z = {est.z_score(exact):.2f}, "
        f"planar z = {est.z_score(planar):.1f}, "
        f"transposed 1/P term z = {est.z_score(transposed):.1f}"
    )
    assert est.z_score(exact) < 4
    assert est.z_score(planar) > 10
    assert est.z_score(transposed) > 10


# --- estimators ---


def test_deterministic_word_matches_naive_product():
    rng0 = np.random.default_rng(16)
    mats = {k: rng0.standard_normal((5, 5)) for k in "ABC"}
    samplers = {k: fixed_matrix_sampler(lambda n, m=m: m) for k, m in mats.items()}
    A, B, C = mats["A"], mats["B"], mats["C"]
    rng = np.random.default_rng(0)
    for word, naive in (
        ("A", A),
        ("AB", A @ B),
        ("ABC", A @ B @ C),
        ("ACB", A @ C @ B),
        ("ABAC", A @ B @ A @ C),
        ("CCCB", C @ C @ C @ B),
    ):
        est = trace_moment(word, samplers, 5, 3, rng)
        assert est.mean == pytest.approx(ntr(naive), rel=1e-12, abs=1e-12)
        assert est.se == pytest.approx(0.0, abs=1e-12)
    # the words ABC and ACB differ for these matrices, so order is really tested
    assert abs(ntr(A @ B @ C) - ntr(A @ C @ B)) > 1e-3


def test_trace_moments_share_samples_and_match_single_words():
    s = {"W": wishart_sampler(0.5), "H": goe_sampler()}
    many = trace_moments(["WW", "WHWH", "HHH"], s, 12, 30, np.random.default_rng(17))
    assert [e.n_samples for e in many] == [30, 30, 30]
    # same letters drawn in the same order -> identical numbers
    one = trace_moment("WHWH", s, 12, 30, np.random.default_rng(17))
    assert one == many[1]


def test_mc_estimate_matches_trace_moment_and_allows_complex():
    s = {"W": wishart_sampler(0.5)}
    by_word = trace_moment("WWW", s, 10, 25, np.random.default_rng(18))
    by_fn = mc_estimate(
        lambda m: np.trace(m["W"] @ m["W"] @ m["W"]) / 10,
        s,
        10,
        25,
        np.random.default_rng(18),
    )
    assert by_fn.mean == pytest.approx(by_word.mean, rel=1e-12)
    assert by_fn.se == pytest.approx(by_word.se, rel=1e-9)
    # complex resolvent trace: tr (z - W)^{-1} at z = 1j has negative imaginary part
    res = mc_estimate(
        lambda m: np.trace(np.linalg.inv(1j * np.eye(10) - m["W"])) / 10,
        s,
        10,
        10,
        np.random.default_rng(18),
    )
    assert isinstance(res.mean, complex) and res.mean.imag < 0
    # complex samplers give a complex trace_moment
    c = {"C": fixed_matrix_sampler(lambda n: (1 + 2j) * np.eye(n))}
    est = trace_moment("CC", c, 4, 2, np.random.default_rng(0))
    assert est.mean == pytest.approx((1 + 2j) ** 2)


def test_seeded_reproducibility():
    s = {
        "W": wishart_sampler(0.5),
        "A": spectrum_sampler(lambda n: np.linspace(1, 2, n)),
    }
    a = trace_moment("AWAW", s, 15, 10, np.random.default_rng(42))
    b = trace_moment("AWAW", s, 15, 10, np.random.default_rng(42))
    c = trace_moment("AWAW", s, 15, 10, np.random.default_rng(43))
    assert a == b
    assert a.mean != c.mean
    for f in (
        lambda r: gaussian(3, 4, r),
        lambda r: white_wishart(5, 2.0, r),
        lambda r: goe(5, r),
        lambda r: haar_orthogonal(5, r),
        lambda r: rotated_spectrum([1.0, 2.0, 3.0], r),
    ):
        x1, x2 = f(np.random.default_rng(1)), f(np.random.default_rng(1))
        x3 = f(np.random.default_rng(2))
        assert np.array_equal(x1, x2)
        assert not np.array_equal(x1, x3)


def test_gaussian_variance():
    z = gaussian(400, 50, np.random.default_rng(19), variance=4.0)
    assert z.shape == (400, 50)
    # sample variance of 20000 N(0, 4) values: s.e. of the variance is 4 sqrt(2/20000)
    assert abs(z.var() - 4.0) < 4 * 4.0 * np.sqrt(2 / z.size)


def test_mcestimate_str_and_zscore():
    e = MCEstimate(1.5, 0.25, 10, 7)
    assert e.z_score(2.0) == 2.0
    assert "N=7" in str(e) and "10 samples" in str(e)
    assert MCEstimate(1.0, 0.0, 2, 3).z_score(1.0) == 0.0
    assert MCEstimate(1.0, 0.0, 2, 3).z_score(2.0) == np.inf


# --- errors ---


def test_bad_inputs_raise_specific_errors():
    rng = np.random.default_rng(0)
    s = {"W": wishart_sampler(0.5)}
    with pytest.raises(InvalidWord, match="empty"):
        trace_moment("", s, 4, 2, rng)
    with pytest.raises(InvalidWord, match="'X'"):
        trace_moment("WX", s, 4, 2, rng)
    with pytest.raises(InvalidWord, match="sequence"):
        trace_moment(3, s, 4, 2, rng)
    with pytest.raises(InvalidArgument, match="N=0"):
        trace_moment("W", s, 0, 2, rng)
    with pytest.raises(InvalidArgument, match="N=2.5"):
        trace_moment("W", s, 2.5, 2, rng)
    with pytest.raises(InvalidArgument, match="n_samples=1"):
        trace_moment("W", s, 4, 1, rng)
    with pytest.raises(InvalidArgument, match="default_rng"):
        trace_moment("W", s, 4, 2, 1234)
    with pytest.raises(InvalidArgument, match="ratio"):
        wishart_sampler(0.0)
    with pytest.raises(InvalidArgument, match="ratio"):
        white_wishart(4, -1.0, rng)
    with pytest.raises(InvalidArgument, match="P >= 1"):
        white_wishart(2, 10.0, rng)
    with pytest.raises(InvalidArgument, match="variance"):
        goe(4, rng, variance=0.0)
    with pytest.raises(InvalidArgument, match="shape"):
        trace_moment("A", {"A": lambda n, r: np.eye(n + 1)}, 4, 2, rng)
    with pytest.raises(InvalidArgument, match="callable"):
        fixed_matrix_sampler(np.eye(3))
    with pytest.raises(InvalidArgument, match="scalar"):
        mc_estimate(lambda m: m["W"], s, 4, 2, rng)
    with pytest.raises(InvalidArgument, match="eigenvalues"):
        rotated_spectrum(np.eye(2), rng)
    assert set(sample_matrices(s, 3, rng)) == {"W"}
